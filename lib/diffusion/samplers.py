"""Deterministic samplers of the probability-flow ODE in sigma space, k-diffusion style.

Every sampler is `sample_x(denoiser, x, sigmas, ...)`: `x` is the state at `sigmas[0]`, whatever that
is (the teleportation notebook starts them part-way), and `sigmas` is a decreasing schedule that may
end in 0. `callback`, when given, is called after each step with a dict
{"i", "sigma", "sigma_next", "x" (state at sigma_next), "denoised" (D at sigma)}.

Every sampler shares one preamble (`ode_sampler`): it checks its schedule once (`schedule_levels`: 1-d, strictly
decreasing, finite, only the last entry may be 0) and returns an empty batch as it is, without calling the denoiser;
`steps` walks the schedule with a progress bar. The multistep samplers
(DPM-Solver++(2M), UniPC) are in `lib.diffusion.multistep`, DPM-Solver-v3 in `lib.diffusion.dpm_solver_v3`, and
all of them by name, with their costs, in `lib.diffusion.sampler_records` and `lib.diffusion.teleport`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm import trange

from lib.models.denoisers import Denoiser, ode_slope

Callback = Callable[[dict], None]


def check_sigma_schedule(sigmas: torch.Tensor) -> None:
    """A schedule's form: a 1-d tensor of at least two finite, strictly decreasing entries."""
    if not isinstance(sigmas, torch.Tensor):
        raise TypeError(f"sigmas must be a 1-d torch.Tensor schedule (see karras_sigmas), got {type(sigmas).__name__}")
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-d schedule with at least two entries (start and end)")
    finite = torch.isfinite(sigmas)
    if not bool(finite.all()):
        raise ValueError(f"sigmas must be finite, got {float(sigmas[~finite][0])} (check how the schedule was made)")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing (from noise to data)")


def schedule_levels(sigmas: torch.Tensor) -> list[float]:
    """The schedule as Python floats, after checking it (`check_sigma_schedule`): only the last may be 0."""
    check_sigma_schedule(sigmas)
    levels = [float(s) for s in sigmas]
    if levels[-1] < 0:
        raise ValueError(f"sigmas must be non-negative (only the last may be 0), got {levels[-1]}")
    return levels


def ode_sampler(sample: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The preamble every sampler shares, written once: no gradients, the schedule checked and turned into Python
    floats (`schedule_levels`), and an empty batch returned as it is without calling the denoiser. The sampler is
    written as `sample(denoiser, x, levels, ...)` and called as `sample(denoiser, x, sigmas, ...)`."""

    @functools.wraps(sample)
    @torch.no_grad()
    def run(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        levels = schedule_levels(sigmas)
        if x.shape[0] == 0:
            return x.clone()
        return sample(denoiser, x, levels, *args, **kwargs)

    return run


def steps(levels: list[float], progress: bool, desc: str) -> Iterator[tuple[int, float, float]]:
    """(i, sigma_i, sigma_{i+1}) for every step down the schedule, with a progress bar named `desc` when `progress`."""
    for i in trange(len(levels) - 1, disable=not progress, desc=desc):
        yield i, levels[i], levels[i + 1]


@ode_sampler
def sample_euler(
    denoiser: Denoiser, x: torch.Tensor, levels: list[float],
    progress: bool = False, callback: Callback | None = None,
) -> torch.Tensor:
    """Euler steps of dx/dsigma = (x - D(x; sigma)) / sigma. NFE = len(sigmas) - 1. First order."""
    for i, sigma, sigma_next in steps(levels, progress, "Euler"):
        denoised = denoiser(x, sigma)
        x = x + ode_slope(x, denoised, sigma) * (sigma_next - sigma)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
    return x


@ode_sampler
def sample_heun(
    denoiser: Denoiser, x: torch.Tensor, levels: list[float],
    progress: bool = False, callback: Callback | None = None,
) -> torch.Tensor:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1 without churn). Second order.

    Each step takes an Euler step, then averages the slopes at both ends (trapezoidal rule); the final
    step to sigma = 0 is a plain Euler step. With N noise levels plus the final 0, NFE = 2N - 1.
    """
    for i, sigma, sigma_next in steps(levels, progress, "Heun"):
        denoised = denoiser(x, sigma)
        slope = ode_slope(x, denoised, sigma)
        x_next = x + slope * (sigma_next - sigma)
        if sigma_next > 0:
            slope_next = ode_slope(x_next, denoiser(x_next, sigma_next), sigma_next)
            x_next = x + 0.5 * (slope + slope_next) * (sigma_next - sigma)
        x = x_next
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
    return x


def heun_nfe(sigmas: torch.Tensor) -> int:
    """Network evaluations of `sample_heun` on this schedule (2 per step, 1 for a step to sigma = 0): its record's
    rule (`lib.diffusion.sampler_records`)."""
    from lib.diffusion.sampler_records import RECORDS

    return RECORDS["heun"].nfe(sigmas)


class TrajectoryRecorder:
    """A callback that keeps the state and the denoised estimate of every step (on the CPU)."""

    def __init__(self) -> None:
        self.sigmas: list[float] = []
        self.xs: list[torch.Tensor] = []
        self.denoised: list[torch.Tensor] = []

    def __call__(self, info: dict) -> None:
        self.sigmas.append(info["sigma_next"])
        self.xs.append(info["x"].detach().cpu())
        self.denoised.append(info["denoised"].detach().cpu())


@torch.no_grad()
def solve_ivp_trajectory(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor | list[float],
    rtol: float = 1e-10, atol: float = 1e-10, method: str = "DOP853",
) -> torch.Tensor:
    """Reference integration of dx/dsigma = (x - D(x; sigma)) / sigma with scipy's adaptive `solve_ivp`.

    `x` is the state at sigmas[0]; returns the states at every entry of `sigmas` (S, *x.shape) in float64.
    The whole batch is one ODE system; the denoiser is called in float64 (give it a float64 model).
    Every sigma must be positive (the vector field is singular at sigma = 0).
    """
    from scipy.integrate import solve_ivp

    grid = np.asarray(torch.as_tensor(sigmas, dtype=torch.float64).cpu(), dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or not (grid > 0).all() or not (np.diff(grid) < 0).all():
        raise ValueError("sigmas must be a strictly decreasing list of positive noise levels")
    shape, device = x.shape, x.device

    def rhs(sigma: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).reshape(shape).to(device)
        return ode_slope(state, denoiser(state, float(sigma)), float(sigma)).reshape(-1).cpu().numpy()

    y0 = x.detach().to(torch.float64).reshape(-1).cpu().numpy()
    sol = solve_ivp(rhs, (grid[0], grid[-1]), y0, method=method, t_eval=grid, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return torch.from_numpy(sol.y.T.copy()).reshape(len(grid), *shape)


def max_relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """max over samples of ||approx - exact|| / ||exact|| (both (B, ...))."""
    diff = (approx - exact).reshape(exact.shape[0], -1).norm(dim=1)
    return float((diff / exact.reshape(exact.shape[0], -1).norm(dim=1)).max())


def convergence_errors(
    sampler: Callable[..., torch.Tensor], denoiser: Denoiser, x: torch.Tensor, step_counts: list[int],
    exact: torch.Tensor, sigma_min: float = 0.002, sigma_max: float = 80.0,
) -> list[float]:
    """`max_relative_error` of `sampler` against `exact` (the solution at sigma_min) for each step count.

    Each run starts from `x` at sigma_max and follows a Karras schedule of n levels ending at sigma_min
    (no final step to 0, whose Euler update would add an error that does not shrink with n).
    """
    from lib.models.edm import karras_sigmas

    errors = []
    for n in step_counts:
        sigmas = karras_sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max, append_zero=False)
        errors.append(max_relative_error(sampler(denoiser, x, sigmas.to(x.device)), exact))
    return errors

"""Deterministic samplers of the probability-flow ODE in sigma space, k-diffusion style.

Every sampler is `sample_x(denoiser, x, sigmas, ...)`: `x` is the state at `sigmas[0]`, whatever that
is (the teleportation notebook starts them part-way), and `sigmas` is a decreasing schedule that may
end in 0. `callback`, when given, is called after each step with a dict
{"i", "sigma", "sigma_next", "x" (state at sigma_next), "denoised" (D at sigma)}.

Every sampler checks its schedule once (`_levels`: 1-d, strictly decreasing, finite, only the last
entry may be 0) and returns an empty batch as it is, without calling the denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from tqdm import trange

from lib.denoisers import Denoiser

Callback = Callable[[dict], None]


def _check_schedule(sigmas: torch.Tensor) -> None:
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


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    progress: bool = False, callback: Callback | None = None,
) -> torch.Tensor:
    """Euler steps of dx/dsigma = (x - D(x; sigma)) / sigma. NFE = len(sigmas) - 1. First order."""
    levels = _levels(sigmas)
    if x.shape[0] == 0:
        return x.clone()
    for i in trange(len(levels) - 1, disable=not progress, desc="Euler"):
        sigma, sigma_next = levels[i], levels[i + 1]
        denoised = denoiser(x, sigma)
        x = x + (x - denoised) / sigma * (sigma_next - sigma)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
    return x


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    progress: bool = False, callback: Callback | None = None,
) -> torch.Tensor:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1 without churn). Second order.

    Each step takes an Euler step, then averages the slopes at both ends (trapezoidal rule); the final
    step to sigma = 0 is a plain Euler step. With N noise levels plus the final 0, NFE = 2N - 1.
    """
    levels = _levels(sigmas)
    if x.shape[0] == 0:
        return x.clone()
    for i in trange(len(levels) - 1, disable=not progress, desc="Heun"):
        sigma, sigma_next = levels[i], levels[i + 1]
        denoised = denoiser(x, sigma)
        slope = (x - denoised) / sigma
        x_next = x + slope * (sigma_next - sigma)
        if sigma_next > 0:
            slope_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
            x_next = x + 0.5 * (slope + slope_next) * (sigma_next - sigma)
        x = x_next
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
    return x


def heun_nfe(sigmas: torch.Tensor) -> int:
    """Network evaluations of `sample_heun` on this schedule (2 per step, 1 for a step to sigma = 0)."""
    steps = len(sigmas) - 1
    return 2 * steps - int(float(sigmas[-1]) == 0.0)


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
    import numpy as np
    from scipy.integrate import solve_ivp

    grid = np.asarray(torch.as_tensor(sigmas, dtype=torch.float64).cpu(), dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or not (grid > 0).all() or not (np.diff(grid) < 0).all():
        raise ValueError("sigmas must be a strictly decreasing list of positive noise levels")
    shape, device = x.shape, x.device

    def rhs(sigma: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).reshape(shape).to(device)
        return (state - denoiser(state, float(sigma))).div(sigma).reshape(-1).cpu().numpy()

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
    from lib.edm import karras_sigmas

    errors = []
    for n in step_counts:
        sigmas = karras_sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max, append_zero=False)
        errors.append(max_relative_error(sampler(denoiser, x, sigmas.to(x.device)), exact))
    return errors


# --------------------------------------------------------------------------- multistep samplers
#
# DPM-Solver++ and UniPC integrate the probability-flow ODE in lambda = -log sigma with the data
# prediction D. For VE/EDM (alpha = 1, x_sigma = x0 + sigma n) the ODE reads
#     dx/dlambda = D(x; sigma) - x,
# whose variation-of-constants solution from lambda_i to lambda_{i+1} = lambda_i + h is
#     x_{i+1} = e^{-h} x_i + int_0^h e^{-(h - u)} D(lambda_i + u) du,   e^{-h} = sigma_{i+1} / sigma_i.
# The linear part is exact; the samplers differ only in how they approximate D inside the integral.


def _levels(sigmas: torch.Tensor) -> list[float]:
    """The schedule as Python floats, after checking it: decreasing, positive, only the last may be 0."""
    _check_schedule(sigmas)
    levels = [float(s) for s in sigmas]
    if not all(math.isfinite(s) for s in levels):
        raise ValueError("sigmas must be finite")
    if levels[-1] < 0:
        raise ValueError(f"sigmas must be non-negative (only the last may be 0), got {levels[-1]}")
    return levels


def _exponential_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """x_{i+1} = (sigma_{i+1}/sigma_i) x_i - (e^{-h} - 1) D: exact when D is constant over the step (DDIM)."""
    ratio = sigma_next / sigma
    return ratio * x + (1.0 - ratio) * denoised


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    progress: bool = False, callback: Callback | None = None, lower_order_final: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, k-diffusion's `sample_dpmpp_2m`): data-prediction multistep. Order 2.

    With lambda = -log sigma, h_i = lambda_{i+1} - lambda_i = log(sigma_i / sigma_{i+1}) and r = h_{i-1} / h_i,

        D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}          (D linear in lambda through the last two points)
        x_{i+1} = (sigma_{i+1}/sigma_i) x_i - (e^{-h_i} - 1) D_hat.

    The first step (no D_{i-1} yet) uses D_hat = D_i, and the step to sigma = 0 (h infinite) is
    x = D_i; both are first order. One evaluation per step: NFE = len(sigmas) - 1. `lower_order_final`
    makes the step onto the last positive level first order too (as diffusers does below 15 steps for
    third-order solvers), which removes the extrapolation across that step's large h.
    """
    levels = _levels(sigmas)
    if x.shape[0] == 0:
        return x.clone()
    old_denoised, h_last = None, None
    for i in trange(len(levels) - 1, disable=not progress, desc="DPM++(2M)"):
        sigma, sigma_next = levels[i], levels[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            d_hat = denoised
            onto_last_level = i + 2 == len(levels) - 1 and levels[-1] == 0
            if old_denoised is not None and not (lower_order_final and onto_last_level):
                r = h_last / h
                d_hat = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old_denoised
            x = _exponential_step(x, d_hat, sigma, sigma_next)
            h_last = h
        old_denoised = denoised
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
    return x


def _phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{j >= 0} z^j / (j + k)!  (phi_0 = e^z, phi_{k+1}(z) = (phi_k(z) - 1/k!) / z).

    Summed as a series for |z| < 1 (the recursion cancels catastrophically for small z), else recursively.
    """
    if abs(z) < 1.0:
        return sum(z**j / math.factorial(j + k) for j in range(30))
    value = math.exp(z)
    for m in range(k):
        value = (value - 1 / math.factorial(m)) / z
    return value


def _unipc_coefficients(h: float, rks: list[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """UniPC-bh2 data-prediction coefficients for one step of size h with p = len(rks) + 1 model outputs.

    With z = -h and B(h) = e^z - 1 (bh2): b_k = k! z phi_{k+1}(z) / B(h), k = 1..p (b_k -> 1/(k+1) as h -> 0),
    and R[k, m] = rks_m^k with rks = (r_1, ..., r_{p-1}, 1). Returns (rho_p, rho_c, B):
    the predictor solves R[:p-1, :p-1] rho_p = b[:p-1] (UniPC uses rho_p = 1/2 at p = 2, as here), the
    corrector R rho_c = b (rho_c = 1/2 at p = 1, as in UniPC).
    """
    z = -h
    big_b = math.expm1(z)
    p = len(rks) + 1
    b = np.array([math.factorial(k) * z * _phi(k + 1, z) / big_b for k in range(1, p + 1)])
    nodes = np.array([*rks, 1.0])
    vander = np.stack([nodes**k for k in range(p)])
    if p == 1:
        rho_p, rho_c = np.zeros(0), np.array([0.5])
    else:
        rho_p = np.array([0.5]) if p == 2 else np.linalg.solve(vander[:-1, :-1], b[:-1])
        rho_c = np.linalg.solve(vander, b)
    return rho_p, rho_c, big_b


def _weighted_sum(weights: np.ndarray, tensors: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for w, t in zip(weights, tensors, strict=True):
        out = out + float(w) * t
    return out


@torch.no_grad()
def sample_unipc(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, order: int = 2,
    progress: bool = False, callback: Callback | None = None, use_corrector: bool = True,
) -> torch.Tensor:
    """UniPC (Zhao et al. 2023): UniP-p predictor + UniC corrector, data prediction, B(h) = expm1(-h) (bh2).

    In VE sigma space (alpha = 1, lambda = -log sigma, h = log(sigma_i/sigma_{i+1}), z = -h), with the p
    newest model outputs D_i = D_0, D_{i-1}, ..., D_{i-p+1} (p = min(order, steps so far + 1)):

        r_m = (lambda_{i-m} - lambda_i) / h < 0,          D1_m = (D_{i-m} - D_i) / r_m,   m = 1..p-1
        x_ddim = (sigma_{i+1}/sigma_i) x_i - (e^{-h} - 1) D_i
        predictor  x~_{i+1} = x_ddim - B(h) sum_m rho_p,m D1_m
        corrector  x_{i+1}  = x_ddim - B(h) (sum_m rho_c,m D1_m + rho_c,p (D(x~_{i+1}; sigma_{i+1}) - D_i))

    (coefficients in `_unipc_coefficients`). The corrector reuses the evaluation at the predicted point,
    which is also the D_{i+1} of the next step, so NFE = len(sigmas) - 1; the last step is not corrected
    and the step to sigma = 0 is x = D_i (first order). `use_corrector=False` leaves UniP-p alone, which
    at p = 2 is exactly DPM-Solver++(2M). Unlike the reference code, the order is not lowered on the last
    steps (except the step to 0).

    Order: UniC raises UniP-p's order p by one, so order=2 is nominally third order; on the Gaussian
    test problem (tests/test_samplers_multistep.py, Karras schedules from 80 to 0.002) the measured
    global order of order=2 is about 3 for 16..128 steps (the first steps are in the pre-asymptotic regime).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    levels = _levels(sigmas)
    if x.shape[0] == 0:
        return x.clone()
    steps = len(levels) - 1
    history: list[tuple[float, torch.Tensor]] = []  # (sigma, D) pairs, newest first
    denoised = denoiser(x, levels[0])
    for i in trange(steps, disable=not progress, desc="UniPC"):
        sigma, sigma_next = levels[i], levels[i + 1]
        history = [(sigma, denoised), *history][:order]
        denoised_next = None
        if sigma_next == 0:
            x_next = denoised
        else:
            h = math.log(sigma / sigma_next)
            rks = [math.log(sigma / s) / h for s, _ in history[1:]]
            d1s = [(d - denoised) / r for r, (_, d) in zip(rks, history[1:], strict=True)]
            rho_p, rho_c, big_b = _unipc_coefficients(h, rks)
            x_ddim = _exponential_step(x, denoised, sigma, sigma_next)
            x_next = x_ddim - big_b * _weighted_sum(rho_p, d1s, x)
            if i < steps - 1:
                denoised_next = denoiser(x_next, sigma_next)
                if use_corrector:
                    d1s_c = [*d1s, denoised_next - denoised]
                    x_next = x_ddim - big_b * _weighted_sum(rho_c, d1s_c, x)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x_next, "denoised": denoised})
        x, denoised = x_next, denoised_next
    return x


# --------------------------------------------------------------------------- NFE and teleportation

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m, "unipc": sample_unipc,
}


def nfe(sampler: str | Callable[..., torch.Tensor], sigmas: torch.Tensor) -> int:
    """Network evaluations of a sampler (a name in `SAMPLERS` or the function) on this schedule.

    Heun: 2 per step, 1 for a step to sigma = 0; Euler, DPM-Solver++(2M) and UniPC: 1 per step.
    """
    names = {fn: name for name, fn in SAMPLERS.items()}
    name = sampler if isinstance(sampler, str) else names.get(sampler)
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known: {sorted(SAMPLERS)}")
    _check_schedule(sigmas)
    return heun_nfe(sigmas) if name == "heun" else len(sigmas) - 1


def teleport_schedule(
    n_steps: int, sigma_skip: float, sigma_min: float = 0.002, rho: float = 7.0, append_zero: bool = True,
) -> torch.Tensor:
    """A fresh Karras schedule of n_steps levels from sigma_skip down to sigma_min, then 0 (float64).

    Teleportation re-discretizes [sigma_min, sigma_skip] rather than keeping the tail of the schedule
    from sigma_max, so all n_steps steps are spent below sigma_skip. (sigma^(1/rho) is linear in the
    index, so the tail of karras_sigmas(N) from level k *is* teleport_schedule(N - k, sigma_k): the two
    differ only when n_steps is not the number of levels left.) The first level is set to sigma_skip
    exactly, so that it matches the jump's target bit for bit.
    """
    if not sigma_skip > sigma_min:
        raise ValueError(f"sigma_skip must exceed sigma_min, got {sigma_skip} <= {sigma_min}")
    if n_steps < (1 if append_zero else 2):
        raise ValueError(f"too few steps for a schedule: n_steps={n_steps}")
    from lib.edm import karras_sigmas

    sigmas = karras_sigmas(n_steps, sigma_min=sigma_min, sigma_max=sigma_skip, rho=rho, append_zero=append_zero)
    sigmas[0] = float(sigma_skip)
    return sigmas


def skip_to_sigma(
    n_total: int, n_skip: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
) -> float:
    """sigma_{n_skip} of the Karras schedule of n_total levels from sigma_max: "skip k of N steps".

    n_skip = 0 gives sigma_max (no teleport); n_skip <= n_total - 2 keeps sigma_skip above sigma_min.
    """
    if not 0 <= n_skip <= n_total - 2:
        raise ValueError(f"n_skip must be in [0, n_total - 2] = [0, {n_total - 2}], got {n_skip}")
    from lib.edm import karras_sigmas

    return float(karras_sigmas(n_total, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)[n_skip])


class JumpModel(Protocol):
    """Anything with the closed-form jump of `lib.gaussian.GaussianDenoiser`."""

    def jump(self, x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor: ...


def sample_with_teleport(
    sampler: Callable[..., torch.Tensor], denoiser: Denoiser, gaussian_model: JumpModel,
    x_T: torch.Tensor, sigma_T: float, sigma_skip: float, n_steps: int,
    sigma_min: float = 0.002, rho: float = 7.0, append_zero: bool = True,
    progress: bool = False, callback: Callback | None = None, **sampler_kwargs,
) -> torch.Tensor:
    """Analytical teleportation (Wang & Vastola, claim C6): jump, then sample on a fresh schedule.

        x_skip = gaussian_model.jump(x_T, sigma_T, sigma_skip)       (closed form, no network evaluations)
        x_0    = sampler(denoiser, x_skip, teleport_schedule(n_steps, sigma_skip, sigma_min, rho))

    sigma_skip >= sigma_T means no teleport: the sampler runs on karras_sigmas(n_steps, sigma_max=sigma_T).
    The NFE is `nfe(sampler, teleport_schedule(...))`.
    """
    if sigma_skip >= sigma_T:
        x_start, top = x_T, float(sigma_T)
    else:
        x_start, top = gaussian_model.jump(x_T, sigma_T, sigma_skip), float(sigma_skip)
    sigmas = teleport_schedule(n_steps, top, sigma_min=sigma_min, rho=rho, append_zero=append_zero)
    return sampler(denoiser, x_start, sigmas.to(x_T.device), progress=progress, callback=callback, **sampler_kwargs)

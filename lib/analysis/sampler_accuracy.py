"""How accurate the samplers are where the answer is known: Gaussian data, at large and at small budgets.

With the Gaussian as the model the closed form is the exact solution of the probability-flow ODE, so a
sampler's error against it is pure discretisation error. `sampler_convergence` measures it as the number of
levels grows (the order p of error ~ N^-p). At the few levels where multistep samplers are used in
practice (3-12), quality on real data need not improve with every added level: `quality_by_schedule`
scores samples of any sampler and schedule from the same noise.

At such budgets DPM-Solver++(2M) (and UniPC, whose predictor it is) extrapolates the denoiser linearly in
lambda = -log sigma through the last two evaluations,

    D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1},   r = h_{i-1} / h_i,

across steps h_i = log(sigma_i / sigma_{i+1}) of several units; `extrapolation_weights` lists 1/(2r) for each
step of a schedule (0 for first-order steps), the weight put on the difference D_i - D_{i-1}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import pandas as pd
import torch

from lib.analysis.teleportation import initial_noise
from lib.core.numerics import loglog_slope
from lib.diffusion.samplers import convergence_errors
from lib.diffusion.teleport import SAMPLERS
from lib.models.denoisers import Denoiser
from lib.models.edm import SIGMA_MAX, SIGMA_MIN, karras_sigmas
from lib.models.gaussian import GaussianDenoiser


def sampler_convergence(gaussian: GaussianDenoiser, samplers: Sequence[str], step_counts: Sequence[int],
                        n: int = 8, seed: int = 0, sigma_max: float = SIGMA_MAX,
                        sigma_min: float = SIGMA_MIN,
                        sampler_options: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Each sampler's error against the closed-form endpoint at sigma_min, with the Gaussian as the model.

    x_T = initial_noise(seed, n); error = max over samples of ||x - x_exact|| / ||x_exact|| on a Karras
    schedule of n levels from sigma_max to sigma_min (no final step to 0), as in `convergence_errors`.
    Pass a float64 model so that round-off stays below the smallest error. `sampler_options`: keyword arguments
    by sampler name (DPM-Solver-v3's `ems`: the statistics of this Gaussian model).
    """
    x_t = initial_noise(seed, n, gaussian.shape, sigma_max).to(device=gaussian.mean.device, dtype=gaussian.dtype)
    exact = gaussian.jump(x_t, sigma_max, sigma_min)
    rows = []
    for name in samplers:
        sampler = partial(SAMPLERS[name], **(sampler_options or {}).get(name, {}))
        errors = convergence_errors(sampler, gaussian, x_t, list(step_counts), exact,
                                    sigma_min=sigma_min, sigma_max=sigma_max)
        rows += [{"sampler": name, "steps": int(s), "error": float(e)}
                 for s, e in zip(step_counts, errors, strict=True)]
    return pd.DataFrame(rows)


def fitted_orders(convergence: pd.DataFrame, min_steps: int = 16) -> dict[str, float]:
    """Order p of error ~ steps^-p per sampler: least-squares slope on log-log axes over step counts
    >= min_steps (all of them when fewer than two qualify; the first steps are pre-asymptotic)."""
    orders = {}
    for name, rows in convergence.groupby("sampler", sort=False):
        fit = rows[rows["steps"] >= min_steps]
        fit = fit if len(fit) >= 2 else rows
        orders[name] = -loglog_slope(fit["steps"], fit["error"])
    return orders


def extrapolation_weights(sigmas: Sequence[float] | torch.Tensor) -> list[float]:
    """1/(2r) of DPM-Solver++(2M) for each step of a schedule (last level 0): 0 for the first step and for the
    step to sigma = 0 (both first order), h_i / (2 h_{i-1}) otherwise."""
    levels = [float(s) for s in sigmas]
    weights, h_last = [], None
    for sigma, sigma_next in zip(levels[:-1], levels[1:], strict=True):
        if sigma_next == 0:
            weights.append(0.0)
            continue
        h = math.log(sigma / sigma_next)
        weights.append(0.0 if h_last is None else h / (2 * h_last))
        h_last = h
    return weights


def schedule_table(level_counts: Sequence[int]) -> pd.DataFrame:
    """The Karras levels each budget visits (one row per level, the final 0 included), the log-sigma step to the
    next level and DPM-Solver++(2M)'s extrapolation weight on that step."""
    rows = []
    for n in level_counts:
        sigmas = karras_sigmas(n)
        weights = extrapolation_weights(sigmas)
        for i, (sigma, weight) in enumerate(zip(sigmas[:-1].tolist(), weights, strict=True)):
            nxt = float(sigmas[i + 1])
            rows.append({"levels": n, "step": i, "sigma": sigma, "sigma_next": nxt,
                         "h": math.log(sigma / nxt) if nxt > 0 else math.inf, "extrapolation_weight": weight})
    return pd.DataFrame(rows)


def schedule_of(levels: Sequence[float]) -> torch.Tensor:
    """A schedule (float64) through the given positive levels, then 0."""
    return torch.tensor([*map(float, levels), 0.0], dtype=torch.float64)


@torch.no_grad()
def quality_by_schedule(network: Denoiser, runs: dict[str, tuple[Callable[..., torch.Tensor], torch.Tensor]],
                        x_t: torch.Tensor, score: Callable[[torch.Tensor], dict[str, float]],
                        batch_size: int = 100, progress: bool = False) -> pd.DataFrame:
    """Sample from the same `x_t` with each run's (sampler, schedule) and score the samples with `score`
    (e.g. FD and KID against the test set): one row per run with its label, NFE = len(schedule) - 1 and the
    positive levels it visits."""
    from tqdm import tqdm

    device = x_t.device
    rows = []
    for label, (sampler, sigmas) in tqdm(runs.items(), desc="schedules", disable=not progress):
        samples = torch.cat([sampler(network, chunk, sigmas.to(device)).float().cpu()
                             for chunk in x_t.split(batch_size)])
        levels = [float(v) for v in sigmas if float(v) > 0]
        rows.append({"run": label, "nfe": len(sigmas) - 1, "levels": " ".join(f"{v:.3g}" for v in levels),
                     **score(samples)})
    return pd.DataFrame(rows)


@torch.no_grad()
def endpoint_distances(denoiser: Denoiser, runs: Mapping[str, Callable[..., torch.Tensor]], step_counts: Sequence[int],
                       x_t: torch.Tensor, reference_levels: int = 400) -> pd.DataFrame:
    """How far each sampler's samples lie from a fine reference run of the same ODE, from the same x_T: the median
    over samples of ||x - x_ref|| / median ||x_ref||, with x_ref from DPM-Solver++(2M) on `reference_levels` Karras
    levels (to sigma = 0). A sampler whose distance falls towards 0 as N grows converges to the same endpoint; one that
    levels off does not. `runs`: label -> sampler (denoiser, x, sigmas) -> x at sigmas[-1]."""
    reference = SAMPLERS["dpmpp_2m"](denoiser, x_t.clone(), karras_sigmas(reference_levels).to(x_t.device))
    scale = float(reference.flatten(1).norm(dim=1).median())
    rows = []
    for label, sampler in runs.items():
        for n in step_counts:
            x = sampler(denoiser, x_t.clone(), karras_sigmas(n).to(x_t.device))
            rows.append({"sampler": label, "steps": int(n),
                         "distance": float((x - reference).flatten(1).norm(dim=1).median()) / scale})
    return pd.DataFrame(rows)

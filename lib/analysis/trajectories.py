"""Sampling trajectories compared with the Gaussian closed form (claim C5).

Along a deterministic sampler's run from x_T = sigma_max * n we record, at every noise level of the
schedule, the state x_sigma and the denoised estimate x0_hat(sigma) = D(x_sigma; sigma). The closed
form gives both for the Gaussian model from the same x_T. Deviations are measured per sample as the
root-mean-square pixel difference (pixels in [-1, 1]),

    rms(a, b) = sqrt(mean_pixels (a - b)^2),

so that a deviation of 0.1 is 5% of the pixel range, and relative to the reference's norm,

    rel(a, b) = ||a - b|| / ||b||,

which is what a prediction of x_sigma can be held to: the RMS of x_sigma itself is about sigma, so an
absolute 0.1 asks for 0.1% agreement at sigma = 80 and is no test at all at sigma = 0.01. The tidy table
of `deviation_rows` (one row per pair of runs, field and sigma) is what the C5 verdict reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lib.diffusion.samplers import TrajectoryRecorder, sample_heun
from lib.models.denoisers import Denoiser


@dataclass(frozen=True)
class Trajectory:
    """States x (S, B, ...) at `sigmas` (S,) and denoised estimates x0_hat (S, B, ...) at the same sigmas."""

    sigmas: torch.Tensor
    x: torch.Tensor
    x0_hat: torch.Tensor


@torch.no_grad()
def heun_trajectory(denoiser: Denoiser, x_t: torch.Tensor, sigmas: torch.Tensor, progress: bool = False,
                    device: torch.device | str = "cpu") -> Trajectory:
    """Run `sample_heun` from `x_t` at `sigmas[0]` and keep x and x0_hat at every positive sigma of the schedule.

    x0_hat(sigma_i) is the denoiser's output at the state reached at sigma_i (the first evaluation of step i).
    """
    recorder = TrajectoryRecorder()
    sample_heun(denoiser, x_t.to(device), sigmas, progress=progress, callback=recorder)
    positive = sigmas[:-1] if float(sigmas[-1]) == 0.0 else sigmas
    n = len(positive)
    # step i evaluates D at the state reached at sigma_i: x_T, then the state after each earlier step
    states = [x_t.detach().float().cpu(), *(x.float() for x in recorder.xs[: n - 1])]
    return Trajectory(positive.double().cpu(), torch.stack(states), torch.stack(recorder.denoised[:n]).float())


@torch.no_grad()
def closed_form_trajectory(model: object, x_t: torch.Tensor, sigma_t: float, sigmas) -> Trajectory:
    """x(sigma) = model.jump(x_T, sigma_T, sigma) and x0_hat = model(x(sigma), sigma) at each of `sigmas`, for any
    model with a closed-form jump (the Gaussian, the isotropic Gaussian)."""
    levels = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    xs = torch.stack([model.jump(x_t, sigma_t, float(s)) for s in levels])
    x0s = torch.stack([model(x, float(s)) for x, s in zip(xs, levels, strict=True)])
    return Trajectory(levels, xs.float().cpu(), x0s.float().cpu())


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample root-mean-square pixel difference over the trailing dimensions: (S, B, ...) -> (S, B)."""
    diff = (a.double() - b.double()).flatten(start_dim=2)
    return diff.pow(2).mean(-1).sqrt()


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ||a - b|| / ||b|| over the trailing dimensions, (S, B, ...) -> (S, B), float64."""
    diff = (a.double() - b.double()).flatten(start_dim=2).norm(dim=-1)
    return diff / b.double().flatten(start_dim=2).norm(dim=-1)


#: The columns of `data/results/trajectory_deviation.csv`.
DEVIATION_COLUMNS = ["pair", "field", "sigma", "rel_median", "rel_q25", "rel_q75", "rms_median"]


def _quartile_rows(pair: str, field: str, sigmas, values: np.ndarray, rms) -> pd.DataFrame:
    """Median and quartiles over samples (axis 1 of `values`, (S, B)) per sigma, in the deviation table's schema."""
    q25, q50, q75 = np.percentile(values, [25, 50, 75], axis=1)
    return pd.DataFrame({"pair": pair, "field": field, "sigma": np.asarray(sigmas, dtype=float), "rel_median": q50,
                         "rel_q25": q25, "rel_q75": q75, "rms_median": rms}, columns=DEVIATION_COLUMNS)


def deviation_rows(pair: str, field: str, sigmas, run: object, reference: object) -> pd.DataFrame:
    """Median and quartiles over samples of rel(run, reference) per sigma for `field` ("x" or "x0_hat"), with
    the median absolute RMS deviation; `reference` is the run whose norm normalises (any object with the
    field, e.g. a `ClosedForm`)."""
    a, b = getattr(run, field).cpu(), getattr(reference, field).cpu()
    rms = np.median(rms_distance(a, b).numpy(), axis=1)
    return _quartile_rows(pair, field, sigmas, relative_distance(a, b).numpy(), rms)


def paired_advantage_rows(pair: str, field: str, sigmas, run: object, closer: object, farther: object) -> pd.DataFrame:
    """Quartiles over samples of rel(run, farther) - rel(run, closer) per sigma: positive where `closer`
    predicts `run` better, sample by sample (the Gaussian against the isotropic model, say)."""
    a = getattr(run, field).cpu()
    adv = relative_distance(a, getattr(farther, field).cpu()) - relative_distance(a, getattr(closer, field).cpu())
    return _quartile_rows(pair, field, sigmas, adv.numpy(), np.nan)


def denoising_errors(models: dict[str, Denoiser], x0: torch.Tensor, sigmas, seed: int = 0) -> pd.DataFrame:
    """MSE per pixel of each model's denoised estimate of `x0` from x0 + sigma n at each sigma, the same noise n
    (from `seed`) for every model and sigma (`lib.diffusion.training.loss_per_sigma`): one row per (model, sigma)."""
    from lib.diffusion.training import loss_per_sigma  # the network's module: only when a table is made

    tables = []
    for name, model in models.items():
        losses = loss_per_sigma(model, x0, sigmas, seed)
        tables.append(pd.DataFrame({"model": name, "sigma": losses["sigma"], "mse": losses["mse"]}))
    return pd.concat(tables, ignore_index=True)


def worse_than(errors: pd.DataFrame, model: str, baseline: str) -> pd.DataFrame:
    """The sigmas at which `model`'s MSE exceeds `baseline`'s, with the relative excess (from `denoising_errors`)."""
    wide = errors.pivot_table(index="sigma", columns="model", values="mse").sort_index(ascending=False)
    excess = wide[model] / wide[baseline] - 1.0
    return pd.DataFrame({"sigma": excess.index, "excess": excess.to_numpy()})[excess.to_numpy() > 0]

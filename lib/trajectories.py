"""Sampling trajectories compared with the Gaussian closed form (claim C5).

Along a deterministic sampler's run from x_T = sigma_max * n we record, at every noise level of the
schedule, the state x_sigma and the denoised estimate x0_hat(sigma) = D(x_sigma; sigma). The closed
form gives both for the Gaussian model from the same x_T. Deviations are measured per sample as the
root-mean-square pixel difference (pixels in [-1, 1]),

    rms(a, b) = sqrt(mean_pixels (a - b)^2),

so that a deviation of 0.1 is 5% of the pixel range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib.denoisers import Denoiser
from lib.samplers import TrajectoryRecorder, sample_heun


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


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample root-mean-square pixel difference over the trailing dimensions: (S, B, ...) -> (S, B)."""
    diff = (a.double() - b.double()).flatten(start_dim=2)
    return diff.pow(2).mean(-1).sqrt()


def prediction_break_sigma(sigmas, deviation, threshold: float) -> float | None:
    """The highest sigma at which the (median) deviation first reaches `threshold`, walking down from the top;
    None when it stays below the threshold along the whole trajectory."""
    for sigma, dev in zip(np.asarray(sigmas, dtype=float), np.asarray(deviation, dtype=float), strict=True):
        if dev >= threshold:
            return float(sigma)
    return None

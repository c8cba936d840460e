"""DPM-Solver++(2M) and UniPC as implemented by `diffusers`, driven with our denoisers and schedules.

An independent implementation to check `lib.diffusion.multistep` against (tests/test_samplers_reference.py and
notebook 07). Both take a denoiser D(x; sigma) in EDM's variance-exploding space and a schedule
`sigmas` (decreasing, last 0), and return the sample at sigma = 0:

- `EDMDPMSolverMultistepScheduler` works in the VE space itself but takes an epsilon-type network output,
  handed over through the inverse of EDM's preconditioning, eps = (D - c_skip x) / c_out.
- `UniPCMultistepScheduler` works in variance-preserving space, x_vp = alpha x_ve with alpha = 1/sqrt(1 +
  sigma^2), with sigma its own "VE" sigma: its levels are replaced by ours and the denoiser sees
  x_vp / alpha. Data prediction is invariant under this rescaling, and alpha = 1 at sigma = 0.

diffusers keeps sigmas and log-sigmas in float32, so agreement with ours is at float32 round-off.
"""

from __future__ import annotations

import math
import warnings

import torch

from lib.models import edm
from lib.models.denoisers import Denoiser
from lib.models.edm import SIGMA_DATA


def _schedulers():
    try:
        with warnings.catch_warnings():  # diffusers imports tqdm.auto, which warns about missing ipywidgets
            warnings.simplefilter("ignore")
            from diffusers import EDMDPMSolverMultistepScheduler, UniPCMultistepScheduler
    except ImportError as exc:  # a pinned requirement; missing only in a hand-made environment
        raise ImportError("the reference samplers need diffusers: run `make setup` (requirements.txt pins it)") from exc
    return EDMDPMSolverMultistepScheduler, UniPCMultistepScheduler


def _levels(sigmas: torch.Tensor) -> list[float]:
    levels = [float(s) for s in sigmas]
    if levels[-1] != 0.0 or any(a <= b for a, b in zip(levels[:-1], levels[1:], strict=False)):
        raise ValueError("the reference samplers need a decreasing schedule that ends at 0")
    return levels


@torch.no_grad()
def diffusers_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """diffusers' EDM DPM-Solver++(2M) (midpoint form, final step to 0) on the schedule `sigmas`."""
    dpm, _ = _schedulers()
    levels = _levels(sigmas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = dpm(sigma_min=levels[-2], sigma_max=levels[0], sigma_data=SIGMA_DATA, solver_order=2,
                        algorithm_type="dpmsolver++", solver_type="midpoint", prediction_type="epsilon",
                        final_sigmas_type="zero")
        scheduler.set_timesteps(len(levels) - 1)
    scheduler.sigmas = torch.tensor(levels, dtype=torch.float32)
    for i, t in enumerate(scheduler.timesteps):
        sigma = levels[i]
        level = torch.tensor(sigma, dtype=torch.float64)  # EDM's preconditioning, inverted (module docstring)
        eps = (denoiser(x, sigma) - float(edm.c_skip(level)) * x) / float(edm.c_out(level))
        x = scheduler.step(eps, t, x, return_dict=False)[0]
    return x


@torch.no_grad()
def diffusers_unipc(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """diffusers' UniPC-bh2 (UniP-2 predictor, UniC corrector, data prediction) on the schedule `sigmas`."""
    _, unipc = _schedulers()
    levels = _levels(sigmas)
    n_steps = len(levels) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = unipc(solver_order=2, prediction_type="sample", predict_x0=True, solver_type="bh2",
                          lower_order_final=True, final_sigmas_type="zero", disable_corrector=[])
        scheduler.set_timesteps(n_steps)  # (its numpy conversion warns under numpy 2; the levels are replaced below)
    scheduler.sigmas = torch.tensor(levels, dtype=torch.float64)  # its steps read only these levels
    scheduler.timesteps = torch.arange(n_steps, 0, -1) * 10  # distinct labels, one per step
    x = x / math.sqrt(1.0 + levels[0] ** 2)
    for i, t in enumerate(scheduler.timesteps):
        scale = math.sqrt(1.0 + levels[i] ** 2)
        x = scheduler.step(denoiser(x * scale, levels[i]), t, x, return_dict=False)[0]
    return x

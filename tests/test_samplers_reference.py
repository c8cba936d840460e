"""Our DPM-Solver++(2M) and UniPC against an independent implementation: the schedulers of `diffusers`.

Both are driven with the same denoiser (an exact float64 Gaussian) and the same noise levels (diffusers'
Karras schedule, which equals `lib.edm.karras_sigmas` to float32 rounding), from the same x_T:

- `EDMDPMSolverMultistepScheduler` works in EDM's variance-exploding space; it takes an epsilon-type
  output, so the denoiser is handed over through the inverse preconditioning eps = (D - c_skip x) / c_out.
- `UniPCMultistepScheduler` works in variance-preserving space x_vp = alpha x_ve, alpha = 1/sqrt(1 + sigma^2),
  with sigma its own "VE" sigma; its levels are replaced by ours and the denoiser sees x_vp / alpha. Data
  prediction is invariant under this rescaling, so its samples equal ours at sigma = 0 (alpha = 1).

Agreement is at float32 round-off (diffusers keeps sigmas and log-sigmas in float32), far below 1e-5.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lib.edm import SIGMA_DATA, karras_sigmas
from lib.gaussian import GaussianDenoiser
from lib.samplers import sample_dpmpp_2m, sample_unipc

F64 = torch.float64
TOLERANCE = 1e-5
BUDGETS = [3, 4, 5, 6, 12, 18]  # the plain budgets of the teleportation notebook, the anomalous 3-6 included

schedulers = pytest.importorskip("diffusers.schedulers", reason="diffusers (a pinned requirement) is missing")


@pytest.fixture(scope="module")
def model() -> GaussianDenoiser:
    gen = torch.Generator().manual_seed(0)
    d = 32
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    eigvals = torch.logspace(math.log10(25.0), -3.0, d, dtype=F64)
    return GaussianDenoiser(0.3 * torch.randn(d, generator=gen, dtype=F64), eigvals, eigvecs, (2, 4, 4), dtype=F64)


@pytest.fixture(scope="module")
def x_t() -> torch.Tensor:
    return 80.0 * torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)


def relative_gap(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def diffusers_dpmpp_2m(model: GaussianDenoiser, x_t: torch.Tensor, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sample, sigmas) of diffusers' EDM DPM-Solver++(2M), midpoint form, final step to sigma = 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = schedulers.EDMDPMSolverMultistepScheduler(
            sigma_min=0.002, sigma_max=80.0, sigma_data=SIGMA_DATA, rho=7.0, solver_order=2,
            algorithm_type="dpmsolver++", solver_type="midpoint", prediction_type="epsilon",
            final_sigmas_type="zero")
    scheduler.set_timesteps(n_levels)
    x = x_t.clone()
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[i])
        c_skip = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
        c_out = sigma * SIGMA_DATA / math.sqrt(sigma**2 + SIGMA_DATA**2)
        eps = (model(x, sigma) - c_skip * x) / c_out
        x = scheduler.step(eps, t, x, return_dict=False)[0]
    return x, scheduler.sigmas.to(F64)


def diffusers_unipc(model: GaussianDenoiser, x_t: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """diffusers' UniPC-bh2 (UniP-2 + UniC, data prediction) on our levels `sigmas` (last 0), in VP space."""
    n_levels = len(sigmas) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = schedulers.UniPCMultistepScheduler(
            solver_order=2, prediction_type="sample", predict_x0=True, solver_type="bh2",
            lower_order_final=True, final_sigmas_type="zero", disable_corrector=[])
    scheduler.set_timesteps(n_levels)
    scheduler.sigmas = sigmas.clone()  # its step reads only these levels; timesteps just index the steps
    scheduler.timesteps = torch.arange(n_levels, 0, -1) * 10
    x = x_t / math.sqrt(1.0 + float(sigmas[0]) ** 2)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(sigmas[i])
        x = scheduler.step(model(x * math.sqrt(1.0 + sigma**2), sigma), t, x, return_dict=False)[0]
    return x


@pytest.mark.parametrize("n_levels", BUDGETS)
def test_dpmpp_2m_matches_diffusers(model: GaussianDenoiser, x_t: torch.Tensor, n_levels: int) -> None:
    reference, sigmas = diffusers_dpmpp_2m(model, x_t, n_levels)
    assert relative_gap(sigmas[:-1], karras_sigmas(n_levels)[:-1]) < 1e-6  # the same Karras schedule
    assert float(sigmas[-1]) == 0.0
    assert relative_gap(sample_dpmpp_2m(model, x_t.clone(), sigmas), reference) < TOLERANCE


@pytest.mark.parametrize("n_levels", BUDGETS)
def test_unipc_matches_diffusers(model: GaussianDenoiser, x_t: torch.Tensor, n_levels: int) -> None:
    sigmas = karras_sigmas(n_levels).to(F64)
    assert relative_gap(sample_unipc(model, x_t.clone(), sigmas), diffusers_unipc(model, x_t, sigmas)) < TOLERANCE


def test_the_cross_check_can_fail(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    """UniP-2 without its corrector is a different sampler: the comparison must see it."""
    sigmas = karras_sigmas(6).to(F64)
    uncorrected = sample_unipc(model, x_t.clone(), sigmas, use_corrector=False)
    assert relative_gap(uncorrected, diffusers_unipc(model, x_t, sigmas)) > 100 * TOLERANCE

"""Our DPM-Solver++(2M) and UniPC against an independent implementation: the schedulers of `diffusers`.

Both are driven (lib.diffusion.reference_samplers) with the same denoiser, an exact float64 Gaussian, on the same
schedules from the same x_T: the Karras schedules of the teleportation notebook's plain budgets (3-6 levels,
where plain DPM-Solver++(2M) and UniPC are not monotone in the number of evaluations, and 12, 18) and one
hand-made schedule. Agreement is at float32 round-off (diffusers keeps its sigmas in float32), far below
the 1e-5 asked for.
"""

from __future__ import annotations

import pytest
import torch

from lib.diffusion.multistep import sample_dpmpp_2m, sample_unipc
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser

reference = pytest.importorskip("lib.diffusion.reference_samplers")
pytest.importorskip("diffusers", reason="diffusers (a pinned requirement) is missing")

F64 = torch.float64
TOLERANCE = 1e-5
SCHEDULES = {f"karras{n}": karras_sigmas(n) for n in (3, 4, 5, 6, 12, 18)}
SCHEDULES["levels 80, 9.7, 2.5, 0.002"] = torch.tensor([80.0, 9.72, 2.52, 0.002, 0.0], dtype=F64)


@pytest.fixture(scope="module")
def model(gaussian32: GaussianDenoiser) -> GaussianDenoiser:
    return gaussian32  # tests/conftest.py: d = 32, eigenvalues from 25 to 1e-3, float64


@pytest.fixture(scope="module")
def x_t() -> torch.Tensor:
    return 80.0 * torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)


def relative_gap(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_dpmpp_2m_matches_diffusers(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    sigmas = SCHEDULES[name].to(F64)
    theirs = reference.diffusers_dpmpp_2m(model, x_t.clone(), sigmas)
    assert relative_gap(sample_dpmpp_2m(model, x_t.clone(), sigmas), theirs) < TOLERANCE


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_unipc_matches_diffusers(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    sigmas = SCHEDULES[name].to(F64)
    theirs = reference.diffusers_unipc(model, x_t.clone(), sigmas)
    assert relative_gap(sample_unipc(model, x_t.clone(), sigmas), theirs) < TOLERANCE


def test_the_cross_check_can_fail(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    """UniP-2 without its corrector (which is DPM-Solver++(2M)) is a different sampler: the comparison sees it."""
    sigmas = karras_sigmas(6).to(F64)
    uncorrected = sample_unipc(model, x_t.clone(), sigmas, use_corrector=False)
    assert relative_gap(uncorrected, reference.diffusers_unipc(model, x_t.clone(), sigmas)) > 100 * TOLERANCE


def test_reference_samplers_refuse_a_schedule_that_does_not_end_at_zero(model: GaussianDenoiser,
                                                                         x_t: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="ends at 0"):
        reference.diffusers_dpmpp_2m(model, x_t, karras_sigmas(6)[:-1])

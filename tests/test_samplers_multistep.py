"""Samplers against the exact Gaussian solution: Heun, DPM-Solver++(2M), UniPC and teleportation
(lib.diffusion.samplers, multistep, teleport).

The test problem is a d = 32 Gaussian with an anisotropic spectrum from 25 down to 1e-3, in float64, and
its exact denoiser. Errors are taken at sigma_min = 0.002 against the closed form (schedules without the
final zero): the step to sigma = 0 is first order for every sampler (x = D), and its error would not
shrink with the number of steps. That last step is checked on its own (`test_step_to_zero_...`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.diffusion.multistep import sample_dpmpp_2m, sample_unipc
from lib.diffusion.samplers import TrajectoryRecorder, sample_heun
from lib.diffusion.teleport import SAMPLERS, nfe, sample_with_teleport, skip_to_sigma, teleport_schedule
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser
from lib.verdicts import loglog_slope

F64 = torch.float64
SIGMA_T, SIGMA_MIN, SIGMA_MID = 80.0, 0.002, 5.0
STEPS = [8, 16, 32, 64, 128]  # errors must fall over all; the order is fitted on 16..128 (asymptotic)

# (sampler, keyword arguments, known order): UniC raises UniP-p's order p by one.
CASES = {
    "heun": (sample_heun, {}, 2),
    "dpmpp_2m": (sample_dpmpp_2m, {}, 2),
    "unipc": (sample_unipc, {}, 3),
    "unipc_order1": (sample_unipc, {"order": 1}, 2),
    "unipc_order3": (sample_unipc, {"order": 3}, 4),
}


@pytest.fixture(scope="module")
def model(gaussian32: GaussianDenoiser) -> GaussianDenoiser:
    return gaussian32  # tests/conftest.py: d = 32, eigenvalues from 25 to 1e-3, float64


@pytest.fixture(scope="module")
def x_t() -> torch.Tensor:
    return SIGMA_T * torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


def counting(model: GaussianDenoiser, calls: list[float]):
    def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        calls.append(float(sigma))
        return model(x, sigma)

    return denoiser


# --------------------------------------------------------------------------- convergence order


@pytest.mark.parametrize("case", list(CASES))
def test_converges_to_closed_form_at_known_order(model: GaussianDenoiser, x_t: torch.Tensor, case: str) -> None:
    sampler, kwargs, order = CASES[case]
    exact = model.jump(x_t, SIGMA_T, SIGMA_MIN)
    err = [rel_error(sampler(model, x_t, karras_sigmas(n, append_zero=False), **kwargs), exact) for n in STEPS]
    assert np.all(np.diff(err) < 0), err
    assert loglog_slope(STEPS[1:], err[1:]) == pytest.approx(-order, abs=0.3), err


def test_unipc_predictor_alone_is_dpmpp_2m(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    """UniP-2 with B(h) = expm1(-h) and rho = 1/2 is DPM-Solver++(2M): the corrector is what UniPC adds."""
    sigmas = karras_sigmas(20)
    torch.testing.assert_close(sample_unipc(model, x_t, sigmas, use_corrector=False),
                               sample_dpmpp_2m(model, x_t, sigmas), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- start anywhere, end at 0


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "unipc"])
def test_started_midway_follows_closed_form(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    """From the exact state at sigma = 5, every recorded state is on the closed-form trajectory."""
    sigmas = karras_sigmas(64, sigma_max=SIGMA_MID, append_zero=False)
    rec = TrajectoryRecorder()
    out = SAMPLERS[name](model, model.jump(x_t, SIGMA_T, SIGMA_MID), sigmas, callback=rec)
    exact = model.trajectory(x_t, SIGMA_T, rec.sigmas).x
    assert rec.sigmas == pytest.approx(sigmas[1:].tolist(), rel=0)
    assert max(rel_error(got, want) for got, want in zip(rec.xs, exact, strict=True)) < 1e-3
    assert rel_error(out, model.jump(x_t, SIGMA_T, SIGMA_MIN)) < 1e-3


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "unipc"])
def test_step_to_zero_is_the_denoiser(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    """The step to sigma = 0 returns D(x; sigma_min) of the state at sigma_min, so its error at 0 is at most the
    error at sigma_min plus that of denoising the exact state (D is affine with a contraction as Jacobian)."""
    at_min = SAMPLERS[name](model, x_t, karras_sigmas(32, append_zero=False))
    at_zero = SAMPLERS[name](model, x_t, karras_sigmas(32))
    torch.testing.assert_close(at_zero, model(at_min, SIGMA_MIN), rtol=1e-10, atol=1e-10)

    exact_min, exact_zero = model.jump(x_t, SIGMA_T, SIGMA_MIN), model.jump(x_t, SIGMA_T, 0.0)
    err_zero = (at_zero - exact_zero).flatten(1).norm(dim=1)
    floor = (model(exact_min, SIGMA_MIN) - exact_zero).flatten(1).norm(dim=1)
    bound = (at_min - exact_min).flatten(1).norm(dim=1) + floor
    assert bool((err_zero <= bound * (1 + 1e-9)).all())


# --------------------------------------------------------------------------- teleportation


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "unipc"])
def test_teleport_converges_to_the_same_endpoint(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    """The jump is exact for Gaussian data, so teleport + sampler converges to the endpoint of the ODE from 80,
    at the sampler's order, and beats the sampler run from 80 with the same number of steps."""
    sampler, _, order = CASES[name]
    exact = model.jump(x_t, SIGMA_T, SIGMA_MIN)
    steps = [16, 32, 64]
    teleported = [rel_error(sample_with_teleport(sampler, model, model, x_t, SIGMA_T, SIGMA_MID, n, append_zero=False),
                            exact) for n in steps]
    plain = [rel_error(sampler(model, x_t, karras_sigmas(n, append_zero=False)), exact) for n in steps]
    assert loglog_slope(steps, teleported) == pytest.approx(-order, abs=0.35), teleported
    assert all(t < p for t, p in zip(teleported, plain, strict=True)), (teleported, plain)


def test_teleport_jump_costs_no_evaluations(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    for name in ["heun", "dpmpp_2m", "unipc"]:
        calls: list[float] = []
        sample_with_teleport(SAMPLERS[name], counting(model, calls), model, x_t, SIGMA_T, SIGMA_MID, 10)
        assert len(calls) == nfe(name, teleport_schedule(10, SIGMA_MID))
        assert max(calls) == SIGMA_MID


def test_no_teleport_when_skip_is_above_start(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    plain = sample_dpmpp_2m(model, x_t, karras_sigmas(12, sigma_max=SIGMA_T))
    for sigma_skip in [SIGMA_T, 100.0]:
        torch.testing.assert_close(
            sample_with_teleport(sample_dpmpp_2m, model, model, x_t, SIGMA_T, sigma_skip, 12), plain, rtol=0, atol=0)


def test_teleport_schedule_is_fresh() -> None:
    """n levels from sigma_skip to sigma_min, then 0: a re-discretization, not the tail of the schedule from 80.

    A Karras schedule is linear in sigma^(1/rho), so with as many levels as the tail has the two coincide;
    with another budget (here the full 18 steps after skipping 5 of 18) they differ.
    """
    sigma_skip = skip_to_sigma(18, 5)
    tail = karras_sigmas(18)[5:]
    assert float(tail[0]) == pytest.approx(sigma_skip, rel=1e-15)
    torch.testing.assert_close(teleport_schedule(13, sigma_skip), tail, rtol=1e-12, atol=0)
    fresh = teleport_schedule(18, sigma_skip)
    assert len(fresh) == 19 and float(fresh[0]) == sigma_skip
    assert float(fresh[-2]) == pytest.approx(SIGMA_MIN, rel=1e-12) and float(fresh[-1]) == 0.0
    assert bool((fresh[1:-1] < sigma_skip).all()) and bool((torch.diff(fresh) < 0).all())
    assert float(teleport_schedule(7, SIGMA_MID)[0]) == SIGMA_MID  # pinned to the jump's target exactly
    assert skip_to_sigma(18, 0) == SIGMA_T
    with pytest.raises(ValueError, match="sigma_skip"):
        teleport_schedule(10, SIGMA_MIN)
    with pytest.raises(ValueError, match="n_skip"):
        skip_to_sigma(18, 17)


# --------------------------------------------------------------------------- NFE, callback, bad input


@pytest.mark.parametrize(("name", "with_zero", "without_zero"),
                         [("heun", 19, 18), ("dpmpp_2m", 10, 9), ("unipc", 10, 9), ("euler", 10, 9)])
def test_nfe_counts(model: GaussianDenoiser, x_t: torch.Tensor, name: str, with_zero: int, without_zero: int) -> None:
    for sigmas, expected in [(karras_sigmas(10), with_zero), (karras_sigmas(10, append_zero=False), without_zero)]:
        calls: list[float] = []
        SAMPLERS[name](counting(model, calls), x_t[:2], sigmas)
        assert len(calls) == nfe(name, sigmas) == nfe(SAMPLERS[name], sigmas) == expected


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_callback_records_every_step(model: GaussianDenoiser, x_t: torch.Tensor, name: str) -> None:
    sigmas = karras_sigmas(10)
    rec = TrajectoryRecorder()
    out = SAMPLERS[name](model, x_t[:2], sigmas, callback=rec)
    assert len(rec.xs) == len(sigmas) - 1 and rec.sigmas[-1] == 0.0
    torch.testing.assert_close(rec.xs[-1], out)


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
@pytest.mark.parametrize(("sigmas", "message"), [
    ([1.0, 2.0], "decreasing"),
    ([1.0], "at least two"),
    ([1.0, 0.0, -1.0], "non-negative"),
    ([float("inf"), 1.0], "finite"),
    ([[2.0, 1.0]], "1-d"),
])
def test_bad_schedules_raise(model: GaussianDenoiser, x_t: torch.Tensor, name: str, sigmas: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SAMPLERS[name](model, x_t[:1], torch.tensor(sigmas, dtype=F64))


def test_bad_arguments_raise(model: GaussianDenoiser, x_t: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="order"):
        sample_unipc(model, x_t[:1], karras_sigmas(4), order=4)
    with pytest.raises(ValueError, match="unknown sampler"):
        nfe("dpm_fast", karras_sigmas(4))

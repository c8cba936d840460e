"""Samplers against the exact Gaussian solution: Heun is second order, Euler first (lib.diffusion.samplers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.data.statistics import compute_stats
from lib.diffusion.samplers import TrajectoryRecorder, heun_nfe, sample_euler, sample_heun, solve_ivp_trajectory
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser
from lib.verdicts import loglog_slope

F64 = torch.float64
SIGMA_T = 80.0


@pytest.fixture(scope="module")
def model() -> GaussianDenoiser:
    gen = torch.Generator().manual_seed(0)
    d = 8
    mix = torch.randn(d, d, generator=gen, dtype=F64) * torch.logspace(0.5, -1.5, d, dtype=F64)
    x = torch.randn(500, d, generator=gen, dtype=F64) @ mix.T
    return GaussianDenoiser.from_stats(compute_stats(x.reshape(500, 1, 2, 4)), dtype=F64)


def start(n: int = 6) -> torch.Tensor:
    return SIGMA_T * torch.randn(n, 1, 2, 4, generator=torch.Generator().manual_seed(1), dtype=F64)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


def errors(sampler, model: GaussianDenoiser, steps: list[int]) -> list[float]:
    """Error at sigma_min against the closed form, on Karras schedules without the final zero."""
    x_t = start()
    exact = model.jump(x_t, SIGMA_T, 0.002)
    return [rel_error(sampler(model, x_t, karras_sigmas(n, append_zero=False)), exact) for n in steps]


def test_heun_is_second_order(model: GaussianDenoiser) -> None:
    steps = [16, 32, 64, 128]
    err = errors(sample_heun, model, steps)
    ratios = np.array(err[:-1]) / np.array(err[1:])
    assert np.all((ratios > 3.3) & (ratios < 5.0)), ratios  # about fourfold per doubling
    assert loglog_slope(steps, err) == pytest.approx(-2.0, abs=0.25)


def test_euler_is_first_order(model: GaussianDenoiser) -> None:
    steps = [32, 64, 128, 256]
    assert loglog_slope(steps, errors(sample_euler, model, steps)) == pytest.approx(-1.0, abs=0.15)


def test_solve_ivp_matches_closed_form(model: GaussianDenoiser) -> None:
    x_t = start(3)
    grid = [SIGMA_T, 10.0, 1.0, 0.01]
    states = solve_ivp_trajectory(model, x_t, grid, rtol=1e-11, atol=1e-11)
    exact = model.trajectory(x_t, SIGMA_T, grid).x
    for got, want in zip(states, exact, strict=True):
        assert rel_error(got, want) < 1e-8


def test_samplers_start_from_the_first_sigma(model: GaussianDenoiser) -> None:
    """Started part-way (the teleportation use), Heun continues the exact solution from there."""
    x_t = start()
    x_mid = model.jump(x_t, SIGMA_T, 5.0)
    sigmas = karras_sigmas(64, sigma_max=5.0, append_zero=False)
    assert rel_error(sample_heun(model, x_mid, sigmas), model.jump(x_t, SIGMA_T, 0.002)) < 1e-3


def test_callback_records_every_step(model: GaussianDenoiser) -> None:
    sigmas = karras_sigmas(10)
    rec = TrajectoryRecorder()
    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return model(x, sigma)

    out = sample_heun(counting, start(2), sigmas, callback=rec)
    assert len(rec.xs) == len(sigmas) - 1 and rec.sigmas[-1] == 0.0
    torch.testing.assert_close(rec.xs[-1], out)
    assert len(calls) == heun_nfe(sigmas) == 19


def test_schedule_must_decrease(model: GaussianDenoiser) -> None:
    with pytest.raises(ValueError):
        sample_heun(model, start(1), torch.tensor([1.0, 2.0], dtype=F64))
    with pytest.raises(ValueError):
        solve_ivp_trajectory(model, start(1), [1.0, 0.0])

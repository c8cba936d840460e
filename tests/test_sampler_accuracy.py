"""Sampler diagnostics at small budgets (lib.analysis.sampler_accuracy) and the first-order final step of
DPM-Solver++(2M)."""

from __future__ import annotations

import math

import pytest
import torch

from lib.analysis import sampler_accuracy
from lib.diffusion import multistep, samplers
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser

F64 = torch.float64


def test_extrapolation_weights_are_h_over_twice_the_previous_h() -> None:
    levels = [80.0, 8.0, 0.8, 0.008, 0.0]
    weights = sampler_accuracy.extrapolation_weights(levels)
    assert weights[0] == 0.0 and weights[-1] == 0.0  # first step and the step to 0 are first order
    assert weights[1] == pytest.approx(0.5) and weights[2] == pytest.approx(math.log(100) / (2 * math.log(10)))


def test_schedule_table_lists_every_step_of_each_budget() -> None:
    table = sampler_accuracy.schedule_table([3, 4])
    assert list(table.groupby("levels").size()) == [3, 4]
    odd = table[table["levels"] == 3]
    assert float(odd["sigma"].iloc[1]) == pytest.approx(float(karras_sigmas(3)[1]))  # the midpoint level 2.52
    assert float(odd["sigma"].iloc[1]) == pytest.approx(2.52, abs=0.01)
    assert math.isinf(float(odd["h"].iloc[-1]))


def test_first_order_final_step_changes_only_the_step_onto_the_last_level() -> None:
    gen = torch.Generator().manual_seed(0)
    eigvecs, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=F64))
    model = GaussianDenoiser(torch.zeros(8, dtype=F64), torch.logspace(1, -2, 8, dtype=F64), eigvecs, (2, 2, 2),
                             dtype=F64)
    x_t = 80.0 * torch.randn(4, 2, 2, 2, generator=gen, dtype=F64)
    three = karras_sigmas(3).to(F64)  # its only second-order step is the one onto the last level
    ddim = multistep.sample_unipc(model, x_t.clone(), three, order=1, use_corrector=False)
    torch.testing.assert_close(multistep.sample_dpmpp_2m(model, x_t.clone(), three, lower_order_final=True), ddim)
    assert not torch.allclose(multistep.sample_dpmpp_2m(model, x_t.clone(), three), ddim)
    states = {}
    for flag in (False, True):
        recorder = samplers.TrajectoryRecorder()
        multistep.sample_dpmpp_2m(model, x_t.clone(), karras_sigmas(8).to(F64), callback=recorder,
                                 lower_order_final=flag)
        states[flag] = recorder.xs
    for i in range(5):  # identical until the step onto sigma_min
        torch.testing.assert_close(states[True][i], states[False][i])
    assert not torch.allclose(states[True][6], states[False][6])


def test_quality_by_schedule_scores_every_run_from_the_same_noise() -> None:
    x_t = 80.0 * torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    seen = []

    def score(samples):
        seen.append(samples.clone())
        return {"fd": float(samples.abs().mean())}

    def zero(x, sigma):
        return torch.zeros_like(x)

    runs = {"three": (multistep.sample_dpmpp_2m, sampler_accuracy.schedule_of([80.0, 2.5, 0.002])),
            "four": (multistep.sample_dpmpp_2m, karras_sigmas(4))}
    table = sampler_accuracy.quality_by_schedule(zero, runs, x_t, score, batch_size=4)
    assert list(table["run"]) == ["three", "four"] and list(table["nfe"]) == [3, 4]
    assert table["levels"].iloc[0] == "80 2.5 0.002" and (table["fd"] == 0.0).all()
    assert all(s.shape == x_t.shape for s in seen)


def test_endpoint_distances_fall_for_a_converging_sampler_and_not_for_a_biased_one():
    """On the Gaussian, Heun's distance to the fine reference falls with N; a sampler that stops short of the end
    (here: every sample shifted by a constant, as a sampler with a systematic error would be) levels off."""
    from lib.analysis.sampler_accuracy import endpoint_distances
    from lib.diffusion.samplers import sample_heun

    gen = torch.Generator().manual_seed(1)
    eigvecs, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=F64))
    model = GaussianDenoiser(torch.zeros(8, dtype=F64), torch.logspace(1, -2, 8, dtype=F64), eigvecs, (2, 2, 2),
                             dtype=F64)
    x_t = 80.0 * torch.randn(6, 2, 2, 2, generator=gen, dtype=F64)

    def stops_early(denoiser, x, sigmas):
        return sample_heun(denoiser, x, sigmas) + 0.05

    table = endpoint_distances(model, {"heun": sample_heun, "biased": stops_early}, (8, 32, 128), x_t,
                               reference_levels=256)
    heun = table[table["sampler"] == "heun"]["distance"].to_numpy()
    biased = table[table["sampler"] == "biased"]["distance"].to_numpy()
    assert heun[0] > heun[1] > heun[2] and heun[2] < 1e-3
    assert biased[2] > 10 * heun[2] and biased[2] > 0.5 * biased[1]

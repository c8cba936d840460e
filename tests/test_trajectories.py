"""Trajectory recording and comparison: exact on Gaussian data, and the break-sigma reader can fail."""

from __future__ import annotations

import torch

from lib import data, edm, gaussian, trajectories


def test_heun_trajectory_of_the_gaussian_follows_the_closed_form():
    x = torch.randn(500, 1, 2, 4, dtype=torch.float64) * torch.linspace(0.1, 2, 8).reshape(1, 1, 2, 4)
    model = gaussian.GaussianDenoiser.from_stats(data.compute_stats(x), dtype=torch.float64)
    x_t = 80 * torch.randn(4, 1, 2, 4, dtype=torch.float64)
    run = trajectories.heun_trajectory(model, x_t, edm.karras_sigmas(256))
    assert run.x.shape == (256, 4, 1, 2, 4) and len(run.sigmas) == 256
    assert torch.equal(run.x[0], x_t.float()), "the first recorded state is the starting point"
    exact = model.trajectory(x_t, 80.0, run.sigmas)
    assert float(trajectories.rms_distance(run.x, exact.x).max()) < 1e-3
    assert float(trajectories.rms_distance(run.x0_hat, exact.x0_hat).max()) < 1e-3


def test_rms_distance_known_value():
    a = torch.zeros(2, 3, 1, 2, 2)
    b = torch.ones(2, 3, 1, 2, 2) * 0.5
    assert torch.allclose(trajectories.rms_distance(a, b), torch.full((2, 3), 0.5, dtype=torch.float64))


def test_prediction_break_sigma():
    sigmas = [80.0, 20.0, 5.0, 1.0, 0.1]
    assert trajectories.prediction_break_sigma(sigmas, [0.0, 0.01, 0.05, 0.2, 0.4], 0.1) == 1.0
    assert trajectories.prediction_break_sigma(sigmas, [0.3, 0.01, 0.05, 0.2, 0.4], 0.1) == 80.0
    assert trajectories.prediction_break_sigma(sigmas, [0.0, 0.0, 0.0, 0.0, 0.05], 0.1) is None


def test_c5_verdict_holds_and_fails():
    from lib import verdicts

    sigmas = [80.0, 40.0, 20.0, 10.0, 5.0, 1.0, 0.1]
    good = verdicts.c5_verdict(sigmas, [0, 0.01, 0.02, 0.03, 0.05, 0.2, 0.4], [0, 0, 0, 0, 0.01, 0.05, 0.3],
                               [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert good.holds and good.break_sigma_x0 == 1.0 and good.gaussian_closer_than_delta
    assert "verdict: C5 REPRODUCED" in good.report()
    bad = verdicts.c5_verdict(sigmas, [0, 0.05, 0.2, 0.3, 0.3, 0.3, 0.4], [0] * 7, [0.0] * 7)
    assert not bad.holds and bad.break_sigma_x0 == 20.0 and not bad.gaussian_closer_than_delta
    assert bad.holds_for_x and not bad.holds_for_x0
    assert "verdict: C5 PARTLY REPRODUCED" in bad.report()
    worse = verdicts.c5_verdict(sigmas, [0.2] * 7, [0.2] * 7, [0.0] * 7)
    assert not worse.holds_for_x and "verdict: C5 NOT REPRODUCED" in worse.report()

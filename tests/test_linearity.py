"""The linearity tables: exact answers for identical models, shared probes, and the validity-scale reader."""

from __future__ import annotations

import pytest
import torch

from lib.analysis import linearity
from lib.data import statistics
from lib.models import gaussian, isotropic


@pytest.fixture
def toy():
    x = torch.randn(400, 1, 2, 4) * torch.linspace(0.2, 2.0, 8).reshape(1, 1, 2, 4) + 0.5
    stats = statistics.compute_stats(x)
    return x, gaussian.GaussianDenoiser.from_stats(stats), isotropic.MeanDenoiser.from_stats(stats)


def test_a_network_identical_to_a_model_has_ev_one(toy):
    x, gauss, mean = toy
    bank = linearity.ProbeBank(x[:32], [0.1, 1.0, 10.0], "train")
    bank.add_models({"gaussian": gauss, "mean": mean}, progress=False)
    table = bank.score_network(gauss, step=7)
    assert list(table.columns) == linearity.COLUMNS
    assert len(table) == 3 * 2
    same = table[table["model"] == "gaussian"]
    for column in ("St_EV", "Dt_EV", "St_EV_rev", "Dt_EV_rev"):
        assert same[column].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert (same["St_EV_std"] < 1e-6).all()
    assert (table["step"] == 7).all() and (table["n_probes"] == 32).all()
    other = table[table["model"] == "mean"].sort_values("sigma")
    assert (other["St_EV"].to_numpy() < 1.0).all()
    assert other["St_EV"].is_monotonic_increasing, "the mean's score error shrinks relative to -x/sigma^2"


def test_probes_are_shared_and_reproducible(toy):
    x, gauss, _ = toy
    a = linearity.ProbeBank(x[:8], [0.5, 2.0], "train", seed=3)
    b = linearity.ProbeBank(x[:8], [0.5, 2.0], "train", seed=3)
    c = linearity.ProbeBank(x[:8], [0.5, 2.0], "train", seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.x, b.x, strict=True))
    assert not torch.equal(a.x[0], c.x[0])


def test_models_are_evaluated_once_and_timed(toy):
    x, gauss, _ = toy
    calls = []

    def counting(xb, sigma):
        calls.append(sigma)
        return gauss(xb, sigma)

    bank = linearity.ProbeBank(x[:16], [0.1, 1.0], "test", batch=8)
    bank.add_models({"g": counting}, progress=False)
    bank.add_models({"g": counting}, progress=False)
    bank.score_network(gauss, step=0)
    bank.score_network(gauss, step=1)
    assert len(calls) == 2 * 2  # 2 sigmas x 2 batches, once
    assert set(bank.timings) == {"g", "network"}

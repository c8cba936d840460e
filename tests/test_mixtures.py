"""Exact checks of the training-set (delta-mixture) denoiser and its far field (lib.models.mixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.data.statistics import compute_stats
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import MeanDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser, far_field_residuals, relative_score_residual
from lib.verdicts import loglog_slope

F64 = torch.float64


def random_set(n: int = 300, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.2, 16, dtype=F64).reshape(1, 1, 4, 4)
    skewed = torch.randn((n, 1, 4, 4), generator=gen, dtype=F64).exp()  # skewed: third moments != 0
    return (skewed * scales).to(dtype)


def brute_force(data: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    flat, pts = x.reshape(len(x), -1).double(), data.reshape(len(data), -1).double()
    logits = -torch.cdist(flat, pts) ** 2 / (2 * sigma**2)
    return (torch.softmax(logits, 1) @ pts).reshape(x.shape)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0])
def test_matches_brute_force_softmax(sigma: float) -> None:
    data = random_set()
    x = data[:6] + sigma * torch.randn(data[:6].shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    expected = brute_force(data, x, sigma)
    torch.testing.assert_close(DeltaMixtureDenoiser(data, dtype=F64)(x, sigma), expected, rtol=1e-10, atol=1e-10)
    out32 = DeltaMixtureDenoiser(data.float())(x.float(), sigma)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), expected, rtol=1e-4, atol=1e-4)


def test_chunking_does_not_change_the_answer() -> None:
    data = random_set(n=257)
    x = random_set(n=5, seed=3)
    whole = DeltaMixtureDenoiser(data, dtype=F64, chunk_size=10_000)(x, 0.7)
    for chunk in (1, 7, 64, 256):
        torch.testing.assert_close(DeltaMixtureDenoiser(data, dtype=F64, chunk_size=chunk)(x, 0.7), whole)


def test_log_weights_are_a_posterior() -> None:
    data = random_set(n=50)
    x = random_set(n=3, seed=4)
    lw = DeltaMixtureDenoiser(data, dtype=F64).log_weights(x, 0.5)
    torch.testing.assert_close(lw.exp().sum(1), torch.ones(3, dtype=F64))


def test_per_sample_sigma() -> None:
    data = random_set()
    model = DeltaMixtureDenoiser(data, dtype=F64, chunk_size=100)
    x = random_set(n=3, seed=5)
    sigmas = torch.tensor([0.2, 1.0, 4.0], dtype=F64)
    batched = model(x, sigmas)
    for i, s in enumerate(sigmas.tolist()):
        torch.testing.assert_close(batched[i:i + 1], model(x[i:i + 1], s))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_stable_at_small_sigma(dtype: torch.dtype) -> None:
    """At sigma = 0.01 every weight but the nearest point's underflows; no NaN, the nearest point wins."""
    data = random_set(dtype=dtype)
    x = data[:8] + 0.01 * torch.randn(data[:8].shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    out = DeltaMixtureDenoiser(data, dtype=dtype, chunk_size=64)(x, 0.01)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, data[:8])
    far = DeltaMixtureDenoiser(data, dtype=dtype, chunk_size=64)(x + 100.0, 0.01)
    assert torch.isfinite(far).all()


def test_large_sigma_gives_the_mean() -> None:
    data = random_set()
    out = DeltaMixtureDenoiser(data, dtype=F64)(random_set(n=2, seed=9), 1e6)
    torch.testing.assert_close(out, data.mean(0, keepdim=True).expand_as(out), rtol=1e-6, atol=1e-6)


def test_relative_score_residual() -> None:
    x = torch.zeros(2, 1, 1, 2, dtype=F64)
    ref = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]], dtype=F64)
    model = torch.tensor([[[[3.0, 4.5]]], [[[1.0, 0.0]]]], dtype=F64)
    torch.testing.assert_close(relative_score_residual(ref, model, x, 1.0), torch.tensor([0.1, 0.0], dtype=F64))


def test_far_field_delta_score_approaches_gaussian() -> None:
    """At high sigma ||s_delta - s_gauss|| / ||s_delta|| ~ sigma^-3; the mean-only model's ~ sigma^-2."""
    data = random_set(n=400)
    stats = compute_stats(data)
    delta = DeltaMixtureDenoiser(data, dtype=F64)
    models = {"gaussian": GaussianDenoiser.from_stats(stats, dtype=F64),
              "mean": MeanDenoiser.from_stats(stats, dtype=F64)}
    sigmas = list(np.geomspace(50, 2000, 6))
    res = far_field_residuals(delta, models, data[:32], sigmas, generator=torch.Generator().manual_seed(0))
    assert (res["gaussian"] < res["mean"]).all()
    assert (res["gaussian"].diff() < 0).all()
    assert loglog_slope(sigmas, res["gaussian"]) == pytest.approx(-3.0, abs=0.15)
    assert loglog_slope(sigmas, res["mean"]) == pytest.approx(-2.0, abs=0.15)

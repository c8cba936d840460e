"""Gaussian mixtures: exact checks against the Gaussian, the log density and brute force."""

from __future__ import annotations

import math

import pytest
import torch

from lib.data import statistics
from lib.models import gaussian, gmm
from lib.models.denoisers import score


def _anisotropic_data(n: int = 3000, shape=(1, 2, 3)) -> torch.Tensor:
    scales = torch.tensor([2.0, 1.0, 0.5, 0.3, 0.2, 0.1]).reshape(1, *shape)
    return torch.randn(n, *shape, dtype=torch.float64) * scales + 1.0


def _clustered_data(n_per: int = 200) -> torch.Tensor:
    centres = torch.tensor([[3.0, 0.0, 0.0, 0.0], [-3.0, 1.0, 0.0, 0.0], [0.0, -3.0, 2.0, 1.0]])
    blobs = [c + 0.4 * torch.randn(n_per, 4) * torch.tensor([1.0, 0.5, 0.3, 0.2]) for c in centres]
    return torch.cat(blobs).reshape(-1, 1, 2, 2)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 10.0, 80.0])
def test_one_component_mixture_equals_the_gaussian(sigma):
    x = _anisotropic_data()
    mixture = gmm.fit_mixture(x, 1, progress=False).denoiser(ridge=0.0, dtype=torch.float64)
    gauss = gaussian.GaussianDenoiser.from_stats(statistics.compute_stats(x), dtype=torch.float64)
    probes = 3 * torch.randn(16, 1, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(mixture(probes, sigma), gauss(probes, sigma), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [None, 1, 2])
@pytest.mark.parametrize("sigma", [0.05, 0.5, 2.0])
def test_mixture_score_is_the_gradient_of_its_log_density(rank, sigma):
    fit = gmm.fit_mixture(_clustered_data(), 3, seed=0, progress=False)
    model = fit.denoiser(rank=rank, ridge=1e-3, dtype=torch.float64).to(dtype=torch.float64)
    x = (2 * torch.randn(6, 1, 2, 2, dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_density(x, sigma).sum(), x)
    # eigenvectors are stored in float32, so the model is self-consistent to about 1e-6 relative
    torch.testing.assert_close(score(model, x.detach(), sigma), grad, rtol=1e-4, atol=1e-6)
    # and a central finite difference along one coordinate, independently of autograd
    eps = 1e-5
    bump = torch.zeros_like(x)
    bump[:, 0, 1, 0] = eps
    fd = (model.log_density(x.detach() + bump, sigma) - model.log_density(x.detach() - bump, sigma)) / (2 * eps)
    torch.testing.assert_close(fd, score(model, x.detach(), sigma)[:, 0, 1, 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rank", [None, 8])
def test_responsibilities_sum_to_one_and_stay_finite_at_tiny_sigma(rank):
    x = torch.randn(600, 1, 4, 4) + torch.repeat_interleave(torch.randn(6, 1, 4, 4) * 4, 100, dim=0)
    model = gmm.fit_mixture(x, 6, seed=1, progress=False).denoiser(rank=rank)
    probes = x[:32] + 0.01 * torch.randn(32, 1, 4, 4)
    weights = model.responsibilities(probes, 0.01)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(32))
    assert torch.isfinite(model(probes, 0.01)).all()
    far = 1e3 * torch.randn(8, 1, 4, 4)  # far from every component: no underflow to 0/0
    assert torch.isfinite(model.responsibilities(far, 0.01)).all()


def test_mixture_denoiser_is_the_brute_force_posterior_mean_in_one_dimension():
    x = torch.cat([torch.randn(400) * 0.3 - 2, torch.randn(600) * 0.6 + 1.5]).reshape(-1, 1, 1, 1)
    model = gmm.fit_mixture(x, 2, seed=0, progress=False).denoiser(ridge=0.0, dtype=torch.float64)
    means, variances = model.means[:, 0], model.eigvals  # one eigenpair per component
    weights = torch.exp(model.log_weights)
    grid = torch.linspace(-8, 8, 40001, dtype=torch.float64)
    prior = sum(w * torch.exp(-0.5 * (grid - m) ** 2 / v) / torch.sqrt(2 * torch.pi * v)
                for w, m, v in zip(weights, means, variances, strict=True))
    sigma = 0.7
    for y in (-2.5, 0.0, 0.8, 3.0):
        likelihood = torch.exp(-0.5 * (y - grid) ** 2 / sigma**2)
        brute = float((grid * prior * likelihood).sum() / (prior * likelihood).sum())
        got = float(model(torch.tensor([[[[y]]]], dtype=torch.float64), sigma))
        assert got == pytest.approx(brute, abs=1e-6)


def test_fit_is_cached_by_data_key(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    x = _clustered_data(50)
    first = gmm.fit_mixture(x, 3, seed=0, data_key="abc", progress=False)
    assert len(list((tmp_path / "cache" / "gmm").glob("abc_K3_seed0_*.pt"))) == 1
    second = gmm.fit_mixture(x * 0, 3, seed=0, data_key="abc", progress=False)  # served from the cache
    torch.testing.assert_close(first.means, second.means)


def test_bad_component_count_is_a_clear_error():
    with pytest.raises(ValueError, match="n_components must be in"):
        gmm.fit_mixture(torch.randn(5, 1, 1, 2), 6, progress=False)


@pytest.mark.parametrize("rank", [None, 2])
def test_per_sample_sigmas_equal_one_sigma_at_a_time(rank):
    """A (B,) sigma gives each row what that row's sigma alone gives (the shared-sigma path is a shortcut)."""
    model = gmm.fit_mixture(_clustered_data(), 3, seed=0, progress=False).denoiser(rank=rank, dtype=torch.float64)
    x = 2 * torch.randn(5, 1, 2, 2, dtype=torch.float64)
    sigmas = torch.tensor([0.05, 0.5, 0.5, 2.0, 10.0], dtype=torch.float64)
    rows = torch.cat([model(x[i:i + 1], float(s)) for i, s in enumerate(sigmas)])
    torch.testing.assert_close(model(x, sigmas), rows)
    torch.testing.assert_close(model(x, torch.full((5,), 0.5, dtype=torch.float64)), model(x, 0.5))


def _direct_mixture_denoiser(model: gmm.GaussianMixtureDenoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The module docstring's formula component by component in float64, with the explicit residual
    x - mu_k - U_k c_k (no stacking, no ||x - mu||^2 - ||c||^2 difference)."""
    flat = x.flatten(1).double()
    s2, tau = sigma**2, model.floor
    logits, outs = [], []
    for k, cols in enumerate(torch.split(torch.arange(model.eigvals.shape[0]), list(model.widths))):
        u, lam, mu = model.eigvecs[:, cols].double(), model.eigvals[cols].double(), model.means[k].double()
        c = (flat - mu) @ u
        resid = flat - mu - c @ u.T
        var = lam + s2
        logits.append(float(model.log_weights[k]) - 0.5 * ((c**2 / var).sum(1) + (resid**2).sum(1) / (tau + s2)
                      + torch.log(var).sum() + (model.dim - len(cols)) * math.log(tau + s2)))
        outs.append(mu + (c * lam / var) @ u.T + tau / (tau + s2) * resid)
    weights = torch.softmax(torch.stack(logits), dim=0)  # (K, B)
    return (weights.unsqueeze(-1) * torch.stack(outs)).sum(0).reshape(x.shape)


@pytest.mark.parametrize("rank", [None, 3])
@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 10.0])
def test_stacked_float32_mixture_equals_the_direct_float64_formula(rank, sigma):
    """The float32 stacked evaluation against the component-by-component float64 one, at low noise too, where
    ||x - mu_k||^2 - ||c_k||^2 is a small difference divided by tau + sigma^2."""
    gen = torch.Generator().manual_seed(7)
    centres = 3 * torch.randn(5, 16, generator=gen)
    x = (centres.repeat_interleave(60, 0) + 0.5 * torch.randn(300, 16, generator=gen)).reshape(-1, 1, 4, 4)
    model = gmm.fit_mixture(x, 5, seed=0, progress=False).denoiser(rank=rank)
    probes = x[::20] + sigma * torch.randn(15, 1, 4, 4, generator=gen)
    expected = _direct_mixture_denoiser(model, probes, sigma)
    scale = float(expected.abs().max())
    torch.testing.assert_close(model(probes, sigma).double(), expected, rtol=1e-4, atol=1e-4 * scale)

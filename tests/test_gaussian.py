"""Exact checks of the Gaussian models and the closed-form PF-ODE solution (lib.models.gaussian, lib.verdicts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.data.statistics import DatasetStats, compute_stats
from lib.models.gaussian import (
    GaussianDenoiser,
    closed_form_jump,
    closed_form_trajectory,
    decided_fraction,
    emergence_sigmas,
)
from lib.models.isotropic import IsotropicGaussianDenoiser, MeanDenoiser
from lib.verdicts import c1_verdict, loglog_slope

F64 = torch.float64


def toy_stats(d_side: int = 4, n: int = 400, seed: int = 0) -> DatasetStats:
    """Statistics of correlated random images (n, 1, d_side, d_side) with a spread of variances."""
    gen = torch.Generator().manual_seed(seed)
    d = d_side * d_side
    mix = torch.randn(d, d, generator=gen, dtype=F64) * torch.logspace(0, -2, d, dtype=F64)
    x = torch.randn(n, d, generator=gen, dtype=F64) @ mix.T + 0.3
    return compute_stats(x.reshape(n, 1, d_side, d_side))


@pytest.fixture(scope="module")
def stats() -> DatasetStats:
    return toy_stats()


def x_start(stats: DatasetStats, sigma_t: float, b: int = 5, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sigma_t * torch.randn((b, *stats.shape), generator=gen, dtype=F64)


# --------------------------------------------------------------------------- the denoiser


def test_denoiser_matches_matrix_formula(stats: DatasetStats) -> None:
    model = GaussianDenoiser.from_stats(stats, dtype=F64)
    x = x_start(stats, 2.0)
    sigma = 0.7
    gain = stats.cov @ torch.linalg.inv(stats.cov + sigma**2 * torch.eye(stats.dim, dtype=F64))
    expected = stats.mean + (x.reshape(len(x), -1) - stats.mean) @ gain.T
    torch.testing.assert_close(model(x, sigma).reshape(len(x), -1), expected, rtol=1e-10, atol=1e-10)


def test_per_sample_sigma_equals_scalar_calls(stats: DatasetStats) -> None:
    model = GaussianDenoiser.from_stats(stats, rank=5, dtype=F64)
    x = x_start(stats, 1.0, b=3)
    sigmas = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    batched = model(x, sigmas)
    for i, s in enumerate(sigmas.tolist()):
        torch.testing.assert_close(batched[i:i + 1], model(x[i:i + 1], s))


def test_toy_2d_denoiser_is_brute_force_posterior_mean() -> None:
    """On a 2-D Gaussian, D(x; sigma) equals E[x0 | x] computed by quadrature on a fine grid."""
    mean = torch.tensor([0.5, -0.3], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
    lam, vecs = torch.linalg.eigh(cov)
    model = GaussianDenoiser(mean, lam.flip(0), vecs.flip(1), (1, 1, 2), dtype=F64)
    grid = torch.linspace(-8, 8, 801, dtype=F64)
    g1, g2 = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([g1.flatten(), g2.flatten()], 1)
    prior = torch.distributions.MultivariateNormal(mean, cov).log_prob(pts)
    for x, sigma in [((1.0, 2.0), 0.3), ((-2.0, 0.5), 1.0), ((0.2, 0.1), 3.0)]:
        xv = torch.tensor(x, dtype=F64)
        log_post = prior - ((pts - xv) ** 2).sum(1) / (2 * sigma**2)
        post_mean = (torch.softmax(log_post, 0)[:, None] * pts).sum(0)
        out = model(xv.reshape(1, 1, 1, 2), sigma).reshape(2)
        torch.testing.assert_close(out, post_mean, rtol=0, atol=1e-8)


def test_full_rank_by_number_equals_full_rank(stats: DatasetStats) -> None:
    full = GaussianDenoiser.from_stats(stats, dtype=F64)
    rank_d = GaussianDenoiser.from_stats(stats, rank=stats.dim, dtype=F64)
    x = x_start(stats, 3.0)
    torch.testing.assert_close(full(x, 0.4), rank_d(x, 0.4))
    a = full.trajectory(x, 3.0, [2.0, 0.5, 0.0])
    b = rank_d.trajectory(x, 3.0, [2.0, 0.5, 0.0])
    torch.testing.assert_close(a.x, b.x)
    torch.testing.assert_close(a.x0_hat, b.x0_hat)


def test_low_rank_pulls_the_rest_to_the_mean(stats: DatasetStats) -> None:
    r = 3
    model = GaussianDenoiser.from_stats(stats, rank=r, dtype=F64)
    u = stats.eigvecs[:, :r]
    cov_r = u @ torch.diag(stats.eigvals[:r]) @ u.T
    x = x_start(stats, 1.0)
    gain = cov_r @ torch.linalg.pinv(cov_r + 0.25 * torch.eye(stats.dim, dtype=F64))
    expected = stats.mean + (x.reshape(len(x), -1) - stats.mean) @ gain.T
    torch.testing.assert_close(model(x, 0.5).reshape(len(x), -1), expected, rtol=1e-9, atol=1e-9)


def test_float32_default_and_output_dtype(stats: DatasetStats) -> None:
    model = GaussianDenoiser.from_stats(stats)
    assert model.eigvecs.dtype == torch.float32
    x = x_start(stats, 1.0)
    assert model(x.float(), 1.0).dtype == torch.float32
    torch.testing.assert_close(model(x.float(), 1.0).double(), model.to(F64)(x, 1.0), rtol=1e-4, atol=1e-5)


def test_isotropic_models(stats: DatasetStats) -> None:
    x = x_start(stats, 2.0)
    mean_model = MeanDenoiser.from_stats(stats, dtype=F64)
    torch.testing.assert_close(mean_model(x, 0.3), stats.mean.reshape(1, *stats.shape).expand_as(x))
    iso = IsotropicGaussianDenoiser.from_stats(stats, dtype=F64)
    v = stats.trace / stats.dim
    as_gaussian = GaussianDenoiser(stats.mean, torch.full((stats.dim,), v, dtype=F64),
                                   torch.eye(stats.dim, dtype=F64), stats.shape, dtype=F64)
    torch.testing.assert_close(iso(x, 0.8), as_gaussian(x, 0.8))


# --------------------------------------------------------------------------- the closed form


@pytest.mark.parametrize("rank", [None, 4])
def test_closed_form_satisfies_the_ode(stats: DatasetStats, rank: int | None) -> None:
    """Central finite difference of x(sigma) equals (x - D(x; sigma)) / sigma."""
    model = GaussianDenoiser.from_stats(stats, rank=rank, dtype=F64)
    sigma_t = 20.0
    x_t = x_start(stats, sigma_t)
    for sigma in (0.05, 0.3, 1.0, 5.0):
        h = 1e-5 * sigma
        traj = model.trajectory(x_t, sigma_t, [sigma + h, sigma, sigma - h])
        fd = (traj.x[0] - traj.x[2]) / (2 * h)
        rhs = (traj.x[1] - model(traj.x[1], sigma)) / sigma
        torch.testing.assert_close(fd, rhs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(traj.x0_hat[1], model(traj.x[1], sigma))


def test_closed_form_boundary_values(stats: DatasetStats) -> None:
    model = GaussianDenoiser.from_stats(stats, rank=6, dtype=F64)
    x_t = x_start(stats, 10.0)
    traj = closed_form_trajectory(model, x_t, 10.0, [10.0, 0.0])
    torch.testing.assert_close(traj.x[0], x_t)
    torch.testing.assert_close(traj.x0_hat[1], traj.x[1])  # D(x; 0) = x on the data's support


@pytest.mark.parametrize("rank", [None, 5])
def test_jump_equals_trajectory(stats: DatasetStats, rank: int | None) -> None:
    model = GaussianDenoiser.from_stats(stats, rank=rank, dtype=F64)
    x_t = x_start(stats, 80.0)
    for sigma in (0.0, 0.5, 7.0):
        torch.testing.assert_close(closed_form_jump(model, x_t, 80.0, sigma),
                                   model.trajectory(x_t, 80.0, [sigma]).x[0])


def test_jump_maps_noised_marginals_exactly(stats: DatasetStats) -> None:
    """M (Sigma + sigma_T^2 I) M^T = Sigma + sigma^2 I: the jump carries p_sigma_T onto p_sigma."""
    model = GaussianDenoiser.from_stats(stats, dtype=F64)
    eye = torch.eye(stats.dim, dtype=F64)
    for sigma in (0.0, 1.0):
        op = model.jump_operator(80.0, sigma)
        torch.testing.assert_close(op @ (stats.cov + 80.0**2 * eye) @ op.T, stats.cov + sigma**2 * eye,
                                   rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- feature emergence


def test_decided_fraction_and_emergence_sigmas(stats: DatasetStats) -> None:
    model = GaussianDenoiser.from_stats(stats, dtype=F64)
    sigmas = torch.logspace(1.5, -3, 400, dtype=F64)
    traj = model.trajectory(x_start(stats, 80.0, b=4), 80.0, torch.cat([sigmas, sigmas.new_zeros(1)]))
    q = decided_fraction(model, traj.x0_hat[:-1], traj.x[-1])
    lam = stats.eigvals
    torch.testing.assert_close(q, lam / (lam + sigmas[:, None] ** 2), rtol=1e-8, atol=1e-10)
    k = 8
    s_star = emergence_sigmas(sigmas, q[:, :k])
    torch.testing.assert_close(s_star, lam[:k].sqrt(), rtol=2e-3, atol=0)


def test_emergence_sigmas_nan_when_never_reached() -> None:
    frac = torch.tensor([[0.1, 0.6], [0.2, 0.7], [0.3, 0.9]], dtype=F64)
    out = emergence_sigmas(torch.tensor([3.0, 2.0, 1.0]), frac)
    assert torch.isnan(out).all()


# --------------------------------------------------------------------------- verdict


def test_loglog_slope_of_power_law() -> None:
    x = np.geomspace(1, 100, 7)
    assert loglog_slope(x, 3 * x**-2.0) == pytest.approx(-2.0)


def test_c1_verdict_holds_and_fails() -> None:
    lam = torch.logspace(1, -2, 20, dtype=F64)
    good = c1_verdict(1e-9, 2.04, lam.sqrt() * 1.01, lam, far_field_slope=-2.98)
    assert good.holds and "C1 REPRODUCED" in good.report() and "NO" not in good.report()
    reversed_order = c1_verdict(1e-9, 2.04, lam.sqrt().flip(0), lam)
    assert not reversed_order.emergence_follows_variance and not reversed_order.holds
    assert "NOT REPRODUCED" in reversed_order.report()
    assert not c1_verdict(1e-3, 2.0, lam.sqrt(), lam).matches_solve_ivp
    assert not c1_verdict(1e-9, 1.0, lam.sqrt(), lam).heun_second_order
    assert not c1_verdict(1e-9, 2.0, lam.sqrt() * 3, lam).emergence_at_sqrt_lambda
    assert not c1_verdict(1e-9, 2.0, lam.sqrt(), lam, far_field_slope=-2.0).holds

from __future__ import annotations

import pytest
import torch

from lib.analysis import metrics


def test_ev_is_one_for_identical_inputs():
    a = torch.randn(8, 1, 4, 4)
    torch.testing.assert_close(metrics.explained_variance(a, a.clone()), torch.ones(8, dtype=torch.float64))


def test_ev_falls_as_noise_is_added():
    a = torch.randn(64, 1, 8, 8)
    evs = [float(metrics.explained_variance(a, a + eps * torch.randn_like(a)).mean()) for eps in (0.01, 0.1, 0.5, 1.0)]
    assert evs == sorted(evs, reverse=True)
    assert evs[0] > 0.999 and evs[-1] < 0.2


def test_ev_known_values():
    a = torch.tensor([[3.0, 4.0]])
    assert float(metrics.explained_variance(a, torch.zeros_like(a))) == 0.0
    assert float(metrics.explained_variance(a, 0.5 * a)) == pytest.approx(0.75)
    assert float(metrics.explained_variance(a, -a)) == pytest.approx(-3.0)


def test_ev_is_asymmetric_and_checks_shapes():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    assert float(metrics.explained_variance(a, b)) == pytest.approx(0.0)
    assert float(metrics.explained_variance(b, a)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.explained_variance(a, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="exactly zero"):
        metrics.explained_variance(torch.zeros(1, 2), a)


def test_mean_and_std():
    assert metrics.mean_and_std(torch.tensor([1.0, 3.0])) == (2.0, 1.0)
    assert metrics.mean_and_std(torch.tensor([5.0])) == (5.0, 0.0)


def test_frechet_distance_of_identical_gaussians_is_zero():
    a = torch.randn(500, 6, dtype=torch.float64)
    mu, cov = metrics.gaussian_moments(a)
    assert metrics.frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    assert metrics.frechet_distance_from_features(a, a.clone()) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_the_closed_form_for_known_gaussians():
    # commuting covariances: FD = ||mu1-mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert metrics.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)
    # a rotation of both covariances changes nothing
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    rotated = metrics.frechet_distance(q @ mu1.double(), q @ torch.diag(a).double() @ q.T,
                                       q @ mu2.double(), q @ torch.diag(b).double() @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_with_non_commuting_covariances_against_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(5, 5, generator=gen, dtype=torch.float64), torch.randn(5, 5, generator=gen, dtype=torch.float64)
    c1, c2 = x @ x.T + 0.1 * torch.eye(5), y @ y.T + 0.1 * torch.eye(5)
    mu = torch.zeros(5)
    root = scipy_linalg.sqrtm(c1.numpy() @ c2.numpy())
    expected = float(torch.trace(c1 + c2)) - 2 * float(root.real.trace())
    assert metrics.frechet_distance(mu, c1, mu, c2) == pytest.approx(expected, rel=1e-8)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=gen), torch.randn(400, 8, generator=gen)
    same, _ = metrics.kernel_inception_distance(a, b, n_subsets=10, subset_size=200)
    shifted, _ = metrics.kernel_inception_distance(a, b + 1.0, n_subsets=10, subset_size=200)
    assert abs(same) < 0.02 and shifted > 10 * max(abs(same), 1e-3)

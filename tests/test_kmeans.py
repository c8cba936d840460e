"""lib.models.kmeans: Lloyd's k-means against what is known exactly, and against scikit-learn's KMeans."""

from __future__ import annotations

import pytest
import torch

from lib.models import kmeans


def _blobs(n_per: int = 50, k: int = 6, d: int = 20, spread: float = 0.05, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.randn(k, d, generator=gen)
    truth = torch.arange(k).repeat_interleave(n_per)
    return centres[truth] + spread * torch.randn(k * n_per, d, generator=gen), truth


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_well_separated_clusters_are_recovered_exactly() -> None:
    x, truth = _blobs()
    result = kmeans.kmeans(x, 6, seed=0)
    assert result.converged
    assert _same_partition(result.labels, truth)


def test_converged_centres_are_the_cluster_means_and_every_point_is_at_its_nearest_centre() -> None:
    x = torch.randn(600, 8, generator=torch.Generator().manual_seed(1))
    result = kmeans.kmeans(x, 12, seed=0, tol=0.0, max_iter=500)
    assert result.converged
    for k in range(12):
        torch.testing.assert_close(result.centres[k], x[result.labels == k].mean(0), atol=1e-5, rtol=0)
    exact = torch.cdist(x.double(), result.centres.double()).argmin(1)
    assert torch.equal(exact, result.labels)
    inertia = float(((x.double() - result.centres.double()[result.labels]) ** 2).sum())
    assert result.inertia == pytest.approx(inertia, rel=1e-6)


def test_no_cluster_is_empty_even_with_repeated_points() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]).repeat(7, 1)  # 21 points, 3 distinct
    result = kmeans.kmeans(x, 10, seed=3)
    assert torch.bincount(result.labels, minlength=10).min() >= 1


def test_seeded_runs_repeat_and_seeds_differ() -> None:
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(2))
    a, b, c = kmeans.kmeans(x, 30, seed=0), kmeans.kmeans(x, 30, seed=0), kmeans.kmeans(x, 30, seed=1)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


def test_inertia_is_as_good_as_scikit_learn_kmeans() -> None:
    from sklearn.cluster import KMeans

    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(4))
    ours = kmeans.kmeans(x, 40, seed=0)
    theirs = KMeans(n_clusters=40, n_init=1, random_state=0).fit(x.numpy())
    assert ours.inertia <= 1.02 * theirs.inertia_


@pytest.mark.parametrize(("points", "k", "message"), [
    (torch.zeros(5, 2), 0, "n_clusters must be in"),
    (torch.zeros(5, 2), 6, "n_clusters must be in"),
    (torch.zeros(5, 2, 2), 2, "points as rows"),
])
def test_bad_input_is_refused_with_what_is_valid(points, k, message) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans.kmeans(points, k)

"""k-means clustering (Lloyd's algorithm) in torch: the clusters behind the Gaussian mixtures of `lib.models.gmm`.

Lloyd's algorithm alternates two steps until the partition stops changing:

    assign   l_i = argmin_k ||x_i - c_k||^2 = argmin_k (||c_k||^2 - 2 x_i . c_k),
    update   c_k = mean of the points with l_i = k,

the assignment being one (n, K) matrix product per chunk of points (the ||x_i||^2 term does not change the
argmin). It stops when at most a fraction `tol` of the points changes cluster in an iteration, or after
`max_iter` iterations. Centres start from k-means++ (Arthur & Vassilvitskii, 2007: each new centre drawn with
probability proportional to the squared distance to the nearest centre so far) run on a random subset of
max(4096, 4K) points, which keeps the K sequential draws cheap for K in the thousands. A cluster left empty
is re-seeded with the point farthest from its centre. Everything is seeded; centres are accumulated in float64.

This replaces scikit-learn's MiniBatchKMeans, which took 24 and 37 minutes for K = 1,000 and 2,000 on the
60,000 MNIST images on 2 CPU cores (beside other jobs); full-batch Lloyd steps are large matrix products:
K = 1,000 in 43 s on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Points per assignment chunk: the (chunk, K) distance block stays within a few hundred MB at K = 2,000.
ASSIGN_CHUNK = 8192


@dataclass
class KMeansResult:
    labels: torch.Tensor  # (N,) int64, every cluster non-empty
    centres: torch.Tensor  # (K, d) float32, the mean of each cluster's points
    inertia: float  # sum of squared distances of the points to their centres
    n_iter: int  # Lloyd iterations run
    converged: bool  # whether the fraction of points changing cluster fell to `tol`


def assign(x: torch.Tensor, centres: torch.Tensor, x_norms: torch.Tensor | None = None,
           chunk: int = ASSIGN_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every point and the squared distance to it, ((N,) int64, (N,) float32); `x_norms`,
    the points' ||x||^2, can be passed when they do not change between calls."""
    x_norms = (x**2).sum(1) if x_norms is None else x_norms
    centre_norms = (centres.double() ** 2).sum(1).float()
    labels, dists = [], []
    for block, norms in zip(x.split(chunk), x_norms.split(chunk), strict=True):
        partial = torch.addmm(centre_norms, block, centres.T, alpha=-2.0)  # ||c||^2 - 2 x.c, (chunk, K)
        best, label = partial.min(1)
        labels.append(label)
        dists.append((best + norms).clamp_min_(0.0))
    return torch.cat(labels), torch.cat(dists)


def kmeans_plus_plus(x: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ centres (n_clusters, d) drawn from the points x (n, d)."""
    first = int(torch.randint(len(x), (1,), generator=generator))
    centres = [x[first]]
    nearest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, n_clusters):
        total = float(nearest.sum())
        if total <= 0.0:  # fewer distinct points than clusters: any point will do
            pick = int(torch.randint(len(x), (1,), generator=generator))
        else:
            pick = int(torch.multinomial(nearest.double() / total, 1, generator=generator))
        centres.append(x[pick])
        nearest = torch.minimum(nearest, ((x - x[pick]) ** 2).sum(1))
    return torch.stack(centres)


def cluster_means(x: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (K, d) float64, counts (K,)) of the points of each cluster; empty clusters get a zero mean."""
    sums = torch.zeros(n_clusters, x.shape[1], dtype=torch.float64).index_add_(0, labels, x.to(torch.float64))
    counts = torch.bincount(labels, minlength=n_clusters)
    return sums / counts.clamp_min(1).unsqueeze(1), counts


def reseed_empty(labels: torch.Tensor, dists: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Labels where each empty cluster takes over one of the points farthest from their centres."""
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) == 0:
        return labels
    labels = labels.clone()
    farthest = torch.argsort(dists, descending=True)
    taken = 0
    for k in empty.tolist():
        while int(torch.bincount(labels, minlength=len(counts))[labels[farthest[taken]]]) <= 1:
            taken += 1  # never empty another cluster to fill this one
        labels[farthest[taken]] = k
        taken += 1
    return labels


def kmeans(x: torch.Tensor, n_clusters: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-3) -> KMeansResult:
    """Lloyd's k-means of the rows of x (N, d) into `n_clusters` non-empty clusters; see the module docstring."""
    if x.ndim != 2:
        raise ValueError(f"kmeans takes points as rows, (N, d); got shape {tuple(x.shape)}")
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"n_clusters must be in [1, {len(x)}] (the number of points), got {n_clusters}")
    x = x.float().contiguous()
    x64, x_norms = x.double(), (x**2).sum(1)  # for the centres' sums and the distances, once
    generator = torch.Generator().manual_seed(seed)
    subset = torch.randperm(len(x), generator=generator)[: max(4096, 4 * n_clusters)]
    centres = kmeans_plus_plus(x[subset], n_clusters, generator)
    labels, dists = assign(x, centres, x_norms)
    converged, n_iter = False, 0
    while True:
        means, counts = cluster_means(x64, labels, n_clusters)
        if bool((counts == 0).any()):
            labels = reseed_empty(labels, dists, counts)
            means, counts = cluster_means(x64, labels, n_clusters)
        if converged or n_iter == max_iter:
            break
        n_iter += 1
        new_labels, dists = assign(x, means.float(), x_norms)
        converged = int((new_labels != labels).sum()) <= tol * len(x)
        labels = new_labels
    inertia = sum(float(((xb.double() - means[lb]) ** 2).sum())
                  for xb, lb in zip(x.split(ASSIGN_CHUNK), labels.split(ASSIGN_CHUNK), strict=True))
    return KMeansResult(labels, means.float(), inertia, n_iter, converged)

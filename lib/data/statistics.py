"""Dataset statistics in float64: mean, covariance and its eigendecomposition, cached by the pixels.

Every analytic model is built from them: the Gaussian N(mu, Sigma) with Sigma = U diag(lambda) U^T, the
isotropic baselines, the per-component statistics of the mixtures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib.core import integrity, paths
from lib.data import mnist

STATS_VERSION = 1  # bump when the statistics' definition changes


@dataclass(frozen=True)
class DatasetStats:
    """Mean, covariance and its eigendecomposition (float64), eigenvalues in descending order.

    Sigma = U diag(lambda) U^T with `eigvecs` = U (d, d) and `eigvals` = lambda (d,).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    n: int
    shape: tuple[int, int, int]
    key: str

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def trace(self) -> float:
        """tr Sigma: the total variance. sqrt(tr Sigma) is the naive validity scale of the Gaussian."""
        return float(self.eigvals.sum())

    @property
    def effective_dimension(self) -> float:
        """Participation ratio (sum lambda)^2 / sum lambda^2."""
        return float(self.eigvals.sum() ** 2 / (self.eigvals**2).sum())

    def components_for_variance(self, fraction: float) -> int:
        """Smallest k whose top-k eigenvalues hold `fraction` of the total variance."""
        cumulative = torch.cumsum(self.eigvals, 0) / self.eigvals.sum()
        return int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype)).item()) + 1


def compute_stats(x: torch.Tensor, key: str = "") -> DatasetStats:
    """Statistics of a batch (N, C, H, W) in float64."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor batch (N, C, H, W), got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"need a batch (N, ...) of at least 2 samples for a covariance, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("the batch holds NaN or inf: statistics would be undefined")
    flat = x.reshape(x.shape[0], -1).double()
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / (flat.shape[0] - 1)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0.0), eigvecs.flip(1)
    return DatasetStats(mean, cov, eigvals, eigvecs, flat.shape[0], tuple(x.shape[1:]), key)


def _stats_key(x: torch.Tensor, split: str, size: int) -> str:
    """Hash of the preprocessed pixels: a change of preprocessing can never reuse a stale cache."""
    digest = hashlib.sha256(x.numpy().tobytes())
    digest.update(f"{split}/{size}/v{STATS_VERSION}".encode())
    return digest.hexdigest()[:16]


def dataset_stats(split: str = "train", size: int = 32) -> DatasetStats:
    """Statistics of an MNIST split, computed once and cached under `data/cache/stats/`.

    Every load verifies the cache (`lib.core.integrity`: its digest, then the sizes and a sorted, non-negative
    spectrum that sums to tr Sigma); a corrupt or inconsistent one is reported in one line and recomputed.
    """
    x = mnist.load_mnist(split, size)
    key = _stats_key(x, split, size)
    return cached_stats(x, key, paths.cache_dir("stats") / f"mnist_{split}_{size}_{key}.pt", "[data] stats cache")


def cached_stats(x: torch.Tensor, key: str, cache: Path, what: str) -> DatasetStats:
    """`compute_stats(x, key)`, read from `cache` when it holds a verified copy, else computed and written there."""
    fields = integrity.load_cache(cache, lambda f: integrity.check_stats(f, len(x), tuple(x.shape[1:])),
                                  what, "recomputing")
    if fields is not None:
        return DatasetStats(**fields | {"key": key})
    stats = compute_stats(x, key)
    integrity.save({k: getattr(stats, k) for k in integrity.STATS_KEYS}, cache)
    return stats


def spectrum_table(stats: DatasetStats) -> pd.DataFrame:
    """One row per principal component: k (1-based), lambda_k, sigma_k = sqrt(lambda_k), cumulative variance."""
    lam = stats.eigvals.numpy()
    return pd.DataFrame({
        "k": np.arange(1, len(lam) + 1),
        "lambda": lam,
        "sigma_k": np.sqrt(lam),
        "cumulative_variance": np.cumsum(lam) / lam.sum(),
    })

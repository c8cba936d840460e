"""Paired changes in sample quality, with bootstrap confidence intervals over samples.

Two sample sets drawn from the same initial noise (a sampler with and without a change, sample i of one
and sample i of the other from the same x_T) differ mostly through the change: their Frechet distances to a
reference move together under resampling. The paired change

    dFD = FD(features_b) - FD(features_a)

is therefore resolved far better than by comparing two independent draws. Its uncertainty is estimated by
a paired bootstrap: the same resampled indices for both sets, the FD of each resample against the fixed
reference, the difference per replicate. With several seeds the change is the mean over seeds, and each
replicate averages one resample per seed, so the interval is that of the mean.

A resample repeats samples, which biases its FD upwards; the bias is nearly the same for both sets of a
pair and cancels in the difference (the point estimate uses the original sets, not the replicates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lib.analysis.metrics import FrechetReference


@dataclass(frozen=True)
class PairedChange:
    """dFD = mean over seeds of FD(b) - FD(a), with a bootstrap percentile interval at `level`."""

    change: float
    low: float
    high: float
    n_seeds: int
    level: float

    @property
    def half_width(self) -> float:
        return 0.5 * (self.high - self.low)


def bootstrap_rows(n: int, n_boot: int, stream: int) -> torch.Tensor:
    """(n_boot, n) row indices drawn with replacement; the same `stream` (e.g. the seed of the initial noise)
    gives the same rows, so every sample set of one seed is resampled identically (a paired bootstrap)."""
    generator = torch.Generator().manual_seed(1_000_003 * int(stream) + n)
    return torch.randint(0, n, (n_boot, n), generator=generator)


def bootstrap_fds(features: torch.Tensor, reference: FrechetReference, n_boot: int, stream: int) -> np.ndarray:
    """FD against `reference` of each of `n_boot` resamples of `features` (rows from `bootstrap_rows`)."""
    f64 = features.double()
    return np.array([reference.fd(f64[rows]) for rows in bootstrap_rows(len(f64), n_boot, stream)])


def paired_change(fd_a: Sequence[float], fd_b: Sequence[float], replicates_a: Sequence[np.ndarray],
                  replicates_b: Sequence[np.ndarray], level: float = 0.95) -> PairedChange:
    """The mean over seeds of FD_b - FD_a, and the percentile interval of the same mean over paired replicates.

    Entry s of each argument belongs to seed s; replicates_a[s] and replicates_b[s] must come from the same
    rows (`bootstrap_fds` with the same stream and sample count).
    """
    if not len(fd_a) == len(fd_b) == len(replicates_a) == len(replicates_b) or not len(fd_a):
        raise ValueError("paired_change needs the same number (>= 1) of seeds on both sides")
    diffs = np.mean([np.asarray(b) - np.asarray(a) for a, b in zip(replicates_a, replicates_b, strict=True)], axis=0)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    change = float(np.mean(np.asarray(fd_b, dtype=float) - np.asarray(fd_a, dtype=float)))
    return PairedChange(change, float(low), float(high), len(fd_a), level)

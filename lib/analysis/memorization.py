"""Does a sampler return training images? Nearest-neighbour distances to the training set.

For each query image q (a sample, or a held-out test image as the reference for what "new" looks like)
the two nearest training images in Euclidean pixel distance, d1 <= d2. A sample is counted as a copy
of a training image when

    d1 / d2 < COPY_RATIO   (1/3),

the relative criterion of Carlini et al. (2023, "Extracting training data from diffusion models"),
here in pixel space: the sample is much closer to one training image than to any other. The
training-set-score sampler, which can only return training images, gives d1 ~ 0 and ratios ~ 0; test
images give the ratios of genuinely new digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

COPY_RATIO = 1.0 / 3.0


@dataclass(frozen=True)
class Neighbours:
    """Distances to the nearest and second-nearest training images, and the nearest one's index."""

    d1: torch.Tensor  # (B,) float64
    d2: torch.Tensor  # (B,) float64
    index: torch.Tensor  # (B,) long

    @property
    def ratio(self) -> torch.Tensor:
        return self.d1 / self.d2

    def copy_fraction(self, threshold: float = COPY_RATIO) -> float:
        """Fraction of queries with d1 / d2 below `threshold`."""
        return float((self.ratio < threshold).double().mean())


@torch.no_grad()
def nearest_training_images(queries: torch.Tensor, train: torch.Tensor, chunk: int = 8192) -> Neighbours:
    """The two nearest training images of each query, in float64 (||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2
    cancels badly in float32 for near copies), visiting the training set in chunks."""
    if len(train) < 2:
        raise ValueError("need at least two training images for a nearest/second-nearest ratio")
    q = queries.reshape(len(queries), -1).double()
    q_sq = (q**2).sum(1, keepdim=True)
    best = torch.full((len(q), 2), float("inf"), dtype=torch.float64)
    best_index = torch.zeros((len(q), 2), dtype=torch.long)
    flat = train.reshape(len(train), -1)
    for start in range(0, len(flat), chunk):
        x = flat[start:start + chunk].double()
        dist2 = (q_sq - 2 * q @ x.T + (x**2).sum(1)).clamp_min_(0.0)
        values, indices = torch.topk(dist2, k=min(2, x.shape[0]), dim=1, largest=False)
        merged = torch.cat([best, values], dim=1)
        merged_index = torch.cat([best_index, indices + start], dim=1)
        order = merged.argsort(dim=1)[:, :2]
        best, best_index = merged.gather(1, order), merged_index.gather(1, order)
    return Neighbours(best[:, 0].sqrt(), best[:, 1].sqrt(), best_index[:, 0])

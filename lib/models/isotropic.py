"""The isotropic models: the data mean alone, and the isotropic Gaussian N(mu, (tr Sigma / d) I).

They are the trivial alternatives the Gaussian must beat: the first knows only where the data are, the
second also how spread they are, but not in which directions.
"""

from __future__ import annotations

import torch

from lib.data.statistics import DatasetStats
from lib.models.denoisers import check_batch, check_jump_gains, sigma_per_sample
from lib.models.gaussian import flat_batch, jump_levels, shrinkage, sigma_column


class MeanDenoiser:
    """The "mean" model: D(x; sigma) = mu whatever x and sigma (a point mass at the mean)."""

    def __init__(self, mean: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.mean = mean.reshape(-1).to(device=device, dtype=dtype)
        self.shape = tuple(shape)
        self.dtype = dtype

    @classmethod
    def from_stats(cls, stats: DatasetStats, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> MeanDenoiser:
        return cls(stats.mean, stats.shape, dtype, device)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_batch(x, self.shape, "MeanDenoiser")
        sigma_per_sample(sigma, x)  # validates sigma like every denoiser
        return self.mean.reshape(1, *self.shape).expand(x.shape[0], *self.shape).to(x.dtype).clone()


class IsotropicGaussianDenoiser:
    """The "mean + std" model N(mu, v I), v = tr(Sigma) / d: D(x; sigma) = mu + v / (v + sigma^2) (x - mu)."""

    def __init__(self, mean: torch.Tensor, variance: float, shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        if not 0 <= variance < float("inf"):
            raise ValueError(f"variance must be finite and non-negative, got {variance}")
        self.mean = mean.reshape(-1).to(device=device, dtype=dtype)
        self.variance = float(variance)
        self.shape = tuple(shape)
        self.dtype = dtype

    @classmethod
    def from_stats(cls, stats: DatasetStats, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> IsotropicGaussianDenoiser:
        return cls(stats.mean, stats.trace / stats.dim, stats.shape, dtype, device)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_batch(x, self.shape, "IsotropicGaussianDenoiser")
        xc = flat_batch(x).to(self.dtype)
        var = torch.tensor(self.variance, dtype=self.dtype, device=xc.device)
        gain = shrinkage(var, sigma_column(sigma, xc))
        return (self.mean + gain * (xc - self.mean)).reshape(x.shape).to(x.dtype)

    def jump(self, x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor:
        """The closed-form PF-ODE solution of this model, one gain for every direction:

            x(sigma) = mu + sqrt((sigma^2 + v) / (sigma_T^2 + v)) (x_T - mu)

        (the full Gaussian's jump with every lambda_k replaced by v; sigma_T too small for the dtype is refused,
        `check_jump_gains`)."""
        check_batch(x_t, self.shape, "IsotropicGaussianDenoiser.jump")
        sigma_t, sigma = jump_levels(sigma_t, sigma)
        check_jump_gains(sigma_t, sigma, self.dtype)
        gain = ((sigma**2 + self.variance) / (sigma_t**2 + self.variance)) ** 0.5
        flat = flat_batch(x_t).to(self.dtype)
        return (self.mean + gain * (flat - self.mean)).reshape(x_t.shape).to(x_t.dtype)

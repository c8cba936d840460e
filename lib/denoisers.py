"""The one interface every model shares - network or analytic - and the score derived from it.

A denoiser is a callable `D(x, sigma)` taking a batch `x` (B, C, H, W) and sigma as a float or a (B,)
tensor, and returning E[x0 | x_sigma = x] with the shape of `x`. The score is never written twice:

    s(x; sigma) = (D(x; sigma) - x) / sigma^2.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...


def sigma_per_sample(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sigma as a (B, 1, 1, 1) tensor in x's dtype and device, from a float, a 0-d or a (B,) tensor."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or a ({x.shape[0]},) tensor, got shape {tuple(s.shape)}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def score(denoiser: Denoiser, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """s(x; sigma) = (D(x; sigma) - x) / sigma^2, the score of the noised distribution."""
    return (denoiser(x, sigma) - x) / sigma_per_sample(sigma, x) ** 2


def ode_derivative(denoiser: Denoiser, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE in sigma: dx/dsigma = (x - D(x; sigma)) / sigma = -sigma * score."""
    return (x - denoiser(x, sigma)) / sigma_per_sample(sigma, x)

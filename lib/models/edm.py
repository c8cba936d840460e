"""EDM conventions (Karras et al. 2022), variance exploding: x_sigma = x0 + sigma * n.

Schedules are pure functions returning sigma lists, as in k-diffusion. The preconditioning that turns a
raw network into a denoiser is written as EDM's four visible formulas (sigma_data = 0.5), and the
training loss draws ln sigma ~ N(-1.2, 1.2^2) with weight (s^2 + sd^2) / (s sd)^2.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from lib.models.denoisers import check_batch, check_sigma, sigma_per_sample

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def karras_sigmas(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO,
    append_zero: bool = True,
) -> torch.Tensor:
    """Karras schedule, float64, descending:
    sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho for i < n, then sigma_n = 0.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n (the number of noise levels) must be an integer, got {n!r}")
    if n < 1:
        raise ValueError(f"a schedule needs at least one step, got n={n}")
    _check_schedule_bounds(n, sigma_min, sigma_max, rho)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]) if append_zero else sigmas


def _check_schedule_bounds(n: int, sigma_min: float, sigma_max: float, rho: float) -> None:
    """One-line ValueErrors for a Karras schedule's bounds: finite, rho > 0, 0 < sigma_min < sigma_max
    (sigma_min == sigma_max only for a single level)."""
    values = {"sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho}
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value}")
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho} (EDM uses 7)")
    if not 0 < sigma_min:
        raise ValueError(f"sigma_min must be positive, got {sigma_min} (the final 0 is appended by append_zero)")
    if not (sigma_min < sigma_max or (n == 1 and sigma_min == sigma_max)):
        raise ValueError(f"need sigma_min < sigma_max for a schedule of {n} levels, got {sigma_min} and {sigma_max}")


# --------------------------------------------------------------------------- preconditioning

SIGMA_DATA = 0.5  # standard deviation EDM assumes for the data (pixels in [-1, 1])
P_MEAN, P_STD = -1.2, 1.2  # training noise levels: ln sigma ~ N(P_MEAN, P_STD^2)


def c_skip(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Skip weight sd^2 / (s^2 + sd^2): D passes x through at low noise, drops it at high noise."""
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Output scale s sd / sqrt(s^2 + sd^2): the network's target has unit variance at every sigma."""
    return sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_in(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Input scale 1 / sqrt(s^2 + sd^2): the network's input has unit variance at every sigma."""
    return 1 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """Noise conditioning ln(s) / 4, the scalar the network is told."""
    return sigma.log() / 4


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """lambda(s) = (s^2 + sd^2) / (s sd)^2 = 1 / c_out^2: every sigma contributes equally at the start."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


_NETWORK_SIGMA_HINT = ("the network is conditioned on ln(sigma), undefined at sigma = 0 (where D(x; 0) = x); "
                       "pass a small positive sigma such as 0.002")


class EDMPrecond(nn.Module):
    """Wrap a raw network F(x, c_noise) into a denoiser (EDM, Karras et al. 2022, table 1):

        D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s)).

    `D(x, sigma)` takes sigma as a float or a (B,) tensor and returns float32 with x's shape, whatever
    precision the network runs in (bf16 autocast during training). Sigma must be finite and > 0
    (c_noise = ln(sigma) / 4); it is checked in eval mode only, so that training steps (which draw
    their own positive sigmas) add no host-device synchronisation. x must be (B, *image_shape);
    an empty batch gives an empty result.

    The network's convolutions run in channels-last memory order (weights and activations): on CPUs
    oneDNN's convolutions, GroupNorm and nearest upsampling are 1.2-1.5x faster that way; the values
    are those of the contiguous layout up to float32 rounding (~1e-6).
    """

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)
        self.sigma_data = sigma_data

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) the network was built for, when it says (`in_channels`, `img_resolution`)."""
        channels = getattr(self.net, "in_channels", None)
        resolution = getattr(self.net, "img_resolution", None)
        return None if channels is None or resolution is None else (channels, resolution, resolution)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        shape = self.image_shape
        if shape is not None:
            check_batch(x, shape, "the network")
        x = x.to(torch.float32)
        s = sigma_per_sample(sigma, x, positive=True, check=not self.training, hint=_NETWORK_SIGMA_HINT)
        if x.shape[0] == 0:
            return torch.empty_like(x)
        net_in = (c_in(s, self.sigma_data) * x).contiguous(memory_format=torch.channels_last)
        f_x = self.net(net_in, c_noise(s).flatten()).contiguous()
        return c_skip(s, self.sigma_data) * x + c_out(s, self.sigma_data) * f_x.to(torch.float32)


# --------------------------------------------------------------------------- loss


def sample_training_sigmas(
    n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    p_mean: float = P_MEAN, p_std: float = P_STD,
) -> torch.Tensor:
    """n training noise levels, ln sigma ~ N(p_mean, p_std^2) (median exp(-1.2) ~ 0.30)."""
    z = torch.randn(n, generator=generator, device=generator.device if generator is not None else device)
    return (z * p_std + p_mean).exp().to(device)


def training_share_above(sigma: float, p_mean: float = P_MEAN, p_std: float = P_STD) -> float:
    """P(sigma_train >= sigma) under ln sigma ~ N(p_mean, p_std^2): how often training visits noise this high."""
    check_sigma(sigma, positive=True)
    z = (math.log(sigma) - p_mean) / p_std
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def denoising_loss(
    denoiser: nn.Module, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
    sigma_data: float = SIGMA_DATA, weighted: bool = True,
) -> torch.Tensor:
    """Per-sample loss lambda(s) * mean_pixels (D(x0 + s n; s) - x0)^2, shape (B,); sigma is (B,).

    The mean over pixels (EDM sums) keeps the numbers readable: with the weight lambda, the denoiser
    that only rescales its input (F = 0, c_skip x) scores (s^2 E[x0^2] + sd^4) / (sd^2 (s^2 + sd^2)),
    from 1 at low noise to E[x0^2] / sd^2 at high noise: about 1 everywhere when the data has scale sd.
    """
    s = sigma_per_sample(sigma, x0, positive=True, check=not getattr(denoiser, "training", False))
    err = (denoiser(x0 + s * noise, sigma) - x0).square().flatten(1).mean(1)
    return err * loss_weight(s.flatten(), sigma_data) if weighted else err


def edm_loss(
    denoiser: nn.Module, x0: torch.Tensor, generator: torch.Generator | None = None,
    p_mean: float = P_MEAN, p_std: float = P_STD, sigma_data: float = SIGMA_DATA,
) -> torch.Tensor:
    """EDM training loss (Karras et al. 2022, eq. 8 with the lognormal sigma and weight lambda), (B,).

    Draws ln sigma ~ N(p_mean, p_std^2) and n ~ N(0, I) from `generator` (so that a resumed run draws
    the same numbers), then returns `denoising_loss` per sample.
    """
    sigma = sample_training_sigmas(x0.shape[0], generator, x0.device, p_mean, p_std)
    gen_device = generator.device if generator is not None else x0.device
    noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0.device)
    return denoising_loss(denoiser, x0, sigma, noise, sigma_data)

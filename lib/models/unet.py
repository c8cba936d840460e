"""A compact UNet in the spirit of EDM's DDPM++ network (Karras et al. 2022, `SongUNet`).

The raw network F(x, c_noise) that `lib.models.edm.EDMPrecond` turns into a denoiser. Pieces, as in EDM:
a sinusoidal embedding of c_noise mapped by a two-layer MLP; residual blocks of GroupNorm, SiLU and
3x3 convolutions, whose features are shifted by a projection of the noise embedding; optional
self-attention at chosen resolutions; an encoder that halves the resolution between levels (average
pooling) and a decoder that doubles it (nearest neighbour), with skip connections between them. The last
convolution of every residual branch starts near zero, so that each block starts as the identity.

Configurable: base channels, channel multipliers per level, residual blocks per level, attention
resolutions, dropout. The paper's MNIST network is `UNet(channels=16, channel_mult=(1, 2, 3, 4),
num_blocks=1, attn_resolutions=(), dropout=0.13)` (about 1M parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SKIP_SCALE = math.sqrt(0.5)  # DDPM++ scales every residual sum to keep the variance constant


def _group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels each (EDM's rule)."""
    groups = min(32, channels // 4) or 1
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=eps)


def _near_zero(module: nn.Module, scale: float = 1e-5) -> nn.Module:
    """Shrink a layer's initial weights (EDM's `init_zero`) and zero its bias."""
    with torch.no_grad():
        module.weight.mul_(scale)
        if module.bias is not None:
            module.bias.zero_()
    return module


# --------------------------------------------------------------------------- noise embedding


class PositionalEmbedding(nn.Module):
    """Sinusoidal features [cos(c f_k), sin(c f_k)] of the scalar c_noise, f_k = (1/10^4)^(k/(K-1))."""

    def __init__(self, num_channels: int, max_positions: int = 10_000) -> None:
        super().__init__()
        half = num_channels // 2
        freqs = (1 / max_positions) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = c.to(torch.float32).outer(self.freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


# --------------------------------------------------------------------------- blocks


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the noise embedding, GroupNorm-SiLU-dropout-conv; plus a (1x1) skip.

    `resample` = "down" (average pooling) or "up" (nearest) changes the resolution on both branches.
    """

    def __init__(
        self, cin: int, cout: int, emb_channels: int, dropout: float = 0.0, resample: str | None = None,
        attention: bool = False, head_channels: int = 64,
    ) -> None:
        super().__init__()
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.resample = resample
        self.norm0 = _group_norm(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_channels, cout)
        self.norm1 = _group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _near_zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or resample) else None
        self.attention = SelfAttention(cout, head_channels) if attention else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(self._resample(F.silu(self.norm0(x))))
        # Modulation: the noise embedding shifts every feature map (DDPM++, adaptive_scale=False).
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None].to(x.dtype)))
        x = self.conv1(self.dropout(x))
        skip = self._resample(orig)
        if self.skip is not None:
            skip = self.skip(skip)
        x = (x + skip) * SKIP_SCALE
        if self.attention is not None:
            x = self.attention(x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention over pixels, as a residual branch (output projection starts at zero)."""

    def __init__(self, channels: int, head_channels: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _near_zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attn = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = self.proj(attn.transpose(-1, -2).reshape(b, c, h, w))
        return (x + out) * SKIP_SCALE


# --------------------------------------------------------------------------- network


class UNet(nn.Module):
    """F(x, c_noise): (B, C, H, W) and (B,) -> (B, C, H, W).

    Encoder: a 3x3 input convolution, then per level `num_blocks` residual blocks at
    `channels * channel_mult[level]` channels, with a downsampling residual block between levels.
    Bottleneck: two residual blocks (the first with attention when the lowest resolution is listed).
    Decoder: per level an upsampling block (except the lowest), then `num_blocks + 1` blocks, each fed
    the matching encoder activation by concatenation. Output: GroupNorm, SiLU, 3x3 convolution.
    """

    def __init__(
        self,
        img_resolution: int = 32,
        in_channels: int = 1,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_blocks: int = 1,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        emb_mult: int = 4,
    ) -> None:
        super().__init__()
        if img_resolution % 2 ** (len(channel_mult) - 1):
            raise ValueError(f"resolution {img_resolution} cannot be halved {len(channel_mult) - 1} times")
        self.img_resolution, self.in_channels = img_resolution, in_channels  # the (C, H, W) it takes
        emb_channels = channels * emb_mult
        attn = set(attn_resolutions)
        block = dict(emb_channels=emb_channels, dropout=dropout)

        # Noise embedding: sinusoids of c_noise, then a two-layer MLP.
        self.map_noise = PositionalEmbedding(channels)
        self.map_layer0 = nn.Linear(channels, emb_channels)
        self.map_layer1 = nn.Linear(emb_channels, emb_channels)

        # Encoder: remember the width of every activation handed to the decoder.
        self.conv_in = nn.Conv2d(in_channels, channels * channel_mult[0], 3, padding=1)
        self.enc = nn.ModuleList()
        skips = [channels * channel_mult[0]]
        cout = skips[0]
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level > 0:
                self.enc.append(ResBlock(cout, cout, resample="down", **block))
                skips.append(cout)
            for _ in range(num_blocks):
                cin, cout = cout, channels * mult
                self.enc.append(ResBlock(cin, cout, attention=res in attn, **block))
                skips.append(cout)

        # Bottleneck at the lowest resolution.
        res = img_resolution >> (len(channel_mult) - 1)
        self.mid = nn.ModuleList([ResBlock(cout, cout, attention=res in attn, **block),
                                  ResBlock(cout, cout, **block)])

        # Decoder: mirror image, concatenating the encoder's activations.
        self.dec = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level < len(channel_mult) - 1:
                self.dec.append(ResBlock(cout, cout, resample="up", **block))
            for _ in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), channels * mult
                self.dec.append(ResBlock(cin, cout, attention=res in attn, **block))
        assert not skips

        # Output head.
        self.norm_out = _group_norm(cout)
        self.conv_out = _near_zero(nn.Conv2d(cout, in_channels, 3, padding=1), 0.2)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        h = self.conv_in(x)
        hs = [h]
        for blk in self.enc:
            h = blk(h, emb)
            hs.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for blk in self.dec:
            if blk.resample != "up":
                h = torch.cat([h, hs.pop()], dim=1)
            h = blk(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

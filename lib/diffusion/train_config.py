"""What determines a trained network: `TrainConfig`, the presets of each scale, and what follows from a config
(its checkpoint schedule, its network, its learning-rate and EMA schedules).

A configuration names everything that changes the weights; its hash keys the checkpoint folder
`data/checkpoints/<name>-<hash12>/` (`lib.diffusion.checkpoints`). The presets train on MNIST; `for_dataset` adapts one
to
another dataset (`lib.data.datasets`): its channels and size, the digest of its pixels (part of the hash), and for
CIFAR-10 the architecture of the authors' CIFAR mini-EDM with horizontal flips.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import torch

from lib.core.config import get_scale
from lib.data.datasets import ImageDataset
from lib.models import edm
from lib.models.unet import UNet, count_parameters

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout or the training algorithm changes
DATASET_FIELDS = ("dataset", "data_digest", "in_channels", "hflip")
#: The architecture of the authors' CIFAR-10 mini-EDM (96 channels, multipliers 1-2-2, two blocks per level,
#: attention at 16x16, horizontal flips), used for CIFAR-10 at the default and paper scales.
CIFAR10_ARCHITECTURE = {"channels": 96, "channel_mult": (1, 2, 2), "num_blocks": 2, "attn_resolutions": (16,),
                        "hflip": True}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights. Its hash keys the checkpoint folder."""

    name: str
    # data: the first `data_size` MNIST training images (None: all 60,000), 1 x size x size in [-1, 1]
    image_size: int = 32
    data_size: int | None = None
    # network: `lib.models.unet.UNet`
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    # EDM loss and preconditioning: ln sigma ~ N(p_mean, p_std^2)
    sigma_data: float = edm.SIGMA_DATA
    p_mean: float = edm.P_MEAN
    p_std: float = edm.P_STD
    # optimisation: Adam with a linear learning-rate warm-up, EMA with EDM's ramp-up
    batch_size: int = 128
    total_steps: int = 4000
    lr: float = 2e-4
    warmup_steps: int = 1000
    ema_halflife_kimg: float = 500.0
    ema_rampup: float | None = 0.05
    bf16_autocast: bool = False  # opt-in, CPU only: the network trains in bf16 (evaluation stays fp32)
    # checkpoints: every `checkpoint_every` steps, plus the early steps listed, plus the last step
    checkpoint_every: int = 500
    checkpoint_early: tuple[int, ...] = (0, 50, 100, 200, 300, 500, 750, 1000)
    seed: int = 0
    # another dataset (`for_dataset`): its name and pixel digest, channels, random horizontal flips. Left out of
    # `as_dict` (and so of the hash and the checkpoints' record) at these defaults: MNIST runs keep their folders.
    dataset: str = "mnist"
    data_digest: str = ""
    in_channels: int = 1
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("total_steps, batch_size and checkpoint_every must be positive")
        if self.data_size is not None and self.data_size < self.batch_size:
            raise ValueError(f"data_size {self.data_size} is smaller than one batch ({self.batch_size})")

    def as_dict(self) -> dict:
        """Every field, except the dataset fields where they have their MNIST defaults."""
        out = asdict(self)
        for f in fields(self):
            if f.name in DATASET_FIELDS and out[f.name] == f.default:
                del out[f.name]
        return out

    @property
    def hash(self) -> str:
        """12 hex digits of the sha256 of the full configuration (and the checkpoint format)."""
        blob = json.dumps({"format": CHECKPOINT_FORMAT, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        """`<name>-<hash12>`, the name of the checkpoint folder."""
        return f"{self.name}-{self.hash}"


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # A tiny network of the same shape for 60 steps (about 30 s on one core; its loss falls from 1.8 to
    # ~1.2): CI exercises every code path of notebook 02 in under a minute. fp32: on a CPU without native
    # bf16 (AVX2 only) bf16 autocast ran 9x slower (0.17 vs 1.5 steps/s, batch 64, 1 thread); with native
    # bf16 it gains only ~1.5x.
    "smoke": TrainConfig(
        name="smoke", channels=8, channel_mult=(1, 2, 3, 4), batch_size=64, total_steps=60, lr=1e-3,
        warmup_steps=15, checkpoint_every=30, checkpoint_early=(0, 15), bf16_autocast=False,
    ),
    # The authors' network trained 8,000 steps with a 1,000-step warm-up: long enough for the Gaussian
    # fit to peak (within ~1,000 steps) and to show the slower changes that follow (claim C3). Its first
    # 4,000 steps were the default until notebook 02 measured the 8,000-step network better by every
    # measure it takes (confident samples, error at high noise, loss); notebook 02 still sets the two side
    # by side (`lib.analysis.run_length.first_part`). fp32, like every evaluation: bf16 autocast is an
    # opt-in (`replace(config, bf16_autocast=True)`) that pays only on CPUs with native bf16 (about 1.5x
    # there) and is 10-30x slower on AVX2-only CPUs.
    "default": TrainConfig(
        name="default", channels=16, channel_mult=(1, 2, 3, 4), num_blocks=1, attn_resolutions=(),
        dropout=0.13, batch_size=128, total_steps=8000, lr=2e-4, warmup_steps=1000,
        ema_halflife_kimg=500.0, ema_rampup=0.05, bf16_autocast=False, checkpoint_every=500,
        checkpoint_early=(0, 50, 100, 200, 300, 500, 750, 1000),
    ),
    # The authors' MNIST run: ~1M parameters, 25k steps at batch 128, a checkpoint every 500 steps
    # (plus a few early ones), fp32; meant for a GPU: ~30 steps/s on an H200 (about 14 minutes), ~1.1
    # steps/s on 2 CPU cores (about 6 hours).
    "paper": TrainConfig(
        name="paper", channels=16, channel_mult=(1, 2, 3, 4), num_blocks=1, attn_resolutions=(),
        dropout=0.13, batch_size=128, total_steps=25_000, lr=2e-4, warmup_steps=5000,
        ema_halflife_kimg=500.0, ema_rampup=0.05, bf16_autocast=False, checkpoint_every=500,
        checkpoint_early=(0, 50, 100, 200, 300),
    ),
}


def train_config(scale_name: str | None = None) -> TrainConfig:
    """The training configuration of a scale (`smoke`, `default`, `paper`)."""
    return TRAIN_CONFIGS[get_scale(scale_name).name]


def checkpoint_schedule(config: TrainConfig) -> list[int]:
    """Steps at which checkpoints are written: the early ones, every `checkpoint_every`, and the last."""
    steps = {s for s in config.checkpoint_early if 0 <= s <= config.total_steps}
    steps |= set(range(0, config.total_steps + 1, config.checkpoint_every))
    steps.add(config.total_steps)
    return sorted(steps)


def for_dataset(config: TrainConfig, dataset: ImageDataset) -> TrainConfig:
    """`config` (a scale's preset) trained on `dataset`: its channels, size and digest, the name
    `<preset>-<dataset>`; CIFAR-10 takes the authors' CIFAR mini-EDM architecture (`CIFAR10_ARCHITECTURE`) except
    at the smoke scale, which keeps its tiny network. A dataset smaller than one batch trains on batches of all of
    it. MNIST gives `config` back unchanged."""
    if dataset.name == "mnist":
        return config
    channels, height, width = dataset.shape
    levels = len(config.channel_mult) - 1
    if height != width or height % 2**levels:
        raise ValueError(f"{dataset.name}: images {height}x{width}; the network needs square images with sides a "
                         f"multiple of {2**levels}")
    architecture = CIFAR10_ARCHITECTURE if dataset.name == "cifar10" and config.name != "smoke" else {}
    n = len(dataset.x_train) if config.data_size is None else min(config.data_size, len(dataset.x_train))
    return replace(config, name=f"{config.name}-{dataset.name}", dataset=dataset.name, data_digest=dataset.digest,
                   in_channels=channels, image_size=height, batch_size=min(config.batch_size, n), **architecture)


def build_network(config: TrainConfig) -> edm.EDMPrecond:
    """A freshly initialised network (uses the global torch RNG), wrapped as an EDM denoiser."""
    net = UNet(
        img_resolution=config.image_size, in_channels=config.in_channels, channels=config.channels,
        channel_mult=config.channel_mult, num_blocks=config.num_blocks,
        attn_resolutions=config.attn_resolutions, dropout=config.dropout,
    )
    return edm.EDMPrecond(net, sigma_data=config.sigma_data)


def config_table(config: TrainConfig, folder: str | None = None) -> list[tuple[str, str]]:
    """(setting, value) rows for display, with the parameter count, the checkpoint schedule and the run's `folder`
    (default: `data/checkpoints/<tag>`; `lib.train --list` shows where `REPRO_DATA_DIR` puts it)."""
    with torch.random.fork_rng(devices=[]):
        n_params = count_parameters(build_network(config))
    schedule = checkpoint_schedule(config)
    rows = [(f.name, str(getattr(config, f.name))) for f in fields(config)]
    rows += [("parameters", f"{n_params:,}"), ("checkpoints", f"{len(schedule)}: {short_list(schedule)}"),
             ("folder", folder or f"data/checkpoints/{config.tag}")]
    return rows


def short_list(values: Sequence[int], head: int = 10) -> str:
    return ", ".join(map(str, values)) if len(values) <= head + 2 else (
        ", ".join(map(str, values[:head])) + f", ..., {values[-1]}")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr` over `warmup_steps` (step counts from 0), then constant."""
    return config.lr * min((step + 1) / max(config.warmup_steps, 1), 1.0)


def ema_beta(config: TrainConfig, step: int) -> float:
    """EDM's EMA decay per step: half-life `ema_halflife_kimg`, shortened to `ema_rampup` x images seen."""
    ema_nimg = config.ema_halflife_kimg * 1000
    if config.ema_rampup is not None:
        ema_nimg = min(ema_nimg, step * config.batch_size * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(ema_nimg, 1e-8))

"""Train EDM denoisers on MNIST, with checkpoints across training, resumable bit for bit.

    python -m lib.train --scale default          # train (or finish training) the default configuration
    python -m lib.train --scale paper            # the authors' MNIST run, meant for a GPU
    python -m lib.train --scale smoke --bench 20 # steps per second in fp32 and with bf16 autocast

A configuration (`TrainConfig`) names everything that changes the weights; its hash keys the folder
`data/checkpoints/<name>-<hash12>/` that holds `step_XXXXXXX.pt` files on a schedule dense early and
sparse late (training dynamics are fastest at the start). A notebook asks for "the checkpoints of
configuration X" with `ensure_checkpoints(config)`, which trains only what is missing, and loads one with
`load_checkpoint(config, step)`.

Reproducibility: the initial weights come from `torch.manual_seed(seed)`, the data order of epoch e
from a generator seeded by (seed, e), and the noise levels and noise from a dedicated generator whose
state is saved in every checkpoint together with the global RNG state (dropout) and the optimizer
state. A run killed at any point (kill -9) resumes from its last checkpoint and ends bit-identical to an
uninterrupted run with the same seed, device and thread count (on CUDA, cuDNN runs in deterministic
mode while training). A resume with another thread count warns in one line and is recorded in the
checkpoint's `meta["thread_changes"]`. Checkpoints are written atomically with a sha256 sidecar
(`lib.integrity`) checked on every load; `python -m lib.train` reads them all before reporting success.
One process trains a configuration at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lib import edm, integrity, paths, runtime
from lib.config import get_scale, scale_name_from_environment
from lib.unet import UNet, count_parameters

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout or the training algorithm changes
CHECKPOINT_KEYS = ("format", "config", "config_hash", "step", "model", "ema", "optimizer", "noise_generator",
                   "torch_rng", "cuda_rng", "losses", "skipped", "meta")


class CheckpointError(RuntimeError):
    """A missing, unreadable or mismatched checkpoint, described in one line with what to do."""


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights. Its hash keys the checkpoint folder."""

    name: str
    # data: the first `data_size` MNIST training images (None: all 60,000), 1 x size x size in [-1, 1]
    image_size: int = 32
    data_size: int | None = None
    # network: `lib.unet.UNet`
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

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("total_steps, batch_size and checkpoint_every must be positive")
        if self.data_size is not None and self.data_size < self.batch_size:
            raise ValueError(f"data_size {self.data_size} is smaller than one batch ({self.batch_size})")

    def as_dict(self) -> dict:
        return asdict(self)

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
    # The authors' network trained 4,000 steps with a 1,000-step warm-up: long enough for the Gaussian
    # fit to peak (within ~1,000 steps) and to show the slower changes that follow (claim C3). fp32, like
    # every evaluation: bf16 autocast is an opt-in (`replace(config, bf16_autocast=True)`) that pays only
    # on CPUs with native bf16 (about 1.5x there) and is 10-30x slower on AVX2-only CPUs.
    "default": TrainConfig(
        name="default", channels=16, channel_mult=(1, 2, 3, 4), num_blocks=1, attn_resolutions=(),
        dropout=0.13, batch_size=128, total_steps=4000, lr=2e-4, warmup_steps=1000,
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


def build_network(config: TrainConfig) -> edm.EDMPrecond:
    """A freshly initialised network (uses the global torch RNG), wrapped as an EDM denoiser."""
    net = UNet(
        img_resolution=config.image_size, in_channels=1, channels=config.channels,
        channel_mult=config.channel_mult, num_blocks=config.num_blocks,
        attn_resolutions=config.attn_resolutions, dropout=config.dropout,
    )
    return edm.EDMPrecond(net, sigma_data=config.sigma_data)


def config_table(config: TrainConfig) -> list[tuple[str, str]]:
    """(setting, value) rows for display, with the parameter count and the checkpoint schedule."""
    with torch.random.fork_rng(devices=[]):
        n_params = count_parameters(build_network(config))
    schedule = checkpoint_schedule(config)
    rows = [(f.name, str(getattr(config, f.name))) for f in fields(config)]
    rows += [("parameters", f"{n_params:,}"), ("checkpoints", f"{len(schedule)}: {_short_list(schedule)}"),
             ("folder", f"data/checkpoints/{config.tag}")]
    return rows


def _short_list(values: Sequence[int], head: int = 10) -> str:
    return ", ".join(map(str, values)) if len(values) <= head + 2 else (
        ", ".join(map(str, values[:head])) + f", ..., {values[-1]}")


# --------------------------------------------------------------------------- checkpoint files


def run_dir(config: TrainConfig, root: Path | None = None) -> Path:
    """`<root>/<name>-<hash12>/`, root defaulting to `data/checkpoints/`."""
    directory = Path(root or paths.checkpoints_dir()) / config.tag
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def checkpoint_path(config: TrainConfig, step: int, root: Path | None = None) -> Path:
    return run_dir(config, root) / f"step_{step:07d}.pt"


def available_steps(config: TrainConfig, root: Path | None = None) -> list[int]:
    """Steps of the checkpoints on disk for this configuration."""
    steps = []
    for path in run_dir(config, root).glob("step_*.pt"):
        with contextlib.suppress(ValueError):
            steps.append(int(path.stem.removeprefix("step_")))
    return sorted(steps)


def _hint(config: TrainConfig) -> str:
    if TRAIN_CONFIGS.get(config.name) == config:
        return f"run `python -m lib.train --scale {config.name}`"
    return "call `lib.train.ensure_checkpoints(config)`"


def _read_checkpoint(config: TrainConfig, step: int, root: Path | None = None) -> dict:
    """The checkpoint dict, verified to belong to `config`; any problem is a one-line CheckpointError."""
    path = checkpoint_path(config, step, root)
    if not path.exists():
        have = available_steps(config, root)
        listed = _short_list(have) if have else "none"
        raise CheckpointError(f"no checkpoint at step {step} for config {config.tag}: available steps are "
                              f"{listed}; {_hint(config)}")
    try:
        state = integrity.load(path, lambda s: integrity.check_checkpoint(s, CHECKPOINT_KEYS), map_location="cpu")
        stored = json.loads(state["config"])
        stored_step = int(state["step"])
    except Exception as exc:  # corrupt (digest), truncated, not a torch file, missing keys...
        raise CheckpointError(f"checkpoint {path} is unreadable ({integrity.one_line(exc)}); delete it and "
                              f"{_hint(config)} to retrain it from the checkpoint before") from None
    expected = json.loads(json.dumps(config.as_dict()))
    if state.get("format") != CHECKPOINT_FORMAT or stored != expected or stored_step != step:
        diff = [k for k in sorted(set(stored) | set(expected)) if stored.get(k) != expected.get(k)]
        what = (f"fields {', '.join(diff)} differ" if diff else
                f"format {state.get('format')} vs {CHECKPOINT_FORMAT}, step {stored_step} vs {step}")
        raise CheckpointError(f"checkpoint {path} does not match config {config.tag} ({what}); "
                              f"delete {path.parent} and {_hint(config)}")
    return state


def load_checkpoint(
    config: TrainConfig, step: int | None = None, ema: bool = True,
    device: torch.device | str = "cpu", root: Path | None = None,
) -> edm.EDMPrecond:
    """The denoiser of `config` at `step` (default: the last), EMA weights by default, fp32, eval mode."""
    step = config.total_steps if step is None else step
    state = _read_checkpoint(config, step, root)
    with torch.random.fork_rng(devices=[]):
        model = build_network(config)
    model.load_state_dict(state["ema" if ema else "model"])
    return model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


@dataclass
class History:
    """The training record kept in every checkpoint."""

    losses: np.ndarray  # mean EDM loss of every step (NaN where a step was skipped)
    skipped: int  # steps skipped because the loss or the gradient was not finite
    meta: dict = field(default_factory=dict)  # device, precision, threads, torch version, seconds

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.losses) + 1)


def load_history(config: TrainConfig, step: int | None = None, root: Path | None = None) -> History:
    """Loss curve and run metadata up to `step` (default: the last)."""
    state = _read_checkpoint(config, config.total_steps if step is None else step, root)
    return History(state["losses"].numpy().astype(np.float64), int(state["skipped"]), dict(state["meta"]))


def _clean_stale_temporaries(directory: Path) -> None:
    """Remove half-written files left by a killed writer (only ever called under the folder's lock)."""
    for tmp in directory.glob(".step_*.tmp"):
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- training


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Data order of one epoch, a pure function of (seed, epoch): nothing to save for resuming."""
    mixed = int.from_bytes(hashlib.sha256(f"data-order/{seed}/{epoch}".encode()).digest()[:7], "little")
    return torch.randperm(n, generator=torch.Generator().manual_seed(mixed))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr` over `warmup_steps` (step counts from 0), then constant."""
    return config.lr * min((step + 1) / max(config.warmup_steps, 1), 1.0)


def ema_beta(config: TrainConfig, step: int) -> float:
    """EDM's EMA decay per step: half-life `ema_halflife_kimg`, shortened to `ema_rampup` x images seen."""
    ema_nimg = config.ema_halflife_kimg * 1000
    if config.ema_rampup is not None:
        ema_nimg = min(ema_nimg, step * config.batch_size * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(ema_nimg, 1e-8))


def _grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@dataclass
class TrainState:
    """What one training step reads and updates."""

    config: TrainConfig
    net: edm.EDMPrecond
    ema: edm.EDMPrecond
    optimizer: torch.optim.Optimizer
    noise_gen: torch.Generator
    device: torch.device
    step: int = 0
    losses: list[float] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0
    thread_changes: list[dict] = field(default_factory=list)  # resumes with another thread count

    @property
    def autocast(self) -> bool:
        return self.config.bf16_autocast and self.device.type == "cpu"


def train_step(state: TrainState, batch: torch.Tensor) -> float:
    """One Adam step on the EDM loss, then the EMA update. Returns the batch's mean loss.

    Non-finite guard: when the loss or the gradient norm is not finite, the optimizer step is skipped
    (and counted in `state.skipped`); the weights stay as they were.
    """
    cfg = state.config
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, state.step)
    state.net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=state.autocast):
        loss = edm.edm_loss(state.net, batch, state.noise_gen, cfg.p_mean, cfg.p_std, cfg.sigma_data).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in state.net.parameters() if p.requires_grad]
    value = float(loss.detach())
    if math.isfinite(value) and math.isfinite(float(_grad_norm(params))):
        state.optimizer.step()
    else:
        state.skipped += 1
        value = float("nan")
    # EMA of the weights, EDM's ramp-up: beta = 0.5 ** (batch / min(halflife, rampup * images seen)).
    beta = ema_beta(cfg, state.step)
    with torch.no_grad():
        for p_ema, p in zip(state.ema.parameters(), state.net.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(state.ema.buffers(), state.net.buffers(), strict=True):
            b_ema.copy_(b)
    state.step += 1
    state.losses.append(value)
    return value


def _new_state(config: TrainConfig, device: torch.device) -> TrainState:
    """Fresh weights from `torch.manual_seed(seed)` (the caller isolates the global RNG)."""
    torch.manual_seed(config.seed)
    net = build_network(config).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    noise_gen = torch.Generator(device).manual_seed(config.seed + 1)
    return TrainState(config, net, ema, optimizer, noise_gen, device)


def _save(state: TrainState, root: Path | None) -> Path:
    cfg = state.config
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(cfg.as_dict(), sort_keys=True),
        "config_hash": cfg.hash,
        "step": state.step,
        "model": state.net.state_dict(),
        "ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "noise_generator": state.noise_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(state.device) if state.device.type == "cuda" else torch.empty(0),
        "losses": torch.tensor(state.losses, dtype=torch.float32),
        "skipped": state.skipped,
        "meta": {
            "device": str(state.device), "precision": "bf16-autocast" if state.autocast else "fp32",
            "threads": torch.get_num_threads(), "torch": str(torch.__version__), "seconds": state.seconds,
            "parameters": count_parameters(state.net), "thread_changes": state.thread_changes,
        },
    }
    path = checkpoint_path(cfg, state.step, root)
    integrity.save(payload, path)
    return path


def _restore(state: TrainState, saved: dict) -> None:
    state.net.load_state_dict(saved["model"])
    state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.noise_gen.set_state(saved["noise_generator"])
    torch.set_rng_state(saved["torch_rng"])
    if state.device.type == "cuda" and saved["cuda_rng"].numel():
        torch.cuda.set_rng_state(saved["cuda_rng"], state.device)
    state.step = int(saved["step"])
    state.losses = saved["losses"].tolist()
    state.skipped = int(saved["skipped"])
    state.seconds = float(saved["meta"].get("seconds", 0.0))
    state.thread_changes = integrity.thread_changes(saved["meta"], state.step, torch.get_num_threads(),
                                                    state.config.tag)


def load_training_data(config: TrainConfig, device: torch.device) -> torch.Tensor:
    from lib.data import load_mnist

    data = load_mnist("train", config.image_size)
    return data[: config.data_size].to(device) if config.data_size else data.to(device)


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    """Deterministic cuDNN kernels while training: without them a resumed CUDA run drifts (~1e-6 after a
    few steps, seen on an H200); the cost is negligible for networks this small."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def train(
    config: TrainConfig, root: Path | None = None, device: torch.device | str | None = None,
    stop_at: int | None = None, progress: bool = True,
) -> list[int]:
    """Write every missing checkpoint of `config`, resuming from the latest one before the first gap.

    `stop_at` stops after that step (tests use it to simulate an interruption). The global torch RNG
    of the caller is left as it was. Returns the steps written.
    """
    device = runtime.resolve_device(device)
    if config.bf16_autocast and device.type == "cpu" and not runtime.native_bf16():
        print("[train] warning: bf16 autocast on a CPU without native bf16 (no avx512_bf16 or amx_bf16 in "
              "/proc/cpuinfo) is 10-30x slower than fp32; train with bf16_autocast=False", file=sys.stderr)
    directory = run_dir(config, root)
    schedule = checkpoint_schedule(config)
    written: list[int] = []
    with paths.exclusive_lock(directory / ".lock", f"training {config.tag}"):
        _clean_stale_temporaries(directory)
        have = set(available_steps(config, root))
        missing = [s for s in schedule if s not in have]
        if not missing:
            return written
        end = missing[-1] if stop_at is None else min(missing[-1], stop_at)
        before = [s for s in have if s < missing[0] and s in schedule]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _deterministic_cudnn():
            state = _new_state(config, device)
            if before:
                _restore(state, _read_checkpoint(config, max(before), root))
            elif 0 in schedule:
                written.append(0)
                _save(state, root)
            data = load_training_data(config, device)
            n, bsz = data.shape[0], config.batch_size
            per_epoch = n // bsz  # drop the last partial batch
            bar = tqdm(total=end, initial=state.step, desc=f"train {config.tag}", disable=not progress,
                       unit="step", dynamic_ncols=True)
            epoch, perm = -1, None
            try:
                while state.step < end:
                    e, i = divmod(state.step, per_epoch)
                    if e != epoch:
                        epoch, perm = e, _epoch_permutation(config.seed, e, n).to(device)
                    batch = data[perm[i * bsz:(i + 1) * bsz]]
                    tic = time.perf_counter()
                    train_step(state, batch)
                    state.seconds += time.perf_counter() - tic
                    bar.update(1)
                    if state.step % 10 == 0 or state.step == end:
                        recent = [v for v in state.losses[-50:] if math.isfinite(v)]
                        bar.set_postfix(loss=f"{np.mean(recent):.4f}" if recent else "nan",
                                        skipped=state.skipped, refresh=False)
                    if state.step in schedule and state.step not in have:
                        _save(state, root)
                        written.append(state.step)
                        if progress:
                            recent = [v for v in state.losses[-100:] if math.isfinite(v)]
                            tqdm.write(f"[train] checkpoint at step {state.step}: loss {np.mean(recent):.4f} "
                                       f"(last 100 steps), {state.seconds:.0f} s of training so far")
            finally:
                bar.close()
    return written


def ensure_checkpoints(
    config: TrainConfig, root: Path | None = None, device: torch.device | str | None = None,
    progress: bool = True,
) -> list[tuple[int, Path]]:
    """The (step, path) of every scheduled checkpoint of `config`, training first only what is missing."""
    schedule = checkpoint_schedule(config)
    if set(schedule) - set(available_steps(config, root)):
        train(config, root=root, device=device, progress=progress)
    return [(s, checkpoint_path(config, s, root)) for s in schedule]


def verify_checkpoints(config: TrainConfig, root: Path | None = None) -> None:
    """Read every scheduled checkpoint (digest, keys, config): a run whose middle checkpoint is corrupt is
    not finished, whatever its last one says. Raises the CheckpointError of the first bad one."""
    for step in checkpoint_schedule(config):
        _read_checkpoint(config, step, root)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def loss_per_sigma(
    denoiser: torch.nn.Module, x0: torch.Tensor, sigmas: Sequence[float], seed: int = 0,
    sigma_data: float = edm.SIGMA_DATA,
) -> dict[str, np.ndarray]:
    """Mean weighted EDM loss and plain MSE of `denoiser` on a fixed batch at each sigma, in fp32.

    The same noise n (from `seed`) is used at every sigma, so curves of different checkpoints differ
    only through the network.
    """
    x0 = x0.to(torch.float32)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)
    weighted, mse = [], []
    for s in sigmas:
        sigma = torch.full((x0.shape[0],), float(s), device=x0.device)
        err = edm.denoising_loss(denoiser, x0, sigma, noise, sigma_data, weighted=False)
        mse.append(float(err.mean()))
        weighted.append(float((err * edm.loss_weight(sigma, sigma_data)).mean()))
    return {"sigma": np.asarray(sigmas, dtype=float), "weighted": np.asarray(weighted),
            "mse": np.asarray(mse)}


def measure_speed(
    config: TrainConfig, steps: int = 20, warmup: int = 3, device: torch.device | str | None = None,
) -> dict[str, float]:
    """Training steps per second of `config`'s network on random data, in fp32 and with bf16 autocast."""
    steps = runtime.positive_int(steps, "the number of benchmark steps")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    device = runtime.resolve_device(device)
    result = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        if bf16 and (device.type != "cpu" or not runtime.native_bf16()):
            continue  # autocast is CPU-only, and without native bf16 one step takes up to half a minute
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            state = _new_state(replace(config, bf16_autocast=bf16), device)
            batch = torch.rand(config.batch_size, 1, config.image_size, config.image_size, device=device) * 2 - 1
            for k in range(warmup + steps):
                if k == warmup:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    tic = time.perf_counter()
                train_step(state, batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            result[precision] = steps / (time.perf_counter() - tic)
    return result


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the EDM denoiser of a scale, resuming if interrupted.")
    parser.add_argument("--scale", default=scale_name_from_environment(),
                        help=f"one of {', '.join(TRAIN_CONFIGS)} (default: $REPRO_SCALE, else default)")
    parser.add_argument("--threads", default=None, help="torch threads, a positive integer (default: "
                        "$REPRO_THREADS or the idle cores; resume bit-identically only with the same number)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--bench", metavar="STEPS", default=None,
                        help="only measure training steps per second (fp32 and bf16) over STEPS > 0 steps and exit")
    parser.add_argument("--list", action="store_true", help="show the configuration and its checkpoints")
    return parser


def _settings(args: argparse.Namespace) -> tuple[TrainConfig, int, torch.device, int]:
    """(config, threads, device, bench steps or 0) from the command line; a one-line ValueError if one is bad."""
    config = train_config(args.scale)
    threads = (runtime.positive_int(args.threads, "--threads", "the number of torch threads")
               if args.threads is not None else runtime.default_threads())
    bench = runtime.positive_int(args.bench, "--bench", "training steps to time") if args.bench is not None else 0
    return config, threads, runtime.resolve_device(args.device), bench


def _run(config: TrainConfig, device: torch.device, bench: int, show: bool) -> int:
    """What main does once the settings are valid: list, benchmark or train (then verify every checkpoint)."""
    if show:
        for key, value in config_table(config):
            print(f"  {key:20s} {value}")
        print(f"  on disk              {_short_list(available_steps(config)) or 'none'}")
        return 0
    if bench:
        speeds = measure_speed(config, steps=bench, device=device)
        print("[bench] " + ", ".join(f"{k}: {v:.2f} steps/s" for k, v in speeds.items())
              + f" (batch {config.batch_size}, {bench} steps)")
        return 0
    tic = time.perf_counter()
    try:
        written = train(config, device=device)
        history = load_history(config)
        verify_checkpoints(config)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - tic
    final = np.nanmean(history.losses[-100:])
    print(f"[train] wrote {len(written)} checkpoints in {wall:.0f} s; {config.total_steps} steps took "
          f"{history.meta['seconds']:.0f} s of training in all ({history.meta['precision']}, "
          f"{history.meta['threads']} threads); final loss {final:.4f}; skipped steps {history.skipped}")
    print(f"[train] checkpoints in {run_dir(config)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, threads, device, bench = _settings(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    print(f"[train] {config.tag} on {device} with {torch.get_num_threads()} threads")
    try:
        return _run(config, device, bench, args.list)
    except OSError as err:
        if not paths.write_refused(err):
            raise
        print(f"error: {paths.not_writable(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The training loop of EDM denoisers on MNIST (or another dataset), with checkpoints across training, resumable
bit for bit; the command is `python -m lib.train`.

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
(`lib.core.integrity`) checked on every load; `python -m lib.train` reads them all before reporting success.
One run trains a configuration at a time: one process, or N data-parallel ones under torchrun
(`lib.diffusion.distributed`: the same run as one process with the same global batch, up to float rounding,
resumable with the same N).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lib.core import devices, integrity, paths
from lib.data.datasets import ImageDataset
from lib.diffusion import distributed
from lib.diffusion.checkpoints import (
    adopt_from_same_runs,
    available_steps,
    checkpoint_path,
    clean_stale_temporaries,
    read_checkpoint,
    run_dir,
)
from lib.diffusion.train_config import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    build_network,
    checkpoint_schedule,
    ema_beta,
    learning_rate,
)
from lib.diffusion.training_data import epoch_permutation, load_training_data, training_batch
from lib.models import edm
from lib.models.unet import count_parameters


def _grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@dataclass
class TrainState:
    """What one training step reads and updates; `world` and `ddp` (DDP(net)) when data-parallel."""

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
    world: distributed.World = field(default_factory=distributed.World)
    ddp: torch.nn.Module | None = None

    @property
    def autocast(self) -> bool:
        return self.config.bf16_autocast and self.device.type == "cpu"


def train_step(state: TrainState, batch: torch.Tensor) -> float:
    """One Adam step on the EDM loss, then the EMA update. Returns the (global) batch's mean loss.

    `batch` is this rank's slice of the global batch when data-parallel: the loss and the gradient are then
    averaged over the ranks (`lib.diffusion.distributed`), so every rank takes the same step.
    Non-finite guard: when the loss or the gradient norm is not finite, the optimizer step is skipped
    (and counted in `state.skipped`); the weights stay as they were.
    """
    cfg = state.config
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, state.step)
    model = state.net if state.ddp is None else state.ddp  # DDP(net) averages the ranks' gradients
    model.train()
    state.world.seed_dropout(cfg.seed, state.step)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=state.autocast):
        loss = distributed.local_edm_loss(model, batch, state.noise_gen, cfg, state.world).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in state.net.parameters() if p.requires_grad]
    value = float(state.world.mean(loss.detach()))
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


def new_training_state(config: TrainConfig, device: torch.device,
                       world: distributed.World = distributed.ALONE) -> TrainState:
    """Fresh weights from `torch.manual_seed(seed)` (the caller isolates the global RNG)."""
    torch.manual_seed(config.seed)
    net = build_network(config).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    noise_gen = torch.Generator(device).manual_seed(config.seed + 1)
    return TrainState(config, net, ema, optimizer, noise_gen, device, world=world)


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
            "world_size": state.world.size,
        },
    }
    path = checkpoint_path(cfg, state.step, root)
    integrity.save(payload, path)
    return path


def _checkpoint(state: TrainState, root: Path | None) -> None:
    """Rank 0 writes the checkpoint of this step; the other ranks wait for it at a barrier."""
    if state.world.is_writer:
        _save(state, root)
    state.world.barrier()


def _restore(state: TrainState, saved: dict, folder: Path) -> None:
    distributed.check_same_world(saved["meta"], state.world, int(saved["step"]), folder)
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
                                                    state.config.tag, warn=state.world.is_writer)


def train(
    config: TrainConfig, root: Path | None = None, device: torch.device | str | None = None,
    stop_at: int | None = None, progress: bool = True, dataset: ImageDataset | None = None,
) -> list[int]:
    """Write every missing checkpoint of `config`, resuming from the latest one before the first gap. A
    configuration for another dataset (`for_dataset`) needs that `dataset`.

    `stop_at` stops after that step (tests use it to simulate an interruption). The global torch RNG
    of the caller is left as it was. Returns the steps written. Inside an initialised process group of N
    processes (torchrun, `lib.diffusion.distributed`) every rank calls it on its own device and trains its
    slice of each global batch; rank 0 alone writes, prints and shows the progress bar.
    """
    world = distributed.current_world()
    world.local_batch_size(config.batch_size)  # a one-line error unless the ranks split the batch evenly
    device = devices.resolve_device(device)
    if config.bf16_autocast and device.type == "cpu" and not devices.native_bf16() and world.is_writer:
        print("[train] warning: bf16 autocast on a CPU without native bf16 (no avx512_bf16 or amx_bf16 in "
              "/proc/cpuinfo) is 10-30x slower than fp32; train with bf16_autocast=False", file=sys.stderr)
    directory = run_dir(config, root)
    schedule = checkpoint_schedule(config)
    written: list[int] = []
    writer_lock = paths.exclusive_lock(directory / ".lock", f"training {config.tag}")
    with writer_lock if world.is_writer else contextlib.nullcontext():  # rank 0 holds it for the whole run
        if world.is_writer:
            clean_stale_temporaries(directory)
            adopt_from_same_runs(config, root, progress)
        have = set(world.from_writer(available_steps(config, root)))  # what rank 0 sees decides for all
        missing = [s for s in schedule if s not in have]
        if not missing:
            return written
        end = missing[-1] if stop_at is None else min(missing[-1], stop_at)
        before = [s for s in have if s < missing[0] and s in schedule]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), devices.deterministic_cudnn():
            state = new_training_state(config, device, world)
            if before:
                _restore(state, read_checkpoint(config, max(before), root), directory)
            elif 0 in schedule:
                written.append(0)
                _checkpoint(state, root)
            state.ddp = world.wrap(state.net, device)
            data = load_training_data(config, device, dataset)
            n, bsz = data.shape[0], config.batch_size
            per_epoch = n // bsz  # drop the last partial batch
            bar = tqdm(total=end, initial=state.step, desc=f"train {config.tag}", unit="step", dynamic_ncols=True,
                       disable=not (progress and world.is_writer))
            epoch, perm = -1, None
            try:
                while state.step < end:
                    e, i = divmod(state.step, per_epoch)
                    if e != epoch:
                        epoch, perm = e, epoch_permutation(config.seed, e, n).to(device)
                    batch = training_batch(data, perm[i * bsz:(i + 1) * bsz], config, state.step)
                    tic = time.perf_counter()
                    train_step(state, world.local_slice(batch))
                    state.seconds += time.perf_counter() - tic
                    bar.update(1)
                    if state.step % 10 == 0 or state.step == end:
                        recent = [v for v in state.losses[-50:] if math.isfinite(v)]
                        bar.set_postfix(loss=f"{np.mean(recent):.4f}" if recent else "nan",
                                        skipped=state.skipped, refresh=False)
                    if state.step in schedule and state.step not in have:
                        _checkpoint(state, root)
                        written.append(state.step)
                        if progress and world.is_writer:
                            recent = [v for v in state.losses[-100:] if math.isfinite(v)]
                            tqdm.write(f"[train] checkpoint at step {state.step}: loss {np.mean(recent):.4f} "
                                       f"(last 100 steps), {state.seconds:.0f} s of training so far")
            finally:
                bar.close()
    return written


def ensure_checkpoints(
    config: TrainConfig, root: Path | None = None, device: torch.device | str | None = None,
    progress: bool = True, dataset: ImageDataset | None = None,
) -> list[tuple[int, Path]]:
    """The (step, path) of every scheduled checkpoint of `config`, training first only what is missing (on
    `dataset` for a configuration made for one)."""
    schedule = checkpoint_schedule(config)
    if set(schedule) - set(available_steps(config, root)):
        train(config, root=root, device=device, progress=progress, dataset=dataset)
    return [(s, checkpoint_path(config, s, root)) for s in schedule]


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def loss_per_sigma(
    denoiser: torch.nn.Module, x0: torch.Tensor, sigmas: Sequence[float], seed: int = 0,
    sigma_data: float = edm.SIGMA_DATA,
) -> dict[str, np.ndarray]:
    """Mean weighted EDM loss and plain MSE of `denoiser` on a fixed batch at each sigma, in fp32.

    The same noise n (from `seed`) is used at every sigma, so curves of different checkpoints differ
    only through the network. No sigmas give empty arrays; an empty batch is a one-line ValueError (NaN means).
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim == 0 or x0.shape[0] == 0:
        raise ValueError(f"loss_per_sigma needs a batch of at least one image, got {getattr(x0, 'shape', x0)!r}")
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


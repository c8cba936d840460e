"""Train EDM denoisers on MNIST (or another dataset), with checkpoints across training, resumable bit for bit.

    python -m lib.train --scale default          # train (or finish training) the default configuration
    python -m lib.train --scale paper            # the authors' MNIST run, meant for a GPU
    python -m lib.train --scale smoke --bench 20 # steps per second in fp32 and with bf16 autocast
    python -m lib.train --scale paper --dataset cifar10 --data-dir ~/cifar-10-python.tar.gz  # CIFAR mini-EDM

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lib import edm, integrity, paths, runtime
from lib.checkpoints import (  # noqa: F401  (the checkpoint API, as callers have always found it here)
    CHECKPOINT_KEYS,
    CheckpointError,
    History,
    _clean_stale_temporaries,
    _read_checkpoint,
    available_steps,
    checkpoint_path,
    load_checkpoint,
    load_history,
    run_dir,
    verify_checkpoints,
)
from lib.config import scale_name_from_environment
from lib.datasets import ImageDataset, load_dataset
from lib.train_config import (  # noqa: F401  (the configurations, as callers have always found them here)
    CHECKPOINT_FORMAT,
    TRAIN_CONFIGS,
    TrainConfig,
    _short_list,
    build_network,
    checkpoint_schedule,
    config_table,
    ema_beta,
    for_dataset,
    learning_rate,
    train_config,
)
from lib.unet import count_parameters

# --------------------------------------------------------------------------- training


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Data order of one epoch, a pure function of (seed, epoch): nothing to save for resuming."""
    mixed = int.from_bytes(hashlib.sha256(f"data-order/{seed}/{epoch}".encode()).digest()[:7], "little")
    return torch.randperm(n, generator=torch.Generator().manual_seed(mixed))


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


def load_training_data(config: TrainConfig, device: torch.device, dataset: ImageDataset | None = None) -> torch.Tensor:
    """The training images of `config`: MNIST's, or those of `dataset`, which must be the one the configuration was
    made for (`for_dataset`: same name and digest)."""
    if config.dataset == "mnist":
        from lib.data import load_mnist

        data = load_mnist("train", config.image_size)
    else:
        if dataset is None or (dataset.name, dataset.digest) != (config.dataset, config.data_digest):
            got = "no dataset" if dataset is None else f"{dataset.name} (digest {dataset.digest})"
            raise ValueError(f"{config.tag} trains on {config.dataset} (digest {config.data_digest}); got {got}: "
                             "pass the dataset the configuration was made for")
        data = dataset.x_train
    return data[: config.data_size].to(device) if config.data_size else data.to(device)


def flip_mask(seed: int, step: int, n: int) -> torch.Tensor:
    """Which images of step `step`'s batch are flipped left-right (half on average), a pure function of (seed, step):
    a resumed run flips the same ones."""
    mixed = int.from_bytes(hashlib.sha256(f"hflip/{seed}/{step}".encode()).digest()[:7], "little")
    return torch.rand(n, generator=torch.Generator().manual_seed(mixed)) < 0.5


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
    stop_at: int | None = None, progress: bool = True, dataset: ImageDataset | None = None,
) -> list[int]:
    """Write every missing checkpoint of `config`, resuming from the latest one before the first gap. A
    configuration for another dataset (`for_dataset`) needs that `dataset`.

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
            data = load_training_data(config, device, dataset)
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
                    if config.hflip:
                        flips = flip_mask(config.seed, state.step, len(batch)).to(device)
                        batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)
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
            shape = (config.batch_size, config.in_channels, config.image_size, config.image_size)
            batch = torch.rand(shape, device=device) * 2 - 1
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
    parser.add_argument("--dataset", default="mnist", help="mnist (default), cifar10 (with --data-dir), or the path "
                        "of an .npz file or image folder (lib.datasets): the scale's run on that data")
    parser.add_argument("--data-dir", default=None, help="for cifar10: the official archive or the folder it was "
                        "extracted to")
    return parser


def _settings(args: argparse.Namespace) -> tuple[TrainConfig, int, torch.device, int, ImageDataset | None]:
    """(config, threads, device, bench steps or 0, dataset or None for MNIST) from the command line; a one-line
    ValueError if one is bad."""
    config, dataset = train_config(args.scale), None
    if args.dataset != "mnist":
        dataset = load_dataset(args.dataset, args.data_dir)
        config = for_dataset(config, dataset)
    threads = (runtime.positive_int(args.threads, "--threads", "the number of torch threads")
               if args.threads is not None else runtime.default_threads())
    bench = runtime.positive_int(args.bench, "--bench", "training steps to time") if args.bench is not None else 0
    return config, threads, runtime.resolve_device(args.device), bench, dataset


def _run(config: TrainConfig, device: torch.device, bench: int, show: bool, dataset: ImageDataset | None = None) -> int:
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
        written = train(config, device=device, dataset=dataset)
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
        config, threads, device, bench, dataset = _settings(args)
    except ValueError as err:  # DatasetError included
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    print(f"[train] {config.tag} on {device} with {torch.get_num_threads()} threads")
    try:
        return _run(config, device, bench, args.list, dataset)
    except OSError as err:
        if not paths.write_refused(err):
            raise
        print(f"error: {paths.not_writable(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

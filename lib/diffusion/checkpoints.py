"""The checkpoint files of a training run: where they are, which exist, and loading one verified.

`data/checkpoints/<name>-<hash12>/step_XXXXXXX.pt`, written atomically with a sha256 sidecar (`lib.core.integrity`)
by `lib.train`; every load checks the digest, the keys, and that the stored configuration is the one asked for,
and any problem is a one-line `CheckpointError` that says what to do.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.core import integrity, paths
from lib.diffusion.train_config import (
    CHECKPOINT_FORMAT,
    TRAIN_CONFIGS,
    TrainConfig,
    _short_list,
    build_network,
    checkpoint_schedule,
)
from lib.models import edm

CHECKPOINT_KEYS = ("format", "config", "config_hash", "step", "model", "ema", "optimizer", "noise_generator",
                   "torch_rng", "cuda_rng", "losses", "skipped", "meta")


class CheckpointError(RuntimeError):
    """A missing, unreadable or mismatched checkpoint, described in one line with what to do."""


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
    base = config.name.split("-")[0]
    if config.dataset != "mnist" and base in TRAIN_CONFIGS:
        return f"run `python -m lib.train --scale {base} --dataset {config.dataset} ...` (with its --data-dir)"
    return "call `lib.diffusion.training.ensure_checkpoints(config)`"


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


def verify_checkpoints(config: TrainConfig, root: Path | None = None) -> None:
    """Read every scheduled checkpoint (digest, keys, config): a run whose middle checkpoint is corrupt is
    not finished, whatever its last one says. Raises the CheckpointError of the first bad one."""
    for step in checkpoint_schedule(config):
        _read_checkpoint(config, step, root)

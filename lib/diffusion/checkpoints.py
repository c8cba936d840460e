"""The checkpoint files of a training run: where they are, which exist, and loading one verified.

`data/checkpoints/<name>-<hash12>/step_XXXXXXX.pt`, written atomically with a sha256 sidecar (`lib.core.integrity`)
by `lib.train`; every load checks the digest, the keys, and that the stored configuration is the one asked for,
and any problem is a one-line `CheckpointError` that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lib.core import integrity, paths
from lib.core.errors import ReproError
from lib.diffusion.train_config import (
    CHECKPOINT_FORMAT,
    TRAIN_CONFIGS,
    TrainConfig,
    build_network,
    checkpoint_schedule,
    short_list,
)
from lib.models import edm

CHECKPOINT_KEYS = ("format", "config", "config_hash", "step", "model", "ema", "optimizer", "noise_generator",
                   "torch_rng", "cuda_rng", "losses", "skipped", "meta")


class CheckpointError(ReproError, RuntimeError):
    """A missing, unreadable or mismatched checkpoint, described in one line with what to do."""


def run_dir(config: TrainConfig, root: Path | None = None, create: bool = True) -> Path:
    """`<root>/<name>-<hash12>/`, root defaulting to `data/checkpoints/` (under `REPRO_DATA_DIR` when set); created
    unless `create` is False (reading needs no write access: a read-only folder whose checkpoints are all there)."""
    directory = Path(root or paths.data_dir() / "checkpoints") / config.tag
    if create and not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def checkpoint_path(config: TrainConfig, step: int, root: Path | None = None, create: bool = True) -> Path:
    """The file of `step`'s checkpoint (its folder created unless `create` is False)."""
    return run_dir(config, root, create) / f"step_{step:07d}.pt"


def available_steps(config: TrainConfig, root: Path | None = None) -> list[int]:
    """Steps of the checkpoints on disk for this configuration."""
    steps = []
    for path in run_dir(config, root, create=False).glob("step_*.pt"):
        with contextlib.suppress(ValueError):
            steps.append(int(path.stem.removeprefix("step_")))
    return sorted(steps)


def train_command(config: TrainConfig) -> str:
    """What trains `config`'s checkpoints, as an instruction for error messages."""
    if TRAIN_CONFIGS.get(config.name) == config:
        return f"run `python -m lib.train --scale {config.name}`"
    base = config.name.split("-")[0]
    if config.dataset != "mnist" and base in TRAIN_CONFIGS:
        return f"run `python -m lib.train --scale {base} --dataset {config.dataset} ...` (with its --data-dir)"
    return "call `lib.diffusion.training.ensure_checkpoints(config)`"


def trained_steps(config: TrainConfig, root: Path | None = None) -> list[int]:
    """The scheduled checkpoint steps of `config`, all on disk; a one-line CheckpointError naming the command that
    trains them when any is missing (nothing is trained here: `lib.diffusion.training.ensure_checkpoints` does)."""
    schedule = checkpoint_schedule(config)
    missing = sorted(set(schedule) - set(available_steps(config, root)))
    if missing:
        raise CheckpointError(f"the network {config.tag} is not trained ({len(missing)} of its {len(schedule)} "
                              f"checkpoints are missing): {train_command(config)} (`make figures` trains it first)")
    return schedule


def read_checkpoint(config: TrainConfig, step: int, root: Path | None = None) -> dict:
    """The checkpoint dict, verified to belong to `config`; any problem is a one-line CheckpointError."""
    path = checkpoint_path(config, step, root, create=False)
    if not path.exists():
        have = available_steps(config, root)
        listed = short_list(have) if have else "none"
        raise CheckpointError(f"no checkpoint at step {step} for config {config.tag}: available steps are "
                              f"{listed}; {train_command(config)}")
    try:
        state = integrity.load(path, lambda s: integrity.check_checkpoint(s, CHECKPOINT_KEYS), map_location="cpu")
        stored = json.loads(state["config"])
        stored_step = int(state["step"])
    except Exception as exc:  # corrupt (digest), truncated, not a torch file, missing keys...
        raise CheckpointError(f"checkpoint {path} is unreadable ({integrity.one_line(exc)}); delete it and "
                              f"{train_command(config)} to retrain it from the checkpoint before") from None
    expected = json.loads(json.dumps(config.as_dict()))
    if state.get("format") != CHECKPOINT_FORMAT or stored != expected or stored_step != step:
        diff = [k for k in sorted(set(stored) | set(expected)) if stored.get(k) != expected.get(k)]
        what = (f"fields {', '.join(diff)} differ" if diff else
                f"format {state.get('format')} vs {CHECKPOINT_FORMAT}, step {stored_step} vs {step}")
        raise CheckpointError(f"checkpoint {path} does not match config {config.tag} ({what}); "
                              f"delete {path.parent} and {train_command(config)}")
    return state


def load_checkpoint(
    config: TrainConfig, step: int | None = None, ema: bool = True,
    device: torch.device | str = "cpu", root: Path | None = None,
) -> edm.EDMPrecond:
    """The denoiser of `config` at `step` (default: the last), EMA weights by default, fp32, eval mode."""
    step = config.total_steps if step is None else step
    state = read_checkpoint(config, step, root)
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
    state = read_checkpoint(config, config.total_steps if step is None else step, root)
    return History(state["losses"].numpy().astype(np.float64), int(state["skipped"]), dict(state["meta"]))


def clean_stale_temporaries(directory: Path) -> None:
    """Remove half-written files left by a killed writer (only ever called under the folder's lock)."""
    for tmp in directory.glob(".step_*.tmp"):
        tmp.unlink(missing_ok=True)


def same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configurations train the same weights step for step: they differ at most in `total_steps`.

    The learning rate (warm-up, then constant), the EMA decay, the data order, the noise and the dropout masks are
    functions of the step and the seed alone, never of the run's length, so the first steps of a longer run are
    those of a shorter one."""
    return replace(a, total_steps=b.total_steps) == b


def adopt_checkpoints(source: TrainConfig, target: TrainConfig, root: Path | None = None) -> list[int]:
    """Copy into `target`'s folder every checkpoint of `source` (the same run, `same_run`) that `target`'s schedule
    holds and that `target` lacks, each read verified and written again under `target`'s configuration. A longer
    run thus starts from a shorter one's last checkpoint, and a shorter one gets its checkpoints from a longer
    run, without training twice. Returns the steps copied."""
    if not same_run(source, target):
        raise ValueError(f"{source.tag} and {target.tag} differ in more than total_steps: their checkpoints are not "
                         "the same weights")
    have = set(available_steps(target, root))
    wanted = [s for s in checkpoint_schedule(target) if s not in have and s <= source.total_steps]
    copied = []
    for step in sorted(set(wanted) & set(available_steps(source, root))):
        state = read_checkpoint(source, step, root)
        state["config"], state["config_hash"] = json.dumps(target.as_dict(), sort_keys=True), target.hash
        state["meta"] = {**state["meta"], "adopted_from": source.tag}
        integrity.save(state, checkpoint_path(target, step, root))
        copied.append(step)
    return copied


def same_runs(config: TrainConfig, root: Path | None = None) -> list[TrainConfig]:
    """The other configurations on disk under `root` that train the same weights as `config` (`same_run`: only
    `total_steps` differs), found by the configuration stored in their checkpoints; unreadable folders are
    skipped."""
    found = []
    for folder in sorted(Path(root or paths.data_dir() / "checkpoints").glob(f"{config.name}-*")):
        files = sorted(folder.glob("step_*.pt"))
        if folder.name == config.tag or not files:
            continue
        try:
            stored = json.loads(integrity.load(files[-1], map_location="cpu")["config"])
        except Exception:  # a damaged file: that folder is not a source
            continue
        other = replace(config, total_steps=int(stored.get("total_steps", 0)))
        if other.tag == folder.name and json.loads(json.dumps(other.as_dict())) == stored:
            found.append(other)
    return found


def adopt_from_same_runs(config: TrainConfig, root: Path | None, progress: bool) -> None:
    """Take the checkpoints that a longer or shorter run of the same configuration already wrote (its first steps
    are this run's: `lib.diffusion.checkpoints.same_run`), so that nothing is trained twice."""
    for other in same_runs(config, root):
        if copied := adopt_checkpoints(other, config, root):
            if progress:
                print(f"[train] {config.tag}: {len(copied)} checkpoints (steps {copied[0]}-{copied[-1]}) taken from "
                      f"the same run {other.tag}", file=sys.stderr)


def verify_checkpoints(config: TrainConfig, root: Path | None = None) -> None:
    """Read every scheduled checkpoint (digest, keys, config): a run whose middle checkpoint is corrupt is
    not finished, whatever its last one says. Raises the CheckpointError of the first bad one."""
    for step in checkpoint_schedule(config):
        read_checkpoint(config, step, root)

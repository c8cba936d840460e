"""Shards of a sweep: worker `index` of `count` takes every `count`-th work item, starting at `index`.

A sweep is a list of independent work items (here, teleportation configurations), each written atomically to its
own cache file when done, so a finished item is never recomputed and any number of workers can fill the cache
side by side; the notebook that needs the whole table then reads every item from the cache ("merges" them).

The engine that starts the workers is one researchers already run, not a scheduler of the suite's own:

- `torchrun --nproc_per_node N -m lib.sweep ...` (one node, N GPUs or CPU processes): `$RANK`, `$WORLD_SIZE`;
- a Slurm job array (`sbatch --array=0-N-1 ...`, also with an offset `--array=5-8` or a step `--array=0-6:2`):
  `$SLURM_ARRAY_TASK_ID`, `$SLURM_ARRAY_TASK_MIN`, `$SLURM_ARRAY_TASK_STEP` and `$SLURM_ARRAY_TASK_COUNT`, task
  `id` taking shard `(id - min) / step` of `count`;
- by hand: `--shard i/N`.

Items are dealt round-robin (items[index::count]), so shards of a list ordered by cost get similar work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lib.core.errors import ReproError

T = TypeVar("T")


class ShardError(ReproError, ValueError):
    """A shard that cannot be: index outside 0..count-1, a count below 1, or a malformed `i/N`."""


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: the index must be in 0..count-1 and the count >= 1 "
                             "(e.g. --shard 0/2 and --shard 1/2 for two workers)")

    def of(self, items: Sequence[T]) -> list[T]:
        """This shard's items: items[index::count]."""
        return list(items[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`i/N` (worker i of N, from 0) as a Shard; anything else is a one-line `ShardError`."""
    index, slash, count = text.partition("/")
    if not slash:
        raise ShardError(f"--shard {text!r}: write it as i/N, worker i (from 0) of N, e.g. 0/2")
    what = f"--shard {text!r}"
    return Shard(_whole_number(index, what), _whole_number(count, what))


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard:
    """The worker's shard from torchrun (`$RANK`, `$WORLD_SIZE`) or a Slurm job array (`slurm_shard`); else the
    whole sweep (0/1). A malformed variable is a one-line `ShardError` naming it."""
    env = os.environ if environ is None else environ
    if env.get("WORLD_SIZE") and env.get("RANK"):
        return Shard(_variable(env, "RANK"), _variable(env, "WORLD_SIZE"))
    if env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        return slurm_shard(env)
    return Shard()


def slurm_shard(env: Mapping[str, str]) -> Shard:
    """Task `$SLURM_ARRAY_TASK_ID` of an array of `$SLURM_ARRAY_TASK_COUNT` tasks starting at `$SLURM_ARRAY_TASK_MIN`
    (default 0) in steps of `$SLURM_ARRAY_TASK_STEP` (default 1): shard (id - min) / step of count. `--array=0-4:2`
    runs tasks 0, 2, 4, which are shards 0, 1, 2 of 3; an id off the grid (an array such as `--array=1,2,7`, which
    Slurm describes with a step of 1) is refused in one line, naming `--shard` as the way out."""
    task, count = _variable(env, "SLURM_ARRAY_TASK_ID"), _variable(env, "SLURM_ARRAY_TASK_COUNT")
    first = _variable(env, "SLURM_ARRAY_TASK_MIN", 0)
    step = _variable(env, "SLURM_ARRAY_TASK_STEP", 1)
    offset = task - first
    if step < 1 or offset < 0 or offset % step or offset // step >= count:
        raise ShardError(f"Slurm array task {task} (min {first}, step {step}, count {count}) is not one of "
                         f"{first}, {first + step}, ..., {first + step * (count - 1)}: submit a range such as "
                         "--array=0-N-1 (a step is fine) or pass --shard i/N")
    return Shard(offset // step, count)


SHARD_HINT = "write the shard as i/N, worker i (from 0) of N, e.g. 0/2"
VARIABLE_HINT = "it is set by torchrun or Slurm: start the workers with them, or unset it and pass --shard i/N"


def _whole_number(text: str, what: str, hint: str = SHARD_HINT) -> int:
    """`text` as an integer >= 0 written in ASCII digits (no '²', no sign); else a one-line `ShardError`."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ShardError(f"{what}: {text!r} is not a whole number; {hint}")
    return int(text)


def _variable(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    """The environment variable `name` as a whole number (`default` when unset or empty); a one-line
    `ShardError` naming it when it is not one."""
    text = env.get(name, "")
    if not text.strip() and default is not None:
        return default
    return _whole_number(text, f"${name}", VARIABLE_HINT)


WHOLE = Shard()  # one worker: the whole sweep

"""Shards of a sweep: worker `index` of `count` takes every `count`-th work item, starting at `index`.

A sweep is a list of independent work items (here, teleportation configurations), each written atomically to its
own cache file when done, so a finished item is never recomputed and any number of workers can fill the cache
side by side; the notebook that needs the whole table then reads every item from the cache ("merges" them).

The engine that starts the workers is one researchers already run, not a scheduler of the suite's own:

- `torchrun --nproc_per_node N -m lib.sweep ...` (one node, N GPUs or CPU processes): `$RANK`, `$WORLD_SIZE`;
- a Slurm job array (`sbatch --array=0-N-1 ...`): `$SLURM_ARRAY_TASK_ID`, `$SLURM_ARRAY_TASK_COUNT` and
  `$SLURM_ARRAY_TASK_MIN`;
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
    """`i/N` (worker i of N, from 0) as a Shard."""
    index, slash, count = text.partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise ShardError(f"--shard {text!r}: write it as i/N, worker i (from 0) of N, e.g. 0/2")
    return Shard(int(index), int(count))


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard:
    """The worker's shard from torchrun (`$RANK`, `$WORLD_SIZE`) or a Slurm job array (`$SLURM_ARRAY_TASK_ID`
    minus `$SLURM_ARRAY_TASK_MIN`, of `$SLURM_ARRAY_TASK_COUNT`); else the whole sweep (0/1)."""
    env = os.environ if environ is None else environ
    if env.get("WORLD_SIZE") and env.get("RANK"):
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    if env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return Shard(int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"]))
    return Shard()


WHOLE = Shard()  # one worker: the whole sweep

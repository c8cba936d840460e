"""Warm the caches that a scale's notebooks share, in parallel: `python -m lib.prepare --scale smoke`.

The scale's network (its checkpoints), the feature classifier and the dataset statistics are each built
once, by separate processes that split the cores between them, before notebooks and tests that need them
start side by side; otherwise the first notebook to need the network trains it while the others wait on
its lock, one after the other. Every task resumes or returns at once when its cache is already there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from lib.core import cli
from lib.core.config import SCALES, scale_from_command_line, scale_name_from_environment

CLASSIFIER_AND_STATISTICS = (
    "from lib.analysis import features; from lib.data import statistics; statistics.dataset_stats(); "
    "features.load_classifier(features.classifier_config({scale!r}), progress=False)"
)


def tasks(scale: str) -> dict[str, list[str]]:
    """The commands that fill the shared caches of `scale`, by name."""
    return {
        f"{scale} network": [sys.executable, "-m", "lib.train", "--scale", scale],
        "feature classifier and dataset statistics": [sys.executable, "-c",
                                                      CLASSIFIER_AND_STATISTICS.format(scale=scale)],
    }


def run_in_parallel(commands: dict[str, list[str]], cores: int) -> dict[str, int]:
    """Run every command at once with an equal share of `cores` as torch threads; their exit codes by name."""
    env = {**os.environ, "REPRO_THREADS": str(max(1, cores // len(commands)))}
    if not sys.stderr.isatty():  # a log file: a progress line every 30 s, not every tenth of a second
        env.setdefault("TQDM_MININTERVAL", "30")
    started = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
    return {name: proc.wait() for name, proc in started.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=scale_name_from_environment(),
                        help=f"one of {', '.join(SCALES)} (default: $REPRO_SCALE, else default)")
    args = parser.parse_args(argv)
    scale = scale_from_command_line(args.scale)
    if scale is None:
        return 2
    tic = time.perf_counter()
    codes = run_in_parallel(tasks(scale), len(os.sched_getaffinity(0)))
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        print(f"[prepare] FAILED: {', '.join(failed)} (see the messages above)", file=sys.stderr)
        return 1
    print(f"[prepare] caches of scale {scale} ready in {time.perf_counter() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))

"""Every command line ends in one line (issue 30): bad input to `lib.train`, `lib.sweep`, `lib.notebooks`,
`lib.prepare` and `lib.lab` is one `error:` line on stderr (or argparse's usage and error for a bad flag) and a
non-zero exit, never a traceback; `REPRO_DEBUG=1` shows the traceback. Each command runs as a fresh process in a
temporary data folder, without network (pip finds no index) and so without MNIST; the processes run side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lib.core import paths

TIMEOUT_S = 300


def _cases(folder: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (the command's arguments after `python -m`, extra environment)."""
    missing = str(folder / "missing.npz")
    empty = folder / "empty.npz"
    np.savez(empty)
    return {
        "train_unknown_scale": (["lib.train", "--scale", "nope"], {}),
        "train_missing_dataset": (["lib.train", "--scale", "smoke", "--dataset", missing], {}),
        "train_empty_dataset": (["lib.train", "--scale", "smoke", "--dataset", str(empty)], {}),
        "train_without_mnist_or_network": (["lib.train", "--scale", "smoke", "--threads", "1"], {}),
        "sweep_bad_shard": (["lib.sweep", "--scale", "smoke", "--shard", "5/2"], {}),
        "sweep_malformed_shard": (["lib.sweep", "--scale", "smoke", "--shard", "\u00b2/4"], {}),
        "sweep_malformed_rank": (["lib.sweep", "--scale", "smoke"], {"RANK": "abc", "WORLD_SIZE": "2"}),
        "sweep_slurm_task_off_the_grid": (["lib.sweep", "--scale", "smoke"], {
            "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
            "SLURM_ARRAY_TASK_COUNT": "3"}),
        "sweep_missing_dataset": (["lib.sweep", "--scale", "smoke", "--dataset", missing], {}),
        "sweep_missing_inception": (["lib.sweep", "--scale", "smoke", "--inception", str(folder / "none.pth")], {}),
        "notebooks_missing_dataset": (["lib.notebooks", "--scale", "smoke", "--dataset", missing], {}),
        "notebooks_no_such_notebook": (["lib.notebooks", "--scale", "smoke", "--only", "zz"], {}),
        "prepare_unknown_scale": (["lib.prepare", "--scale", "nope"], {}),
        "debug_shows_the_traceback": (["lib.train", "--scale", "smoke", "--dataset", missing], {"REPRO_DEBUG": "1"}),
    }


def _environment(folder: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "REPRO_DEBUG") and not k.startswith("SLURM_")}
    return {**env, "REPRO_DATA_DIR": str(folder / "data"), "PIP_NO_INDEX": "1", "OMP_NUM_THREADS": "1",
            "REPRO_THREADS": "1", **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=paths.REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every case run once, two at a time."""
    folder = tmp_path_factory.mktemp("doors")
    cases = _cases(folder)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, args, _environment(folder, extra)) for name, (args, extra) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


EXPECTED = {
    "train_unknown_scale": "unknown scale 'nope'",
    "train_missing_dataset": "missing.npz",
    "train_empty_dataset": "empty.npz",
    "train_without_mnist_or_network": "could not download",
    "sweep_bad_shard": "shard 5/2",
    "sweep_malformed_shard": "is not a whole number",
    "sweep_malformed_rank": "$RANK",
    "sweep_slurm_task_off_the_grid": "Slurm array task 3",
    "sweep_missing_dataset": "missing.npz",
    "sweep_missing_inception": "none.pth",
    "notebooks_missing_dataset": "missing.npz does not exist",
    "notebooks_no_such_notebook": "no notebook starts with 'zz'",
    "prepare_unknown_scale": "unknown scale 'nope'",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_is_one_error_line_and_a_non_zero_exit(results, name):
    result = results[name]
    lines = _error_lines(result)
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert EXPECTED[name] in lines[0], lines[0]


def test_repro_debug_shows_the_traceback(results):
    result = results["debug_shows_the_traceback"]
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "missing.npz" in result.stderr


def test_a_bad_flag_is_argparses_usage_and_error(tmp_path):
    result = _run(["lib.lab", "--port", "nope"], _environment(tmp_path, {}))
    lines = _error_lines(result)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[0].startswith("usage: ")
    assert "invalid int value: 'nope'" in lines[-1]

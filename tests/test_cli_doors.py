"""Every command line ends in one line (issue 30): bad input to `lib.train`, `lib.sweep`, `lib.notebooks`,
`lib.prepare` and `lib.lab` is one `error:` line on stderr (or argparse's usage and error for a bad flag) and a
non-zero exit, never a traceback; `REPRO_DEBUG=1` shows the traceback. Each command runs as a fresh process in a
temporary data folder, without network (pip finds no index) and so without MNIST; the processes run side by side."""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

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


# --------------------------------------------------------------------------- read-only data folders


def _inside(path, folder: Path) -> bool:
    return not isinstance(path, int) and os.path.abspath(os.fspath(path)).startswith(str(folder))


def _refuse(path) -> OSError:
    return OSError(errno.EROFS, "Read-only file system", os.fspath(path))


@pytest.fixture
def make_read_only(monkeypatch, request):
    """`make_read_only(folder)`: nothing under `folder` can be created, changed or removed any more. chmod where it
    binds; as root (where it does not) every call that writes is patched to fail as on a read-only file system."""

    def chmod(folder: Path) -> None:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for path in folders:
            path.chmod(0o555)
        request.addfinalizer(lambda: [path.chmod(0o755) for path in folders])

    def patch(folder: Path) -> None:
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        os_open, io_open = os.open, io.open

        def guarded_os_open(path, flags, *args, **kwargs):
            if flags & writes and _inside(path, folder):
                raise _refuse(path)
            return os_open(path, flags, *args, **kwargs)

        def guarded_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and _inside(file, folder):
                raise _refuse(file)
            return io_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_os_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(builtins, "open", guarded_open)
        for name in ("mkdir", "unlink", "remove", "rmdir", "chmod", "replace", "rename"):
            original = getattr(os, name)

            def guarded(path, *args, _original=original, **kwargs):
                if _inside(path, folder):
                    raise _refuse(path)
                return _original(path, *args, **kwargs)

            monkeypatch.setattr(os, name, guarded)

    return patch if os.geteuid() == 0 else chmod


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_valid_caches_are_read_from_a_read_only_folder_without_writing(tmp_path, monkeypatch, make_read_only,
                                                                       capsys):
    from lib.core import integrity
    from lib.data import statistics
    from lib.models import gmm

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cache = paths.cache_dir("stats") / "tiny.pt"
    stats = statistics.cached_stats(x, "tiny", cache, "[test] stats")
    fit = gmm.fit_mixture(x, 2, data_key="tiny", progress=False)
    legacy = tmp_path / "legacy.pt"
    integrity.save({"values": torch.ones(3)}, legacy)
    integrity.sidecar(legacy).unlink()  # a file from before digests: its digest cannot be recorded read-only
    before = _listing(tmp_path)
    make_read_only(tmp_path)
    capsys.readouterr()

    again = statistics.cached_stats(x, "tiny", cache, "[test] stats")
    refit = gmm.fit_mixture(x, 2, data_key="tiny", progress=False)
    assert torch.equal(again.eigvals, stats.eigvals) and torch.equal(refit.means, fit.means)
    assert "rejected" not in capsys.readouterr().err
    assert torch.equal(integrity.load(legacy)["values"], torch.ones(3))
    assert "could not record the digest of legacy.pt" in capsys.readouterr().err
    assert _listing(tmp_path) == before, "nothing was written"


def test_lib_train_verifies_a_read_only_folder_that_holds_every_checkpoint(tmp_path, monkeypatch, make_read_only,
                                                                          capsys):
    from lib import train
    from lib.core import cli
    from lib.diffusion import train_config, training

    tiny = train_config.TrainConfig(name="tiny", channels=8, channel_mult=(1, 2), dropout=0.1, data_size=64,
                                    batch_size=16, total_steps=2, lr=2e-3, warmup_steps=1, checkpoint_every=2,
                                    checkpoint_early=(0,))
    images = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(train, "train_config", lambda scale=None: tiny)
    monkeypatch.setattr(training, "load_training_data", lambda config, device, dataset=None: images.to(device))
    argv = ["--device", "cpu", "--threads", str(torch.get_num_threads())]
    assert cli.run(train.main, argv) == 0
    before = _listing(tmp_path)
    make_read_only(tmp_path)
    capsys.readouterr()
    assert cli.run(train.main, argv) == 0
    assert "[train] wrote 0 checkpoints" in capsys.readouterr().out
    assert cli.run(train.main, [*argv, "--list"]) == 0
    assert f"folder               {tmp_path / 'data' / 'checkpoints' / tiny.tag}" in capsys.readouterr().out
    assert _listing(tmp_path) == before, "nothing was written"


# --------------------------------------------------------------------------- partial notebooks of killed runs


def test_partial_notebooks_of_killed_runs_are_removed_in_one_line(tmp_path, capsys):
    from lib import notebooks

    old = time.time() - 2 * notebooks.STALE_AFTER_S
    killed, running, fresh = (tmp_path / f".0{i}_topic.ipynb.x{i}.ipynb" for i in range(3))
    committed = tmp_path / "00_topic.ipynb"
    for path in (killed, running, fresh, committed):
        path.write_text("{}")
    for path in (killed, running, committed):
        os.utime(path, (old, old))
    with notebooks._held(running):  # a notebook still running holds its partial copy
        removed = notebooks.remove_stale_partials(tmp_path)
    assert removed == [killed]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (running, fresh, committed))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "removed 1 partial notebook(s)" in lines[0] and killed.name in lines[0]
    assert notebooks.remove_stale_partials(tmp_path) == [running], "once its run is gone, it goes too"


def test_lib_lab_says_when_it_adds_allow_root(monkeypatch, capsys):
    from lib import lab

    class Started(Exception):
        pass

    def execv(program, cmd):
        raise Started(cmd)

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chdir", lambda folder: None)
    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Started) as started:
        lab.main(["--no-browser"])
    assert "--allow-root" in started.value.args[0]
    assert "running as root: starting Jupyter with --allow-root" in capsys.readouterr().err

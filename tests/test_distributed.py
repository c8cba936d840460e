"""Data-parallel training (lib.diffusion.distributed): two gloo processes started as torchrun starts them (rank,
world size and rendezvous in the environment) run `python -m lib.train` (`lib.train.main`) on a tiny configuration
and a tiny .npz dataset, and match one process trained on the same global batch; a killed run resumes to the
uninterrupted one; rank 0 alone writes; a batch that does not split, or a resume on another number of processes,
is refused in one line."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lib import train
from lib.core import cli, devices
from lib.data.datasets import load_dataset
from lib.diffusion import checkpoints, distributed, train_config, training

#: The smoke network (no dropout: the masks of N processes cannot be those of one) on 16x16 images, batch 8 (4 per
#: rank), 4 steps over 3 batches per epoch (an epoch boundary is crossed), checkpoints at 0, 2 and 4.
TINY = dataclasses.replace(train_config.train_config("smoke"), name="dp", batch_size=8, total_steps=4,
                           warmup_steps=2, checkpoint_every=2, checkpoint_early=(0,))
WORLD = 2
#: max |w_2 - w_1| over every weight and EMA weight after 4 steps, two processes vs one (float32 rounding:
#: half-batch convolutions and a two-term gradient average, then Adam): 1.3e-7 measured; training moves them by
#: 3.5e-3.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """24 training and 8 test images, 16x16 grey, random pixels from a fixed seed."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("dp_data") / "tiny_grey.npz"
    np.savez(path, x_train=rng.integers(0, 256, (24, 16, 16, 1), dtype=np.uint8),
             x_test=rng.integers(0, 256, (8, 16, 16, 1), dtype=np.uint8))
    return path


def _config(npz: Path) -> train_config.TrainConfig:
    return train_config.for_dataset(TINY, load_dataset(str(npz)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, data_dir: str, npz: str, die_after: int | None) -> None:
    """One of `WORLD` processes as torchrun starts it, running `python -m lib.train --scale smoke --dataset <npz>`
    with the smoke preset made tiny. Its output goes to `<data_dir>/rank<r>.out`; it records which rank writes which
    checkpoint in `<data_dir>/saves.log`, checks that each rank trains on B / N images, and with `die_after` rank 1
    dies (exit 9, as under kill -9) once that step is done."""
    torch.set_num_threads(1)  # first: a forked child must not wait on the parent's OpenMP threads
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank), REPRO_DATA_DIR=data_dir)
    out = open(Path(data_dir) / f"rank{rank}.out", "a", buffering=1)  # open until the process ends
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    train.train_config = lambda scale=None: TINY
    save, step = training._save, training.train_step

    def logged_save(state, root):
        with open(Path(data_dir) / "saves.log", "a") as log:
            log.write(f"{rank} {state.step}\n")
        return save(state, root)

    def checked_step(state, batch):
        assert batch.shape[0] == TINY.batch_size // WORLD, f"rank {rank} trains on {batch.shape[0]} images"
        value = step(state, batch)
        if die_after is not None and rank == 1 and state.step == die_after:
            os._exit(9)
        return value

    training._save, training.train_step = logged_save, checked_step
    code = train.main(["--scale", "smoke", "--dataset", npz, "--threads", "1", "--device", "cpu"])
    if code:
        raise SystemExit(code)


def _train_on_two(data_dir: Path, npz: Path, die_after: int | None = None, deadline_s: float = 120.0) -> None:
    """`WORLD` processes forked from this one (a fresh interpreter per process would spend ~10 s importing torch
    and compiling the modules torch.optim loads on first use), joined; raises when one fails, and kills them all
    and fails when they hang (ranks out of step wait on each other for gloo's 30 minutes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(_rank_main, args=(_free_port(), str(data_dir), str(npz), die_after), nprocs=WORLD,
                                 join=False, start_method="fork")
    end = time.monotonic() + deadline_s
    while not context.join(timeout=1.0):
        if time.monotonic() > end:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{WORLD} training processes still running after {deadline_s:.0f} s: ranks out of step?")


def _final(config: train_config.TrainConfig, root: Path) -> dict:
    return torch.load(checkpoints.checkpoint_path(config, config.total_steps, root), weights_only=True)


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def one_process(tiny_npz, tmp_path_factory) -> Path:
    """The checkpoint folder of the run on one process (first: the processes forked later inherit its imports)."""
    root = tmp_path_factory.mktemp("dp_one")
    training.train(_config(tiny_npz), root=root, device="cpu", progress=False, dataset=load_dataset(str(tiny_npz)))
    return root


@pytest.fixture(scope="module")
def two_processes(one_process, tiny_npz, tmp_path_factory) -> Path:
    """The data folder of an uninterrupted run on two processes."""
    data_dir = tmp_path_factory.mktemp("dp_two")
    _train_on_two(data_dir, tiny_npz)
    return data_dir


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(one_process, two_processes, tiny_npz):
    config = _config(tiny_npz)
    assert config.dropout == 0.0 and config.batch_size == 8
    one, two = _final(config, one_process), _final(config, two_processes / "checkpoints")
    for key in ("model", "ema"):
        assert _max_difference(one[key], two[key]) <= TOLERANCE, key
    assert torch.allclose(one["losses"], two["losses"], rtol=1e-5), "the loss recorded is the global batch's"
    assert torch.equal(one["noise_generator"], two["noise_generator"]), "every rank draws the whole batch's noise"
    start = torch.load(checkpoints.checkpoint_path(config, 0, one_process), weights_only=True)
    assert _max_difference(start["model"], one["model"]) > 1000 * TOLERANCE, "the tolerance is far below training"
    print(f"max |two - one|: model {_max_difference(one['model'], two['model']):.2e}, "
          f"ema {_max_difference(one['ema'], two['ema']):.2e}; training moved the weights by "
          f"{_max_difference(start['model'], one['model']):.2e}")


def test_rank_0_alone_writes_prints_and_reports(two_processes, tiny_npz):
    config = _config(tiny_npz)
    root = two_processes / "checkpoints"
    assert (two_processes / "saves.log").read_text().split("\n")[:-1] == ["0 0", "0 2", "0 4"]
    checkpoints.verify_checkpoints(config, root)
    assert checkpoints.available_steps(config, root) == [0, 2, 4]
    assert not list(checkpoints.run_dir(config, root).glob(".*.tmp"))
    meta = checkpoints.load_history(config, root=root).meta
    assert meta["world_size"] == WORLD and meta["threads"] == 1
    first, second = ((two_processes / f"rank{r}.out").read_text() for r in (0, 1))
    assert "with 1 threads in each of 2 processes" in first and "[train] wrote 3 checkpoints" in first
    assert f"checkpoints in {checkpoints.run_dir(config, root)} (trained by 2 processes)" in first
    assert "train" not in second, second


def test_a_killed_run_resumes_to_the_uninterrupted_one(two_processes, tiny_npz, tmp_path, monkeypatch, capsys):
    config = _config(tiny_npz)
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
        _train_on_two(tmp_path, tiny_npz, die_after=3)  # rank 1 dies after step 3, past the checkpoint at 2
    root = tmp_path / "checkpoints"
    assert checkpoints.available_steps(config, root) == [0, 2]
    # one process may not take over a two-process run: a one-line error that says how to resume it
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(train, "train_config", lambda scale=None: TINY)
    argv = ["--scale", "smoke", "--dataset", str(tiny_npz), "--threads", "1", "--device", "cpu"]
    assert cli.run(train.main, argv) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(error) == 1 and "trained on 2 process(es), this run has 1" in error[0], error
    assert "torchrun --nproc_per_node 2 -m lib.train" in error[0]
    _train_on_two(tmp_path, tiny_npz)
    resumed, straight = _final(config, root), _final(config, two_processes / "checkpoints")
    for key in ("model", "ema"):
        assert all(torch.equal(resumed[key][k], straight[key][k]) for k in straight[key]), key
    assert torch.equal(resumed["losses"], straight["losses"])
    assert (tmp_path / "saves.log").read_text().split("\n")[:-1] == ["0 0", "0 2", "0 4"]


def test_a_global_batch_that_does_not_split_is_refused(tiny_npz, tmp_path, monkeypatch, capsys):
    odd = dataclasses.replace(TINY, batch_size=9)
    with pytest.raises(ValueError, match="global batch of 9 images does not split evenly over 2 processes"):
        distributed.World(0, 2).local_batch_size(9)
    monkeypatch.setattr(distributed, "current_world", lambda: distributed.World(0, 2))
    with pytest.raises(ValueError, match="run a number of processes that divides 9"):
        training.train(odd, root=tmp_path, device="cpu", progress=False)
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(train, "train_config", lambda scale=None: odd)
    assert cli.run(train.main, ["--scale", "smoke", "--threads", "1", "--device", "cpu"]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert error == ["error: the global batch of 9 images does not split evenly over 2 processes: run a number of "
                     "processes that divides 9"]


def test_the_world_comes_from_torchruns_environment():
    assert distributed.environment_world({}) == distributed.World() == distributed.environment_world(
        {"WORLD_SIZE": "1"})
    torchrun = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert distributed.environment_world(torchrun) == distributed.World(3, 4, 1)
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT unset: start the processes with torchrun"):
        distributed.environment_world({**torchrun, "MASTER_ADDR": "", "MASTER_PORT": ""})
    with pytest.raises(ValueError, match="RANK is ''"):
        distributed.environment_world({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK 2 is not below WORLD_SIZE 2"):
        distributed.environment_world({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be a positive integer"):
        distributed.environment_world({"WORLD_SIZE": "0"})
    assert distributed.World(1, 2).local_slice(torch.arange(8)).tolist() == [4, 5, 6, 7]


def test_each_of_n_processes_takes_its_share_of_the_idle_cores(monkeypatch):
    """max(1, idle cores // N) torch threads per process; an explicit REPRO_THREADS is per process, as given."""
    monkeypatch.delenv("REPRO_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(devices, "idle_fraction", lambda: 0.75)
    assert [devices.default_threads(processes=n) for n in (1, 2, 4, 8)] == [6, 3, 1, 1]
    monkeypatch.setenv("REPRO_THREADS", "2")
    assert devices.default_threads(processes=4) == 2

"""Train EDM denoisers on MNIST (or another dataset): the command.

    python -m lib.train --scale default          # train (or finish training) the default configuration
    python -m lib.train --scale paper            # the authors' MNIST run, meant for a GPU
    python -m lib.train --scale smoke --bench 20 # steps per second in fp32 and with bf16 autocast
    python -m lib.train --scale paper --dataset cifar10 --data-dir ~/cifar-10-python.tar.gz  # CIFAR mini-EDM
    torchrun --nproc_per_node 4 -m lib.train --scale paper   # data-parallel on 4 GPUs (or 4 CPU processes)

The training itself (configurations, the loop, checkpoints) is `lib.diffusion`; this command trains what is
missing, verifies every checkpoint and reports, or measures the training speed (`--bench`). Under torchrun
(WORLD_SIZE > 1) every process trains its slice of each global batch (`lib.diffusion.distributed`: NCCL with one
GPU per process, gloo on CPUs, where each process takes its share of the idle cores); rank 0 alone writes the
checkpoints, prints, verifies and reports, and alone lists or benchmarks (`--list`, `--bench`).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from lib.core import cli, devices
from lib.core.config import scale_name_from_environment
from lib.data.datasets import ImageDataset, load_dataset
from lib.diffusion import distributed
from lib.diffusion.checkpoints import available_steps, load_history, run_dir, verify_checkpoints
from lib.diffusion.train_config import TRAIN_CONFIGS, TrainConfig, config_table, for_dataset, short_list, train_config
from lib.diffusion.training import new_training_state, train, train_step


def measure_speed(
    config: TrainConfig, steps: int = 20, warmup: int = 3, device: torch.device | str | None = None,
) -> dict[str, float]:
    """Training steps per second of `config`'s network on random data, in fp32 and with bf16 autocast."""
    steps = devices.positive_int(steps, "the number of benchmark steps")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    device = devices.resolve_device(device)
    result = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        if bf16 and (device.type != "cpu" or not devices.native_bf16()):
            continue  # autocast is CPU-only, and without native bf16 one step takes up to half a minute
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            state = new_training_state(replace(config, bf16_autocast=bf16), device)
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
    parser.add_argument("--steps", default=None, help="train the scale's configuration for this many steps instead "
                        "(a run of its own, whose first steps are those of the preset: lib.diffusion.checkpoints."
                        "adopt_checkpoints copies them from the shorter run, or to it)")
    parser.add_argument("--dataset", default="mnist", help="mnist (default), cifar10 (with --data-dir), or the path "
                        "of an .npz file or image folder (lib.data.datasets): the scale's run on that data")
    parser.add_argument("--data-dir", default=None, help="for cifar10: the official archive or the folder it was "
                        "extracted to")
    return parser


def _settings(
    args: argparse.Namespace, world: distributed.World = distributed.ALONE,
) -> tuple[TrainConfig, int, torch.device, int, ImageDataset | None]:
    """(config, threads, device, bench steps or 0, dataset or None for MNIST) from the command line, for this
    process of `world`; a one-line ValueError if one is bad."""
    config, dataset = train_config(args.scale), None
    if args.steps is not None:
        config = replace(config, total_steps=devices.positive_int(args.steps, "--steps", "training steps"))
    if args.dataset != "mnist":
        dataset = load_dataset(args.dataset, args.data_dir)
        config = for_dataset(config, dataset)
    world.local_batch_size(config.batch_size)
    threads = (devices.positive_int(args.threads, "--threads", "the number of torch threads")
               if args.threads is not None else devices.default_threads(processes=world.size))
    bench = devices.positive_int(args.bench, "--bench", "training steps to time") if args.bench is not None else 0
    device = distributed.process_device(world, devices.resolve_device(args.device))
    return config, threads, device, bench, dataset


def _run(config: TrainConfig, device: torch.device, bench: int, show: bool, dataset: ImageDataset | None = None) -> int:
    """What main does once the settings are valid: list, benchmark or train (then verify every checkpoint); with
    several processes, rank 0 alone lists, benchmarks, verifies and reports."""
    world = distributed.current_world()
    if (show or bench) and not world.is_writer:
        return 0
    if show:
        for key, value in config_table(config, str(run_dir(config, create=False))):
            print(f"  {key:20s} {value}")
        print(f"  on disk              {short_list(available_steps(config)) or 'none'}")
        return 0
    if bench:
        speeds = measure_speed(config, steps=bench, device=device)
        print("[bench] " + ", ".join(f"{k}: {v:.2f} steps/s" for k, v in speeds.items())
              + f" (batch {config.batch_size}, {bench} steps)")
        return 0
    tic = time.perf_counter()
    written = train(config, device=device, dataset=dataset)
    if not world.is_writer:
        return 0
    history = load_history(config)
    verify_checkpoints(config)  # a CheckpointError is the same on every rank: said once, by rank 0 (`main`)
    wall = time.perf_counter() - tic
    final = np.nanmean(history.losses[-100:])
    print(f"[train] wrote {len(written)} checkpoints in {wall:.0f} s; {config.total_steps} steps took "
          f"{history.meta['seconds']:.0f} s of training in all ({history.meta['precision']}, "
          f"{history.meta['threads']} threads); final loss {final:.4f}; skipped steps {history.skipped}")
    processes = f" (trained by {world.size} processes)" if world.size > 1 else ""
    print(f"[train] checkpoints in {run_dir(config)}{processes}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command: settings from the command line, then `_run` inside the process group of torchrun's processes
    (alone without torchrun). Errors propagate to `cli.run`, which prints them in one line on rank 0 only."""
    args = _parser().parse_args(argv)
    world = distributed.environment_world()
    config, threads, device, bench, dataset = _settings(args, world)
    with distributed.process_group(world, device):
        torch.set_num_threads(int(world.from_writer(threads)))  # every rank as many threads as rank 0
        if world.is_writer:
            print(f"[train] {config.tag} on {device} with {torch.get_num_threads()} threads"
                  + (f" in each of {world.size} processes" if world.size > 1 else ""))
        return _run(config, device, bench, args.list, dataset)


if __name__ == "__main__":
    sys.exit(cli.run(main, speak=cli.first_rank()))

"""The expensive sweeps of notebooks 07, 04 and 05 as a command, so that several workers can fill their caches side
by side.

    python -m lib.sweep --scale paper                          # one worker: the whole sweep, both stages
    torchrun --nproc_per_node 4 -m lib.sweep --scale paper     # four workers on one node (one GPU each)
    sbatch --array=0-15 --wrap "python -m lib.sweep --scale paper --stage 1"   # a Slurm job array, then
    sbatch --array=0-15 --wrap "python -m lib.sweep --scale paper --stage 2"   # (after the first array ends)
    python -m lib.sweep --scale paper --shard 1/4               # by hand: worker 1 of 4
    torchrun --nproc_per_node 4 -m lib.sweep dynamics --scale paper   # notebook 04's checkpoints, 4 workers

Stage 1 samples every configuration of the sweep and the plain runs of the other budgets (every N - k of the skip
grid among them: the equal-NFE controls); stage 2 the extra samples of every run compared at the skips that stage 1
left undecided, which it can only choose once every stage-1 configuration is in
the cache. Each worker takes its shard of each list (`lib.core.shards`), each configuration is cached atomically
(`lib.analysis.teleport_sweep`) and never computed twice; notebook 07, run afterwards with the same scale, study
and device type, reads them all from the cache. torchrun ranks and Slurm job arrays are used as they come: no
process group, no scheduler of the suite's own (the work items are independent, so the workers never talk).
`dynamics` does the same for notebook 04 (each worker scores its share of the checkpoints, `lib.analysis.dynamics`)
and `grid` for notebook 05 (its share of the (probe set, noise level) pairs, `lib.analysis.grid_sweep`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from lib import runtime
from lib.core import cli
from lib.core.config import scale_from_command_line, scale_name_from_environment
from lib.core.shards import parse_shard, shard_from_environment
from lib.experiments import mixture_grid, training_dynamics
from lib.experiments.teleportation import first_stage, read_back, second_stage, sweep_inputs


def _one_device_per_local_worker() -> None:
    """Under torchrun on a GPU node, worker `$LOCAL_RANK` uses GPU `$LOCAL_RANK` (the device "cuda" means)."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("teleportation", "dynamics", "grid"), default="teleportation",
                        help="notebook 07's teleportation sweep (default), notebook 04's checkpoints or notebook 05's "
                             "mixture grid")
    parser.add_argument("--scale", default=scale_name_from_environment())
    parser.add_argument("--dataset", default=None, help="as for python -m lib.notebooks (default: mnist)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None, help="ours (default) or the folder of a saved diffusers model")
    parser.add_argument("--inception", default=None, help="a local copy of the FID Inception weights")
    parser.add_argument("--stage", choices=("1", "2", "all"), default="all")
    parser.add_argument("--shard", default=None,
                        help="i/N: worker i (from 0) of N (default: from torchrun's or a Slurm array's variables)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command: a shard of one sweep, its errors left to `cli.run` (one line each)."""
    args = _parser().parse_args(argv)
    scale = scale_from_command_line(args.scale)
    if scale is None:
        return 2
    shard = parse_shard(args.shard) if args.shard else shard_from_environment()
    _one_device_per_local_worker()
    ctx = runtime.setup(scale, verbose=shard.index == 0, dataset=args.dataset, dataset_dir=args.data_dir,
                        model=args.model, inception=args.inception)
    local_workers = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if ctx.device.type == "cpu" and local_workers > 1:  # the node's cores shared by its workers
        torch.set_num_threads(max(1, torch.get_num_threads() // local_workers))
    tic = time.perf_counter()
    if args.what in ("dynamics", "grid"):
        count = (training_dynamics.run if args.what == "dynamics" else mixture_grid.run)(ctx.study, shard)
        print(f"[sweep {shard}] {count} {'checkpoints' if args.what == 'dynamics' else '(probe set, level) pairs'} "
              f"scored in {time.perf_counter() - tic:.0f} s; notebook {'04' if args.what == 'dynamics' else '05'} "
              "reads the cache")
        return 0
    inputs = sweep_inputs(ctx.study)
    if args.stage in ("1", "all"):
        result, plain = first_stage(ctx.study, inputs, shard)
        print(f"[sweep {shard}] stage 1: {len(result.table) + len(plain.table)} configurations; "
              f"{read_back(ctx.study, inputs, shard)}")
    if args.stage in ("2", "all"):
        extended = second_stage(ctx.study, inputs, shard)
        print(f"[sweep {shard}] stage 2: {len(extended)} configurations extended")
    print(f"[sweep {shard}] done in {time.perf_counter() - tic:.0f} s; notebook 07 reads the cache")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))

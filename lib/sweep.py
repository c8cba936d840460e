"""The expensive sweeps of notebooks 07 and 04 as a command, so that several workers can fill their caches side by
side.

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
import hashlib
import os
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch

from lib import runtime
from lib.analysis import (
    dynamics,
    features,
    grid_sweep,
    linearity,
    mixture_grid,
    teleport_pairs,
    teleport_sweep,
    teleportation,
)
from lib.analysis.metrics import FrechetReference
from lib.analysis.teleportation import Config, TeleportSweep
from lib.core import cli, config
from lib.core.config import scale_from_command_line, scale_name_from_environment
from lib.core.errors import ReproError
from lib.core.shards import WHOLE, Shard, parse_shard, shard_from_environment
from lib.diffusion import ems
from lib.diffusion.sampler_records import RECORDS
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser
from lib.study import Study
from lib.verdicts import teleportation as c6_rule


def dynamics_tag(study: Study) -> str:
    """What keys the cached rows of each checkpoint of notebook 04: our run's tag and the data's statistics."""
    return f"{study.model_tag()}/{study.stats('train').key}"


def dynamics_shard(study: Study, shard: Shard = WHOLE, progress: bool = True) -> int:
    """Notebook 04's checkpoints of this shard scored and cached (our network's run: a model from a folder has no
    checkpoints, as in the notebook); returns how many."""
    history = study if study.is_ours else study.with_model("ours")
    steps = shard.of(history.checkpoint_steps())
    banks = dynamics.probe_banks(study.stats("train"), study.images("train"), study.images("test"), study.scale,
                                 device=study.device, progress=progress)
    dynamics.checkpoint_table(banks, history.network, steps, cache_tag=dynamics_tag(history), progress=progress)
    return len(steps)


def grid_tag(study: Study, data_key: str) -> str:
    """What keys the cached levels of notebook 05's mixture grid: the model and the data the mixtures were fitted on
    (the probes, levels, models and steps enter the key of each level)."""
    return f"{study.model_tag()}/{data_key}"


def grid_shard(study: Study, shard: Shard = WHOLE, progress: bool = True) -> int:
    """Notebook 05's (probe set, level) pairs of this shard scored and cached, with the notebook's networks (final
    and early checkpoints, or a folder's model), mixtures (fitted or read from their cache) and probes; returns how
    many pairs the shard holds."""
    scale = study.scale
    steps = {"early": scale.early_step, "final": study.final_step} if study.is_ours else {"final": study.final_step}
    networks = {name: study.network(step if study.is_ours else None) for name, step in steps.items()}
    stats, x_test = study.stats("train"), study.images("test")
    x_train = study.images("train")
    subset = x_train if scale.train_subset is None else x_train[: scale.train_subset]
    data_key = f"{stats.key}-n{len(subset)}"
    fits = mixture_grid.fit_grid(subset, scale.grid_components, seed=0, data_key=data_key)
    models = mixture_grid.grid_models(fits, scale.grid_ranks, device=study.device)
    models["gaussian"] = GaussianDenoiser.from_stats(stats, device=study.device)
    models["delta"] = DeltaMixtureDenoiser(subset, device=study.device)
    banks = {split: linearity.ProbeBank(x0, config.PROBE_SIGMAS, split, seed=0, device=study.device)
             for split, x0 in grid_sweep.probe_sets(subset, x_test, scale.n_grid_probes).items()}
    net_outputs = {name: {split: bank.network_outputs(networks[name], step=step) for split, bank in banks.items()}
                   for name, step in steps.items()}
    grid_sweep.score_grid(banks, models, net_outputs, steps, cache_tag=grid_tag(study, data_key), shard=shard,
                          progress=progress)
    return len(shard.of([(split, i) for split in banks for i in range(len(config.PROBE_SIGMAS))]))


def model_statistics(study: Study, progress: bool = True) -> ems.EMS:
    """DPM-Solver-v3's empirical model statistics of the study's network (`lib.diffusion.ems`), estimated on its
    training images with the scale's settings (`ems.settings_for`), cached by the model's tag and the data's
    statistics key: computed once, by the notebook or by the first worker that needs them."""
    key = hashlib.sha256(f"{study.model_tag()}/{study.stats('train').key}".encode()).hexdigest()[:16]
    return ems.estimate_ems(study.network(), study.images("train").to(study.device), ems.settings_for(study.scale.name),
                            key=key, progress=progress)


def sampler_options(study: Study, progress: bool = True) -> dict[str, dict]:
    """The keyword arguments of every sampler of the sweep whose record `needs` some (`lib.diffusion.sampler_records`):
    {"dpm_solver_v3": {"ems": the network's statistics}} when DPM-Solver-v3 is among the scale's budgets."""
    scale = study.scale
    names = {name for name, _ in [*scale.teleport_budgets, *plain_budgets(scale)]}
    needing = sorted(name for name in names if "ems" in RECORDS[name].needs)
    if not needing:
        return {}
    statistics = model_statistics(study, progress)
    return {name: {"ems": statistics} for name in needing}


def run_options(study: Study) -> dict:
    """The sweep's device, cache tag (model, data statistics, feature network), batch size and samplers' options
    (`sampler_options`): the same for the notebook and every worker, so that they share one cache."""
    tag = f"{study.model_tag()}/{study.stats('train').key}/{study.classifier_key()}"
    return {"device": study.device, "cache_tag": tag, "batch_size": 64 if study.device.type == "cpu" else 1000,
            "sampler_options": sampler_options(study)}


@dataclass
class SweepInputs:
    """What every configuration is run and scored with."""

    network: object
    gaussian: GaussianDenoiser
    classifier: torch.nn.Module
    reference: torch.Tensor  # features of the test images
    shape: tuple[int, ...]
    options: dict

    @classmethod
    def of(cls, study: Study) -> SweepInputs:
        classifier = study.classifier()
        stats = study.stats("train")
        return cls(study.network(), GaussianDenoiser.from_stats(stats, device=study.device), classifier,
                   features.extract_features(classifier, study.images("test")), tuple(stats.shape), run_options(study))


def plain_budgets(scale) -> list[tuple[str, int]]:
    """The plain runs besides the teleportation budgets: the scale's `plain_budgets` (the quality-vs-NFE figure) and
    every N - k of the skip grid (each skipped run's equal-NFE control), in that order, each once."""
    extra = teleportation.equal_nfe_budgets(scale.teleport_budgets, scale.teleport_skip_fractions)
    return list(dict.fromkeys([*scale.plain_budgets, *extra]))


def first_stage(study: Study, inputs: SweepInputs, shard: Shard = WHOLE,
                progress: bool = True) -> tuple[TeleportSweep, TeleportSweep]:
    """(the teleportation sweep, the plain runs of the other budgets: `plain_budgets`) on `n_teleport_samples` samples
    each; with a shard, only its configurations (run or read from the cache)."""
    scale = study.scale
    args = (inputs.network, inputs.gaussian, inputs.classifier, inputs.reference)
    result = teleport_sweep.sweep(*args, scale.teleport_budgets, scale.teleport_skip_fractions, scale.teleport_seeds,
                                  scale.n_teleport_samples, inputs.shape, jumps=scale.teleport_jumps, shard=shard,
                                  progress=progress, **inputs.options)
    plain = teleport_sweep.sweep(*args, plain_budgets(scale), (0.0,), scale.teleport_seeds, scale.n_teleport_samples,
                                 inputs.shape, shard=shard, progress=progress, **inputs.options)
    return result, plain


def refinement(study: Study, merged: TeleportSweep, reference: FrechetReference) -> tuple[pd.DataFrame, float,
                                                                                       list[Config]]:
    """(the first stage's paired table, the level of its intervals, the configurations the second stage extends to
    `n_teleport_samples_max` samples: every run compared at the skips `lib.verdicts.teleportation.refine_skips`
    picks, every seed). `merged`: the sweep and the plain runs (`teleport_sweep.merge`)."""
    scale = study.scale
    two_stages = scale.n_teleport_samples_max > scale.n_teleport_samples
    level = c6_rule.c6_level(2 if two_stages else 1)
    paired = teleport_pairs.paired_table(merged, reference, n_boot=scale.n_bootstrap, level=level)
    skips = c6_rule.refine_skips(paired, (*scale.teleport_jumps, "plain")) if two_stages else []
    configs = teleport_pairs.skip_configurations(skips, list(scale.teleport_seeds), (*scale.teleport_jumps, "plain"))
    return paired, level, [c for c in configs if c in merged.features]


def missing_configurations(study: Study, inputs: SweepInputs) -> list[Config]:
    """The stage-1 configurations not in the cache yet (what stage 2 must wait for)."""
    scale, options = study.scale, inputs.options
    configs = (teleportation.configurations(scale.teleport_budgets, scale.teleport_skip_fractions,
                                            scale.teleport_seeds, scale.teleport_jumps)
               + teleportation.configurations(plain_budgets(scale), (0.0,), scale.teleport_seeds))
    return [c for c in configs if not teleport_sweep.is_cached(options["cache_tag"], c, scale.n_teleport_samples,
                                                               options["device"], options["sampler_options"])]


class SweepError(ReproError, RuntimeError):
    """A sweep that cannot go on or did not finish: configurations missing from the cache, named."""


def describe_missing(missing: list[Config], shown: int = 4) -> str:
    """The first `shown` of the `missing` configurations as the progress bars name them, and how many more."""
    names = "; ".join(teleportation.describe_config(c) for c in missing[:shown])
    return names + (f"; and {len(missing) - shown} more" if len(missing) > shown else "")


def read_back(study: Study, inputs: SweepInputs, shard: Shard) -> str:
    """The final read-back of stage 1: every configuration of the whole sweep looked up in the cache. One line
    when all are there or when other shards may still be at work (naming what no shard produced yet); a
    `SweepError` naming them when this worker ran the whole sweep and some are still missing."""
    missing = missing_configurations(study, inputs)
    if not missing:
        return "every stage-1 configuration is in the cache"
    if shard == WHOLE:
        raise SweepError(f"{len(missing)} stage-1 configurations are not in the cache after the whole sweep: "
                         f"{describe_missing(missing)}; run the command again")
    return (f"{len(missing)} stage-1 configurations are in no shard's cache yet: {describe_missing(missing)} (other "
            "workers may still be at work; once all have ended, rerun any whose shard failed)")


def second_stage(study: Study, inputs: SweepInputs, shard: Shard = WHOLE, progress: bool = True) -> list[Config]:
    """This shard's part of the second stage; returns the configurations it extended. Refuses (a `SweepError` naming
    the missing ones) while stage-1 configurations are not all cached."""
    missing = missing_configurations(study, inputs)
    if missing:
        raise SweepError(f"stage 2 needs every stage-1 configuration in the cache; {len(missing)} are missing "
                         f"({describe_missing(missing)}): let every stage-1 worker finish")
    merged = teleport_sweep.merge(*first_stage(study, inputs, progress=False))  # all from the cache
    _, _, refine = refinement(study, merged, FrechetReference(inputs.reference))
    extend_runs(study, inputs, merged, refine, shard, progress)
    return shard.of(refine)


def extend_runs(study: Study, inputs: SweepInputs, merged: TeleportSweep, configs: list[Config],
                shard: Shard = WHOLE, progress: bool = True) -> TeleportSweep:
    """The second stage's sampling: `configs` of `merged` extended to `n_teleport_samples_max` samples each, with the
    sweep's inputs and cache (`teleport_sweep.extend`); notebook 07 and `second_stage` both call it."""
    return teleport_sweep.extend(merged, configs, study.scale.n_teleport_samples_max, inputs.network, inputs.gaussian,
                                 inputs.classifier, inputs.shape, shard=shard, progress=progress, **inputs.options)


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
        count = (dynamics_shard if args.what == "dynamics" else grid_shard)(ctx.study, shard)
        print(f"[sweep {shard}] {count} {'checkpoints' if args.what == 'dynamics' else '(probe set, level) pairs'} "
              f"scored in {time.perf_counter() - tic:.0f} s; notebook {'04' if args.what == 'dynamics' else '05'} "
              "reads the cache")
        return 0
    inputs = SweepInputs.of(ctx.study)
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

"""Notebook 07's experiment (C6): the teleportation sweep's inputs, its first stage (every configuration and the plain
runs of the other budgets, among them the equal-NFE controls), the choice of what the second stage refines (by C6's
rule) and the second stage's extra samples. Each configuration is cached (`lib.analysis.teleport_sweep`), so that
`python -m lib.sweep` workers and the notebook share one cache; a stage's shard runs only its configurations."""

from __future__ import annotations

import hashlib

import pandas as pd

from lib.analysis import features, teleport_pairs, teleport_sweep, teleportation
from lib.analysis.metrics import FrechetReference
from lib.analysis.teleport_sweep import SweepInputs
from lib.analysis.teleportation import Config, TeleportSweep
from lib.core.errors import ReproError
from lib.core.shards import WHOLE, Shard
from lib.diffusion import ems
from lib.diffusion.sampler_records import RECORDS
from lib.experiments import StudyLike
from lib.models.denoisers import Denoiser
from lib.models.gaussian import GaussianDenoiser
from lib.verdicts import teleportation as c6_rule


def model_statistics(study: StudyLike, progress: bool = True, network: Denoiser | None = None) -> ems.EMS:
    """DPM-Solver-v3's empirical model statistics of the study's network (`lib.diffusion.ems`), estimated on its
    training images with the scale's settings (`ems.settings_for`), cached by the model's tag and the data's
    statistics key: computed once, by the notebook or by the first worker that needs them. `network`: the study's
    network when the caller has it loaded already."""
    key = hashlib.sha256(f"{study.model_tag()}/{study.stats('train').key}".encode()).hexdigest()[:16]
    return ems.estimate_ems(network or study.network(), study.images("train").to(study.device),
                            ems.settings_for(study.scale.name), key=key, progress=progress)


def sampler_options(study: StudyLike, progress: bool = True, network: Denoiser | None = None) -> dict[str, dict]:
    """The keyword arguments of every sampler of the sweep whose record `needs` some (`lib.diffusion.sampler_records`):
    {"dpm_solver_v3": {"ems": the network's statistics}} when DPM-Solver-v3 is among the scale's budgets."""
    scale = study.scale
    names = {name for name, _ in [*scale.teleport_budgets, *plain_budgets(scale)]}
    needing = sorted(name for name in names if "ems" in RECORDS[name].needs)
    if not needing:
        return {}
    statistics = model_statistics(study, progress, network)
    return {name: {"ems": statistics} for name in needing}


def sweep_inputs(study: StudyLike, network: Denoiser | None = None) -> SweepInputs:
    """What the sweep runs and scores every configuration with (`lib.analysis.teleport_sweep.SweepInputs`): the
    study's network (loaded once: `network` when the caller has it), its Gaussian, feature network and test features,
    and the same device, cache tag (model, data statistics, feature network), batch size and samplers' options
    (`sampler_options`) for the notebook and every worker, so that they share one cache."""
    classifier, network = study.classifier(), network or study.network()
    stats = study.stats("train")
    return SweepInputs(network, GaussianDenoiser.from_stats(stats, device=study.device), classifier,
                       features.extract_features(classifier, study.images("test")), tuple(stats.shape),
                       cache_tag=f"{study.model_tag()}/{stats.key}/{study.classifier_key()}",
                       batch_size=64 if study.device.type == "cpu" else 1000, device=study.device,
                       sampler_options=sampler_options(study, network=network))


def plain_budgets(scale) -> list[tuple[str, int]]:
    """The plain runs besides the teleportation budgets: the scale's `plain_budgets` (the quality-vs-NFE figure) and
    every N - k of the skip grid (each skipped run's equal-NFE control), in that order, each once."""
    extra = teleportation.equal_nfe_budgets(scale.teleport_budgets, scale.teleport_skip_fractions)
    return list(dict.fromkeys([*scale.plain_budgets, *extra]))


def first_stage(study: StudyLike, inputs: SweepInputs, shard: Shard = WHOLE,
                progress: bool = True) -> tuple[TeleportSweep, TeleportSweep]:
    """(the teleportation sweep, the plain runs of the other budgets: `plain_budgets`) on `n_teleport_samples` samples
    each; with a shard, only its configurations (run or read from the cache)."""
    scale = study.scale
    result = teleport_sweep.sweep(inputs, scale.teleport_budgets, scale.teleport_skip_fractions, scale.teleport_seeds,
                                  scale.n_teleport_samples, jumps=scale.teleport_jumps, shard=shard, progress=progress)
    plain = teleport_sweep.sweep(inputs, plain_budgets(scale), (0.0,), scale.teleport_seeds, scale.n_teleport_samples,
                                 shard=shard, progress=progress)
    return result, plain


def refinement(study: StudyLike, merged: TeleportSweep, reference: FrechetReference) -> tuple[pd.DataFrame, float,
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


def missing_configurations(study: StudyLike, inputs: SweepInputs) -> list[Config]:
    """The stage-1 configurations not in the cache yet (what stage 2 must wait for)."""
    scale = study.scale
    configs = (teleportation.configurations(scale.teleport_budgets, scale.teleport_skip_fractions,
                                            scale.teleport_seeds, scale.teleport_jumps)
               + teleportation.configurations(plain_budgets(scale), (0.0,), scale.teleport_seeds))
    return [c for c in configs if not teleport_sweep.is_cached(inputs.cache_tag, c, scale.n_teleport_samples,
                                                               inputs.device, inputs.sampler_options)]


class SweepError(ReproError, RuntimeError):
    """A sweep that cannot go on or did not finish: configurations missing from the cache, named."""


def describe_missing(missing: list[Config], shown: int = 4) -> str:
    """The first `shown` of the `missing` configurations as the progress bars name them, and how many more."""
    names = "; ".join(teleportation.describe_config(c) for c in missing[:shown])
    return names + (f"; and {len(missing) - shown} more" if len(missing) > shown else "")


def read_back(study: StudyLike, inputs: SweepInputs, shard: Shard) -> str:
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


def second_stage(study: StudyLike, inputs: SweepInputs, shard: Shard = WHOLE, progress: bool = True) -> list[Config]:
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


def extend_runs(study: StudyLike, inputs: SweepInputs, merged: TeleportSweep, configs: list[Config],
                shard: Shard = WHOLE, progress: bool = True) -> TeleportSweep:
    """The second stage's sampling: `configs` of `merged` extended to `n_teleport_samples_max` samples each, with the
    sweep's inputs and cache (`teleport_sweep.extend`); notebook 07 and `second_stage` both call it."""
    return teleport_sweep.extend(merged, configs, study.scale.n_teleport_samples_max, inputs, shard, progress)

"""Notebook 05's experiment (C4): the grid of Gaussian mixtures (K x rank), the Gaussian and the training-set score,
scored against the network's outputs at every (probe set, noise level), each pair cached, so that `python -m lib.sweep
grid` workers and the notebook share one cache."""

from __future__ import annotations

from lib.analysis import grid_sweep, linearity, mixture_grid
from lib.core import config
from lib.core.shards import WHOLE, Shard
from lib.experiments import StudyLike
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser


def cache_tag(study: StudyLike, data_key: str) -> str:
    """What keys the cached levels of notebook 05's mixture grid: the model and the data the mixtures were fitted on
    (the probes, levels, models and steps enter the key of each level)."""
    return f"{study.model_tag()}/{data_key}"


def network_steps(study: StudyLike) -> dict[str, int]:
    """The networks notebook 05 compares, by name, with their training steps: the early and final checkpoints of a
    model with a training history, the final network alone (step -1) of a model from a folder."""
    final = {"final": study.final_step}
    return {"early": study.scale.early_step, **final} if study.model.has_history else final


def run(study: StudyLike, shard: Shard = WHOLE, progress: bool = True) -> int:
    """Notebook 05's (probe set, level) pairs of this shard scored and cached, with the notebook's networks (final
    and early checkpoints, or a folder's model), mixtures (fitted or read from their cache) and probes; returns how
    many pairs the shard holds."""
    scale = study.scale
    steps = network_steps(study)
    networks = {name: study.network(step if study.model.has_history else None) for name, step in steps.items()}
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
    grid_sweep.score_grid(banks, models, net_outputs, steps, cache_tag=cache_tag(study, data_key), shard=shard,
                          progress=progress)
    return len(shard.of([(split, i) for split in banks for i in range(len(config.PROBE_SIGMAS))]))

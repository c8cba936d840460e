"""Notebook 04's experiment (C3): every checkpoint of our training run scored against the analytic models on the same
probes (`lib.analysis.dynamics`), each checkpoint's rows cached, so that `python -m lib.sweep dynamics` workers and the
notebook share one cache."""

from __future__ import annotations

from lib.analysis import dynamics
from lib.core.shards import WHOLE, Shard
from lib.experiments import StudyLike


def cache_tag(study: StudyLike) -> str:
    """What keys the cached rows of each checkpoint of notebook 04 (`dynamics.history_tag`): our run's tag and the
    data's statistics."""
    return dynamics.history_tag(study.model_tag(), study.stats("train").key)


def run(study: StudyLike, shard: Shard = WHOLE, progress: bool = True) -> int:
    """Notebook 04's checkpoints of this shard scored and cached (our network's run: a model from a folder has no
    checkpoints, as in the notebook); returns how many."""
    history = study.with_history()
    steps = shard.of(history.checkpoint_steps())
    banks = dynamics.probe_banks(study.stats("train"), study.images("train"), study.images("test"), study.scale,
                                 device=study.device, progress=progress)
    dynamics.checkpoint_table(banks, history.network, steps, cache_tag=cache_tag(history), progress=progress)
    return len(steps)

"""The expensive experiments, one module per claim that needs one, each written once and called by its notebook and by
`python -m lib.sweep` alike (the command line only parses its arguments and calls these):

- `training_dynamics`: notebook 04's checkpoints scored against the analytic models (C3);
- `mixture_grid`: notebook 05's grid of Gaussian mixtures scored against the network (C4);
- `teleportation`: notebook 07's sweep of teleported and plain runs, its two stages and its inputs (C6).

Each takes a study (`lib.study.Study`, or anything with the same members: `StudyLike`) and a shard
(`lib.core.shards`), so that several workers can fill the caches side by side. The layer sits above the analyses and
the verdicts (the teleportation sweep's second stage reads C6's rule to choose what to refine) and below the
application.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from lib.core.config import Scale
from lib.data.statistics import DatasetStats
from lib.models.denoisers import Denoiser


class ModelLike(Protocol):
    """What the experiments ask of a study's model: whether it has a training history (checkpoints along a run)."""

    has_history: bool


class StudyLike(Protocol):
    """What the experiments ask of a study (`lib.study.Study` has all of it): its scale and device, its model's cache
    tag and networks, its data, its feature classifier, and whether the model has a training history."""

    scale: Scale
    device: torch.device

    @property
    def model(self) -> ModelLike: ...

    @property
    def final_step(self) -> int: ...

    def model_tag(self) -> str: ...

    def stats(self, split: str = "train") -> DatasetStats: ...

    def images(self, split: str = "train") -> torch.Tensor: ...

    def network(self, step: int | None = None) -> Denoiser: ...

    def checkpoint_steps(self) -> list[int]: ...

    def with_history(self) -> Any: ...

    def classifier(self) -> torch.nn.Module: ...

    def classifier_key(self) -> str: ...

"""Does the length of the run change C3 and C4? The training run beside its own first half, and both claims' tables.

`first_part(config)` is the same run stopped at half its steps: the configuration with half the steps and nothing
else changed (`checkpoints.same_run`: learning rate, EMA, data order, noise and dropout depend on the step alone, and
the learning rate is constant after the warm-up), so its weights *are* the full run's at that step, and
`training.ensure_checkpoints` takes them from the full run's folder instead of training them again. At the default
scale the full run is 8,000 steps and its first part the 4,000-step network that notebooks 03-07 studied before.

- C3 (`dynamics_table`): notebook 04's probes and models (`dynamics.probe_banks`) scored at every checkpoint of the
  full run, each checkpoint's rows cached under the run's tag (`dynamics.checkpoint_rows`): notebook 04's cache, so
  the history is scored once for both. C3's rule judges "early" as a share of each table's final step, so the first
  part is judged on its own history (`table[table.step <= N / 2]`).
- C4 (`grid_setup`, `grid_table`): notebook 05's grid restricted to what C4's verdict reads: the mixtures with
  K <= `max_components` (the coarse ones, 2 <= K <= 100 in `lib.verdicts.mixtures`, and K = 1), every rank of
  the scale, the Gaussian and the training-set score (`delta`), on notebook 05's probes and noise levels, scored
  one (probe set, level) at a time against any number of networks (`grid_sweep.score_grid`, cached).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd
import torch

from lib.analysis import dynamics, grid_sweep, linearity, mixture_grid
from lib.core.config import PROBE_SIGMAS, Scale
from lib.diffusion.checkpoints import available_steps, load_checkpoint, same_run
from lib.diffusion.train_config import TrainConfig, checkpoint_schedule
from lib.models.denoisers import Denoiser
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser

#: The most components a mixture of the C4 grid has here (`lib.verdicts.mixtures.C4_COARSE_MAX_K`; the verdicts are
#: a layer above the analyses, so the number is repeated, and a test holds the two equal).
C4_MAX_COMPONENTS = 100


def first_part(config: TrainConfig, factor: int = 2) -> TrainConfig:
    """The same run stopped at 1/`factor` of its steps (`python -m lib.train --scale S --steps N / factor`)."""
    if factor < 1 or config.total_steps % factor:
        raise ValueError(f"{config.tag}'s {config.total_steps} steps do not split into {factor} equal parts")
    return replace(config, total_steps=config.total_steps // factor)


def same_weights(a: TrainConfig, b: TrainConfig, step: int, device: torch.device | str = "cpu") -> bool:
    """Whether runs `a` and `b` (the same run, `same_run`) both hold a checkpoint at `step` with equal EMA weights."""
    if not same_run(a, b) or step not in available_steps(a) or step not in available_steps(b):
        return False
    first, second = (load_checkpoint(c, step, device=device).state_dict() for c in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def dynamics_table(banks: Mapping[str, linearity.ProbeBank], config: TrainConfig, stats_key: str,
                   device: torch.device | str = "cpu", progress: bool = True) -> pd.DataFrame:
    """C3's table (notebook 04's rows) over every scheduled checkpoint of `config`, in step order, each
    checkpoint's rows cached under `dynamics.history_tag`, as notebook 04's are."""
    def network_at(step: int) -> Denoiser:
        return load_checkpoint(config, step, device=device)

    return dynamics.checkpoint_table(banks, network_at, checkpoint_schedule(config),
                                     cache_tag=dynamics.history_tag(config.tag, stats_key), progress=progress)


@dataclass
class GridSetup:
    """Notebook 05's inputs: the training images the mixtures are fitted on, the key of that data, the models by
    table name and the probe banks (training and test probes at every `PROBE_SIGMAS` level)."""

    subset: torch.Tensor
    data_key: str
    models: dict[str, Denoiser]
    banks: dict[str, linearity.ProbeBank]


def grid_setup(stats, x_train: torch.Tensor, x_test: torch.Tensor, scale: Scale,
               max_components: int | None = C4_MAX_COMPONENTS, device: torch.device | str = "cpu",
               progress: bool = True) -> GridSetup:
    """Notebook 05's mixtures (K of `scale.grid_components` up to `max_components`, None: all; every rank of
    `scale.grid_ranks`; fits cached), the Gaussian, the training-set score and the probe banks."""
    subset = x_train if scale.train_subset is None else x_train[: scale.train_subset]
    data_key = f"{stats.key}-n{len(subset)}"
    ks = [k for k in scale.grid_components if max_components is None or k <= max_components]
    fits = mixture_grid.fit_grid(subset, ks, seed=0, data_key=data_key, progress=progress)
    models = mixture_grid.grid_models(fits, scale.grid_ranks, device=device)
    models["gaussian"] = GaussianDenoiser.from_stats(stats, device=device)
    models["delta"] = DeltaMixtureDenoiser(subset, device=device)
    banks = {split: linearity.ProbeBank(x0, PROBE_SIGMAS, split, seed=0, device=device)
             for split, x0 in grid_sweep.probe_sets(subset, x_test, scale.n_grid_probes).items()}
    return GridSetup(subset, data_key, models, banks)


def grid_table(setup: GridSetup, networks: Mapping[int, Denoiser], cache_tag: str | None = None,
               progress: bool = True) -> pd.DataFrame:
    """The grid table (`mixture_grid.annotate`d EV rows) of every model of `setup` against each network, keyed by
    its training step (the table's `step` column): what `lib.verdicts.c4_verdict(table, step=s)` judges."""
    steps = {f"step{step}": int(step) for step in networks}
    outputs = {f"step{step}": {split: bank.network_outputs(network, step=step) for split, bank in setup.banks.items()}
               for step, network in networks.items()}
    scored = grid_sweep.score_grid(setup.banks, setup.models, outputs, steps, cache_tag=cache_tag, progress=progress)
    return mixture_grid.annotate(scored.table, n_train=len(setup.subset))

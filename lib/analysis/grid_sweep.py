"""The mixture grid of notebook 05 scored one (probe set, noise level) at a time, each level's rows cached
atomically, so that workers can share the levels (`lib.core.shards`).

At one level the work is every analytic model's output on that level's probes (the expensive part: 88 mixtures, the
Gaussian and the training set), compared with each network's output there (EV rows, `linearity.ev_row`) and with the
clean images (the DSM loss of each grid model, `mixture_grid.dsm_loss`). Only these numbers are kept, never the
outputs themselves (1.4 GB at the default scale), so a level's cache is small; the tables are assembled in the order
`ProbeBank.score_outputs` and `mixture_grid.dsm_loss_table` give them (probe set, step, level, model).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from lib.analysis import linearity, mixture_grid
from lib.core import integrity, paths
from lib.core.shards import WHOLE, Shard
from lib.models.denoisers import Denoiser

CACHE_VERSION = 1
PROBE_SEED = 5  # which training and test images are the grid's probes


def probe_sets(subset: torch.Tensor, x_test: torch.Tensor, n_probes: int) -> dict[str, torch.Tensor]:
    """The grid's probes: `n_probes` training images (of those the mixtures were fitted on) and test images."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return {"train": subset[torch.randperm(len(subset), generator=generator)[:n_probes]],
            "test": x_test[torch.randperm(len(x_test), generator=generator)[:n_probes]]}


@dataclass
class ScoredGrid:
    """The EV rows of every model (`linearity.COLUMNS`), each grid model's DSM loss per (probe set, model) and
    level, and the seconds each model's outputs took (when first computed)."""

    table: pd.DataFrame
    dsm: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _cache_path(tag: str, bank: linearity.ProbeBank, i: int, models: Mapping[str, Denoiser],
                steps: Mapping[str, int]) -> Path:
    probes = hashlib.sha256(bank.x0.numpy().tobytes()).hexdigest()[:16]
    settings = [CACHE_VERSION, tag, bank.probe_set, probes, bank.sigmas[i], list(models), sorted(steps.items())]
    return paths.cache_dir("grid") / f"{hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]}.pt"


def _check_level(level: dict) -> None:
    integrity.require(isinstance(level, dict) and set(level) == {"ev", "dsm", "seconds"},
                      "a cached grid level without its ev, dsm and seconds")


def score_level(bank: linearity.ProbeBank, i: int, models: Mapping[str, Denoiser],
                net_outputs: Mapping[str, torch.Tensor], steps: Mapping[str, int]) -> dict:
    """Level `i` of `bank`: EV rows of every model against each network's outputs (`net_outputs[name]` at this
    level, step `steps[name]`), in step then model order; the DSM loss of each grid model; seconds per model."""
    x, sigma = bank.x[i], bank.sigmas[i]
    outputs, seconds = {}, {}
    for name, model in models.items():
        tic = time.perf_counter()
        outputs[name] = linearity.evaluate(model, x, sigma, bank.device, bank.batch)
        seconds[name] = time.perf_counter() - tic
    ev = [linearity.ev_row(net_outputs[step_name], outputs[name], x, sigma)
          | {"step": step, "sigma": sigma, "model": name, "probe_set": bank.probe_set, "n_probes": len(x)}
          for step_name, step in steps.items() for name in models]
    dsm = {name: mixture_grid.dsm_loss(outputs[name], bank.x0, sigma) for name in models
           if mixture_grid.is_grid_model(name)}
    return {"ev": ev, "dsm": dsm, "seconds": seconds}


def score_grid(banks: Mapping[str, linearity.ProbeBank], models: Mapping[str, Denoiser],
               net_outputs: Mapping[str, Mapping[str, list[torch.Tensor]]], steps: Mapping[str, int],
               cache_tag: str | None = None, shard: Shard = WHOLE, progress: bool = True) -> ScoredGrid | None:
    """Every (probe set, level) scored, from the cache when there (else computed and cached); with a shard, only
    its levels, to fill the cache (returns None)."""
    if shard.count > 1 and cache_tag is None:
        raise ValueError("a sharded grid needs a cache_tag: its levels reach the notebook through the cache")
    items = [(split, i) for split, bank in banks.items() for i in range(len(bank.sigmas))]
    levels = {}
    for split, i in tqdm(shard.of(items), desc="mixture grid levels", disable=not progress):
        bank = banks[split]
        nets = {name: per_split[split][i] for name, per_split in net_outputs.items()}
        path = None if cache_tag is None else _cache_path(cache_tag, bank, i, models, steps)
        level = None if path is None else integrity.load_cache(path, _check_level, "[grid]", "scoring it again")
        if level is None:
            level = score_level(bank, i, models, nets, steps)
            if path is not None:
                integrity.save(level, path)
        levels[(split, i)] = level
    if shard.count > 1:
        return None
    return _assemble(banks, steps, levels)


def _assemble(banks: Mapping[str, linearity.ProbeBank], steps: Mapping[str, int], levels: dict) -> ScoredGrid:
    rows, scored = [], ScoredGrid(pd.DataFrame())
    for split, bank in banks.items():
        for step in steps.values():
            for i in range(len(bank.sigmas)):
                rows += [row for row in levels[(split, i)]["ev"] if row["step"] == step]
        for name in levels[(split, 0)]["dsm"]:
            scored.dsm[(split, name)] = [levels[(split, i)]["dsm"][name] for i in range(len(bank.sigmas))]
        for level in (levels[(split, i)] for i in range(len(bank.sigmas))):
            for name, seconds in level["seconds"].items():
                scored.seconds[name] = scored.seconds.get(name, 0.0) + seconds
    scored.table = pd.DataFrame(rows, columns=linearity.COLUMNS)
    return scored

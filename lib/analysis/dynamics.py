"""Training dynamics (claim C3): every checkpoint of a run scored against the analytic models, one checkpoint at a
time, each checkpoint's rows cached atomically so that workers can share the checkpoints (`lib.core.shards`).

The probes and the analytic models' outputs are built once per process (`probe_banks`, the same for every worker:
seeded); only the network changes from one checkpoint to the next. A checkpoint's rows are the EV table of its
network against every model of both banks (`ProbeBank.score_network`), cached under `data/cache/dynamics/` by the
run's tag, the statistics, the banks' settings and the step; a finished checkpoint is never scored twice, and the
table of every checkpoint is read back in step order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm import tqdm

from lib.analysis import linearity
from lib.core import integrity, paths
from lib.core.config import Scale
from lib.core.shards import WHOLE, Shard
from lib.models.denoisers import Denoiser

CACHE_VERSION = 1
PROBE_SEED, NOISE_SEED = 2, 1  # which images are probes; their noise


def probe_banks(stats, x_train: torch.Tensor, x_test: torch.Tensor, scale: Scale,
                device: torch.device | str = "cpu", progress: bool = True) -> dict[str, linearity.ProbeBank]:
    """Training and held-out probe banks (`n_dynamics_probes` images each, at `dynamics_sigmas`) with the outputs of
    the analytic models: the isotropic baseline, the Gaussian, the scale's mixtures and the training set."""
    models = linearity.analytic_models(stats, x_train, gmm_components=scale.gmm_components, gaussian_ranks=(),
                                       train_subset=scale.train_subset, seed=0, device=device, progress=progress)
    models.pop("mean")  # the mean alone adds nothing here: mean + std is the isotropic baseline
    generator = torch.Generator().manual_seed(PROBE_SEED)
    banks = {}
    for name, x in {"train": x_train, "test": x_test}.items():
        x0 = x[torch.randperm(len(x), generator=generator)[: scale.n_dynamics_probes]]
        banks[name] = linearity.ProbeBank(x0, scale.dynamics_sigmas, name, seed=NOISE_SEED, device=device)
        banks[name].add_models(models, progress=progress)
    return banks


def history_tag(run_tag: str, stats_key: str) -> str:
    """The cache tag of a training run's checkpoint rows: the run's tag (its checkpoint folder) and the key of the data
    statistics the probes and models come from. Notebook 04, `python -m lib.sweep dynamics` and notebook 02's
    comparison of run lengths all key their rows by it, so that they share one cache."""
    return f"{run_tag}/{stats_key}"


def _cache_key(tag: str, banks: dict[str, linearity.ProbeBank], step: int) -> str:
    settings = [CACHE_VERSION, tag, int(step)] + [
        [name, bank.sigmas, len(bank.x0), sorted(bank.outputs)] for name, bank in banks.items()]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def _check_rows(rows: dict) -> None:
    integrity.require(isinstance(rows, dict) and set(rows) >= set(linearity.COLUMNS),
                      f"cached rows with columns {sorted(rows) if isinstance(rows, dict) else type(rows).__name__}")


def checkpoint_rows(banks: dict[str, linearity.ProbeBank], network_at: Callable[[int], Denoiser], step: int,
                    cache_tag: str | None = None) -> pd.DataFrame:
    """The rows of one checkpoint (every bank), from the cache when there, else scored (and cached)."""
    path = None if cache_tag is None else paths.cache_dir("dynamics") / f"{_cache_key(cache_tag, banks, step)}.pt"
    if path is not None:
        rows = integrity.load_cache(path, _check_rows, "[dynamics]", "scoring the checkpoint again")
        if rows is not None:
            return pd.DataFrame(rows)
    network = network_at(step)
    table = pd.concat([bank.score_network(network, step=step) for bank in banks.values()], ignore_index=True)
    if path is not None:
        integrity.save({column: table[column].tolist() for column in table.columns}, path)
    return table


def checkpoint_table(banks: dict[str, linearity.ProbeBank], network_at: Callable[[int], Denoiser],
                     steps: Sequence[int], cache_tag: str | None = None, shard: Shard = WHOLE,
                     progress: bool = True) -> pd.DataFrame:
    """Every checkpoint's rows in step order; with a shard, only its checkpoints (for workers filling the cache,
    which a shard needs: `cache_tag`)."""
    if shard.count > 1 and cache_tag is None:
        raise ValueError("a sharded table needs a cache_tag: its rows reach the notebook through the cache")
    tables = [checkpoint_rows(banks, network_at, step, cache_tag)
              for step in tqdm(shard.of(list(steps)), desc="checkpoints", disable=not progress)]
    return pd.concat(tables, ignore_index=True)

"""A teleportation sweep: every configuration sampled, its features cached, and extended with more samples.

Each configuration's samples are turned into feature vectors once and cached under
`data/cache/teleportation/` by the model, statistics and classifier keys, the configuration, the sample
count and where the samples start in the seed's noise stream (`extend` adds samples without redrawing
the first ones, so pairs stay paired).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from lib.analysis.features import FeatureClassifier, extract_features
from lib.analysis.teleportation import (
    CACHE_VERSION,
    TABLE_COLUMNS,
    Config,
    TeleportSweep,
    configurations,
    describe_config,
    run_configuration,
    score_features,
)
from lib.core import integrity, paths
from lib.core.shards import WHOLE, Shard
from lib.models.denoisers import Denoiser
from lib.models.gaussian import GaussianDenoiser


def options_key(options: Mapping[str, Any] | None) -> str:
    """What a sampler's keyword arguments add to a run's cache key: each value's `digest()` where it has one (e.g.
    `lib.diffusion.ems.EMS`), else its repr; "" for none (the samplers without options keep their keys)."""
    if not options:
        return ""
    return json.dumps({k: v.digest() if hasattr(v, "digest") else repr(v) for k, v in sorted(options.items())})


def _cache_key(tag: str, config: Config, n_samples: int, device: str, first: int = 0, options: str = "") -> str:
    """The cache entry's name. Its fields, their order and the JSON they are hashed as are the keys of every cache
    written so far: change them and every sweep runs again."""
    c = Config(*config)
    fields = [CACHE_VERSION, tag, c.sampler, c.steps, c.skip, c.seed, n_samples, device]
    if c.jump not in ("gaussian", "none"):  # the Gaussian runs keep the keys they had before the controls
        fields.append(c.jump)
    if first:  # an extension's samples (`extend`); the first samples keep the keys they had before
        fields.append({"first": first})
    if options:  # the sampler's options (`options_key`)
        fields.append({"options": options})
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


ENTRY_KEYS = ("features", "preview", "finite", "sigma_skip", "nfe", "wall_s")


def _check_entry(entry: dict, n_samples: int) -> None:
    integrity.check_keys(entry, ENTRY_KEYS, "sweep entry")
    integrity.require(entry["features"].ndim == 2 and len(entry["features"]) == n_samples,
                      f"features of shape {tuple(entry['features'].shape)} for {n_samples} samples")


def _cache_path(tag: str, config: Config, n_samples: int, device: str, first: int = 0, options: str = "") -> Path:
    return paths.cache_dir("teleportation") / f"{_cache_key(tag, config, n_samples, device, first, options)}.pt"


def is_cached(tag: str, config: Config, n_samples: int, device: torch.device | str,
              sampler_options: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether the first `n_samples` samples of `config` are in the cache (a file there; verified when read);
    `sampler_options` as for `sweep`."""
    options = options_key((sampler_options or {}).get(Config(*config).sampler))
    return _cache_path(tag, config, n_samples, torch.device(device).type, options=options).exists()


def _load_entry(path, n_samples: int) -> dict | None:
    """The cached entry, verified (digest, keys, one feature row per sample); None (rerun) if bad or missing."""
    return integrity.load_cache(path, lambda entry: _check_entry(entry, n_samples), "[teleportation]", "rerunning")


@dataclass(frozen=True)
class SweepInputs:
    """What every configuration of a sweep is run and scored with, the same for every run and every worker: the
    network, the Gaussian whose closed form makes the jump (and gives the isotropic control its twin), the feature
    network, the test images' features (`reference`), the images' shape, and how runs are made and kept: `cache_tag`
    (e.g. the checkpoint tag plus the statistics and classifier keys; None: no cache), the batch size, the device,
    and the samplers' keyword arguments by name (`sampler_options`, what a record `needs`, e.g. {"dpm_solver_v3":
    {"ems": ...}}; they enter that sampler's cache keys, `options_key`)."""

    network: Denoiser
    gaussian: GaussianDenoiser
    classifier: FeatureClassifier
    reference: torch.Tensor
    shape: tuple[int, ...]
    cache_tag: str | None = None
    batch_size: int = 100
    device: torch.device | str = "cpu"
    sampler_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "device", torch.device(self.device))

    def entry(self, config: Config, n_samples: int, first: int = 0, keep: int = 0) -> dict:
        """Samples `first` to `first + n_samples` of one configuration, scored: from the cache when there, else run
        (and cached). The entry holds their features, the first `keep` samples, NFE and wall time."""
        c = Config(*config)
        options = self.sampler_options.get(c.sampler)
        path = None
        if self.cache_tag is not None:
            path = _cache_path(self.cache_tag, config, n_samples, self.device.type, first, options_key(options))
        entry = None if path is None else _load_entry(path, n_samples)
        if entry is None:
            run = run_configuration(self.network, self.gaussian, c, n_samples, self.shape, self.batch_size,
                                    self.device, first=first, sampler_options=options)
            entry = {"features": extract_features(self.classifier, run.samples),
                     "preview": run.samples[:keep].clone(), "finite": bool(torch.isfinite(run.samples).all()),
                     "sigma_skip": run.sigma_skip, "nfe": run.nfe, "wall_s": run.wall_s}
            if path is not None:
                integrity.save(entry, path)
        return entry


def sweep(
    inputs: SweepInputs, budgets: Sequence[tuple[str, int]], fractions: Sequence[float], seeds: Sequence[int],
    n_samples: int, jumps: Sequence[str] = ("gaussian",), keep: int = 8, shard: Shard = WHOLE, progress: bool = True,
) -> TeleportSweep:
    """Run and score every configuration (`configurations(budgets, fractions, seeds, jumps)`) on `n_samples` samples
    with `inputs`; one row per `Config` (sampler, N, skip, seed, jump), the first `keep` samples of each kept.

    With `inputs.cache_tag` each configuration's features, first samples, NFE and wall time are cached under
    `data/cache/teleportation/`, so an interrupted sweep resumes where it stopped (wall times are then the ones
    measured when each configuration first ran). `shard` (`lib.core.shards`): only that shard's configurations, for
    workers filling the cache side by side (it needs the cache); the sweep run afterwards without a shard reads them
    all from the cache.
    """
    if shard.count > 1 and inputs.cache_tag is None:
        raise ValueError("a sharded sweep needs a cache_tag: its configurations reach the full sweep through the cache")
    configs = shard.of(configurations(budgets, fractions, seeds, jumps))
    result, rows = TeleportSweep(pd.DataFrame()), []
    bar = tqdm(configs, desc="teleportation sweep", disable=not progress)
    for config in bar:
        bar.set_postfix_str(describe_config(config), refresh=False)
        entry = inputs.entry(config, n_samples, keep=keep)
        result.all_finite = result.all_finite and bool(entry["finite"])
        result.previews[config] = entry["preview"]
        result.features[config] = entry["features"]
        scores = score_features(entry["features"], inputs.reference, seed=config.seed)
        rows.append({"sampler": config.sampler, "steps": config.steps, "skip": config.skip, "jump": config.jump,
                     "sigma_skip": float(entry["sigma_skip"]), "nfe": int(entry["nfe"]), "n_samples": n_samples,
                     "seed": config.seed, **scores, "wall_s": float(entry["wall_s"])})
    result.table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return result


def extend(result: TeleportSweep, configs: Sequence[Config], n_total: int, inputs: SweepInputs,
           shard: Shard = WHOLE, progress: bool = True) -> TeleportSweep:
    """More samples for some configurations of a sweep: each of `configs` gets samples up to `n_total`, drawn from
    the same seed's noise stream after the ones it has (`initial_noise(..., first=...)`), so a plain run and a
    teleported run extended together stay paired. `result.features` then holds all `n_total` rows of each; the
    table (scores of the first samples, the same for every configuration) is left as it was. Cached like `sweep`;
    `shard`: only that shard's configurations (as in `sweep`).
    """
    if shard.count > 1 and inputs.cache_tag is None:
        raise ValueError("a sharded extension needs a cache_tag: its samples reach the notebook through the cache")
    missing = [c for c in configs if c not in result.features]
    if missing:
        raise ValueError(f"extend() can only add samples to configurations of the sweep; not in it: {missing}")
    todo = shard.of([c for c in configs if len(result.features[c]) < n_total])
    bar = tqdm(todo, desc=f"more samples (to {n_total})", disable=not progress or not todo)
    for config in bar:
        have = len(result.features[config])
        bar.set_postfix_str(describe_config(config), refresh=False)
        entry = inputs.entry(config, n_total - have, first=have)
        result.features[config] = torch.cat([result.features[config], entry["features"]])
        result.all_finite = result.all_finite and bool(entry["finite"])
    return result


def merge(*sweeps: TeleportSweep) -> TeleportSweep:
    """One sweep holding the configurations of several (e.g. the teleportation sweep and the plain runs of other
    budgets), so that `lib.analysis.teleport_pairs.paired_table` can compare across them and `extend` can add samples to
    any of them; a configuration in two sweeps must have the same features (the same cache entry)."""
    out = TeleportSweep(pd.concat([s.table for s in sweeps], ignore_index=True).drop_duplicates(
        subset=["sampler", "steps", "skip", "seed", "jump"], ignore_index=True))
    for s in sweeps:
        for config, features in s.features.items():
            if config in out.features and not torch.equal(out.features[config], features):
                raise ValueError(f"{describe_config(config)} is in two sweeps with different samples")
            out.features.setdefault(config, features)
        out.previews.update(s.previews)
        out.all_finite = out.all_finite and s.all_finite
    return out

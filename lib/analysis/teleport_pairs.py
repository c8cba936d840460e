"""Paired quality changes of a teleportation sweep (claim C6), at whatever number of samples each configuration has.

A teleported run (skip k, one of `lib.analysis.teleportation.JUMPS`) and the plain run of its budget start from the same
noise, sample i of one and sample i of the other from the same x_T, so their Frechet distances move together
and the paired change

    dFD = FD(first n samples of the teleported run) - FD(first n samples of the plain run)

is resolved far better than by two independent draws (`lib.analysis.sample_quality`: a bootstrap over samples that
resamples the same rows of both sets). A configuration given more samples by `lib.analysis.teleport_sweep.extend` is
compared with the plain run on its n samples (the plain run must have been extended as far); the others keep the
sweep's sample count, so one table can hold the first stage of a two-stage design and the refined rows of the
second (`lib.verdicts.teleportation.undecided_skips`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lib.analysis.metrics import FrechetReference
from lib.analysis.sample_quality import bootstrap_fds, paired_change
from lib.analysis.teleportation import Config, TeleportSweep

#: The columns of `data/results/teleportation_paired.csv`: per (sampler, N, skip, jump), the mean FD over seeds
#: of the plain run at the sweep's sample count (`fd_base`), the paired change FD(k) - FD(0) on `n_samples`
#: samples from the same noise (mean over seeds) with its bootstrap interval at `ci_level`, and what the runs
#: cost (wall times of the sweep's sample count, equal for every configuration).
PAIRED_COLUMNS = ["sampler", "steps", "skip", "jump", "sigma_skip", "nfe", "nfe_base", "n_seeds", "n_samples",
                  "fd_base", "fd_change", "ci_low", "ci_high", "ci_level", "wall_s", "wall_base"]


class _PairedFDs:
    """FD of the first n samples of a configuration, and its bootstrap replicates, each computed once."""

    def __init__(self, result: TeleportSweep, reference: FrechetReference, n_boot: int) -> None:
        self.result, self.reference, self.n_boot = result, reference, n_boot
        table = result.table
        configs = list(zip(table["sampler"], table["steps"], table["skip"], table["seed"], table["jump"], strict=True))
        self.sweep_n = dict(zip(configs, table["n_samples"], strict=True))
        self.sweep_fd = dict(zip(configs, table["fd"], strict=True))
        self._replicates: dict[tuple[Config, int], np.ndarray] = {}

    def length(self, config: Config) -> int:
        return len(self.result.features[config])

    def fd(self, config: Config, n: int) -> float:
        """The sweep table's FD at the sweep's sample count (the same value as before any extension), else the
        FD of the first n samples."""
        if n == self.sweep_n[config]:
            return float(self.sweep_fd[config])
        return self.reference.fd(self.result.features[config][:n].double())

    def replicates(self, config: Config, n: int) -> np.ndarray:
        if (config, n) not in self._replicates:
            self._replicates[config, n] = bootstrap_fds(self.result.features[config][:n], self.reference, self.n_boot,
                                                        stream=config[3])
        return self._replicates[config, n]


def paired_table(result: TeleportSweep, reference: torch.Tensor | FrechetReference, n_boot: int = 200,
                 level: float = 0.95) -> pd.DataFrame:
    """Every teleported configuration of `result` against the plain run of its budget from the same noise.

    For each seed the FD of `n_boot` resamples of the samples is taken with the same rows for the plain and
    the teleported set (`lib.analysis.sample_quality`), so the interval (percentile, at `level`) is that of the paired
    change, averaged over seeds. Each pair is compared on the samples both runs have (n = the teleported
    run's count, which an extension raises). Skip-0 rows are the baselines (change 0).
    """
    ref = reference if isinstance(reference, FrechetReference) else FrechetReference(reference)
    fds = _PairedFDs(result, ref, n_boot)
    table = result.table
    rows = []
    for (sampler, n_levels, skip, jump), runs in table.groupby(["sampler", "steps", "skip", "jump"], sort=False):
        base = table[(table["sampler"] == sampler) & (table["steps"] == n_levels) & (table["skip"] == 0)]
        base = base.set_index("seed").loc[runs["seed"]]
        seeds = [int(s) for s in runs["seed"]]
        pairs = [((sampler, n_levels, 0, s, "none"), (sampler, n_levels, skip, s, jump)) for s in seeds]
        counts = [min(fds.length(a), fds.length(b)) for a, b in pairs]
        per_seed = [(fds.fd(a, n), fds.fd(b, n), fds.replicates(a, n), fds.replicates(b, n))
                    for (a, b), n in zip(pairs, counts, strict=True)]
        change = paired_change(*(list(column) for column in zip(*per_seed, strict=True)), level)
        rows.append({"sampler": sampler, "steps": int(n_levels), "skip": int(skip), "jump": jump,
                     "sigma_skip": float(runs["sigma_skip"].iloc[0]), "nfe": int(runs["nfe"].iloc[0]),
                     "nfe_base": int(base["nfe"].iloc[0]), "n_seeds": len(seeds), "n_samples": min(counts),
                     "fd_base": float(base["fd"].mean()), "fd_change": change.change, "ci_low": change.low,
                     "ci_high": change.high, "ci_level": level, "wall_s": float(runs["wall_s"].mean()),
                     "wall_base": float(base["wall_s"].mean())})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def configurations_of(skips: list[tuple[str, int, int, str]], seeds: list[int]) -> list[Config]:
    """The sweep configurations (seeds included) behind paired-table rows (sampler, N, skip, jump), with the
    plain run of each budget among them: what `lib.analysis.teleport_sweep.extend` must give more samples to refine
    them."""
    budgets = dict.fromkeys((sampler, steps) for sampler, steps, _, _ in skips)
    plain = [(sampler, steps, 0, seed, "none") for sampler, steps in budgets for seed in seeds]
    return plain + [(sampler, steps, skip, seed, jump) for sampler, steps, skip, jump in skips for seed in seeds]

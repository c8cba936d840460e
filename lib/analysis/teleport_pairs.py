"""Paired quality changes of a teleportation sweep (claim C6): each skipped run against the plain run of its budget,
against the plain run with the same NFE, and against the controls, all on the same samples.

Every run of a seed starts from the same noise: sample i of a teleported run, of a control and of any plain run come
from the same x_T (`lib.analysis.teleportation.initial_noise`), so their Frechet distances move together and a paired
change such as

    dFD = FD(first n samples of the teleported run) - FD(first n samples of the plain run)

is resolved far better than by two independent draws (`lib.analysis.sample_quality`: a bootstrap over samples that
resamples the same rows of both sets). At a skip k of a budget (sampler, N), the runs compared are the *arms*

    gaussian, isotropic, noise: the N - k levels below sigma_skip, reached by the jump or a control;
    plain: the plain run of N - k levels from sigma_max, which costs the same NFE as the skipped runs;

and the runs they are compared with (`against`): "budget" (the plain run of N levels, skip 0), "plain" (the equal-NFE
plain run) and, for the Gaussian arm, "isotropic" and "noise". **Same samples**: every comparison at one skip uses
the first n_k samples, n_k the fewest any of these runs has (per seed), so an arm given more samples by
`lib.analysis.teleport_sweep.extend` is compared on the common samples unless the others were extended with it
(`skip_configurations` lists them all, which the second stage extends together).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lib.analysis.metrics import FrechetReference
from lib.analysis.sample_quality import bootstrap_fds, paired_change
from lib.analysis.teleportation import JUMPS, Config, TeleportSweep

#: The arms at a skip: the three ways of reaching sigma_skip and the plain run of N - k levels (the same NFE).
ARMS = (*JUMPS, "plain")
#: The columns of `data/results/teleportation_paired.csv`: per (sampler, N, skip, arm, against), the mean FD over seeds
#: of the plain run of the budget at the sweep's sample count (`fd_base`, the tolerance's base), the FDs of the arm and
#: of the run it is compared with on the `n_samples` common samples, the paired change with its bootstrap interval at
#: `ci_level`, and the NFE of the arm, of the budget's plain run and of the run compared with.
PAIRED_COLUMNS = ["sampler", "steps", "skip", "jump", "against", "against_steps", "sigma_skip", "nfe", "nfe_base",
                  "nfe_against", "n_seeds", "n_samples", "fd_base", "fd", "fd_against", "fd_change", "ci_low",
                  "ci_high", "ci_level"]


class _PairedFDs:
    """FD of the first n samples of a configuration, and its bootstrap replicates, each computed once."""

    def __init__(self, result: TeleportSweep, reference: FrechetReference, n_boot: int) -> None:
        self.result, self.reference, self.n_boot = result, reference, n_boot
        table = result.table
        configs = [Config(*row) for row in zip(table["sampler"], table["steps"], table["skip"], table["seed"],
                                                table["jump"], strict=True)]
        self.sweep_n = dict(zip(configs, table["n_samples"], strict=True))
        self.sweep_fd = dict(zip(configs, table["fd"], strict=True))
        self.nfe = dict(zip(configs, table["nfe"], strict=True))
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
                                                        stream=Config(*config).seed)
        return self._replicates[config, n]


def arm_config(sampler: str, steps: int, skip: int, seed: int, arm: str) -> Config:
    """The sweep configuration of an arm at skip k of (sampler, N): the skipped run, or the plain N - k levels."""
    return Config(sampler, steps - skip, 0, seed, "none") if arm == "plain" else Config(sampler, steps, skip, seed, arm)


def _comparisons(arms: dict[str, Config], base: Config) -> list[tuple[str, str, Config]]:
    """(arm, against, configuration compared with) at one skip of one seed."""
    out = [(arm, "budget", base) for arm in arms]
    if "plain" in arms:
        out += [(arm, "plain", arms["plain"]) for arm in arms if arm != "plain"]
    if "gaussian" in arms:
        out += [("gaussian", control, arms[control]) for control in ("isotropic", "noise") if control in arms]
    return out


def _row(fds: _PairedFDs, pairs: list[tuple[Config, Config, int]], level: float) -> dict:
    """The paired change FD(arm) - FD(against) of the pairs (one per seed: the arm's configuration, the one it is
    compared with, their common sample count), averaged over seeds."""
    per_seed = [(fds.fd(other, n), fds.fd(arm, n), fds.replicates(other, n), fds.replicates(arm, n))
                for arm, other, n in pairs]
    change = paired_change(*(list(column) for column in zip(*per_seed, strict=True)), level)
    return {"n_seeds": len(pairs), "n_samples": min(n for _, _, n in pairs),
            "fd": float(np.mean([row[1] for row in per_seed])),
            "fd_against": float(np.mean([row[0] for row in per_seed])),
            "fd_change": change.change, "ci_low": change.low, "ci_high": change.high, "ci_level": level}


def paired_table(result: TeleportSweep, reference: torch.Tensor | FrechetReference, n_boot: int = 200,
                 level: float = 0.95) -> pd.DataFrame:
    """Every arm of every skip of `result` against the runs it is compared with, on the same samples.

    `result` holds the teleported configurations and, for the "plain" arm, the plain runs of N - k levels (the sweep of
    `lib.analysis.teleportation.equal_nfe_budgets`, merged by `lib.analysis.teleport_sweep.merge`); an arm missing from
    it is left out. For each seed the FD of `n_boot` resamples is taken with the same rows for both runs of a pair
    (`lib.analysis.sample_quality`), so the interval (percentile, at `level`) is that of the paired change, averaged
    over seeds. One skip-0 row per budget (jump "none", against "budget") is the baseline (change 0).
    """
    ref = reference if isinstance(reference, FrechetReference) else FrechetReference(reference)
    fds = _PairedFDs(result, ref, n_boot)
    table = result.table
    skipped = table[table["skip"] > 0]
    rows = []
    for (sampler, steps), budget in skipped.groupby(["sampler", "steps"], sort=False):
        plain = table[(table["sampler"] == sampler) & (table["steps"] == steps) & (table["skip"] == 0)]
        seeds = [int(s) for s in plain["seed"]]
        fd_base, sigma_max = float(plain["fd"].mean()), float(plain["sigma_skip"].iloc[0])
        base_n = min(fds.length(Config(sampler, steps, 0, s, "none")) for s in seeds)
        rows.append({"sampler": sampler, "steps": int(steps), "skip": 0, "jump": "none", "against": "budget",
                     "against_steps": int(steps), "sigma_skip": sigma_max, "nfe": int(plain["nfe"].iloc[0]),
                     "nfe_base": int(plain["nfe"].iloc[0]), "nfe_against": int(plain["nfe"].iloc[0]),
                     "n_seeds": len(seeds), "n_samples": base_n, "fd_base": fd_base, "fd": fd_base,
                     "fd_against": fd_base, "fd_change": 0.0, "ci_low": 0.0, "ci_high": 0.0, "ci_level": level})
        for skip, runs in budget.groupby("skip", sort=True):
            sigma_skip = float(runs["sigma_skip"].iloc[0])
            pairs: dict[tuple[str, str], list[tuple[Config, Config, int]]] = {}
            for seed in seeds:
                base = Config(sampler, steps, 0, seed, "none")
                arms = {arm: arm_config(sampler, steps, int(skip), seed, arm) for arm in ARMS}
                arms = {arm: config for arm, config in arms.items() if config in result.features}
                n = min(fds.length(config) for config in (base, *arms.values()))
                for arm, against, other in _comparisons(arms, base):
                    pairs.setdefault((arm, against), []).append((arms[arm], other, n))
            for (arm, against), seed_pairs in pairs.items():
                other = seed_pairs[0][1]
                rows.append({"sampler": sampler, "steps": int(steps), "skip": int(skip), "jump": arm,
                             "against": against, "against_steps": int(other.steps),
                             "sigma_skip": sigma_max if arm == "plain" else sigma_skip,
                             "nfe": int(fds.nfe[seed_pairs[0][0]]), "nfe_base": int(plain["nfe"].iloc[0]),
                             "nfe_against": int(fds.nfe[other]), "fd_base": fd_base,
                             **_row(fds, seed_pairs, level)})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def configurations_of(skips: list[tuple[str, int, int, str]], seeds: list[int]) -> list[Config]:
    """The sweep configurations (seeds included) behind paired-table rows (sampler, N, skip, jump), with the
    plain run of each budget among them."""
    budgets = dict.fromkeys((sampler, steps) for sampler, steps, _, _ in skips)
    plain = [Config(sampler, steps, 0, seed, "none") for sampler, steps in budgets for seed in seeds]
    return plain + [Config(sampler, steps, skip, seed, jump) for sampler, steps, skip, jump in skips for seed in seeds]


def skip_configurations(skips: list[tuple[str, int, int]], seeds: list[int], arms=ARMS) -> list[Config]:
    """Every run compared at the skips (sampler, N, k), seeds included: the plain run of each budget, and at each skip
    every arm (the jumps and the plain run of N - k levels). What the second stage extends together, so that every
    comparison at a refined skip is made on all the extended samples."""
    budgets = dict.fromkeys((sampler, steps) for sampler, steps, _ in skips)
    configs = [Config(sampler, steps, 0, seed, "none") for sampler, steps in budgets for seed in seeds]
    configs += [arm_config(sampler, steps, skip, seed, arm) for sampler, steps, skip in skips for seed in seeds
                for arm in arms]
    return list(dict.fromkeys(configs))

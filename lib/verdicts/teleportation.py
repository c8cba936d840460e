"""Claim C6: replacing the first 15-30% of sampling steps by the closed-form jump keeps sample quality."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.verdicts.common import round_half_up
from lib.verdicts.common import yes as _yes

#: C6: skipping k steps "keeps sample quality" while the mean FD over seeds stays at or below the baseline's
#: (skip 0, same noise) mean FD plus this many standard deviations of the baseline's FD over seeds ...
C6_SPREAD_FACTOR = 2.0
#: ... and the paper replaces 15-30% of the steps (of N levels: round(0.15 N) to round(0.30 N) levels).
C6_PAPER_RANGE = (0.15, 0.30)




@dataclass(frozen=True)
class C6Row:
    """One (sampler, budget of N levels): the largest skip that keeps FD within the baseline's seed spread."""

    sampler: str
    steps: int
    n_seeds: int
    skips: tuple[int, ...]  # skips tested, 0 included
    baseline_fd: float  # mean FD over seeds at skip 0
    baseline_std: float  # standard deviation over seeds (ddof = 1; 0 for one seed)
    kept_skip: int  # largest k such that every tested skip <= k stays within the limit
    sigma_skip: float  # where the kept run starts (sigma_max at k = 0)
    nfe_baseline: int
    nfe_kept: int
    largest_effect: float  # max over tested skips of |mean FD(k) - baseline mean|
    wall_baseline: float | None = None  # mean wall time over seeds, seconds
    wall_kept: float | None = None
    kept_change: float = 0.0  # paired FD change at the kept skip: mean over seeds of FD(k, s) - FD(0, s)
    kept_change_sd: float = 0.0  # its standard deviation over seeds

    @property
    def limit(self) -> float:
        return self.baseline_fd + C6_SPREAD_FACTOR * self.baseline_std

    @property
    def kept_fraction(self) -> float:
        return self.kept_skip / self.steps

    @property
    def nfe_saved(self) -> int:
        return self.nfe_baseline - self.nfe_kept

    @property
    def wall_saved(self) -> float | None:
        if self.wall_baseline is None or self.wall_kept is None:
            return None
        return self.wall_baseline - self.wall_kept

    @property
    def lower_target(self) -> int:
        return max(1, round_half_up(C6_PAPER_RANGE[0] * self.steps))

    @property
    def upper_target(self) -> int:
        return max(1, round_half_up(C6_PAPER_RANGE[1] * self.steps))

    @property
    def reaches_lower(self) -> bool:
        return self.kept_skip >= self.lower_target

    @property
    def covers_range(self) -> bool:
        return self.kept_skip >= self.upper_target

    @property
    def coverage(self) -> str:
        """"all" of the 15-30% range kept, "part" of it (at least 15%), or "none"."""
        return "all" if self.covers_range else "part" if self.reaches_lower else "none"

    @property
    def spread_resolves_effects(self) -> bool:
        """Whether some skip moved the mean FD by more than the noise band (else every skip is "kept" by default)."""
        return self.largest_effect > C6_SPREAD_FACTOR * self.baseline_std


@dataclass(frozen=True)
class C6Verdict:
    """Claim C6: replacing the first 15-30% of sampling steps by the Gaussian jump keeps sample quality,
    with several samplers."""

    rows: tuple[C6Row, ...]

    @property
    def samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.sampler for r in self.rows))

    def sampler_keeps_lower(self, sampler: str) -> bool:
        return all(r.reaches_lower for r in self.rows if r.sampler == sampler)

    @property
    def holds(self) -> bool:
        return bool(self.rows) and all(r.covers_range for r in self.rows)

    @property
    def partly(self) -> bool:
        return any(r.reaches_lower for r in self.rows)

    def report(self) -> str:
        lo, hi = C6_PAPER_RANGE
        n_seeds = sorted({r.n_seeds for r in self.rows})
        lines = [
            "C6: analytical teleportation keeps sample quality",
            "  rule: skipping k of N levels keeps quality while the mean FD over seeds, at k and at every smaller",
            f"  skip tested, stays <= the baseline's mean + {C6_SPREAD_FACTOR:g} sd (baseline: skip 0 from the same "
            f"noise; {'/'.join(map(str, n_seeds))} seeds)",
            f"  {'sampler':<9} {'N':>3} {'baseline FD (sd)':>17} {'limit':>6} {'kept k':>6} {'share':>5} "
            f"{'sigma_skip':>10} {'paired dFD there':>16} {'NFE saved':>9} {'wall saved':>10}  "
            f"covers {lo:.0%}-{hi:.0%}",
        ]
        for r in self.rows:
            wall = "n/a" if r.wall_saved is None or not r.wall_baseline else \
                f"{r.wall_saved:.1f}s {r.wall_saved / r.wall_baseline:.0%}"
            base = f"{r.baseline_fd:.3g} ({r.baseline_std:.2g})"
            change = f"{r.kept_change:+.2g} ± {r.kept_change_sd:.2g}"
            lines.append(
                f"  {r.sampler:<9} {r.steps:>3} {base:>17} {r.limit:>6.3g} {f'{r.kept_skip}/{r.steps}':>6} "
                f"{r.kept_fraction:>5.0%} {r.sigma_skip:>10.3g} {change:>16} "
                f"{f'{r.nfe_saved} of {r.nfe_baseline}':>9} {wall:>10}  {r.coverage}")
        resolved = sum(r.spread_resolves_effects for r in self.rows)
        lines.append("  paired dFD: FD(k) - FD(0) from the same noise, mean ± sd over seeds (0 at k = 0)")
        lines.append(f"  some skip moves the mean FD by more than {C6_SPREAD_FACTOR:g} baseline sd (else every skip is "
                     f"kept by default) in {resolved} of {len(self.rows)} budgets")
        for name in self.samplers:
            lines.append(f"  {name}: at least {lo:.0%} of the steps replaced at every budget: "
                         f"{_yes(self.sampler_keeps_lower(name))}")
        lines.append(f"  every sampler and budget keeps quality up to {hi:.0%} skipped: {_yes(self.holds)}")
        outcome = "REPRODUCED" if self.holds else "PARTLY REPRODUCED" if self.partly else "NOT REPRODUCED"
        lines.append(f"verdict: C6 {outcome}")
        return "\n".join(lines)


def c6_verdict(table) -> C6Verdict:
    """Judge C6 from the teleportation table (columns sampler, steps, skip, sigma_skip, nfe, seed, fd[, wall_s]),
    one row per (sampler, N, skip, seed); every (sampler, N) needs its skip-0 baseline.

    Per (sampler, N): the baseline is the mean FD over seeds at skip 0, its noise band the standard
    deviation over seeds (ddof = 1). Walking up the tested skips, a skip is kept while its mean FD over
    seeds stays <= baseline mean + C6_SPREAD_FACTOR sd; the first skip above it (or with a non-finite
    FD) stops the walk. Lower FD than the baseline counts as kept. The paired change at the kept skip,
    FD(k, s) - FD(0, s) over seeds s (same noise), is reported alongside: it resolves smaller effects than the
    unpaired rule, which asks only whether a skip is distinguishable from another draw of the baseline.
    """
    rows = []
    has_wall = "wall_s" in table.columns
    for (sampler, steps), budget in table.groupby(["sampler", "steps"], sort=False):
        per_skip = budget.groupby("skip").agg(fd=("fd", "mean"), fd_std=("fd", "std"), n=("fd", "size"),
                                              sigma_skip=("sigma_skip", "first"), nfe=("nfe", "first"))
        if has_wall:
            per_skip["wall"] = budget.groupby("skip")["wall_s"].mean()
        per_skip = per_skip.sort_index()
        if 0 not in per_skip.index:
            raise ValueError(f"{sampler} with {steps} levels has no skip-0 baseline")
        base = per_skip.loc[0]
        base_std = float(base["fd_std"]) if int(base["n"]) > 1 else 0.0
        limit = float(base["fd"]) + C6_SPREAD_FACTOR * base_std
        kept = 0
        for k, row in per_skip.iterrows():
            if k == 0:
                continue
            if not (np.isfinite(row["fd"]) and row["fd"] <= limit):
                break
            kept = int(k)
        effects = (per_skip["fd"] - base["fd"]).abs()
        largest = float(effects.max()) if effects.notna().all() else float("inf")
        kept_row = per_skip.loc[kept]
        by_seed = budget.pivot_table(index="seed", columns="skip", values="fd", aggfunc="mean")
        change = (by_seed[kept] - by_seed[0]).dropna()
        rows.append(C6Row(
            sampler=str(sampler), steps=int(steps), n_seeds=int(base["n"]),
            skips=tuple(int(k) for k in per_skip.index), baseline_fd=float(base["fd"]), baseline_std=base_std,
            kept_skip=kept, sigma_skip=float(kept_row["sigma_skip"]), nfe_baseline=int(base["nfe"]),
            nfe_kept=int(kept_row["nfe"]), largest_effect=largest,
            wall_baseline=float(base["wall"]) if has_wall else None,
            wall_kept=float(kept_row["wall"]) if has_wall else None,
            kept_change=float(change.mean()) if len(change) else float("nan"),
            kept_change_sd=float(change.std()) if len(change) > 1 else 0.0,
        ))
    return C6Verdict(tuple(rows))

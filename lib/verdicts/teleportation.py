"""Claim C6: replacing the first 15-30% of sampling steps by the closed-form jump keeps sample quality.

Judged on the paired change in FD: a teleported run and the plain run of the same budget start from the
same noise, so FD(k) - FD(0) is resolved far better than the seed-to-seed spread of FD. Skipping k of N levels
**keeps quality** when the upper end of the bootstrap interval of the paired change is at most C6_TOLERANCE (5%)
of the plain run's FD, at k and at every smaller skip tested. A skip whose interval straddles the tolerance
(lower end below it, upper end above) is not kept, but it is not a measured loss either: the sample size cannot
tell; such skips are reported as unresolved. The controls (isotropic jump, noise at sigma_skip) are judged by
the same rule.

Two stages, so that the intervals can be narrower than the tolerance without sampling every configuration
as much: every configuration is run with n samples; the skips left unresolved (`undecided_skips`: walking up
each budget and jump, up to the first measured loss) and their plain runs get more samples, and are judged
again. A skip is thus tested at most twice, so each interval is taken at `c6_level(2)` = 97.5% (Bonferroni over
the two looks: the chance of keeping a skip whose true change exceeds the tolerance stays below 2.5%, as for
one look at 95%). The tolerance is 5% of the plain run's FD at the first stage's sample count (computed from the
first stage, not recomputed at the second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib.core.numerics import round_half_up
from lib.verdicts.common import NOT_REPRODUCED, PARTLY, REPRODUCED
from lib.verdicts.common import yes as _yes

#: C6: a skip keeps quality when its paired FD change is below this share of the plain run's FD ...
C6_TOLERANCE = 0.05
#: ... with at most this chance of keeping a skip whose change is above it, split over the stages' intervals ...
C6_ALPHA = 0.05
#: ... and the paper replaces 15-30% of the steps (of N levels: round(0.15 N) to round(0.30 N) levels).
C6_PAPER_RANGE = (0.15, 0.30)


def c6_level(stages: int) -> float:
    """The two-sided level of each stage's interval: 1 - C6_ALPHA / stages (0.95 with one stage, 0.975 with two).

    "Kept" reads the interval's upper end, a one-sided test at (1 - level) / 2 per look; Bonferroni over the looks.
    """
    if stages < 1:
        raise ValueError(f"the number of stages must be >= 1, got {stages}")
    return 1.0 - C6_ALPHA / stages


PAIRED_REQUIRED = ("sampler", "steps", "skip", "jump", "sigma_skip", "nfe", "fd_base", "fd_change", "ci_low",
                   "ci_high")


@dataclass(frozen=True)
class C6Row:
    """One (sampler, budget of N levels) and one way of reaching sigma_skip: the largest skip kept."""

    sampler: str
    steps: int
    jump: str
    skips: tuple[int, ...]  # skips tested, 0 included
    baseline_fd: float  # mean FD over seeds of the plain run
    kept_skip: int  # largest k such that every tested skip <= k keeps quality
    sigma_skip: float  # where the kept run starts (sigma_max at k = 0)
    nfe_baseline: int
    nfe_kept: int
    change: float = 0.0  # paired FD change at the kept skip (0 at k = 0)
    ci: tuple[float, float] = (0.0, 0.0)  # its interval
    first_failure: tuple[int, float, float] | None = None  # (k, change, interval's upper end) of the skip that stopped
    unresolved: tuple[int, ...] = ()  # skips whose interval straddles the tolerance (up to the first failure)
    wall_baseline: float | None = None
    wall_kept: float | None = None
    samples: tuple[int, ...] = ()  # samples each tested skip was judged on (the first stage's or the second's)

    @property
    def tolerance(self) -> float:
        return C6_TOLERANCE * self.baseline_fd

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


@dataclass(frozen=True)
class C6Verdict:
    """Claim C6 for the Gaussian jump (`rows`), with the controls judged by the same rule (`controls`)."""

    rows: tuple[C6Row, ...]
    controls: tuple[C6Row, ...] = field(default_factory=tuple)
    level: float = 0.95  # of the intervals (c6_level: 0.975 with two stages)

    @property
    def samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.sampler for r in self.rows))

    def sampler_keeps_lower(self, sampler: str) -> bool:
        return all(r.reaches_lower for r in self.rows if r.sampler == sampler)

    def control(self, row: C6Row, jump: str) -> C6Row | None:
        return next((c for c in self.controls if (c.sampler, c.steps, c.jump) == (row.sampler, row.steps, jump)), None)

    @property
    def holds(self) -> bool:
        return bool(self.rows) and all(r.covers_range for r in self.rows)

    @property
    def partly(self) -> bool:
        return any(r.reaches_lower for r in self.rows)

    @property
    def outcome(self) -> str:
        return REPRODUCED if self.holds else PARTLY if self.partly else NOT_REPRODUCED

    def gaussian_beats(self, jump: str) -> tuple[int, int]:
        """(budgets where the Gaussian jump keeps a larger skip than the control `jump`, budgets compared)."""
        pairs = [(r, self.control(r, jump)) for r in self.rows]
        pairs = [(r, c) for r, c in pairs if c is not None]
        return sum(r.kept_skip > c.kept_skip for r, c in pairs), len(pairs)

    def samples_line(self) -> str:
        """How many samples the skips were judged on: one count, or the first stage's and the refined skips'."""
        counts = sorted({n for r in (*self.rows, *self.controls) for n in r.samples})
        if len(counts) <= 1:
            return f"  samples per run: {counts[0] if counts else 'n/a'}"
        refined = [f"{r.sampler} N={r.steps} k={k} ({r.jump})" for r in (*self.rows, *self.controls)
                   for k, n in zip(r.skips[1:], r.samples, strict=False) if n > counts[0]]
        return (f"  samples per run: {counts[0]}; {', '.join(str(n) for n in counts[1:])} for the skips refined in "
                f"the second stage ({len(refined)}): " + ", ".join(refined))

    def report(self) -> str:
        lo, hi = C6_PAPER_RANGE
        lines = [
            "C6: analytical teleportation keeps sample quality",
            f"  rule: skipping k of N levels keeps quality while the {self.level:.1%} interval of the paired FD change",
            "  (same noise, with and without the jump; bootstrap over samples, mean over seeds) stays below "
            f"{C6_TOLERANCE:.0%} of the",
            "  plain run's FD, at k and at every smaller skip",
            self.samples_line(),
            f"  {'sampler':<9} {'N':>3} {'plain FD':>8} {'tol':>5} {'kept k':>6} {'share':>5} {'sigma_skip':>10} "
            f"{f'dFD there [{self.level:.1%}]':>22} {'stopped by':>22} {'NFE saved':>9} {'wall saved':>10}  "
            f"covers {lo:.0%}-{hi:.0%}",
        ]
        for r in self.rows:
            wall = "n/a" if r.wall_saved is None or not r.wall_baseline else \
                f"{r.wall_saved:.1f}s {r.wall_saved / r.wall_baseline:.0%}"
            change = f"{r.change:+.2g} [{r.ci[0]:+.2g}, {r.ci[1]:+.2g}]"
            stop = "nothing (largest skip)" if r.first_failure is None else \
                f"k={r.first_failure[0]}: {r.first_failure[1]:+.2g} (<= {r.first_failure[2]:+.2g})"
            lines.append(
                f"  {r.sampler:<9} {r.steps:>3} {r.baseline_fd:>8.3g} {r.tolerance:>5.2g} "
                f"{f'{r.kept_skip}/{r.steps}':>6} {r.kept_fraction:>5.0%} {r.sigma_skip:>10.3g} {change:>22} "
                f"{stop:>22} {f'{r.nfe_saved} of {r.nfe_baseline}':>9} {wall:>10}  {r.coverage}")
        unresolved = [f"{r.sampler} N={r.steps} k={k}" for r in self.rows for k in r.unresolved]
        lines.append("  intervals straddling the tolerance (neither kept nor a measured loss at this sample size): "
                     + (", ".join(unresolved) if unresolved else "none"))
        if self.controls:
            lines.append("  controls, same rule (kept skip): " + "; ".join(
                f"{r.sampler} N={r.steps}: Gaussian {r.kept_skip}, "
                + ", ".join(f"{j} {c.kept_skip}" for j in ("isotropic", "noise") if (c := self.control(r, j)))
                for r in self.rows))
            for jump in ("isotropic", "noise"):
                wins, n = self.gaussian_beats(jump)
                if n:
                    lines.append(f"  the Gaussian jump keeps a larger skip than the {jump} control in {wins} of {n} "
                                 "budgets")
        for name in self.samplers:
            share = min(r.kept_fraction for r in self.rows if r.sampler == name)
            lines.append(f"  {name}: skipping up to {share:.0%} of the levels keeps quality at every budget; "
                         f"at least {lo:.0%}: {_yes(self.sampler_keeps_lower(name))}")
        lines.append(f"  every sampler and budget keeps quality up to {hi:.0%} skipped: {_yes(self.holds)}")
        lines.append(f"verdict: C6 {self.outcome}")
        return "\n".join(lines)


KEPT, LOSS, UNRESOLVED = "kept", "loss", "unresolved"


def skip_status(ci_low: float, ci_high: float, tolerance: float) -> str:
    """"kept" (the interval's upper end within the tolerance), "loss" (its lower end above it, or no finite
    interval) or "unresolved" (it straddles the tolerance: the sample size cannot tell)."""
    if np.isfinite(ci_high) and ci_high <= tolerance:
        return KEPT
    if not np.isfinite(ci_low) or not np.isfinite(ci_high) or ci_low > tolerance:
        return LOSS
    return UNRESOLVED


def _baseline(rows, sampler: str, steps: int):
    base = rows[rows["skip"] == 0]
    if base.empty:
        raise ValueError(f"{sampler} with {steps} levels has no skip-0 baseline")
    return base.iloc[0]


def _arm(rows, jump: str):
    """The skipped runs (k > 0) of one budget reached by `jump`, in order of the skip."""
    return rows[(rows["skip"] > 0) & (rows["jump"] == jump)].sort_values("skip")


def _judge_budget(rows, sampler: str, steps: int, jump: str) -> C6Row:
    """Walk up the skips of one budget and jump: keep while the interval's upper end is within the tolerance."""
    base = _baseline(rows, sampler, steps)
    tolerance = C6_TOLERANCE * float(base["fd_base"])
    runs = _arm(rows, jump)
    kept, failure, unresolved = base, None, []
    for _, row in runs.iterrows():
        status = skip_status(row["ci_low"], row["ci_high"], tolerance)
        if status == UNRESOLVED:
            unresolved.append(int(row["skip"]))
        if status != KEPT:
            failure = (int(row["skip"]), float(row["fd_change"]), float(row["ci_high"]))
            break
        kept = row
    has_wall = "wall_s" in rows.columns and "wall_base" in rows.columns
    return C6Row(
        sampler=str(sampler), steps=int(steps), jump=jump,
        skips=tuple(int(k) for k in sorted({0, *runs["skip"]})), baseline_fd=float(base["fd_base"]),
        kept_skip=int(kept["skip"]), sigma_skip=float(kept["sigma_skip"]), nfe_baseline=int(base["nfe"]),
        nfe_kept=int(kept["nfe"]), change=float(kept["fd_change"]),
        ci=(float(kept["ci_low"]), float(kept["ci_high"])), first_failure=failure, unresolved=tuple(unresolved),
        wall_baseline=float(base["wall_base"]) if has_wall else None,
        wall_kept=float(kept["wall_s"]) if has_wall else None,
        samples=tuple(int(n) for n in runs["n_samples"]) if "n_samples" in runs.columns else (),
    )


def undecided_skips(paired, jumps=("gaussian", "isotropic", "noise")) -> list[tuple[str, int, int, str]]:
    """(sampler, N, skip, jump) of every skip whose interval straddles the tolerance, walking up each budget and
    jump to its first measured loss (a skip past a loss cannot be kept, so it needs no more samples): what the
    second stage samples again."""
    out = []
    for (sampler, steps), budget in paired.groupby(["sampler", "steps"], sort=False):
        tolerance = C6_TOLERANCE * float(_baseline(budget, sampler, steps)["fd_base"])
        for jump in jumps:
            for _, row in _arm(budget, jump).iterrows():
                status = skip_status(row["ci_low"], row["ci_high"], tolerance)
                if status == LOSS:
                    break
                if status == UNRESOLVED:
                    out.append((str(sampler), int(steps), int(row["skip"]), jump))
    return out


def c6_verdict(paired) -> C6Verdict:
    """Judge C6 from the paired table (`lib.analysis.teleport_pairs.paired_table`,
    data/results/teleportation_paired.csv):
    one row per (sampler, N, skip, jump) with the plain run's FD (`fd_base`), the paired change `fd_change`
    and its interval `ci_low`/`ci_high`; skip-0 rows (jump "none") are the baselines. Rows with jump
    "gaussian" give the verdict; "isotropic" and "noise" rows, where present, are judged as controls.
    """
    missing = [c for c in PAIRED_REQUIRED if c not in paired.columns]
    if missing:
        raise ValueError(f"the paired teleportation table lacks the columns {missing}: pass the paired table "
                         "(data/results/teleportation_paired.csv from notebook 07, or "
                         "lib.analysis.teleport_pairs.paired_table)")
    rows, controls = [], []
    for (sampler, steps), budget in paired.groupby(["sampler", "steps"], sort=False):
        rows.append(_judge_budget(budget, sampler, steps, "gaussian"))
        controls += [_judge_budget(budget, sampler, steps, jump) for jump in ("isotropic", "noise")
                     if (budget["jump"] == jump).any()]
    judged = paired[paired["skip"] > 0]
    level = float(judged["ci_level"].max()) if "ci_level" in paired.columns and len(judged) else 0.95
    return C6Verdict(tuple(rows), tuple(controls), level)

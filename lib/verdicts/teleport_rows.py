"""The C6 verdict's objects: the outcome of a skip (kept, unresolved, loss) and of a comparison at equal NFE (better,
no better, worse), one budget's judged arm (`C6Row`) and the claim (`C6Verdict`). The rule is in
`lib.verdicts.teleportation`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib.core.numerics import round_half_up
from lib.verdicts.common import NOT_INFORMATIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, combine

#: C6: a skip keeps quality when its paired FD change is below this share of the plain run's FD ...
C6_TOLERANCE = 0.05
#: ... with at most this chance of keeping a skip whose change is above it, split over the stages' intervals ...
C6_ALPHA = 0.05
#: ... and the paper replaces 15-30% of the steps (of N levels: round(0.15 N) to round(0.30 N) levels).
C6_PAPER_RANGE = (0.15, 0.30)
#: The tolerances `c6_robustness` tries.
C6_TOLERANCES = (0.02, 0.03, 0.05, 0.075, 0.10)
CONTROLS = ("isotropic", "noise", "plain")


KEPT, LOSS, UNRESOLVED = "kept", "loss", "unresolved"
BETTER, NO_BETTER, WORSE = "better", "no better", "worse"


def skip_status(ci_low: float, ci_high: float, tolerance: float) -> str:
    """"kept" (the interval's upper end within the tolerance), "loss" (its lower end above it, or no finite
    interval) or "unresolved" (it straddles the tolerance: the sample size cannot tell)."""
    if np.isfinite(ci_high) and ci_high <= tolerance:
        return KEPT
    if not np.isfinite(ci_low) or not np.isfinite(ci_high) or ci_low > tolerance:
        return LOSS
    return UNRESOLVED


def compare_status(ci_low: float, ci_high: float) -> str:
    """A paired change FD(a) - FD(b): "better" (a's FD lower: the interval below 0), "worse" (above 0; also no
    finite interval) or "no better" (the interval holds 0)."""
    if not np.isfinite(ci_low) or not np.isfinite(ci_high):
        return WORSE
    return BETTER if ci_high < 0 else WORSE if ci_low > 0 else NO_BETTER


@dataclass(frozen=True)
class Comparison:
    """A skipped run against another run at the same skip (`against`: "plain", the N - k levels from sigma_max at the
    same NFE, or a control), on the same `n_samples` samples."""

    skip: int
    against: str
    against_steps: int
    nfe: int
    fd: float
    fd_against: float
    change: float
    ci: tuple[float, float]
    n_samples: int

    @property
    def status(self) -> str:
        return compare_status(*self.ci)


@dataclass(frozen=True)
class C6Row:
    """One (sampler, budget of N levels) and one arm (a jump, or "plain": N - k levels from sigma_max): the largest skip
    kept, and the arm's comparisons at equal NFE and with the controls."""

    sampler: str
    steps: int
    jump: str
    skips: tuple[int, ...]  # skips tested, 0 included
    baseline_fd: float  # mean FD over seeds of the plain run of N levels (the tolerance's base)
    kept_skip: int  # largest k such that every tested skip <= k keeps quality
    sigma_skip: float  # where the kept run starts (sigma_max at k = 0)
    nfe_baseline: int
    nfe_kept: int
    change: float = 0.0  # paired FD change at the kept skip (0 at k = 0)
    ci: tuple[float, float] = (0.0, 0.0)  # its interval
    first_failure: tuple[int, float, float] | None = None  # (k, change, interval's upper end) of the skip that stopped
    unresolved: tuple[int, ...] = ()  # skips whose interval straddles the tolerance (up to the first failure)
    samples: tuple[int, ...] = ()  # samples each tested skip was judged on (the first stage's or the second's)
    tolerance_share: float = C6_TOLERANCE
    comparisons: tuple[Comparison, ...] = ()

    @property
    def tolerance(self) -> float:
        return self.tolerance_share * self.baseline_fd

    @property
    def kept_fraction(self) -> float:
        return self.kept_skip / self.steps

    @property
    def nfe_saved(self) -> int:
        return self.nfe_baseline - self.nfe_kept

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

    def versus(self, against: str) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.against == against)

    def at(self, skip: int, against: str = "plain") -> Comparison | None:
        return next((c for c in self.versus(against) if c.skip == skip), None)

    @property
    def judged(self) -> tuple[Comparison, ...]:
        """The equal-NFE comparisons that decide acceleration: at the kept skips from round(0.15 N) up."""
        return tuple(c for c in self.versus("plain") if self.lower_target <= c.skip <= self.kept_skip)

    @property
    def accelerated_skip(self) -> int:
        """The largest judged skip at which the jump beats the plain run of the same NFE (0: none)."""
        return max((c.skip for c in self.judged if c.status == BETTER), default=0)

    @property
    def accelerated_fraction(self) -> float:
        return self.accelerated_skip / self.steps

    @property
    def acceleration(self) -> str | None:
        """The budget's outcome as an acceleration at equal NFE (None: no plain run of N - k levels to judge it)."""
        if not self.versus("plain"):
            return None
        if not self.reaches_lower:
            return NOT_REPRODUCED
        if not self.judged:
            return None
        if self.accelerated_skip >= self.upper_target:
            return REPRODUCED
        if self.accelerated_skip >= self.lower_target:
            return PARTLY
        return NOT_REPRODUCED if all(c.status == WORSE for c in self.judged) else NOT_INFORMATIVE

    @property
    def outcome(self) -> str:
        if self.acceleration is not None:
            return self.acceleration
        return {"all": REPRODUCED, "part": PARTLY}.get(self.coverage, NOT_REPRODUCED)


@dataclass(frozen=True)
class C6Verdict:
    """Claim C6 for the Gaussian jump (`rows`), with the controls judged by the kept rule (`controls`)."""

    rows: tuple[C6Row, ...]
    controls: tuple[C6Row, ...] = field(default_factory=tuple)
    level: float = 0.95  # of the intervals (c6_level: 0.975 with two stages)
    tolerance: float = C6_TOLERANCE

    @property
    def samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.sampler for r in self.rows))

    def sampler_keeps_lower(self, sampler: str) -> bool:
        return all(r.reaches_lower for r in self.rows if r.sampler == sampler)

    def control(self, row: C6Row, jump: str) -> C6Row | None:
        return next((c for c in self.controls if (c.sampler, c.steps, c.jump) == (row.sampler, row.steps, jump)), None)

    @property
    def holds(self) -> bool:
        """The kept rule alone: every budget keeps its quality over the whole 15-30% range."""
        return bool(self.rows) and all(r.covers_range for r in self.rows)

    @property
    def partly(self) -> bool:
        """The kept rule alone: some budget keeps at least 15%."""
        return any(r.reaches_lower for r in self.rows)

    @property
    def judges_acceleration(self) -> bool:
        return any(r.acceleration is not None for r in self.rows)

    @property
    def outcome(self) -> str:
        """The budgets' verdicts combined as every claim's findings are (`common.combine`); no budget at all: NOT
        REPRODUCED."""
        return combine(r.outcome for r in self.rows) if self.rows else NOT_REPRODUCED

    def gaussian_beats(self, jump: str) -> tuple[int, int]:
        """(budgets where the Gaussian jump keeps a larger skip than the control `jump`, budgets compared)."""
        pairs = [(r, self.control(r, jump)) for r in self.rows]
        pairs = [(r, c) for r, c in pairs if c is not None]
        return sum(r.kept_skip > c.kept_skip for r, c in pairs), len(pairs)

    def report(self) -> str:
        from lib.verdicts.teleport_report import report

        return report(self)



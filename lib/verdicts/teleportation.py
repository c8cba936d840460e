"""Claim C6: the Gaussian jump replaces the first 15-30% of a sampler's levels and keeps sample quality, so that it
accelerates the sampler at no loss.

The abstract of arXiv:2412.09726 reports "skipping of the first 15-30% of sampling steps while maintaining high sample
quality". Skipping k of N levels (the jump to sigma_skip = sigma_k, then the N - k levels left) costs the NFE of a
plain run of N - k levels from sigma_max (Heun 2(N - k) - 1, DPM-Solver++(2M) and UniPC N - k), so the claim is
judged as an acceleration at equal cost. Every number is a paired FD change (same initial noise, same samples:
`lib.analysis.teleport_pairs`) with its bootstrap interval [lo, hi] at the level of the stages:

* **kept**: skip k keeps quality when hi of FD(jump, k) - FD(plain, N levels) is at most `tolerance` (C6_TOLERANCE,
  5%) of the plain run's FD, at k and at every smaller skip tested. A skip whose interval straddles the tolerance is
  *unresolved*, one whose lo is above it a *measured loss*. The largest kept k is the budget's kept skip.
* **at equal NFE**: FD(jump, k) - FD(plain, N - k levels from sigma_max) is *better* when hi < 0, *worse* when lo > 0,
  *no better* otherwise.
* **a budget** (sampler, N), with the paper's range from round(0.15 N) to round(0.30 N) levels: NOT REPRODUCED when
  the kept skip is below round(0.15 N) (quality lost before the range). Otherwise judged at the kept skips from
  round(0.15 N) up: REPRODUCED when one of them >= round(0.30 N) is better than the plain run of its NFE, PARTLY when
  one >= round(0.15 N) is (the largest is the *accelerated* skip); NOT REPRODUCED when the jump is worse than the
  equal-NFE plain run at every one of them; else NOT INFORMATIVE: fewer plain steps at the same cost do as well, and
  the finding says nothing for acceleration. A table without the plain runs of N - k levels (older sweeps) is judged
  by the kept rule alone (REPRODUCED: kept skip >= round(0.30 N), PARTLY: >= round(0.15 N)), and the report says so.
* **the claim**: NOT INFORMATIVE budgets do not count; of the rest, REPRODUCED when all are, PARTLY when one is
  REPRODUCED or PARTLY, else NOT REPRODUCED; NOT INFORMATIVE when no budget counts.

Controls: the isotropic jump, plain noise at sigma_skip and the plain run of N - k levels are judged by the kept rule
too, and the Gaussian jump is compared with each directly at every skip (better / no better / worse as above). All the
comparisons at one skip are made on the same samples (the fewest any of its runs has).

Two stages: every configuration is run on n samples; then the skips that some arm leaves unresolved (walking up each
arm to its first measured loss), and the kept or unresolved Gaussian skips in the paper's range whose equal-NFE
comparison is "no better", get more samples for every run compared there (`refine_skips`), and are judged again. A
comparison is looked at at most twice, so each interval is at `c6_level(2)` = 97.5% (Bonferroni over the two looks).
The tolerance is a share of the plain run's FD on the first stage's samples.

History (`git log -p -- lib/verdicts.py lib/verdicts/teleportation.py`): the first rule, "mean FD within 2 baseline
sd", was committed together with the sweep's first results (94a138b), so git cannot tell which came first; every
rule since was written after results had been seen: the 5% tolerance on paired intervals (6247443), the unresolved
status (dd92560), the two stages (c99e2bc) and, after a review showed that the kept rule cannot fail where plain Heun
gets worse with more levels, the comparison at equal NFE. `c6_robustness` (`lib.verdicts.teleport_report`) recomputes
the verdict at other tolerances on the same intervals (the second stage chose its skips at 5%).
"""

from __future__ import annotations

import pandas as pd

from lib.verdicts.common import TableError
from lib.verdicts.schema import INTEGER, TEXT, Column, check_columns, check_unique, refuse, validate
from lib.verdicts.teleport_rows import (
    BETTER,
    C6_ALPHA,
    C6_PAPER_RANGE,
    C6_TOLERANCE,
    C6_TOLERANCES,
    CONTROLS,
    KEPT,
    LOSS,
    NO_BETTER,
    UNRESOLVED,
    WORSE,
    C6Row,
    C6Verdict,
    Comparison,
    compare_status,
    skip_status,
)

__all__ = ["BETTER", "C6_ALPHA", "C6_PAPER_RANGE", "C6_TOLERANCE", "C6_TOLERANCES", "CONTROLS", "KEPT", "LOSS",
           "NO_BETTER", "UNRESOLVED", "WORSE", "C6Row", "C6Verdict", "Comparison", "c6_level", "c6_verdict",
           "compare_status", "refine_skips", "skip_status", "undecided_skips"]


def c6_level(stages: int, alpha: float = C6_ALPHA) -> float:
    """The two-sided level of each stage's interval: 1 - alpha / stages (0.95 with one stage, 0.975 with two).

    "Kept" reads the interval's upper end, a one-sided test at (1 - level) / 2 per look; Bonferroni over the looks.
    """
    if stages < 1:
        raise ValueError(f"the number of stages must be >= 1, got {stages}")
    return 1.0 - alpha / stages


PAIRED_REQUIRED = ("sampler", "steps", "skip", "jump", "sigma_skip", "nfe", "fd_base", "fd_change", "ci_low",
                   "ci_high")
#: What C6 reads from the paired table (`lib.verdicts.schema`). The rule reads a missing interval as a loss (and a
#: worse comparison), so ci_low and ci_high may leave a row empty, though not every row.
PAIRED_COLUMNS = (
    Column("sampler", TEXT, meaning="sampler name"),
    Column("steps", INTEGER, low=1, meaning="the budget's number of levels N"),
    Column("skip", INTEGER, low=0, meaning="the levels skipped k"),
    Column("jump", TEXT, meaning="arm name"),
    Column("sigma_skip", low=0, low_open=True, meaning="a noise level"),
    Column("nfe", INTEGER, low=1, meaning="network evaluations"),
    Column("fd_base", low=0, meaning="the plain run's FD"),
    Column("fd_change", missing_ok=True, meaning="a paired FD change"),
    Column("ci_low", missing_ok=True, meaning="an interval's end; empty reads as a loss"),
    Column("ci_high", missing_ok=True, meaning="an interval's end; empty reads as a loss"),
    Column("n_samples", INTEGER, required=False, low=1, meaning="samples compared"),
    Column("ci_level", required=False, low=0, low_open=True, high=1, meaning="the intervals' level"),
    Column("against_steps", INTEGER, required=False, low=1, missing_ok=True, meaning="levels of the run compared"),
    Column("fd", required=False, missing_ok=True, meaning="an FD"),
    Column("fd_against", required=False, missing_ok=True, meaning="an FD"),
)
#: What the comparisons at equal NFE and with the controls (rows not against "budget") read besides.
COMPARISON_COLUMNS = (Column("against_steps", INTEGER, low=1, meaning="levels of the run compared"),
                      Column("fd", low=0, meaning="an FD"), Column("fd_against", low=0, meaning="an FD"),
                      Column("n_samples", INTEGER, low=1, meaning="samples compared"))


def _against(paired):
    """What each row is compared with ("budget" where the table has no `against` column or leaves it empty)."""
    if "against" not in paired.columns:
        return pd.Series("budget", index=paired.index)
    return paired["against"].astype(object).where(paired["against"].notna(), "budget")


def _rows(paired, against: str = "budget"):
    """The rows of one comparison."""
    return paired[_against(paired) == against]


def _baseline(rows, sampler: str, steps: int):
    base = rows[rows["skip"] == 0]
    if base.empty:
        raise TableError(f"C6: column 'skip' of {sampler} with {steps} levels has no skip-0 baseline; expected a k = 0 "
                         "row (jump none) for every budget")
    return base.iloc[0]


def _arm(rows, jump: str):
    """The skipped runs (k > 0) of one budget and arm, in order of the skip."""
    return rows[(rows["skip"] > 0) & (rows["jump"] == jump)].sort_values("skip")


def _comparisons(budget, jump: str) -> tuple[Comparison, ...]:
    if "against" not in budget.columns:
        return ()
    against = _against(budget)
    rows = budget[(budget["jump"] == jump) & (against != "budget") & (budget["skip"] > 0)]
    return tuple(Comparison(int(r["skip"]), str(r["against"]), int(r["against_steps"]), int(r["nfe"]), float(r["fd"]),
                            float(r["fd_against"]), float(r["fd_change"]), (float(r["ci_low"]), float(r["ci_high"])),
                            int(r["n_samples"])) for _, r in rows.sort_values(["against", "skip"]).iterrows())


def _judge_budget(budget, sampler: str, steps: int, jump: str, tolerance: float = C6_TOLERANCE) -> C6Row:
    """Walk up the skips of one budget and arm: keep while the interval's upper end is within the tolerance."""
    rows = _rows(budget)
    base = _baseline(rows, sampler, steps)
    runs = _arm(rows, jump)
    kept, failure, unresolved = base, None, []
    for _, row in runs.iterrows():
        status = skip_status(row["ci_low"], row["ci_high"], tolerance * float(base["fd_base"]))
        if status == UNRESOLVED:
            unresolved.append(int(row["skip"]))
        if status != KEPT:
            failure = (int(row["skip"]), float(row["fd_change"]), float(row["ci_high"]))
            break
        kept = row
    return C6Row(
        sampler=str(sampler), steps=int(steps), jump=jump,
        skips=tuple(int(k) for k in sorted({0, *runs["skip"]})), baseline_fd=float(base["fd_base"]),
        kept_skip=int(kept["skip"]), sigma_skip=float(kept["sigma_skip"]), nfe_baseline=int(base["nfe"]),
        nfe_kept=int(kept["nfe"]), change=float(kept["fd_change"]),
        ci=(float(kept["ci_low"]), float(kept["ci_high"])), first_failure=failure, unresolved=tuple(unresolved),
        samples=tuple(int(n) for n in runs["n_samples"]) if "n_samples" in runs.columns else (),
        tolerance_share=tolerance, comparisons=_comparisons(budget, jump),
    )


def _budgets(paired):
    return paired.groupby(["sampler", "steps"], sort=False)


def _walk(budget, sampler: str, steps: int, jump: str, tolerance: float) -> list[tuple[int, str]]:
    """(skip, kept status) of one arm of a budget, walking up to its first measured loss (included)."""
    rows = _rows(budget)
    limit = tolerance * float(_baseline(rows, sampler, steps)["fd_base"])
    out = []
    for _, row in _arm(rows, jump).iterrows():
        out.append((int(row["skip"]), skip_status(row["ci_low"], row["ci_high"], limit)))
        if out[-1][1] == LOSS:
            break
    return out


def undecided_skips(paired, jumps=("gaussian", *CONTROLS), tolerance: float = C6_TOLERANCE
                    ) -> list[tuple[str, int, int, str]]:
    """(sampler, N, skip, arm) of every skip whose kept interval straddles the tolerance, walking up each budget and
    arm to its first measured loss (a skip past a loss cannot be kept, so it needs no more samples)."""
    return [(str(sampler), int(steps), k, jump) for (sampler, steps), budget in _budgets(paired) for jump in jumps
            for k, status in _walk(budget, sampler, steps, jump, tolerance) if status == UNRESOLVED]


def refine_skips(paired, jumps=("gaussian", *CONTROLS), tolerance: float = C6_TOLERANCE) -> list[tuple[str, int, int]]:
    """(sampler, N, skip) that the second stage gives more samples (every run compared there): the skips some arm
    leaves unresolved (`undecided_skips`), and the Gaussian skips from round(0.15 N) up to its first measured loss
    whose equal-NFE comparison is "no better"."""
    out = [(s, n, k) for s, n, k, _ in undecided_skips(paired, jumps, tolerance)]
    for (sampler, steps), budget in _budgets(paired):
        row = _judge_budget(budget, sampler, steps, "gaussian", tolerance)
        losses = [k for k, status in _walk(budget, sampler, steps, "gaussian", tolerance) if status == LOSS]
        out += [(str(sampler), int(steps), c.skip) for c in row.versus("plain") if c.status == NO_BETTER
                and row.lower_target <= c.skip < (losses[0] if losses else c.skip + 1)]
    order = {name: i for i, name in enumerate(dict.fromkeys(paired["sampler"]))}
    return sorted(set(out), key=lambda t: (order[t[0]], t[1], t[2]))


def require_budgets(paired) -> None:
    """Every budget (sampler, N) has its k = 0 baseline and at least one skip k >= 1 of the Gaussian jump."""
    for (sampler, steps), budget in _budgets(paired):
        rows = _rows(budget)
        _baseline(rows, sampler, steps)
        if _arm(rows, "gaussian").empty:
            raise TableError(f"C6: column 'skip' of {sampler} with {steps} levels has no k >= 1 of the gaussian jump; "
                             "expected at least one skipped run beside the k = 0 baseline")


def validate_paired(paired) -> None:
    """The paired table holds what C6 reads (`PAIRED_COLUMNS`): one row per (sampler, N, skip, arm, against), skips
    below N, ci_low <= ci_high where both are given, and every budget its baseline and a skipped Gaussian run."""
    missing = [c for c in PAIRED_REQUIRED if c not in getattr(paired, "columns", ())]
    if missing:
        raise TableError(f"C6: the paired teleportation table lacks the columns {missing}: pass the paired table "
                         "(data/results/teleportation_paired.csv from notebook 07, or "
                         "lib.analysis.teleport_pairs.paired_table)")
    validate(paired, PAIRED_COLUMNS, claim="C6")
    check_unique(paired.assign(against=_against(paired)), ("sampler", "steps", "skip", "jump", "against"), "C6")
    steps, skip = (pd.to_numeric(paired[c]) for c in ("steps", "skip"))
    refuse(paired, skip >= steps, "skip", "an integer below the budget's steps N", "C6")
    low, high = (pd.to_numeric(paired[c]) for c in ("ci_low", "ci_high"))
    refuse(paired, low > high, "ci_low", "a number <= ci_high", "C6")
    compared = paired[_against(paired) != "budget"]
    check_columns(compared, COMPARISON_COLUMNS, "C6")
    require_budgets(paired)


def c6_verdict(paired, tolerance: float = C6_TOLERANCE) -> C6Verdict:
    """Judge C6 from the paired table (`lib.analysis.teleport_pairs.paired_table`,
    data/results/teleportation_paired.csv): per (sampler, N, skip, arm, against) the paired FD change and its interval;
    skip-0 rows (jump "none") are the baselines. The "gaussian" arm gives the verdict; "isotropic", "noise" and "plain"
    (N - k levels from sigma_max), where present, are judged as controls. `tolerance`: a share of the plain FD."""
    validate_paired(paired)
    rows, controls = [], []
    for (sampler, steps), budget in _budgets(paired):
        rows.append(_judge_budget(budget, sampler, steps, "gaussian", tolerance))
        controls += [_judge_budget(budget, sampler, steps, jump, tolerance) for jump in CONTROLS
                     if (budget["jump"] == jump).any()]
    judged = paired[paired["skip"] > 0]
    level = float(judged["ci_level"].max()) if "ci_level" in paired.columns and len(judged) else 0.95
    return C6Verdict(tuple(rows), tuple(controls), level, tolerance)

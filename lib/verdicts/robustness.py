"""Verdicts recomputed over a grid of their thresholds: how much each verdict depends on where its lines were drawn.

Every rule draws lines (C2's 99% level, C3's early cutoff, C4's "coarse" K, C5's and C6's tolerances). The lines
were chosen by us, some after first results had been seen (docs/verdict_history.md), so each claim's findings are
recomputed over a stated grid of them, the default setting included:

    C2  EV level 98, 98.5, 99, 99.5%  x  share of the isotropic residual 0.25, 0.5, 0.75        (12 settings)
    C3  early cutoff 25, 35, 50% of training  x  smallest counted change 2, 5, 10%                (9 settings)
    C4  coarse K <= 50, 100, 200  x  tie factor 1.05, 1.1, 1.25                                   (9 settings)
    C5  tolerance 5, 7.5, 10, 15, 20%                                                              (5 settings)
    C6  tolerance 2, 3, 5, 7.5, 10% of the plain run's FD                                          (5 settings)

`robustness_table` gives one row per setting (each finding's verdict and the claim's); `with_robustness` writes
into each finding how many settings give it the verdict it has at the default ("same verdict in 10 of 12
settings"), and `claim_robustness` says the same of the claim's verdict. The table is a description, never a
second verdict: the verdict is the default setting's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lib.verdicts.dynamics import C3Rules, C3Verdict, c3_verdict
from lib.verdicts.findings import (
    Finding,
    c2_findings,
    c3_findings,
    c4_findings,
    c5_findings,
    c6_findings,
    claim_outcome,
)
from lib.verdicts.linearity import C2Rules, C2Verdict, c2_verdict
from lib.verdicts.mixtures import C4Rules, C4Verdict, c4_verdict
from lib.verdicts.teleport_rows import C6_TOLERANCE, C6_TOLERANCES
from lib.verdicts.teleportation import c6_verdict
from lib.verdicts.trajectory import C5Rules, c5_verdict

GRIDS: dict[str, list[Any]] = {
    "C2": [C2Rules(ev_threshold=e, iso_share=i) for e in (0.98, 0.985, 0.99, 0.995) for i in (0.25, 0.5, 0.75)],
    "C3": [C3Rules(early_fraction=e, min_change=m) for e in (0.25, 0.35, 0.5) for m in (0.02, 0.05, 0.10)],
    "C4": [C4Rules(coarse_max_k=k, tie_factor=t) for k in (50, 100, 200) for t in (1.05, 1.1, 1.25)],
    "C5": [C5Rules(tolerance=t) for t in (0.05, 0.075, 0.10, 0.15, 0.20)],
}
DEFAULTS: dict[str, Any] = {"C2": C2Rules(), "C3": C3Rules(), "C4": C4Rules(), "C5": C5Rules()}
CLAIM_COLUMN = "claim verdict"


def _names(findings: Sequence[Finding]) -> list[str]:
    """A short, unique column name per finding: its label, else its position."""
    labels = [f.label or f"finding {i + 1}" for i, f in enumerate(findings)]
    return [label if labels.count(label) == 1 else f"{label} ({i + 1})" for i, label in enumerate(labels)]


def robustness_table(findings_at: Callable[[Any], list[Finding]], grid: Sequence[Any],
                     describe: Callable[[Any], str] | None = None) -> pd.DataFrame:
    """One row per setting of `grid`: the setting, each finding's verdict (columns named by `_names` of the first
    setting's findings) and the claim's (`claim_outcome`). `findings_at(rules)` builds the claim's findings under
    one setting; every setting must give the same number of findings."""
    rows, names = [], None
    for rules in grid:
        findings = findings_at(rules)
        names = names or _names(findings)
        if len(findings) != len(names):
            raise ValueError(f"setting {rules} gives {len(findings)} findings, the first gave {len(names)}")
        rows.append({"setting": describe(rules) if describe else rules.describe(),
                     **{n: f.verdict for n, f in zip(names, findings, strict=True)},
                     CLAIM_COLUMN: claim_outcome(findings)})
    return pd.DataFrame(rows)


def _share(table: pd.DataFrame, column: str, verdict: str) -> str:
    return f"same verdict in {int((table[column] == verdict).sum())} of {len(table)} settings"


def with_robustness(findings: list[Finding], table: pd.DataFrame) -> list[Finding]:
    """`findings` (at the default setting) with `robustness` filled from `table` (`robustness_table`)."""
    names = _names(findings)
    return [replace(f, robustness=_share(table, n, f.verdict)) for f, n in zip(findings, names, strict=True)]


def claim_robustness(findings: list[Finding], table: pd.DataFrame) -> str:
    """How many settings give the claim the verdict it has at the default setting."""
    return _share(table, CLAIM_COLUMN, claim_outcome(findings))


@dataclass(frozen=True)
class Judged:
    """A claim judged at its default setting, with how robust that is over the grid of its thresholds."""

    findings: list[Finding]  # at the default setting, each with its robustness
    verdict: str  # the claim's (`claim_outcome`)
    robustness: str  # how many settings give the claim that verdict
    table: pd.DataFrame  # one row per setting (`robustness_table`)


def judged(claim: str, findings_at: Callable[[Any], list[Finding]], grid: Sequence[Any] | None = None,
           default: Any = None, describe: Callable[[Any], str] | None = None) -> Judged:
    """A claim's findings at its default setting (`default`, else `DEFAULTS[claim]`), with their robustness over
    `grid` (else `GRIDS[claim]`). What a notebook records (`lib.verdicts.scorecard.record`) and shows."""
    findings = findings_at(DEFAULTS[claim] if default is None else default)
    table = robustness_table(findings_at, GRIDS[claim] if grid is None else grid, describe)
    return Judged(with_robustness(findings, table), claim_outcome(findings), claim_robustness(findings, table), table)


# --------------------------------------------------------------------------- each claim, as the notebooks judge it


def c2(table: pd.DataFrame, naive_scale: float, probe_sets: Sequence[str], ideal: Mapping[str, pd.DataFrame] | None,
       paper: C2Verdict | None, source: str = "authors' table, final MNIST network") -> Judged:
    """C2 on a linearity table: per probe set, with the training set's own residual curve (`residuals` of its EV
    against the Gaussian) as the data's own range, beside the paper's verdict `paper` (None: none)."""
    def at(rules: C2Rules) -> list[Finding]:
        ours = {ps: c2_verdict(table, naive_scale, probe_set=ps, rules=rules,
                               ideal_range=None if ideal is None else ideal[ps]) for ps in probe_sets}
        return c2_findings(ours, paper, source)

    return judged("C2", at)


def c3(table: pd.DataFrame, probe_sets: Sequence[str], paper: C3Verdict | None) -> Judged:
    """C3 on a training-dynamics table, per probe set, beside the paper's 25k-step run (None: none)."""
    return judged("C3", lambda rules: c3_findings({ps: c3_verdict(table, probe_set=ps, rules=rules)
                                                   for ps in probe_sets}, paper))


def c4(table: pd.DataFrame, probe_sets: Sequence[str], paper: C4Verdict, step: int | str = "last") -> Judged:
    """C4 on a mixture-grid table at one step, per probe set, beside the paper's CIFAR-10 verdict."""
    return judged("C4", lambda rules: c4_findings({ps: c4_verdict(table, probe_set=ps, step=step, rules=rules)
                                                   for ps in probe_sets}, paper))


def c5(table: pd.DataFrame) -> Judged:
    """C5 on the trajectory deviation table."""
    return judged("C5", lambda rules: c5_findings(c5_verdict(table, rules)))


def c6(paired: pd.DataFrame) -> Judged:
    """C6 on the paired teleportation table, at each tolerance of `C6_TOLERANCES` (a share of the plain run's FD)."""
    return judged("C6", lambda tolerance: c6_findings(c6_verdict(paired, tolerance=tolerance)), grid=C6_TOLERANCES,
                  default=C6_TOLERANCE, describe=lambda tolerance: f"tolerance {tolerance:.1%} of the plain FD")

"""Claim C3: the Gaussian structure is learned early; its fit then degrades slightly while the network
keeps approaching the training-set score.

Judged only at noise levels where it can show: a level is *informative* when the Gaussian's best
residual over training lies in C3_INFORMATIVE (neither exact, where nothing can degrade visibly, nor
hopeless, where it never fits). At each informative level, with r(step) = 1 - St_EV:

- best step: the first checkpoint whose residual is within one standard error of the minimum (robust
  to probe noise on a near-flat curve; the exact argmin without standard errors);
- early: the best step lies in the first C3_EARLY_FRACTION of training;
- degrades: r(final) exceeds the minimum by at least C3_MIN_CHANGE (relative) and by more than the
  standard error of the difference;
- training set keeps improving: the training-set (delta) residual at the final step is below its value at
  the Gaussian's best step, by the same two margins.

The pattern holds at a level when all three do. Outcome: REPRODUCED when it holds at more than half of
the informative levels, PARTLY REPRODUCED at some, NOT REPRODUCED at none (or no informative level).
The learning order (each model's robust best step per level) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.verdicts.common import (
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    TableError,
    beyond,
    difference_se,
    model_order,
    require,
    residuals,
    select,
    verdict_line,
    yes,
)

#: Informative levels: the Gaussian's best residual lies strictly inside this range.
C3_INFORMATIVE = (1e-3, 0.3)
#: "Early": the Gaussian's best step lies within this share of training.
C3_EARLY_FRACTION = 0.35
#: A rise or a fall counts when it is at least this large relative to the smaller value ...
C3_MIN_CHANGE = 0.05
#: ... and exceeds this many standard errors of the difference.
C3_SE_FACTOR = 1.0


def robust_best_step(curve: pd.DataFrame) -> int:
    """The first step whose residual is within one standard error of the minimum (`curve` from `residuals`
    indexed by step)."""
    r = curve["residual"]
    i_min = r.idxmin()
    se = curve.loc[i_min, "se"]
    tolerance = float(se) if np.isfinite(se) else 0.0
    return int(r.index[(r <= r.loc[i_min] + tolerance).to_numpy()][0])


def significant_rise(before: float, after: float, se_before: float, se_after: float) -> bool:
    """`after` exceeds `before` by C3_MIN_CHANGE relative and by C3_SE_FACTOR standard errors."""
    return bool(after >= (1 + C3_MIN_CHANGE) * before and
                beyond(after - before, difference_se(se_before, se_after), C3_SE_FACTOR))


@dataclass(frozen=True)
class C3Level:
    sigma: float
    best_step: int  # the Gaussian's robust best step
    final_step: int
    best_residual: float  # the Gaussian's minimum residual
    final_residual: float
    delta_at_best: float  # the training set's residual at the Gaussian's best step
    delta_final: float
    early: bool
    degrades: bool
    delta_improves: bool

    @property
    def pattern(self) -> bool:
        return self.early and self.degrades and self.delta_improves

    @property
    def rise(self) -> float:
        return self.final_residual / self.best_residual - 1.0


@dataclass(frozen=True)
class C3Verdict:
    """Claim C3 judged on one probe set across the table's steps."""

    probe_set: str
    final_step: int
    levels: tuple[C3Level, ...]  # the informative levels
    skipped: tuple[tuple[float, float], ...]  # (sigma, the Gaussian's best residual) of levels not judged
    learning_order: pd.DataFrame  # robust best step per (sigma, model)

    @property
    def n_pattern(self) -> int:
        return sum(lv.pattern for lv in self.levels)

    @property
    def outcome(self) -> str:
        if self.levels and 2 * self.n_pattern > len(self.levels):
            return REPRODUCED
        return PARTLY if self.n_pattern else NOT_REPRODUCED

    @property
    def holds(self) -> bool:
        return self.outcome == REPRODUCED

    def report(self) -> str:
        lo, hi = C3_INFORMATIVE
        lines = [f"C3: the Gaussian structure is learned early ({self.probe_set} probes, final step {self.final_step})",
                 f"  judged where the Gaussian's best residual is in ({lo:g}, {hi:g}); best step = first checkpoint "
                 "within 1 se of the minimum;",
                 f"  a rise or fall counts when >= {C3_MIN_CHANGE:.0%} and > {C3_SE_FACTOR:g} se of the difference",
                 f"  {'sigma':>6} {'best step':>9} {'best 1-EV':>10} {'final 1-EV':>10} {'rise':>6} "
                 f"{'delta then -> final':>20}  early  degrades  delta improves"]
        for lv in self.levels:
            delta = f"{lv.delta_at_best:.2e}->{lv.delta_final:.2e}"
            lines.append(f"  {lv.sigma:>6g} {lv.best_step:>9d} {lv.best_residual:>10.2e} {lv.final_residual:>10.2e} "
                         f"{lv.rise:>+6.0%} {delta:>20}  {yes(lv.early):>5}  {yes(lv.degrades):>8}  "
                         f"{yes(lv.delta_improves)}")
        for sigma, best in self.skipped:
            lines.append(f"  {sigma:>6g} not judged: the Gaussian's best residual {best:.2e} is outside "
                         f"({lo:g}, {hi:g})")
        lines.append("  learning order (robust best step of each model):")
        order = self.learning_order
        lines.append("    " + f"{'sigma':>6} " + " ".join(f"{m:>9}" for m in order.columns))
        for sigma, row in order.iterrows():
            lines.append("    " + f"{sigma:>6g} " + " ".join(f"{int(v):>9d}" if np.isfinite(v) else f"{'-':>9}"
                                                          for v in row))
        lines.append(f"  the pattern (early best, then degrades, training set improves) holds at {self.n_pattern} "
                     f"of {len(self.levels)} judged levels")
        lines.append(verdict_line("C3", self.outcome))
        return "\n".join(lines)


def c3_verdict(table: pd.DataFrame, probe_set: str = "train", column: str = "St_EV",
               sigmas=None) -> C3Verdict:
    """Judge C3 from a training-dynamics table (rows per step, sigma, model, probe set) with the models
    `gaussian` and `delta`; `sigmas` restricts the levels considered (default: all in the table)."""
    require(table, columns=("step", column), models=("gaussian", "delta"), claim="C3")
    rows = select(table, probe_set, step=None)
    if rows["step"].nunique() < 3:
        raise TableError(f"C3: the table has {rows['step'].nunique()} steps; at least 3 checkpoints are needed")
    final_step = int(rows["step"].max())
    levels, skipped, order = [], [], {}
    all_sigmas = sorted(set(rows["sigma"])) if sigmas is None else sorted(sigmas)
    models = sorted(dict.fromkeys(rows["model"].astype(str)), key=model_order)
    for sigma in all_sigmas:
        at = rows[np.isclose(rows["sigma"], sigma)]
        curves = {m: residuals(at, m, column, index="step") for m in models if (at["model"] == m).any()}
        if "gaussian" not in curves or "delta" not in curves:
            continue
        order[sigma] = {m: robust_best_step(c) for m, c in curves.items()}
        gauss, delta = curves["gaussian"], curves["delta"]
        best_residual = float(gauss["residual"].min())
        if not C3_INFORMATIVE[0] < best_residual < C3_INFORMATIVE[1]:
            skipped.append((float(sigma), best_residual))
            continue
        best = order[sigma]["gaussian"]
        i_min = gauss["residual"].idxmin()
        levels.append(C3Level(
            sigma=float(sigma), best_step=best, final_step=final_step, best_residual=best_residual,
            final_residual=float(gauss.loc[final_step, "residual"]),
            delta_at_best=float(delta.loc[best, "residual"]), delta_final=float(delta.loc[final_step, "residual"]),
            early=best <= C3_EARLY_FRACTION * final_step,
            degrades=significant_rise(best_residual, float(gauss.loc[final_step, "residual"]),
                                      float(gauss.loc[i_min, "se"]), float(gauss.loc[final_step, "se"])),
            delta_improves=significant_rise(
                float(delta.loc[final_step, "residual"]), float(delta.loc[best, "residual"]),
                float(delta.loc[final_step, "se"]), float(delta.loc[best, "se"])),
        ))
    learning_order = pd.DataFrame(order).T.astype(float)
    learning_order.index.name = "sigma"
    return C3Verdict(probe_set, final_step, tuple(levels), tuple(skipped), learning_order)

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

The pattern holds at a level when all three do. The trivial control is the isotropic model (`mean_std`, else
`mean`) judged by the same three tests at the same levels: a network that fits every simple model best early and
then drifts away from all of them shows the pattern for the isotropic model too, and says nothing about Gaussian
structure in particular.

Outcome: NOT REPRODUCED when the pattern holds at no informative level (or there is none); NOT INFORMATIVE when
the isotropic control shows it at as many levels as the Gaussian; otherwise REPRODUCED when it holds at more than
half of the informative levels, PARTLY REPRODUCED at some. The thresholds are the fields of `C3Rules` (defaults:
the module's constants; `lib.verdicts.robustness` recomputes the verdict over a grid of them). The learning order
(each model's robust best step per level) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.verdicts.common import (
    NOT_INFORMATIVE,
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
from lib.verdicts.schema import validate_linearity

#: Informative levels: the Gaussian's best residual lies strictly inside this range.
C3_INFORMATIVE = (1e-3, 0.3)
#: "Early": the Gaussian's best step lies within this share of training.
C3_EARLY_FRACTION = 0.35
#: A rise or a fall counts when it is at least this large relative to the smaller value ...
C3_MIN_CHANGE = 0.05
#: ... and exceeds this many standard errors of the difference.
C3_SE_FACTOR = 1.0
#: The trivial control, the first of these in the table.
ISOTROPIC_MODELS = ("mean_std", "mean")


@dataclass(frozen=True)
class C3Rules:
    """The thresholds of C3's rule (see the module docstring)."""

    early_fraction: float = C3_EARLY_FRACTION
    min_change: float = C3_MIN_CHANGE
    se_factor: float = C3_SE_FACTOR
    informative: tuple[float, float] = C3_INFORMATIVE

    def describe(self) -> str:
        return f"early <= {self.early_fraction:.0%} of training, change >= {self.min_change:.0%}"


C3_RULES = C3Rules()


def robust_best_step(curve: pd.DataFrame) -> int:
    """The first step whose residual is within one standard error of the minimum (`curve` from `residuals`
    indexed by step)."""
    r = curve["residual"]
    i_min = r.idxmin()
    se = curve.loc[i_min, "se"]
    tolerance = float(se) if np.isfinite(se) else 0.0
    return int(r.index[(r <= r.loc[i_min] + tolerance).to_numpy()][0])


def significant_rise(before: float, after: float, se_before: float, se_after: float, rules: C3Rules = C3_RULES) -> bool:
    """`after` exceeds `before` by `rules.min_change` relative and by `rules.se_factor` standard errors."""
    return bool(after >= (1 + rules.min_change) * before and
                beyond(after - before, difference_se(se_before, se_after), rules.se_factor))


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
    control_pattern: bool | None = None  # the isotropic control shows the same pattern (None: no control in the table)

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
    control: str | None = None  # the isotropic model judged by the same tests
    rules: C3Rules = field(default_factory=C3Rules)

    @property
    def n_pattern(self) -> int:
        return sum(lv.pattern for lv in self.levels)

    @property
    def n_control(self) -> int | None:
        """Judged levels where the isotropic control shows the pattern (None without a control)."""
        return None if self.control is None else sum(bool(lv.control_pattern) for lv in self.levels)

    @property
    def outcome(self) -> str:
        if not self.n_pattern:
            return NOT_REPRODUCED
        if self.n_control is not None and self.n_control >= self.n_pattern:
            return NOT_INFORMATIVE
        return REPRODUCED if 2 * self.n_pattern > len(self.levels) else PARTLY

    @property
    def holds(self) -> bool:
        return self.outcome == REPRODUCED

    def report(self) -> str:
        rules = self.rules
        lo, hi = rules.informative
        lines = [f"C3: the Gaussian structure is learned early ({self.probe_set} probes, final step {self.final_step})",
                 f"  judged where the Gaussian's best residual is in ({lo:g}, {hi:g}); best step = first checkpoint "
                 f"within 1 se of the minimum; early = within the first {rules.early_fraction:.0%} of training;",
                 f"  a rise or fall counts when >= {rules.min_change:.0%} and > {rules.se_factor:g} se of the "
                 "difference",
                 f"  {'sigma':>6} {'best step':>9} {'best 1-EV':>10} {'final 1-EV':>10} {'rise':>6} "
                 f"{'delta then -> final':>20}  early  degrades  delta improves  control ({self.control or 'none'})"]
        for lv in self.levels:
            delta = f"{lv.delta_at_best:.2e}->{lv.delta_final:.2e}"
            lines.append(f"  {lv.sigma:>6g} {lv.best_step:>9d} {lv.best_residual:>10.2e} {lv.final_residual:>10.2e} "
                         f"{lv.rise:>+6.0%} {delta:>20}  {yes(lv.early):>5}  {yes(lv.degrades):>8}  "
                         f"{yes(lv.delta_improves):>14}  {yes(lv.control_pattern)}")
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
        if self.control is not None:
            specific = yes(self.n_pattern > self.n_control)
            lines.append(f"  control: the isotropic model ({self.control}) shows the same pattern at {self.n_control} "
                         f"of them; the Gaussian's pattern is specific to it: {specific}")
        lines.append(verdict_line("C3", self.outcome))
        return "\n".join(lines)


def _pattern(curve: pd.DataFrame, delta: pd.DataFrame, final_step: int, rules: C3Rules) -> tuple[int, bool, bool, bool]:
    """(best step, early, degrades, training set improves) of one model's residual curve over the steps."""
    best = robust_best_step(curve)
    i_min = curve["residual"].idxmin()
    r, se = curve["residual"], curve["se"]
    return best, best <= rules.early_fraction * final_step, significant_rise(
        float(r.min()), float(r.loc[final_step]), float(se.loc[i_min]), float(se.loc[final_step]), rules), \
        significant_rise(float(delta.loc[final_step, "residual"]), float(delta.loc[best, "residual"]),
                         float(delta.loc[final_step, "se"]), float(delta.loc[best, "se"]), rules)


def require_steps(curves: dict[str, pd.DataFrame], models, final_step: int, sigma: float) -> None:
    """At one noise level, `models` (the Gaussian, the control) and the training set (`delta`) have the final step,
    and the training set every step the others have (the rule reads it at their best step): TableError naming the
    first gap."""
    delta = set(curves["delta"].index)
    for model in ("delta", *models):
        steps = set(curves[model].index)
        if final_step not in steps:
            raise TableError(f"C3: model {model} has no row at the final step {final_step} at sigma = {sigma:g}; "
                             "expected every model the rule reads at every checkpoint")
        if not steps <= delta:
            raise TableError(f"C3: delta has no row at step {min(steps - delta)} at sigma = {sigma:g}, where {model} "
                             "has one; expected every model the rule reads at every checkpoint")


def c3_verdict(table: pd.DataFrame, probe_set: str = "train", column: str = "St_EV",
               sigmas=None, rules: C3Rules = C3_RULES) -> C3Verdict:
    """Judge C3 from a training-dynamics table (rows per step, sigma, model, probe set) with the models
    `gaussian` and `delta` (and `mean_std` or `mean` for the control); `sigmas` restricts the levels considered
    (default: all in the table)."""
    validate_linearity(table, column, claim="C3", step_required=True)
    require(table, columns=("step", column), models=("gaussian", "delta"), claim="C3")
    rows = select(table, probe_set, step=None)
    if rows["step"].nunique() < 3:
        raise TableError(f"C3: the table has {rows['step'].nunique()} steps; at least 3 checkpoints are needed")
    final_step = int(rows["step"].max())
    levels, skipped, order = [], [], {}
    all_sigmas = sorted(set(rows["sigma"])) if sigmas is None else sorted(sigmas)
    models = sorted(dict.fromkeys(rows["model"].astype(str)), key=model_order)
    control = next((m for m in ISOTROPIC_MODELS if m in models), None)
    for sigma in all_sigmas:
        at = rows[np.isclose(rows["sigma"], sigma)]
        curves = {m: residuals(at, m, column, index="step") for m in models if (at["model"] == m).any()}
        if "gaussian" not in curves or "delta" not in curves:
            continue
        require_steps(curves, (m for m in ("gaussian", control) if m in curves), final_step, sigma)
        order[sigma] = {m: robust_best_step(c) for m, c in curves.items()}
        gauss, delta = curves["gaussian"], curves["delta"]
        best_residual = float(gauss["residual"].min())
        if not rules.informative[0] < best_residual < rules.informative[1]:
            skipped.append((float(sigma), best_residual))
            continue
        best, early, degrades, improves = _pattern(gauss, delta, final_step, rules)
        control_pattern = None
        if control in curves:
            control_pattern = all(_pattern(curves[control], delta, final_step, rules)[1:])
        levels.append(C3Level(
            sigma=float(sigma), best_step=best, final_step=final_step, best_residual=best_residual,
            final_residual=float(gauss.loc[final_step, "residual"]),
            delta_at_best=float(delta.loc[best, "residual"]), delta_final=float(delta.loc[final_step, "residual"]),
            early=early, degrades=degrades, delta_improves=improves, control_pattern=control_pattern))
    learning_order = pd.DataFrame(order).T.astype(float)
    learning_order.index.name = "sigma"
    return C3Verdict(probe_set, final_step, tuple(levels), tuple(skipped), learning_order, control, rules)

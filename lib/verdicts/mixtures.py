"""Claim C4: at low noise the learned score is better described by a coarse-grained Gaussian mixture
than by the exact score of the training set (the delta mixture).

The rule (ours, revised after our network's first results and the authors' tables had been seen; its changes
are listed in docs/verdict_history.md):

- *coarse* mixtures are `gmm<K>` and `gmm<K>_rank<r>` with 2 <= K <= C4_COARSE_MAX_K, any rank: at
  least 600 training images per component on average on MNIST (50,000 / 100 = 500 on CIFAR-10), far
  from the one-image-per-component limit where a mixture turns into the training set;
- the *low* band is sigma <= C4_LOW_BAND_MAX (the band where the Gaussian alone no longer explains the
  score);
- the coarse model compared is the one with the smallest geometric-mean residual over the low band (a
  selection over the coarse models in the table, reported with their number).

A low level is judged only where one of the two explains some of the network's score (residual < 1); where
neither does (an untrained network, say), "closer" means nothing. At each judged level the chosen coarse
mixture *wins* when its residual 1 - EV is below the training
set's by more than the tie factor C4_TIE_FACTOR and by more than one standard error of the difference;
the training set wins in the mirror case; anything else is a tie.

The trivial controls are judged against the training set by the same rule: the plain Gaussian (`gaussian`, one
component: no coarse-graining at all) and the isotropic models where the table has them. Where the training-set
score is poor for a reason of its own (on held-out probes it snaps each probe to a training image), anything
smooth beats it, and the coarse mixture's win says nothing about coarse-graining.

Outcome: NOT REPRODUCED when the coarse mixture wins at no judged level; NOT INFORMATIVE when a control wins at as
many judged levels; otherwise REPRODUCED when it wins at every judged level, PARTLY REPRODUCED at some. The
thresholds are the fields of `C4Rules` (defaults: the module's constants; `lib.verdicts.robustness` recomputes
the verdict over a grid of them).

Reported beside the verdict and never used by it: the best model of the whole table (a selection over
every mixture, large K included), whether the residual still falls at the largest K, and the mid and
high bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.core.conventions import MIXTURE_NAME, SIGMA_BANDS
from lib.verdicts.common import (
    NOT_INFORMATIVE,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    TableError,
    beyond,
    difference_se,
    require,
    residuals,
    select,
    verdict_line,
)
from lib.verdicts.schema import validate_linearity

#: Coarse mixtures have at most this many components ...
C4_COARSE_MAX_K = 100
#: ... and are compared with the training set at sigma <= this ...
C4_LOW_BAND_MAX = SIGMA_BANDS["low"][1]
#: ... where residuals within this factor of each other are a tie ...
C4_TIE_FACTOR = 1.1
#: ... at levels where at least one of the two has a residual below this (explains some of the score).
C4_MAX_RESIDUAL = 1.0
#: The trivial controls, judged against the training set by the same rule: the plain Gaussian (one component, not
#: coarse-grained at all) and the isotropic models, where the table has them.
CONTROL_MODELS = ("gaussian", "mean_std", "mean")


@dataclass(frozen=True)
class C4Rules:
    """The thresholds of C4's rule (see the module docstring)."""

    coarse_max_k: int = C4_COARSE_MAX_K
    tie_factor: float = C4_TIE_FACTOR
    low_band_max: float = C4_LOW_BAND_MAX

    def describe(self) -> str:
        return f"coarse K <= {self.coarse_max_k}, tie factor {self.tie_factor:g}"


C4_RULES = C4Rules()

def mixture_components(name: str) -> int | None:
    """K of a mixture's table name (`gmm<K>` or `gmm<K>_rank<r>`), None for any other model."""
    match = MIXTURE_NAME.match(name)
    return None if match is None else int(match["K"])


def is_coarse(name: str, max_k: int = C4_COARSE_MAX_K) -> bool:
    k = mixture_components(name)
    return k is not None and 2 <= k <= max_k


def band_residual(curve: pd.DataFrame, sigmas) -> float:
    """Geometric mean of a model's residual over `sigmas` (its curve from `residuals`)."""
    values = curve.loc[list(sigmas), "residual"].to_numpy(dtype=np.float64)
    return float(np.exp(np.mean(np.log(np.clip(values, 1e-12, None)))))


@dataclass(frozen=True)
class C4Level:
    sigma: float
    coarse: float  # the chosen coarse mixture's residual
    delta: float  # the training set's residual
    outcome: str  # "mixture", "training set", "tie" or "not judged" (neither explains any of the score)


@dataclass(frozen=True)
class C4Verdict:
    """Claim C4 judged on one probe set at one step."""

    probe_set: str
    step: int | None
    coarse_model: str
    n_coarse: int  # coarse models the choice was made from
    levels: tuple[C4Level, ...]
    best_model: str  # the whole table's best model over the low band (a selection, not the verdict)
    best_residual: float
    n_models: int
    coarse_band: float
    delta_band: float
    best_by_k: dict[int, float]  # per K, the best band residual over ranks
    bands: dict[str, tuple[str, float]]  # "mid"/"high" -> (closest model, its band residual)
    controls: dict[str, tuple[C4Level, ...]] = field(default_factory=dict)  # each control against the training set
    control_bands: dict[str, float] = field(default_factory=dict)  # each control's band residual
    rules: C4Rules = field(default_factory=C4Rules)

    @property
    def wins(self) -> int:
        return sum(lv.outcome == "mixture" for lv in self.levels)

    def control_wins(self, name: str) -> int:
        """Judged levels (the coarse mixture's) at which the control beats the training set by the same rule."""
        judged = {lv.sigma for lv in self.judged}
        return sum(lv.outcome == "mixture" and lv.sigma in judged for lv in self.controls.get(name, ()))

    @property
    def strongest_control(self) -> str | None:
        """The control that beats the training set at the most levels (the smaller band residual on a tie)."""
        if not self.controls:
            return None
        return max(self.controls, key=lambda n: (self.control_wins(n), -self.control_bands.get(n, np.inf)))

    @property
    def outcome(self) -> str:
        if not self.wins:
            return NOT_REPRODUCED
        control = self.strongest_control
        if control is not None and self.control_wins(control) >= self.wins:
            return NOT_INFORMATIVE
        return REPRODUCED if self.wins == len(self.judged) else PARTLY

    @property
    def holds(self) -> bool:
        return self.outcome == REPRODUCED

    @property
    def still_falling_at_largest_k(self) -> bool:
        ks = sorted(self.best_by_k)
        return len(ks) > 1 and self.best_by_k[ks[-1]] < self.best_by_k[ks[-2]]

    @property
    def judged(self) -> tuple[C4Level, ...]:
        return tuple(lv for lv in self.levels if lv.outcome != "not judged")

    def report(self) -> str:
        step = "" if self.step is None else f", network at step {self.step}"
        rules = self.rules
        lines = [f"C4: coarse mixture or training set at low noise? ({self.probe_set} probes{step})",
                 f"  coarse = mixtures with 2 <= K <= {rules.coarse_max_k}; low noise = sigma <= "
                 f"{rules.low_band_max:g}; a win needs a factor {rules.tie_factor:g} and > 1 se",
                 f"  the best coarse mixture over the low band: {self.coarse_model} (chosen among {self.n_coarse}), "
                 f"band 1 - EV {self.coarse_band:.3g} vs training set {self.delta_band:.3g}",
                 f"  {'sigma':>6} {'coarse':>9} {'training set':>12}  closer"]
        for lv in self.levels:
            lines.append(f"  {lv.sigma:>6g} {lv.coarse:>9.3g} {lv.delta:>12.3g}  {lv.outcome}")
        lines.append(f"  coarse mixture closer at {self.wins} of {len(self.judged)} judged low noise levels")
        for name in self.controls:
            lines.append(f"  control {name} (band 1 - EV {self.control_bands[name]:.3g}) beats the training set at "
                         f"{self.control_wins(name)} of them by the same rule")
        if self.strongest_control is not None:
            lines.append(f"  the coarse mixture beats the training set at more levels than every control: "
                         f"{'yes' if self.outcome != NOT_INFORMATIVE and self.wins else 'NO'}")
        lines.append(f"  (selection, not the verdict) the best of all {self.n_models} models over the low band: "
                     f"{self.best_model}, band 1 - EV {self.best_residual:.3g}")
        if self.best_by_k:
            ks = sorted(self.best_by_k)
            lines.append("  best band residual per K (over ranks): "
                         + ", ".join(f"K={k}: {self.best_by_k[k]:.3g}" for k in ks)
                         + f"; still falling at the largest K = {ks[-1]}: "
                         + ("yes" if self.still_falling_at_largest_k else "no"))
        for band, (model, value) in self.bands.items():
            lines.append(f"  {band} noise: closest model {model} (band 1 - EV {value:.2g})")
        lines.append(verdict_line("C4", self.outcome))
        return "\n".join(lines)


def _closest(curves: dict[str, pd.DataFrame], sigmas) -> tuple[str, float]:
    scored = {name: band_residual(c, sigmas) for name, c in curves.items() if set(sigmas) <= set(c.index)}
    best = min(scored, key=scored.get)
    return best, scored[best]


def _compare(sigma: float, coarse: pd.DataFrame, delta: pd.DataFrame, rules: C4Rules = C4_RULES) -> C4Level:
    rc, rd = float(coarse.loc[sigma, "residual"]), float(delta.loc[sigma, "residual"])
    se = difference_se(float(coarse.loc[sigma, "se"]), float(delta.loc[sigma, "se"]))
    if min(rc, rd) >= C4_MAX_RESIDUAL:
        outcome = "not judged"
    elif rc * rules.tie_factor < rd and beyond(rd - rc, se):
        outcome = "mixture"
    elif rd * rules.tie_factor < rc and beyond(rc - rd, se):
        outcome = "training set"
    else:
        outcome = "tie"
    return C4Level(sigma, rc, rd, outcome)


def require_low_levels(curves: dict[str, pd.DataFrame], low: list[float], probe_set: str) -> None:
    """Every mixture has a row at each low noise level of the training set (`delta`), where the rule compares them:
    TableError naming the first mixture and level missing."""
    for name, curve in curves.items():
        missing = [s for s in low if s not in curve.index]
        if mixture_components(name) is not None and missing:
            raise TableError(f"C4: mixture {name} has no row at sigma = {missing[0]:g} ({probe_set} probes), where "
                             "delta has one; expected every mixture at every low noise level of delta")


def c4_verdict(table: pd.DataFrame, probe_set: str = "train", column: str = "St_EV",
               step: int | str = "last", rules: C4Rules = C4_RULES) -> C4Verdict:
    """Judge C4 from a table holding `delta` and at least one coarse mixture (see the module docstring); the
    controls (`CONTROL_MODELS`) are judged beside it where the table has them."""
    validate_linearity(table, column, claim="C4")
    require(table, columns=(column,), models=("delta",), claim="C4")
    if not any(is_coarse(m, rules.coarse_max_k) for m in set(table["model"].astype(str))):
        raise TableError(f"C4: the table lacks coarse mixtures (models gmm<K> or gmm<K>_rank<r> with "
                         f"2 <= K <= {rules.coarse_max_k})")
    rows = select(table, probe_set, step=step)
    require(rows, models=("delta",), claim=f"C4 ({probe_set} probes, step {step})")
    curves = {name: residuals(rows, name, column) for name in dict.fromkeys(rows["model"].astype(str))}
    low = sorted(s for s in curves["delta"].index if s <= rules.low_band_max)
    if not low:
        raise TableError(f"C4: the table has no noise level <= {rules.low_band_max:g}")
    require_low_levels(curves, low, probe_set)
    coarse = {n: c for n, c in curves.items() if is_coarse(n, rules.coarse_max_k)}
    if not coarse:
        raise TableError(f"C4 ({probe_set} probes, step {step}): the rows lack coarse mixtures (models gmm<K> or "
                         f"gmm<K>_rank<r> with 2 <= K <= {rules.coarse_max_k})")
    coarse_model, coarse_band = _closest(coarse, low)
    best_model, best_band = _closest(curves, low)
    best_by_k: dict[int, float] = {}
    for name, curve in curves.items():
        k = mixture_components(name)
        if k is not None:
            best_by_k[k] = min(best_by_k.get(k, np.inf), band_residual(curve, low))
    bands = {}
    for band in ("mid", "high"):
        lo, hi = SIGMA_BANDS[band]
        chosen = [s for s in curves["delta"].index if lo <= s <= hi]
        if chosen:
            bands[band] = _closest(curves, chosen)
    present = [n for n in CONTROL_MODELS if n in curves and set(low) <= set(curves[n].index)]
    controls = {n: tuple(_compare(s, curves[n], curves["delta"], rules) for s in low) for n in present}
    step_value = int(rows["step"].iloc[0]) if "step" in rows.columns and len(rows) else None
    return C4Verdict(
        probe_set, step_value, coarse_model, len(coarse),
        tuple(_compare(s, curves[coarse_model], curves["delta"], rules) for s in low),
        best_model, best_band, len(curves), coarse_band, band_residual(curves["delta"], low), best_by_k, bands,
        controls, {n: band_residual(curves[n], low) for n in present}, rules)

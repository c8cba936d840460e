"""Claim C2: the trained score is Gaussian at moderate and high noise, far below the naive scale sqrt(tr Sigma).

Any score is close to -(x - mu)/sigma^2 at high noise, so "the Gaussian explains 99% of the score" is
no evidence by itself: the mean-only and isotropic models do as well there. The Gaussian *explains*
the network's score at a noise level sigma only where both hold:

    (a) 1 - EV_G <= 1 - C2_EV_THRESHOLD                 (it explains nearly all of the score), and
    (b) 1 - EV_G <= C2_ISO_SHARE * (1 - EV_iso)          (it removes most of what the better of `mean`
                                                           and `mean_std` leaves unexplained).

Levels where the comparison cannot show are not judged: a level is *informative* when the isotropic
model's residual exceeds C2_INFORMATIVE_GAP times the best model's residual in the table, beyond two
standard errors (otherwise every model, even the isotropic one, matches the network to within its own
error, as at sigma >= 20 for our network). Walking down the informative levels from the top, the
Gaussian's range ends where (a) or (b) first fails, interpolated on log sigma (the larger of the two
margins log(r_G / 0.01) and log(r_G / (0.5 r_iso)) that fails first crosses zero).

The range's uncertainty is the wider of its 2-standard-error interval and the gap between the probe levels
around the crossing (the interpolation bridges that gap; `Crossing.upper`).

The trivial control is the better isotropic model's own 99% crossing: how far down `mean` or `mean_std` alone
explain 99% of the score. The Gaussian's range counts only where it reaches beyond that control: its upper
bound below the control's lower bound.

Outcome: NOT INFORMATIVE when the range does not reach beyond the isotropic control; otherwise REPRODUCED
when it reaches C2_FAR_BELOW_FACTOR below sqrt(tr Sigma) (its upper bound too), PARTLY REPRODUCED when it
reaches below sqrt(tr Sigma) but not that far, NOT REPRODUCED when the Gaussian explains the score at no
informative level (or only above sqrt(tr Sigma)). The thresholds are the fields of `C2Rules`; the defaults
are the module's constants, and `lib.verdicts.robustness` recomputes the verdict over a grid of them.

Beside the verdict, the data's own range (`ideal_range`: down to where the training set's exact score is
itself 99% Gaussian) says how much of the network's range the data alone would give.
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
    Crossing,
    TableError,
    bracket,
    difference_se,
    margin_crossing,
    model_order,
    require,
    residuals,
    select,
    threshold_crossing,
    verdict_line,
    yes,
)
from lib.verdicts.schema import positive_finite, validate_linearity

#: (a) the Gaussian must explain this share of the network's score ...
C2_EV_THRESHOLD = 0.99
#: ... (b) and leave at most this share of the best isotropic model's residual ...
C2_ISO_SHARE = 0.5
#: ... at levels where the isotropic residual is at least this factor above the best model's ...
C2_INFORMATIVE_GAP = 2.0
#: ... down to a noise level at least this factor below the naive scale sqrt(tr Sigma).
C2_FAR_BELOW_FACTOR = 3.0
ISOTROPIC_MODELS = ("mean", "mean_std")


@dataclass(frozen=True)
class C2Rules:
    """The thresholds of C2's rule (see the module docstring)."""

    ev_threshold: float = C2_EV_THRESHOLD
    iso_share: float = C2_ISO_SHARE
    informative_gap: float = C2_INFORMATIVE_GAP
    far_below: float = C2_FAR_BELOW_FACTOR

    def describe(self) -> str:
        return f"EV >= {self.ev_threshold:.1%}, <= {self.iso_share:g} x isotropic, {self.far_below:g}x below"


C2_RULES = C2Rules()


def reaches_below(ours: Crossing, control: Crossing) -> bool:
    """Whether the range `ours` ends below the range `control`, beyond both uncertainties (`Crossing.upper` of ours
    below `Crossing.lower` of the control); a range that ends nowhere reaches below nothing, and every range that
    ends reaches below one that never starts."""
    if ours.sigma is None or ours.status == "never":
        return False
    if control.sigma is None or control.status == "never":
        return True
    return control.status != "below" and ours.upper is not None and control.lower is not None and \
        ours.upper < control.lower


@dataclass(frozen=True)
class C2Level:
    """One noise level: the Gaussian's residual against the isotropic and the best model's."""

    sigma: float
    gaussian: float
    isotropic: float  # the better of mean and mean_std
    best: float  # the smallest residual of any model in the table
    best_model: str
    informative: bool
    explains_nearly_all: bool  # (a)
    beats_isotropic: bool  # (b)
    gaussian_se: float = float("nan")  # standard errors of the two residuals (NaN: unknown)
    isotropic_se: float = float("nan")

    @property
    def explains(self) -> bool:
        return self.explains_nearly_all and self.beats_isotropic


@dataclass(frozen=True)
class C2Verdict:
    """Claim C2 judged on one probe set and one EV column."""

    probe_set: str
    column: str
    step: int | None
    naive_scale: float  # sqrt(tr Sigma)
    levels: tuple[C2Level, ...]
    gaussian_range: Crossing  # down to where the Gaussian explains the score (informative levels)
    crossings: dict[str, Crossing]  # per model: where its residual first exceeds 1 - C2_EV_THRESHOLD
    ideal_range: Crossing | None = None  # where the training-set score itself stops being 99% Gaussian
    rules: C2Rules = field(default_factory=C2Rules)

    @property
    def isotropic_range(self) -> Crossing:
        """The trivial control: down to where the better isotropic model alone explains the score (its 99% crossing,
        the one that reaches lower)."""
        found = [self.crossings[m] for m in ISOTROPIC_MODELS if m in self.crossings]
        reached = [c for c in found if c.sigma is not None]
        return min(reached, key=lambda c: c.sigma) if reached else (found[0] if found else Crossing(None, "never"))

    @property
    def beyond_isotropic(self) -> bool:
        """Whether the Gaussian's range reaches below the isotropic control's, beyond both uncertainties."""
        return reaches_below(self.gaussian_range, self.isotropic_range)

    @property
    def beyond_data(self) -> bool | None:
        """Whether the network stays Gaussian further down than the training set's own score does (its upper bound
        below the data's lower bound); None without the data's range."""
        return None if self.ideal_range is None else reaches_below(self.gaussian_range, self.ideal_range)

    @property
    def sigma_gaussian(self) -> float | None:
        return self.gaussian_range.sigma

    @property
    def judged(self) -> tuple[float, ...]:
        return tuple(lv.sigma for lv in self.levels if lv.informative)

    @property
    def outcome(self) -> str:
        sigma = self.gaussian_range.sigma
        if self.gaussian_range.status == "never" or sigma is None or sigma >= self.naive_scale:
            return NOT_REPRODUCED
        if not self.beyond_isotropic:
            return NOT_INFORMATIVE
        return REPRODUCED if self.gaussian_range.upper * self.rules.far_below <= self.naive_scale else PARTLY

    @property
    def holds(self) -> bool:
        return self.outcome == REPRODUCED

    def report(self) -> str:
        step = "" if self.step is None else f", network at step {self.step}"
        rules = self.rules
        lines = [f"C2: the learned score is Gaussian far below the naive scale ({self.column}, "
                 f"{self.probe_set} probes{step})",
                 f"  the Gaussian explains the score at sigma where 1 - EV <= {1 - rules.ev_threshold:g} and <= "
                 f"{rules.iso_share:g} x the best isotropic model's; judged where the isotropic residual is > "
                 f"{rules.informative_gap:g} x the best model's",
                 f"  {'sigma':>6} {'1-EV gauss':>10} {'isotropic':>10} {'best model':>21} {'judged':>6} "
                 f"{'<= 1%':>5} {'beats iso':>9}"]
        for lv in self.levels:
            lines.append(f"  {lv.sigma:>6g} {lv.gaussian:>10.2e} {lv.isotropic:>10.2e} "
                         f"{f'{lv.best:.2e} ({lv.best_model})':>21} {yes(lv.informative):>6} "
                         f"{yes(lv.explains_nearly_all):>5} {yes(lv.beats_isotropic):>9}")
        lines.append(f"  sigma at which each model's residual first exceeds {1 - rules.ev_threshold:g} "
                     "(walking down; [2-se interval]):")
        for name, crossing in self.crossings.items():
            lines.append(f"    {name:<18} {crossing.describe()}")
        naive = self.naive_scale
        rng = self.gaussian_range
        if rng.status == "never":
            lines.append("  the Gaussian explains the score at no judged level")
        else:
            lines.append(f"  the Gaussian explains the score down to sigma = {rng.describe()}: "
                         f"{naive / rng.sigma:.1f}x below sqrt(tr Sigma) = {naive:.1f}")
        lines.append(f"  control: the isotropic models alone explain >= {rules.ev_threshold:.1%} down to sigma = "
                     f"{self.isotropic_range.describe()}; the Gaussian reaches beyond it: {yes(self.beyond_isotropic)}")
        if self.ideal_range is not None:
            lines.append(f"  the training-set score itself is >= {rules.ev_threshold:.1%} Gaussian down to sigma = "
                         f"{self.ideal_range.describe()}; the network stays Gaussian further down: "
                         f"{yes(self.beyond_data)}")
        upper = self.gaussian_range.upper
        lines.append(f"  at least {rules.far_below:g}x below sqrt(tr Sigma): "
                     f"{yes(upper is not None and upper * rules.far_below <= naive)}")
        lines.append(verdict_line("C2", self.outcome))
        return "\n".join(lines)


def _level(sigma: float, resid: dict[str, pd.DataFrame], rules: C2Rules = C2_RULES) -> C2Level:
    def r(name):
        return float(resid[name].loc[sigma, "residual"])

    def se(name):
        return float(resid[name].loc[sigma, "se"])

    iso = min((m for m in ISOTROPIC_MODELS if m in resid and sigma in resid[m].index), key=r)
    available = {name: r(name) for name, frame in resid.items() if sigma in frame.index}
    best_model = min(available, key=available.get)
    gap = r(iso) - rules.informative_gap * r(best_model)
    noise = 2 * difference_se(se(iso), rules.informative_gap * se(best_model))
    informative = bool(gap > (noise if np.isfinite(noise) else 0.0))
    return C2Level(sigma, r("gaussian"), r(iso), r(best_model), best_model, informative,
                   r("gaussian") <= 1 - rules.ev_threshold, r("gaussian") <= rules.iso_share * r(iso),
                   se("gaussian"), se(iso))


def _margins(gaussian: np.ndarray, isotropic: np.ndarray, rules: C2Rules = C2_RULES) -> tuple[np.ndarray, np.ndarray]:
    """Per level, log(r_G / 0.01) for (a) and log(r_G / (0.5 r_iso)) for (b): <= 0 where each holds."""
    return np.log(gaussian / (1 - rules.ev_threshold)), np.log(gaussian / (rules.iso_share * isotropic))


def gaussian_range(levels: list[C2Level], rules: C2Rules = C2_RULES) -> Crossing:
    """Down to which sigma the Gaussian explains the score at every informative level above it.

    With standard errors, the interval comes from moving the Gaussian's residual by -/+ 2 se and the
    isotropic one by +/- 2 se (the optimistic and the pessimistic reading)."""
    judged = [lv for lv in levels if lv.informative]
    if not judged:
        return Crossing(None, "never")
    sigmas = [lv.sigma for lv in judged]
    g, iso = (np.array([getattr(lv, name) for lv in judged]) for name in ("gaussian", "isotropic"))
    sigma, status = margin_crossing(sigmas, *_margins(g, iso, rules))
    around = bracket(sigmas, sigma, status)
    se_g, se_iso = (np.array([getattr(lv, name) for lv in judged]) for name in ("gaussian_se", "isotropic_se"))
    if status != "inside" or not (np.isfinite(se_g).all() and np.isfinite(se_iso).all()):
        return Crossing(sigma, status, bracket=around)
    high, low = (margin_crossing(sigmas, *_margins(np.clip(g + sign * 2 * se_g, 1e-300, None),
                                                   np.clip(iso - sign * 2 * se_iso, 1e-300, None), rules))[0]
                 for sign in (+1, -1))  # +1: pessimistic (Gaussian worse, isotropic better) -> fails higher up
    return Crossing(sigma, status, low=low, high=np.inf if high is None else high, bracket=around)


def require_isotropic_at(resid: dict[str, pd.DataFrame], sigmas, probe_set: str) -> None:
    """Every noise level of the Gaussian has an isotropic model to be compared with (TableError naming the first
    level without one)."""
    for sigma in sigmas:
        if not any(m in resid and sigma in resid[m].index for m in ISOTROPIC_MODELS):
            raise TableError(f"C2: the Gaussian has a row at sigma = {sigma:g} ({probe_set} probes) and no isotropic "
                             f"model does; expected a row of mean or mean_std at every sigma of the Gaussian")


def c2_verdict(table: pd.DataFrame, naive_scale: float, probe_set: str = "train", column: str = "St_EV",
               ideal_range: Crossing | pd.DataFrame | None = None, rules: C2Rules = C2_RULES) -> C2Verdict:
    """Judge C2 from a linearity table at its last step (see the module docstring for the rule).

    Needs the models `gaussian` and at least one of `mean`, `mean_std`; every other model in the table
    enters the "best model" of the informativeness test and gets its own 99% crossing. `ideal_range` is the data's
    own range: a Crossing, or the Gaussian's residual curve against the training-set score (`residuals` of the
    training set's own EV table), whose crossing is then taken at `rules.ev_threshold`."""
    naive_scale = positive_finite(naive_scale, "C2: the naive scale sqrt(tr Sigma)")
    if isinstance(ideal_range, pd.DataFrame):
        ideal_range = threshold_crossing(ideal_range, 1 - rules.ev_threshold)
    validate_linearity(table, column, claim="C2")
    require(table, columns=(column,), models=("gaussian",), claim="C2")
    present = set(table["model"].astype(str))
    if not present & set(ISOTROPIC_MODELS):
        raise TableError("C2: the table lacks models mean and mean_std (at least one isotropic model is needed)")
    rows = select(table, probe_set)
    require(rows, models=("gaussian",), claim=f"C2 ({probe_set} probes, last step)")
    models = sorted(dict.fromkeys(rows["model"].astype(str)), key=model_order)
    resid = {name: residuals(rows, name, column) for name in models}
    sigmas = sorted(resid["gaussian"].index, reverse=True)
    require_isotropic_at(resid, sigmas, probe_set)
    levels = [_level(float(s), resid, rules) for s in sigmas]
    crossings = {name: threshold_crossing(resid[name], 1 - rules.ev_threshold) for name in models}
    step = int(rows["step"].iloc[0]) if "step" in rows.columns and len(rows) else None
    return C2Verdict(probe_set, column, step, float(naive_scale), tuple(levels), gaussian_range(levels, rules),
                     crossings, ideal_range, rules)

"""Three findings about the denoiser's per-mode gains (issue 29, beyond the paper), with rules fixed before any
network's numbers were seen. Each returns HOLDS, PARTLY HOLDS, DOES NOT HOLD or NOT INFORMATIVE (the last with
the meaning of `lib.verdicts.common.NOT_INFORMATIVE`: the trivial control does as well, or the data cannot tell).
The thresholds are the module's constants, gathered in the frozen `GainRules`.

(a) Across noise (`across_noise_finding`, one checkpoint's `gain_table`). Mode k's gain departs from a reference
    gain g (the Gaussian's lambda_k / (lambda_k + sigma^2), or the isotropic control's one v / (v + sigma^2))
    when |gain_mean - g| > max(DEPARTURE_SPREAD * gain_std, GAIN_TOLERANCE): beyond the spread over probes and
    beyond 0.05 in gain. At a level the Gaussian holds when no judged mode departs from it; the level is
    informative when some judged mode departs from the isotropic gain (there the test can tell a per-mode gain
    from a constant one). Judged modes: the top JUDGED_TOP_MODES (`max_mode`; None: every probed mode). For
    them both models' gains are ~1 at low noise, so a low level is informative only where the network leaves
    both: there a departure counts, holding cannot. Walking down the informative levels from the top, the
    Gaussian holds down to the last level of its first unbroken run (`holds_down_to`) and departs at the next
    (`departs_at`). NOT INFORMATIVE: no informative level; DOES NOT HOLD: it holds at no informative level;
    HOLDS: its run covers at least MIN_HOLDING_LEVELS levels and it holds nowhere below its departure; PARTLY
    HOLDS otherwise.
(b) Across training (`across_training_finding`, gain tables of several checkpoints): each mode's learning step
    (`gain_steps.learning_steps`: within 10% of its Gaussian gain beyond 2 standard errors, at the level nearest
    sqrt(lambda_k)), and the log-log slope of that step against lambda_k with a bootstrap interval (the steps
    drawn within their brackets). High-variance modes are learned first when the slope is negative beyond its
    uncertainty. The trivial control is a constant learning time (slope 0): NOT INFORMATIVE when the interval
    contains 0, when fewer than MIN_FITTED_MODES modes have a bracketed learning step, or when their lambdas
    span less than MIN_LAMBDA_DECADES; DOES NOT HOLD when the interval lies above 0 (low-variance modes first);
    HOLDS when it lies below 0 and at least FITTED_SHARE of the probed modes were fitted; PARTLY HOLDS when it
    lies below 0 but fewer were (the rest never learned, or learned too early to bracket). Beside it, whether
    the interval contains -1: the prediction of a follow-up by the paper's first author (Wang & Pehlevan,
    arXiv:2503.03206: learning time ~ 1/lambda_k), not a claim of this paper (arXiv:2412.09726), and not part
    of the outcome.
(c) Feature emergence on the network (`emergence_finding`, a `gain_steps.emergence_table` of its trajectories):
    the half-decided sigma (pooled, notebook 01's definition) tracks sqrt(lambda_k) when the log-log slope of
    sigma_half on sqrt(lambda_k) lies within EMERGENCE_SLOPE_TOLERANCE of 1, its interval above
    EMERGENCE_MIN_SLOPE, and the median ratio sigma_half / sqrt(lambda_k) within a factor
    EMERGENCE_RATIO_FACTOR of 1: HOLDS. PARTLY HOLDS: the interval lies above EMERGENCE_MIN_SLOPE (features
    with more variance are decided earlier, materially so) but the slope or the ratio is off. DOES NOT HOLD
    otherwise. NOT INFORMATIVE: fewer than MIN_FITTED_MODES decided modes, a span under MIN_LAMBDA_DECADES, or
    the control (the isotropic model's trajectories, every feature decided at sqrt(v): slope 0) HOLDS too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.analysis.gain_steps import LEARNED_TOLERANCE, LEARNED_Z, N_BOOTSTRAP, LogLogFit, learning_steps, loglog_fit

HOLDS = "HOLDS"
PARTLY = "PARTLY HOLDS"
DOES_NOT_HOLD = "DOES NOT HOLD"
NOT_INFORMATIVE = "NOT INFORMATIVE"  # the word of lib.verdicts.common (analysis may not import verdicts)

#: (a) a gain departs beyond this many probe standard deviations ...
DEPARTURE_SPREAD = 2.0
#: ... and beyond this absolute gap in gain (gains lie in [0, 1]) ...
GAIN_TOLERANCE = 0.05
#: ... and the Gaussian must hold on at least this many informative levels from the top; judged on the top modes.
MIN_HOLDING_LEVELS = 2
JUDGED_TOP_MODES = 10
#: (b, c) at least this many fitted modes, spanning at least this many decades of lambda ...
MIN_FITTED_MODES = 5
MIN_LAMBDA_DECADES = 1.0
#: (b) ... and at least this share of the probed modes fitted for a full HOLDS.
FITTED_SHARE = 0.5
#: The follow-up's prediction for the slope of log(learning step) on log(lambda) (Wang & Pehlevan 2025).
PREDICTED_LEARNING_SLOPE = -1.0
#: (c) the slope of log sigma_half on log sqrt(lambda) within this of 1, the median ratio within this factor of 1.
EMERGENCE_SLOPE_TOLERANCE = 0.25
EMERGENCE_RATIO_FACTOR = 2.0
#: (c) below this slope the order of emergence is too weak to count even as PARTLY (the isotropic control: 0).
EMERGENCE_MIN_SLOPE = 0.25


@dataclass(frozen=True)
class GainRules:
    """The thresholds of the three findings (see the module docstring)."""

    departure_spread: float = DEPARTURE_SPREAD
    gain_tolerance: float = GAIN_TOLERANCE
    min_holding_levels: int = MIN_HOLDING_LEVELS
    max_mode: int | None = JUDGED_TOP_MODES
    learned_tolerance: float = LEARNED_TOLERANCE
    learned_z: float = LEARNED_Z
    min_fitted_modes: int = MIN_FITTED_MODES
    min_lambda_decades: float = MIN_LAMBDA_DECADES
    fitted_share: float = FITTED_SHARE
    emergence_slope_tolerance: float = EMERGENCE_SLOPE_TOLERANCE
    emergence_ratio_factor: float = EMERGENCE_RATIO_FACTOR
    emergence_min_slope: float = EMERGENCE_MIN_SLOPE
    n_bootstrap: int = N_BOOTSTRAP


GAIN_RULES = GainRules()


# --------------------------------------------------------------------------- (a) across noise


@dataclass(frozen=True)
class AcrossNoiseFinding:
    outcome: str
    levels: pd.DataFrame  # per sigma: errors of both models, whether each holds, informative
    holds_down_to: float | None  # lowest level of the Gaussian's first run of informative levels
    departs_at: float | None  # the next informative level, where it departs (None: it never does)
    rules: GainRules = field(default_factory=GainRules)

    def describe(self) -> str:
        if self.holds_down_to is None:
            return f"{self.outcome}: the Gaussian's gains hold at no informative level"
        below = "at no informative level below" if self.departs_at is None else f"departing at {self.departs_at:g}"
        return (f"{self.outcome}: the gains follow the Gaussian's down to sigma = {self.holds_down_to:g}, "
                f"{below}")


def _departs(rows: pd.DataFrame, reference: str, rules: GainRules) -> np.ndarray:
    gap = np.abs(rows["gain_mean"].to_numpy(dtype=np.float64) - rows[reference].to_numpy(dtype=np.float64))
    allowed = np.maximum(rules.departure_spread * rows["gain_std"].to_numpy(dtype=np.float64), rules.gain_tolerance)
    return ~(gap <= allowed)  # NaN departs


def across_noise_finding(gains: pd.DataFrame, rules: GainRules = GAIN_RULES) -> AcrossNoiseFinding:
    """Finding (a) on one checkpoint's gain table (the last step when it holds several)."""
    rows = gains[gains["step"] == gains["step"].max()] if "step" in gains.columns else gains
    if rules.max_mode is not None:
        rows = rows[rows["k"] <= rules.max_mode]
    if rows.empty:
        raise ValueError("no gains to judge (check max_mode and the table's k column)")
    rows = rows.assign(dep_g=_departs(rows, "gaussian_gain", rules), dep_i=_departs(rows, "isotropic_gain", rules),
                       err_g=(rows["gain_mean"] - rows["gaussian_gain"]).abs(),
                       err_i=(rows["gain_mean"] - rows["isotropic_gain"]).abs())
    levels = rows.groupby("sigma").agg(gaussian_error=("err_g", "mean"), isotropic_error=("err_i", "mean"),
                                       gaussian_departs=("dep_g", "any"), isotropic_departs=("dep_i", "any"))
    levels = levels.sort_index(ascending=False).reset_index()
    levels["gaussian_holds"] = ~levels["gaussian_departs"]
    levels["informative"] = levels["isotropic_departs"]
    judged = levels[levels["informative"]]
    holds = judged["gaussian_holds"].to_numpy(dtype=bool)
    run = int(np.argmin(holds)) if not holds.all() else len(holds)  # 0 when nothing is judged
    down_to = float(judged["sigma"].iloc[run - 1]) if run else None
    departs = float(judged["sigma"].iloc[run]) if run < len(holds) else None
    if judged.empty:
        outcome = NOT_INFORMATIVE
    elif not holds.any():
        outcome = DOES_NOT_HOLD
    elif run >= rules.min_holding_levels and holds.sum() == run:
        outcome = HOLDS
    else:
        outcome = PARTLY
    return AcrossNoiseFinding(outcome, levels, down_to, departs, rules)


# --------------------------------------------------------------------------- (b) across training


@dataclass(frozen=True)
class AcrossTrainingFinding:
    outcome: str
    steps: pd.DataFrame  # `learning_steps`
    fit: LogLogFit | None  # log step on log lambda, over the learned modes
    rules: GainRules = field(default_factory=GainRules)

    @property
    def matches_prediction(self) -> bool | None:
        """Whether the slope's interval contains -1 (Wang & Pehlevan's prediction, not this paper's claim)."""
        return None if self.fit is None else self.fit.contains(PREDICTED_LEARNING_SLOPE)

    def describe(self) -> str:
        if self.fit is None:
            return f"{self.outcome}: too few modes with a bracketed learning step to fit a slope"
        f = self.fit
        return (f"{self.outcome}: log(step) vs log(lambda) slope {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}] over "
                f"{f.n} modes (predicted by Wang & Pehlevan 2025: {PREDICTED_LEARNING_SLOPE:g})")


def _span_decades(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.log10(v.max() / v.min())) if len(v) and v.min() > 0 else 0.0


def across_training_finding(gains_by_step: pd.DataFrame, sigma: float | None = None,
                            rules: GainRules = GAIN_RULES) -> AcrossTrainingFinding:
    """Finding (b) on gain tables of several checkpoints (one `step` per checkpoint)."""
    steps = learning_steps(gains_by_step, sigma, rules.learned_tolerance, rules.learned_z)
    fitted = steps[steps["status"] == "learned"]
    if len(fitted) < max(rules.min_fitted_modes, 2) or _span_decades(fitted["lambda"]) < rules.min_lambda_decades:
        return AcrossTrainingFinding(NOT_INFORMATIVE, steps, None, rules)
    fit = loglog_fit(fitted["lambda"], fitted["step"], y_low=fitted["step_before"], n_bootstrap=rules.n_bootstrap)
    if not (fit.ci_high < 0 or fit.ci_low > 0):
        outcome = NOT_INFORMATIVE  # a constant learning time fits as well
    elif fit.ci_low > 0:
        outcome = DOES_NOT_HOLD
    else:
        outcome = HOLDS if len(fitted) >= rules.fitted_share * len(steps) else PARTLY
    return AcrossTrainingFinding(outcome, steps, fit, rules)


# --------------------------------------------------------------------------- (c) feature emergence


@dataclass(frozen=True)
class EmergenceFinding:
    outcome: str
    table: pd.DataFrame  # `emergence_table`
    fit: LogLogFit | None  # log sigma_half on log sqrt(lambda)
    median_ratio: float  # median of sigma_half / sqrt(lambda_k)
    control_outcome: str | None = None
    rules: GainRules = field(default_factory=GainRules)

    def describe(self) -> str:
        if self.fit is None:
            return f"{self.outcome}: too few features decided within the trajectory"
        f = self.fit
        control = "" if self.control_outcome is None else f"; isotropic control: {self.control_outcome}"
        return (f"{self.outcome}: sigma_half ~ sqrt(lambda)^{f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}], median "
                f"sigma_half / sqrt(lambda) = {self.median_ratio:.2f} over {f.n} modes{control}")


def emergence_finding(table: pd.DataFrame, control: pd.DataFrame | None = None,
                      rules: GainRules = GAIN_RULES) -> EmergenceFinding:
    """Finding (c) on an `emergence_table` of the network's trajectories; `control` is the isotropic model's table
    (judged by the same rule: if it HOLDS too, the network's finding is NOT INFORMATIVE)."""
    control_outcome = None if control is None else emergence_finding(control, None, rules).outcome
    decided = table[np.isfinite(table["sigma_half"].to_numpy(dtype=np.float64))]
    if len(decided) < max(rules.min_fitted_modes, 2) or _span_decades(decided["lambda"]) < rules.min_lambda_decades:
        return EmergenceFinding(NOT_INFORMATIVE, table, None, math.nan, control_outcome, rules)
    fit = loglog_fit(decided["sqrt_lambda"], decided["sigma_half"], n_bootstrap=rules.n_bootstrap)
    ratio = float(np.median(decided["sigma_half"] / decided["sqrt_lambda"]))
    factor, ordered = rules.emergence_ratio_factor, fit.ci_low > rules.emergence_min_slope
    if control_outcome == HOLDS:
        outcome = NOT_INFORMATIVE
    elif ordered and abs(fit.slope - 1) <= rules.emergence_slope_tolerance and 1 / factor <= ratio <= factor:
        outcome = HOLDS
    else:
        outcome = PARTLY if ordered else DOES_NOT_HOLD
    return EmergenceFinding(outcome, table, fit, ratio, control_outcome, rules)

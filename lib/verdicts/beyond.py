"""The beyond-the-paper findings of issue 29 as scorecard rows (`Finding`), claims G1-G3: not claims of Wang &
Vastola (arXiv:2412.09726) but questions their Gaussian picture raises, judged by the rules of
`lib.analysis.gain_findings` (fixed before any network's numbers were seen), in that module's words (HOLDS,
PARTLY HOLDS, DOES NOT HOLD, NOT INFORMATIVE). `lib.verdicts.scorecard` keeps them apart from C1-C6: `read` leaves
them out unless asked (`beyond=True`), and its Markdown puts them under a heading row of their own.

    G1  across noise (notebook 03): down to which sigma the final network's per-mode gains follow the Gaussian's
        lambda_k / (lambda_k + sigma^2), on held-out probes; control: the isotropic model's one gain
    G2  across training (notebook 04): the log-log slope of each mode's learning step on lambda_k; control: a
        constant learning time (slope 0); the follow-up's prediction -1 (Wang & Pehlevan, arXiv:2503.03206) is
        named in the finding, not used by the rule
    G3  feature emergence (notebook 06): the slope of the half-decided sigma on sqrt(lambda_k) along the network's
        own Heun trajectories; control: the isotropic closed form (slope 0)
"""

from __future__ import annotations

import math

import numpy as np

from lib.analysis.gain_findings import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_INFORMATIVE,
    PARTLY,
    PREDICTED_LEARNING_SLOPE,
    AcrossNoiseFinding,
    AcrossTrainingFinding,
    EmergenceFinding,
)
from lib.verdicts.findings import NAN, Finding

CLAIMS = ("G1", "G2", "G3")
OUTCOMES = (HOLDS, PARTLY, DOES_NOT_HOLD, NOT_INFORMATIVE)
HEADING = "Beyond the paper"
TITLES = {
    "G1": "per-mode gains follow the Gaussian's",
    "G2": "high-variance modes learned first",
    "G3": "features decided at σ ≈ √λ_k on the network",
}
PASSES = {
    "G1": "lower passes: the Gaussian's gains hold further down",
    "G2": "below 0 passes: high-variance modes first",
    "G3": "near 1 passes (±0.25)",
}


def _or_nan(value) -> float:
    return NAN if value is None or not math.isfinite(float(value)) else float(value)


def isotropic_down_to(finding: AcrossNoiseFinding) -> float | None:
    """Walking down every level from the top, the last level of the first unbroken run where no judged mode departs
    from the isotropic model's gain (the control of G1; None when it departs at the top level)."""
    departs = finding.levels["isotropic_departs"].to_numpy(dtype=bool)
    run = int(np.argmax(departs)) if departs.any() else len(departs)
    return float(finding.levels["sigma"].iloc[run - 1]) if run else None


def _run_length(finding: AcrossNoiseFinding) -> int:
    judged = finding.levels[finding.levels["informative"]]
    holds = judged["gaussian_holds"].to_numpy(dtype=bool)
    return int(np.argmin(holds)) if not holds.all() else len(holds)


def g1_findings(network: AcrossNoiseFinding, training_set: AcrossNoiseFinding | None = None) -> list[Finding]:
    """G1: the network's gains (held-out probes) follow the Gaussian's down to sigma (headline), how many
    informative levels that run covers, and the training-set score's own run (the memorising reference)."""
    rules = network.rules
    control, iso = "the isotropic model's gain", _or_nan(isotropic_down_to(network))
    rows = [
        Finding("G1", f"lowest σ down to which the network's gains (top {rules.max_mode} modes, held-out probes) "
                f"stay within max({rules.departure_spread:g} sd, {rules.gain_tolerance:g}) of λ/(λ+σ²)",
                network.outcome, _or_nan(network.holds_down_to), "σ", headline=True, label="network",
                control=control, control_value=iso),
        Finding("G1", "informative levels the network's Gaussian run covers, from the top", network.outcome,
                float(_run_length(network)), "levels", threshold=float(rules.min_holding_levels),
                label="levels held"),
    ]
    if training_set is not None:
        rows.append(Finding("G1", "the same for the training-set score (the memorising reference)",
                            training_set.outcome, _or_nan(training_set.holds_down_to), "σ",
                            label="training-set score", control=control,
                            control_value=_or_nan(isotropic_down_to(training_set))))
    return rows


def g2_findings(finding: AcrossTrainingFinding, warmup: str = "") -> list[Finding]:
    """G2: the slope of log(learning step) on log(lambda_k) with its bootstrap interval (headline; the rule's
    threshold 0), and the share of probed modes with a bracketed learning step."""
    fit, steps = finding.fit, finding.steps
    share = 100.0 * float((steps["status"] == "learned").mean()) if len(steps) else NAN
    extra = f"; {warmup}" if warmup else ""
    return [
        Finding("G2", f"slope of log(learning step) on log λ_k (Wang & Pehlevan, arXiv:2503.03206, predict "
                f"{PREDICTED_LEARNING_SLOPE:g}; not a claim of this paper){extra}", finding.outcome,
                NAN if fit is None else fit.slope, "log-log slope",
                ours_low=NAN if fit is None else fit.ci_low, ours_high=NAN if fit is None else fit.ci_high,
                threshold=0.0, headline=True, label="learning step vs λ",
                control="a constant learning time", control_value=0.0),
        Finding("G2", "probed modes with a bracketed learning step", finding.outcome, share, "% of probed modes",
                threshold=100.0 * finding.rules.fitted_share, label="modes fitted"),
    ]


def g3_findings(finding: EmergenceFinding, control: EmergenceFinding | None = None) -> list[Finding]:
    """G3: the slope of log sigma_half on log sqrt(lambda_k) along the network's trajectories (headline; the
    rule's threshold 1), beside the isotropic closed form's; the median ratio sigma_half / sqrt(lambda_k)."""
    fit = finding.fit
    cfit = None if control is None else control.fit
    return [
        Finding("G3", "slope of log σ½ (half of a feature's variance decided) on log √λ_k, network's Heun "
                "trajectories", finding.outcome, NAN if fit is None else fit.slope, "log-log slope",
                ours_low=NAN if fit is None else fit.ci_low, ours_high=NAN if fit is None else fit.ci_high,
                threshold=1.0, headline=True, label="σ½ vs √λ",
                control="the isotropic closed form", control_value=NAN if cfit is None else cfit.slope),
        Finding("G3", "median σ½ / √λ_k over the decided features", finding.outcome, _or_nan(finding.median_ratio),
                "ratio", threshold=1.0, label="σ½ / √λ",
                control="the isotropic closed form", control_value=NAN if control is None
                else _or_nan(control.median_ratio)),
    ]


def claim_outcome(findings: list[Finding]) -> str:
    """A beyond-the-paper claim's verdict: its headline finding's (the rule gives one outcome per finding)."""
    heads = [f for f in findings if f.headline] or findings
    return heads[0].verdict if heads else NOT_INFORMATIVE

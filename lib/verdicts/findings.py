"""Each claim's findings for the scorecard: what was measured, our number beside the paper's, and the verdict.

The builders (`c1_findings` ... `c6_findings`) take the verdict objects the notebooks print, so every number
in the scorecard is the one the notebook's verdict was computed from. The paper's numbers are computed from
the authors' tables by the same rule, or quoted from the paper's text (`source` says which).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib.verdicts.closed_form import FAR_FIELD_SLOPE, IVP_TOLERANCE, C1Verdict
from lib.verdicts.common import NOT_REPRODUCED, PARTLY, REPRODUCED
from lib.verdicts.dynamics import C3Verdict
from lib.verdicts.linearity import C2_EV_THRESHOLD, C2_FAR_BELOW_FACTOR, C2Verdict
from lib.verdicts.mixtures import C4_COARSE_MAX_K, C4_LOW_BAND_MAX, C4Verdict
from lib.verdicts.teleportation import C6_PAPER_RANGE, C6Row, C6Verdict
from lib.verdicts.trajectory import C5_RELATIVE_TOLERANCE, C5_REQUIRED_SIGMA, C5Field, C5Verdict

NAN = float("nan")
PROBE_WORDS = {"train": "training probes", "test": "held-out probes"}
#: What each claim says, in a few words (titles of the summary figure's panels).
CLAIM_TITLES = {
    "C1": "closed-form Gaussian solution",
    "C2": "score Gaussian far below √tr Σ",
    "C3": "Gaussian learned early, then degrades",
    "C4": "coarse mixture, not training set, at low noise",
    "C5": "Gaussian predicts the early trajectory",
    "C6": "teleportation keeps quality",
}
SAMPLER_NAMES = {"heun": "Heun", "dpmpp_2m": "DPM-Solver++(2M)", "unipc": "UniPC"}


@dataclass(frozen=True)
class Finding:
    """One measured finding of a claim, ours beside the paper's."""

    claim: str
    finding: str
    verdict: str
    ours: float
    unit: str
    ours_low: float = NAN
    ours_high: float = NAN
    paper: float = NAN
    paper_low: float = NAN
    paper_high: float = NAN
    threshold: float = NAN
    source: str = ""
    headline: bool = False
    label: str = ""  # a short name for plots (the probe set, the budget, ...)
    control: str = ""  # the trivial alternative that could produce the finding ...
    control_value: float = NAN  # ... and its number in the same unit (the finding counts only where ours beats it)
    robustness: str = ""  # how often the finding's verdict holds over a grid of its thresholds ("14 of 16 settings")


def _pass(flag: bool) -> str:
    return REPRODUCED if flag else NOT_REPRODUCED


def _or_nan(value: float | None) -> float:
    return NAN if value is None or math.isinf(value) else float(value)


def c1_findings(verdict: C1Verdict, ivp_rel_error: float, heun_order: float,
                far_field_slope: float | None = None) -> list[Finding]:
    """C1: the closed form against an adaptive solver, Heun's order against it, the far-field slope."""
    rows = [
        Finding("C1", "Heun's order of convergence to the closed form (theory: 2)", _pass(verdict.heun_second_order),
                heun_order, "order", threshold=2.0, source="theory", headline=True, label="Heun's order"),
        Finding("C1", "closed form against solve_ivp, largest relative error", _pass(verdict.matches_solve_ivp),
                ivp_rel_error, "relative error", threshold=IVP_TOLERANCE),
        Finding("C1", "features decided in order of variance, each at σ ≈ √λ_k",
                _pass(verdict.emergence_follows_variance and verdict.emergence_at_sqrt_lambda),
                float(verdict.emergence_follows_variance and verdict.emergence_at_sqrt_lambda), "yes/no"),
    ]
    if far_field_slope is not None:
        rows.append(Finding("C1", "far field: slope of the training-set score's residual to the Gaussian",
                            _pass(bool(verdict.far_field_first_order)), far_field_slope, "log-log slope",
                            threshold=FAR_FIELD_SLOPE, source="theory"))
    return rows


def c2_findings(ours: dict[str, C2Verdict], paper: C2Verdict | None,
                source: str = "authors' table, final MNIST network") -> list[Finding]:
    """C2: the lowest sigma down to which the Gaussian explains the score, per probe set, and the factor below
    sqrt(tr Sigma); the paper's from their table (`source`: their final MNIST network by default) by the same
    rule, or none (`paper` None: no table of the authors for this dataset)."""
    ev = f"{C2_EV_THRESHOLD:.0%}"
    rows = []
    for probe_set, v in ours.items():
        r = v.gaussian_range
        theirs = paper is not None and probe_set == paper.probe_set
        rows.append(Finding(
            "C2", f"lowest σ where the Gaussian explains ≥ {ev} of the score and beats the isotropic model "
            f"({PROBE_WORDS.get(probe_set, probe_set)})", v.outcome, _or_nan(r.sigma), "σ",
            ours_low=_or_nan(r.low), ours_high=_or_nan(r.high),
            paper=_or_nan(paper.sigma_gaussian) if theirs else NAN,
            threshold=v.naive_scale / C2_FAR_BELOW_FACTOR, source=source if theirs else "",
            headline=probe_set == "train", label=PROBE_WORDS.get(probe_set, probe_set)))
    train = ours.get("train", next(iter(ours.values())))
    r = train.gaussian_range
    if r.sigma:
        rows.append(Finding(
            "C2", f"how far below √tr Σ = {train.naive_scale:.3g} that is ({PROBE_WORDS[train.probe_set]})",
            train.outcome, train.naive_scale / r.sigma, "times below",
            ours_low=train.naive_scale / r.high if r.high and not math.isinf(r.high) else NAN,
            ours_high=train.naive_scale / r.low if r.low else NAN,
            paper=train.naive_scale / paper.sigma_gaussian if paper is not None and paper.sigma_gaussian else NAN,
            threshold=C2_FAR_BELOW_FACTOR, source=source if paper is not None else ""))
    return rows


def _pattern_share(v: C3Verdict) -> float:
    return 100.0 * v.n_pattern / len(v.levels) if v.levels else NAN


def c3_findings(ours: dict[str, C3Verdict], paper: C3Verdict | None, sigma: float = 1.0) -> list[Finding]:
    """C3: the share of judged levels with the learned-early-then-degrades pattern, and the Gaussian fit's rise
    after its best step at one noise level; the paper's from their 25k-step MNIST run (None: not compared, as on
    another dataset)."""
    source = "authors' table, 25k-step MNIST run"
    rows = []
    for probe_set, v in ours.items():
        theirs = paper is not None and probe_set == paper.probe_set
        rows.append(Finding(
            "C3", f"judged noise levels where the Gaussian fit is best early, then degrades while the training-set "
            f"fit improves ({PROBE_WORDS.get(probe_set, probe_set)}; {len(v.levels)} judged)", v.outcome,
            _pattern_share(v), "% of judged levels", paper=_pattern_share(paper) if theirs else NAN, threshold=50.0,
            source=source if theirs else "", headline=probe_set == "train",
            label=PROBE_WORDS.get(probe_set, probe_set)))
    train = ours.get("train", next(iter(ours.values())))
    level = next((lv for lv in train.levels if math.isclose(lv.sigma, sigma)), None)
    theirs = None if paper is None else next((lv for lv in paper.levels if math.isclose(lv.sigma, sigma)), None)
    if level is not None:
        rows.append(Finding(
            "C3", f"rise of the Gaussian residual from its best step (step {level.best_step:,}) to the last, "
            f"σ = {sigma:g} ({PROBE_WORDS[train.probe_set]})", _pass(level.pattern), 100.0 * level.rise,
            "% rise", paper=NAN if theirs is None else 100.0 * theirs.rise, source=source if paper is not None else ""))
    return rows


def _win_share(v: C4Verdict) -> float:
    return 100.0 * v.wins / len(v.judged) if v.judged else NAN


def c4_findings(ours: dict[str, C4Verdict], paper: C4Verdict) -> list[Finding]:
    """C4: the share of low-noise levels at which the best coarse mixture beats the training-set score; the
    paper's evidence is their CIFAR-10 table, judged by the same rule."""
    return [Finding(
        "C4", f"levels σ ≤ {C4_LOW_BAND_MAX:g} where the best coarse mixture (K ≤ {C4_COARSE_MAX_K}, here "
        f"{v.coarse_model}) beats the training-set score ({PROBE_WORDS.get(probe_set, probe_set)})", v.outcome,
        _win_share(v), "% of judged levels", paper=_win_share(paper) if probe_set == paper.probe_set else NAN,
        threshold=100.0, source="authors' table, CIFAR-10 network" if probe_set == paper.probe_set else "",
        headline=probe_set == "train", label=PROBE_WORDS.get(probe_set, probe_set)) for probe_set, v in ours.items()]


def _field_outcome(f: C5Field) -> str:
    return REPRODUCED if f.network_holds else PARTLY if f.network_error_explains else NOT_REPRODUCED


def c5_findings(verdict: C5Verdict) -> list[Finding]:
    """C5: the worst median relative deviation at sigma >= 10 of the network from the Gaussian closed form (state
    and x0_hat), and of the exact training-set trajectory from it (does the Gaussian predict the ideal?)."""
    tol, where = 100.0 * C5_RELATIVE_TOLERANCE, f"σ ≥ {C5_REQUIRED_SIGMA:g}"
    x, x0 = verdict.field("x"), verdict.field("x0_hat")
    return [
        Finding("C5", f"state x_σ: network from the Gaussian closed form, worst median at {where}",
                _field_outcome(x), 100.0 * x.worst_early[0], "% relative deviation", threshold=tol, headline=True,
                label="x_σ: network vs Gaussian"),
        Finding("C5", f"denoised x̂₀: network from the Gaussian closed form, worst median at {where}",
                _field_outcome(x0), 100.0 * x0.worst_early[0], "% relative deviation", threshold=tol,
                label="x̂₀: network vs Gaussian"),
        Finding("C5", f"denoised x̂₀: exact training-set trajectory from the Gaussian, worst median at {where}",
                _pass(x0.ideal_holds), 100.0 * x0.worst_early[2], "% relative deviation", threshold=tol,
                label="x̂₀: training set vs Gaussian"),
    ]


def _coverage_outcome(row: C6Row) -> str:
    return {"all": REPRODUCED, "part": PARTLY}.get(row.coverage, NOT_REPRODUCED)


def c6_findings(verdict: C6Verdict) -> list[Finding]:
    """C6: per sampler and budget, the share of levels the Gaussian jump replaces at no measurable loss (upper
    end of the paired interval within tolerance), against the paper's 15-30%. The headline is the largest
    Heun budget (the paper's main setting), or the first budget."""
    lo, hi = (100.0 * p for p in C6_PAPER_RANGE)
    heun = [r for r in verdict.rows if r.sampler == "heun"]
    headline = max(heun, key=lambda r: r.steps) if heun else (verdict.rows[0] if verdict.rows else None)
    return [Finding(
        "C6", f"{SAMPLER_NAMES.get(r.sampler, r.sampler)}, {r.steps} levels: share replaced by the Gaussian jump "
        "with quality kept",
        _coverage_outcome(r), 100.0 * r.kept_fraction, "% of levels", paper=hi, paper_low=lo, paper_high=hi,
        threshold=lo, source="paper's text: 15-30% of the steps", headline=r is headline,
        label=f"{SAMPLER_NAMES.get(r.sampler, r.sampler)}, N = {r.steps}") for r in verdict.rows]

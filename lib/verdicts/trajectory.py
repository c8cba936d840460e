"""Claim C5: the Gaussian closed form predicts the early part of the network's sampling trajectory.

Judged on relative deviations, rel(a, b) = ||a - b|| / ||b|| per trajectory (median over trajectories), of
three runs from the same noise: the network's Heun trajectory, the Gaussian closed form, and the exact
(training-set score) trajectory, the ideal a perfectly trained network would follow. Their three distances
separate two questions:

- does the Gaussian predict the *ideal* trajectory? (training set vs Gaussian), and
- does the network follow it? (network vs Gaussian, beside network vs training set): where the network is
  far from both references while they agree, the departure is the network's own error, not the Gaussian's.

The trivial control is the isotropic Gaussian's closed form (the mean + std model): where it predicts the network
as well as the full covariance does, agreement with the Gaussian says nothing about the data's covariance. A
field's agreement counts only where the Gaussian is closer to the network than the isotropic closed form for at
least 75% of the trajectories at the lowest sigma >= C5_REQUIRED_SIGMA (the paired lower quartile of the
difference is above 0); otherwise that finding is NOT INFORMATIVE. The tolerance and the required sigma are the
fields of `C5Rules` (defaults: the module's constants; `lib.verdicts.robustness` recomputes the verdict over a
grid of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib.verdicts.common import NOT_INFORMATIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, TableError, combine
from lib.verdicts.common import yes as _yes
from lib.verdicts.schema import TEXT, Column, check_columns, validate

#: C5: a run "predicts" another while the median relative deviation stays below this ...
C5_RELATIVE_TOLERANCE = 0.10
#: ... down to this sigma at least (skipping the first 30% of an 18-step EDM schedule lands at sigma ~ 12.9,
#: so teleportation needs the prediction to hold there).
C5_REQUIRED_SIGMA = 10.0
#: The pair labels of the deviation table (`lib.analysis.trajectories.deviation_rows`).
NETWORK_GAUSSIAN = "network vs Gaussian"
NETWORK_EXACT = "network vs training set"
NETWORK_ISOTROPIC = "network vs isotropic Gaussian"
EXACT_GAUSSIAN = "training set vs Gaussian"
ISOTROPIC_ADVANTAGE = "isotropic minus Gaussian (network)"
DISTANCES = (NETWORK_GAUSSIAN, NETWORK_EXACT, EXACT_GAUSSIAN, NETWORK_ISOTROPIC)
FIELDS = ("x", "x0_hat")
#: What C5 reads from the deviation table (`lib.verdicts.schema`); rel_q25 only on the ISOTROPIC_ADVANTAGE rows.
C5_COLUMNS = (Column("pair", TEXT, meaning="pair name"), Column("field", TEXT, meaning="field name"),
              Column("sigma", low=0, low_open=True, meaning="a noise level"),
              Column("rel_median", meaning="a median relative deviation"),
              Column("rel_q25", missing_ok=True, meaning="a lower quartile"))
FIELD_NAMES = {"x": "state x_sigma", "x0_hat": "denoised x0_hat"}


@dataclass(frozen=True)
class C5Rules:
    """The thresholds of C5's rule (see the module docstring)."""

    tolerance: float = C5_RELATIVE_TOLERANCE
    required_sigma: float = C5_REQUIRED_SIGMA

    def describe(self) -> str:
        return f"tolerance {self.tolerance:.1%} down to sigma = {self.required_sigma:g}"


C5_RULES = C5Rules()


def break_sigma(sigmas, deviation, tolerance: float = C5_RELATIVE_TOLERANCE) -> float | None:
    """The highest sigma at which `deviation` (ordered from the highest sigma down) reaches `tolerance`;
    None when it stays below along the whole trajectory."""
    for sigma, dev in zip(np.asarray(sigmas, dtype=float), np.asarray(deviation, dtype=float), strict=True):
        if not dev < tolerance:
            return float(sigma)
    return None


def _holds(sigma: float | None, rules: C5Rules = C5_RULES) -> bool:
    return sigma is None or sigma < rules.required_sigma


@dataclass(frozen=True)
class C5Field:
    """C5 for one field: where the network leaves the Gaussian, where the ideal trajectory does."""

    field: str
    network_break: float | None  # highest sigma where rel(network, Gaussian) reaches the tolerance
    ideal_break: float | None  # the same for rel(training set, Gaussian)
    network_error_sigmas: tuple[float, ...]  # sigma >= required where the network is off both agreeing references
    worst_early: tuple[float, float, float]  # at sigma >= required, max of rel(net, G), rel(net, T), rel(T, G)
    beats_isotropic: bool | None  # at the lowest sigma >= required: Gaussian closer for >= 75% of trajectories
    control_worst: float = float("nan")  # at sigma >= required, the largest median rel(network, isotropic Gaussian)
    rules: C5Rules = field(default_factory=C5Rules)

    @property
    def network_holds(self) -> bool:
        return _holds(self.network_break, self.rules)

    @property
    def ideal_holds(self) -> bool:
        return _holds(self.ideal_break, self.rules)

    @property
    def outcome(self) -> str:
        """This field's finding: REPRODUCED where the network follows the Gaussian and the Gaussian beats the
        isotropic control, NOT INFORMATIVE where it follows it but the control predicts it as well, PARTLY where
        the departure is the network's own error, NOT REPRODUCED otherwise."""
        if self.network_holds:
            return NOT_INFORMATIVE if self.beats_isotropic is False else REPRODUCED
        return PARTLY if self.network_error_explains else NOT_REPRODUCED

    @property
    def network_error_explains(self) -> bool:
        """The network misses the Gaussian early only where it also misses the ideal trajectory, which the
        Gaussian predicts: its own error."""
        return not self.network_holds and self.ideal_holds and bool(self.network_error_sigmas)


@dataclass(frozen=True)
class C5Verdict:
    """Claim C5 for the state x_sigma and the denoised estimate x0_hat."""

    fields: tuple[C5Field, ...]

    def field(self, name: str) -> C5Field:
        return next(f for f in self.fields if f.field == name)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """The findings' verdicts, each field's (`C5Field.outcome`). Whether the Gaussian predicts the ideal
        (training-set) trajectory is reported beside them, not counted: the claim is about trained networks, and that
        comparison has no trivial control of its own here."""
        return tuple(f.outcome for f in self.fields)

    @property
    def outcome(self) -> str:
        return combine(self.outcomes)

    @property
    def holds(self) -> bool:
        return self.outcome == REPRODUCED

    @property
    def partly(self) -> bool:
        return self.outcome in (REPRODUCED, PARTLY)

    def report(self) -> str:
        tol, req = self.fields[0].rules.tolerance, self.fields[0].rules.required_sigma

        def where(s: float | None) -> str:
            return "never" if s is None else f"from sigma = {s:.3g} down"

        lines = ["C5: the Gaussian solution predicts the early sampling trajectory",
                 f"  rule: median relative deviation ||a - b|| / ||b|| < {tol:.0%} down to sigma = {req:g} "
                 "(teleport range)"]
        for f in self.fields:
            net_g, net_t, t_g = f.worst_early
            lines += [
                f"  {FIELD_NAMES[f.field]}:",
                f"    the ideal (training-set) trajectory leaves the Gaussian {where(f.ideal_break)}; "
                f"Gaussian predicts it down to sigma = {req:g}: {_yes(f.ideal_holds)}",
                f"    the network leaves the Gaussian {where(f.network_break)}; "
                f"predicted down to sigma = {req:g}: {_yes(f.network_holds)}",
                f"    at sigma >= {req:g}, largest deviation: network-Gaussian {net_g:.2%}, network-training set "
                f"{net_t:.2%}, training set-Gaussian {t_g:.2%}",
            ]
            if f.network_error_sigmas:
                lines.append("    the network is off both references while they agree (its own error) at sigma = "
                             + ", ".join(f"{s:.3g}" for s in f.network_error_sigmas))
            if f.beats_isotropic is not None:
                lines.append(f"    control: the isotropic Gaussian's closed form is at most {f.control_worst:.2%} from "
                             f"the network at sigma >= {req:g}; the Gaussian is closer for >= 75% of trajectories "
                             f"at the lowest sigma >= {req:g}: {_yes(f.beats_isotropic)}")
            lines.append(f"    finding: {f.outcome}")
        lines.append(f"verdict: C5 {self.outcome}")
        return "\n".join(lines)


def _series(table, pair: str, field: str):
    rows = table[(table["pair"] == pair) & (table["field"] == field)].sort_values("sigma", ascending=False)
    if rows.empty:
        raise TableError(f"C5: the deviation table has no rows for pair {pair!r}, field {field!r}; expected the pairs "
                         f"{', '.join(DISTANCES[:3])} for each field {', '.join(FIELDS)}")
    return rows


def _judge_field(table, field: str, rules: C5Rules = C5_RULES) -> C5Field:
    ng, nt, tg = (_series(table, p, field) for p in (NETWORK_GAUSSIAN, NETWORK_EXACT, EXACT_GAUSSIAN))
    sig = ng["sigma"].to_numpy(float)
    if not (np.array_equal(sig, nt["sigma"].to_numpy(float)) and np.array_equal(sig, tg["sigma"].to_numpy(float))):
        raise TableError(f"C5: column 'sigma' differs between the pairs of field {field!r} ({len(sig)}, "
                         f"{len(nt)} and {len(tg)} levels); expected the same levels for each pair")
    if not (sig >= rules.required_sigma).any():
        raise TableError(f"C5: column 'sigma' of field {field!r} reaches {sig.max():g} at most; expected levels at "
                         f"sigma >= {rules.required_sigma:g}, where the rule judges the trajectory")
    d_ng, d_nt, d_tg = (s["rel_median"].to_numpy(float) for s in (ng, nt, tg))
    early = sig >= rules.required_sigma
    tol = rules.tolerance
    off_both = early & (d_ng >= tol) & (d_nt >= tol) & (d_tg < tol)
    worst = tuple(float(d[early].max()) if early.any() else float("nan") for d in (d_ng, d_nt, d_tg))
    beats = None
    iso = table[(table["pair"] == ISOTROPIC_ADVANTAGE) & (table["field"] == field)
                & (table["sigma"] >= rules.required_sigma)]
    if not iso.empty:
        beats = bool(iso.sort_values("sigma").iloc[0]["rel_q25"] > 0)
    control = table[(table["pair"] == NETWORK_ISOTROPIC) & (table["field"] == field)
                    & (table["sigma"] >= rules.required_sigma)]
    control_worst = float(control["rel_median"].max()) if len(control) else float("nan")
    return C5Field(field, break_sigma(sig, d_ng, tol), break_sigma(sig, d_tg, tol),
                   tuple(float(s) for s in sig[off_both]), worst, beats, control_worst, rules)


def validate_deviations(table) -> None:
    """The deviation table holds what C5 reads (`C5_COLUMNS`, one row per pair, field and sigma): relative deviations
    >= 0 for the distances, a finite rel_q25 on the ISOTROPIC_ADVANTAGE rows. TableError in one line otherwise."""
    missing = [c.name for c in C5_COLUMNS if c.name not in getattr(table, "columns", ())]
    if missing:
        raise TableError(f"C5: the deviation table lacks the columns {missing}: pass notebook 06's "
                         "data/results/trajectory_deviation.csv (lib.analysis.trajectories.deviation_rows)")
    validate(table, C5_COLUMNS, keys=("pair", "field", "sigma"), claim="C5")
    check_columns(table[table["pair"].isin(DISTANCES)], (Column("rel_median", low=0, meaning="a distance"),), "C5")
    check_columns(table[table["pair"] == ISOTROPIC_ADVANTAGE], (Column("rel_q25", meaning="a lower quartile"),), "C5")


def c5_verdict(table, rules: C5Rules = C5_RULES) -> C5Verdict:
    """Judge C5 from the deviation table (columns pair, field, sigma, rel_median, rel_q25, ...; pairs
    NETWORK_GAUSSIAN, NETWORK_EXACT, EXACT_GAUSSIAN and optionally ISOTROPIC_ADVANTAGE and NETWORK_ISOTROPIC;
    fields x and x0_hat)."""
    validate_deviations(table)
    return C5Verdict(tuple(_judge_field(table, f, rules) for f in FIELDS))

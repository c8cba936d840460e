"""Claim C5: the Gaussian closed form predicts the early part of the network's sampling trajectory.

Judged on relative deviations, rel(a, b) = ||a - b|| / ||b|| per trajectory (median over trajectories), of
three runs from the same noise: the network's Heun trajectory, the Gaussian closed form, and the exact
(training-set score) trajectory, the ideal a perfectly trained network would follow. Their three distances
separate two questions:

- does the Gaussian predict the *ideal* trajectory? (training set vs Gaussian), and
- does the network follow it? (network vs Gaussian, beside network vs training set): where the network is
  far from both references while they agree, the departure is the network's own error, not the Gaussian's.

A trivial alternative is checked too: the isotropic Gaussian's closed form (mean + std model). The full
covariance counts only where it predicts the network better than the isotropic model for most trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.verdicts.common import NOT_REPRODUCED, PARTLY, REPRODUCED
from lib.verdicts.common import yes as _yes

#: C5: a run "predicts" another while the median relative deviation stays below this ...
C5_RELATIVE_TOLERANCE = 0.10
#: ... down to this sigma at least (skipping the first 30% of an 18-step EDM schedule lands at sigma ~ 12.9,
#: so teleportation needs the prediction to hold there).
C5_REQUIRED_SIGMA = 10.0
#: The pair labels of the deviation table (`lib.analysis.trajectories.deviation_rows`).
NETWORK_GAUSSIAN = "network vs Gaussian"
NETWORK_EXACT = "network vs training set"
EXACT_GAUSSIAN = "training set vs Gaussian"
ISOTROPIC_ADVANTAGE = "isotropic minus Gaussian (network)"
FIELDS = ("x", "x0_hat")
FIELD_NAMES = {"x": "state x_sigma", "x0_hat": "denoised x0_hat"}


def break_sigma(sigmas, deviation, tolerance: float = C5_RELATIVE_TOLERANCE) -> float | None:
    """The highest sigma at which `deviation` (ordered from the highest sigma down) reaches `tolerance`;
    None when it stays below along the whole trajectory."""
    for sigma, dev in zip(np.asarray(sigmas, dtype=float), np.asarray(deviation, dtype=float), strict=True):
        if not dev < tolerance:
            return float(sigma)
    return None


def _holds(sigma: float | None) -> bool:
    return sigma is None or sigma < C5_REQUIRED_SIGMA


@dataclass(frozen=True)
class C5Field:
    """C5 for one field: where the network leaves the Gaussian, where the ideal trajectory does."""

    field: str
    network_break: float | None  # highest sigma where rel(network, Gaussian) reaches the tolerance
    ideal_break: float | None  # the same for rel(training set, Gaussian)
    network_error_sigmas: tuple[float, ...]  # sigma >= required where the network is off both agreeing references
    worst_early: tuple[float, float, float]  # at sigma >= required, max of rel(net, G), rel(net, T), rel(T, G)
    beats_isotropic: bool | None  # at the lowest sigma >= required: Gaussian closer for >= 75% of trajectories

    @property
    def network_holds(self) -> bool:
        return _holds(self.network_break)

    @property
    def ideal_holds(self) -> bool:
        return _holds(self.ideal_break)

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
    def holds(self) -> bool:
        return all(f.network_holds for f in self.fields)

    @property
    def partly(self) -> bool:
        return any(f.network_holds or f.network_error_explains for f in self.fields)

    @property
    def outcome(self) -> str:
        return REPRODUCED if self.holds else PARTLY if self.partly else NOT_REPRODUCED

    def report(self) -> str:
        tol, req = C5_RELATIVE_TOLERANCE, C5_REQUIRED_SIGMA

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
                lines.append(f"    closer to the network than the isotropic Gaussian (trivial alternative) for >= 75% "
                             f"of trajectories at the lowest sigma >= {req:g}: {_yes(f.beats_isotropic)}")
        lines.append(f"verdict: C5 {self.outcome}")
        return "\n".join(lines)


def _series(table, pair: str, field: str):
    rows = table[(table["pair"] == pair) & (table["field"] == field)].sort_values("sigma", ascending=False)
    if rows.empty:
        raise ValueError(f"the deviation table has no rows for pair {pair!r}, field {field!r}")
    return rows


def _judge_field(table, field: str) -> C5Field:
    ng, nt, tg = (_series(table, p, field) for p in (NETWORK_GAUSSIAN, NETWORK_EXACT, EXACT_GAUSSIAN))
    sig = ng["sigma"].to_numpy(float)
    if not (np.array_equal(sig, nt["sigma"].to_numpy(float)) and np.array_equal(sig, tg["sigma"].to_numpy(float))):
        raise ValueError(f"the pairs of field {field!r} are not on the same sigmas")
    d_ng, d_nt, d_tg = (s["rel_median"].to_numpy(float) for s in (ng, nt, tg))
    early = sig >= C5_REQUIRED_SIGMA
    tol = C5_RELATIVE_TOLERANCE
    off_both = early & (d_ng >= tol) & (d_nt >= tol) & (d_tg < tol)
    worst = tuple(float(d[early].max()) if early.any() else float("nan") for d in (d_ng, d_nt, d_tg))
    beats = None
    iso = table[(table["pair"] == ISOTROPIC_ADVANTAGE) & (table["field"] == field)
                & (table["sigma"] >= C5_REQUIRED_SIGMA)]
    if not iso.empty:
        beats = bool(iso.sort_values("sigma").iloc[0]["rel_q25"] > 0)
    return C5Field(field, break_sigma(sig, d_ng), break_sigma(sig, d_tg), tuple(float(s) for s in sig[off_both]),
                   worst, beats)


def c5_verdict(table) -> C5Verdict:
    """Judge C5 from the deviation table (columns pair, field, sigma, rel_median, rel_q25, ...; pairs
    NETWORK_GAUSSIAN, NETWORK_EXACT, EXACT_GAUSSIAN and optionally ISOTROPIC_ADVANTAGE; fields x and x0_hat)."""
    missing = [c for c in ("pair", "field", "sigma", "rel_median", "rel_q25") if c not in table.columns]
    if missing:
        raise ValueError(f"the deviation table lacks the columns {missing}: pass notebook 06's "
                         "data/results/trajectory_deviation.csv (lib.analysis.trajectories.deviation_rows)")
    return C5Verdict(tuple(_judge_field(table, f) for f in FIELDS))

"""Verdicts: each claim's check, computed from measured numbers, able to fail, printed by the notebooks.

A verdict's `report()` prints only booleans and coarse categories, so that the same text holds at every
scale (nbval compares the smoke run in CI with the committed default run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib.linearity import gaussian_validity_sigma
from lib.trajectories import prediction_break_sigma

#: C1 thresholds. The closed form must match an adaptive solver to this relative error ...
IVP_TOLERANCE = 1e-6
#: ... Heun's fitted order must lie within this distance of 2 ...
ORDER_TOLERANCE = 0.3
#: ... emergence sigmas must rank like sqrt(lambda_k) (Spearman) and lie within this factor of it ...
EMERGENCE_RANK_CORRELATION = 0.99
EMERGENCE_FACTOR = 1.25
#: ... and the far-field residual of the Gaussian score must fall with the predicted slope.
FAR_FIELD_SLOPE = -3.0
SLOPE_TOLERANCE = 0.3


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the order of a power law y ~ x^slope)."""
    lx = np.log(np.asarray(x, dtype=np.float64))
    ly = np.log(np.asarray(y, dtype=np.float64))
    return float(np.polyfit(lx, ly, 1)[0])


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (Python's round() goes to even: round(2.5) = 2)."""
    return int(np.floor(value + 0.5 + 1e-9))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


@dataclass(frozen=True)
class C1Verdict:
    """Claim C1: the Gaussian PF-ODE has a closed form that matches integration and orders emergence by variance."""

    matches_solve_ivp: bool
    heun_second_order: bool
    emergence_follows_variance: bool
    emergence_at_sqrt_lambda: bool
    far_field_first_order: bool | None = None

    @property
    def holds(self) -> bool:
        checks = [self.matches_solve_ivp, self.heun_second_order, self.emergence_follows_variance,
                  self.emergence_at_sqrt_lambda]
        if self.far_field_first_order is not None:
            checks.append(self.far_field_first_order)
        return all(checks)

    def report(self) -> str:
        checks = [
            (f"closed form = solve_ivp to relative error <= {IVP_TOLERANCE:g}", self.matches_solve_ivp),
            ("Heun converges to the closed form at order 2", self.heun_second_order),
            ("features are decided in order of variance", self.emergence_follows_variance),
            ("feature k is half decided at sigma ~ sqrt(lambda_k)", self.emergence_at_sqrt_lambda),
        ]
        if self.far_field_first_order is not None:
            checks.append(("far field: delta-mixture score = Gaussian to first order", self.far_field_first_order))
        lines = ["C1: closed-form solution of the probability-flow ODE for Gaussian data"]
        lines += [f"  {label:<58} {_yes(flag)}" for label, flag in checks]
        lines.append(f"verdict: C1 {'REPRODUCED' if self.holds else 'NOT REPRODUCED'}")
        return "\n".join(lines)


def c1_verdict(
    ivp_rel_error: float,
    heun_order: float,
    emergence_sigmas: torch.Tensor | np.ndarray,
    eigvals: torch.Tensor | np.ndarray,
    far_field_slope: float | None = None,
) -> C1Verdict:
    """Judge C1 from the measured numbers.

    `emergence_sigmas[k]` is the sigma at which feature k+1 was measured to be half decided, for the
    top K principal components with variances `eigvals[:K]`. Emergence follows variance when the two
    rank alike (Spearman >= 0.99) and every sigma*_k lies within a factor 1.25 of sqrt(lambda_k).
    `far_field_slope` is the fitted log-log slope of ||s_delta - s_gauss|| / ||s_delta|| at high sigma.
    """
    s_star = np.asarray(emergence_sigmas, dtype=np.float64)
    root_lam = np.sqrt(np.asarray(eigvals, dtype=np.float64)[: len(s_star)])
    finite = np.isfinite(s_star).all() and len(s_star) > 1
    ranks_alike = bool(finite and _spearman(s_star, root_lam) >= EMERGENCE_RANK_CORRELATION)
    near = bool(finite and np.abs(np.log(s_star / root_lam)).max() <= np.log(EMERGENCE_FACTOR))
    far = None if far_field_slope is None else bool(abs(far_field_slope - FAR_FIELD_SLOPE) <= SLOPE_TOLERANCE)
    return C1Verdict(
        matches_solve_ivp=bool(ivp_rel_error <= IVP_TOLERANCE),
        heun_second_order=bool(abs(heun_order - 2.0) <= ORDER_TOLERANCE),
        emergence_follows_variance=ranks_alike,
        emergence_at_sqrt_lambda=near,
        far_field_first_order=far,
    )


# --------------------------------------------------------------------------- C2: linearity across noise

#: C2 thresholds: the Gaussian must explain this share of the network's score ...
C2_EV_THRESHOLD = 0.99
#: ... down to a noise level at least this factor below the naive scale sqrt(tr Sigma).
C2_FAR_BELOW_FACTOR = 3.0


@dataclass(frozen=True)
class C2Verdict:
    """Claim C2: the trained score is Gaussian at moderate and high noise, far below sqrt(tr Sigma)."""

    sigma_99: float | None  # lowest sigma down to which the Gaussian explains >= 99% of the network's score
    naive_scale: float  # sqrt(tr Sigma)
    gaussian_beats_isotropic: bool  # the Gaussian explains more than mean + std at every sigma in [1, 10]

    @property
    def far_below_naive_scale(self) -> bool:
        return self.sigma_99 is not None and self.sigma_99 * C2_FAR_BELOW_FACTOR <= self.naive_scale

    @property
    def holds(self) -> bool:
        return self.far_below_naive_scale and self.gaussian_beats_isotropic

    def report(self) -> str:
        if self.sigma_99 is None:
            where, ratio = "at no probed sigma (not even the highest)", ""
        else:
            where, ratio = f"down to sigma = {self.sigma_99:g}", f" ({self.naive_scale / self.sigma_99:.1f}x below it)"
        lines = [
            "C2: the learned score is Gaussian far below the naive validity scale",
            f"  the Gaussian explains >= {C2_EV_THRESHOLD:.0%} of the network's score {where}",
            f"  naive validity scale sqrt(tr Sigma) = {self.naive_scale:.1f}{ratio}",
            f"  at least {C2_FAR_BELOW_FACTOR:g}x below sqrt(tr Sigma): {_yes(self.far_below_naive_scale)}",
            f"  Gaussian beats mean + std for 1 <= sigma <= 10: {_yes(self.gaussian_beats_isotropic)}",
            f"verdict: C2 {'REPRODUCED' if self.holds else 'NOT REPRODUCED'}",
        ]
        return "\n".join(lines)


def c2_verdict(table, naive_scale: float, probe_set: str = "train", column: str = "St_EV") -> C2Verdict:
    """Judge C2 from a linearity table (columns sigma, model, probe_set, St_EV, ...)."""
    rows = table[table["probe_set"] == probe_set]
    sigma_99 = gaussian_validity_sigma(rows, "gaussian", column, C2_EV_THRESHOLD)
    moderate = rows[(rows["sigma"] >= 1.0) & (rows["sigma"] <= 10.0)]
    gauss = moderate[moderate["model"] == "gaussian"].set_index("sigma")[column]
    iso = moderate[moderate["model"] == "mean_std"].set_index("sigma")[column]
    beats = bool(len(gauss) > 0 and (gauss > iso.reindex(gauss.index)).all())
    return C2Verdict(sigma_99, float(naive_scale), beats)


# --------------------------------------------------------------------------- C3: linearity across training

#: C3: the Gaussian fit "peaks early" when its best checkpoint lies in this first share of training ...
C3_EARLY_FRACTION = 0.35
#: ... "degrades" when the final residual 1 - EV exceeds the best one by this factor ...
C3_DEGRADE_FACTOR = 1.1


@dataclass(frozen=True)
class C3Row:
    sigma: float
    peak_step: int
    final_step: int
    peak_residual: float
    final_residual: float
    others_improve: bool

    @property
    def early(self) -> bool:
        return self.peak_step <= C3_EARLY_FRACTION * self.final_step

    @property
    def degrades(self) -> bool:
        return self.final_residual >= C3_DEGRADE_FACTOR * self.peak_residual


@dataclass(frozen=True)
class C3Verdict:
    """Claim C3: the Gaussian fit peaks early, then degrades slightly while the other fits keep improving."""

    rows: tuple[C3Row, ...]
    others: tuple[str, ...]

    def _majority(self, attribute: str) -> bool:
        return sum(bool(getattr(r, attribute)) for r in self.rows) * 2 > len(self.rows)

    @property
    def holds(self) -> bool:
        return bool(self.rows) and all(self._majority(a) for a in ("early", "degrades", "others_improve"))

    def report(self) -> str:
        lines = ["C3: the Gaussian structure is learned early in training",
                 f"  {'sigma':>6} {'best step':>9} {'best 1-EV':>10} {'final 1-EV':>10}  early  degrades  "
                 f"{'+'.join(self.others)} improve"]
        for r in self.rows:
            lines.append(f"  {r.sigma:>6g} {r.peak_step:>9d} {r.peak_residual:>10.2e} {r.final_residual:>10.2e}  "
                         f"{_yes(r.early):>5}  {_yes(r.degrades):>8}  {_yes(r.others_improve)}")
        lines.append(f"  Gaussian fit best within the first {C3_EARLY_FRACTION:.0%} of training (most sigmas): "
                     f"{_yes(self._majority('early'))}")
        lines.append(f"  then its residual grows by >= {C3_DEGRADE_FACTOR - 1:.0%} (most sigmas): "
                     f"{_yes(self._majority('degrades'))}")
        lines.append(f"  while {', '.join(self.others)} keep improving (most sigmas): "
                     f"{_yes(self._majority('others_improve'))}")
        lines.append(f"verdict: C3 {'REPRODUCED' if self.holds else 'NOT REPRODUCED'}")
        return "\n".join(lines)


def c3_verdict(table, sigmas, others: tuple[str, ...], probe_set: str = "train", column: str = "St_EV") -> C3Verdict:
    """Judge C3 from a training-dynamics table (one row per step, sigma, model, probe set)."""
    rows = []
    data = table[table["probe_set"] == probe_set]
    for sigma in sigmas:
        at = data[np.isclose(data["sigma"], sigma)]
        gauss = at[at["model"] == "gaussian"].set_index("step")[column].sort_index()
        if gauss.empty:
            continue
        residual = 1.0 - gauss
        peak_step, final_step = int(residual.idxmin()), int(residual.index.max())
        improve = []
        for name in others:
            other = at[at["model"] == name].set_index("step")[column]
            improve.append(bool(other.loc[final_step] > other.loc[peak_step]))
        rows.append(C3Row(float(sigma), peak_step, final_step, float(residual.min()), float(residual.loc[final_step]),
                          all(improve)))
    return C3Verdict(tuple(rows), tuple(others))


# --------------------------------------------------------------------------- C4: mixtures vs the training set

#: C4: the network "moves towards the training-set score" between two checkpoints when the training set's
#: band residual shrinks by more than this factor while the best mixture's does not shrink as much.
C4_TREND_FACTOR = 1.5
#: Band residuals within this factor of each other are reported as a tie (at high noise every model agrees).
C4_TIE_FACTOR = 1.1


@dataclass(frozen=True)
class C4Band:
    """One band of noise levels: which model explains the network best, at the final and early checkpoints."""

    band: str
    closest_kind: str  # "Gaussian", "mixture" or "training set" (final checkpoint)
    closest: str  # the model's table name
    best_mixture: str | None
    best_mixture_residual: float  # band residual 1 - EV of the best mixture (K > 1)
    delta_residual: float  # ... of the training-set score
    early_best_mixture_residual: float | None = None
    early_delta_residual: float | None = None
    closest_residual: float = float("nan")

    @property
    def mixture_beats_training_set(self) -> bool:
        return bool(self.best_mixture_residual < self.delta_residual)

    @property
    def indistinguishable(self) -> bool:
        """The best mixture and the training set explain the network equally well (within C4_TIE_FACTOR)."""
        pair = (self.best_mixture_residual, self.delta_residual)
        return bool(max(pair) < C4_TIE_FACTOR * min(pair))

    @property
    def towards_training_set(self) -> bool | None:
        """Between the checkpoints, did the network approach the training-set score faster than the mixtures?"""
        if self.early_delta_residual is None or self.early_best_mixture_residual is None:
            return None
        delta_gain = self.early_delta_residual / self.delta_residual
        mixture_gain = self.early_best_mixture_residual / self.best_mixture_residual
        return bool(delta_gain > C4_TREND_FACTOR and delta_gain > mixture_gain)


@dataclass(frozen=True)
class C4Verdict:
    """Claim C4: at low noise the network is closer to a coarse Gaussian mixture than to the training-set score."""

    probe_set: str
    bands: tuple[C4Band, ...]
    final_step: int
    early_step: int | None = None

    def band(self, name: str) -> C4Band:
        return next(b for b in self.bands if b.band == name)

    @property
    def holds(self) -> bool:
        low = self.band("low")
        return low.mixture_beats_training_set and not low.indistinguishable

    def report(self) -> str:
        lines = [f"C4: mixture or training set at low noise? (probes from the {self.probe_set} set, "
                 f"network at step {self.final_step})"]
        for b in self.bands:
            lines.append(f"  {b.band:>4} noise: closest = {b.closest_kind} ({b.closest}, "
                         f"1 - EV = {b.closest_residual:.2g}); best mixture {b.best_mixture} "
                         f"{b.best_mixture_residual:.2g} vs training set {b.delta_residual:.2g}: mixture closer: "
                         + ("tie (within 10%)" if b.indistinguishable else _yes(b.mixture_beats_training_set)))
            if b.towards_training_set is not None:
                lines.append(f"        from step {self.early_step} to {self.final_step}: training set "
                             f"{b.early_delta_residual:.2g} -> {b.delta_residual:.2g}, best mixture "
                             f"{b.early_best_mixture_residual:.2g} -> {b.best_mixture_residual:.2g}; "
                             f"moving towards the training set: {_yes(b.towards_training_set)}")
        lines.append(f"verdict: C4 {'REPRODUCED' if self.holds else 'NOT REPRODUCED'} on {self.probe_set} probes "
                     "(low noise: a coarse mixture explains the network better than the training-set score)")
        return "\n".join(lines)


def c4_verdict(closest, final_step: int, early_step: int | None = None, probe_set: str = "train") -> C4Verdict:
    """Judge C4 from `lib.mixture_grid.closest_models` output (rows per step, probe set and sigma band)."""
    at = closest[closest["probe_set"] == probe_set]
    final = at[at["step"] == final_step].set_index("sigma_band")
    early = at[at["step"] == early_step].set_index("sigma_band") if early_step is not None else None
    if final.empty:
        raise ValueError(f"no rows for step {final_step} on {probe_set} probes")
    bands = []
    for band in [b for b in ("low", "mid", "high") if b in final.index]:
        row = final.loc[band]
        e = early.loc[band] if early is not None and band in early.index else None
        bands.append(C4Band(
            band, row["closest_kind"], row["closest"], row["best_mixture"], float(row["best_mixture_residual"]),
            float(row["delta_residual"]),
            None if e is None else float(e["best_mixture_residual"]),
            None if e is None else float(e["delta_residual"]),
            closest_residual=float(row["closest_residual"]),
        ))
    return C4Verdict(probe_set, tuple(bands), final_step, early_step)


# --------------------------------------------------------------------------- C5: trajectory prediction

#: C5: the Gaussian "predicts" the network's denoised estimate while the median RMS pixel deviation stays
#: below this (5% of the [-1, 1] pixel range) ...
C5_DEVIATION_THRESHOLD = 0.1
#: ... and it must do so at least down to this sigma (skipping the first 30% of an 18-step EDM schedule
#: lands at sigma ~ 12.9, so teleportation needs the prediction to hold there).
C5_REQUIRED_SIGMA = 10.0


@dataclass(frozen=True)
class C5Verdict:
    """Claim C5: the Gaussian closed form predicts the early part of the network's sampling trajectory."""

    break_sigma_x0: float | None  # highest sigma at which the x0_hat deviation reaches the threshold
    break_sigma_x: float | None  # the same for the state x_sigma
    gaussian_closer_than_delta: bool  # early on, the Gaussian predicts the network better than the training set

    @staticmethod
    def _holds_below(break_sigma: float | None) -> bool:
        return break_sigma is None or break_sigma < C5_REQUIRED_SIGMA

    @property
    def holds_for_x(self) -> bool:
        return self._holds_below(self.break_sigma_x)

    @property
    def holds_for_x0(self) -> bool:
        return self._holds_below(self.break_sigma_x0)

    @property
    def holds(self) -> bool:
        return self.holds_for_x and self.holds_for_x0

    def report(self) -> str:
        def where(s: float | None) -> str:
            return "never along the trajectory" if s is None else f"from sigma = {s:.3g} down"

        if self.holds:
            outcome = "REPRODUCED"
        elif self.holds_for_x or self.holds_for_x0:
            outcome = "PARTLY REPRODUCED"
        else:
            outcome = "NOT REPRODUCED"
        lines = [
            "C5: the Gaussian solution predicts the early sampling trajectory",
            f"  x_sigma deviates by >= {C5_DEVIATION_THRESHOLD} RMS (median) {where(self.break_sigma_x)}",
            f"  x0_hat deviates by >= {C5_DEVIATION_THRESHOLD} RMS (median) {where(self.break_sigma_x0)}",
            f"  x_sigma predicted down to sigma = {C5_REQUIRED_SIGMA:g} (teleport range): {_yes(self.holds_for_x)}",
            f"  x0_hat predicted down to sigma = {C5_REQUIRED_SIGMA:g}: {_yes(self.holds_for_x0)}",
            "  Gaussian predicts the network's x0_hat better than the training-set score does for sigma >= "
            f"{C5_REQUIRED_SIGMA:g}: {_yes(self.gaussian_closer_than_delta)}",
            f"verdict: C5 {outcome}",
        ]
        return "\n".join(lines)


def c5_verdict(sigmas, deviation_x0, deviation_x, deviation_x0_delta) -> C5Verdict:
    """Judge C5 from median deviations (network vs Gaussian, and network vs training-set score) per sigma,
    ordered from the highest sigma down."""
    sig = np.asarray(sigmas, dtype=float)
    early = sig >= C5_REQUIRED_SIGMA
    closer = bool(early.any() and (np.asarray(deviation_x0)[early] <= np.asarray(deviation_x0_delta)[early]).all())
    return C5Verdict(prediction_break_sigma(sig, deviation_x0, C5_DEVIATION_THRESHOLD),
                     prediction_break_sigma(sig, deviation_x, C5_DEVIATION_THRESHOLD), closer)


# --------------------------------------------------------------------------- C6: analytical teleportation

#: C6: skipping k steps "keeps sample quality" while the mean FD over seeds stays at or below the baseline's
#: (skip 0, same noise) mean FD plus this many standard deviations of the baseline's FD over seeds ...
C6_SPREAD_FACTOR = 2.0
#: ... and the paper replaces 15-30% of the steps (of N levels: round(0.15 N) to round(0.30 N) levels).
C6_PAPER_RANGE = (0.15, 0.30)




@dataclass(frozen=True)
class C6Row:
    """One (sampler, budget of N levels): the largest skip that keeps FD within the baseline's seed spread."""

    sampler: str
    steps: int
    n_seeds: int
    skips: tuple[int, ...]  # skips tested, 0 included
    baseline_fd: float  # mean FD over seeds at skip 0
    baseline_std: float  # standard deviation over seeds (ddof = 1; 0 for one seed)
    kept_skip: int  # largest k such that every tested skip <= k stays within the limit
    sigma_skip: float  # where the kept run starts (sigma_max at k = 0)
    nfe_baseline: int
    nfe_kept: int
    largest_effect: float  # max over tested skips of |mean FD(k) - baseline mean|
    wall_baseline: float | None = None  # mean wall time over seeds, seconds
    wall_kept: float | None = None
    kept_change: float = 0.0  # paired FD change at the kept skip: mean over seeds of FD(k, s) - FD(0, s)
    kept_change_sd: float = 0.0  # its standard deviation over seeds

    @property
    def limit(self) -> float:
        return self.baseline_fd + C6_SPREAD_FACTOR * self.baseline_std

    @property
    def kept_fraction(self) -> float:
        return self.kept_skip / self.steps

    @property
    def nfe_saved(self) -> int:
        return self.nfe_baseline - self.nfe_kept

    @property
    def wall_saved(self) -> float | None:
        if self.wall_baseline is None or self.wall_kept is None:
            return None
        return self.wall_baseline - self.wall_kept

    @property
    def lower_target(self) -> int:
        return max(1, round_half_up(C6_PAPER_RANGE[0] * self.steps))

    @property
    def upper_target(self) -> int:
        return max(1, round_half_up(C6_PAPER_RANGE[1] * self.steps))

    @property
    def reaches_lower(self) -> bool:
        return self.kept_skip >= self.lower_target

    @property
    def covers_range(self) -> bool:
        return self.kept_skip >= self.upper_target

    @property
    def coverage(self) -> str:
        """"all" of the 15-30% range kept, "part" of it (at least 15%), or "none"."""
        return "all" if self.covers_range else "part" if self.reaches_lower else "none"

    @property
    def spread_resolves_effects(self) -> bool:
        """Whether some skip moved the mean FD by more than the noise band (else every skip is "kept" by default)."""
        return self.largest_effect > C6_SPREAD_FACTOR * self.baseline_std


@dataclass(frozen=True)
class C6Verdict:
    """Claim C6: replacing the first 15-30% of sampling steps by the Gaussian jump keeps sample quality,
    with several samplers."""

    rows: tuple[C6Row, ...]

    @property
    def samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.sampler for r in self.rows))

    def sampler_keeps_lower(self, sampler: str) -> bool:
        return all(r.reaches_lower for r in self.rows if r.sampler == sampler)

    @property
    def holds(self) -> bool:
        return bool(self.rows) and all(r.covers_range for r in self.rows)

    @property
    def partly(self) -> bool:
        return any(r.reaches_lower for r in self.rows)

    def report(self) -> str:
        lo, hi = C6_PAPER_RANGE
        n_seeds = sorted({r.n_seeds for r in self.rows})
        lines = [
            "C6: analytical teleportation keeps sample quality",
            "  rule: skipping k of N levels keeps quality while the mean FD over seeds, at k and at every smaller",
            f"  skip tested, stays <= the baseline's mean + {C6_SPREAD_FACTOR:g} sd (baseline: skip 0 from the same "
            f"noise; {'/'.join(map(str, n_seeds))} seeds)",
            f"  {'sampler':<9} {'N':>3} {'baseline FD (sd)':>17} {'limit':>6} {'kept k':>6} {'share':>5} "
            f"{'sigma_skip':>10} {'paired dFD there':>16} {'NFE saved':>9} {'wall saved':>10}  "
            f"covers {lo:.0%}-{hi:.0%}",
        ]
        for r in self.rows:
            wall = "n/a" if r.wall_saved is None or not r.wall_baseline else \
                f"{r.wall_saved:.1f}s {r.wall_saved / r.wall_baseline:.0%}"
            base = f"{r.baseline_fd:.3g} ({r.baseline_std:.2g})"
            change = f"{r.kept_change:+.2g} ± {r.kept_change_sd:.2g}"
            lines.append(
                f"  {r.sampler:<9} {r.steps:>3} {base:>17} {r.limit:>6.3g} {f'{r.kept_skip}/{r.steps}':>6} "
                f"{r.kept_fraction:>5.0%} {r.sigma_skip:>10.3g} {change:>16} "
                f"{f'{r.nfe_saved} of {r.nfe_baseline}':>9} {wall:>10}  {r.coverage}")
        resolved = sum(r.spread_resolves_effects for r in self.rows)
        lines.append("  paired dFD: FD(k) - FD(0) from the same noise, mean ± sd over seeds (0 at k = 0)")
        lines.append(f"  some skip moves the mean FD by more than {C6_SPREAD_FACTOR:g} baseline sd (else every skip is "
                     f"kept by default) in {resolved} of {len(self.rows)} budgets")
        for name in self.samplers:
            lines.append(f"  {name}: at least {lo:.0%} of the steps replaced at every budget: "
                         f"{_yes(self.sampler_keeps_lower(name))}")
        lines.append(f"  every sampler and budget keeps quality up to {hi:.0%} skipped: {_yes(self.holds)}")
        outcome = "REPRODUCED" if self.holds else "PARTLY REPRODUCED" if self.partly else "NOT REPRODUCED"
        lines.append(f"verdict: C6 {outcome}")
        return "\n".join(lines)


def c6_verdict(table) -> C6Verdict:
    """Judge C6 from the teleportation table (columns sampler, steps, skip, sigma_skip, nfe, seed, fd[, wall_s]),
    one row per (sampler, N, skip, seed); every (sampler, N) needs its skip-0 baseline.

    Per (sampler, N): the baseline is the mean FD over seeds at skip 0, its noise band the standard
    deviation over seeds (ddof = 1). Walking up the tested skips, a skip is kept while its mean FD over
    seeds stays <= baseline mean + C6_SPREAD_FACTOR sd; the first skip above it (or with a non-finite
    FD) stops the walk. Lower FD than the baseline counts as kept. The paired change at the kept skip,
    FD(k, s) - FD(0, s) over seeds s (same noise), is reported alongside: it resolves smaller effects than the
    unpaired rule, which asks only whether a skip is distinguishable from another draw of the baseline.
    """
    rows = []
    has_wall = "wall_s" in table.columns
    for (sampler, steps), budget in table.groupby(["sampler", "steps"], sort=False):
        per_skip = budget.groupby("skip").agg(fd=("fd", "mean"), fd_std=("fd", "std"), n=("fd", "size"),
                                              sigma_skip=("sigma_skip", "first"), nfe=("nfe", "first"))
        if has_wall:
            per_skip["wall"] = budget.groupby("skip")["wall_s"].mean()
        per_skip = per_skip.sort_index()
        if 0 not in per_skip.index:
            raise ValueError(f"{sampler} with {steps} levels has no skip-0 baseline")
        base = per_skip.loc[0]
        base_std = float(base["fd_std"]) if int(base["n"]) > 1 else 0.0
        limit = float(base["fd"]) + C6_SPREAD_FACTOR * base_std
        kept = 0
        for k, row in per_skip.iterrows():
            if k == 0:
                continue
            if not (np.isfinite(row["fd"]) and row["fd"] <= limit):
                break
            kept = int(k)
        effects = (per_skip["fd"] - base["fd"]).abs()
        largest = float(effects.max()) if effects.notna().all() else float("inf")
        kept_row = per_skip.loc[kept]
        by_seed = budget.pivot_table(index="seed", columns="skip", values="fd", aggfunc="mean")
        change = (by_seed[kept] - by_seed[0]).dropna()
        rows.append(C6Row(
            sampler=str(sampler), steps=int(steps), n_seeds=int(base["n"]),
            skips=tuple(int(k) for k in per_skip.index), baseline_fd=float(base["fd"]), baseline_std=base_std,
            kept_skip=kept, sigma_skip=float(kept_row["sigma_skip"]), nfe_baseline=int(base["nfe"]),
            nfe_kept=int(kept_row["nfe"]), largest_effect=largest,
            wall_baseline=float(base["wall"]) if has_wall else None,
            wall_kept=float(kept_row["wall"]) if has_wall else None,
            kept_change=float(change.mean()) if len(change) else float("nan"),
            kept_change_sd=float(change.std()) if len(change) > 1 else 0.0,
        ))
    return C6Verdict(tuple(rows))

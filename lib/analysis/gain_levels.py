"""Notebook 04's reported complement to finding G2 (issue 29, beyond the paper): each mode's learning step at a few
FIXED noise levels, beside G2's own level per mode (the probed level nearest sqrt(lambda_k)). Reported, not
judged: no outcome word, G2's rule and outcome (`lib.analysis.gain_findings`) are untouched.

The levels, FIXED_LEVELS = (1, 2, 5), were chosen from the data's spectrum and notebook 03's finding G1 before any
learning step at them was seen. MNIST's eigenvalues run from 26 (k = 1) to ~1e-4, and a mode is
followed at a level only where its Gaussian gain lambda_k / (lambda_k + sigma^2) is at least RESOLVED_GAIN = 0.05
(lambda_k >= sigma^2 / 19): below it the learned criterion (within 10% of the Gaussian gain beyond two standard
errors) asks for an absolute gap under 0.005 on a gain that is itself ~0, which says little about the mode. At
sigma = 1, 2 and 5 that leaves about 23, 20 and 16 of the 30 probed modes, spanning 2.6, 2 and 1.3 decades of
lambda. sigma = 5 lies where notebook 03 (G1) finds the final network's gains Gaussian along its top 10 modes
(down to sigma ~ 4, within G1's tolerance of max(2 sd over probes, 0.05), looser than the learned criterion), so
"learned" should be reachable there; 2 and 1 lie below, where more modes are resolvable but the
final network departs from the Gaussian (log-spaced by a factor 2-2.5). A lower level (0.5) would add only two
modes (25) at a level further from where the final network is Gaussian.

Each level's table is `gain_steps.learning_steps(gains, sigma=level)` over its resolvable modes; the fit is
`gain_steps.loglog_fit` of the bracketed steps on lambda_k (bootstrap within the brackets) from MIN_FIT_MODES
modes up (the fewest with a standard error; G2's rule asks for 5 before it judges), and the warm-up check is
`gain_study.warmup_check` (learned within the warm-up; the slope in cumulative learning rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.analysis import gain_steps, gain_study, gains
from lib.analysis.gain_findings import PREDICTED_LEARNING_SLOPE

#: The fixed levels (see the module docstring for why these).
FIXED_LEVELS: tuple[float, ...] = (1.0, 2.0, 5.0)
#: A mode is followed at a level only where its Gaussian gain is at least this.
RESOLVED_GAIN = 0.05
#: A slope is fitted from this many bracketed learning steps up.
MIN_FIT_MODES = 3


def resolvable_plan(eigvals, modes, levels=FIXED_LEVELS, floor: float = RESOLVED_GAIN) -> dict[float, list[int]]:
    """{level: the 1-based `modes` whose Gaussian gain there is at least `floor`} (levels with none left out)."""
    lam = np.asarray(eigvals, dtype=np.float64)
    plan = {float(s): [int(k) for k in modes if gains.gaussian_gain(lam[int(k) - 1], float(s)) >= floor]
            for s in levels}
    return {s: ks for s, ks in plan.items() if ks}


def fixed_level_gains(history, x0, stats, scale, levels=FIXED_LEVELS, device="cpu",
                      progress: bool = True) -> pd.DataFrame:
    """Each picked checkpoint's gains (`gain_study.checkpoint_gains`, cached the same way, keyed by this plan) of
    the scale's probed modes at the fixed `levels`, each mode only where it is resolvable."""
    from tqdm import tqdm

    plan = resolvable_plan(stats.eigvals.numpy(), gain_study.gain_modes(stats, scale), levels)
    steps = gain_study.pick_checkpoints(history.checkpoint_steps(), scale.n_gain_checkpoints)
    probes = x0[: scale.n_gain_training_probes]
    tables = [gain_study.checkpoint_gains(lambda s=step: history.network(s), probes, stats, plan,
                                          gain_study.network_tag(history, step), step, device)
              for step in tqdm(steps, desc="gains at fixed levels", disable=not progress)]
    return pd.concat(tables, ignore_index=True)


@dataclass(frozen=True)
class LevelSteps:
    """One fixed level: the `learning_steps` table of its resolvable modes, the log-log fit of the bracketed steps
    on lambda_k (None under MIN_FIT_MODES) and the warm-up check."""

    sigma: float
    steps: pd.DataFrame
    fit: gain_steps.LogLogFit | None
    warmup: gain_study.WarmupCheck

    def count(self, status: str) -> int:
        return int((self.steps["status"] == status).sum())

    @property
    def span_decades(self) -> float:
        lam = self.steps["lambda"].to_numpy(dtype=np.float64)
        return float(np.log10(lam.max() / lam.min())) if len(lam) else 0.0

    def describe(self) -> str:
        n, learned = len(self.steps), self.steps[self.steps["status"] == "learned"]
        ratio = (self.steps["final_gain"] / self.steps["gaussian_gain"]).to_numpy(dtype=np.float64)
        head = (f"sigma = {self.sigma:g}: {n} resolvable modes ({self.span_decades:.1f} decades of lambda; final "
                f"gain / Gaussian gain {np.median(ratio):.2f}, {ratio.min():.2f} to {ratio.max():.2f}); "
                f"{len(learned)} learned with a bracket, {self.count('early')} early, {self.count('never')} never")
        if self.fit is None:
            return f"{head}; too few bracketed modes to fit a slope"
        f = self.fit
        order = ("higher-variance modes earlier among them" if f.ci_high < 0 else
                 "lower-variance modes earlier among them" if f.ci_low > 0 else "no order resolved")
        lam, t = learned["lambda"], self.warmup.tau_fit
        tau = "" if t is None else (f"; in cumulative learning rate, slope {t.slope:.2f} "
                                    f"[{t.ci_low:.2f}, {t.ci_high:.2f}]")
        return (f"{head}; slope {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}] over {f.n} modes "
                f"(lambda {lam.min():.2g} to {lam.max():.2g}; {order}; Wang & Pehlevan predict "
                f"{PREDICTED_LEARNING_SLOPE:g}); {self.warmup.n_within} of {f.n} learned within the "
                f"{self.warmup.warmup_steps:,}-step warm-up{tau}")


def steps_by_level(gains_by_step: pd.DataFrame, warmup_steps: int, tau: np.ndarray,
                   floor: float = RESOLVED_GAIN) -> dict[float, LevelSteps]:
    """A `LevelSteps` per level of a fixed-level gain table (`fixed_level_gains`), over the modes whose Gaussian gain
    there is at least `floor`; `tau` is `gain_study.cumulative_learning_rate`."""
    out = {}
    for sigma, rows in gains_by_step.groupby("sigma"):
        rows = rows[rows["gaussian_gain"] >= floor]
        if rows.empty:
            continue
        steps = gain_steps.learning_steps(rows, sigma=float(sigma))
        learned = steps[steps["status"] == "learned"]
        fit = (gain_steps.loglog_fit(learned["lambda"], learned["step"], y_low=learned["step_before"])
               if len(learned) >= MIN_FIT_MODES and learned["lambda"].nunique() > 1 else None)
        out[float(sigma)] = LevelSteps(float(sigma), steps, fit, gain_study.warmup_check(steps, warmup_steps, tau))
    return out

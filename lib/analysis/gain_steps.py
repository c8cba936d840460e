"""When each principal component is learned (across training) and decided (along a sampling trajectory), and the
log-log fits the findings of `lib.analysis.gain_findings` judge (issue 29, beyond the paper).

Across training (`learning_steps`). From gain tables of several checkpoints (`lib.analysis.gains.gain_table` with
a `step` column), mode k is judged at one noise level: by default the probed level nearest sqrt(lambda_k) in log
sigma, where its Gaussian gain is about 1/2 (far above it every gain is ~0, far below ~1: the untrained EDM network's
c_skip already gives that). Mode k counts as learned at a checkpoint when its gain is within `tolerance` (10%) of
the Gaussian gain beyond two standard errors,

    |gain_mean - g_k| + z * gain_se <= tolerance * g_k,        g_k = lambda_k / (lambda_k + sigma^2),

("90% of the Gaussian gain", two-sided, because at low noise the untrained network starts above it). Its
learning step is the first checkpoint where that holds, known to lie in the bracket (previous checkpoint, that
checkpoint]. A mode learned already at the first checkpoint or at the first one after step 0 ("early": only an
upper bound is known), or never, is censored: it has no bracket and stays out of the fit.

Along a trajectory (`emergence_table`). The definition of notebook 01 (`lib.models.gaussian.decided_fraction` and
`emergence_sigmas`): feature k is half decided where the share of its final variance already in x0_hat,
q_k(sigma) = sum_b c_bk(x0_hat(sigma))^2 / sum_b c_bk(final)^2 with c = U^T(. - mu), first reaches 1/2 as
sigma falls (interpolated linearly in log sigma); the final estimate is the trajectory's last x0_hat. For the
Gaussian's closed form q_k = lambda_k / (lambda_k + sigma^2), so sigma_half = sqrt(lambda_k) up to the
interpolation. Beside this pooled crossing (`sigma_half`, the one the finding judges), each trajectory's own
crossing of c_bk(sigma)^2 / c_bk(final)^2 = 1/2 gives a median and quartiles over trajectories. (Halfway in the
coefficient itself, rather than in its variance, would sit at sqrt(3 lambda_k) on the Gaussian.)

Fits (`loglog_fit`): least squares of log y on log x, its standard error, and a percentile bootstrap interval over
the points (seeded); where a point is only known within a bracket (a learning step), each bootstrap replicate also
draws it log-uniformly inside its bracket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lib.analysis.gains import mode_indices
from lib.data.statistics import DatasetStats
from lib.models.gaussian import GaussianDenoiser, decided_fraction, emergence_sigmas

#: A mode is learned within this relative distance of its Gaussian gain ("90% of it") ...
LEARNED_TOLERANCE = 0.1
#: ... beyond this many standard errors of its gain over probes.
LEARNED_Z = 2.0
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LogLogFit:
    """y ~ x^slope: least-squares slope and intercept on log-log axes, the slope's standard error (NaN with fewer
    than 3 points) and its bootstrap interval [ci_low, ci_high] at `CONFIDENCE`."""

    slope: float
    intercept: float
    se: float
    ci_low: float
    ci_high: float
    n: int

    def contains(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)


def _slopes(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of ly on the matching row of lx (NaN where lx is constant: tested exactly,
    since the mean of equal values can round off them and leave a spread of ~1e-31, a slope of noise)."""
    dx = lx - lx.mean(-1, keepdims=True)
    sxx = (dx**2).sum(-1)
    varies = lx.max(-1) > lx.min(-1)
    return np.where(varies, (dx * (ly - ly.mean(-1, keepdims=True))).sum(-1) / np.where(varies, sxx, 1.0), np.nan)


def loglog_fit(x: Sequence[float], y: Sequence[float], y_low: Sequence[float] | None = None,
               n_bootstrap: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> LogLogFit:
    """The fit of log y on log x (see the module docstring); `y_low` (optional) are the lower ends of brackets
    (y_low, y] (0 or NaN: no bracket, y is used as is)."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    n = len(lx)
    if n < 2 or not (np.isfinite(lx).all() and np.isfinite(ly).all()):
        raise ValueError(f"a log-log fit needs at least 2 positive, finite points, got x={list(x)}, y={list(y)}")
    slope = float(_slopes(lx, ly))
    intercept = float(ly.mean() - slope * lx.mean()) if np.isfinite(slope) else math.nan
    resid = ly - intercept - slope * lx
    sxx = float(((lx - lx.mean()) ** 2).sum())
    se = math.sqrt((resid**2).sum() / (n - 2) / sxx) if n > 2 and sxx > 0 else math.nan
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, size=(n_bootstrap, n))
    ly_boot = ly[pick]
    if y_low is not None:
        low = np.asarray(y_low, dtype=np.float64)
        bracketed = np.isfinite(low) & (low > 0)
        lo = np.log(np.where(bracketed, low, np.exp(ly)))
        ly_boot = lo[pick] + rng.random((n_bootstrap, n)) * (ly - lo)[pick]
    boot = _slopes(lx[pick], ly_boot)
    tail = 50 * (1 - confidence)
    low_q, high_q = (np.nanpercentile(boot, [tail, 100 - tail]) if np.isfinite(boot).any() else (math.nan,) * 2)
    return LogLogFit(slope, intercept, se, float(low_q), float(high_q), n)


# --------------------------------------------------------------------------- across training


def _level_for(levels: np.ndarray, lam: float) -> float:
    """The probed level nearest sqrt(lambda) in log sigma."""
    return float(levels[np.argmin(np.abs(np.log(levels) - 0.5 * math.log(lam)))])


def learning_steps(gains: pd.DataFrame, sigma: float | None = None, tolerance: float = LEARNED_TOLERANCE,
                   z: float = LEARNED_Z) -> pd.DataFrame:
    """Per mode k: the checkpoint `step` where it is first learned and the previous one `step_before` (NaN when
    censored), `status` ("learned", "early", "never"), the level `sigma` it is judged at (`sigma`, or
    per mode the level nearest sqrt(lambda_k)), its Gaussian gain and its gain at the last checkpoint."""
    need = {"step", "sigma", "k", "lambda", "gain_mean", "gain_se", "gaussian_gain"}
    if missing := need - set(gains.columns):
        raise ValueError(f"learning_steps needs the columns {sorted(missing)} (a gain_table with a step column)")
    levels = np.unique(gains["sigma"].to_numpy(dtype=np.float64))
    steps = np.sort(gains["step"].unique())
    rows = []
    for k, rows_k in gains.groupby("k"):
        lam = float(rows_k["lambda"].iloc[0])
        at = float(sigma) if sigma is not None else _level_for(levels, lam)
        series = rows_k[np.isclose(rows_k["sigma"], at)].set_index("step").reindex(steps)
        g, mean, se = (series[c].to_numpy(dtype=np.float64) for c in ("gaussian_gain", "gain_mean", "gain_se"))
        gap = np.abs(mean - g) + z * se
        learned = np.flatnonzero(gap <= tolerance * g)
        first = int(learned[0]) if len(learned) else -1
        bracketed = first > 0 and steps[first - 1] > 0
        status = "never" if first < 0 else "learned" if bracketed else "early"
        rows.append({"k": int(k), "lambda": lam, "sigma": at, "gaussian_gain": float(np.nanmax(g)),
                     "step": float(steps[first]) if bracketed else math.nan,
                     "step_before": float(steps[first - 1]) if bracketed else math.nan,
                     "status": status, "final_gain": float(series["gain_mean"].iloc[-1])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- along trajectories


def closed_form_estimates(model, x_t: torch.Tensor, sigma_t: float, sigmas: Sequence[float]) -> torch.Tensor:
    """x0_hat(sigma) = D(x(sigma); sigma) along a model's closed-form PF-ODE solution from x_t at sigma_t, stacked
    (S, B, ...): for any model with `jump` (the Gaussian, and the isotropic control whose every feature is decided
    at sigma = sqrt(v))."""
    return torch.stack([model(model.jump(x_t, sigma_t, float(s)), float(s)) for s in sigmas])


def emergence_table(x0_hats: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, stats: DatasetStats,
                    modes: Sequence[int] | None = None) -> pd.DataFrame:
    """Per mode k (1-based; default `mode_indices`): `sigma_half` (pooled, notebook 01's definition), the median and
    quartiles of the per-trajectory crossings, `n_decided` trajectories with a crossing, beside `sqrt_lambda`.

    `x0_hats` (S, B, C, H, W) are the estimates at `sigmas` (S,), decreasing; the last is the final one (sigma may be
    0 there); crossings are found on the positive levels."""
    levels = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if x0_hats.ndim < 3 or x0_hats.shape[0] != len(levels) or len(levels) < 2:
        raise ValueError(f"x0_hats must be (S, B, ...) with S = len(sigmas) >= 2, got {tuple(x0_hats.shape)}")
    if not bool((levels[1:] < levels[:-1]).all()):
        raise ValueError("sigmas must decrease along the trajectory")
    ks = np.asarray(mode_indices(stats.eigvals) if modes is None else modes, dtype=int)
    basis = GaussianDenoiser(stats.mean, stats.eigvals[ks - 1], stats.eigvecs[:, ks - 1], stats.shape,
                             dtype=torch.float64)
    est = x0_hats.to(torch.float64)
    pos = levels > 0
    pooled = emergence_sigmas(levels[pos], decided_fraction(basis, est, est[-1])[pos])
    coeffs = torch.stack([basis.project(x)[0] for x in est])  # (S, B, M)
    q = coeffs**2 / coeffs[-1] ** 2
    n_b = coeffs.shape[1]
    each = emergence_sigmas(levels[pos], q[pos].reshape(int(pos.sum()), -1)).reshape(n_b, -1).numpy()
    lam = stats.eigvals[ks - 1].to(torch.float64).numpy()
    decided = np.isfinite(each)
    with np.errstate(all="ignore"):
        quart = [np.array([np.nanpercentile(c, p) if np.isfinite(c).any() else math.nan for c in each.T])
                 for p in (25, 50, 75)]
    return pd.DataFrame({"k": ks, "lambda": lam, "sqrt_lambda": np.sqrt(lam), "sigma_half": pooled.numpy(),
                         "sigma_half_median": quart[1], "sigma_half_q25": quart[0], "sigma_half_q75": quart[2],
                         "n_decided": decided.sum(0), "n_trajectories": n_b})

"""The per-notebook computations of issue 29 (beyond the paper): which probes, modes, levels and checkpoints, each
expensive table cached, and the few summaries the notebooks print. The measurements are `lib.analysis.gains`, the
learning and emergence steps `lib.analysis.gain_steps`, the findings and their rules `lib.analysis.gain_findings`.

Notebook 03 (`across_noise`): the final network's gains on held-out probes at the scale's levels (`gain_levels`),
the training-set score's (the memorising reference) on fewer probes and levels, and the Jacobian variation of both.
Notebook 04 (`across_training`): each mode's gain at `n_gain_checkpoints` checkpoints, at one level per mode, the
probed level nearest sqrt(lambda_k) (`levels_for_modes`: the level the rule of `gain_steps.learning_steps` reads).
Notebook 06 (`emergence_tables`): the network's own Heun estimates and the isotropic closed form's (no new network
evaluation). G2 and G3 follow only the `decidable_modes`.

Cache (`gain_cache.cached_rows`, `data/cache/gains/`): every table is keyed by what it came from: the network
(`network_tag`: the run's tag, the step and the checkpoint file's recorded sha256, or a model folder's digest), the
training data (`DatasetStats.key`, a digest of the images), a digest of the probe images, the levels, modes, seed,
method and step size. A damaged entry is reported in one line and computed again.

One rule is added here, before any default-scale number: the denoiser is one linear map at a level where the
Jacobian variation (`gains.jacobian_variation`) is at most LINEAR_VARIATION; `linear_range` walks down from the
highest such level to the end of that unbroken run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lib.analysis import gain_findings, gain_steps, gains
from lib.analysis.gain_cache import cached_rows, tensor_digest
from lib.core import integrity
from lib.core.config import LINEARITY_SIGMAS, Scale
from lib.data.statistics import DatasetStats

#: The denoiser is one linear map (within 10%) at a level where the Jacobian variation is at most this.
LINEAR_VARIATION = 0.1
NOISE_SEED = 29  # the probes' noise (`gains.probes_at`)
REFERENCE_METHOD = "fd"  # how the training-set score is differentiated (see `across_noise`)


def network_tag(study, step: int | None = None) -> str:
    """What keys a network's tables: our run's tag, the step and its checkpoint's recorded sha256 (a retrained run
    gets new caches), or a model folder's `model_tag` (a digest of its files)."""
    if not study.model.has_history:
        return study.model_tag()
    from lib.diffusion import checkpoints

    step = study.final_step if step is None else int(step)
    digest = integrity.recorded_digest(checkpoints.checkpoint_path(study.train_config(), step, create=False))
    return f"{study.model_tag()}/step{step}/{digest or 'nodigest'}"


def gain_modes(stats: DatasetStats, scale: Scale) -> np.ndarray:
    """The 1-based principal components probed at this scale."""
    return gains.mode_indices(stats.eigvals, scale.gain_top_modes, scale.gain_log_modes)


def gain_levels(scale: Scale) -> tuple[float, ...]:
    """Notebook 03's levels for the network's gains (the scale's, else those of the C2 table)."""
    return tuple(scale.gain_sigmas) if scale.gain_sigmas else LINEARITY_SIGMAS


def gain_rows(denoiser, x0: torch.Tensor, sigmas: Sequence[float], stats: DatasetStats, modes: Sequence[int],
              tag: str, step: int = -1, seed: int = NOISE_SEED, device: torch.device | str = "cpu",
              batch: int = 256, method: str = "auto") -> pd.DataFrame:
    """`gains.gain_table`, cached under `tag` (what the denoiser is) and the data, probes and settings."""
    sigmas, modes = [float(s) for s in sigmas], [int(k) for k in modes]
    settings = ["gains", tag, stats.key, tensor_digest(x0), sigmas, modes, int(step), seed, method, gains.FD_STEP]
    return cached_rows("gains", settings, lambda: gains.gain_table(
        denoiser, x0, sigmas, stats, modes, seed=seed, method=method, device=device, step=step, batch=batch))


def variation_rows(denoiser, x0: torch.Tensor, sigmas: Sequence[float], n_directions: int, tag: str,
                   data_key: str, step: int = -1, seed: int = NOISE_SEED, device: torch.device | str = "cpu",
                   batch: int = 256, method: str = "auto") -> pd.DataFrame:
    """`gains.jacobian_variation`, cached like `gain_rows`."""
    sigmas = [float(s) for s in sigmas]
    settings = ["variation", tag, data_key, tensor_digest(x0), sigmas, int(n_directions), int(step), seed, method,
                gains.FD_STEP, gains.DIRECTION_SEED]
    return cached_rows("variation", settings, lambda: gains.jacobian_variation(
        denoiser, x0, sigmas, n_directions, seed=seed, method=method, device=device, step=step, batch=batch))


@dataclass(frozen=True)
class AcrossNoise:
    """Notebook 03's tables: gains and Jacobian variation of the network and of the training-set score."""

    network: pd.DataFrame
    training_set: pd.DataFrame
    network_variation: pd.DataFrame
    training_set_variation: pd.DataFrame


def across_noise(network, training_set, x0: torch.Tensor, stats: DatasetStats, scale: Scale, tag: str,
                 step: int = -1, device: torch.device | str = "cpu") -> AcrossNoise:
    """The network's gains on the probes `x0[:n_gain_probes]` at `gain_levels`, the training-set score's on
    `x0[:n_gain_reference_probes]` at `gain_reference_sigmas`, and both Jacobian variations. The training-set
    score is differentiated by central differences too (`REFERENCE_METHOD`): forward mode through its chunked
    log-sum-exp costs about 17 of its evaluations per derivative on a CPU (76 ms against 4.3 ms on 60,000 images),
    central differences 2, and the two agree on it (tests/test_gains.py)."""
    modes, levels = gain_modes(stats, scale), gain_levels(scale)
    probes, reference = x0[: scale.n_gain_probes], x0[: scale.n_gain_reference_probes]
    ref_levels, ref_tag = scale.gain_reference_sigmas, f"training-set/{len(training_set)}"
    return AcrossNoise(
        gain_rows(network, probes, levels, stats, modes, tag, step, device=device),
        gain_rows(training_set, reference, ref_levels, stats, modes, ref_tag, device=device, method=REFERENCE_METHOD),
        variation_rows(network, probes, levels, scale.n_gain_directions, tag, stats.key, step, device=device),
        variation_rows(training_set, reference, ref_levels, scale.n_gain_directions, ref_tag, stats.key,
                       device=device, method=REFERENCE_METHOD))


def gain_ratio_map(table: pd.DataFrame) -> pd.DataFrame:
    """gain_mean / gaussian_gain, sigma (rows, descending) by k (columns)."""
    ratio = table.assign(ratio=table["gain_mean"] / table["gaussian_gain"])
    return ratio.pivot(index="sigma", columns="k", values="ratio").sort_index(ascending=False)


@dataclass(frozen=True)
class LinearRange:
    """Walking down from the highest level where the variation is at most `threshold`: the last level of that run
    (`down_to`) and the next level below (`stops_at`, None: linear to the lowest level); `above` lists levels
    above the run where the variation exceeds the threshold too (rounding or network error at high noise)."""

    down_to: float | None
    stops_at: float | None
    above: tuple[float, ...]
    threshold: float

    @property
    def top(self) -> float | None:
        """The highest level of the run."""
        return None if self.down_to is None else self.run[0]

    run: tuple[float, ...] = ()

    def describe(self) -> str:
        if self.down_to is None:
            return f"at no probed level (variation > {self.threshold:.0%} everywhere)"
        below = "to the lowest level" if self.stops_at is None else f"not at sigma = {self.stops_at:g}"
        above = f" (above sigma = {self.top:g} it varies more: {len(self.above)} levels)" if self.above else ""
        return f"from sigma = {self.top:g} down to sigma = {self.down_to:g}, {below}{above}"


def linear_range(variation: pd.DataFrame, threshold: float = LINEAR_VARIATION) -> LinearRange:
    """Where a denoiser is one linear map (see the module docstring), from a `jacobian_variation` table."""
    levels = variation.sort_values("sigma", ascending=False)
    sig = levels["sigma"].to_numpy(dtype=np.float64)
    linear = levels["jvp_variation"].to_numpy(dtype=np.float64) <= threshold  # NaN: not linear
    if not linear.any():
        return LinearRange(None, None, tuple(sig.tolist()), threshold, ())
    first = int(np.argmax(linear))
    run_end = first + (int(np.argmin(linear[first:])) if not linear[first:].all() else len(linear) - first)
    stops = float(sig[run_end]) if run_end < len(sig) else None
    return LinearRange(float(sig[run_end - 1]), stops, tuple(sig[:first].tolist()), threshold,
                       tuple(sig[first:run_end].tolist()))


# --------------------------------------------------------------------------- notebook 04: across training


def pick_checkpoints(steps: Sequence[int], count: int) -> list[int]:
    """`count` of the checkpoint steps, the first and the last among them, the rest evenly spaced in the list."""
    steps = sorted(int(s) for s in steps)
    if count >= len(steps):
        return steps
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, max(count, 2))).astype(int))
    return [steps[i] for i in picks]


def levels_for_modes(eigvals: torch.Tensor, modes: Sequence[int],
                     grid: Sequence[float] = LINEARITY_SIGMAS) -> dict[float, list[int]]:
    """Each mode at the level of `grid` nearest sqrt(lambda_k) in log sigma (where its Gaussian gain is about 1/2),
    as {level: modes}."""
    grid = np.asarray(sorted(float(s) for s in grid))
    out: dict[float, list[int]] = {}
    for k in modes:
        lam = float(eigvals[int(k) - 1])
        level = float(grid[np.argmin(np.abs(np.log(grid) - 0.5 * math.log(max(lam, 1e-30))))])
        out.setdefault(level, []).append(int(k))
    return dict(sorted(out.items()))


def checkpoint_gains(network_at: Callable[[], object], x0: torch.Tensor, stats: DatasetStats,
                     plan: dict[float, list[int]], tag: str, step: int,
                     device: torch.device | str = "cpu") -> pd.DataFrame:
    """One checkpoint's gains, each mode only at its level of `plan` (`levels_for_modes`), cached as one table
    (`network_at()` loads the network only when the table is not cached)."""
    def compute() -> pd.DataFrame:
        network = network_at()
        parts = [gains.gain_table(network, x0, [level], stats, modes, seed=NOISE_SEED + i, device=device, step=step)
                 for i, (level, modes) in enumerate(plan.items())]
        return pd.concat(parts, ignore_index=True)

    settings = ["training", tag, stats.key, tensor_digest(x0), [[lv, ks] for lv, ks in plan.items()], int(step),
                NOISE_SEED, gains.FD_STEP]
    return cached_rows("training", settings, compute)


def across_training(history, x0: torch.Tensor, stats: DatasetStats, scale: Scale,
                    device: torch.device | str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Every picked checkpoint's gains (`checkpoint_gains`) of our run `history` (a `lib.study.Study`), stacked.

    Only the `decidable_modes` of the probe grid are followed: a mode whose sqrt(lambda_k) lies below the lowest
    level (lambda ~ 1e-8 for MNIST's tail) would be judged where its Gaussian gain is ~1e-4, below what a finite
    difference resolves, and would read "never learned" whatever the network does (decided before any network's
    numbers were seen, like the rest of the rule)."""
    from tqdm import tqdm

    plan = levels_for_modes(stats.eigvals, decidable_modes(stats, scale, LINEARITY_SIGMAS))
    steps = pick_checkpoints(history.checkpoint_steps(), scale.n_gain_checkpoints)
    probes = x0[: scale.n_gain_training_probes]
    tables = []
    for step in tqdm(steps, desc="gains by checkpoint", disable=not progress):
        tables.append(checkpoint_gains(lambda s=step: history.network(s), probes, stats, plan,
                                       network_tag(history, step), step, device))
    return pd.concat(tables, ignore_index=True)


def cumulative_learning_rate(rate: Callable[[int], float], total_steps: int) -> np.ndarray:
    """tau(step) = sum of the learning rate over steps 1..step (tau[0] = 0): training time in the units in which a
    gradient flow's learning time ~ 1 / lambda (a linear warm-up makes tau grow like step^2 while it lasts)."""
    return np.concatenate([[0.0], np.cumsum([rate(s) for s in range(1, total_steps + 1)])])


@dataclass(frozen=True)
class WarmupCheck:
    """Whether the warm-up confounds finding (b): how many fitted modes were learned within it, and the slope of
    log tau(learning step) on log lambda (tau: `cumulative_learning_rate`) beside the slope in steps."""

    warmup_steps: int
    n_within: int
    n_after: int
    tau_fit: gain_steps.LogLogFit | None

    def describe(self) -> str:
        tau = "too few modes to fit" if self.tau_fit is None else (
            f"slope {self.tau_fit.slope:.2f} [{self.tau_fit.ci_low:.2f}, {self.tau_fit.ci_high:.2f}]")
        return (f"{self.n_within} of {self.n_within + self.n_after} fitted modes learned within the "
                f"{self.warmup_steps:,}-step warm-up; in cumulative learning rate: {tau}")


def warmup_check(steps: pd.DataFrame, warmup_steps: int, tau: np.ndarray) -> WarmupCheck:
    """`WarmupCheck` of a `learning_steps` table (its learned modes); the slope in tau is fitted, like finding (b)'s
    in steps, only from `gain_findings.MIN_FITTED_MODES` bracketed modes up."""
    fitted = steps[steps["status"] == "learned"]
    within = int((fitted["step"] <= warmup_steps).sum())
    fit = None
    if len(fitted) >= gain_findings.MIN_FITTED_MODES:
        t_hi = tau[fitted["step"].to_numpy(dtype=int)]
        t_lo = tau[fitted["step_before"].to_numpy(dtype=int)]
        fit = gain_steps.loglog_fit(fitted["lambda"], t_hi, y_low=t_lo)
    return WarmupCheck(int(warmup_steps), within, len(fitted) - within, fit)


# --------------------------------------------------------------------------- notebook 06: emergence


def decidable_modes(stats: DatasetStats, scale: Scale, sigmas) -> np.ndarray:
    """The probed modes whose sqrt(lambda_k) lies within the trajectory's positive levels: a feature whose Gaussian
    half-decided level is below the last level (or above the first) cannot cross 1/2 inside the trajectory, and
    would pin sigma_half to the schedule's end whatever the sampler does (the Gaussian's own closed form included)."""
    modes = gain_modes(stats, scale)
    levels = np.asarray(sigmas, dtype=np.float64)
    levels = levels[levels > 0]
    root = np.sqrt(stats.eigvals[modes - 1].to(torch.float64).numpy())
    return modes[(root >= levels.min()) & (root <= levels.max())]


def emergence_tables(runs: dict[str, object], stats: DatasetStats, scale: Scale) -> dict[str, pd.DataFrame]:
    """`gain_steps.emergence_table` of each run (anything with `x0_hat` (S, B, ...) and `sigmas` (S,)), over the
    `decidable_modes` of the first run's levels."""
    modes = decidable_modes(stats, scale, next(iter(runs.values())).sigmas)
    return {name: gain_steps.emergence_table(run.x0_hat.detach().cpu(), run.sigmas, stats, modes)
            for name, run in runs.items()}

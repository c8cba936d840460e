"""Why plain Heun's FD rises with the number of levels on our network: the network at high noise swapped for the
Gaussian.

The hypothesis under test: above sigma ~ 16 the network denoises worse than the mean image (notebook 06's denoising
error; EDM trains on ln sigma ~ N(-1.2, 1.2^2), so sigma >= 16 is rarely seen in training), and a schedule of more
levels spends more evaluations there. The measurement runs the same plain Heun budgets from the same noise with the
network replaced by the Gaussian denoiser above a cutoff sigma_c (`GaussianAbove`): if FD stops rising with N once
the Gaussian does the high-noise steps, the network's high-noise error is what makes more steps worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from lib.analysis.metrics import FrechetReference
from lib.analysis.sample_quality import bootstrap_fds, paired_change
from lib.analysis.teleport_sweep import SweepInputs, sweep
from lib.diffusion.teleport import SAMPLERS
from lib.models.denoisers import Denoiser
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser

#: The cutoffs sigma_c tried (16: where the network's denoising error passes the mean image's; 10 and 30 around it;
#: 4: the Gaussian takes every evaluation down to where the top principal components are decided).
RISE_CUTOFFS = (4.0, 10.0, 16.0, 30.0)
#: Where the network's denoising error passes the mean image's (notebook 06): the evaluations above it are counted.
HIGH_NOISE = 16.0
RISE_COLUMNS = ["denoiser", "cutoff", "steps", "nfe", "evals_above_16", "network_evals", "n_samples", "fd", "kid",
                "rise", "ci_low", "ci_high", "ci_level"]


class GaussianAbove:
    """The denoiser `network` at sigma <= `cutoff` and `gaussian` at sigma > `cutoff`, sample by sample: each output
    row is exactly what one of the two returns for it."""

    def __init__(self, network: Denoiser, gaussian: GaussianDenoiser, cutoff: float) -> None:
        self.network, self.gaussian, self.cutoff = network, gaussian, float(cutoff)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(sigma, torch.Tensor) or sigma.numel() == 1:
            return self.gaussian(x, sigma) if float(sigma) > self.cutoff else self.network(x, sigma)
        above = sigma.reshape(-1) > self.cutoff
        out = torch.empty_like(x)
        if bool(above.any()):
            out[above] = self.gaussian(x[above], sigma.reshape(-1)[above]).to(x.dtype)
        if not bool(above.all()):
            out[~above] = self.network(x[~above], sigma.reshape(-1)[~above]).to(x.dtype)
        return out


def evaluation_sigmas(sampler: str, sigmas: torch.Tensor) -> list[float]:
    """The noise level of every denoiser evaluation `SAMPLERS[sampler]` makes on this schedule (one sample, a
    denoiser that returns zeros: the levels do not depend on the values)."""
    seen: list[float] = []

    def record(x, sigma):
        seen.append(float(sigma))
        return torch.zeros_like(x)

    SAMPLERS[sampler](record, torch.ones(1, 1, 1, 1, dtype=torch.float64), sigmas)
    return seen


def evaluations_above(sampler: str, n_levels: int, sigma: float) -> int:
    """How many of a plain run's denoiser evaluations (N Karras levels from sigma_max) are at a noise level > sigma."""
    return sum(s > sigma for s in evaluation_sigmas(sampler, karras_sigmas(n_levels)))


def rise_steps(levels: Sequence[int], count: int = 4, smallest: int = 6) -> tuple[int, ...]:
    """`count` budgets spread from the smallest of `levels` that is >= `smallest` (the smallest of all when fewer than
    two are) to the largest."""
    levels = sorted(set(levels))
    large = [n for n in levels if n >= smallest]
    low = large[0] if len(large) >= 2 else levels[0]
    return tuple(sorted({int(round(v)) for v in np.linspace(low, levels[-1], count)}))


def heun_rise(inputs: SweepInputs, steps: Sequence[int], cutoffs: Sequence[float] = RISE_CUTOFFS, seed: int = 0,
              n_samples: int = 500, n_boot: int = 200, level: float = 0.95, progress: bool = True) -> pd.DataFrame:
    """Plain Heun at each number of levels in `steps`, from the same noise (seed), with the sweep's network
    (`inputs`, as for `lib.analysis.teleport_sweep.sweep`) and with `GaussianAbove(network, gaussian, c)` for each
    cutoff c: one row each (RISE_COLUMNS), with FD and KID, the evaluations at sigma > 16 and those the network makes,
    and the *rise* FD(largest N) - FD(N), paired (same noise, same samples), with its bootstrap interval at `level`.
    The runs are the sweep's (cached with its `cache_tag`: the network's are the teleportation sweep's plain runs)."""
    ref = FrechetReference(inputs.reference)
    budgets = [("heun", int(n)) for n in sorted(steps)]
    largest = budgets[-1][1]
    rows = []
    for cutoff in (None, *cutoffs):
        runs = inputs if cutoff is None else replace(
            inputs, network=GaussianAbove(inputs.network, inputs.gaussian, cutoff),
            cache_tag=None if inputs.cache_tag is None else f"{inputs.cache_tag}/gaussian-above-{cutoff:g}")
        result = sweep(runs, budgets, (0.0,), (seed,), n_samples, progress=progress)
        fds = dict(zip(result.table["steps"], result.table["fd"], strict=True))
        reps = {n: bootstrap_fds(result.features[("heun", n, 0, seed, "none")], ref, n_boot, stream=seed)
                for _, n in budgets}
        for _, row in result.table.iterrows():
            n = int(row["steps"])
            rise = paired_change([fds[n]], [fds[largest]], [reps[n]], [reps[largest]], level)
            replaced = 0 if cutoff is None else evaluations_above("heun", n, cutoff)
            rows.append({"denoiser": "network" if cutoff is None else f"Gaussian above {cutoff:g}",
                         "cutoff": np.nan if cutoff is None else float(cutoff), "steps": n, "nfe": int(row["nfe"]),
                         "evals_above_16": evaluations_above("heun", n, HIGH_NOISE),
                         "network_evals": int(row["nfe"]) - replaced, "n_samples": n_samples, "fd": float(row["fd"]),
                         "kid": float(row["kid"]), "rise": rise.change, "ci_low": rise.low, "ci_high": rise.high,
                         "ci_level": level})
    return pd.DataFrame(rows, columns=RISE_COLUMNS)


def rise_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per denoiser: the N with the lowest FD below the largest N (the best), FD there and at the largest N, the
    paired rise between them with its interval, and whether FD rises after the best N (the interval above 0), falls
    (below 0) or stays flat. (The best N is picked on the same samples, which favours a rise a little.)"""
    rows = []
    for name, runs in table.groupby("denoiser", sort=False):
        runs = runs.sort_values("steps")
        last, best = runs.iloc[-1], runs.iloc[:-1].loc[runs.iloc[:-1]["fd"].idxmin()]
        rows.append({"denoiser": name, "best N": int(best["steps"]), "largest N": int(last["steps"]),
                     "fd_best": float(best["fd"]), "fd_largest": float(last["fd"]), "rise": float(best["rise"]),
                     "ci_low": float(best["ci_low"]), "ci_high": float(best["ci_high"]),
                     "trend": "rises" if best["ci_low"] > 0 else "falls" if best["ci_high"] < 0 else "flat"})
    return pd.DataFrame(rows)


def removes_rise(summary: pd.DataFrame, denoiser: str) -> bool:
    """Whether replacing the network by the Gaussian above a cutoff (`denoiser`, a row of `rise_summary`) removes the
    network's rise: the network's rise is resolved (interval above 0) and the replaced run's rise is smaller beyond
    its own uncertainty (the upper end of its interval below the network's rise). An interval that merely reaches 0
    while its point estimate stays at the network's does not count: that is a rise no smaller, measured less
    precisely."""
    rows = summary.set_index("denoiser")
    network, replaced = rows.loc["network"], rows.loc[denoiser]
    return bool(network["ci_low"] > 0 and replaced["ci_high"] < network["rise"])


def rise_takeaway(summary: pd.DataFrame) -> str:
    """One paragraph for notebook 07: the network's rise after its best N and, for each cutoff, the rise with the
    Gaussian above it and whether that removes the network's (`removes_rise`)."""
    rows = summary.set_index("denoiser")
    network = rows.loc["network"]

    def rise_text(row: pd.Series) -> str:
        return (f"{row['rise']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}] from N = {int(row['best N'])} "
                f"to {int(row['largest N'])}")

    text = f"With the network, FD {network['trend']} after its best N: {rise_text(network)}."
    if network["trend"] != "rises":
        return text + " No resolved rise to explain at this sample size."
    cutoffs = [name for name in rows.index if name != "network"]
    parts = [f"{name}: {rise_text(rows.loc[name])}" for name in cutoffs]
    removing = [name for name in cutoffs if removes_rise(summary, name)]
    verdict = (f"The rise is removed with the {', '.join(removing)}: the network's error there explains it."
               if removing else "No cutoff makes the rise smaller beyond its uncertainty: the network's error at high "
               "noise does not explain it.")
    return text + " With the Gaussian above a cutoff: " + "; ".join(parts) + ". " + verdict

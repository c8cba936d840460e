"""Analytical teleportation (claim C6): replace a sampler's first steps by the closed-form Gaussian jump.

For Gaussian data N(mu, U diag(lambda) U^T) the probability-flow ODE is solved in closed form,

    x(sigma) = mu + U diag(sqrt((sigma^2 + lambda) / (sigma_T^2 + lambda))) U^T (x_T - mu),

so a sampler of N noise levels can start at level k: jump from x_T (sigma_T = 80) to sigma_k with no
network evaluation, then run the sampler on the N - k levels left (and the final 0). Because a Karras
schedule is linear in sigma^(1/rho), its tail from level k *is* `teleport_schedule(N - k, sigma_k)`: the
teleported run takes exactly the steps of the full run below sigma_k, and saves 2k evaluations with
Heun (k with one-evaluation-per-step samplers).

This module runs one configuration (sampler, N, skip k, seed) on a network in batches, scores its samples
by the Frechet distance and KID in the feature space of the suite's MNIST classifier (`lib.features`)
against the test set, sweeps a grid of configurations into one table (cached per configuration, so a
crashed sweep resumes), and measures the samplers' convergence order on Gaussian data, where the jump is
exact. Initial noise depends only on the seed (`initial_noise`): every skip and every budget of one seed
starts from the same x_T, so skips are compared on common random numbers.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm import tqdm

from lib import paths
from lib.denoisers import Denoiser
from lib.edm import SIGMA_MAX, SIGMA_MIN, karras_sigmas
from lib.features import MnistClassifier, extract_features
from lib.gaussian import GaussianDenoiser
from lib.metrics import frechet_distance_from_features, kernel_inception_distance
from lib.samplers import SAMPLERS, convergence_errors, nfe, skip_to_sigma, teleport_schedule
from lib.verdicts import loglog_slope, round_half_up

#: The columns of `data/results/teleportation.csv`, in order.
TABLE_COLUMNS = ["sampler", "steps", "skip", "sigma_skip", "nfe", "n_samples", "seed", "fd", "kid", "wall_s"]
SAMPLER_LABELS = {"heun": "Heun (EDM)", "dpmpp_2m": "DPM-Solver++(2M)", "unipc": "UniPC (bh2, order 2)",
                  "euler": "Euler"}
KID_SUBSETS = 20
CACHE_VERSION = 1


# --------------------------------------------------------------------------- the grid


def skip_grid(n_levels: int, fractions: Sequence[float]) -> list[int]:
    """Skips k = round(f * N) for each fraction f (halves up), deduplicated, sorted, kept to k <= N - 2.

    k <= N - 2 leaves at least two positive levels, so the jump lands above sigma_min.
    """
    if n_levels < 2:
        raise ValueError(f"need at least 2 noise levels, got {n_levels}")
    if any(not 0 <= f <= 1 for f in fractions):
        raise ValueError(f"skip fractions must lie in [0, 1], got {list(fractions)}")
    return sorted({k for k in (round_half_up(f * n_levels) for f in fractions) if k <= n_levels - 2})


def initial_noise(seed: int, n: int, shape: Sequence[int], sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """x_T = sigma_max * randn from a generator seeded with `seed` (CPU, float32): common random numbers."""
    generator = torch.Generator().manual_seed(int(seed))
    return sigma_max * torch.randn((n, *shape), generator=generator, dtype=torch.float32)


def skip_schedule(n_levels: int, skip: int, sigma_min: float = SIGMA_MIN,
                  sigma_max: float = SIGMA_MAX) -> tuple[float, torch.Tensor]:
    """(sigma_skip, schedule) for "skip k of N levels": sigma_k of karras_sigmas(N) and the N - k levels
    left (then 0). skip = 0 is the plain run from sigma_max."""
    if skip == 0:
        return float(sigma_max), karras_sigmas(n_levels, sigma_min=sigma_min, sigma_max=sigma_max)
    sigma_skip = skip_to_sigma(n_levels, skip, sigma_min=sigma_min, sigma_max=sigma_max)
    return sigma_skip, teleport_schedule(n_levels - skip, sigma_skip, sigma_min=sigma_min)


# --------------------------------------------------------------------------- one configuration


@dataclass(frozen=True)
class TeleportRun:
    """Samples of one (sampler, N, skip, seed) configuration and what they cost."""

    samples: torch.Tensor  # (n, C, H, W), float32, CPU
    sigma_skip: float
    nfe: int  # network evaluations per sample
    wall_s: float  # jump + sampling, all batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def run_configuration(
    network: Denoiser, gaussian: GaussianDenoiser, sampler: str, n_levels: int, skip: int, seed: int,
    n_samples: int, shape: Sequence[int], batch_size: int = 100, device: torch.device | str = "cpu",
    sigma_max: float = SIGMA_MAX, sigma_min: float = SIGMA_MIN,
) -> TeleportRun:
    """Sample `n_samples` images: jump from x_T = initial_noise(seed) to sigma_skip (skip > 0), then run
    `SAMPLERS[sampler]` with `network` on the N - skip levels left, in batches, in fp32.

    Identical to `lib.samplers.sample_with_teleport` per sample; the jump operator is built once for the
    whole set and its cost is included in `wall_s`.
    """
    device = torch.device(device)
    fn = SAMPLERS[sampler]
    sigma_skip, sigmas = skip_schedule(n_levels, skip, sigma_min, sigma_max)
    x_t = initial_noise(seed, n_samples, shape, sigma_max).to(device)
    _sync(device)
    start = time.perf_counter()
    x = x_t if skip == 0 else gaussian.jump(x_t, sigma_max, sigma_skip)
    out = [fn(network, chunk, sigmas.to(device)).float().cpu() for chunk in x.split(batch_size)]
    _sync(device)
    wall = time.perf_counter() - start
    return TeleportRun(torch.cat(out), float(sigma_skip), nfe(sampler, sigmas), wall)


# --------------------------------------------------------------------------- scoring


def score_features(features: torch.Tensor, reference: torch.Tensor, kid_subsets: int = KID_SUBSETS,
                   seed: int = 0) -> dict[str, float]:
    """FD and KID (mean over subsets of min(len(features), len(reference)) samples) against `reference`."""
    if not bool(torch.isfinite(features).all()):
        return {"fd": float("nan"), "kid": float("nan")}
    kid, _ = kernel_inception_distance(features, reference, n_subsets=kid_subsets,
                                       subset_size=len(features), seed=seed)
    return {"fd": frechet_distance_from_features(features, reference), "kid": kid}


def feature_floor(classifier: MnistClassifier, images: torch.Tensor, reference: torch.Tensor, n: int,
                  seeds: Sequence[int], kid_subsets: int = KID_SUBSETS) -> pd.DataFrame:
    """FD and KID of `n` random `images` (e.g. the training set) against `reference` features, per seed:
    the best a sampler can score at this sample size (the feature-space floor)."""
    rows = []
    for seed in seeds:
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:n]
        scores = score_features(extract_features(classifier, images[idx]), reference, kid_subsets, seed=int(seed))
        rows.append({"seed": int(seed), "n_samples": n, **scores})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the sweep


@dataclass
class TeleportSweep:
    """The result table (TABLE_COLUMNS), the first samples of every configuration, and a finiteness flag."""

    table: pd.DataFrame
    previews: dict[tuple[str, int, int, int], torch.Tensor] = field(default_factory=dict)
    all_finite: bool = True


def configurations(budgets: Sequence[tuple[str, int]], fractions: Sequence[float],
                   seeds: Sequence[int]) -> list[tuple[str, int, int, int]]:
    """(sampler, N, skip, seed) for every budget, skip of its grid and seed, seeds outermost."""
    return [(name, n, k, int(seed)) for seed in seeds for name, n in budgets for k in skip_grid(n, fractions)]


def _cache_key(tag: str, sampler: str, n_levels: int, skip: int, seed: int, n_samples: int, device: str) -> str:
    blob = json.dumps([CACHE_VERSION, tag, sampler, n_levels, skip, seed, n_samples, device])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sweep(
    network: Denoiser, gaussian: GaussianDenoiser, classifier: MnistClassifier, reference: torch.Tensor,
    budgets: Sequence[tuple[str, int]], fractions: Sequence[float], seeds: Sequence[int], n_samples: int,
    shape: Sequence[int], cache_tag: str | None = None, batch_size: int = 100,
    device: torch.device | str = "cpu", keep: int = 8, progress: bool = True,
) -> TeleportSweep:
    """Run and score every configuration; one row per (sampler, N, skip, seed).

    `cache_tag` (e.g. the checkpoint tag plus the statistics and classifier keys) turns on a cache of
    each configuration's features, first `keep` samples, NFE and wall time under
    `data/cache/teleportation/`, so an interrupted sweep resumes where it stopped (wall times are then
    the ones measured when each configuration first ran). None: no cache.
    """
    device = torch.device(device)
    configs = configurations(budgets, fractions, seeds)
    folder = paths.cache_dir("teleportation") if cache_tag is not None else None
    rows, previews, finite = [], {}, True
    bar = tqdm(configs, desc="teleportation sweep", disable=not progress)
    for sampler, n_levels, skip, seed in bar:
        bar.set_postfix_str(f"{sampler} N={n_levels} k={skip} seed={seed}", refresh=False)
        entry = None
        if folder is not None:
            path = folder / f"{_cache_key(cache_tag, sampler, n_levels, skip, seed, n_samples, device.type)}.pt"
            if path.exists():
                try:
                    entry = torch.load(path, weights_only=True)
                except Exception as exc:
                    print(f"[teleportation] {path.name} unreadable ({type(exc).__name__}); rerunning", file=sys.stderr)
        if entry is None:
            run = run_configuration(network, gaussian, sampler, n_levels, skip, seed, n_samples, shape,
                                    batch_size=batch_size, device=device)
            entry = {"features": extract_features(classifier, run.samples), "preview": run.samples[:keep].clone(),
                     "finite": bool(torch.isfinite(run.samples).all()), "sigma_skip": run.sigma_skip,
                     "nfe": run.nfe, "wall_s": run.wall_s}
            if folder is not None:
                with paths.atomic_path(path) as tmp:
                    torch.save(entry, tmp)
        finite = finite and bool(entry["finite"])
        previews[(sampler, n_levels, skip, seed)] = entry["preview"]
        scores = score_features(entry["features"], reference, seed=seed)
        rows.append({"sampler": sampler, "steps": n_levels, "skip": skip, "sigma_skip": float(entry["sigma_skip"]),
                     "nfe": int(entry["nfe"]), "n_samples": n_samples, "seed": seed, **scores,
                     "wall_s": float(entry["wall_s"])})
    return TeleportSweep(pd.DataFrame(rows, columns=TABLE_COLUMNS), previews, finite)


def paired_change(table: pd.DataFrame) -> pd.Series:
    """FD minus the FD of the same seed's skip-0 run of the same budget (common noise): one value per row."""
    base = table[table["skip"] == 0].set_index(["sampler", "steps", "seed"])["fd"]
    keys = pd.MultiIndex.from_frame(table[["sampler", "steps", "seed"]])
    return pd.Series(table["fd"].to_numpy() - base.reindex(keys).to_numpy(), index=table.index, name="fd_change")


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (ddof = 1) per (sampler, N, skip) of FD, KID, wall time, and of
    the paired FD change against skip 0 from the same noise (`fd_change`)."""
    keys = ["sampler", "steps", "skip", "sigma_skip", "nfe"]
    grouped = table.assign(fd_change=paired_change(table)).groupby(keys, sort=False)
    out = grouped[["fd", "kid", "fd_change", "wall_s"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["n_seeds"] = grouped.size()
    return out.reset_index().fillna({c: 0.0 for c in out.columns if c.endswith("_std")})


# --------------------------------------------------------------------------- convergence on Gaussian data


def sampler_convergence(gaussian: GaussianDenoiser, samplers: Sequence[str], step_counts: Sequence[int],
                        n: int = 8, seed: int = 0, sigma_max: float = SIGMA_MAX,
                        sigma_min: float = SIGMA_MIN) -> pd.DataFrame:
    """Each sampler's error against the closed-form endpoint at sigma_min, with the Gaussian as the model.

    x_T = initial_noise(seed, n); error = max over samples of ||x - x_exact|| / ||x_exact|| on a Karras
    schedule of n levels from sigma_max to sigma_min (no final step to 0), as in `convergence_errors`.
    Pass a float64 model so that round-off stays below the smallest error.
    """
    x_t = initial_noise(seed, n, gaussian.shape, sigma_max).to(device=gaussian.mean.device, dtype=gaussian.dtype)
    exact = gaussian.jump(x_t, sigma_max, sigma_min)
    rows = []
    for name in samplers:
        errors = convergence_errors(SAMPLERS[name], gaussian, x_t, list(step_counts), exact,
                                    sigma_min=sigma_min, sigma_max=sigma_max)
        rows += [{"sampler": name, "steps": int(s), "error": float(e)}
                 for s, e in zip(step_counts, errors, strict=True)]
    return pd.DataFrame(rows)


def fitted_orders(convergence: pd.DataFrame, min_steps: int = 16) -> dict[str, float]:
    """Order p of error ~ steps^-p per sampler: least-squares slope on log-log axes over step counts
    >= min_steps (all of them when fewer than two qualify; the first steps are pre-asymptotic)."""
    orders = {}
    for name, rows in convergence.groupby("sampler", sort=False):
        fit = rows[rows["steps"] >= min_steps]
        fit = fit if len(fit) >= 2 else rows
        orders[name] = -loglog_slope(fit["steps"], fit["error"])
    return orders

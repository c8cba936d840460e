"""Analytical teleportation (claim C6): replace a sampler's first steps by the closed-form Gaussian jump.

For Gaussian data N(mu, U diag(lambda) U^T) the probability-flow ODE is solved in closed form,

    x(sigma) = mu + U diag(sqrt((sigma^2 + lambda) / (sigma_T^2 + lambda))) U^T (x_T - mu),

so a sampler of N noise levels can start at level k: jump from x_T (sigma_T = 80) to sigma_k with no
network evaluation, then run the sampler on the N - k levels left (and the final 0). Because a Karras
schedule is linear in sigma^(1/rho), its tail from level k *is* `teleport_schedule(N - k, sigma_k)`: the
teleported run takes exactly the steps of the full run below sigma_k, and saves 2k evaluations with
Heun (k with one-evaluation-per-step samplers).

This module runs one configuration (`Config`: sampler, N, skip k, seed, jump) on a network in batches through the
library's teleporting sampler (`lib.diffusion.teleport.sample_with_teleport`), scores its samples by the Frechet
distance and KID in the feature space of the study's feature network against the test set (`score_features`: the
scale's MNIST classifier, a classifier trained on another dataset's labels, or the FID Inception network; see
`lib.study.Study.classifier`), and lays out the grid of configurations that `lib.analysis.teleport_sweep` sweeps into
one table (cached per configuration, so a crashed sweep resumes). Initial noise depends only on the seed
(`initial_noise`): every skip and every budget of one seed starts from the same x_T, so skips are compared on common
random numbers.

Two controls start the same truncated schedule without the full Gaussian: the isotropic Gaussian's jump
(`jump="isotropic"`: mean + std model, one gain sqrt((sigma^2 + v)/(sigma_T^2 + v)) for every direction, close
to an "analytical first step") and no jump at all (`jump="noise"`: x = (sigma_skip / sigma_T) x_T, pure noise
at sigma_skip, what a naive skip does; `lib.diffusion.teleport.NoJump`). Quality is judged on the paired change in
FD against the plain run from the same noise, with a bootstrap interval over samples (`lib.analysis.teleport_pairs`,
`lib.analysis.sample_quality`); `lib.analysis.teleport_sweep.extend` gives chosen configurations more samples from the
same noise streams (the second stage of the verdict).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd
import torch

from lib.analysis.features import FeatureClassifier, extract_features
from lib.analysis.metrics import frechet_distance_from_features, kernel_inception_distance
from lib.core.numerics import round_half_up
from lib.diffusion.sampler_records import RECORDS
from lib.diffusion.teleport import (
    SAMPLERS,
    JumpModel,
    NoJump,
    nfe,
    sample_with_teleport,
    skip_to_sigma,
    teleport_schedule,
)
from lib.models.denoisers import Denoiser
from lib.models.edm import SIGMA_MAX, SIGMA_MIN, karras_sigmas
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import IsotropicGaussianDenoiser

#: The columns of `data/results/teleportation.csv`, in order.
TABLE_COLUMNS = ["sampler", "steps", "skip", "jump", "sigma_skip", "nfe", "n_samples", "seed", "fd", "kid", "wall_s"]
#: How a run reaches sigma_skip: the full Gaussian's closed form, the isotropic Gaussian's, or pure noise
#: (no jump); "none" for the plain run (skip 0).
JUMPS = ("gaussian", "isotropic", "noise")
JUMP_LABELS = {"gaussian": "Gaussian jump", "isotropic": "isotropic jump (control)",
               "noise": "noise at σ_skip (control)", "none": "no skip"}
SAMPLER_LABELS = {name: r.label for name, r in RECORDS.items()}
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


def initial_noise(seed: int, n: int, shape: Sequence[int], sigma_max: float = SIGMA_MAX,
                  first: int = 0) -> torch.Tensor:
    """x_T = sigma_max * randn from a generator seeded with `seed` (CPU, float32): common random numbers.

    Samples `first` to `first + n` of the seed's stream: `initial_noise(seed, a)` followed by
    `initial_noise(seed, b, first=a)` are the `a + b` samples of `initial_noise(seed, a + b)`, so a sample set can
    be extended later with fresh noise (`extend`). torch's generator gives that prefix property when one sample has
    a multiple of 16 elements (28 x 28, 32 x 32, 3 x 32 x 32 ...); for other shapes `first > 0` is refused.
    """
    if n < 0 or first < 0:
        raise ValueError(f"the number of samples and the first sample must be >= 0, got n={n}, first={first}")
    generator = torch.Generator().manual_seed(int(seed))
    noise = sigma_max * torch.randn((first + n, *shape), generator=generator, dtype=torch.float32)
    if first and not torch.equal(noise[:first], initial_noise(seed, first, shape, sigma_max)):
        raise ValueError(f"samples of shape {tuple(shape)} cannot be extended: torch's generator does not give the "
                         f"first {first} samples of a longer stream the same values; run all samples at once")
    return noise[first:]


def skip_schedule(n_levels: int, skip: int, sigma_min: float = SIGMA_MIN,
                  sigma_max: float = SIGMA_MAX) -> tuple[float, torch.Tensor]:
    """(sigma_skip, schedule) for "skip k of N levels": sigma_k of karras_sigmas(N) and the N - k levels
    left (then 0). skip = 0 is the plain run from sigma_max."""
    if skip == 0:
        return float(sigma_max), karras_sigmas(n_levels, sigma_min=sigma_min, sigma_max=sigma_max)
    sigma_skip = skip_to_sigma(n_levels, skip, sigma_min=sigma_min, sigma_max=sigma_max)
    return sigma_skip, teleport_schedule(n_levels - skip, sigma_skip, sigma_min=sigma_min)


# --------------------------------------------------------------------------- one configuration


class Config(NamedTuple):
    """One run of a sweep: a sampler on N levels, skipping the first k by a jump, from one seed's noise.

    Immutable, hashable and ordered like the plain tuple (sampler, N, skip, seed, jump) it is, so that a sweep's
    `features` and `previews` are found by either (`result.features[("heun", 6, 0, 0, "none")]`) and configurations
    unpack as before; its fields are named. The cache keys of `lib.analysis.teleport_sweep` read the fields.
    """

    sampler: str
    steps: int  # N, the levels of the full schedule
    skip: int  # k, the levels replaced by the jump (0: the plain run)
    seed: int  # the noise stream (`initial_noise`)
    jump: str  # one of JUMPS, or "none" for the plain run


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


def isotropic_twin(gaussian: GaussianDenoiser) -> IsotropicGaussianDenoiser:
    """The mean + std model of the same data: N(mu, v I) with v = tr(Sigma) / d (the control jump)."""
    return IsotropicGaussianDenoiser(gaussian.mean, float(gaussian.eigvals.sum()) / gaussian.dim, gaussian.shape,
                                     dtype=gaussian.dtype, device=gaussian.mean.device)


def jump_model(jump: str, gaussian: GaussianDenoiser | None) -> JumpModel:
    """What a run skipping levels jumps with (`lib.diffusion.teleport.sample_with_teleport`): the Gaussian's closed
    form, its isotropic twin's, or `NoJump` (x_T rescaled to pure noise at sigma_skip)."""
    if jump == "gaussian":
        return gaussian
    if jump == "isotropic":
        return isotropic_twin(gaussian)
    if jump == "noise":
        return NoJump()
    raise ValueError(f"unknown jump {jump!r}; choose one of {', '.join(JUMPS)}")


@torch.no_grad()
def run_configuration(
    network: Denoiser, gaussian: GaussianDenoiser | None, config: Config, n_samples: int, shape: Sequence[int],
    batch_size: int = 100, device: torch.device | str = "cpu", first: int = 0,
    sampler_options: Mapping[str, Any] | None = None,
) -> TeleportRun:
    """Sample `n_samples` images of one configuration (`Config`: sampler, N, skip k, seed, jump): from
    x_T = initial_noise(seed) at sigma_max (its samples `first` to `first + n_samples`), reach sigma_skip by the jump
    (k > 0; see `jump_model`), then run the sampler with `network` on the N - k levels left down to sigma_min, in
    batches, in fp32. `sampler_options`: keyword arguments of the sampler (what its record `needs`, e.g.
    DPM-Solver-v3's `ems`).

    The run is `lib.diffusion.teleport.sample_with_teleport` with the jump model of `jump` (`jump_model`): the jump is
    made once for the whole set, its cost (and that of building its model) included in `wall_s`.
    """
    c, device = Config(*config), torch.device(device)
    sigma_skip, sigmas = skip_schedule(c.steps, c.skip)
    x_t = initial_noise(c.seed, n_samples, shape, first=first).to(device)
    _sync(device)
    start = time.perf_counter()
    model = None if c.skip == 0 else jump_model(c.jump, gaussian)
    x = sample_with_teleport(SAMPLERS[c.sampler], network, model, x_t, SIGMA_MAX, sigma_skip, c.steps - c.skip,
                             sigma_min=SIGMA_MIN, batch_size=batch_size, **(sampler_options or {}))
    samples = x.float().cpu()
    _sync(device)
    wall = time.perf_counter() - start
    return TeleportRun(samples, float(sigma_skip), nfe(c.sampler, sigmas), wall)


# --------------------------------------------------------------------------- scoring


def score_features(features: torch.Tensor, reference: torch.Tensor, kid_subsets: int = KID_SUBSETS,
                   seed: int = 0) -> dict[str, float]:
    """FD and KID (mean over subsets of min(len(features), len(reference)) samples) against `reference`."""
    if not bool(torch.isfinite(features).all()):
        return {"fd": float("nan"), "kid": float("nan")}
    kid, _ = kernel_inception_distance(features, reference, n_subsets=kid_subsets,
                                       subset_size=len(features), seed=seed)
    return {"fd": frechet_distance_from_features(features, reference), "kid": kid}


def feature_floor(classifier: FeatureClassifier, images: torch.Tensor, reference: torch.Tensor, n: int,
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


def describe_config(config: Config) -> str:
    """A configuration as a progress bar shows it."""
    c = Config(*config)
    return f"{c.sampler} N={c.steps} k={c.skip} {c.jump} seed={c.seed}"


@dataclass
class TeleportSweep:
    """The result table (TABLE_COLUMNS), each configuration's sample features and first samples, keyed by its
    `Config` (sampler, N, skip, seed, jump), and a finiteness flag."""

    table: pd.DataFrame
    previews: dict[Config, torch.Tensor] = field(default_factory=dict)
    features: dict[Config, torch.Tensor] = field(default_factory=dict)
    all_finite: bool = True


def configurations(budgets: Sequence[tuple[str, int]], fractions: Sequence[float], seeds: Sequence[int],
                   jumps: Sequence[str] = ("gaussian",)) -> list[Config]:
    """(sampler, N, skip, seed, jump) for every budget, skip of its grid, seed and jump (skip 0 once, with
    jump "none"), seeds outermost."""
    unknown = sorted(set(jumps) - set(JUMPS))
    if unknown:
        raise ValueError(f"unknown jumps {unknown}; choose from {', '.join(JUMPS)}")
    return [Config(name, n, k, int(seed), jump) for seed in seeds for name, n in budgets
            for k in skip_grid(n, fractions) for jump in (("none",) if k == 0 else jumps)]


def equal_nfe_budgets(budgets: Sequence[tuple[str, int]], fractions: Sequence[float]) -> list[tuple[str, int]]:
    """The plain budgets (sampler, N - k) with the NFE of each skipped run (N, k > 0) of the grid: a teleported run
    on N - k levels below sigma_skip costs what a plain run of N - k levels from sigma_max costs (Heun: 2(N - k) - 1
    evaluations, DPM-Solver++(2M) and UniPC: N - k), its equal-cost control. The budgets themselves left out."""
    own = set(budgets)
    needed = {(name, n - k) for name, n in budgets for k in skip_grid(n, fractions) if k > 0}
    return sorted(needed - own)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (ddof = 1) of FD, KID and wall time per (sampler, N, skip, jump)."""
    keys = ["sampler", "steps", "skip", "jump", "sigma_skip", "nfe"]
    grouped = table.groupby(keys, sort=False)
    out = grouped[["fd", "kid", "wall_s"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["n_seeds"] = grouped.size()
    return out.reset_index().fillna({c: 0.0 for c in out.columns if c.endswith("_std")})

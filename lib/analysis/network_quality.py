"""What a trained network can and cannot support: three measures of one denoiser, cached by its checkpoint.

1. **Confident samples.** N samples of EDM's plain Heun sampler with 18 noise levels (35 evaluations) from fixed seed
   noise (`teleportation.initial_noise`, the noise of notebook 07's plain runs) are read by the suite's feature
   classifier (`lib.analysis.features`, the MNIST CNN whose features give the FD). A sample is *confident* when

       max_c softmax(f(x))_c >= CONFIDENCE = 0.9,

   i.e. the classifier puts at least 90% of its probability on one digit. The share of confident samples is set
   beside the same share on the held-out test digits, which a network whose samples are digits should approach.
   0.9 is loose enough that most real digits pass and strict enough that a sample the classifier splits between
   two digits does not.
2. **Denoising error on held-out images** across sigma: MSE(sigma) = E ||D(x0 + sigma n; sigma) - x0||^2 / d on
   test images, the same noise for every model (`trajectories.denoising_errors`), for the network, the mean image
   (D = mu, the ideal answer as sigma -> inf) and the Gaussian. The network is *worse than the mean* at sigma when
   its excess MSE_net / MSE_mean - 1 is positive by more than Z_WORSE = 2 paired standard errors,

       se = std_i(e_net,i - e_mean,i) / sqrt(n) / MSE_mean     (e: per-image errors, same images and noise),

   so that a denoiser returning the mean is worse nowhere. EDM's training noise, ln sigma ~ N(-1.2, 1.2^2), draws
   sigma >= HIGH_SIGMA = 16 with probability ~5e-4, so the levels above it are where the network had little practice
   (and where C5's x0_hat at sigma >= 10 and C6's Heun runs start). The weighted loss lambda(sigma) MSE, lambda =
   1 / c_out^2, is the training loss per level.
3. **FD against the number of Heun levels**: FD (and KID) in the classifier's features against the test set of plain
   Heun at N = 6, 8, 10, 12, 14, 18 levels (NFE = 2N - 1) from the same noise. For an accurate network FD falls
   towards a floor as N grows; a rise with N says the sampler's extra steps at high noise follow a wrong field.
   Each N's rise FD(18) - FD(N) comes with a 95% paired bootstrap interval over samples (the same resampled
   samples for both N, `lib.analysis.sample_quality`): a rise is resolved when its interval excludes 0.

`measure` gives one network's tables (cached atomically under `data/cache/network_quality/` by the network's key,
e.g. `checkpoint_key`: the sha256 of its checkpoint file, and every setting), `summary` its headline numbers and
`compare` several networks side by side (the 4,000- and the 8,000-step run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lib.analysis.features import extract_features
from lib.analysis.metrics import FrechetReference
from lib.analysis.sample_quality import bootstrap_fds, paired_change
from lib.analysis.teleportation import Config, run_configuration, score_features
from lib.analysis.trajectories import denoising_errors, worse_than
from lib.core import integrity, paths
from lib.core.config import Scale
from lib.diffusion.checkpoints import checkpoint_path
from lib.diffusion.train_config import TrainConfig
from lib.models import edm
from lib.models.denoisers import Denoiser
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import MeanDenoiser

CACHE_VERSION = 1
CONFIDENCE = 0.9
HIGH_SIGMA = 16.0
Z_WORSE = 2.0
HEUN_LEVELS: tuple[int, ...] = (6, 8, 10, 12, 14, 18)
RISE_FROM = 10  # the summary's FD rise: from N = 10 (notebook 07's smaller Heun budget) to the largest N
#: the low and middle noise levels where C3 (the Gaussian fit's rise) and C4 (coarse mixture or training set) are read:
#: notebook 02 compares two training lengths by their mean loss there (`band_loss`)
C3_C4_BAND = (0.1, 2.0)
#: notebook 02's noise levels of the loss per level: 21 from 0.002 to 80, four of them >= 16
EVAL_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.002, 80.0, 21))


@dataclass(frozen=True)
class Settings:
    """How much is measured: samples per Heun budget, held-out images and noise levels of the error, seeds."""

    n_samples: int = 500
    levels: tuple[int, ...] = HEUN_LEVELS
    n_eval: int = 256
    sigmas: tuple[float, ...] = EVAL_SIGMAS
    threshold: float = CONFIDENCE
    seed: int = 0
    batch_size: int = 100
    n_boot: int = 200

    @classmethod
    def of(cls, scale: Scale) -> Settings:
        """The scale's settings: as many samples and bootstrap resamples as C6's runs (`n_teleport_samples`: 500,
        `n_bootstrap`: 200 by default)."""
        return cls(n_samples=scale.n_teleport_samples, n_boot=scale.n_bootstrap)


@dataclass
class Reference:
    """What every network is measured against: the classifier (and its cache key), the training statistics (mean
    image, Gaussian) and the test images with their features and confident share, computed once."""

    classifier: torch.nn.Module
    classifier_key: str
    stats: object  # lib.data.statistics.DatasetStats of the training set
    x_test: torch.Tensor
    features: torch.Tensor = field(init=False)
    test_confident: float = field(init=False)
    threshold: float = CONFIDENCE

    def __post_init__(self) -> None:
        self.features = extract_features(self.classifier, self.x_test)
        self.test_confident = confident_share(self.classifier, self.x_test, self.threshold)


@dataclass
class NetworkQuality:
    """One network's tables: `confident` (set, n, share), `denoising` (model, sigma, mse, weighted), `excess` over
    the mean image's MSE (sigma, excess, se, worse) and `fd` (steps, nfe, n_samples, fd, kid, wall_s, rise_to_top,
    rise_low, rise_high)."""

    confident: pd.DataFrame
    denoising: pd.DataFrame
    excess: pd.DataFrame
    fd: pd.DataFrame


TABLES = ("confident", "denoising", "excess", "fd")


@torch.no_grad()
def confident_share(classifier: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                    threshold: float = CONFIDENCE, batch: int = 1000) -> float:
    """The share of `images` (in [-1, 1], clamped) whose top class probability is >= `threshold`."""
    if len(images) == 0:
        return float("nan")
    params = list(classifier.parameters()) if isinstance(classifier, torch.nn.Module) else []
    device = params[0].device if params else images.device
    top = torch.cat([torch.softmax(classifier(chunk.to(device).float().clamp(-1, 1)), dim=1).max(1).values.cpu()
                     for chunk in images.split(batch)])
    return float((top >= threshold).double().mean())


def denoising_table(network: Denoiser, stats, x_eval: torch.Tensor, sigmas: Sequence[float],
                    seed: int = 0) -> pd.DataFrame:
    """MSE and weighted loss per (model, sigma) of the network, the mean image and the Gaussian on `x_eval`, from
    `trajectories.denoising_errors` (the same noise for every model and level)."""
    device = x_eval.device
    models = {"network": network, "mean": MeanDenoiser.from_stats(stats, device=device),
              "gaussian": GaussianDenoiser.from_stats(stats, device=device)}
    errors = denoising_errors(models, x_eval, list(sigmas), seed=seed)
    weight = edm.loss_weight(torch.tensor(errors["sigma"].to_numpy(dtype=float)), edm.SIGMA_DATA).numpy()
    return errors.assign(weighted=errors["mse"].to_numpy() * weight)


@torch.no_grad()
def paired_excess(model: Denoiser, baseline: Denoiser, x0: torch.Tensor, sigmas: Sequence[float],
                  seed: int = 0) -> pd.DataFrame:
    """Per sigma: excess = MSE_model / MSE_baseline - 1, its paired standard error (module docstring) and whether
    the model is worse beyond noise (excess > Z_WORSE se and > 0), with the noise of `denoising_errors`."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)
    rows = []
    for s in sigmas:
        sigma = torch.full((len(x0),), float(s), device=x0.device)
        errs = [edm.denoising_loss(m, x0.float(), sigma, noise, weighted=False).double().cpu()
                for m in (model, baseline)]
        base = float(errs[1].mean())
        diff = errs[0] - errs[1]
        se = float(diff.std(unbiased=True)) / np.sqrt(len(diff)) / base if len(diff) > 1 else float("nan")
        excess = float(errs[0].mean()) / base - 1.0
        rows.append({"sigma": float(s), "excess": excess, "se": se, "worse": bool(excess > max(Z_WORSE * se, 0.0))})
    return pd.DataFrame(rows)


def fd_by_levels(network: Denoiser, reference: Reference, levels: Sequence[int], n_samples: int, seed: int = 0,
                 batch_size: int = 100, device: torch.device | str = "cpu", n_boot: int = 200,
                 progress: bool = True) -> tuple[pd.DataFrame, dict[int, torch.Tensor]]:
    """(one row per N: steps, nfe = 2N - 1, n_samples, fd, kid, wall_s, and the rise FD(N_max) - FD(N) with its 95%
    paired bootstrap interval over samples; the samples of each N) for plain Heun from `initial_noise(seed)`, scored
    against the test features (`teleportation.score_features`, `sample_quality.paired_change`)."""
    shape = tuple(reference.x_test.shape[1:])
    rows, samples, features = [], {}, {}
    for n in tqdm(list(levels), desc="Heun budgets", disable=not progress):
        run = run_configuration(network, None, Config("heun", int(n), 0, seed, "none"), n_samples, shape, batch_size,
                                device)
        features[int(n)] = extract_features(reference.classifier, run.samples)
        scores = score_features(features[int(n)], reference.features)
        rows.append({"steps": int(n), "nfe": run.nfe, "n_samples": n_samples, **scores, "wall_s": run.wall_s})
        samples[int(n)] = run.samples
    table, top = pd.DataFrame(rows), max(features)
    if not all(bool(torch.isfinite(f).all()) for f in features.values()):  # no interval for a diverged run
        return table.assign(rise_to_top=_nans(table), rise_low=_nans(table), rise_high=_nans(table)), samples
    frechet = FrechetReference(reference.features)
    replicates = {n: bootstrap_fds(f, frechet, n_boot, stream=seed) for n, f in features.items()}
    fds = table.set_index("steps")["fd"]
    rises = [paired_change([fds[n]], [fds[top]], [replicates[n]], [replicates[top]]) for n in table["steps"]]
    return table.assign(rise_to_top=[r.change for r in rises], rise_low=[r.low for r in rises],
                        rise_high=[r.high for r in rises]), samples


def _nans(table: pd.DataFrame) -> list[float]:
    return [float("nan")] * len(table)


def checkpoint_key(config: TrainConfig, step: int | None = None) -> str:
    """The sha256 of a checkpoint file (from its sidecar when recorded): what names a network's cached measures."""
    path = checkpoint_path(config, config.total_steps if step is None else step)
    recorded = integrity.recorded_digest(path)
    return recorded if recorded is not None else hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_path(key: str, reference: Reference, settings: Settings, device: torch.device | str) -> str:
    blob = [CACHE_VERSION, key, reference.classifier_key, getattr(reference.stats, "key", ""),
            hashlib.sha256(reference.x_test.numpy().tobytes()).hexdigest()[:16], asdict(settings),
            torch.device(device).type]
    return paths.cache_dir("network_quality") / f"{hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:16]}.pt"


def _check(entry: dict) -> None:
    integrity.require(isinstance(entry, dict) and set(entry) == set(TABLES),
                      f"a cached network quality entry without its tables {', '.join(TABLES)}")


def measure(network: Denoiser, key: str | None, reference: Reference, settings: Settings = Settings(),
            device: torch.device | str = "cpu", progress: bool = True) -> NetworkQuality:
    """The three measures of `network` (module docstring); cached by `key` (None: not cached) and every setting."""
    path = None if key is None else _cache_path(key, reference, settings, device)
    entry = None if path is None else integrity.load_cache(path, _check, "[network quality]", "measuring again")
    if entry is not None:
        return NetworkQuality(*(pd.DataFrame(entry[name]) for name in TABLES))
    fd, samples = fd_by_levels(network, reference, settings.levels, settings.n_samples, settings.seed,
                               settings.batch_size, device, settings.n_boot, progress)
    top = max(settings.levels)
    confident = pd.DataFrame([
        {"set": f"samples (Heun, {top} levels)", "n": len(samples[top]),
         "share": confident_share(reference.classifier, samples[top], settings.threshold)},
        {"set": "test digits", "n": len(reference.x_test), "share": reference.test_confident}])
    x_eval = reference.x_test[: settings.n_eval].to(device)
    denoising = denoising_table(network, reference.stats, x_eval, settings.sigmas, settings.seed)
    mean = MeanDenoiser.from_stats(reference.stats, device=device)
    excess = paired_excess(network, mean, x_eval, settings.sigmas, settings.seed)
    quality = NetworkQuality(confident, denoising, excess, fd)
    if path is not None:
        integrity.save({name: {c: getattr(quality, name)[c].tolist() for c in getattr(quality, name).columns}
                        for name in TABLES}, path)
    return quality


def error_ratios(denoising: pd.DataFrame) -> pd.DataFrame:
    """Per sigma, the network's MSE over the mean image's and over the Gaussian's (from a `denoising` table)."""
    wide = denoising.pivot_table(index="sigma", columns="model", values="mse")
    return pd.DataFrame({"sigma": wide.index, "vs_mean": (wide["network"] / wide["mean"]).to_numpy(),
                         "vs_gaussian": (wide["network"] / wide["gaussian"]).to_numpy()})


def band_loss(denoising: pd.DataFrame, band: tuple[float, float] = C3_C4_BAND) -> float:
    """The network's mean weighted loss over the probed levels with band[0] <= sigma <= band[1] (a `denoising`
    table)."""
    rows = denoising[(denoising["model"] == "network") & denoising["sigma"].between(*band)]
    return float(rows["weighted"].mean())


def summary(quality: NetworkQuality, high_sigma: float = HIGH_SIGMA) -> pd.Series:
    """The headline numbers of one network, by quantity name."""
    ratios = error_ratios(quality.denoising)
    high = ratios[ratios["sigma"] >= high_sigma]
    above = worse_than(quality.denoising, "network", "mean")  # any excess, noise or not
    worse = quality.excess[(quality.excess["sigma"] >= high_sigma) & quality.excess["worse"].astype(bool)]
    shares = quality.confident.set_index("set")["share"]
    out = {f"confident share: {name}": float(share) for name, share in shares.items()}
    out[f"MSE / mean image's, sigma >= {high_sigma:g} (geometric mean)"] = float(np.exp(np.log(high["vs_mean"]).mean()))
    out[f"MSE / mean image's at sigma = {float(ratios['sigma'].max()):.3g}"] = float(ratios["vs_mean"].iloc[-1])
    out[f"levels >= {high_sigma:g} worse than the mean image (> {Z_WORSE:g} se)"] = f"{len(worse)} of {len(high)}"
    out["lowest sigma with MSE above the mean image's"] = float(above["sigma"].min()) if len(above) else float("nan")
    for row in quality.fd.itertuples():
        out[f"FD, Heun N = {row.steps} (NFE {row.nfe})"] = float(row.fd)
    top = int(quality.fd["steps"].max())
    for row in quality.fd[quality.fd["steps"] == RISE_FROM].itertuples():
        out[f"FD rise from N = {RISE_FROM} to {top} [95% interval]"] = (
            f"{row.rise_to_top:+.2f} [{row.rise_low:+.2f}, {row.rise_high:+.2f}]")
    return pd.Series(out, dtype=object)


def compare(results: Mapping[str, NetworkQuality], high_sigma: float = HIGH_SIGMA) -> pd.DataFrame:
    """The headline numbers of several networks side by side: one row per quantity, one column per network."""
    return pd.DataFrame({name: summary(quality, high_sigma) for name, quality in results.items()})


def long_tables(results: Mapping[str, NetworkQuality]) -> NetworkQuality:
    """Each table of several networks stacked, with a `network` column first (tidy, for CSV and plots)."""
    def stack(name: str) -> pd.DataFrame:
        return pd.concat([getattr(q, name).assign(network=label) for label, q in results.items()], ignore_index=True)

    return NetworkQuality(*(stack(n)[["network", *getattr(next(iter(results.values())), n).columns]]
                            for n in TABLES))

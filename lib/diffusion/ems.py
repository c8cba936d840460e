"""Empirical model statistics (EMS) of DPM-Solver-v3 (Zheng, Lu, Chen, Zhu, NeurIPS 2023, arXiv:2310.13268).

**From the paper's VP space to EDM's sigma.** The paper writes x_t = alpha_t x_0 + sigma_t eps with
lambda_t = log(alpha_t / sigma_t). EDM's state is x = x_VP / alpha_t and its noise level sigma = sigma_t / alpha_t,
so x = x_0 + sigma eps with the same eps, and

    lambda = -log sigma,        eps(x; sigma) = (x - D(x; sigma)) / sigma        (noise prediction from D).

The PF-ODE in lambda, dx_VP/dlambda = (dlog alpha/dlambda) x_VP - sigma_t eps (paper eq. (3)), becomes
dx/dlambda = -sigma eps = D - x. The paper's model-dependent quantities are all of N/alpha:
N_theta = sigma_t eps - l x_VP (eq. (5)) and f_theta = N_theta / alpha_t, which in EDM's variables is

    f(x; lambda) = sigma eps - l x = (x - D) - l x        (alpha cancels: the EMS are the same in both spaces),

and the ODE reads dx/dlambda = -l x - f. The three statistics, per pixel and per noise level, are (paper eqs.
(10)-(11), estimated as in Appendix C.1.1):

- l_lambda minimises E ||grad_x N||_F^2 over diagonal l: l = E[diag(sigma grad_x eps)] = 1 - E[diag(J_D)], with
  J_D = dD/dx. The diagonal is estimated with Jacobian-vector products and Rademacher probes v (Hutchinson):
  E_v[v * (J_D v)] = diag(J_D), exactly so when J_D is diagonal (a scalar Jacobian gives l with no probe noise).
- s_lambda, b_lambda minimise E ||f^(1) - s f - b||^2 per pixel (least squares):
  s = Cov(f^(1), f) / Var(f), b = E[f^(1)] - s E[f], where f^(1) = df(x_lambda; lambda)/dlambda is the total
  derivative along the ODE. With a = x - D (= sigma eps), dx/dlambda = -a and
  a^(1) = -a + J_D (a, sigma)   (a JVP of D in x and sigma along (dx/dlambda, dsigma/dlambda) = -(a, sigma)),
  f^(1) = a^(1) - l' x - l dx/dlambda = a^(1) + l a - l' x, with l' = dl/dlambda by finite differences on the
  grid (numpy.gradient, second order). Var(f) gets a ridge, 1e-10 times the level's mean over pixels of E[f^2],
  so that s = 0 where f does not vary at all (then b = E[f^(1)]).

Where the model is an exact Gaussian denoiser and the data N(mu, c I) (isotropic), everything is closed form:
D = mu + (1 - l)(x - mu) with l = sigma^2 / (c + sigma^2); f = -l mu is the same for every x, so Var(f) = 0 and
s = 0; l' = -2 l (1 - l) and b = E[f^(1)] = -l' mu = 2 l (1 - l) mu. Then g (the paper's eq. (8)) is constant in
lambda and the first-order solver is exact up to the grid (tests/test_dpm_solver_v3.py).

**Samples, grid, layout.** x_lambda = x_0 + sigma n with training images x_0 and noise n; the same (x_0, n, v) at
every level (common random numbers), so the estimates are smooth in lambda and their finite-difference l' is not
swamped by sampling noise; jackknife standard errors over `groups` groups of samples. levels + 1 points uniform in
lambda from -log sigma_max (index 0, as the official code) to -log sigma_min; fields (levels + 1, C, H, W), saved
officially as `l.npz` (`l`), `sb.npz` (`s`, `b`), float64.

**Cost.** Per sample and level one forward pass, one backward pass that keeps its graph and two more backward
passes give D and both JVPs (double-backward JVPs: forward-mode AD fails on the network's channels-last GroupNorm;
attention runs on the math kernel, the fused ones having no double backward): about 6 forward-pass equivalents
(6.2 measured on a random network of the default architecture); the default settings (101 levels x 256 samples)
about 14 minutes at the default network's ~190 images/s on 2 threads (docs/speed.md), ~20 beside a busy core.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from lib.core import integrity, paths
from lib.models.denoisers import Denoiser

EMS_VERSION = 1
FIELDS = ("l", "s", "b")


@dataclass(frozen=True)
class EMSSettings:
    """How the EMS are estimated: `levels` grid intervals in lambda between sigma_max and sigma_min (levels + 1
    points), `n_samples` training images (each with one noise draw and one Rademacher probe, shared by all
    levels), `batch_size` images per pass, `groups` jackknife groups, `seed`, and the ridge of Var(f)."""

    levels: int = 100
    n_samples: int = 256
    batch_size: int = 64
    groups: int = 8
    sigma_max: float = 80.0
    sigma_min: float = 0.002
    seed: int = 0
    ridge: float = 1e-10

    def __post_init__(self) -> None:
        if self.levels < 2 or self.n_samples < 2 * self.groups or self.groups < 2 or self.batch_size < 1:
            raise ValueError(f"EMS settings need levels >= 2, groups >= 2, n_samples >= 2 groups: {self}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"EMS settings need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


DEFAULT_EMS = EMSSettings()  # ~14-20 min for the default network on 2 CPU cores (module docstring)
SMOKE_EMS = EMSSettings(levels=20, n_samples=32, batch_size=16, groups=4)
SCALE_EMS: dict[str, EMSSettings] = {"smoke": SMOKE_EMS, "default": DEFAULT_EMS, "paper": DEFAULT_EMS}


def settings_for(scale_name: str) -> EMSSettings:
    """The settings a scale (its `Scale.name`) estimates its network's EMS with; an unlisted scale gets the default."""
    return SCALE_EMS.get(scale_name, DEFAULT_EMS)


@dataclass(frozen=True)
class EMS:
    """The statistics on their grid: `lambdas` (K,) increasing (K = levels + 1; index 0 is sigma_max), and l, s, b
    with their jackknife standard errors, each (K, C, H, W) float64."""

    lambdas: np.ndarray
    l: np.ndarray  # noqa: E741 - the paper's name
    s: np.ndarray
    b: np.ndarray
    l_se: np.ndarray
    s_se: np.ndarray
    b_se: np.ndarray
    n_samples: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.l.shape[1:])

    def digest(self) -> str:
        """16 hex digits of the sha256 of the grid and of l, s, b (what a sampler run with them depends on): the
        key under which runs that used these statistics are cached."""
        h = hashlib.sha256()
        for name in ("lambdas", "l", "s", "b"):
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            h.update(name.encode() + str(array.shape).encode() + array.tobytes())
        return h.hexdigest()[:16]


def lambda_grid(levels: int, sigma_max: float = 80.0, sigma_min: float = 0.002) -> np.ndarray:
    """levels + 1 points uniform in lambda = -log sigma, from -log sigma_max to -log sigma_min (float64)."""
    return np.linspace(-math.log(sigma_max), -math.log(sigma_min), levels + 1)


def degenerate_ems(shape: tuple[int, ...], levels: int = 2, sigma_max: float = 80.0,
                   sigma_min: float = 0.002) -> EMS:
    """(l, s, b) = (1, 0, 0): f = -D and g = f, so DPM-Solver-v3 is DPM-Solver++ (data prediction; the paper's
    Appendix A.2, and the official code's `degenerated=True`). The same values in VP and EDM variables."""
    lam = lambda_grid(levels, sigma_max, sigma_min)
    ones, zeros = np.ones((len(lam), *shape)), np.zeros((len(lam), *shape))
    return EMS(lam, ones, zeros, zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(), 0)


# --------------------------------------------------------------------------- JVPs of the denoiser


def twice_differentiable() -> contextlib.AbstractContextManager:
    """Attention (`scaled_dot_product_attention`) on the math kernel, whose backward is differentiable again; the
    fused kernels PyTorch picks otherwise have no double backward."""
    return sdpa_kernel(SDPBackend.MATH)


def linearise(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, Callable]:
    """D(x; sigma) and a function (vx, vsigma) -> J_D (vx, vsigma), the JVP in x and sigma ((B,) tensors).

    Double-backward: with u a dummy cotangent, grad_u <J^T u, v> = J v; the forward pass and the first backward
    pass are shared by every JVP at this point (attention on the math kernel: `twice_differentiable`)."""
    xr = x.detach().clone().requires_grad_(True)
    sr = sigma.detach().clone().to(x.dtype).requires_grad_(True)
    with torch.enable_grad(), twice_differentiable():
        out = denoiser(xr, sr)
        u = torch.zeros_like(out, requires_grad=True)
        gx, gs = torch.autograd.grad(out, (xr, sr), u, create_graph=True, allow_unused=True)
    if gs is None:
        raise ValueError("the denoiser's output does not depend on sigma through autograd (a float(sigma) inside?): "
                         "the EMS need dD/dsigma (for GaussianDenoiser keep batch_size <= d, its thin path)")

    def jvp(vx: torch.Tensor, vsigma: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad(), twice_differentiable():
            total = sum((g * v).sum() for g, v in ((gx, vx), (gs, vsigma)) if g is not None and g.requires_grad)
            if not isinstance(total, torch.Tensor):
                return torch.zeros_like(out)
            (jv,) = torch.autograd.grad(total, u, retain_graph=True, allow_unused=True)
        return torch.zeros_like(out) if jv is None else jv.detach()

    return out.detach(), jvp


def level_primitives(denoiser: Denoiser, x0: torch.Tensor, noise: torch.Tensor, probes: torch.Tensor,
                     sigma: float, batch_size: int) -> dict[str, torch.Tensor]:
    """At one level, per sample (float64): x = x0 + sigma n, q = v * J_D v, a = x - D and
    w = a^(1) = -a + J_D (a, sigma)."""
    out: dict[str, list[torch.Tensor]] = {"x": [], "q": [], "a": [], "w": []}
    for start in range(0, len(x0), batch_size):
        sl = slice(start, start + batch_size)
        x = x0[sl] + sigma * noise[sl]
        s = torch.full((len(x),), sigma, dtype=x.dtype, device=x.device)
        d, jvp = linearise(denoiser, x, s)
        a = x - d
        out["x"].append(x.double())
        out["q"].append((probes[sl] * jvp(probes[sl], torch.zeros_like(s))).double())
        out["a"].append(a.double())
        out["w"].append((-a + jvp(a, s)).double())
    return {k: torch.cat(v).cpu() for k, v in out.items()}


# --------------------------------------------------------------------------- statistics


def _level_moments(p: dict[str, torch.Tensor], groups: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per replicate (all samples, then each delete-one-group set): l and the moments that s and b need once l'
    is known: E f, Var f, E f^2, E z, E x, Cov(z, f), Cov(x, f) with f = a - l x and z = w + l a (f^(1) = z - l' x)."""
    n = len(p["x"])
    keep = [np.ones(n, bool)] + [~np.isin(np.arange(n), g) for g in groups]
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("l", "mf", "vf", "ef2", "mz", "mx", "czf", "cxf")}
    for mask in keep:
        m = torch.from_numpy(mask)
        x, a, w = p["x"][m], p["a"][m], p["w"][m]
        lam_l = 1.0 - p["q"][m].mean(0)
        f, z = a - lam_l * x, w + lam_l * a
        fc, zc, xc = f - f.mean(0), z - z.mean(0), x - x.mean(0)
        for key, value in (("l", lam_l), ("mf", f.mean(0)), ("vf", (fc * fc).mean(0)), ("ef2", (f * f).mean(0)),
                           ("mz", z.mean(0)), ("mx", x.mean(0)), ("czf", (zc * fc).mean(0)),
                           ("cxf", (xc * fc).mean(0))):
            rows[key].append(value.numpy())
    return {k: np.stack(v) for k, v in rows.items()}


def statistics_from_moments(lambdas: np.ndarray, m: dict[str, np.ndarray], ridge: float) -> dict[str, np.ndarray]:
    """l, s, b (each (R, K, ...) for R replicates) from the per-level moments (each (R, K, ...))."""
    l_ = m["l"]
    dl = np.gradient(l_, lambdas, axis=1, edge_order=2)
    mean_f1 = m["mz"] - dl * m["mx"]
    cov = m["czf"] - dl * m["cxf"]
    pixel_axes = tuple(range(2, l_.ndim))
    floor = ridge * m["ef2"].mean(axis=pixel_axes, keepdims=True)
    denom = m["vf"] + floor
    s = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return {"l": l_, "s": s, "b": mean_f1 - s * m["mf"]}


def _jackknife(replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimate from all samples, delete-one-group jackknife standard error) from (1 + G, ...) replicates."""
    full, loo = replicates[0], replicates[1:]
    g = len(loo)
    return full, np.sqrt((g - 1) / g * ((loo - loo.mean(0)) ** 2).sum(0))


def _draws(data: torch.Tensor, settings: EMSSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images, noise and Rademacher probes, seeded: images without replacement from `data`."""
    if len(data) < settings.n_samples:
        raise ValueError(f"EMS need {settings.n_samples} images, got {len(data)}")
    gen = torch.Generator().manual_seed(settings.seed)
    idx = torch.randperm(len(data), generator=gen)[: settings.n_samples]
    shape = (settings.n_samples, *data.shape[1:])
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    probes = torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1
    return data[idx.to(data.device)], noise.to(data), probes.to(data)


def compute_ems(denoiser: Denoiser, data: torch.Tensor, settings: EMSSettings = DEFAULT_EMS,
                progress: bool = True) -> EMS:
    """Estimate l, s, b on the settings' lambda grid from `data` (N, C, H, W) in the denoiser's dtype and device."""
    lambdas = lambda_grid(settings.levels, settings.sigma_max, settings.sigma_min)
    x0, noise, probes = _draws(data, settings)
    groups = np.array_split(np.arange(settings.n_samples), settings.groups)
    per_level = []
    for lam in tqdm(lambdas, desc="EMS", disable=not progress):
        prims = level_primitives(denoiser, x0, noise, probes, math.exp(-lam), settings.batch_size)
        per_level.append(_level_moments(prims, groups))
    moments = {k: np.stack([lv[k] for lv in per_level], axis=1) for k in per_level[0]}
    stats = statistics_from_moments(lambdas, moments, settings.ridge)
    (l_, l_se), (s, s_se), (b, b_se) = (_jackknife(stats[k]) for k in FIELDS)
    return EMS(lambdas, l_, s, b, l_se, s_se, b_se, settings.n_samples)


# --------------------------------------------------------------------------- cache and official layout

_ARRAYS = ("lambdas", "l", "s", "b", "l_se", "s_se", "b_se")


def _check(payload: dict) -> None:
    integrity.check_keys(payload, (*_ARRAYS, "n_samples"), "EMS cache")
    k = len(payload["lambdas"])
    integrity.require(all(payload[f].shape[0] == k and payload[f].shape == payload["l"].shape for f in _ARRAYS[1:]),
                      "EMS fields of one shape (levels + 1, C, H, W)")
    integrity.require(all(bool(torch.isfinite(payload[f]).all()) for f in _ARRAYS), "finite EMS")


def cache_path(key: str, settings: EMSSettings) -> Path:
    """data/cache/ems/<key>_<settings digest>_v<version>.pt; `key` names network and data (a digest of both)."""
    return paths.cache_dir("ems") / f"{key}_{settings.digest()}_v{EMS_VERSION}.pt"


def estimate_ems(denoiser: Denoiser, data: torch.Tensor, settings: EMSSettings = DEFAULT_EMS,
                 key: str | None = None, progress: bool = True) -> EMS:
    """`compute_ems`, cached under data/cache/ems/ when `key` (a digest of the network and the data, as the
    study's caches are keyed) is given; the cache is verified (`lib.core.integrity`) and recomputed if bad."""
    path = None if key is None else cache_path(key, settings)
    if path is not None:
        payload = integrity.load_cache(path, _check, "[ems] cache", "estimating again")
        if payload is not None:
            return EMS(**{f: payload[f].numpy() for f in _ARRAYS}, n_samples=int(payload["n_samples"]))
    ems = compute_ems(denoiser, data, settings, progress=progress)
    if path is not None:
        payload = {f: torch.from_numpy(np.ascontiguousarray(getattr(ems, f))) for f in _ARRAYS}
        integrity.save({**payload, "n_samples": ems.n_samples}, path)
    return ems

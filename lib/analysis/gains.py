"""The denoiser's gain along each principal component, across noise (issue 29, beyond the paper).

For Gaussian data N(mu, U diag(lambda) U^T) the denoiser is linear, D(x) = mu + U diag(g(sigma)) U^T (x - mu),
so its Jacobian J(x) = dD/dx is the same at every x and diagonal in the eigenbasis: along principal
component k (unit eigenvector u_k) the gain is

    g_k(sigma) = lambda_k / (lambda_k + sigma^2),

and nothing leaks from u_k into other directions. For any denoiser D we measure, at probes
x = x0 + sigma n (the probes of `lib.analysis.linearity`: `probe_noise(n, shape, i, seed)` at the i-th level),

    gain     u_k^T J(x) u_k                               (the Gaussian's g_k at every x)
    leak     ||(I - u_k u_k^T) J(x) u_k|| / ||J(x) u_k||    (0 for the Gaussian; 0 where J u_k = 0)

and their mean, population std and standard error (std / sqrt(n_probes)) over probes, with the mean response
||J(x) u_k|| beside them: the leak is a ratio, so where the response is tiny (a low-variance mode at high noise,
gain ~ lambda_k / sigma^2) central differences in float32 measure mostly rounding (a floor of about
2e-5 / (sigma * response) at d = 1024 with the default step), and only "jvp" reads it. The isotropic model
N(mu, v I), v = tr Sigma / d, has one gain v / (v + sigma^2) for every mode (`isotropic_gain`).
`jacobian_variation` measures linearity directly: along fixed random unit directions v_j,

    variation = mean_j  E_x ||J(x) v_j - mean_x J(x) v_j|| / ||mean_x J(x) v_j||,

0 for any linear denoiser. The training-set denoiser's Jacobian is its posterior covariance over sigma^2:
it depends on x, so its variation is positive.

J(x) v comes from `DirectionalDerivative` in the denoiser's dtype (float32 for networks, float64 for exact
tests), for a batch of (probe, direction) rows at once:

    "jvp"   automatic differentiation, exact to rounding: forward mode (`torch.autograd.forward_ad`, about 2-3
            forward passes), else the double-VJP trick J v = d/du [(J^T u) . v] (two reverse passes with a
            graph, 4-6 forward passes; attention in its math kernel). Forward mode fails on our UNet in
            torch 2.x (GroupNorm on channels-last activations has no forward formula), so it takes the latter.
    "fd"    central differences (D(x + h v) - D(x - h v)) / 2h with h = fd_step * sigma: 2 forward passes,
            error O(fd_step^2) plus rounding ~ulp(D) / h per pixel; works for any denoiser.
    "auto"  forward mode where the denoiser supports it (the analytic models: exact and cheap), else
            central differences (the default network on a CPU).

Cost: a gain table is S * P * M directional derivatives (S levels, P probes, M modes), each 2 forward
passes with "fd" and about 5 with the double VJP; `jacobian_variation` adds S * P * n_directions. The issue's
grid, 19 levels x 64 probes x 30 modes = 36,480 derivatives, is 72,960 forward image-evaluations with "fd"
(plus 19 x 64 x 4 = 4,864 derivatives, 9,728 evaluations, for the variation): 82,688 forward-pass
equivalents, 6-10 min at the 145-240 img/s of the default network on two CPU threads (docs/speed.md), and
about 3x that with "jvp" (the double VJP cost 6.3 forward passes on a small UNet on a CPU).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.autograd import forward_ad
from tqdm import tqdm

from lib.analysis.linearity import probe_noise
from lib.data.statistics import DatasetStats
from lib.models.denoisers import Denoiser, check_sigma

#: Eigenvalues at or below this fraction of the largest count as zero variance (as `lib.models.gmm` keeps eigenpairs).
NONZERO_RTOL = 1e-10
#: Central-difference step, relative to sigma (the scale on which a denoiser's Jacobian changes): on a float32
#: Gaussian in d = 1024 (an MNIST-like spectrum) the gains come within 2e-4 of exact at every level of
#: `LINEARITY_SIGMAS` (7e-4 with 0.02); the truncation error is O(fd_step^2) = 0.25% relative where the Jacobian
#: changes on the scale sigma.
FD_STEP = 0.05
#: Seed of the fixed random directions of `jacobian_variation`.
DIRECTION_SEED = 29
METHODS = ("auto", "jvp", "fd")
GAIN_COLUMNS = ["step", "sigma", "k", "lambda", "gain_mean", "gain_std", "gain_se", "leak_mean", "leak_std",
                "response_mean", "gaussian_gain", "isotropic_gain", "n_probes", "method"]
_AUTODIFF_ERRORS = (RuntimeError, NotImplementedError, TypeError)


def mode_indices(eigvals: torch.Tensor | np.ndarray, n_top: int = 10, n_log: int = 20,
                 rtol: float = NONZERO_RTOL) -> np.ndarray:
    """1-based principal components k to probe: every one of the top `n_top`, then about `n_log` more spaced
    evenly in log k from n_top + 1 to the last component with nonzero variance (lambda_k > rtol * lambda_1);
    sorted, unique (rounding can merge neighbours, so there may be fewer than n_top + n_log)."""
    lam = np.asarray(eigvals, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not lam[0] > 0:
        raise ValueError("need a non-empty spectrum with a positive largest eigenvalue")
    rank = int((lam > rtol * lam[0]).sum())
    top = np.arange(1, min(n_top, rank) + 1)
    if rank <= n_top or n_log <= 0:
        return top
    tail = np.unique(np.round(np.geomspace(n_top + 1, rank, n_log)).astype(int))
    return np.union1d(top, tail)


def gaussian_gain(eigvals: torch.Tensor | np.ndarray | float, sigma: float) -> np.ndarray:
    """lambda / (lambda + sigma^2) in float64 (the sigma -> 0 limit 1 where lambda = 0 = sigma)."""
    lam = np.asarray(eigvals, dtype=np.float64)
    denom = lam + float(sigma) ** 2
    return np.where(denom > 0, lam / np.where(denom > 0, denom, 1.0), 1.0)


def denoiser_dtype(denoiser: Denoiser) -> torch.dtype:
    """The dtype a denoiser computes in: its parameters' (a network), its `dtype` attribute, else float32."""
    if isinstance(denoiser, torch.nn.Module):
        first = next(denoiser.parameters(), None)
        return torch.float32 if first is None else first.dtype
    dtype = getattr(denoiser, "dtype", torch.float32)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


class DirectionalDerivative:
    """J(x) v for rows of probes x (B, ...) and directions v (B, d), in the denoiser's dtype on `device`, returned
    flat (B, d) in float64 on the CPU. `path` says which way the last call went: "forward", "double_vjp" or
    "fd"; the first call that works fixes it for the rest (a denoiser is differentiable or not for every input)."""

    def __init__(self, denoiser: Denoiser, method: str = "auto", fd_step: float = FD_STEP,
                 device: torch.device | str = "cpu") -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not 0 < fd_step < 1:
            raise ValueError(f"fd_step is a step relative to sigma, in (0, 1): got {fd_step}")
        self.denoiser, self.method, self.fd_step = denoiser, method, float(fd_step)
        self.device, self.dtype = torch.device(device), denoiser_dtype(denoiser)
        self.path: str | None = "fd" if method == "fd" else None

    def __call__(self, x: torch.Tensor, sigma: float, v: torch.Tensor) -> torch.Tensor:
        check_sigma(sigma, positive=True, name="the probe sigma", hint="probes are noised: pass sigma > 0")
        x = x.to(self.device, self.dtype)
        v = v.reshape(x.shape).to(self.device, self.dtype)
        candidates = [self.path] if self.path else (["forward", "fd"] if self.method == "auto"
                                                      else ["forward", "double_vjp"])
        for i, path in enumerate(candidates):
            last = i == len(candidates) - 1
            try:
                out = getattr(self, f"_{path}")(x, float(sigma), v)
            except _AUTODIFF_ERRORS:
                if last:
                    raise
                continue
            if out is None and not last:
                continue  # no tangent reached the output: not differentiable this way, or constant
            self.path = path
            out = torch.zeros_like(x) if out is None else out
            return out.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)
        raise AssertionError("unreachable")

    def _forward(self, x, sigma, v):
        with torch.no_grad(), forward_ad.dual_level():  # no_grad stops reverse-mode graphs, not tangents
            with warnings.catch_warnings():  # torch's own: forward AD loads its decompositions with torch.jit.script
                warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", DeprecationWarning)
                dual = forward_ad.make_dual(x, v)
            out = self.denoiser(dual, sigma)
            return forward_ad.unpack_dual(out).tangent

    def _double_vjp(self, x, sigma, v):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            xr = x.detach().requires_grad_(True)
            y = self.denoiser(xr, sigma)
            if not y.requires_grad:
                return None
            u = torch.zeros_like(y, requires_grad=True)
            (vjp,) = torch.autograd.grad(y, xr, grad_outputs=u, create_graph=True, allow_unused=True)
            if vjp is None or not vjp.requires_grad:
                return None
            (jv,) = torch.autograd.grad(vjp, u, grad_outputs=v.to(y.dtype), allow_unused=True)
        return jv

    @torch.no_grad()
    def _fd(self, x, sigma, v):
        h = self.fd_step * sigma
        both = self.denoiser(torch.cat([x + h * v, x - h * v]), sigma)
        plus, minus = both.split(x.shape[0])
        return (plus.to(torch.float64) - minus.to(torch.float64)) / (2 * h)


def probes_at(x0: torch.Tensor, sigma: float, sigma_index: int, seed: int) -> torch.Tensor:
    """x0 + sigma n with `linearity.probe_noise` at the `sigma_index`-th level: the probes of `ProbeBank`."""
    return x0 + float(sigma) * probe_noise(len(x0), tuple(x0.shape[1:]), sigma_index, seed).to(x0.dtype)


def _derivatives(deriv: DirectionalDerivative, x: torch.Tensor, sigma: float, directions: torch.Tensor,
                 batch: int) -> torch.Tensor:
    """J(x_p) v_m for every probe p and direction m, (P, M, d) float64, `batch` rows per call."""
    n_p, n_m = x.shape[0], directions.shape[0]
    out = torch.empty((n_p * n_m, directions.shape[1]), dtype=torch.float64)
    for start in range(0, n_p * n_m, batch):
        rows = torch.arange(start, min(start + batch, n_p * n_m))
        out[rows] = deriv(x[rows // n_m], sigma, directions[rows % n_m])
    return out.reshape(n_p, n_m, -1)


def _check_probes(x0: torch.Tensor, stats: DatasetStats | None, batch: int) -> None:
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2 or x0.shape[0] == 0:
        raise ValueError("x0 must be a non-empty batch of clean images (P, C, H, W)")
    if stats is not None and tuple(x0.shape[1:]) != tuple(stats.shape):
        raise ValueError(f"probes of shape {tuple(x0.shape[1:])} do not match the statistics' {tuple(stats.shape)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")


def gain_table(denoiser: Denoiser, x0: torch.Tensor, sigmas: Iterable[float], stats: DatasetStats,
               modes: Sequence[int] | None = None, seed: int = 0, method: str = "auto", fd_step: float = FD_STEP,
               batch: int = 256, device: torch.device | str = "cpu", step: int = -1,
               progress: bool = False) -> pd.DataFrame:
    """One row per (sigma, k): the gain u_k^T J(x) u_k and the leak off u_k over the probes x0 + sigma n (columns
    `GAIN_COLUMNS`; see the module docstring). `modes` are 1-based components (default `mode_indices`); `batch` is
    the (probe, mode) rows per derivative call (with "fd" the denoiser sees twice as many)."""
    _check_probes(x0, stats, batch)
    ks = np.asarray(mode_indices(stats.eigvals) if modes is None else modes, dtype=int)
    if ks.size == 0 or ks.min() < 1 or ks.max() > stats.dim:
        raise ValueError(f"modes are 1-based components in [1, {stats.dim}], got {ks.tolist()}")
    u = stats.eigvecs[:, ks - 1].T.to(torch.float64)  # (M, d) unit rows
    lam = stats.eigvals[ks - 1].to(torch.float64).numpy()
    iso = stats.trace / stats.dim
    deriv = DirectionalDerivative(denoiser, method, fd_step, device)
    rows = []
    for i, sigma in enumerate(tqdm([float(s) for s in sigmas], desc="gains", disable=not progress)):
        jv = _derivatives(deriv, probes_at(x0, sigma, i, seed), sigma, u, batch)  # (P, M, d)
        gains = (jv * u).sum(-1)
        norm = jv.norm(dim=-1)
        off = (jv - gains[..., None] * u).norm(dim=-1)
        leak = torch.where(norm > 0, off / torch.where(norm > 0, norm, 1.0), torch.zeros_like(norm))
        n, response = gains.shape[0], norm.mean(0)
        g_std, l_std = gains.std(0, unbiased=False), leak.std(0, unbiased=False)
        for m, k in enumerate(ks):
            rows.append({"step": step, "sigma": sigma, "k": int(k), "lambda": float(lam[m]),
                         "gain_mean": float(gains[:, m].mean()), "gain_std": float(g_std[m]),
                         "gain_se": float(g_std[m]) / math.sqrt(n), "leak_mean": float(leak[:, m].mean()),
                         "leak_std": float(l_std[m]), "response_mean": float(response[m]),
                         "gaussian_gain": float(gaussian_gain(lam[m], sigma)),
                         "isotropic_gain": float(gaussian_gain(iso, sigma)), "n_probes": n, "method": deriv.path})
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


def random_directions(n: int, dim: int, seed: int = DIRECTION_SEED) -> torch.Tensor:
    """`n` fixed random unit vectors in R^dim, (n, dim) float64, reproducible from the seed."""
    v = torch.randn((n, dim), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


def jacobian_variation(denoiser: Denoiser, x0: torch.Tensor, sigmas: Iterable[float], n_directions: int = 4,
                       seed: int = 0, method: str = "auto", fd_step: float = FD_STEP, batch: int = 256,
                       device: torch.device | str = "cpu", step: int = -1,
                       direction_seed: int = DIRECTION_SEED) -> pd.DataFrame:
    """How much J(x) varies across the probes, per sigma (0 for a linear denoiser). Columns: `jvp_variation` (mean
    over directions of E_x ||J v - mean_x J v|| / ||mean_x J v||; NaN where mean_x J v = 0), `jvp_variation_se` (its
    std over directions / sqrt(n_directions)), `dir_gain_std` (mean over directions of the std over probes of
    v^T J(x) v), `n_probes`, `n_directions`, `method`."""
    _check_probes(x0, None, batch)
    if n_directions < 1:
        raise ValueError(f"n_directions must be >= 1, got {n_directions}")
    dirs = random_directions(n_directions, x0[0].numel(), direction_seed)
    deriv = DirectionalDerivative(denoiser, method, fd_step, device)
    rows = []
    for i, sigma in enumerate(float(s) for s in sigmas):
        jv = _derivatives(deriv, probes_at(x0, sigma, i, seed), sigma, dirs, batch)  # (P, N, d)
        mean = jv.mean(0)
        spread = (jv - mean).norm(dim=-1).mean(0)
        size = mean.norm(dim=-1)
        rel = torch.where(size > 0, spread / torch.where(size > 0, size, 1.0), torch.full_like(size, math.nan))
        rows.append({"step": step, "sigma": sigma, "jvp_variation": float(rel.mean()),
                     "jvp_variation_se": float(rel.std(unbiased=False)) / math.sqrt(n_directions),
                     "dir_gain_std": float((jv * dirs).sum(-1).std(0, unbiased=False).mean()),
                     "n_probes": jv.shape[0], "n_directions": n_directions, "method": deriv.path})
    return pd.DataFrame(rows)


def linearity_table(gains: pd.DataFrame, variation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (step, sigma): the spread of the gains over probes (`gain_std_mean`, `gain_std_max` over the modes), the
    largest gap to the Gaussian gain (`gaussian_gap_max`), the mean leak, and `variation`'s columns beside them."""
    at = gains.assign(gap=(gains["gain_mean"] - gains["gaussian_gain"]).abs())
    table = at.groupby(["step", "sigma"], as_index=False).agg(
        gain_std_mean=("gain_std", "mean"), gain_std_max=("gain_std", "max"), gaussian_gap_max=("gap", "max"),
        leak_mean=("leak_mean", "mean"), n_modes=("k", "nunique"))
    if variation is not None:
        table = table.merge(variation.drop(columns=["n_probes", "method"], errors="ignore"),
                            on=["step", "sigma"], how="left")
    return table

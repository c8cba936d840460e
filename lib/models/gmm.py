"""Gaussian mixtures fitted by k-means, as denoisers.

A mixture sum_k pi_k N(mu_k, Sigma_k) is fitted by k-means (Lloyd's algorithm, `lib.models.kmeans`): the
cluster centroid, the members' covariance plus a small ridge, the cluster frequency. Each component
is stored as a low-rank-plus-floor Gaussian,

    Sigma_k = U_k diag(lambda_k) U_k^T + tau (I - U_k U_k^T),

with U_k (d, m_k) orthonormal columns: at full rank the members' nonzero eigenpairs plus the ridge
(tau = ridge), at rank r the top r eigenpairs and nothing else (tau = 0, like the rank-r Gaussian).
With c_k = U_k^T (x - mu_k), v = lambda + sigma^2 and f = tau / (tau + sigma^2), the denoiser is

    D(x; sigma) = sum_k w_k D_k = f x + (1 - f) sum_k w_k mu_k + sum_k w_k U_k diag(lambda/v - f) c_k,
    log w_k = log pi_k - (1/2) [ sum_j c_kj^2 / v_kj + r_k / (tau + sigma^2) + sum_j log v_kj
                                 + (d - m_k) log(tau + sigma^2) + d log 2 pi ] - log Z,

r_k = ||x - mu_k||^2 - ||c_k||^2 the part of x - mu_k outside span(U_k), and the softmax taken in log space
so that it stays finite at sigma = 0.01. Every component's columns are stacked into one (d, W) matrix U,
W = sum_k m_k, so that a batch costs two plain matrix products, x U (all c_k at once) and the weighted
coefficients times U^T (all the U_k parts of D), whatever K is. ||x - mu_k||^2 and ||c_k||^2 are summed in
float64, because their difference r_k is small at low noise and is divided by tau + sigma^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from lib.core import integrity, paths
from lib.models import kmeans
from lib.models.denoisers import check_batch, sigma_per_sample
from lib.models.mixtures import flush_subnormal_logits_

#: Variance added to every direction of a full-rank component (the authors' value); at sigma = 0.01 it
#: decides how much of the off-subspace part of x a component keeps: ridge / (ridge + sigma^2).
DEFAULT_RIDGE = 1e-5
GMM_CACHE_VERSION = 2  # 2: Lloyd's k-means (lib.models.kmeans) instead of scikit-learn's MiniBatchKMeans
#: Largest (batch rows x stacked columns) block evaluated at once, in elements (128 MB in float32).
MAX_BLOCK = 2**25


@dataclass
class GaussianMixtureDenoiser:
    """A mixture of low-rank-plus-floor Gaussians with stacked eigenpairs; see the module docstring."""

    means: torch.Tensor  # (K, d)
    log_weights: torch.Tensor  # (K,), log pi_k
    eigvals: torch.Tensor  # (W,), component 0's m_0 eigenvalues, then component 1's, ...
    eigvecs: torch.Tensor  # (d, W), the matching orthonormal columns
    widths: tuple[int, ...]  # m_k, eigenpairs per component (sum W; 0 allowed)
    floor: float  # tau, the variance of every direction outside span(U_k)
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        k, d = self.means.shape
        width = sum(self.widths)
        if len(self.widths) != k or self.eigvals.shape != (width,) or self.eigvecs.shape != (d, width):
            raise ValueError(f"inconsistent mixture: {k} means of dimension {d}, widths summing to {sum(self.widths)}, "
                             f"eigvals {tuple(self.eigvals.shape)}, eigvecs {tuple(self.eigvecs.shape)} (need (d, W))")
        device = self.means.device
        self.owner = torch.repeat_interleave(torch.arange(k, device=device),
                                             torch.tensor(self.widths, device=device, dtype=torch.long))
        self.n_floor = (d - torch.tensor(self.widths, dtype=self.means.dtype, device=device)).unsqueeze(0)  # (1, K)
        self.mean_sq = (self.means.double() ** 2).sum(1)  # (K,) ||mu_k||^2
        self.mean_proj = torch.cat([  # (W,) u_j . mu_owner(j), by blocks of columns to bound the (cols, d) temporary
            (self.means[self.owner[cols]] * self.eigvecs[:, cols].T).sum(1)
            for cols in torch.arange(width, device=device).split(8192)]) if width else self.eigvals.clone()
        # sigma = 0 has a meaning (D(x; 0) = x) only when every component has a density: all variances > 0.
        self.zero_sigma_ok = self.floor > 0 and bool((self.eigvals > 0).all())

    @classmethod
    def from_padded(cls, means: torch.Tensor, log_weights: torch.Tensor, eigvals: torch.Tensor,
                    eigvecs: torch.Tensor, floor: float, shape: tuple[int, ...],
                    widths: tuple[int, ...] | None = None) -> GaussianMixtureDenoiser:
        """From per-component eigenpairs padded to a common M: eigvals (K, M), eigvecs (K, d, M), the first
        widths[k] of each kept (None: all M; zero columns with eigenvalue `floor` are exactly the floor)."""
        widths = tuple(widths) if widths is not None else (eigvals.shape[1],) * means.shape[0]
        vals = torch.cat([eigvals[i, :m] for i, m in enumerate(widths)])
        vecs = torch.cat([eigvecs[i, :, :m] for i, m in enumerate(widths)], dim=1)
        return cls(means, log_weights, vals, vecs, widths, floor, shape)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> GaussianMixtureDenoiser:
        move = {"dtype": dtype, "device": device}
        return GaussianMixtureDenoiser(self.means.to(**move), self.log_weights.to(**move), self.eigvals.to(**move),
                                       self.eigvecs.to(**move), self.widths, self.floor, self.shape)

    def _prepare(self, x: torch.Tensor, sigma: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x as (B, d) in the model's dtype and sigma^2 as (B, 1), or (1, 1) when every sample has the same
        sigma (the (B, W) variances then shrink to (1, W)), after checking both."""
        check_batch(x, self.shape, "GaussianMixtureDenoiser")
        flat = x.flatten(1).to(self.means.dtype)
        hint = ("a mixture with low-rank components (zero variance off their subspace) is undefined at "
                "sigma = 0; pass a small positive sigma, or use full-rank components (rank=None)")
        s2 = sigma_per_sample(sigma, flat, positive=not self.zero_sigma_ok, hint=hint).reshape(-1, 1) ** 2
        return flat, s2[:1] if len(s2) > 1 and bool((s2 == s2[0]).all()) else s2

    def _per_component(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of (B, W) column values over each component's columns: (B, K)."""
        out = values.new_zeros(values.shape[0], self.n_components)
        return out.index_add_(1, self.owner, values)

    def _terms(self, flat: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi_k + log N(x; mu_k, Sigma_k + sigma^2 I) as (B, K), the coefficients c as (B, W))."""
        coeff = torch.addmm(self.mean_proj, flat, self.eigvecs, beta=-1.0)  # c = U^T x - U^T mu, (B, W)
        var = self.eigvals + s2  # (B, W)
        floor_var = self.floor + s2  # (B, 1)
        flat64 = flat.double()
        dist_sq = (flat64**2).sum(1, keepdim=True) - 2.0 * flat64 @ self.means.double().T + self.mean_sq  # (B, K)
        outside = (dist_sq - self._per_component(coeff.double() ** 2)).clamp_min_(0.0).to(flat.dtype)
        log_joint = -0.5 * (self._per_component(coeff**2 / var + torch.log(var)) + outside / floor_var
                            + self.n_floor * torch.log(floor_var) + self.dim * math.log(2 * math.pi))
        return log_joint + self.log_weights, coeff

    def _row_blocks(self, n: int) -> list[slice]:
        rows = max(1, MAX_BLOCK // max(1, self.eigvals.shape[0]))
        return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]

    def _log_joint(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x; mu_k, Sigma_k + sigma^2 I), shape (B, K)."""
        flat, s2 = self._prepare(x, sigma)
        return torch.cat([self._terms(flat[rows], _rows_of(s2, rows))[0] for rows in self._row_blocks(len(flat))])

    def responsibilities(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities w (B, K), each row summing to one."""
        return torch.softmax(self._log_joint(x, sigma), dim=1)

    def _denoise(self, flat: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        log_joint, coeff = self._terms(flat, s2)
        weights = flush_subnormal_logits_(log_joint - log_joint.max(1, keepdim=True).values).exp_()
        weights = weights / weights.sum(1, keepdim=True)  # (B, K)
        keep = self.floor / (self.floor + s2)  # f, (B, 1)
        gains = self.eigvals / (self.eigvals + s2) - keep  # lambda / v - f, (B, W)
        out = keep * flat + (1.0 - keep) * (weights @ self.means)
        return torch.addmm(out, weights[:, self.owner] * gains * coeff, self.eigvecs.T)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """sum_k w_k D_k (module docstring), in row blocks of at most MAX_BLOCK (rows x W) elements.

        Empty in, empty out; at sigma = 0 (full-rank components only) D(x; 0) = x."""
        flat, s2 = self._prepare(x, sigma)
        if flat.shape[0] == 0:
            return torch.empty_like(x)
        out = torch.cat([self._denoise(flat[rows], _rows_of(s2, rows)) for rows in self._row_blocks(len(flat))])
        return out.reshape(x.shape).to(x.dtype)

    def log_density(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """log p_sigma(x) of the noised mixture, (B,); its gradient is the score."""
        return torch.logsumexp(self._log_joint(x, sigma), dim=1)


def _rows_of(s2: torch.Tensor, rows: slice) -> torch.Tensor:
    """The sigma^2 of a block of rows: all of a shared (1, 1), else those rows of (B, 1)."""
    return s2 if len(s2) == 1 else s2[rows]


# --------------------------------------------------------------------------- fitting


@dataclass
class MixtureFit:
    """k-means clusters with each cluster's nonzero covariance eigenpairs (float64 eigh, stored float32)."""

    means: torch.Tensor  # (K, d) float64
    counts: torch.Tensor  # (K,)
    eigvals: list[torch.Tensor]  # per cluster, descending, only the nonzero ones
    eigvecs: list[torch.Tensor]  # per cluster (d, m_k) float32
    shape: tuple[int, ...]

    def denoiser(self, rank: int | None = None, ridge: float = DEFAULT_RIDGE,
                 dtype: torch.dtype = torch.float32) -> GaussianMixtureDenoiser:
        """The mixture at component rank `rank` (None: full covariance plus `ridge`), eigenpairs stacked."""
        if rank is not None and rank < 1:
            raise ValueError(f"rank must be a positive integer or None (full), got {rank}")
        floor = ridge if rank is None else 0.0
        keep = [len(v) if rank is None else min(rank, len(v)) for v in self.eigvals]
        added = ridge if rank is None else 0.0
        eigvals = torch.cat([v[:m].double() + added for v, m in zip(self.eigvals, keep, strict=True)])
        eigvecs = torch.cat([u[:, :m] for u, m in zip(self.eigvecs, keep, strict=True)], dim=1)
        log_weights = torch.log(self.counts.double() / self.counts.sum())
        return GaussianMixtureDenoiser(self.means.to(dtype), log_weights.to(dtype), eigvals.to(dtype),
                                       eigvecs.to(dtype).contiguous(), tuple(keep), floor, self.shape)


def _cluster_eigenpairs(members: torch.Tensor, tol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Nonzero eigenpairs of the members' covariance (float64), via the smaller Gram matrix when n < d."""
    centred = members.double() - members.double().mean(0)
    n = centred.shape[0]
    if n < 2:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(members.shape[1], 0)
    if n <= centred.shape[1]:
        gram = centred @ centred.T / (n - 1)  # (n, n): same nonzero spectrum as the covariance
        vals, vecs = torch.linalg.eigh(gram)
        vals, vecs = vals.flip(0), vecs.flip(1)
        keep = vals > tol * max(float(vals[0]), 1e-30)
        vals, vecs = vals[keep], vecs[:, keep]
        eigvecs = centred.T @ vecs / torch.sqrt(vals * (n - 1))
    else:
        cov = centred.T @ centred / (n - 1)
        vals, vecs = torch.linalg.eigh(cov)
        vals, vecs = vals.flip(0), vecs.flip(1)
        keep = vals > tol * max(float(vals[0]), 1e-30)
        vals, eigvecs = vals[keep], vecs[:, keep]
    return vals, eigvecs.float()


def fit_mixture(x: torch.Tensor, n_components: int, seed: int = 0, data_key: str | None = None,
                progress: bool = True) -> MixtureFit:
    """k-means with `n_components` clusters on `x` (N, C, H, W), then each cluster's covariance.

    With `data_key` (a hash of `x`, e.g. `DatasetStats.key`) the fit is cached under
    `data/cache/gmm/`, keyed by data, K and seed; every load checks the cache's digest and that every field
    has K components (`lib.core.integrity`), and a bad cache is reported in one line and refitted.
    """
    if not 1 <= n_components <= len(x):
        raise ValueError(f"n_components must be in [1, {len(x)}], got {n_components}")
    cache = None
    if data_key is not None:
        cache = paths.cache_dir("gmm") / f"{data_key}_K{n_components}_seed{seed}_v{GMM_CACHE_VERSION}.pt"
        fields = integrity.load_cache(cache, lambda f: integrity.check_mixture(f, n_components), "[gmm] cache",
                                      "refitting")
        if fields is not None:
            return MixtureFit(**fields)
    flat = x.reshape(len(x), -1)
    labels = _kmeans_labels(flat, n_components, seed)
    means, counts, eigvals, eigvecs = [], [], [], []
    for k in tqdm(range(n_components), desc=f"covariances K={n_components}", disable=not progress):
        members = flat[labels == k]
        means.append(members.double().mean(0))
        counts.append(len(members))
        vals, vecs = _cluster_eigenpairs(members)
        eigvals.append(vals)
        eigvecs.append(vecs)
    fit = MixtureFit(torch.stack(means), torch.tensor(counts), eigvals, eigvecs, tuple(x.shape[1:]))
    if cache is not None:
        integrity.save({"means": fit.means, "counts": fit.counts, "eigvals": fit.eigvals,
                        "eigvecs": fit.eigvecs, "shape": fit.shape}, cache)
    return fit


def _kmeans_labels(flat: torch.Tensor, n_components: int, seed: int) -> torch.Tensor:
    """Cluster labels from Lloyd's k-means (`lib.models.kmeans`); every cluster keeps at least one member."""
    if n_components == 1:
        return torch.zeros(len(flat), dtype=torch.long)
    return kmeans.kmeans(flat, n_components, seed=seed).labels

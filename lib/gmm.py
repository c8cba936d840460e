"""Gaussian mixtures fitted by k-means, as denoisers.

A mixture sum_k pi_k N(mu_k, Sigma_k) is fitted by k-means (scikit-learn's MiniBatchKMeans): the
cluster centroid, the members' covariance plus a small ridge, the cluster frequency. Each component
is stored as a low-rank-plus-floor Gaussian,

    Sigma_k = U_k diag(lambda_k) U_k^T + tau (I - U_k U_k^T),

with U_k (d, M) orthonormal columns: at full rank the members' nonzero eigenpairs plus the ridge
(tau = ridge), at rank r the top r eigenpairs and nothing else (tau = 0, like the rank-r Gaussian).
The denoiser is the responsibility-weighted sum of the component denoisers,

    D(x; sigma) = sum_k w_k(x) [mu_k + U_k diag(lambda/(lambda+sigma^2)) c_k + tau/(tau+sigma^2)(x - mu_k - U_k c_k)],
    c_k = U_k^T (x - mu_k),   w = softmax_k(log pi_k + log N(x; mu_k, Sigma_k + sigma^2 I)),

with the responsibilities computed in log space, so that they stay finite at sigma = 0.01.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lib import integrity, paths
from lib.denoisers import check_batch, sigma_per_sample
from lib.mixtures import flush_subnormal_logits_

#: Variance added to every direction of a full-rank component (the authors' value); at sigma = 0.01 it
#: decides how much of the off-subspace part of x a component keeps: ridge / (ridge + sigma^2).
DEFAULT_RIDGE = 1e-5
GMM_CACHE_VERSION = 1


@dataclass
class GaussianMixtureDenoiser:
    """A mixture of low-rank-plus-floor Gaussians; see the module docstring for the formulas."""

    means: torch.Tensor  # (K, d)
    log_weights: torch.Tensor  # (K,), log pi_k
    eigvals: torch.Tensor  # (K, M); padded entries equal `floor`
    eigvecs: torch.Tensor  # (K, d, M); padded columns are zero
    floor: float  # tau, the variance of every direction outside span(U_k)
    shape: tuple[int, ...]
    chunk: int = 16  # components evaluated at once (memory: chunk * B * M floats)
    widths: tuple[int, ...] | None = None  # eigenpairs kept per component (None: all M)

    def __post_init__(self) -> None:
        if self.widths is None:
            self.widths = (self.eigvals.shape[1],) * self.n_components
        # sigma = 0 has a meaning (D(x; 0) = x) only when every component has a density: all variances > 0.
        self.zero_sigma_ok = self.floor > 0 and bool((self.eigvals > 0).all())

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> GaussianMixtureDenoiser:
        move = {"dtype": dtype, "device": device}
        return GaussianMixtureDenoiser(self.means.to(**move), self.log_weights.to(**move), self.eigvals.to(**move),
                                       self.eigvecs.to(**move), self.floor, self.shape, self.chunk, self.widths)

    def _component_terms(self, flat: torch.Tensor, s2: torch.Tensor, k0: int, k1: int, denoise: bool = True):
        """Log-joint (k, B) and, with `denoise`, the component denoisers (k, B, d) for components k0..k1.

        Only the first max(widths[k0:k1]) eigenpairs are used: the padding beyond a component's width is
        (zero vector, variance `floor`), exactly what the floor term already accounts for.
        """
        width = max(self.widths[k0:k1])
        eigvecs = self.eigvecs[k0:k1, :, :width]
        diff = flat.unsqueeze(0) - self.means[k0:k1].unsqueeze(1)  # (k, B, d)
        coeff = torch.bmm(diff, eigvecs)  # (k, B, M)
        lam = self.eigvals[k0:k1, :width].unsqueeze(1)  # (k, 1, M)
        var = lam + s2  # (k, B, M) by broadcasting s2 (1, B, 1)
        floor_var = self.floor + s2[..., 0]  # (1, B)
        residual = diff - torch.bmm(coeff, eigvecs.transpose(1, 2))
        n_floor = self.dim - width
        log_joint = -0.5 * ((coeff**2 / var).sum(-1) + (residual**2).sum(-1) / floor_var
                            + torch.log(var).sum(-1) + n_floor * torch.log(floor_var)
                            + self.dim * math.log(2 * math.pi))
        log_joint = log_joint + self.log_weights[k0:k1].unsqueeze(1)  # (k, B)
        if not denoise:
            return log_joint, None
        shrunk = torch.bmm(coeff * (lam / var), eigvecs.transpose(1, 2))
        denoised = self.means[k0:k1].unsqueeze(1) + shrunk + residual * (self.floor / floor_var).unsqueeze(-1)
        return log_joint, denoised

    def _prepare(self, x: torch.Tensor, sigma: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x as (B, d) in the model's dtype and sigma^2 as (1, B, 1), after checking both."""
        check_batch(x, self.shape, "GaussianMixtureDenoiser")
        flat = x.flatten(1).to(self.means.dtype)
        hint = ("a mixture with low-rank components (zero variance off their subspace) is undefined at "
                "sigma = 0; pass a small positive sigma, or use full-rank components (rank=None)")
        s = sigma_per_sample(sigma, flat, positive=not self.zero_sigma_ok, hint=hint)
        return flat, s.reshape(1, -1, 1) ** 2

    def _chunks(self) -> list[tuple[int, int]]:
        return [(k0, min(k0 + self.chunk, self.n_components)) for k0 in range(0, self.n_components, self.chunk)]

    def _log_joint(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x; mu_k, Sigma_k + sigma^2 I), shape (K, B)."""
        flat, s2 = self._prepare(x, sigma)
        return torch.cat([self._component_terms(flat, s2, k0, k1, denoise=False)[0] for k0, k1 in self._chunks()])

    def responsibilities(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities w (B, K), each row summing to one."""
        return torch.softmax(self._log_joint(x, sigma), dim=0).T

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """sum_k w_k D_k, accumulated chunk by chunk with a running log-sum-exp (memory O(chunk * B * d)).

        Empty in, empty out; at sigma = 0 (full-rank components only) D(x; 0) = x."""
        flat, s2 = self._prepare(x, sigma)
        if flat.shape[0] == 0:
            return torch.empty_like(x)
        run_max = torch.full((flat.shape[0],), float("-inf"), dtype=flat.dtype, device=flat.device)
        run_sum = torch.zeros_like(run_max)
        run_acc = torch.zeros_like(flat)
        for k0, k1 in self._chunks():
            log_joint, denoised = self._component_terms(flat, s2, k0, k1)
            new_max = torch.maximum(run_max, log_joint.max(0).values)
            rescale = torch.exp(run_max - new_max)
            weights = flush_subnormal_logits_(log_joint - new_max).exp_()  # (k, B)
            run_sum = run_sum * rescale + weights.sum(0)
            run_acc = run_acc * rescale.unsqueeze(1) + torch.einsum("kb,kbd->bd", weights, denoised)
            run_max = new_max
        return (run_acc / run_sum.unsqueeze(1)).reshape(x.shape).to(x.dtype)

    def log_density(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """log p_sigma(x) of the noised mixture, (B,); its gradient is the score."""
        return torch.logsumexp(self._log_joint(x, sigma), dim=0)


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
        """The mixture at component rank `rank` (None: full covariance plus `ridge`).

        Components are ordered by the number of eigenpairs they keep, widest first, so that each chunk of
        the denoiser pads only to its own widest member (clusters of K = 500 keep ~100-400 eigenpairs).
        """
        if rank is not None and rank < 1:
            raise ValueError(f"rank must be a positive integer or None (full), got {rank}")
        floor = ridge if rank is None else 0.0
        keep = [len(v) if rank is None else min(rank, len(v)) for v in self.eigvals]
        order = sorted(range(len(keep)), key=lambda i: -keep[i])
        width = max(1, max(keep))
        d, k = self.means.shape[1], self.means.shape[0]
        eigvals = torch.full((k, width), floor, dtype=torch.float64)
        eigvecs = torch.zeros((k, d, width), dtype=torch.float32)
        for row, i in enumerate(order):
            m = keep[i]
            eigvals[row, :m] = self.eigvals[i][:m] + (ridge if rank is None else 0.0)
            eigvecs[row, :, :m] = self.eigvecs[i][:, :m]
        log_weights = torch.log(self.counts.double() / self.counts.sum())[order]
        return GaussianMixtureDenoiser(self.means[order].to(dtype), log_weights.to(dtype), eigvals.to(dtype),
                                       eigvecs.to(dtype), floor, self.shape,
                                       widths=tuple(max(1, keep[i]) for i in order))


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
    has K components (`lib.integrity`), and a bad cache is reported in one line and refitted.
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
    """Cluster labels from MiniBatchKMeans; every cluster keeps at least one member."""
    if n_components == 1:
        return torch.zeros(len(flat), dtype=torch.long)
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=n_components, random_state=seed, batch_size=4096, n_init=3,
                         max_no_improvement=20)
    labels = torch.from_numpy(km.fit_predict(flat.numpy().astype(np.float32)).astype(np.int64))
    present = torch.bincount(labels, minlength=n_components)
    if bool((present == 0).any()):
        raise RuntimeError(f"k-means left {int((present == 0).sum())} empty clusters for K={n_components}; "
                           "try another seed or fewer components")
    return labels

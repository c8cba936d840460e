"""The authors' formulation of the analytic scores, re-written in plain torch for a side-by-side benchmark.

Wang & Vastola's code (github.com/Animadversio/GaussianTeleportationDiffusion) is followed for *how* each
quantity is computed - which matrices are formed, inverted or materialised, and in which order - so that
`test_bench_vs_authors.py` times the same computation the two ways. Nothing here is their code; each
function names the file it follows. Everything is float32 on the CPU, like our models by default.

All functions return the *denoiser* D(x; sigma) = E[x0 | x], the quantity our models return. The
authors return scores; each function computes the score their way and converts it with the relation they
use themselves when comparing against EDM, D = x + sigma^2 s (a cheap element-wise step).

Shapes: x is (B, ...) and is flattened to (B, d); the output has x's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).to(torch.float32)


def gaussian_score_dense(x: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian denoiser with a dense inverse formed on every call.

    Follows `Gaussian_score` in `gaussian_teleport/analytical_score_lib.py` (same as
    `core/analytical_score_lib.py`): for N(mu, Sigma) noised at sigma,

        s(x) = -(Sigma + sigma^2 I)^{-1} (x - mu),

    with (Sigma + sigma^2 I)^{-1} computed by `torch.inverse` at each call and applied as one
    (B, d) x (d, d) product (row vectors: (mu - x) P, P symmetric). Returns D = x + sigma^2 s, i.e.
    mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu).
    """
    flat = _flat(x)
    cov = cov.to(torch.float32)
    prec = torch.inverse(cov + sigma**2 * torch.eye(cov.shape[0], dtype=cov.dtype))
    score = (mu.reshape(1, -1).to(torch.float32) - flat) @ prec
    return (flat + sigma**2 * score).reshape(x.shape)


def training_set_denoiser_softmax(x: torch.Tensor, train_flat: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact denoiser of the training set (delta mixture), with the full distance matrix materialised.

    Follows `delta_GMM_score` in `gaussian_teleport/analytical_score_lib.py`:

        d2_bn = ||x_b - x_n||^2            (torch.cdist, squared; a (B, N) matrix)
        w_b   = softmax_n(-d2_bn / (2 sigma^2))
        s(x)  = (w X - x) / sigma^2,        so D = x + sigma^2 s = sum_n w_n x_n.

    `torch.cdist` computes the distances through a (B, d) x (d, N) product for large inputs; the weighted
    average is a (B, N) x (N, d) product.
    """
    flat = _flat(x)
    data = train_flat.reshape(train_flat.shape[0], -1).to(torch.float32)
    sqdist = torch.cdist(flat, data, p=2) ** 2
    weights = F.softmax(-sqdist / (2 * sigma**2), dim=1)
    score = (weights @ data - flat) / sigma**2
    return (flat + sigma**2 * score).reshape(x.shape)


def mixture_denoiser_per_component(
    x: torch.Tensor, means: torch.Tensor, covs: torch.Tensor | Sequence[torch.Tensor],
    weights: torch.Tensor, sigma: float,
) -> torch.Tensor:
    """Gaussian-mixture denoiser by a Python loop over dense component covariances.

    Follows `diffuse_gmm_torch` and `GaussianMixture_torch.score` in `core/gaussian_mixture_lib.py`:
    noising at sigma builds a new mixture with covariances C_k = Sigma_k + sigma^2 I, whose constructor
    inverts each one (P_k = C_k^{-1}, `torch.linalg.inv`) and builds a `MultivariateNormal(mu_k, C_k)`
    (a Cholesky factor). The score is then

        l_bk = log N(x_b; mu_k, C_k)                       (MultivariateNormal.log_prob, per component)
        r_b  = softmax_k(l_b) * pi, renormalised            (= softmax_k(l_bk + log pi_k))
        s(x) = sum_k r_bk * (-(x_b - mu_k) P_k)             (one (B, d) x (d, d) product per component)

    and D = x + sigma^2 s. `covs` is (K, d, d) or a sequence of K (d, d) matrices; `weights` (K,) need
    not be normalised.
    """
    flat = _flat(x)
    d = flat.shape[1]
    eye = torch.eye(d, dtype=torch.float32)
    covs_t = [c.to(torch.float32) + sigma**2 * eye for c in covs]  # the diffused mixture
    precs = [torch.linalg.inv(c) for c in covs_t]
    mvns = [MultivariateNormal(m.to(torch.float32), c) for m, c in zip(means, covs_t, strict=True)]
    norm_weights = weights.to(torch.float32) / weights.sum()

    log_pdf = torch.stack([mvn.log_prob(flat) for mvn in mvns]).T  # (B, K)
    participance = torch.softmax(log_pdf, dim=1) * norm_weights[None, :]
    participance = participance / participance.sum(dim=1, keepdim=True)
    score = torch.zeros_like(flat)
    for k in range(len(precs)):
        grad = -(flat - means[k].to(torch.float32)) @ precs[k]
        score += participance[:, k:k + 1] * grad
    return (flat + sigma**2 * score).reshape(x.shape)


def mixture_denoiser_eigenbasis(
    x: torch.Tensor, means: torch.Tensor, eigvecs: torch.Tensor, eigvals: torch.Tensor,
    weights: torch.Tensor, sigma: float,
) -> torch.Tensor:
    """Gaussian-mixture denoiser in each component's eigenbasis, batched over components by einsum.

    This is how the authors score their k-means mixtures of images: `gaussian_mixture_score_batch_sigma_torch`
    (full basis, eigenvalues + sigma^2) and `gaussian_mixture_lowrank_score_batch_sigma_torch` (rank r) in
    `core/gaussian_mixture_lib.py`, called as in `analysis/EDM_GMM_lowrank_score_cmp_mass_CLI.py`.
    With Sigma_k = U_k diag(lambda_k) U_k^T, residuals e_bk = x_b - mu_k materialised as (B, K, d) and
    c_bk = U_k^T e_bk (an einsum over all components at once):

    full basis (U_k is d x d, v = lambda + sigma^2):
        l_bk = -1/2 (sum log v_k + sum c_bk^2 / v_k) + log pi_k
        s_bk = -U_k (c_bk / v_k)
    rank r (U_k is d x r; the other d - r directions have variance sigma^2 only):
        l_bk = -1/2 (sum log(lambda_k + sigma^2) + (d - r) log sigma^2
                     + (||e_bk||^2 - sum c_bk^2 lambda_k / (lambda_k + sigma^2)) / sigma^2) + log pi_k
        s_bk = (-e_bk + U_k (c_bk lambda_k / (lambda_k + sigma^2))) / sigma^2
    and s(x) = sum_k softmax_k(l_bk) s_bk (formed as a (B, K, d) tensor), D = x + sigma^2 s.

    `eigvecs` is (K, d, M), `eigvals` (K, M); M == d selects the full-basis form.
    """
    flat = _flat(x)
    d = flat.shape[1]
    means = means.to(torch.float32)
    us = eigvecs.to(torch.float32)
    lam = eigvals.to(torch.float32)
    log_w = torch.log(weights.to(torch.float32) / weights.sum())
    residuals = flat[:, None, :] - means[None, :, :]  # (B, K, d)
    rot = torch.einsum("BCD,CDE->BCE", residuals, us)  # (B, K, M)
    if us.shape[-1] == d:
        var = lam[None] + sigma**2
        logdet = torch.log(var).sum(-1)
        mahal = (rot**2 / var).sum(-1)
        log_prob = -0.5 * (logdet + mahal) + log_w
        compo = torch.einsum("BCD,CED->BCE", -(rot / var), us)  # (B, K, d)
        score = torch.einsum("BC,BCE->BE", F.softmax(log_prob, dim=-1), compo)
    else:
        rank = us.shape[-1]
        s2 = sigma**2
        logdet = torch.log(lam + s2).sum(-1)[None] + (d - rank) * math.log(s2)
        sqnorm = (residuals**2).sum(-1)
        shrink = lam / (lam + s2)  # (K, r)
        mahal_lowrank = (rot**2 * shrink[None]).sum(-1)
        log_prob = -0.5 * (logdet + (sqnorm - mahal_lowrank) / s2) + log_w
        compo = -residuals + torch.einsum("BCD,CED->BCE", rot * shrink[None], us)  # (B, K, d)
        score = torch.einsum("BC,BCE->BE", F.softmax(log_prob, dim=-1), compo) / s2
    return (flat + sigma**2 * score).reshape(x.shape)


def closed_form_jump(
    x_T: torch.Tensor, mu: torch.Tensor, U: torch.Tensor, lam: torch.Tensor, sigma_T: float, sigma: float,
) -> torch.Tensor:
    """The Gaussian probability-flow ODE solution x(sigma) from x_T at sigma_T, evaluated the authors' way.

    Follows `gaussian_analytical_x_t_solution_edm` in `notebooks/demo_edm_score_gauss_linear_approx.ipynb`
    (a list of sigmas there; one here): project, scale each eigen-coefficient, project back,

        c = U^T (x_T - mu),   x(sigma) = mu + U diag(sqrt((sigma^2 + lambda) / (sigma_T^2 + lambda))) c
                                         + (sigma / sigma_T) (x_T - mu - U c)     [only when U has r < d columns]

    i.e. two (B, d) x (d, r) products per call (einsums over a time axis of length one).
    """
    flat = _flat(x_T)
    mu = mu.reshape(-1).to(torch.float32)
    U = U.to(torch.float32)
    lam = lam.to(torch.float32)
    sigma_ts = torch.tensor([float(sigma)], dtype=torch.float32)
    rel = flat - mu[None, :]
    coef = rel @ U  # (B, r)
    residue = rel - coef @ U.T if U.shape[1] < U.shape[0] else None
    scaling = torch.sqrt(sigma_ts[None, :] ** 2 + lam[:, None]) / torch.sqrt(sigma_T**2 + lam)[:, None]  # (r, T)
    scaled = torch.einsum("br,rT->Tbr", coef, scaling)
    on_manifold = torch.einsum("Tbr,rn->Tbn", scaled, U.T)
    traj = on_manifold + mu[None, None]
    if residue is not None:
        traj = traj + torch.einsum("bn,T->Tbn", residue, sigma_ts / sigma_T)
    return traj[0].reshape(x_T.shape)

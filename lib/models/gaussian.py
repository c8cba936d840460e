"""Gaussian models of the data and the closed-form solution of the probability-flow ODE for them.

For data x0 ~ N(mu, Sigma) with Sigma = U diag(lambda) U^T, the noised density is N(mu, Sigma + sigma^2 I)
and the optimal denoiser is linear:

    D(x; sigma) = mu + U diag(lambda / (lambda + sigma^2)) U^T (x - mu).

In the eigenbasis, c = U^T (x - mu), the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
decouples into dc_k/dsigma = sigma c_k / (lambda_k + sigma^2), solved by
c_k(sigma) = c_k(sigma_T) sqrt((sigma^2 + lambda_k) / (sigma_T^2 + lambda_k)), so that

    x(sigma) = mu + U diag(sqrt((sigma^2 + lambda) / (sigma_T^2 + lambda))) U^T (x_T - mu)
               + (sigma / sigma_T) (I - U U^T) (x_T - mu)        [the last term only at low rank]
    x0_hat(sigma) = D(x(sigma); sigma).

A rank-r model keeps the top r eigenpairs and gives the other directions zero variance: the denoiser
pulls them fully to mu and the ODE shrinks them in proportion to sigma.

Models store their statistics in one dtype on one device: float32 by default (evaluation), float64
for verification. Inputs are cast to that dtype and outputs returned in the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib.data.statistics import DatasetStats
from lib.models.denoisers import check_batch, check_jump_gains, check_sigma, sigma_per_sample

# --------------------------------------------------------------------------- helpers


def flat_batch(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)  # (B, d), also for B = 0


def sigma_column(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sigma as a (B, 1) tensor for flattened (B, d) batches."""
    return sigma_per_sample(sigma, x).reshape(-1, 1)


def shrinkage(eigvals: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """lambda / (lambda + sigma^2), with the sigma -> 0 limit (1, the identity) where both vanish.

    Broadcasts eigvals (r,) against sigma (scalar or (B, 1)); one division when every sigma is positive.
    """
    denom = eigvals + sigma**2
    if bool((sigma > 0).all()):
        return eigvals / denom
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, eigvals / safe, torch.ones_like(denom))


# --------------------------------------------------------------------------- Gaussian denoiser


class GaussianDenoiser:
    """D(x; sigma) = mu + U diag(lambda / (lambda + sigma^2)) U^T (x - mu) for N(mu, U diag(lambda) U^T).

    `eigvecs` holds r <= d orthonormal columns (the top r eigenpairs at rank r); the orthogonal
    complement has zero variance and is pulled fully to mu.
    """

    def __init__(
        self, mean: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor, shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> None:
        d = mean.numel()
        if eigvecs.shape[0] != d or eigvecs.shape[1] != eigvals.numel():
            raise ValueError(f"eigvecs must be (d, r) = ({d}, {eigvals.numel()}), got {tuple(eigvecs.shape)}")
        if int(np.prod(shape)) != d:
            raise ValueError(f"shape {shape} does not hold d = {d} values")
        if not all(bool(torch.isfinite(t).all()) for t in (mean, eigvals, eigvecs)):
            raise ValueError("the mean, eigenvalues and eigenvectors of a Gaussian must be finite (got NaN or inf)")
        self.mean = mean.reshape(-1).to(device=device, dtype=dtype)
        self.eigvals = eigvals.to(device=device, dtype=dtype).clamp_min(0.0)
        self.eigvecs = eigvecs.to(device=device, dtype=dtype).contiguous()
        self.shape = tuple(shape)
        self.dtype = dtype

    @classmethod
    def from_stats(
        cls, stats: DatasetStats, rank: int | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> GaussianDenoiser:
        """The Gaussian with the dataset's mean and covariance; `rank` keeps the top `rank` eigenpairs."""
        r = stats.dim if rank is None else int(rank)
        if not 1 <= r <= stats.dim:
            raise ValueError(f"rank must be in [1, {stats.dim}], got {rank}")
        return cls(stats.mean, stats.eigvals[:r], stats.eigvecs[:, :r], stats.shape, dtype, device)

    # ----------------------------------------------------------------- basic quantities

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def rank(self) -> int:
        return self.eigvals.numel()

    @property
    def full_rank(self) -> bool:
        return self.rank == self.dim

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> GaussianDenoiser:
        """A copy in another dtype or on another device."""
        return GaussianDenoiser(self.mean, self.eigvals, self.eigvecs, self.shape,
                                dtype or self.dtype, device or self.mean.device)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eigen-coefficients c = U^T (x - mu), (B, r), and at low rank the residual (I - U U^T)(x - mu)."""
        centred = flat_batch(x).to(self.dtype) - self.mean
        coeffs = centred @ self.eigvecs
        residual = None if self.full_rank else centred - coeffs @ self.eigvecs.T
        return coeffs, residual

    def reconstruct(self, coeffs: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """mu + U c (+ residual), reshaped to images (B, C, H, W)."""
        flat = self.mean + coeffs @ self.eigvecs.T
        if residual is not None:
            flat = flat + residual
        return flat.reshape(-1, *self.shape)

    # ----------------------------------------------------------------- denoiser and score

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """D(x; sigma) = mu + U diag(lambda / (lambda + sigma^2)) U^T (x - mu).

        One sigma for the whole batch and more rows than `operator_pays_off` asks for: one product with
        the (d, d) operator M = U diag(lambda / (lambda + sigma^2)) U^T, D = (mu - M mu) + M x. Otherwise
        (per-sample sigmas, small batches, low rank) two thin products through the eigenbasis.
        """
        check_batch(x, self.shape, "GaussianDenoiser")
        flat = flat_batch(x).to(self.dtype)
        s = sigma_per_sample(sigma, flat).reshape(-1)
        if flat.shape[0] == 0:
            return torch.empty_like(x)
        if self.operator_pays_off(flat.shape[0]) and bool((s == s[0]).all()):
            op = self.denoise_operator(float(s[0]))
            out = torch.addmm(self.mean - self.mean @ op, flat, op)
        else:
            coeffs = (flat - self.mean) @ self.eigvecs
            coeffs.mul_(shrinkage(self.eigvals, s.reshape(-1, 1)))
            out = torch.addmm(self.mean, coeffs, self.eigvecs.T)
        return out.reshape(x.shape).to(x.dtype)

    def operator_pays_off(self, batch: int) -> bool:
        """Whether building the (d, d) operator (2 d^2 r flops) and one (B, d) x (d, d) product costs less
        than two thin products through the eigenbasis (4 B d r flops)."""
        d, r = self.dim, self.rank
        return 2 * d * d * r + 2 * batch * d * d < 4 * batch * d * r

    def denoise_operator(self, sigma: float) -> torch.Tensor:
        """The (d, d) matrix U diag(lambda / (lambda + sigma^2)) U^T (symmetric), D(x) - mu = M (x - mu)."""
        check_sigma(sigma)
        sig = torch.tensor(float(sigma), dtype=self.dtype, device=self.mean.device)
        return self._spectral_operator(shrinkage(self.eigvals, sig))

    def _spectral_operator(self, gains: torch.Tensor) -> torch.Tensor:
        """U diag(gains) U^T, (d, d): the linear map that scales eigen-coefficient k by gains[k]."""
        return (self.eigvecs * gains) @ self.eigvecs.T

    # ----------------------------------------------------------------- closed-form ODE solution

    def _growth(self, sigma: float, sigma_t: float) -> torch.Tensor:
        """sqrt((sigma^2 + lambda) / (sigma_T^2 + lambda)): how c_k scales from sigma_T to sigma (checked)."""
        growth = torch.sqrt((sigma**2 + self.eigvals) / (sigma_t**2 + self.eigvals))
        check_jump_gains(sigma_t, sigma, self.dtype, growth)
        return growth

    def trajectory(self, x_t: torch.Tensor, sigma_t: float, sigmas: list[float] | torch.Tensor) -> ClosedForm:
        """The exact PF-ODE solution x(sigma) and x0_hat(sigma) = D(x(sigma); sigma) at each of `sigmas`.

        `x_t` is projected once into the eigenbasis; each sigma then costs one product with U^T.
        """
        check_batch(x_t, self.shape, "GaussianDenoiser.trajectory")
        sigma_t = _positive(sigma_t, "sigma_T")
        levels = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        check_sigma(levels, name="every sigma of the trajectory")
        sigma_list = levels.tolist()
        coeffs, residual = self.project(x_t)
        xs, x0s = [], []
        for sigma in sigma_list:
            c = coeffs * self._growth(sigma, sigma_t)
            res = None if residual is None else residual * (sigma / sigma_t)
            sig = torch.full((1, 1), sigma, dtype=self.dtype, device=self.mean.device)
            xs.append(self.reconstruct(c, res))
            x0s.append(self.reconstruct(c * shrinkage(self.eigvals, sig)))
        return ClosedForm(torch.tensor(sigma_list, dtype=torch.float64), torch.stack(xs), torch.stack(x0s))

    def jump_operator(self, sigma_t: float, sigma: float) -> torch.Tensor:
        """The (d, d) matrix M with x(sigma) - mu = M (x_T - mu): U diag(g) U^T (+ (sigma/sigma_T)(I - U U^T))."""
        sigma_t, sigma = jump_levels(sigma_t, sigma)
        op = self._spectral_operator(self._growth(sigma, sigma_t))
        if not self.full_rank:
            u = self.eigvecs
            eye = torch.eye(self.dim, dtype=self.dtype, device=u.device)
            op = op + (sigma / sigma_t) * (eye - u @ u.T)
        return op

    def jump(self, x_t: torch.Tensor, sigma_t: float, sigma: float,
             operator: torch.Tensor | None = None) -> torch.Tensor:
        """x(sigma) from x_T at sigma_T in one product: mu + (x_T - mu) M^T (M symmetric).

        Pass a precomputed `jump_operator(sigma_t, sigma)` to reuse it across batches. Empty in, empty out.
        A sigma_T whose square the dtype cannot hold (below 1.1e-19 in float32) is a ModelError, not NaN.
        """
        check_batch(x_t, self.shape, "GaussianDenoiser.jump")
        if x_t.shape[0] == 0:
            if operator is None:
                jump_levels(sigma_t, sigma)
            return torch.empty_like(x_t)
        op = self.jump_operator(sigma_t, sigma) if operator is None else operator
        flat = (flat_batch(x_t).to(self.dtype) - self.mean) @ op + self.mean
        return flat.reshape(x_t.shape).to(x_t.dtype)

    def sample(self, n: int, sigma_t: float = 80.0, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """Samples by the exact ODE from x_T = sigma_T * noise (EDM's start) down to sigma = 0."""
        if noise is None:
            noise = torch.randn((n, *self.shape), generator=generator, dtype=torch.float32)
        x_t = sigma_t * noise.to(device=self.mean.device, dtype=self.dtype)
        return self.jump(x_t, sigma_t, 0.0)


@dataclass(frozen=True)
class ClosedForm:
    """The exact PF-ODE solution at `sigmas` (S,): states `x` and denoised estimates `x0_hat`, (S, B, C, H, W)."""

    sigmas: torch.Tensor
    x: torch.Tensor
    x0_hat: torch.Tensor


def _positive(value: float, name: str) -> float:
    check_sigma(value, positive=True, name=name, hint="the jump starts from a positive noise level")
    return float(value)


def jump_levels(sigma_t: float, sigma: float) -> tuple[float, float]:
    """(float(sigma_T), sigma) of a closed-form jump, after checking both: finite, sigma_T > 0, sigma >= 0."""
    check_sigma(sigma, name="the target sigma")
    return _positive(sigma_t, "sigma_T"), sigma


def closed_form_trajectory(
    model: GaussianDenoiser, x_t: torch.Tensor, sigma_t: float, sigmas: list[float] | torch.Tensor,
) -> ClosedForm:
    """x(sigma) and x0_hat(sigma) of the Gaussian PF-ODE from `x_t` at `sigma_t` (see module docstring)."""
    return model.trajectory(x_t, sigma_t, sigmas)


def closed_form_jump(model: GaussianDenoiser, x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor:
    """x(sigma) from `x_t` at `sigma_t` in one product (the analytical teleportation jump)."""
    return model.jump(x_t, sigma_t, sigma)


# --------------------------------------------------------------------------- feature emergence


def decided_fraction(model: GaussianDenoiser, x0_hats: torch.Tensor, x_final: torch.Tensor) -> torch.Tensor:
    """How much of each principal feature the denoised estimate has committed to, along a trajectory.

    For estimates x0_hat(sigma_i), (S, B, C, H, W), and the end points x(0), (B, C, H, W), returns (S, r):

        q_k(sigma) = sum_b c_bk(x0_hat(sigma))^2 / sum_b c_bk(x(0))^2,   c = U^T (. - mu),

    the share of feature k's final variance already present in the estimate. For the Gaussian ODE,
    c_k(x0_hat(sigma)) = c_k(x(0)) sqrt(lambda_k / (lambda_k + sigma^2)), so q_k = lambda_k / (lambda_k + sigma^2):
    one half at sigma^2 = lambda_k.
    """
    final, _ = model.project(x_final)
    denom = (final**2).sum(0)
    est = torch.stack([model.project(x0)[0] for x0 in x0_hats])
    return (est**2).sum(1) / denom


def emergence_sigmas(sigmas: torch.Tensor, fraction: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    """Per feature, the sigma at which `fraction` (S, K) first reaches `level` as sigma falls.

    `sigmas` (S,) must be decreasing and positive; the crossing is interpolated linearly in log sigma.
    Features that never reach `level` (or start above it) get NaN.
    """
    log_s = torch.log(torch.as_tensor(sigmas, dtype=torch.float64))
    frac = fraction.to(torch.float64)
    above = frac >= level
    out = torch.full((frac.shape[1],), float("nan"), dtype=torch.float64)
    for k in range(frac.shape[1]):
        idx = torch.nonzero(above[:, k]).flatten()
        if len(idx) == 0 or idx[0] == 0:
            continue
        j = int(idx[0])
        f0, f1 = float(frac[j - 1, k]), float(frac[j, k])
        t = (level - f0) / (f1 - f0)
        out[k] = torch.exp(log_s[j - 1] + t * (log_s[j] - log_s[j - 1]))
    return out

"""Mixture models of the data: the exact training-set score (delta mixture).

The empirical distribution of a training set {x_n} noised at level sigma is a mixture of N(x_n, sigma^2 I);
its optimal denoiser is the posterior-weighted average of the training points,

    D(x; sigma) = sum_n w_n(x) x_n,   w = softmax_n(-||x - x_n||^2 / (2 sigma^2)).

Since ||x - x_n||^2 = ||x||^2 - 2 x.x_n + ||x_n||^2 and ||x||^2 is shared by every n, the logits are
(x.x_n - ||x_n||^2 / 2) / sigma^2: one matmul per chunk of the set with precomputed norms, and no
cancellation between large ||x||^2 terms at high noise.

Shifted logits below log(float32 tiny) ~ -87.3 are set to -inf before the exponential: their weights
would be subnormal (< 1.2e-38 next to the leading weight 1, far below float32's resolution of the sum),
and subnormal operands make the weighted sum's matrix product up to 10x slower on x86 CPUs.
"""

from __future__ import annotations

import math

import torch

from lib.models.denoisers import check_batch, sigma_per_sample

#: Why the training-set denoiser refuses sigma = 0 (its weights divide by sigma^2).
ZERO_SIGMA_HINT = ("the training-set denoiser is undefined at sigma = 0 (its sigma -> 0 limit is the nearest "
                   "training point); pass a small positive sigma such as 0.002")


def flush_subnormal_logits_(shifted: torch.Tensor) -> torch.Tensor:
    """Set (in place) logits whose exponential would be subnormal in their dtype to -inf; returns them.

    For max-shifted logits (<= 0) the weights exp(l) < tiny are below the resolution of any sum that
    contains the leading weight 1, so dropping them changes nothing representable, while subnormal
    operands slow the CPU's matrix products by up to an order of magnitude.
    """
    return shifted.masked_fill_(shifted < math.log(torch.finfo(shifted.dtype).tiny), float("-inf"))


class DeltaMixtureDenoiser:
    """The exact denoiser of the training set, D(x; sigma) = sum_n softmax_n(-||x - x_n||^2 / 2 sigma^2) x_n.

    The set is stored once (in its own dtype, on `device`) and visited in chunks of `chunk_size` with a
    running (online) log-sum-exp, so memory is O(B * chunk_size + B * d) whatever the size of the set.
    Each chunk is cast to `dtype` (float32 by default, float64 for verification); the result is stable
    down to sigma = 0.01 and below (the nearest training point then takes all the weight).
    """

    def __init__(self, data: torch.Tensor, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, chunk_size: int = 16384) -> None:
        if data.ndim < 2 or data.shape[0] == 0:
            raise ValueError("data must be a non-empty batch (N, ...)")
        self.shape = tuple(data.shape[1:])
        self.data = data.reshape(data.shape[0], -1).to(device=device).contiguous()
        self.half_sq_norms = 0.5 * (self.data.to(torch.float64) ** 2).sum(1)
        self.dtype = dtype
        self.chunk_size = int(chunk_size)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """D(x; sigma) for x (B, *shape) and sigma > 0 (a float or a (B,) tensor); empty in, empty out."""
        check_batch(x, self.shape, "DeltaMixtureDenoiser")
        flat = x.flatten(1).to(self.dtype)
        inv_var = 1.0 / sigma_per_sample(sigma, flat, positive=True, hint=ZERO_SIGMA_HINT).reshape(-1, 1) ** 2
        if flat.shape[0] == 0:
            return torch.empty_like(x)
        run_max = torch.full((flat.shape[0], 1), float("-inf"), dtype=self.dtype, device=flat.device)
        run_sum = torch.zeros((flat.shape[0], 1), dtype=self.dtype, device=flat.device)
        run_acc = torch.zeros_like(flat)
        for start in range(0, len(self), self.chunk_size):
            chunk = self.data[start:start + self.chunk_size].to(self.dtype)
            half_sq = self.half_sq_norms[start:start + self.chunk_size].to(self.dtype)
            logits = torch.addmm(-half_sq, flat, chunk.T).mul_(inv_var)  # -||x - x_n||^2/2 sigma^2 + c(x)
            new_max = torch.maximum(run_max, logits.max(1, keepdim=True).values)
            rescale = torch.exp(run_max - new_max)
            weights = flush_subnormal_logits_(logits.sub_(new_max)).exp_()
            run_sum = run_sum * rescale + weights.sum(1, keepdim=True)
            run_acc = run_acc * rescale + weights @ chunk
            run_max = new_max
        return (run_acc / run_sum).reshape(x.shape).to(x.dtype)

    def log_weights(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """log w_n(x), (B, N): the posterior over training points (materialised; for small sets)."""
        flat = x.reshape(x.shape[0], -1).to(self.dtype)
        logits = (flat @ self.data.to(self.dtype).T - self.half_sq_norms.to(self.dtype)) / sigma**2
        return torch.log_softmax(logits, dim=1)


# --------------------------------------------------------------------------- far field


def relative_score_residual(
    reference: torch.Tensor, model: torch.Tensor, x: torch.Tensor, sigma: float,
) -> torch.Tensor:
    """||s_ref - s_model|| / ||s_ref|| per sample, from two denoiser outputs at the same x and sigma.

    With s = (D - x) / sigma^2 this is ||D_ref - D_model|| / ||D_ref - x||.
    """
    diff = (reference - model).reshape(x.shape[0], -1).norm(dim=1)
    return diff / (reference - x).reshape(x.shape[0], -1).norm(dim=1)


def far_field_residuals(
    reference, models: dict, x0: torch.Tensor, sigmas: list[float],
    generator: torch.Generator | None = None, progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Mean relative score residual of each model against `reference` at probes x = x0 + sigma n.

    Returns {name: (len(sigmas),) float64 tensor}; the same noise n is reused at every sigma.
    """
    from tqdm import tqdm

    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    out = {name: torch.zeros(len(sigmas), dtype=torch.float64) for name in models}
    for i, sigma in enumerate(tqdm(sigmas, disable=not progress, desc="far field")):
        x = x0 + float(sigma) * noise
        ref = reference(x, float(sigma))
        for name, model in models.items():
            out[name][i] = relative_score_residual(ref, model(x, float(sigma)), x, float(sigma)).mean()
    return out

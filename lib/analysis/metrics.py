"""How well one field explains another: per-sample uncentred explained variance (the authors' metric).

    EV(a <- b) = 1 - ||a - b||^2 / ||a||^2      (per sample, over all pixels)

averaged over probes, with its standard deviation. With the network as the reference `a` this is
`St_EV` (scores) and `Dt_EV` (denoiser outputs); with the analytic model as the reference,
`St_EV_rev` and `Dt_EV_rev`. The residual 1 - EV is what the plots show on log axes.
Statistics are computed in float64.
"""

from __future__ import annotations

import torch


def explained_variance(reference: torch.Tensor, approximation: torch.Tensor) -> torch.Tensor:
    """Per-sample EV(reference <- approximation), shape (B,), float64.

    1 for identical inputs, 0 when the approximation is zero, negative when it is worse than zero.
    An empty batch gives an empty result.
    """
    _check_tensors(reference=reference, approximation=approximation)
    if reference.shape != approximation.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(approximation.shape)}")
    if reference.ndim == 0:
        raise ValueError("explained_variance takes batches (B, ...), got a 0-d tensor")
    if reference.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64, device=reference.device)
    a = reference.reshape(reference.shape[0], -1).double()
    b = approximation.reshape(approximation.shape[0], -1).double()
    norm = (a**2).sum(1)
    if bool((norm == 0).any()):
        raise ValueError("the reference field is exactly zero for some sample: EV is undefined there")
    ev = 1.0 - ((a - b) ** 2).sum(1) / norm
    if not bool(torch.isfinite(ev).all()):
        raise ValueError("explained variance is not finite: the fields hold NaN or inf (check the model outputs)")
    return ev


def _check_tensors(**tensors: object) -> None:
    """A one-line TypeError for an argument that is not a torch.Tensor."""
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _check_moments(mu: torch.Tensor, cov: torch.Tensor, dim: int, which: str) -> None:
    """A one-line ValueError unless mu is (dim,) and cov (dim, dim), both finite."""
    if tuple(mu.shape) != (dim,) or tuple(cov.shape) != (dim, dim):
        raise ValueError(f"{which}: need a mean ({dim},) and a covariance ({dim}, {dim}), "
                         f"got {tuple(mu.shape)} and {tuple(cov.shape)}")
    if not (bool(torch.isfinite(mu).all()) and bool(torch.isfinite(cov).all())):
        raise ValueError(f"{which}: the mean or covariance holds NaN or inf (check the features)")


def mean_and_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of a 1-d tensor, as floats; no values is a one-line ValueError
    (their mean would be NaN)."""
    _check_tensors(values=values)
    if values.numel() == 0:
        raise ValueError("mean_and_std of no values: the mean of an empty set is undefined (pass at least one value, "
                         "e.g. a batch of at least one probe)")
    values = values.double()
    return float(values.mean()), float(values.std(unbiased=False)) if values.numel() > 1 else 0.0


# --------------------------------------------------------------------------- sample quality


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix via eigh (float64); tiny negatives clipped."""
    sym = 0.5 * (matrix + matrix.T)
    vals, vecs = torch.linalg.eigh(sym)
    return (vecs * vals.clamp_min(0.0).sqrt()) @ vecs.T


def gaussian_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (float64) of a feature matrix (N, F)."""
    _check_tensors(features=features)
    f = features.double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, F) feature matrix, got shape {tuple(features.shape)}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("the feature matrix holds NaN or inf (check the images it was computed from)")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2), in float64:

        ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2}),

    the matrix square roots taken by eigendecomposition (symmetric, so no complex parts to discard).
    """
    _check_tensors(mu1=mu1, cov1=cov1, mu2=mu2, cov2=cov2)
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    _check_moments(mu1, cov1, mu1.numel(), "first Gaussian")
    _check_moments(mu2, cov2, mu1.numel(), "second Gaussian")
    root1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(root1 @ cov2 @ root1)
    value = ((mu1 - mu2) ** 2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * torch.trace(cross)
    return max(float(value), 0.0)


def frechet_distance_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature matrices (N, F) and (M, F)."""
    return frechet_distance(*gaussian_moments(a), *gaussian_moments(b))


class FrechetReference:
    """Frechet distances to one fixed reference feature set, whose moments and cov^(1/2) are computed once (float64):

        FD(a) = ||mu_a - mu_r||^2 + tr(C_a) + tr(C_r) - 2 tr((C_r^(1/2) C_a C_r^(1/2))^(1/2)),

    one symmetric eigenvalue problem per evaluation instead of two matrix square roots (the same value as
    `frechet_distance`: the two cross terms have the same eigenvalues).
    """

    def __init__(self, features: torch.Tensor) -> None:
        self.mean, self.cov = gaussian_moments(features)
        self.root = _sqrtm_psd(self.cov)
        self.trace = float(torch.trace(self.cov))

    def fd(self, features: torch.Tensor) -> float:
        mean, cov = gaussian_moments(features)
        _check_moments(mean, cov, self.mean.numel(), "features compared with the reference")
        cross = torch.linalg.eigvalsh(self.root @ cov @ self.root).clamp_min(0.0).sqrt().sum()
        value = ((mean - self.mean) ** 2).sum() + torch.trace(cov) + self.trace - 2 * cross
        return max(float(value), 0.0)


def kernel_inception_distance(a: torch.Tensor, b: torch.Tensor, n_subsets: int = 50, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / F + 1)^3,
    averaged over random subsets; returns (mean, std over subsets). Works for any feature space.
    """
    _check_tensors(a=a, b=b)
    a, b = a.double(), b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs feature matrices (N, F) and (M, F), got {tuple(a.shape)} and {tuple(b.shape)}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two samples on each side")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be at least 1, got {n_subsets}")
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ValueError("KID: the features hold NaN or inf (check the images they were computed from)")
    generator = torch.Generator().manual_seed(seed)
    dim = a.shape[1]
    values = []
    for _ in range(n_subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        kxx, kyy, kxy = ((x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3)
        off = 1.0 - torch.eye(m, dtype=torch.float64)
        mmd = ((kxx * off).sum() + (kyy * off).sum()) / (m * (m - 1)) - 2 * kxy.mean()
        values.append(float(mmd))
    values_t = torch.tensor(values)
    return float(values_t.mean()), float(values_t.std()) if len(values) > 1 else 0.0

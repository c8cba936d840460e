"""Slices of a score field: the plane through three training images, seen as an arrow map.

Three images a, b, c span an affine plane {a + u e1 + v e2}, with (e1, e2) an orthonormal basis of
span(b - a, c - a) (Gram-Schmidt, float64). On a regular grid of points p in that plane the score
s(p; sigma) = (D(p; sigma) - p) / sigma^2 of each model is projected onto the plane,

    (s . e1, s . e2),

which is what an arrow map can show: where in the plane each model would move a point at noise level
sigma. The out-of-plane part of the score is dropped (it is reported as a fraction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.models.denoisers import Denoiser, score


@dataclass(frozen=True)
class Plane:
    """The plane through three images: origin a, orthonormal basis (2, d), the images' (u, v) coordinates."""

    origin: torch.Tensor  # (d,) float64
    basis: torch.Tensor  # (2, d) float64
    anchors: torch.Tensor  # (3, 2): coordinates of a, b, c
    shape: tuple[int, ...]

    def points(self, uv: torch.Tensor) -> torch.Tensor:
        """Images at plane coordinates uv (..., 2), shape (..., *shape), float32."""
        flat = self.origin + uv.double() @ self.basis
        return flat.reshape(*uv.shape[:-1], *self.shape).float()

    def project(self, field: torch.Tensor) -> torch.Tensor:
        """In-plane components (B, 2) of vectors (B, *shape)."""
        return field.reshape(len(field), -1).double() @ self.basis.T


def plane_through(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> Plane:
    """The plane through three images (each (C, H, W)); they must not be collinear."""
    origin = a.reshape(-1).double()
    u = b.reshape(-1).double() - origin
    v = c.reshape(-1).double() - origin
    e1 = u / u.norm()
    v_perp = v - (v @ e1) * e1
    if float(v_perp.norm()) < 1e-9 * float(v.norm() + 1e-30):
        raise ValueError("the three images are collinear: they do not span a plane")
    e2 = v_perp / v_perp.norm()
    basis = torch.stack([e1, e2])
    anchors = torch.stack([torch.zeros(2, dtype=torch.float64), basis @ u, basis @ v])
    return Plane(origin, basis, anchors.float(), tuple(a.shape))


def grid_coordinates(plane: Plane, n: int, margin: float = 0.35) -> torch.Tensor:
    """An n x n grid (n, n, 2) of plane coordinates covering the three anchors with a relative margin."""
    lo, hi = plane.anchors.min(0).values, plane.anchors.max(0).values
    pad = margin * (hi - lo).max()
    us = torch.linspace(float(lo[0] - pad), float(hi[0] + pad), n)
    vs = torch.linspace(float(lo[1] - pad), float(hi[1] + pad), n)
    return torch.stack(torch.meshgrid(us, vs, indexing="xy"), dim=-1)


@torch.no_grad()
def projected_score(denoiser: Denoiser, plane: Plane, uv: torch.Tensor, sigma: float,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """In-plane score components (..., 2) at the grid `uv` (..., 2), and the in-plane fraction of its norm."""
    points = plane.points(uv.reshape(-1, 2)).to(device)
    field = score(denoiser, points, sigma).float().cpu()
    in_plane = plane.project(field)
    fraction = in_plane.norm(dim=1) / field.reshape(len(field), -1).double().norm(dim=1)
    return in_plane.reshape(*uv.shape[:-1], 2), fraction.reshape(uv.shape[:-1])

"""DPM-Solver-v3's empirical model statistics in the official files (thu-ml/DPM-Solver-v3): `l.npz` with `l` and
`sb.npz` with `s` and `b`, each (levels + 1, C, H, W) float64, index 0 at sigma_max; the lambda grid is implied by
sigma_max, sigma_min and the length (`lib.diffusion.ems.lambda_grid`). What the official solver reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.diffusion.ems import EMS, lambda_grid


def save_official(ems: EMS, folder: Path | str) -> None:
    """The official layout (thu-ml/DPM-Solver-v3): `l.npz` with `l`, `sb.npz` with `s` and `b`, each
    (levels + 1, C, H, W), index 0 at sigma_max; the grid is implied by sigma_max, sigma_min and the length."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "l.npz", l=ems.l)
    np.savez(folder / "sb.npz", s=ems.s, b=ems.b)


def load_official(folder: Path | str, sigma_max: float = 80.0, sigma_min: float = 0.002) -> EMS:
    """EMS from the official files (no standard errors there: they come back as zeros)."""
    folder = Path(folder)
    with np.load(folder / "l.npz") as fl, np.load(folder / "sb.npz") as fsb:
        l_, s, b = (np.asarray(a, dtype=np.float64) for a in (fl["l"], fsb["s"], fsb["b"]))
    if not (l_.shape == s.shape == b.shape) or l_.ndim < 2:
        raise ValueError(f"official EMS of different shapes: l {l_.shape}, s {s.shape}, b {b.shape}")
    return EMS(lambda_grid(len(l_) - 1, sigma_max, sigma_min), l_, s, b, *(np.zeros_like(l_) for _ in range(3)), 0)

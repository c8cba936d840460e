"""Small numerical helpers shared by the analyses and the verdicts."""

from __future__ import annotations

import numpy as np


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the order of a power law y ~ x^slope)."""
    lx = np.log(np.asarray(x, dtype=np.float64))
    ly = np.log(np.asarray(y, dtype=np.float64))
    return float(np.polyfit(lx, ly, 1)[0])


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (Python's round() goes to even: round(2.5) = 2)."""
    return int(np.floor(value + 0.5 + 1e-9))

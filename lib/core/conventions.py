"""Conventions shared by the analyses and the verdicts: the mixture grid's model names and the noise bands."""

from __future__ import annotations

import re

#: Table names of Gaussian mixtures: `gmm<K>` (full-rank components) and `gmm<K>_rank<r>`.
MIXTURE_NAME = re.compile(r"^gmm(?P<K>\d+)(?:_rank(?P<rank>\d+))?$")


#: Bands of noise levels (inclusive bounds) in which the mixtures and the training set are compared (C4).
SIGMA_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.2), "mid": (0.5, 2.0), "high": (5.0, float("inf"))}

"""Thin library behind the notebooks of the Gaussian-score replication (Wang & Vastola, TMLR 2024).

One idea per module: `paths`, `config`, `runtime`, `data`, `plotting`, `notebooks` (and, as the
suite grows, `gaussian`, `mixtures`, `edm`, `unet`, `train`, `samplers`, `metrics`, `features`).
"""

"""Thin library behind the notebooks of the Gaussian-score replication (Wang & Vastola, TMLR 2024).

One idea per module: `paths`, `config`, `runtime`, `data`, `plotting`, `notebooks` (and, as the
suite grows, `gaussian`, `mixtures`, `edm`, `unet`, `train`, `samplers`, `metrics`, `features`).
"""

import os as _os

# OpenMP threads that wait for work by spinning make every parallel region crawl when another process
# holds a core (a batch-64 forward pass: 0.23 s on 1 thread, 3.3 s on 2 threads beside a busy core).
# Passive waiting costs nothing measurable on an idle machine. It must be set before torch loads its
# OpenMP runtime: here for the command-line tools (`python -m lib....`); the Makefile exports it for the
# notebook kernels it starts (notebooks import torch before lib) and tests/conftest.py sets it for pytest.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

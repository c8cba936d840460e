"""Thin library behind the notebooks of the Gaussian-score replication (Wang & Vastola, TMLR 2024).

One idea per module, in layers that import only from the layers below them (tests/test_layout.py checks it):

- `core`: files, caches, scales, devices;
- `data`: MNIST and any other image dataset, and their statistics;
- `models`: denoisers D(x; sigma), analytic (Gaussian, mixtures, the training set) and networks (EDM, UNet,
  diffusers models);
- `diffusion`: the samplers and training;
- `analysis`: the measurements behind each claim (linearity, mixtures, trajectories, teleportation, sample
  quality);
- `verdicts`: the rules that judge each claim, and the scorecard;
- at the top, the application: `study` (the dataset and model a notebook studies), `runtime` (a notebook's
  setup), `plotting`, and the commands `notebooks`, `train`, `prepare`, `lab`.
"""

import os as _os

# OpenMP threads that wait for work by spinning make every parallel region crawl when another process
# holds a core (a batch-64 forward pass: 0.23 s on 1 thread, 3.3 s on 2 threads beside a busy core).
# Passive waiting costs nothing measurable on an idle machine. It must be set before torch loads its
# OpenMP runtime: here for the command-line tools (`python -m lib....`); the Makefile exports it for the
# notebook kernels it starts (notebooks import torch before lib) and tests/conftest.py sets it for pytest.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

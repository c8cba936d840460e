"""Shared fixtures. Unit tests never write into the committed figures/ or data/results/."""

from __future__ import annotations

import os

# Before torch loads OpenMP: passive waiting keeps the tests fast beside a busy core (see lib/__init__).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from lib import runtime  # noqa: E402

# `$REPRO_THREADS` (make unit sets one core's share per pytest-xdist worker), else the idle cores.
torch.set_num_threads(runtime.default_threads())


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield

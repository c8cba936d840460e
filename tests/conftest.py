"""Shared fixtures. Unit tests never write into the committed figures/ or data/results/."""

from __future__ import annotations

import os

# Before torch loads OpenMP: passive waiting keeps the tests fast beside a busy core (see lib/__init__).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield

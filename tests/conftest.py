"""Shared fixtures. Unit tests never write into the committed figures/ or data/results/."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield

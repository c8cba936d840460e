"""Shared fixtures. Unit tests never write into the committed figures/ or data/results/."""

from __future__ import annotations

import os

# Before torch loads OpenMP: passive waiting keeps the tests fast beside a busy core (see lib/__init__).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lib import runtime  # noqa: E402
from lib.gaussian import GaussianDenoiser  # noqa: E402

# `$REPRO_THREADS` (make unit sets one core's share per pytest-xdist worker), else the idle cores.
torch.set_num_threads(runtime.default_threads())


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def gaussian32() -> GaussianDenoiser:
    """N(mu, U diag(lambda) U^T) on 2x4x4 in float64: lambda log-spaced from 25 to 1e-3, a random rotation U.
    The samplers' test problem: its closed form is the exact answer."""
    gen = torch.Generator().manual_seed(0)
    d = 32
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    eigvals = torch.logspace(math.log10(25.0), -3.0, d, dtype=torch.float64)
    mean = 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
    return GaussianDenoiser(mean, eigvals, eigvecs, (2, 4, 4), dtype=torch.float64)


@pytest.fixture
def read_only_data_dir(tmp_path, monkeypatch):
    """`REPRO_DATA_DIR` in a folder where nothing can be created, as a read-only disk behaves (patched, since
    chmod does not bind root); yields the folder."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    original = type(tmp_path).mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    return tmp_path / "data"

"""One record per sampler (`lib.diffusion.sampler_records`): its function, its cost and its names, read by the
registry, the analyses and the verdicts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lib.analysis.teleportation import SAMPLER_LABELS
from lib.core import paths
from lib.diffusion import teleport
from lib.diffusion.sampler_records import RECORDS
from lib.models.edm import karras_sigmas
from lib.models.isotropic import IsotropicGaussianDenoiser
from lib.verdicts.findings import SAMPLER_NAMES


class Counting:
    """A denoiser that counts its evaluations."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0
        self.shape = model.shape

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.calls += 1
        return self.model(x, sigma)


@pytest.mark.parametrize("name", sorted(RECORDS))
@pytest.mark.parametrize("append_zero", [True, False])
def test_a_records_nfe_is_the_number_of_evaluations_its_sampler_makes(name, append_zero):
    model = Counting(IsotropicGaussianDenoiser(torch.zeros(16), 0.3, (1, 4, 4)))
    sigmas = karras_sigmas(7, append_zero=append_zero)
    RECORDS[name].function(model, torch.randn(3, 1, 4, 4) * 80.0, sigmas)
    assert model.calls == RECORDS[name].nfe(sigmas) == teleport.nfe(name, sigmas)


def test_every_reader_takes_its_names_from_the_records():
    assert teleport.SAMPLERS == {name: r.function for name, r in RECORDS.items()}
    assert SAMPLER_LABELS == {name: r.label for name, r in RECORDS.items()}
    assert SAMPLER_NAMES == {name: r.short for name, r in RECORDS.items()}
    assert all(r.nominal_order >= 1 and r.colour for r in RECORDS.values())


def test_the_verdicts_command_line_still_loads_no_torch():
    """`python -m lib.verdicts` reads the samplers' names from the records without importing torch (1-2 s)."""
    code = "import sys, lib.verdicts.__main__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO_ROOT, check=True)
    assert out.stdout.strip() == "False"

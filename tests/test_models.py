"""lib.models.adapters: where a denoiser comes from; the module adapter checked against the analytic Gaussian."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib import study
from lib.data import statistics
from lib.diffusion import checkpoints
from lib.models import adapters, discrete_vp
from lib.models.gaussian import GaussianDenoiser

SHAPE = (1, 4, 4)


class _GaussianModule(nn.Module):
    """An EDM-style network, forward(x, sigma) -> D, that is the analytic Gaussian denoiser."""

    def __init__(self, gauss: GaussianDenoiser) -> None:
        super().__init__()
        self.gauss = gauss

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],)
        return self.gauss(x, sigma)


def _gaussian() -> GaussianDenoiser:
    x = torch.randn(200, *SHAPE, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 1, 16).reshape(SHAPE)
    return GaussianDenoiser.from_stats(statistics.compute_stats(x))


def test_a_module_with_forward_x_sigma_is_the_denoiser_it_computes():
    gauss = _gaussian()
    model = adapters.ModuleDenoiser(_GaussianModule(gauss), SHAPE)
    x = 2 * torch.randn(5, *SHAPE)
    for sigma in (0.05, 1.0, torch.tensor([0.1, 0.5, 1.0, 2.0, 40.0])):
        torch.testing.assert_close(model(x, sigma), gauss(x, sigma))


def test_the_module_adapter_checks_its_input_and_the_modules_output():
    model = adapters.ModuleDenoiser(_GaussianModule(_gaussian()), SHAPE)
    with pytest.raises(ValueError, match="sigma"):
        model(torch.zeros(2, *SHAPE), -1.0)
    with pytest.raises(ValueError):
        model(torch.zeros(2, 3, 4, 4), 1.0)
    bad = adapters.ModuleDenoiser(_GaussianModule(_gaussian()), SHAPE)
    bad.module = lambda x, s: x[:, :, :2]
    with pytest.raises(ValueError, match="same shape as x"):
        bad(torch.zeros(2, *SHAPE), 1.0)


def test_model_specs_reach_the_right_loader(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(checkpoints, "load_checkpoint",
                        lambda config, device: calls.append(("ours", config.name)) or "net")
    monkeypatch.setattr(discrete_vp, "load_diffusers_vp",
                        lambda folder, device, below_range: calls.append(("vp", folder, below_range)) or "vp")
    assert study.load_model("ours:smoke") == "net" and study.load_model("ours:paper") == "net"
    assert study.load_model(str(tmp_path)) == "vp" and study.load_model(str(tmp_path), below_range="lowest") == "vp"
    assert calls == [("ours", "smoke"), ("ours", "paper"), ("vp", str(tmp_path), "refuse"),
                     ("vp", str(tmp_path), "lowest")]
    with pytest.raises(ValueError, match="use ours, ours:<scale>"):
        study.load_model("edm-cifar10.pkl")

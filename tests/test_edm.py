"""EDM preconditioning, loss and the UNet (Karras et al. 2022)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib.models import edm
from lib.models.unet import UNet, count_parameters

SD = edm.SIGMA_DATA


class Constant(nn.Module):
    """A raw 'network' F that returns a constant, to expose the preconditioning formulas."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, noise_labels):
        self.seen.append((x.clone(), noise_labels.clone()))
        return torch.full_like(x, self.value)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 1.0, 80.0])
def test_preconditioning_formulas(sigma):
    s = torch.tensor(sigma, dtype=torch.float64)
    assert float(edm.c_skip(s)) == pytest.approx(SD**2 / (sigma**2 + SD**2))
    assert float(edm.c_out(s)) == pytest.approx(sigma * SD / math.sqrt(sigma**2 + SD**2))
    assert float(edm.c_in(s)) == pytest.approx(1 / math.sqrt(sigma**2 + SD**2))
    assert float(edm.c_noise(s)) == pytest.approx(math.log(sigma) / 4)
    assert float(edm.loss_weight(s)) == pytest.approx((sigma**2 + SD**2) / (sigma * SD) ** 2)
    # EDM's design: unit-variance target and an effective weight lambda c_out^2 = 1 at every sigma.
    assert float(edm.loss_weight(s) * edm.c_out(s) ** 2) == pytest.approx(1.0)
    # The skip and output scales share the signal: c_skip + (c_out / sd)^2 = 1.
    assert float(edm.c_skip(s) + (edm.c_out(s) / SD) ** 2) == pytest.approx(1.0)


def test_preconditioning_at_sigma_data():
    s = torch.tensor(SD)
    assert float(edm.c_skip(s)) == pytest.approx(0.5)
    assert float(edm.c_out(s)) == pytest.approx(SD / math.sqrt(2))
    assert float(edm.c_in(s)) == pytest.approx(1 / (SD * math.sqrt(2)))


@pytest.mark.parametrize("sigma", [0.3, torch.tensor([0.01, 0.3, 2.0, 80.0])])
def test_precond_wraps_a_network_into_a_denoiser(sigma):
    x = torch.randn(4, 1, 8, 8)
    raw = Constant(1.0)
    denoiser = edm.EDMPrecond(raw)
    out = denoiser(x, sigma)
    s = torch.as_tensor(sigma, dtype=torch.float32).expand(4).reshape(4, 1, 1, 1)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, edm.c_skip(s) * x + edm.c_out(s) * 1.0)
    fed_x, fed_noise = raw.seen[-1]
    torch.testing.assert_close(fed_x, edm.c_in(s) * x)
    torch.testing.assert_close(fed_noise, s.flatten().log() / 4)


def test_precond_limits():
    """D -> x at vanishing noise, D -> c_out F (the network alone) at large noise."""
    x = torch.randn(2, 1, 4, 4)
    denoiser = edm.EDMPrecond(Constant(0.0))
    torch.testing.assert_close(denoiser(x, 1e-4), x, atol=1e-6, rtol=1e-6)
    assert float(denoiser(x, 1e4).abs().max()) < 1e-8 * float(x.abs().max()) + 1e-6


def test_loss_of_the_rescaling_denoiser_matches_its_formula():
    """F = 0: weighted loss (s^2 E[x0^2] + sd^4) / (sd^2 (s^2 + sd^2)), exactly 1 when E[x0^2] = sd^2."""
    g = torch.Generator().manual_seed(0)
    x0 = SD * torch.randn(4096, 1, 4, 4, generator=g)
    m2 = float(x0.square().mean())
    denoiser = edm.EDMPrecond(Constant(0.0))
    for sigma in (0.05, 0.5, 5.0):
        noise = torch.randn(x0.shape, generator=g)
        loss = edm.denoising_loss(denoiser, x0, torch.full((4096,), sigma), noise).mean()
        expected = (sigma**2 * m2 + SD**4) / (SD**2 * (sigma**2 + SD**2))
        assert float(loss) == pytest.approx(expected, rel=0.05)
        assert float(loss) == pytest.approx(1.0, rel=0.06)


def test_training_sigmas_are_lognormal():
    g = torch.Generator().manual_seed(1)
    log_sigma = edm.sample_training_sigmas(50_000, g).log()
    assert float(log_sigma.mean()) == pytest.approx(edm.P_MEAN, abs=0.03)
    assert float(log_sigma.std()) == pytest.approx(edm.P_STD, abs=0.03)


def test_edm_loss_is_reproducible_from_its_generator():
    x0 = torch.rand(8, 1, 8, 8) * 2 - 1
    denoiser = edm.EDMPrecond(Constant(0.1))
    a = edm.edm_loss(denoiser, x0, torch.Generator().manual_seed(3))
    b = edm.edm_loss(denoiser, x0, torch.Generator().manual_seed(3))
    c = edm.edm_loss(denoiser, x0, torch.Generator().manual_seed(4))
    assert a.shape == (8,) and torch.equal(a, b) and not torch.equal(a, c)


def test_karras_sigmas_unchanged():
    sigmas = edm.karras_sigmas(18)
    assert len(sigmas) == 19 and float(sigmas[0]) == pytest.approx(80.0) and float(sigmas[-1]) == 0.0


# --------------------------------------------------------------------------- UNet


@pytest.mark.parametrize("kwargs", [
    dict(channels=8, channel_mult=(1,)),
    dict(channels=8, channel_mult=(1, 2), num_blocks=2, attn_resolutions=(16,)),
    dict(channels=8, channel_mult=(1, 2, 3, 4), attn_resolutions=(4,), dropout=0.1),
])
def test_unet_shapes_and_noise_conditioning(kwargs):
    net = UNet(img_resolution=32, **kwargs)
    x = torch.randn(3, 1, 32, 32)
    out = net(x, torch.zeros(3))
    assert out.shape == x.shape and torch.isfinite(out).all()
    net.eval()
    assert not torch.equal(net(x, torch.zeros(3)), net(x, torch.full((3,), 1.0))), "c_noise must matter"


def test_paper_network_has_about_a_million_parameters():
    net = UNet(channels=16, channel_mult=(1, 2, 3, 4), num_blocks=1, attn_resolutions=(), dropout=0.13)
    assert 0.9e6 < count_parameters(net) < 1.1e6


def test_unet_rejects_a_resolution_it_cannot_halve():
    with pytest.raises(ValueError, match="cannot be halved"):
        UNet(img_resolution=28, channel_mult=(1, 2, 3, 4))


def test_precond_network_runs_under_bf16_autocast_and_returns_fp32():
    denoiser = edm.EDMPrecond(UNet(channels=8, channel_mult=(1, 2)))
    x = torch.randn(2, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = denoiser(x, 0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()

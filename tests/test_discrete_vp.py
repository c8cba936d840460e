"""lib.models.discrete_vp: a discrete DDPM/VP network as a denoiser D(x; sigma), checked where the answer is known."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lib.data import statistics
from lib.models import discrete_vp
from lib.models.gaussian import GaussianDenoiser

SHAPE = (3, 4, 4)


def _linear_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


def _gaussian() -> GaussianDenoiser:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, *SHAPE, generator=gen) * torch.linspace(0.05, 1.0, 48).reshape(SHAPE) + 0.3
    return GaussianDenoiser.from_stats(statistics.compute_stats(x), dtype=torch.float64)


def _analytic_net(gauss: GaussianDenoiser, sigmas: torch.Tensor, prediction: str):
    """A "network" that answers in the model's own terms with the Gaussian's exact denoiser."""
    def net(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert torch.equal(t, t.round()), "at the training levels the timestep must be an integer"
        sigma = sigmas[t.long()].to(x_t.dtype).reshape(-1, 1, 1, 1)
        x = x_t * torch.sqrt(1 + sigma**2)
        x0 = gauss(x, sigma.flatten())
        eps = (x - x0) / sigma
        if prediction == "epsilon":
            return eps
        abar = 1 / (1 + sigma**2)
        if prediction == "v_prediction":
            return abar.sqrt() * eps - (1 - abar).sqrt() * x0
        return x0
    return net


@pytest.mark.parametrize("prediction", discrete_vp.PREDICTIONS)
def test_the_gaussian_comes_back_through_the_wrapper_at_every_training_level(prediction):
    gauss = _gaussian()
    abar = _linear_alphas_cumprod()
    sigmas = discrete_vp.vp_sigmas(abar)
    model = discrete_vp.DiscreteVPDenoiser(_analytic_net(gauss, sigmas, prediction), abar, prediction, SHAPE)
    levels = sigmas[torch.arange(0, 1000, 37)]
    x = 0.3 + torch.randn(len(levels), *SHAPE, dtype=torch.float64) * (1 + levels.reshape(-1, 1, 1, 1))
    torch.testing.assert_close(model(x, levels), gauss(x, levels), rtol=1e-9, atol=1e-9)


def test_timesteps_are_exact_at_the_levels_and_interpolated_in_log_sigma_between():
    sigmas = discrete_vp.vp_sigmas(_linear_alphas_cumprod())
    assert torch.equal(discrete_vp.timestep_of(sigmas, sigmas), torch.arange(1000, dtype=torch.float64))
    middle = torch.sqrt(sigmas[10] * sigmas[11]).reshape(1)
    assert float(discrete_vp.timestep_of(middle, sigmas)) == pytest.approx(10.5, abs=1e-9)
    assert float(sigmas[0]) == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-9)


def test_sigma_outside_the_training_levels_is_refused():
    abar = _linear_alphas_cumprod()
    model = discrete_vp.DiscreteVPDenoiser(lambda x, t: x, abar, "epsilon", SHAPE)
    x = torch.zeros(2, *SHAPE)
    with pytest.raises(ValueError, match="outside the model's training levels"):
        model(x, 200.0)
    with pytest.raises(ValueError, match="outside the model's training levels"):
        model(x, 1e-4)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        discrete_vp.DiscreteVPDenoiser(lambda x, t: x, abar, "x0", SHAPE)


def _save_tiny_unet(folder, layout: str, prediction: str = "epsilon") -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction)
    if layout == "pipeline":
        unet.save_pretrained(folder / "unet")
        scheduler.save_pretrained(folder / "scheduler")
    else:
        unet.save_pretrained(folder)
        scheduler.save_pretrained(folder)


@pytest.mark.parametrize("layout", ["pipeline", "model"])
def test_a_saved_diffusers_unet_loads_and_its_denoiser_is_the_formula(tmp_path, layout):
    _save_tiny_unet(tmp_path, layout)
    model = discrete_vp.load_diffusers_vp(tmp_path)
    assert model.shape == (3, 8, 8)
    assert len(discrete_vp.training_sigmas(model)) == 100
    sigma = float(model.sigmas[40])
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        got = model(x, sigma)
        eps = model.net(x / math.sqrt(1 + sigma**2), torch.full((2,), 40.0)).sample
    torch.testing.assert_close(got, x - sigma * eps)


def test_a_folder_without_a_scheduler_config_is_refused_with_what_to_do(tmp_path):
    _save_tiny_unet(tmp_path, "model")
    (tmp_path / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="scheduler.save_pretrained"):
        discrete_vp.load_diffusers_vp(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        discrete_vp.load_diffusers_vp(tmp_path / "missing")
    assert json.loads((tmp_path / "config.json").read_text())["sample_size"] == 8

"""Bad input to the public denoisers, jumps, schedules and samplers: a one-line ValueError, or a correct result.

sigma must be finite and >= 0 (> 0 where sigma = 0 has no meaning); D(x; 0) = x for the Gaussian family;
a batch of the wrong image shape is refused with a message naming the expected shape; an empty batch
gives an empty result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch

from lib.analysis import linearity, metrics
from lib.diffusion import teleport
from lib.models import denoisers, edm
from lib.models.gaussian import GaussianDenoiser
from lib.models.gmm import GaussianMixtureDenoiser
from lib.models.isotropic import IsotropicGaussianDenoiser, MeanDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser
from lib.models.unet import UNet

SHAPE = (2, 4, 4)  # the images of the conftest `gaussian32` model
NET_SHAPE = (1, 8, 8)
BAD_SIGMAS = [float("nan"), float("inf"), -1.0]


# --------------------------------------------------------------------------- the models


def _isotropic(g: GaussianDenoiser) -> IsotropicGaussianDenoiser:
    return IsotropicGaussianDenoiser(g.mean, float(g.eigvals.mean()), SHAPE, dtype=torch.float64)


def _mean(g: GaussianDenoiser) -> MeanDenoiser:
    return MeanDenoiser(g.mean, SHAPE, dtype=torch.float64)


def _delta(g: GaussianDenoiser) -> DeltaMixtureDenoiser:
    return DeltaMixtureDenoiser(torch.randn((20, *SHAPE), generator=torch.Generator().manual_seed(1)))


def _gmm(g: GaussianDenoiser, rank: int | None = None) -> GaussianMixtureDenoiser:
    """Two components sharing the Gaussian's eigenbasis: full covariance plus a floor, or rank 4 with none."""
    m = g.rank if rank is None else rank
    means = torch.stack([g.mean, g.mean + 0.5])
    eigvals = torch.stack([g.eigvals[:m], 2 * g.eigvals[:m]]) + (1e-5 if rank is None else 0.0)
    eigvecs = g.eigvecs[:, :m].expand(2, -1, -1).contiguous()
    floor = 1e-5 if rank is None else 0.0
    return GaussianMixtureDenoiser.from_padded(means, torch.log(torch.tensor([0.3, 0.7], dtype=torch.float64)),
                                               eigvals, eigvecs, floor, SHAPE)


def _gmm_low_rank(g: GaussianDenoiser) -> GaussianMixtureDenoiser:
    return _gmm(g, rank=4)


def _network(g: GaussianDenoiser) -> edm.EDMPrecond:
    torch.manual_seed(0)
    net = UNet(img_resolution=NET_SHAPE[1], in_channels=NET_SHAPE[0], channels=8, channel_mult=(1, 2))
    return edm.EDMPrecond(net).eval()


MODELS: dict[str, tuple[Callable, tuple[int, ...]]] = {
    "gaussian": (lambda g: g, SHAPE), "isotropic": (_isotropic, SHAPE), "mean": (_mean, SHAPE),
    "delta": (_delta, SHAPE), "gmm": (_gmm, SHAPE), "gmm_low_rank": (_gmm_low_rank, SHAPE),
    "network": (_network, NET_SHAPE),
}
ZERO_IS_IDENTITY = ["gaussian", "isotropic", "gmm"]  # D(x; 0) = x
ZERO_IS_REFUSED = ["delta", "gmm_low_rank", "network"]


@pytest.fixture(params=sorted(MODELS))
def model(request, gaussian32):
    """(name, denoiser, image shape) for each public denoiser."""
    make, shape = MODELS[request.param]
    return request.param, make(gaussian32), shape


def _batch(shape: tuple[int, ...], n: int = 3, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn((n, *shape), generator=torch.Generator().manual_seed(2), dtype=torch.float64)


# --------------------------------------------------------------------------- denoisers


@pytest.mark.parametrize("sigma", BAD_SIGMAS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_bad_sigma_is_a_value_error(model, sigma, as_tensor):
    _, denoiser, shape = model
    x = _batch(shape)
    bad = torch.tensor([1.0, sigma, 0.5], dtype=torch.float64) if as_tensor else sigma
    with pytest.raises(ValueError, match=r"sigma must be finite and >=? 0, got"):
        denoiser(x, bad)


@pytest.mark.parametrize("name", ZERO_IS_IDENTITY)
def test_zero_sigma_is_the_identity_for_the_gaussian_family(name, gaussian32):
    make, shape = MODELS[name]
    x = _batch(shape)
    torch.testing.assert_close(make(gaussian32)(x, 0.0), x, rtol=1e-6, atol=1e-6)


def test_zero_sigma_of_the_mean_model_is_the_mean(gaussian32):
    out = _mean(gaussian32)(_batch(SHAPE), 0.0)
    torch.testing.assert_close(out, gaussian32.mean.reshape(1, *SHAPE).expand(3, *SHAPE))


@pytest.mark.parametrize("name", ZERO_IS_REFUSED)
def test_zero_sigma_is_refused_where_it_has_no_meaning(name, gaussian32):
    make, shape = MODELS[name]
    with pytest.raises(ValueError, match=r"sigma = 0.*positive sigma"):
        make(gaussian32)(_batch(shape), 0.0)


def _wrong_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    c, h, w = shape
    return [(3, c + 2, h, w), (3, c, h - 1, w - 1), (3, c * h * w), (c, h, w), (3, 1, c, h, w)]


@pytest.mark.parametrize("which", range(5))
def test_wrong_shape_names_the_expected_shape(model, which):
    _, denoiser, shape = model
    x = torch.zeros(_wrong_shapes(shape)[which], dtype=torch.float64)
    expected = "(B, " + ", ".join(map(str, shape)) + ")"
    with pytest.raises(ValueError, match=re.escape(expected)):
        denoiser(x, 1.0)


def test_empty_batch_gives_an_empty_result(model):
    _, denoiser, shape = model
    for sigma in (1.0, torch.zeros(0, dtype=torch.float64) + 1.0):
        out = denoiser(torch.zeros((0, *shape), dtype=torch.float64), sigma)
        assert out.shape == (0, *shape)


def test_score_refuses_zero_sigma(gaussian32):
    with pytest.raises(ValueError, match="sigma = 0"):
        denoisers.score(gaussian32, _batch(SHAPE), 0.0)


# --------------------------------------------------------------------------- the closed-form jump


JUMPERS = {"gaussian": lambda g: g, "isotropic": _isotropic}


@pytest.mark.parametrize("name", sorted(JUMPERS))
@pytest.mark.parametrize(("sigma_t", "sigma"), [(80.0, s) for s in BAD_SIGMAS] + [
    (s, 1.0) for s in [*BAD_SIGMAS, 0.0]])
def test_jump_refuses_bad_levels(name, sigma_t, sigma, gaussian32):
    with pytest.raises(ValueError, match=r"sigma.* must be finite"):
        JUMPERS[name](gaussian32).jump(_batch(SHAPE, scale=80.0), sigma_t, sigma)


@pytest.mark.parametrize("name", sorted(JUMPERS))
def test_jump_checks_shape_and_keeps_empty_batches_empty(name, gaussian32):
    model = JUMPERS[name](gaussian32)
    with pytest.raises(ValueError, match=re.escape("(B, 2, 4, 4)")):
        model.jump(torch.zeros(3, 1, 4, 4, dtype=torch.float64), 80.0, 1.0)
    assert model.jump(torch.zeros((0, *SHAPE), dtype=torch.float64), 80.0, 1.0).shape == (0, *SHAPE)


@pytest.mark.parametrize("sigma", BAD_SIGMAS)
def test_trajectory_refuses_bad_levels(sigma, gaussian32):
    with pytest.raises(ValueError, match="must be finite"):
        gaussian32.trajectory(_batch(SHAPE, scale=80.0), 80.0, [10.0, sigma])


# --------------------------------------------------------------------------- schedules and samplers


@pytest.mark.parametrize("kwargs", [
    {"rho": 0.0}, {"rho": -7.0}, {"rho": math.nan}, {"rho": math.inf}, {"sigma_max": math.inf},
    {"sigma_min": math.nan}, {"sigma_min": 0.0}, {"sigma_min": -1.0}, {"sigma_min": 80.0}, {"sigma_min": 100.0},
])
def test_karras_sigmas_refuses_bad_bounds(kwargs):
    with pytest.raises(ValueError, match="sigma_min|sigma_max|rho"):
        edm.karras_sigmas(10, **kwargs)


BAD_SCHEDULES = {
    "nan": [80.0, math.nan, 0.0], "inf_start": [math.inf, 1.0, 0.0], "negative_end": [80.0, 1.0, -1.0],
    "all_negative": [-1.0, -2.0, -3.0],
}


@pytest.mark.parametrize("sampler", sorted(teleport.SAMPLERS))
@pytest.mark.parametrize("schedule", sorted(BAD_SCHEDULES))
def test_samplers_refuse_bad_schedules(sampler, schedule, gaussian32):
    sigmas = torch.tensor(BAD_SCHEDULES[schedule], dtype=torch.float64)
    with pytest.raises(ValueError, match="sigmas must be"):
        teleport.SAMPLERS[sampler](gaussian32, _batch(SHAPE, scale=80.0), sigmas)


@pytest.mark.parametrize("sampler", sorted(teleport.SAMPLERS))
def test_samplers_keep_empty_batches_empty(sampler, gaussian32):
    x = torch.zeros((0, *SHAPE), dtype=torch.float64)
    out = teleport.SAMPLERS[sampler](gaussian32, x, edm.karras_sigmas(4))
    assert out.shape == (0, *SHAPE)


# --------------------------------------------------------------------------- linearity


@pytest.mark.parametrize("sigma", [*BAD_SIGMAS, 0.0])
def test_probe_bank_refuses_bad_sigmas(sigma):
    with pytest.raises(ValueError, match="probe sigma must be finite and > 0"):
        linearity.ProbeBank(torch.zeros(4, *SHAPE), [1.0, sigma], "train")


def test_explained_variance_of_an_empty_batch_is_empty():
    out = metrics.explained_variance(torch.zeros(0, *SHAPE), torch.zeros(0, *SHAPE))
    assert out.shape == (0,) and out.dtype == torch.float64

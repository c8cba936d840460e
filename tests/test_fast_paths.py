"""The faster paths compute what the plain formulas compute.

- Gaussian denoiser: one product with the operator U diag(lambda/(lambda+sigma^2)) U^T equals the two
  thin products through the eigenbasis (float64 to 1e-12, float32 to the float32 rounding of MNIST scale).
- Training-set score: dropping weights whose exponential would be subnormal changes nothing representable.
- Network: channels-last memory order gives the contiguous layout's outputs to float32 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

from lib.data import statistics
from lib.diffusion import train_config
from lib.models import edm
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser, flush_subnormal_logits_

F64 = torch.float64


@pytest.fixture(scope="module")
def mnist_stats() -> statistics.DatasetStats:
    return statistics.dataset_stats()


def _thin_path(model: GaussianDenoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """mu + U diag(lambda / (lambda + sigma^2)) U^T (x - mu) through the eigenbasis, as written."""
    flat = x.reshape(len(x), -1).to(model.dtype)
    coeffs = (flat - model.mean) @ model.eigvecs
    shrink = model.eigvals / (model.eigvals + sigma**2)
    return (model.mean + (coeffs * shrink) @ model.eigvecs.T).reshape(x.shape)


@pytest.mark.parametrize("sigma", [0.01, 1.0, 80.0])
def test_gaussian_operator_path_equals_the_eigenbasis_path(mnist_stats, sigma: float) -> None:
    model64 = GaussianDenoiser.from_stats(mnist_stats, dtype=F64)
    x = mnist_stats.mean.reshape(1, *mnist_stats.shape) + sigma * torch.randn(2048, *mnist_stats.shape, dtype=F64)
    assert model64.operator_pays_off(len(x))
    torch.testing.assert_close(model64(x, sigma), _thin_path(model64, x, sigma), rtol=0, atol=1e-12)
    model32 = GaussianDenoiser.from_stats(mnist_stats)
    fast = model32(x.float(), sigma).double()
    assert float((fast - model64(x, sigma)).abs().max()) < 2e-5 * max(1.0, sigma)


def test_gaussian_paths_are_chosen_by_cost(mnist_stats) -> None:
    full, low = GaussianDenoiser.from_stats(mnist_stats), GaussianDenoiser.from_stats(mnist_stats, rank=64)
    assert full.operator_pays_off(10_000) and not full.operator_pays_off(256)
    assert not low.operator_pays_off(10_000)  # rank 64: two thin products always win


def test_gaussian_per_sample_sigmas_take_the_eigenbasis_path(mnist_stats) -> None:
    model = GaussianDenoiser.from_stats(mnist_stats, dtype=F64)
    x = torch.randn(2048, *mnist_stats.shape, dtype=F64)
    sigmas = torch.linspace(0.01, 10, 2048, dtype=F64)
    expected = torch.cat([_thin_path(model, x[i:i + 1], float(sigmas[i])) for i in range(2048)])
    torch.testing.assert_close(model(x, sigmas), expected, rtol=0, atol=1e-12)


def test_subnormal_weights_are_dropped_without_changing_the_denoiser() -> None:
    shifted = torch.tensor([0.0, -10.0, -87.0, -88.0, -100.0, -1e4])
    flushed = flush_subnormal_logits_(shifted.clone()).exp()
    assert flushed[3:].eq(0).all() and flushed[:3].gt(0).all()
    assert math.log(torch.finfo(torch.float32).tiny) == pytest.approx(-87.34, abs=0.01)
    # A set where 28% of the weights fall in the subnormal range (and 30% below it) at sigma = 1.
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(4000, 64, generator=gen) * 1.2
    queries = points[:64] + torch.randn(64, 64, generator=gen)
    fast = DeltaMixtureDenoiser(points)(queries, 1.0)
    exact = DeltaMixtureDenoiser(points.double(), dtype=F64)(queries.double(), 1.0)
    torch.testing.assert_close(fast.double(), exact, rtol=0, atol=1e-5)


def test_channels_last_network_equals_the_contiguous_one() -> None:
    config = train_config.train_config("smoke")
    torch.manual_seed(0)
    fast = train_config.build_network(config).eval()
    plain = train_config.build_network(config).eval()
    plain.load_state_dict(fast.state_dict())
    plain.net = plain.net.to(memory_format=torch.contiguous_format)
    assert fast.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.net.conv_in.weight.is_contiguous()
    x = torch.randn(16, 1, 32, 32)
    sigma = torch.logspace(-2, 1.9, 16)
    with torch.no_grad():
        out_fast = fast(x, sigma)
        out_plain = _contiguous_forward(plain, x, sigma)
    assert out_fast.is_contiguous()
    torch.testing.assert_close(out_fast, out_plain, rtol=0, atol=1e-5)


def _contiguous_forward(model: edm.EDMPrecond, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """EDM's D(x; s) = c_skip x + c_out F(c_in x, c_noise) with every tensor in the contiguous layout."""
    s = sigma.reshape(-1, 1, 1, 1)
    f_x = model.net(edm.c_in(s) * x, edm.c_noise(s).flatten())
    return edm.c_skip(s) * x + edm.c_out(s) * f_x

"""Fuzz: the public functions of lib with hostile arguments give a clean one-line ValueError/TypeError, or a
correct result (issue 14, item 9). Small tensors only: the whole file runs in a few seconds."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from lib.analysis import linearity, metrics, teleportation
from lib.core import config, devices
from lib.data import mnist, statistics
from lib.diffusion import samplers, teleport
from lib.models import denoisers, edm
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import IsotropicGaussianDenoiser

NAN, INF = math.nan, math.inf
SHAPE = (2, 4, 4)  # the images of the conftest `gaussian32` model
EYE, ZERO = torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)


def _x(n: int = 3) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _features(n: int = 6, f: int = 3) -> torch.Tensor:
    return torch.randn((n, f), generator=torch.Generator().manual_seed(4), dtype=torch.float64)


# Each case: g (the conftest Gaussian) -> the call. All must raise a one-line ValueError or TypeError.
REFUSED: dict[str, Callable[[GaussianDenoiser], object]] = {
    # denoisers and the score
    "denoiser/sigma-nan": lambda g: g(_x(), NAN),
    "denoiser/sigma-inf-tensor": lambda g: g(_x(), torch.tensor([1.0, INF, 1.0])),
    "denoiser/sigma-negative": lambda g: g(_x(), -0.5),
    "denoiser/sigma-string": lambda g: g(_x(), "1.0"),
    "denoiser/sigma-none": lambda g: g(_x(), None),
    "denoiser/sigma-wrong-length": lambda g: g(_x(), torch.ones(2)),
    "denoiser/x-list": lambda g: g([[0.0]], 1.0),
    "denoiser/x-numpy": lambda g: g(_x().numpy(), 1.0),
    "denoiser/x-wrong-shape": lambda g: g(torch.zeros(3, 1, 4, 4), 1.0),
    "denoiser/x-unbatched": lambda g: g(torch.zeros(SHAPE), 1.0),
    "isotropic/sigma-nan": lambda g: IsotropicGaussianDenoiser(g.mean, 1.0, SHAPE)(_x(), NAN),
    "isotropic/variance-nan": lambda g: IsotropicGaussianDenoiser(g.mean, NAN, SHAPE),
    "isotropic/variance-negative": lambda g: IsotropicGaussianDenoiser(g.mean, -1.0, SHAPE),
    "gaussian/eigvals-nan": lambda g: GaussianDenoiser(g.mean, g.eigvals * NAN, g.eigvecs, SHAPE),
    "gaussian/wrong-shape": lambda g: GaussianDenoiser(g.mean, g.eigvals, g.eigvecs, (3, 4, 4)),
    "score/sigma-zero": lambda g: denoisers.score(g, _x(), 0.0),
    "score/x-float": lambda g: denoisers.score(g, 1.0, 1.0),
    "ode_derivative/sigma-inf": lambda g: denoisers.ode_derivative(g, _x(), INF),
    # the closed-form jump and trajectory
    "jump/sigma_t-zero": lambda g: g.jump(_x(), 0.0, 1.0),
    "jump/sigma_t-inf": lambda g: g.jump(_x(), INF, 1.0),
    "jump/sigma-nan": lambda g: g.jump(_x(), 80.0, NAN),
    "jump/x-wrong-shape": lambda g: g.jump(torch.zeros(2, 32), 80.0, 1.0),
    "trajectory/sigma-negative": lambda g: g.trajectory(_x(), 80.0, [10.0, -1.0]),
    # schedules
    "karras/n-zero": lambda g: edm.karras_sigmas(0),
    "karras/n-float": lambda g: edm.karras_sigmas(1.5),
    "karras/n-nan": lambda g: edm.karras_sigmas(NAN),
    "karras/n-string": lambda g: edm.karras_sigmas("5"),
    "karras/rho-zero": lambda g: edm.karras_sigmas(5, rho=0.0),
    "karras/sigma_max-inf": lambda g: edm.karras_sigmas(5, sigma_max=INF),
    "karras/sigma_min-negative": lambda g: edm.karras_sigmas(5, sigma_min=-1.0),
    "training_share/sigma-nan": lambda g: edm.training_share_above(NAN),
    "training_share/sigma-negative": lambda g: edm.training_share_above(-1.0),
    "teleport_schedule/skip-below-min": lambda g: teleport.teleport_schedule(5, 0.001),
    "skip_to_sigma/too-far": lambda g: teleport.skip_to_sigma(5, 4),
    "skip_grid/fraction-nan": lambda g: teleportation.skip_grid(5, [NAN]),
    "skip_schedule/too-far": lambda g: teleportation.skip_schedule(5, 10),
    "initial_noise/negative-n": lambda g: teleportation.initial_noise(0, -1, SHAPE),
    # samplers
    **{f"{name}/{case}": (lambda g, s=sampler, sig=sigmas: s(g, _x(), sig))
       for name, sampler in teleport.SAMPLERS.items()
       for case, sigmas in {"list": [80.0, 1.0, 0.0], "nan": torch.tensor([80.0, NAN, 0.0]),
                            "increasing": torch.tensor([0.0, 1.0, 80.0]), "one-level": torch.tensor([80.0]),
                            "2d": torch.ones(2, 2)}.items()},
    "sampler/x-wrong-shape": lambda g: samplers.sample_heun(g, torch.zeros(3, 1, 4, 4), edm.karras_sigmas(3)),
    "nfe/unknown-sampler": lambda g: teleport.nfe("bogus", edm.karras_sigmas(3)),
    # metrics
    "explained_variance/shapes-differ": lambda g: metrics.explained_variance(torch.ones(3, 4), torch.ones(3, 5)),
    "explained_variance/nan": lambda g: metrics.explained_variance(torch.ones(3, 4) * NAN, torch.ones(3, 4)),
    "explained_variance/inf-approximation": lambda g: metrics.explained_variance(
        torch.ones(3, 4), torch.full((3, 4), INF)),
    "explained_variance/zero-reference": lambda g: metrics.explained_variance(torch.zeros(3, 4), torch.ones(3, 4)),
    "explained_variance/list": lambda g: metrics.explained_variance([1.0], [1.0]),
    "explained_variance/0-d": lambda g: metrics.explained_variance(torch.tensor(1.0), torch.tensor(1.0)),
    "frechet/dims-differ": lambda g: metrics.frechet_distance(ZERO, EYE, torch.zeros(5), torch.eye(5)),
    "frechet/mean-nan": lambda g: metrics.frechet_distance(ZERO * NAN, EYE, ZERO, EYE),
    "frechet/cov-nan": lambda g: metrics.frechet_distance(ZERO, EYE * NAN, ZERO, EYE),
    "frechet/cov-inf": lambda g: metrics.frechet_distance(ZERO, EYE * INF, ZERO, EYE),
    "frechet/cov-not-square": lambda g: metrics.frechet_distance(ZERO, torch.ones(4, 3), ZERO, EYE),
    "frechet/cov-1d": lambda g: metrics.frechet_distance(ZERO, ZERO, ZERO, ZERO),
    "frechet/lists": lambda g: metrics.frechet_distance([0.0], [[1.0]], [0.0], [[1.0]]),
    "frechet_features/one-sample": lambda g: metrics.frechet_distance_from_features(_features(1), _features()),
    "frechet_features/nan": lambda g: metrics.frechet_distance_from_features(_features() * NAN, _features()),
    "frechet_features/dims-differ": lambda g: metrics.frechet_distance_from_features(_features(), _features(f=2)),
    "frechet_reference/dims-differ": lambda g: metrics.FrechetReference(_features()).fd(_features(f=2)),
    "frechet_reference/nan": lambda g: metrics.FrechetReference(_features()).fd(_features() * NAN),
    "kid/dims-differ": lambda g: metrics.kernel_inception_distance(_features(), _features(f=2), n_subsets=2),
    "kid/nan": lambda g: metrics.kernel_inception_distance(_features() * NAN, _features(), n_subsets=2),
    "kid/no-subsets": lambda g: metrics.kernel_inception_distance(_features(), _features(), n_subsets=0),
    # linearity probes
    "probe_bank/sigma-zero": lambda g: linearity.ProbeBank(torch.zeros(4, *SHAPE), [1.0, 0.0], "train"),
    "probe_bank/sigma-nan": lambda g: linearity.ProbeBank(torch.zeros(4, *SHAPE), [NAN], "train"),
    "probe_bank/sigma-string": lambda g: linearity.ProbeBank(torch.zeros(4, *SHAPE), ["a"], "train"),
    "probe_bank/x0-list": lambda g: linearity.ProbeBank([[0.0]], [1.0], "train"),
    "probe_noise/negative-n": lambda g: linearity.probe_noise(-1, SHAPE, 0, 0),
    "evaluate/batch-zero": lambda g: linearity.evaluate(g, _x(), 1.0, batch=0),
    "evaluate/batch-negative": lambda g: linearity.evaluate(g, _x(), 1.0, batch=-1),
    "evaluate/sigma-nan": lambda g: linearity.evaluate(g, _x(), NAN),
    # data
    "load_mnist/split": lambda g: mnist.load_mnist("validation"),
    "load_mnist/split-none": lambda g: mnist.load_mnist(None),
    "load_mnist/size-string": lambda g: mnist.load_mnist("test", "32"),
    "load_mnist/size-64": lambda g: mnist.load_mnist("test", 64),
    "load_mnist_labels/split": lambda g: mnist.load_mnist_labels("val"),
    "load_mnist_uint8/split": lambda g: mnist.load_mnist_uint8(""),
    "preprocess/float-images": lambda g: mnist.preprocess(np.zeros((2, 28, 28)), 32),
    "preprocess/size-zero": lambda g: mnist.preprocess(np.zeros((2, 28, 28), dtype=np.uint8), 0),
    "preprocess/tensor": lambda g: mnist.preprocess(torch.zeros(2, 28, 28, dtype=torch.uint8), 28),
    "compute_stats/one-sample": lambda g: statistics.compute_stats(torch.zeros(1, 1, 2, 2)),
    "compute_stats/empty": lambda g: statistics.compute_stats(torch.zeros(0, 1, 2, 2)),
    "compute_stats/nan": lambda g: statistics.compute_stats(torch.ones(5, 1, 2, 2) * NAN),
    "compute_stats/list": lambda g: statistics.compute_stats([[0.0]]),
    # configuration and runtime
    "get_scale/unknown": lambda g: config.get_scale("huge"),
    "get_scale/empty": lambda g: config.get_scale(""),
    "get_scale/int": lambda g: config.get_scale(3),
    "positive_int/zero": lambda g: devices.positive_int("0", "REPRO_THREADS"),
    "positive_int/float": lambda g: devices.positive_int("1.5", "REPRO_THREADS"),
    "resolve_device/unknown": lambda g: devices.resolve_device("gpu"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_arguments_are_clean_one_line_errors(case, gaussian32, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises((ValueError, TypeError)) as err:
        REFUSED[case](gaussian32)
    message = str(err.value)
    assert message.strip() and "\n" not in message, f"{case}: {type(err.value).__name__}: {message!r}"


def _close(expected: torch.Tensor) -> Callable[[object], None]:
    return lambda out: torch.testing.assert_close(out, expected)


def _empty(shape: tuple[int, ...]) -> Callable[[object], None]:
    def check(out: object) -> None:
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == shape
    return check


# Edge cases with a defined answer: (call, check of the result).
ACCEPTED: dict[str, tuple[Callable[[GaussianDenoiser], object], Callable[[object], None]]] = {
    "denoiser/sigma-zero-is-identity": (lambda g: g(_x(), 0.0), _close(_x())),
    "denoiser/empty-batch": (lambda g: g(torch.zeros(0, *SHAPE, dtype=torch.float64), 1.0), _empty((0, *SHAPE))),
    "jump/empty-batch": (lambda g: g.jump(torch.zeros(0, *SHAPE, dtype=torch.float64), 80.0, 1.0),
                         _empty((0, *SHAPE))),
    "jump/to-the-same-level": (lambda g: g.jump(_x(), 5.0, 5.0), _close(_x())),
    "heun/empty-batch": (lambda g: samplers.sample_heun(g, torch.zeros(0, *SHAPE, dtype=torch.float64),
                                                        edm.karras_sigmas(3)), _empty((0, *SHAPE))),
    "karras/one-level": (lambda g: edm.karras_sigmas(1, sigma_min=2.0, sigma_max=2.0),
                         _close(torch.tensor([2.0, 0.0], dtype=torch.float64))),
    "karras/numpy-int": (lambda g: edm.karras_sigmas(np.int64(3)), _close(edm.karras_sigmas(3))),
    "explained_variance/empty": (lambda g: metrics.explained_variance(torch.zeros(0, 4), torch.zeros(0, 4)),
                                 _empty((0,))),
    "explained_variance/identical": (lambda g: metrics.explained_variance(_x(), _x()),
                                     _close(torch.ones(3, dtype=torch.float64))),
    "frechet/identical": (lambda g: metrics.frechet_distance(ZERO, EYE, ZERO, EYE), lambda v: v == pytest.approx(0.0)),
    "frechet/shifted-mean": (lambda g: metrics.frechet_distance(ZERO, EYE, ZERO + 1, EYE),
                             lambda v: v == pytest.approx(4.0)),
    "evaluate/empty": (lambda g: linearity.evaluate(g, torch.zeros(0, *SHAPE), 1.0), _empty((0, *SHAPE))),
    "positive_int/padded-text": (lambda g: devices.positive_int(" 2 ", "REPRO_THREADS"), lambda v: v == 2),
    "resolve_device/cpu": (lambda g: devices.resolve_device("cpu"), lambda d: d == torch.device("cpu")),
    "get_scale/smoke": (lambda g: config.get_scale("smoke"), lambda s: s.name == "smoke"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_edge_cases_give_the_correct_result(case, gaussian32):
    call, check = ACCEPTED[case]
    assert check(call(gaussian32)) is not False, case

"""DPM-Solver-v3 and its empirical model statistics (lib.diffusion.dpm_solver_v3, lib.diffusion.ems): exact checks.

- Degenerate statistics (l, s, b) = (1, 0, 0) make f = -D and g = f, so the solver is DPM-Solver++ (paper, Appendix
  A.2; the same values in EDM's variables, where f = N / alpha): order 1 is DDIM (our UniP-1 without corrector) to
  rounding, order 2 without corrector the multistep DPM-Solver++(2M) with the exact phi_2 coefficient.
- Isotropic Gaussian data N(mu, c I) with its exact denoiser: l = sigma^2 / (c + sigma^2) exactly (a scalar Jacobian:
  Rademacher probes give it with no noise), s = 0 and b = 2 l (1 - l) mu up to the grid's finite difference of l
  (O(dlambda^2)); g is then constant, so the first-order solver is exact up to the grid (its error falls 4x when the
  grid is refined 2x, whatever the number of steps).
- Anisotropic Gaussian (d = 32, float64): l = 1 - diag(U diag(lambda / (lambda + sigma^2)) U^T) within its standard
  error; the solver converges to the closed-form jump at its nominal order on Karras and logSNR schedules.
- Doubling the sample count moves the estimates by no more than their stated standard errors.
- The official files load back with numpy with the right keys and shapes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.diffusion.dpm_solver_v3 import logsnr_sigmas, official_options, sample_dpm_solver_v3
from lib.diffusion.ems import (
    DEFAULT_EMS,
    EMS,
    EMSSettings,
    compute_ems,
    degenerate_ems,
    estimate_ems,
)
from lib.diffusion.ems_files import load_official, save_official
from lib.diffusion.multistep import sample_dpmpp_2m, sample_unipc
from lib.diffusion.samplers import TrajectoryRecorder
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser
from lib.verdicts import loglog_slope

F64 = torch.float64
SIGMA_T, SIGMA_MIN = 80.0, 0.002
STEPS = [8, 16, 32, 64, 128]  # errors fall over all; the order is fitted on 16..128, as for the other samplers
ISO_C = 0.7


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


def exact_data(model: GaussianDenoiser, n: int, seed: int) -> torch.Tensor:
    """n exact samples of the model's Gaussian (the closed-form jump from sigma = 80 to 0)."""
    gen = torch.Generator().manual_seed(seed)
    return model.jump(SIGMA_T * torch.randn(n, *model.shape, generator=gen, dtype=F64), SIGMA_T, 0.0)


@pytest.fixture(scope="module")
def iso() -> GaussianDenoiser:
    gen = torch.Generator().manual_seed(3)
    d = 16
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    mean = torch.randn(d, generator=gen, dtype=F64)
    return GaussianDenoiser(mean, torch.full((d,), ISO_C, dtype=F64), eigvecs, (1, 4, 4), dtype=F64)


@pytest.fixture(scope="module")
def iso_ems(iso: GaussianDenoiser) -> dict[int, EMS]:
    data = exact_data(iso, 64, 0)
    return {levels: compute_ems(iso, data, EMSSettings(levels=levels, n_samples=64, batch_size=16, groups=4),
                                progress=False) for levels in (100, 200)}


@pytest.fixture(scope="module")
def model(gaussian32: GaussianDenoiser) -> GaussianDenoiser:
    return gaussian32  # tests/conftest.py: d = 32, eigenvalues from 25 to 1e-3, float64


@pytest.fixture(scope="module")
def aniso_ems(model: GaussianDenoiser) -> EMS:
    return compute_ems(model, exact_data(model, 128, 0),
                       EMSSettings(levels=100, n_samples=128, batch_size=32, groups=8), progress=False)


@pytest.fixture(scope="module")
def x_t() -> torch.Tensor:
    return SIGMA_T * torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)


# --------------------------------------------------------------------------- degenerate statistics: DPM-Solver++


@pytest.mark.parametrize("schedule", [karras_sigmas(12), logsnr_sigmas(9), karras_sigmas(7, append_zero=False)])
@pytest.mark.parametrize("grid", [None, 100])
def test_degenerate_order1_is_dpm_solver_pp_1(model, x_t, schedule, grid) -> None:
    """(1, 0, 0): order 1 is DDIM = DPM-Solver++(1) (UniP-1), with or without the (order-1, so idle) corrector, and on
    a fine grid (the integrals then run over 100 pieces) as well as on the minimal one."""
    ems = None if grid is None else degenerate_ems((2, 4, 4), grid)
    want = sample_unipc(model, x_t, schedule, order=1, use_corrector=False)
    for corrector in (False, True):
        got = sample_dpm_solver_v3(model, x_t, schedule, ems=ems, order=1, use_corrector=corrector)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_degenerate_first_step_is_dpmpp_2m(model, x_t) -> None:
    """Every order starts with a first-order step: on one step (and then to 0) all are sample_dpmpp_2m."""
    sigmas = torch.tensor([SIGMA_T, 1.0, 0.0], dtype=F64)
    for order in (1, 2, 3):
        torch.testing.assert_close(sample_dpm_solver_v3(model, x_t, sigmas, order=order),
                                   sample_dpmpp_2m(model, x_t, sigmas), rtol=1e-12, atol=1e-12)


def dpmpp_2m_exact_phi(model, x, sigmas: torch.Tensor) -> torch.Tensor:
    """Multistep DPM-Solver++(2M) with the exact coefficient, written out:
    x_{i+1} = e^{-h} x_i + (1 - e^{-h}) D_i + (h - 1 + e^{-h}) / (r h) (D_i - D_{i-1}), r = h_{i-1} / h_i."""
    levels = [float(s) for s in sigmas]
    old, h_last = None, None
    for sigma, sigma_next in zip(levels[:-1], levels[1:], strict=True):
        d = model(x, sigma)
        h = math.log(sigma / sigma_next)
        x_new = math.exp(-h) * x + (-math.expm1(-h)) * d
        if old is not None:
            r = h_last / h
            x_new = x_new + (h + math.expm1(-h)) / (r * h) * (d - old)
        x, old, h_last = x_new, d, h
    return x


@pytest.mark.parametrize("schedule", [karras_sigmas(10, append_zero=False), logsnr_sigmas(10, append_zero=False)])
def test_degenerate_order2_is_dpm_solver_pp_2m(model, x_t, schedule) -> None:
    got = sample_dpm_solver_v3(model, x_t, schedule, order=2, use_corrector=False, lower_order_final=False)
    torch.testing.assert_close(got, dpmpp_2m_exact_phi(model, x_t, schedule), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- isotropic Gaussian: closed forms


def iso_closed_form(ems: EMS, mean: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    sigma = np.exp(-ems.lambdas).reshape(-1, 1, 1, 1)
    l_ = sigma**2 / (ISO_C + sigma**2)
    return l_, 2 * l_ * (1 - l_) * mean.numpy().reshape(1, 1, 4, 4)


def test_isotropic_ems_are_closed_form(iso, iso_ems) -> None:
    errors = {}
    for levels, ems in iso_ems.items():
        l_, b = iso_closed_form(ems, iso.mean)
        np.testing.assert_allclose(ems.l, np.broadcast_to(l_, ems.l.shape), rtol=0, atol=1e-13)
        assert ems.l_se.max() < 1e-13  # a scalar Jacobian: no probe noise
        errors[levels] = (np.abs(ems.s).max(), np.abs(ems.b - b).max())
    # s and the b error come from the grid's finite difference of l alone: O(dlambda^2), 4x smaller on a 2x grid
    assert errors[200][0] < 5e-3 and errors[200][1] < 2e-3, errors
    assert 3 < errors[100][1] / errors[200][1] < 5, errors


def test_isotropic_first_order_is_exact_up_to_the_grid(iso, iso_ems) -> None:
    x = SIGMA_T * torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    exact = iso.jump(x, SIGMA_T, SIGMA_MIN)
    sigmas = karras_sigmas(5, append_zero=False)
    err = {levels: rel_error(sample_dpm_solver_v3(iso, x, sigmas, ems=ems, order=1, use_corrector=False), exact)
           for levels, ems in iso_ems.items()}
    ddim = rel_error(sample_dpm_solver_v3(iso, x, sigmas, order=1, use_corrector=False), exact)
    assert err[200] < 1e-3 < 0.1 < ddim, (err, ddim)
    assert 3 < err[100] / err[200] < 6, err  # O(dlambda^2): 4, give or take the next order


# --------------------------------------------------------------------------- anisotropic Gaussian


def test_anisotropic_l_is_one_minus_the_jacobian_diagonal(model, aniso_ems) -> None:
    sigma = torch.as_tensor(np.exp(-aniso_ems.lambdas), dtype=F64)
    gains = model.eigvals / (model.eigvals + sigma[:, None] ** 2)  # (K, d)
    diag = (model.eigvecs**2 @ gains.T).T.reshape(-1, *model.shape).numpy()
    z = (aniso_ems.l - (1 - diag)) / aniso_ems.l_se
    assert np.sqrt(np.mean(z**2)) < 2 and np.abs(z).max() < 6, (np.sqrt(np.mean(z**2)), np.abs(z).max())


ORDER_CASES = {
    "order1": ({"order": 1, "use_corrector": False}, 1),
    "order2": ({"order": 2, "use_corrector": False}, 2),
    "order3": ({"order": 3, "use_corrector": False}, 3),
    "order3_pseudo": ({"order": 3, "use_corrector": False, "p_pseudo": True}, 2),  # pseudo-order: 2 in truth
}


@pytest.mark.parametrize("schedule", ["karras", "logsnr"])
@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_converges_to_closed_form_at_nominal_order(model, aniso_ems, x_t, schedule, case) -> None:
    kwargs, order = ORDER_CASES[case]
    make = karras_sigmas if schedule == "karras" else logsnr_sigmas
    exact = model.jump(x_t, SIGMA_T, SIGMA_MIN)
    err = [rel_error(sample_dpm_solver_v3(model, x_t, make(n, append_zero=False), ems=aniso_ems,
                                          lower_order_final=False, **kwargs), exact) for n in STEPS]
    assert np.all(np.diff(err) < 0), err
    assert loglog_slope(STEPS[1:], err[1:]) == pytest.approx(-order, abs=0.35), err


@pytest.mark.parametrize("schedule", ["karras", "logsnr"])
def test_corrector_improves_the_predictor(model, aniso_ems, x_t, schedule) -> None:
    make = karras_sigmas if schedule == "karras" else logsnr_sigmas
    exact = model.jump(x_t, SIGMA_T, SIGMA_MIN)
    for n in (16, 32):
        sigmas = make(n, append_zero=False)
        with_c = rel_error(sample_dpm_solver_v3(model, x_t, sigmas, ems=aniso_ems, lower_order_final=False), exact)
        without = rel_error(sample_dpm_solver_v3(model, x_t, sigmas, ems=aniso_ems, use_corrector=False,
                                                 lower_order_final=False), exact)
        assert with_c < 0.5 * without, (n, with_c, without)


def test_estimates_move_less_than_their_errors_when_samples_double(model) -> None:
    runs = {n: compute_ems(model, exact_data(model, 256, 5), EMSSettings(levels=20, n_samples=n, batch_size=32,
                                                                         groups=8, seed=n), progress=False)
            for n in (64, 128)}
    small, large = runs[64], runs[128]
    for field in ("l", "s", "b"):
        diff = getattr(small, field) - getattr(large, field)
        se = np.sqrt(getattr(small, f"{field}_se") ** 2 + getattr(large, f"{field}_se") ** 2)
        z = diff / se
        assert np.sqrt(np.mean(z**2)) < 2 and np.mean(np.abs(z) > 4) < 0.02, (field, np.sqrt(np.mean(z**2)))


# --------------------------------------------------------------------------- files, cache, NFE, bad input


def test_official_layout_round_trip(tmp_path, aniso_ems) -> None:
    save_official(aniso_ems, tmp_path / "stats")
    with np.load(tmp_path / "stats" / "l.npz") as fl, np.load(tmp_path / "stats" / "sb.npz") as fsb:
        assert list(fl.keys()) == ["l"] and sorted(fsb.keys()) == ["b", "s"]
        assert fl["l"].shape == fsb["s"].shape == fsb["b"].shape == (101, 2, 4, 4)
    back = load_official(tmp_path / "stats")
    np.testing.assert_array_equal(back.l, aniso_ems.l)
    np.testing.assert_array_equal(back.b, aniso_ems.b)
    np.testing.assert_allclose(back.lambdas, aniso_ems.lambdas, rtol=0, atol=1e-14)


def test_the_default_networks_statistics_load_in_the_official_layout() -> None:
    """Notebook 07 writes the default network's EMS where the results are committed: they load with numpy alone,
    with the official keys and shape (levels + 1, C, H, W), and back into the solver's grid."""
    folder = Path(__file__).resolve().parents[1] / "data" / "results" / "ems"
    with np.load(folder / "l.npz") as fl, np.load(folder / "sb.npz") as fsb:
        assert list(fl.keys()) == ["l"] and sorted(fsb.keys()) == ["b", "s"]
        assert fl["l"].shape == fsb["s"].shape == fsb["b"].shape == (DEFAULT_EMS.levels + 1, 1, 32, 32)
        assert all(np.isfinite(a).all() for a in (fl["l"], fsb["s"], fsb["b"]))
    back = load_official(folder)
    assert back.shape == (1, 32, 32) and np.all(np.diff(back.lambdas) > 0)


def test_cache_is_keyed_and_verified(tmp_path, monkeypatch, model) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    settings = EMSSettings(levels=4, n_samples=16, batch_size=16, groups=2)
    data = exact_data(model, 16, 0)
    first = estimate_ems(model, data, settings, key="gauss32", progress=False)
    calls = []
    second = estimate_ems(lambda x, s: calls.append(1) or model(x, s), data, settings, key="gauss32", progress=False)
    assert not calls and (tmp_path / "cache" / "ems").is_dir()
    np.testing.assert_array_equal(first.s, second.s)


def test_nfe_and_callback(model, x_t, aniso_ems) -> None:
    for sigmas, nfe in ((karras_sigmas(10), 10), (karras_sigmas(10, append_zero=False), 9)):
        calls: list[float] = []
        rec = TrajectoryRecorder()

        def counting(x: torch.Tensor, sigma: float, calls: list[float] = calls) -> torch.Tensor:
            calls.append(float(sigma))
            return model(x, sigma)

        out = sample_dpm_solver_v3(counting, x_t[:2], sigmas, ems=aniso_ems, callback=rec)
        assert len(calls) == nfe == len(sigmas) - 1 and len(rec.xs) == len(sigmas) - 1
        torch.testing.assert_close(rec.xs[-1], out)
    assert official_options(5) == {"order": 3, "p_pseudo": True, "use_corrector": True, "c_pseudo": False,
                                   "lower_order_final": True}


def test_bad_input_raises(model, x_t, aniso_ems) -> None:
    with pytest.raises(ValueError, match="order"):
        sample_dpm_solver_v3(model, x_t, karras_sigmas(4), order=4)
    with pytest.raises(ValueError, match="EMS cover"):
        sample_dpm_solver_v3(model, x_t, karras_sigmas(4, sigma_max=200.0), ems=aniso_ems)
    with pytest.raises(ValueError, match="shape"):
        sample_dpm_solver_v3(model, x_t, karras_sigmas(4), ems=degenerate_ems((1, 4, 4)))
    with pytest.raises(ValueError, match="decreasing"):
        sample_dpm_solver_v3(model, x_t, torch.tensor([1.0, 2.0], dtype=F64))
    with pytest.raises(ValueError, match="settings"):
        EMSSettings(n_samples=4, groups=8)


def test_the_ems_of_a_network_with_attention(tiny_rgb_study):
    """A diffusers UNet has attention in its middle block, whose fused kernels have no double backward: the EMS's
    JVPs run it on the math kernel (before, `python -m lib.sweep teleportation` stopped there for a folder's model)."""
    from lib.diffusion import ems
    from lib.models import discrete_vp

    network = discrete_vp.load_diffusers_vp(str(tiny_rgb_study[1]), below_range="lowest")
    data = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    stats = ems.compute_ems(network, data, ems.EMSSettings(levels=3, n_samples=4, batch_size=4, groups=2),
                            progress=False)
    assert stats.shape == (3, 16, 16) and all(bool(np.isfinite(getattr(stats, f)).all()) for f in ("l", "s", "b"))

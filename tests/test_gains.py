"""Issue 29: per-mode gains of a denoiser (lib.analysis.gains), learning and emergence steps (gain_steps) and the three
findings (gain_findings), on d = 16 Gaussian data with known eigenvalues, where the answers are exact."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis import gain_findings as gf
from lib.analysis import gain_steps as gs
from lib.analysis import gains
from lib.analysis.linearity import ProbeBank
from lib.data.statistics import compute_stats
from lib.models.edm import EDMPrecond, karras_sigmas
from lib.models.gaussian import GaussianDenoiser, decided_fraction, emergence_sigmas
from lib.models.isotropic import IsotropicGaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser
from lib.models.unet import UNet

D, SHAPE = 16, (1, 4, 4)
SIGMAS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 80.0]
MODES = list(range(1, D + 1))


@pytest.fixture(scope="module")
def data(gain_data):
    return gain_data


@pytest.fixture(scope="module")
def gauss(data):
    return GaussianDenoiser.from_stats(data[1], dtype=torch.float64)


@pytest.fixture(scope="module")
def iso(data):
    return IsotropicGaussianDenoiser.from_stats(data[1], dtype=torch.float64)


@pytest.fixture(scope="module")
def training_set(data):
    return DeltaMixtureDenoiser(data[0][:300], dtype=torch.float64, chunk_size=128)


def exact_gains(stats, sigma):
    return stats.eigvals.numpy() / (stats.eigvals.numpy() + sigma**2)


# --------------------------------------------------------------------------- modes and probes


def test_mode_indices_take_the_top_ones_then_log_spaced_down_to_the_last_nonzero_variance():
    lam = np.concatenate([np.logspace(2, -6, 1000), np.zeros(24)])
    ks = gains.mode_indices(lam, n_top=10, n_log=20)
    assert list(ks[:10]) == list(range(1, 11)) and ks[-1] == 1000 and 25 <= len(ks) <= 30
    assert (np.diff(ks) > 0).all() and np.allclose(np.diff(np.log(ks[12:])), np.diff(np.log(ks[12:])).mean(), rtol=0.3)
    assert list(gains.mode_indices(np.array([3.0, 2.0, 1e-12, 0.0]))) == [1, 2]  # below 1e-10 relative: zero


def test_probes_are_those_of_the_linearity_probe_bank(data):
    x0 = data[0][:5].float()
    bank = ProbeBank(x0, SIGMAS[:3], "train", seed=3)
    for i, sigma in enumerate(SIGMAS[:3]):
        assert torch.equal(gains.probes_at(x0, sigma, i, seed=3), bank.x[i])


# --------------------------------------------------------------------------- exact gains


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_the_gaussian_gains_are_lambda_over_lambda_plus_sigma2_everywhere_with_no_leak(data, gauss, method):
    stats = data[1]
    table = gains.gain_table(gauss, data[0][:12], SIGMAS, stats, modes=MODES, method=method, fd_step=1e-3)
    assert len(table) == len(SIGMAS) * D and (table["n_probes"] == 12).all()
    expected = np.concatenate([exact_gains(stats, s) for s in SIGMAS])
    tol = 1e-12 if method == "jvp" else 1e-9
    np.testing.assert_allclose(table["gain_mean"], expected, atol=tol, rtol=0)
    np.testing.assert_allclose(table["gaussian_gain"], expected, rtol=1e-14)
    assert table["gain_std"].max() < tol and table["leak_mean"].max() < 1e3 * tol
    assert set(table["method"]) == {"forward" if method == "jvp" else "fd"}
    variation = gains.jacobian_variation(gauss, data[0][:12], SIGMAS, method=method, fd_step=1e-3)
    assert variation["jvp_variation"].max() < 1e3 * tol and variation["dir_gain_std"].max() < tol


def test_central_differences_in_float32_keep_the_gains_within_a_few_1e_4_at_every_probe_level():
    """The default step on a float32 Gaussian in d = 256 with a power-law spectrum (as MNIST's) and pixels near -1."""
    gen = torch.Generator().manual_seed(2)
    d = 256
    lam = 20.0 * torch.arange(1, d + 1, dtype=torch.float64) ** -1.5
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    x = -0.7 + (torch.randn(300, d, generator=gen, dtype=torch.float64) * lam.sqrt()) @ u.T
    stats = compute_stats(x.reshape(-1, 1, 16, 16))
    model = GaussianDenoiser.from_stats(stats)  # float32
    table = gains.gain_table(model, x[:8].float().reshape(-1, 1, 16, 16), SIGMAS, stats, method="fd")
    assert set(table["method"]) == {"fd"} and len(table) == len(SIGMAS) * len(gains.mode_indices(stats.eigvals))
    assert (table["gain_mean"] - table["gaussian_gain"]).abs().max() < 5e-4
    responding = table[table["gaussian_gain"] > 0.1]  # elsewhere the leak is a ratio of rounding errors
    assert responding["leak_mean"].max() < 0.03


def test_the_isotropic_model_has_one_gain_for_every_mode(data, iso):
    stats = data[1]
    table = gains.gain_table(iso, data[0][:8], SIGMAS, stats, modes=MODES)
    v = stats.trace / stats.dim
    np.testing.assert_allclose(table["gain_mean"], table["isotropic_gain"], atol=1e-13)
    np.testing.assert_allclose(table["isotropic_gain"], v / (v + table["sigma"] ** 2), rtol=1e-13)
    assert table.groupby("sigma")["gain_mean"].std().max() < 1e-13 and table["leak_mean"].max() < 1e-12


def test_a_nonlinear_denoiser_shows_a_spread_over_probes_and_a_varying_jacobian(data, gauss):
    """A two-component mixture (two points, +-a along the top component): its Jacobian depends on x."""
    a = 2.0 * data[1].eigvecs[:, 0].reshape(1, *SHAPE)
    two = DeltaMixtureDenoiser(torch.cat([a, -a]), dtype=torch.float64)
    x0 = data[0][:32]
    table = gains.gain_table(two, x0, [1.0], data[1], modes=[1, 2])
    top = table[table["k"] == 1].iloc[0]
    assert top["gain_std"] > 0.05 and top["gain_se"] == pytest.approx(top["gain_std"] / math.sqrt(32))
    assert table[table["k"] == 2]["gain_mean"].abs().max() < 1e-12  # nothing varies off the two points' line
    assert gains.jacobian_variation(two, x0, [1.0])["jvp_variation"].iloc[0] > 0.1
    linear = gains.linearity_table(table, gains.jacobian_variation(two, x0, [1.0]))
    assert linear["gain_std_max"].iloc[0] == pytest.approx(top["gain_std"])


def test_the_training_set_jvp_agrees_with_central_differences(data, training_set):
    x0 = data[0][1000:1016]
    levels = [0.3, 1.0, 3.0]
    by_jvp = gains.gain_table(training_set, x0, levels, data[1], modes=MODES, method="jvp")
    by_fd = gains.gain_table(training_set, x0, levels, data[1], modes=MODES, method="fd", fd_step=1e-4)
    assert set(by_jvp["method"]) == {"forward"} and set(by_fd["method"]) == {"fd"}
    assert by_jvp["gain_std"].max() > 1e-2  # nonlinear at these levels
    np.testing.assert_allclose(by_jvp["gain_mean"], by_fd["gain_mean"], atol=1e-7)
    np.testing.assert_allclose(by_jvp["gain_std"], by_fd["gain_std"], atol=1e-7)
    # the leak is a ratio of norms, some tiny at sigma = 0.3 (probes next to one training point): looser there
    np.testing.assert_allclose(by_jvp["leak_mean"], by_fd["leak_mean"], atol=1e-4)
    high = by_jvp["sigma"] >= 1
    np.testing.assert_allclose(by_jvp["leak_mean"][high], by_fd["leak_mean"][high], atol=1e-8)


def test_auto_falls_back_to_central_differences_for_a_denoiser_autodiff_cannot_see(data, gauss):
    def through_numpy(x, sigma):
        return torch.from_numpy(gauss(x.detach(), sigma).numpy().copy())

    through_numpy.dtype = torch.float64  # evaluated in the dtype a denoiser declares (float32 when it declares none)

    table = gains.gain_table(through_numpy, data[0][:4], [0.5], data[1], modes=[1, 5], fd_step=1e-4)
    assert set(table["method"]) == {"fd"}
    np.testing.assert_allclose(table["gain_mean"], exact_gains(data[1], 0.5)[[0, 4]], atol=1e-8)


def test_a_network_whose_forward_mode_fails_is_differentiated_by_the_double_vjp():
    """GroupNorm on channels-last activations has no forward-mode formula: "jvp" takes two reverse passes instead,
    through attention too, and agrees with central differences in float32."""
    torch.manual_seed(1)
    net = EDMPrecond(UNet(img_resolution=8, in_channels=1, channels=8, channel_mult=(1, 2), attn_resolutions=(4,)))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the output layer starts at zero
    net.eval()
    x, v = torch.randn(6, 1, 8, 8), torch.randn(6, 64)
    exact = gains.DirectionalDerivative(net, "jvp")
    rows = exact(x, 0.5, v)
    assert exact.path == "double_vjp" and gains.DirectionalDerivative(net).dtype == torch.float32
    cheap = gains.DirectionalDerivative(net, "auto")
    by_fd = cheap(x, 0.5, v)
    assert cheap.path == "fd"
    assert (rows - by_fd).norm() / rows.norm() < 1e-3


def test_bad_arguments_are_one_line_errors(data, gauss):
    with pytest.raises(ValueError, match="method"):
        gains.DirectionalDerivative(gauss, "exact")
    with pytest.raises(ValueError, match="1-based"):
        gains.gain_table(gauss, data[0][:2], [1.0], data[1], modes=[0])
    with pytest.raises(ValueError, match="sigma"):
        gains.DirectionalDerivative(gauss)(data[0][:2], 0.0, torch.ones(2, D))


# --------------------------------------------------------------------------- fits


def test_a_log_log_fit_recovers_an_exact_power_law_and_its_brackets_widen_the_interval():
    x = np.logspace(-3, 1, 9)
    fit = gs.loglog_fit(x, 5.0 * x**-1.0)
    assert fit.slope == pytest.approx(-1.0) and fit.se == pytest.approx(0.0, abs=1e-12)
    assert fit.ci_low == pytest.approx(-1.0) and fit.ci_high == pytest.approx(-1.0) and fit.contains(-1.0)
    loose = gs.loglog_fit(x, 5.0 * x**-1.0, y_low=2.5 * x**-1.0)
    assert loose.ci_low < -1.0 < loose.ci_high < -0.8


# --------------------------------------------------------------------------- (b) across training


STEPS = np.concatenate([[0], np.unique(np.round(np.geomspace(10, 1e6, 41)))])


def checkpoints(stats, learning_time, sigmas=(0.03, 0.1, 0.3, 1.0, 3.0), se=1e-3) -> pd.DataFrame:
    """Synthetic gain tables: mode k's gain rises as g_k (1 - exp(-step / tau_k)), tau_k = learning_time(lambda_k);
    it is learned (within 10% beyond 2 se) once exp(-step / tau_k) <= 0.1 - 2 se / g_k."""
    rows = []
    for step in STEPS:
        for sigma in sigmas:
            for k, lam in enumerate(stats.eigvals.numpy(), start=1):
                g = lam / (lam + sigma**2)
                rows.append({"step": int(step), "sigma": sigma, "k": k, "lambda": lam, "gaussian_gain": g,
                             "gain_mean": g * (1 - math.exp(-step / learning_time(lam))), "gain_se": se})
    return pd.DataFrame(rows)


def test_modes_learned_at_c_over_lambda_give_a_slope_of_minus_one(data):
    stats = data[1]
    finding = gf.across_training_finding(checkpoints(stats, lambda lam: 100.0 / lam))
    assert finding.outcome == gf.HOLDS and (finding.steps["status"] == "learned").all()
    assert finding.fit.slope == pytest.approx(-1.0, abs=0.05) and finding.fit.ci_high < -0.9
    assert finding.matches_prediction and "Wang & Pehlevan" in finding.describe()
    steps = finding.steps
    assert (steps["step_before"] < steps["step"]).all()
    assert (steps["step"] >= 100.0 / steps["lambda"] * math.log(10) * 0.99).all()  # learned no earlier than theory
    assert (steps["step_before"] < 100.0 / steps["lambda"] * math.log(10) * 1.3).all()  # the bracket holds it
    near = np.exp(np.round(np.log(steps["sigma"]) - 0.5 * np.log(steps["lambda"]), 6))
    assert (near <= math.sqrt(10) + 1e-6).all()  # each mode judged at the level nearest sqrt(lambda_k)


def test_a_constant_learning_time_is_not_informative_and_a_reversed_order_does_not_hold(data):
    stats = data[1]
    constant = gf.across_training_finding(checkpoints(stats, lambda lam: 300.0))
    assert constant.outcome == gf.NOT_INFORMATIVE and constant.fit.slope == pytest.approx(0.0, abs=1e-12)
    reversed_ = gf.across_training_finding(checkpoints(stats, lambda lam: 1e4 * lam))
    assert reversed_.outcome == gf.DOES_NOT_HOLD and reversed_.fit.slope == pytest.approx(1.0, abs=0.05)


def test_too_few_learned_modes_give_partly_or_not_informative(data):
    stats = data[1]
    lam_cut = float(stats.eigvals[5])  # modes 1-6 are learned, the rest never (tau beyond the last checkpoint)
    partly = gf.across_training_finding(checkpoints(stats, lambda lam: 100.0 / lam if lam >= lam_cut else 1e9))
    assert partly.outcome == gf.PARTLY and (partly.steps["status"] == "never").sum() == D - 6
    few = gf.across_training_finding(checkpoints(stats, lambda lam: 100.0 / lam if lam >= stats.eigvals[2] else 1e9))
    assert few.outcome == gf.NOT_INFORMATIVE and few.fit is None
    ready = checkpoints(stats, lambda lam: 300.0)
    at_once = gs.learning_steps(ready.assign(gain_mean=ready["gaussian_gain"]))  # Gaussian from the first checkpoint
    fast = gs.learning_steps(checkpoints(stats, lambda lam: 1.0))  # learned by step 10, the first after step 0
    for early in (at_once, fast):
        assert (early["status"] == "early").all() and early["step"].isna().all()


# --------------------------------------------------------------------------- (c) feature emergence


@pytest.fixture(scope="module")
def trajectories(data, gauss, iso):
    """x0_hat along the Gaussian's and the isotropic model's closed-form trajectories from the same x_T, on EDM's
    schedule (200 levels, then 0)."""
    sigmas = karras_sigmas(200)
    x_t = 80.0 * torch.randn((64, *SHAPE), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return sigmas, gauss.trajectory(x_t, 80.0, sigmas), gs.closed_form_estimates(iso, x_t, 80.0, sigmas)


def test_emergence_on_the_gaussian_closed_form_is_notebook_01s_and_sits_at_sqrt_lambda(data, gauss, trajectories):
    stats = data[1]
    sigmas, closed, _ = trajectories
    table = gs.emergence_table(closed.x0_hat, sigmas, stats, modes=MODES)
    positive = sigmas > 0
    existing = emergence_sigmas(sigmas[positive], decided_fraction(gauss, closed.x0_hat, closed.x[-1])[positive])
    np.testing.assert_allclose(table["sigma_half"], existing.numpy(), rtol=1e-10)
    np.testing.assert_allclose(table["sigma_half"], table["sqrt_lambda"], rtol=2e-3)
    np.testing.assert_allclose(table["sigma_half_median"], table["sqrt_lambda"], rtol=2e-3)  # per trajectory too
    assert (table["n_decided"] == 64).all()
    finding = gf.emergence_finding(table)
    assert finding.outcome == gf.HOLDS and finding.fit.slope == pytest.approx(1.0, abs=1e-3)
    assert finding.median_ratio == pytest.approx(1.0, abs=2e-3)


def test_the_isotropic_control_decides_every_feature_at_once_and_does_not_hold(data, iso, trajectories):
    stats = data[1]
    sigmas, closed, iso_x0 = trajectories
    control = gs.emergence_table(iso_x0, sigmas, stats, modes=MODES)
    v = stats.trace / stats.dim
    np.testing.assert_allclose(control["sigma_half"], math.sqrt(v), rtol=2e-3)
    assert gf.emergence_finding(control).outcome == gf.DOES_NOT_HOLD
    table = gs.emergence_table(closed.x0_hat, sigmas, stats, modes=MODES)
    with_control = gf.emergence_finding(table, control)
    assert with_control.outcome == gf.HOLDS and with_control.control_outcome == gf.DOES_NOT_HOLD
    assert gf.emergence_finding(table, table).outcome == gf.NOT_INFORMATIVE  # a control that passes too


def test_emergence_with_the_wrong_slope_is_partly_and_too_few_modes_not_informative(data):
    lam = data[1].eigvals.numpy()
    half_slope = pd.DataFrame({"k": MODES, "lambda": lam, "sqrt_lambda": np.sqrt(lam), "sigma_half": lam**0.25})
    assert gf.emergence_finding(half_slope).outcome == gf.PARTLY
    assert gf.emergence_finding(half_slope.assign(sigma_half=3 * np.sqrt(lam))).outcome == gf.PARTLY  # ratio 3
    few = half_slope.assign(sigma_half=np.where(np.arange(D) < 3, np.sqrt(lam), np.nan))
    assert gf.emergence_finding(few).outcome == gf.NOT_INFORMATIVE


# --------------------------------------------------------------------------- (a) across noise


def test_the_gaussian_holds_across_noise_the_isotropic_model_is_not_informative(data, gauss, iso):
    x0 = data[0][:32]
    finding = gf.across_noise_finding(gains.gain_table(gauss, x0, SIGMAS, data[1], modes=MODES))
    informative = finding.levels[finding.levels["informative"]]
    assert finding.outcome == gf.HOLDS and finding.departs_at is None
    assert finding.holds_down_to == informative["sigma"].min() and len(informative) >= 6
    levels = finding.levels.set_index("sigma")
    assert not levels.loc[80.0, "informative"] and not levels.loc[0.01, "informative"]  # every gain ~0 / ~1 there
    assert gf.across_noise_finding(gains.gain_table(gauss, x0, SIGMAS, data[1], modes=MODES),
                                   gf.GainRules(max_mode=None)).holds_down_to == 0.01  # the low modes judge low noise
    iso_finding = gf.across_noise_finding(gains.gain_table(iso, x0, SIGMAS, data[1], modes=MODES))
    assert iso_finding.outcome == gf.NOT_INFORMATIVE and iso_finding.holds_down_to is None


def test_the_training_set_departs_from_the_gaussian_at_low_noise(data, training_set):
    table = gains.gain_table(training_set, data[0][1000:1032], SIGMAS, data[1], modes=MODES)
    finding = gf.across_noise_finding(table)
    assert finding.outcome == gf.HOLDS and 0.1 <= finding.departs_at < finding.holds_down_to <= 2.0
    levels = finding.levels.set_index("sigma")
    assert levels.loc[0.01, "informative"] and not levels.loc[0.01, "gaussian_holds"]  # it left both models' ~1
    every = gf.across_noise_finding(table, gf.GainRules(max_mode=None))  # every probed mode judged
    assert every.outcome == gf.HOLDS and every.departs_at >= finding.departs_at


def test_gains_in_the_wrong_modes_do_not_hold_and_a_broken_run_is_partly(data, gauss):
    stats = data[1]
    swapped = GaussianDenoiser(stats.mean, stats.eigvals.flip(0), stats.eigvecs, SHAPE, dtype=torch.float64)
    table = gains.gain_table(swapped, data[0][:16], SIGMAS, stats, modes=MODES)
    assert gf.across_noise_finding(table).outcome == gf.DOES_NOT_HOLD
    good = gains.gain_table(gauss, data[0][:16], SIGMAS, stats, modes=MODES)
    broken = good.assign(gain_mean=np.where(good["sigma"] == 1.0, good["gaussian_gain"] * 0.5, good["gain_mean"]))
    finding = gf.across_noise_finding(broken)
    assert finding.outcome == gf.PARTLY and finding.departs_at == 1.0 and finding.holds_down_to == 2.0

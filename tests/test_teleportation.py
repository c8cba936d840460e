"""Analytical teleportation (lib.analysis.teleportation) and the C6 verdict, with Gaussian models standing in for
the network.

For Gaussian data the jump is exact, so a teleported run must end where the full run ends, up to the
solver's error on the steps both share; the sweep's table, cache and noise handling are checked with a
low-rank Gaussian on 1x32x32 images and an untrained (seeded) feature network.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lib import verdicts
from lib.analysis import sampler_accuracy, teleport_pairs, teleport_sweep, teleportation
from lib.core import numerics
from lib.diffusion import teleport
from lib.diffusion.teleport import SAMPLERS, sample_with_teleport
from lib.models.edm import karras_sigmas
from lib.models.gaussian import GaussianDenoiser

F64 = torch.float64
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def small_gaussian(dtype=F64) -> GaussianDenoiser:
    """d = 32 (shape 2x4x4), eigenvalues log-spaced from 4 down to 1e-3, a random rotation."""
    gen = torch.Generator().manual_seed(0)
    d = 32
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    eigvals = torch.logspace(math.log10(4.0), -3.0, d, dtype=F64)
    return GaussianDenoiser(0.2 * torch.randn(d, generator=gen, dtype=F64), eigvals, eigvecs, (2, 4, 4), dtype=dtype)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


# --------------------------------------------------------------------------- grid and schedules


@pytest.mark.parametrize(("n_levels", "expected"), [
    (10, [0, 1, 2, 3, 4, 5]), (18, [0, 2, 4, 5, 7, 9]), (6, [0, 1, 2, 3]), (12, [0, 1, 2, 4, 5, 6]), (5, [0, 1, 2, 3]),
])
def test_skip_grid_rounds_halves_up_and_deduplicates(n_levels: int, expected: list[int]) -> None:
    assert teleportation.skip_grid(n_levels, FRACTIONS) == expected


def test_skip_grid_keeps_two_levels_and_checks_arguments() -> None:
    assert teleportation.skip_grid(4, (0.0, 0.5, 0.75, 1.0)) == [0, 2]
    assert numerics.round_half_up(2.5) == 3 and numerics.round_half_up(0.3 * 10) == 3
    with pytest.raises(ValueError, match="at least 2"):
        teleportation.skip_grid(1, FRACTIONS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        teleportation.skip_grid(10, (0.0, 1.5))


@pytest.mark.parametrize("n_levels", [6, 10, 18])
def test_skip_schedule_is_the_tail_of_the_full_schedule(n_levels: int) -> None:
    full = karras_sigmas(n_levels)
    for k in teleportation.skip_grid(n_levels, FRACTIONS):
        sigma_skip, sigmas = teleportation.skip_schedule(n_levels, k)
        assert sigma_skip == pytest.approx(float(full[k]), rel=1e-12)
        assert len(sigmas) == n_levels - k + 1 and float(sigmas[-1]) == 0.0
        torch.testing.assert_close(sigmas, full[k:], rtol=1e-12, atol=0)


def test_initial_noise_depends_only_on_the_seed() -> None:
    a, b = teleportation.initial_noise(3, 5, (1, 4, 4)), teleportation.initial_noise(3, 5, (1, 4, 4))
    assert torch.equal(a, b) and not torch.equal(a, teleportation.initial_noise(4, 5, (1, 4, 4)))
    assert float(a.std()) == pytest.approx(80.0, rel=0.25)


# --------------------------------------------------------------------------- one configuration


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "unipc"])
def test_teleported_run_ends_where_the_full_run_ends_on_gaussian_data(name: str) -> None:
    """With the Gaussian as the network the jump is exact: any skip reaches the ODE's endpoint, D(x(sigma_min)),
    up to the error of the steps left, and with the same steps below sigma_skip it is no less accurate."""
    model = small_gaussian()
    n_levels, n = 64, 6
    x_t = teleportation.initial_noise(0, n, model.shape).double()
    exact = model(model.jump(x_t, 80.0, 0.002), 0.002)  # the final step to 0 of every sampler returns D
    runs = {k: teleportation.run_configuration(model, model, (name, n_levels, k, 0, "gaussian"), n_samples=n,
                                               shape=model.shape, batch_size=4).samples.double()
            for k in [0, 8, 20, 40]}
    errors = {k: rel_error(samples, exact) for k, samples in runs.items()}
    gaps = {k: rel_error(samples, runs[0]) for k, samples in runs.items()}
    assert all(e < 1e-2 for e in errors.values()), errors  # mostly the first-order final step to 0
    assert all(errors[k] <= errors[0] * 1.05 + 1e-6 for k in errors), errors
    assert all(g < 5e-3 for g in gaps.values()), gaps


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "unipc"])
def test_run_configuration_is_sample_with_teleport(name: str) -> None:
    model = small_gaussian()
    for k in [0, 3]:
        run = teleportation.run_configuration(model, model, (name, 10, k, 2, "gaussian"), n_samples=7,
                                              shape=model.shape, batch_size=3)
        sigma_skip, _ = teleportation.skip_schedule(10, k)
        x_t = teleportation.initial_noise(2, 7, model.shape)
        direct = sample_with_teleport(SAMPLERS[name], model, model, x_t, 80.0, sigma_skip, 10 - k)
        torch.testing.assert_close(run.samples, direct.float(), rtol=1e-5, atol=1e-5)
        batched = sample_with_teleport(SAMPLERS[name], model, model, x_t, 80.0, sigma_skip, 10 - k, batch_size=3)
        assert torch.equal(run.samples, batched.float())  # the run is the library's teleporting sampler
        assert run.sigma_skip == sigma_skip
        assert run.nfe == (2 * (10 - k) - 1 if name == "heun" else 10 - k)
        assert run.wall_s >= 0.0


# --------------------------------------------------------------------------- the sweep


BUDGETS = (("heun", 4), ("dpmpp_2m", 4))
SWEEP_FRACTIONS = (0.0, 0.5)


def run_sweep(feature_setup, **kwargs) -> teleportation.TeleportSweep:
    classifier, model, reference = feature_setup
    inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=8, **kwargs)
    return teleport_sweep.sweep(inputs, BUDGETS, SWEEP_FRACTIONS, seeds=(0, 1), n_samples=16, keep=4, progress=False)


def test_sweep_table_has_one_row_per_configuration(feature_setup) -> None:
    result = run_sweep(feature_setup)
    table = result.table
    assert list(table.columns) == teleportation.TABLE_COLUMNS
    assert len(table) == 2 * 2 * 2  # seeds x budgets x skips {0, 2}
    assert result.all_finite and np.isfinite(table[["fd", "kid", "sigma_skip", "wall_s"]].to_numpy()).all()
    heun = table[table["sampler"] == "heun"].set_index(["skip", "seed"])
    assert heun.loc[(0, 0), "nfe"] == 7 and heun.loc[(2, 0), "nfe"] == 3
    assert heun.loc[(0, 0), "sigma_skip"] == 80.0 and heun.loc[(2, 0), "sigma_skip"] < 80.0
    assert (table["n_samples"] == 16).all() and (table["fd"] >= 0).all()
    assert set(table["jump"]) == {"none", "gaussian"} and (table["jump"].eq("none") == table["skip"].eq(0)).all()
    keys = {(s, n, k, seed, "none" if k == 0 else "gaussian") for seed in (0, 1) for s, n in BUDGETS for k in (0, 2)}
    assert set(result.previews) == keys and set(result.features) == keys
    assert result.previews[("heun", 4, 0, 0, "none")].shape == (4, 1, 32, 32)
    assert result.features[("heun", 4, 2, 1, "gaussian")].shape == (16, 128)


def test_sweep_shares_noise_across_skips_and_budgets(feature_setup) -> None:
    """Common random numbers: every configuration of one seed starts from the same noise, so its samples are
    much closer to each other (they differ by solver error only) than to those of the other seed."""
    classifier, model, reference = feature_setup
    inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape)
    previews = teleport_sweep.sweep(inputs, (("heun", 16), ("unipc", 16)), (0.0, 0.25, 0.5), seeds=(0, 1), n_samples=8,
                                    keep=4, progress=False).previews

    def gap(a, b):
        return float((previews[a] - previews[b]).abs().mean())

    same = [gap(a, b) for a in previews for b in previews if a != b and a[3] == b[3]]
    other = [gap(a, b) for a in previews for b in previews if a[3] != b[3]]
    assert max(same) < 0.1 * min(other), (max(same), min(other))


def test_sweep_resumes_from_its_cache(feature_setup, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    first = run_sweep(feature_setup, cache_tag="test")
    assert len(list((tmp_path / "cache" / "teleportation").glob("*.pt"))) == len(first.table)

    def fail(*args, **kwargs):
        raise AssertionError("a cached configuration was run again")

    monkeypatch.setattr(teleport_sweep, "run_configuration", fail)
    again = run_sweep(feature_setup, cache_tag="test")
    pd.testing.assert_frame_equal(first.table, again.table)
    with pytest.raises(AssertionError, match="run again"):
        run_sweep(feature_setup, cache_tag="another tag")


def test_scores_of_non_finite_samples_are_nan(feature_setup) -> None:
    _, _, reference = feature_setup
    bad = reference.clone()
    bad[0, 0] = float("nan")
    assert all(math.isnan(v) for v in teleportation.score_features(bad, reference).values())


def test_feature_floor_has_one_row_per_seed(feature_setup) -> None:
    classifier, model, reference = feature_setup
    images = model.sample(128, generator=torch.Generator().manual_seed(3))
    floor = teleportation.feature_floor(classifier, images, reference, n=32, seeds=(0, 1, 2))
    assert list(floor["seed"]) == [0, 1, 2] and (floor["n_samples"] == 32).all()
    assert np.isfinite(floor[["fd", "kid"]].to_numpy()).all()


def test_summarize_averages_over_seeds() -> None:
    table = sweep_like_table(lambda name, n, k: 10.0 + k)
    summary = teleportation.summarize(table)
    row = summary[(summary["sampler"] == "heun") & (summary["steps"] == 10) & (summary["skip"] == 3)].iloc[0]
    assert row["fd_mean"] == pytest.approx(13.0) and row["n_seeds"] == 3 and row["jump"] == "gaussian"
    assert row["fd_std"] == pytest.approx(np.std([-0.2, 0.0, 0.2], ddof=1))


def sweep_like_table(fd, budgets=(("heun", 10), ("unipc", 6)), seeds=(0, 1, 2)) -> pd.DataFrame:
    """A sweep table with FD = fd(sampler, N, k) + a seed offset of -0.2, 0, 0.2."""
    rows = []
    for name, n in budgets:
        for k in teleportation.skip_grid(n, FRACTIONS):
            sigma_skip, sigmas = teleportation.skip_schedule(n, k)
            for i, seed in enumerate(seeds):
                rows.append({"sampler": name, "steps": n, "skip": k, "jump": "none" if k == 0 else "gaussian",
                             "sigma_skip": sigma_skip, "nfe": teleport.nfe(name, sigmas), "n_samples": 500,
                             "seed": seed,
                             "fd": fd(name, n, k) + 0.2 * (i - 1), "kid": 0.01, "wall_s": 1.0})
    return pd.DataFrame(rows, columns=teleportation.TABLE_COLUMNS)


# --------------------------------------------------------------------------- controls and paired changes


def test_control_jumps_are_the_isotropic_closed_form_and_rescaled_noise() -> None:
    model = small_gaussian()
    x_t = teleportation.initial_noise(5, 4, model.shape).double()
    iso = teleportation.isotropic_twin(model)
    v = float(model.eigvals.sum()) / model.dim
    assert iso.variance == pytest.approx(v)
    # the isotropic jump is the Gaussian jump of N(mu, v I)
    as_gaussian = GaussianDenoiser(model.mean, torch.full((model.dim,), v, dtype=F64), torch.eye(model.dim, dtype=F64),
                                   model.shape, dtype=F64)
    def start(jump):
        return teleportation.jump_model(jump, model).jump(x_t, 80.0, 7.0)

    torch.testing.assert_close(start("isotropic"), as_gaussian.jump(x_t, 80.0, 7.0))
    torch.testing.assert_close(start("noise"), x_t * (7.0 / 80.0))
    torch.testing.assert_close(start("gaussian"), model.jump(x_t, 80.0, 7.0))
    with pytest.raises(ValueError, match="unknown jump"):
        teleportation.jump_model("teleport", model)


def test_a_configuration_is_named_and_still_the_tuple_it_was() -> None:
    config = teleportation.Config("heun", 6, 2, 1, "noise")
    assert (config.sampler, config.steps, config.skip, config.seed, config.jump) == ("heun", 6, 2, 1, "noise")
    assert config == ("heun", 6, 2, 1, "noise") and hash(config) == hash(("heun", 6, 2, 1, "noise"))
    assert {config: 1}[("heun", 6, 2, 1, "noise")] == 1 and sorted([config, ("heun", 4, 0, 0, "none")])[1] is config
    sampler, steps, *_ = config
    assert (sampler, steps) == ("heun", 6) and teleportation.describe_config(config) == "heun N=6 k=2 noise seed=1"


def test_cache_keys_are_the_ones_the_caches_were_written_with() -> None:
    """Pinned: the cache under data/cache/teleportation is hours of sampling; a new key would run it all again."""

    class Statistics:
        def digest(self) -> str:
            return "abc123"

    v3 = teleport_sweep.options_key({"ems": Statistics()})
    key = teleport_sweep._cache_key
    assert key("t", teleportation.Config("heun", 6, 0, 0, "none"), 64, "cpu") == "598164812e53901d"
    assert key("t", ("heun", 6, 2, 1, "noise"), 64, "cuda", 64) == "2bb7dd5a1bca982b"
    assert key("t", teleportation.Config("dpm_solver_v3", 5, 1, 0, "gaussian"), 64, "cpu", 0, v3) == "82d804268058e0bd"
    assert key("t", teleportation.Config("unipc", 5, 2, 1, "isotropic"), 64, "cpu") == "a280c0923a20ebad"


def test_configurations_run_each_control_once_per_skip_and_the_plain_run_once() -> None:
    configs = teleportation.configurations((("heun", 10),), (0.0, 0.3), seeds=(0,), jumps=teleportation.JUMPS)
    assert configs == [("heun", 10, 0, 0, "none")] + [("heun", 10, 3, 0, j) for j in teleportation.JUMPS]
    with pytest.raises(ValueError, match="unknown jumps"):
        teleportation.configurations((("heun", 10),), (0.0, 0.3), seeds=(0,), jumps=("gaussian", "bogus"))


def test_paired_table_has_zero_change_for_the_baseline_and_an_interval_around_each_change(feature_setup) -> None:
    classifier, model, reference = feature_setup
    inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=12)
    result = teleport_sweep.sweep(inputs, (("heun", 6),), (0.0, 0.5), seeds=(0, 1), n_samples=24, progress=False,
                                  jumps=("gaussian", "noise"))
    paired = teleport_pairs.paired_table(result, reference, n_boot=50)
    # skip 0; skip 3: each jump against the plain budget, and the Gaussian jump against the noise control
    assert list(paired.columns) == teleport_pairs.PAIRED_COLUMNS and len(paired) == 4
    assert list(zip(paired["jump"], paired["against"], strict=True)) == [
        ("none", "budget"), ("gaussian", "budget"), ("noise", "budget"), ("gaussian", "noise")]
    base = paired[paired["skip"] == 0].iloc[0]
    assert base["fd_change"] == 0.0 and base["ci_low"] == 0.0 and base["ci_high"] == 0.0
    table = result.table
    versus = paired[paired["against"] == "noise"].iloc[0]
    fd_of = {jump: table[(table["skip"] == 3) & (table["jump"] == jump)]["fd"].mean() for jump in ("gaussian", "noise")}
    assert versus["fd_change"] == pytest.approx(fd_of["gaussian"] - fd_of["noise"]) and versus["nfe_against"] == 5
    for _, row in paired[(paired["skip"] > 0) & (paired["against"] == "budget")].iterrows():
        assert row["ci_low"] <= row["fd_change"] + 1e-9 or row["ci_high"] >= row["fd_change"] - 1e-9
        assert row["ci_low"] < row["ci_high"] and row["n_seeds"] == 2 and row["nfe"] < row["nfe_base"]
        fds = table[(table["skip"] == row["skip"]) & (table["jump"] == row["jump"])]["fd"].to_numpy()
        assert row["fd_change"] == pytest.approx(fds.mean() - table[table["skip"] == 0]["fd"].mean())


# --------------------------------------------------------------------------- convergence on Gaussian data


def test_sampler_convergence_orders_on_gaussian_data() -> None:
    table = sampler_accuracy.sampler_convergence(small_gaussian(), ["heun", "dpmpp_2m", "unipc"], [8, 16, 32, 64, 128],
                                                 n=4)
    assert set(table.columns) == {"sampler", "steps", "error"} and len(table) == 15
    orders = sampler_accuracy.fitted_orders(table)
    assert orders["heun"] == pytest.approx(2.0, abs=0.35)
    assert orders["dpmpp_2m"] == pytest.approx(2.0, abs=0.35)
    assert orders["unipc"] == pytest.approx(3.0, abs=0.5)


def test_fitted_orders_recover_a_power_law() -> None:
    steps = [4, 8, 16, 32, 64]
    table = pd.DataFrame({"sampler": "x", "steps": steps, "error": [5.0 * s**-2.5 for s in steps]})
    assert sampler_accuracy.fitted_orders(table)["x"] == pytest.approx(2.5)
    assert sampler_accuracy.fitted_orders(table, min_steps=1000)["x"] == pytest.approx(2.5)  # too few: fits all


# --------------------------------------------------------------------------- the C6 verdict


def paired_fixture(change, half_width=0.1, budgets=(("heun", 10), ("heun", 18), ("unipc", 6), ("unipc", 12)),
                   jumps=("gaussian",), base_fd=10.0) -> pd.DataFrame:
    """A paired table with change(sampler, N, k, jump) as the paired FD change, +- half_width as its interval."""
    rows = []
    for name, n in budgets:
        for k in teleportation.skip_grid(n, FRACTIONS):
            sigma_skip, sigmas = teleportation.skip_schedule(n, k)
            cost = teleport.nfe(name, sigmas)
            for jump in (("none",) if k == 0 else jumps):
                c = 0.0 if k == 0 else change(name, n, k, jump)
                w = 0.0 if k == 0 else half_width
                rows.append({"sampler": name, "steps": n, "skip": k, "jump": jump, "sigma_skip": sigma_skip,
                             "nfe": cost, "nfe_base": 2 * n - 1 if name == "heun" else n, "n_seeds": 3,
                             "n_samples": 500, "fd_base": base_fd, "fd_change": c, "ci_low": c - w, "ci_high": c + w,
                             "ci_level": 0.95, "wall_s": 0.5 * cost, "wall_base": 0.5 * (2 * n - 1 if name == "heun"
                                                                                            else n)})
    return pd.DataFrame(rows, columns=teleport_pairs.PAIRED_COLUMNS)


def test_c6_holds_when_teleportation_keeps_quality() -> None:
    verdict = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: -0.01 * k))
    assert verdict.holds
    for row in verdict.rows:
        assert row.kept_skip == teleportation.skip_grid(row.steps, FRACTIONS)[-1] and row.coverage == "all"
        assert row.first_failure is None and row.unresolved == ()
    heun18 = next(r for r in verdict.rows if r.sampler == "heun" and r.steps == 18)
    assert heun18.nfe_saved == 18
    assert heun18.sigma_skip == pytest.approx(float(karras_sigmas(18)[9]))
    assert heun18.change == pytest.approx(-0.09) and heun18.ci == pytest.approx((-0.19, 0.01))
    assert "verdict: C6 REPRODUCED" in verdict.report()


def test_c6_fails_when_teleportation_hurts_at_every_skip() -> None:
    verdict = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 5.0 * k))
    assert not verdict.holds and not verdict.partly
    assert all(r.kept_skip == 0 and r.coverage == "none" and r.nfe_saved == 0 for r in verdict.rows)
    report = verdict.report()
    assert "verdict: C6 NOT REPRODUCED" in report and "at least 15%: NO" in report


def test_c6_partly_when_only_the_lower_end_survives() -> None:
    # FD rises once more than 25% of the levels are skipped: 15% is kept, 30% is not
    verdict = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 5.0 if k / n > 0.25 else 0.0))
    assert not verdict.holds and verdict.partly
    assert {r.coverage for r in verdict.rows} == {"part"}
    assert "verdict: C6 PARTLY REPRODUCED" in verdict.report()


def test_c6_judges_the_upper_end_of_the_interval_not_the_mean() -> None:
    """A mean change inside the 5% tolerance (0.5 of FD 10) whose interval reaches past it is not kept."""
    inside = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 0.3, half_width=0.15))
    straddling = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 0.3, half_width=0.25))
    assert inside.holds and not straddling.partly
    assert all(r.first_failure is not None and r.first_failure[2] == pytest.approx(0.55) for r in straddling.rows)
    assert inside.rows[0].tolerance == pytest.approx(verdicts.C6_TOLERANCE * 10.0)


def test_c6_stops_at_the_first_skip_that_hurts_or_fails() -> None:
    def change(name, n, k, j):
        return {1: 0.0, 2: 3.0}.get(k, float("nan") if k == 4 else 0.0)

    rows = {(r.sampler, r.steps): r for r in verdicts.c6_verdict(paired_fixture(change)).rows}
    assert rows[("heun", 10)].kept_skip == 1  # skip 2 hurts, skips 3-5 would pass but do not count
    assert rows[("heun", 18)].kept_skip == 0  # skip 2 hurts
    assert rows[("unipc", 6)].kept_skip == 1
    assert rows[("unipc", 12)].first_failure[0] == 2


def test_c6_reports_skips_it_cannot_resolve() -> None:
    verdict = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 0.0, half_width=0.8))
    assert not verdict.partly  # upper ends 0.8 > 0.5: nothing is kept ...
    assert all(r.unresolved == (r.first_failure[0],) for r in verdict.rows)  # ... and the report says why
    assert "heun N=10 k=1" in verdict.report()
    # a wide interval wholly below the tolerance is kept; one wholly above it is a measured loss
    below = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: -1.0, half_width=1.2))
    above = verdicts.c6_verdict(paired_fixture(lambda name, n, k, j: 2.0, half_width=1.2))
    assert below.holds and all(r.unresolved == () for r in below.rows)
    assert not above.partly and all(r.unresolved == () for r in above.rows)


def test_c6_judges_the_controls_by_the_same_rule() -> None:
    def change(name, n, k, jump):
        return {"gaussian": 0.0, "isotropic": 0.0 if k / n < 0.25 else 2.0, "noise": 2.0}[jump]

    verdict = verdicts.c6_verdict(paired_fixture(change, jumps=("gaussian", "isotropic", "noise")))
    assert verdict.holds
    for row in verdict.rows:
        below_quarter = max(k for k in teleportation.skip_grid(row.steps, FRACTIONS) if k / row.steps < 0.25)
        assert verdict.control(row, "isotropic").kept_skip == below_quarter
        assert verdict.control(row, "noise").kept_skip == 0
    assert verdict.gaussian_beats("noise") == (4, 4) and verdict.gaussian_beats("isotropic") == (4, 4)
    assert "larger skip than the noise control in 4 of 4 budgets" in verdict.report()


def test_c6_needs_a_baseline_and_its_columns() -> None:
    table = paired_fixture(lambda name, n, k, j: 0.0)
    with pytest.raises(ValueError, match="no skip-0 baseline"):
        verdicts.c6_verdict(table[table["skip"] > 0])
    with pytest.raises(ValueError, match="lacks the columns"):
        verdicts.c6_verdict(table.drop(columns=["ci_high"]))


def test_c6_from_the_command_line(tmp_path, capsys) -> None:
    from lib.verdicts.__main__ import main

    path = tmp_path / "paired.csv"
    paired_fixture(lambda name, n, k, j: 5.0 * k).to_csv(path, index=False)
    assert main(["c6", str(path)]) == 0 and "verdict: C6 NOT REPRODUCED" in capsys.readouterr().out
    paired_fixture(lambda name, n, k, j: 0.0).drop(columns=["ci_high"]).to_csv(path, index=False)
    assert main(["c6", str(path)]) == 2 and "lacks the columns" in capsys.readouterr().err


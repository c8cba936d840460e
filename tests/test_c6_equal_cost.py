"""C6 judged as acceleration at equal cost: the Gaussian jump against the plain run with the same NFE (fewer levels from
sigma_max), on the same samples; the tolerance as a parameter (`c6_robustness`); the Heun-rise measurement's hybrid
denoiser (network below a cutoff, Gaussian above). Small tables built by hand, no sampling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis import heun_rise, teleport_pairs, teleportation
from lib.analysis.metrics import FrechetReference
from lib.diffusion import teleport
from lib.models.edm import karras_sigmas
from lib.models.isotropic import IsotropicGaussianDenoiser
from lib.verdicts.common import NOT_INFORMATIVE, NOT_REPRODUCED, PARTLY, REPRODUCED
from lib.verdicts.teleport_report import c6_budgets, c6_robustness
from lib.verdicts.teleportation import c6_verdict, refine_skips

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
BUDGETS = (("heun", 10), ("heun", 18), ("dpmpp_2m", 12))


def equal_cost_table(versus_budget, versus_plain, half_width=0.1, budgets=BUDGETS, base_fd=10.0,
                     n_samples=500) -> pd.DataFrame:
    """A paired table: versus_budget(name, N, k) is the Gaussian jump's FD change against the plain N levels,
    versus_plain(name, N, k) against the plain N - k levels (the same NFE), each +- half_width; the plain N - k
    levels' own change against N levels follows from the two."""
    rows = []
    for name, n in budgets:
        nfe_base = teleport.nfe(name, karras_sigmas(n))
        common = {"sampler": name, "steps": n, "nfe_base": nfe_base, "n_seeds": 1, "n_samples": n_samples,
                  "fd_base": base_fd, "ci_level": 0.975}
        rows.append({**common, "skip": 0, "jump": "none", "against": "budget", "against_steps": n, "sigma_skip": 80.0,
                     "nfe": nfe_base, "nfe_against": nfe_base, "fd": base_fd, "fd_against": base_fd,
                     "fd_change": 0.0, "ci_low": 0.0, "ci_high": 0.0})
        for k in teleportation.skip_grid(n, FRACTIONS)[1:]:
            sigma_skip, sigmas = teleportation.skip_schedule(n, k)
            cost = teleport.nfe(name, sigmas)
            jump = base_fd + versus_budget(name, n, k)
            plain = jump - versus_plain(name, n, k)
            for arm, against, fd, fd_against, steps, start in [
                    ("gaussian", "budget", jump, base_fd, n, sigma_skip),
                    ("gaussian", "plain", jump, plain, n - k, sigma_skip),
                    ("plain", "budget", plain, base_fd, n, 80.0)]:
                change = fd - fd_against
                rows.append({**common, "skip": k, "jump": arm, "against": against, "against_steps": steps,
                             "sigma_skip": start, "nfe": cost, "nfe_against": cost if against == "plain" else nfe_base,
                             "fd": fd, "fd_against": fd_against, "fd_change": change, "ci_low": change - half_width,
                             "ci_high": change + half_width})
    return pd.DataFrame(rows, columns=teleport_pairs.PAIRED_COLUMNS)


def outcomes(verdict) -> dict:
    return {(r.sampler, r.steps): r.outcome for r in verdict.rows}


# --------------------------------------------------------------------------- the rule


def test_as_good_as_fewer_plain_steps_is_not_informative() -> None:
    """The jump keeps quality over the whole range, but plain runs with the same NFE do as well: the kept rule alone
    would say REPRODUCED; as acceleration it says nothing."""
    verdict = c6_verdict(equal_cost_table(lambda *a: 0.0, lambda *a: 0.0))
    assert verdict.holds and all(r.coverage == "all" for r in verdict.rows)
    assert set(outcomes(verdict).values()) == {NOT_INFORMATIVE} and verdict.outcome == NOT_INFORMATIVE
    assert all(r.accelerated_skip == 0 for r in verdict.rows)
    plain = verdict.control(verdict.rows[0], "plain")
    assert plain.kept_skip == verdict.rows[0].kept_skip  # the control keeps as many levels
    assert "verdict: C6 NOT INFORMATIVE" in verdict.report()
    budgets = c6_budgets(verdict)
    assert list(budgets["outcome"]) == [NOT_INFORMATIVE] * 3 and list(budgets["equal_nfe_status"]) == ["no better"] * 3
    heun10 = budgets.iloc[0]
    assert heun10["kept_skip"] == 5 and heun10["equal_nfe_steps"] == 5 and heun10["equal_nfe_nfe"] == 9
    assert heun10["equal_nfe_fd"] == pytest.approx(10.0) and heun10["plain_kept_share"] == pytest.approx(50.0)


def test_beating_fewer_plain_steps_reproduces_or_partly() -> None:
    better = c6_verdict(equal_cost_table(lambda *a: 0.0, lambda *a: -1.0))
    assert set(outcomes(better).values()) == {REPRODUCED} and better.outcome == REPRODUCED
    assert [r.accelerated_skip for r in better.rows] == [5, 9, 6]
    # better than the plain run only up to 25% of the levels: 15% accelerated, 30% not
    partly = c6_verdict(equal_cost_table(lambda *a: 0.0, lambda name, n, k: -1.0 if k / n <= 0.25 else 0.0))
    assert set(outcomes(partly).values()) == {PARTLY} and partly.outcome == PARTLY
    assert [r.accelerated_skip for r in partly.rows] == [2, 4, 2]
    row = c6_budgets(partly).iloc[0]
    assert row["accelerated_share"] == pytest.approx(20.0) and row["equal_nfe_status"] == "no better"
    # better only below 15% (heun N = 18: k = 2 < round(2.7)): not enough for the claim
    low = c6_verdict(equal_cost_table(lambda *a: 0.0, lambda name, n, k: -1.0 if k / n < 0.15 else 0.0))
    assert outcomes(low)[("heun", 18)] == NOT_INFORMATIVE


def test_losing_to_fewer_plain_steps_is_not_reproduced() -> None:
    verdict = c6_verdict(equal_cost_table(lambda *a: 0.0, lambda *a: +1.0))
    assert verdict.holds  # quality kept against the full budget ...
    assert set(outcomes(verdict).values()) == {NOT_REPRODUCED} and verdict.outcome == NOT_REPRODUCED  # ... not gained


def test_a_skip_that_loses_quality_is_not_reproduced_whatever_the_plain_runs_do() -> None:
    verdict = c6_verdict(equal_cost_table(lambda *a: 3.0, lambda *a: -5.0))
    assert all(r.kept_skip == 0 for r in verdict.rows) and verdict.outcome == NOT_REPRODUCED


def test_not_informative_budgets_do_not_count() -> None:
    def versus_plain(name, n, k):
        return -1.0 if name == "heun" and n == 18 else 0.0

    verdict = c6_verdict(equal_cost_table(lambda *a: 0.0, versus_plain))
    assert outcomes(verdict) == {("heun", 10): NOT_INFORMATIVE, ("heun", 18): REPRODUCED,
                                 ("dpmpp_2m", 12): NOT_INFORMATIVE}
    assert verdict.outcome == REPRODUCED


def test_without_plain_runs_the_kept_rule_decides_and_says_so() -> None:
    table = equal_cost_table(lambda *a: 0.0, lambda *a: 0.0)
    verdict = c6_verdict(table[table["against"] == "budget"].drop(columns="against"))
    assert verdict.outcome == REPRODUCED and not verdict.judges_acceleration
    assert "acceleration at equal NFE: not judged" in verdict.report()


def test_the_robustness_table_moves_with_the_tolerance() -> None:
    """A change of +0.4 (4% of FD 10) with a narrow interval: kept from a tolerance of 5% up, not at 2-3%."""
    robust = c6_robustness(equal_cost_table(lambda *a: 0.4, lambda *a: -1.0, half_width=0.05))
    assert list(robust["tolerance"]) == [0.02, 0.03, 0.05, 0.075, 0.10]
    assert list(robust["outcome"]) == [NOT_REPRODUCED] * 2 + [REPRODUCED] * 3
    assert list(robust["heun N=18 kept"]) == [0, 0, 9, 9, 9]
    assert list(robust["heun N=18 accelerated"]) == [0, 0, 9, 9, 9]
    default = c6_verdict(equal_cost_table(lambda *a: 0.4, lambda *a: -1.0, half_width=0.05))
    assert default.tolerance == 0.05 and default.outcome == robust["outcome"].iloc[2]
    with pytest.raises(ValueError, match="positive share"):
        c6_robustness(equal_cost_table(lambda *a: 0.0, lambda *a: 0.0), tolerances=(0.0,))


def test_the_second_stage_refines_equal_cost_comparisons_that_cannot_tell() -> None:
    def versus_plain(name, n, k):
        return -1.0 if k != 4 else 0.0  # no better at k = 4 only

    table = equal_cost_table(lambda *a: 0.0, versus_plain, budgets=(("heun", 18),))
    assert refine_skips(table) == [("heun", 18, 4)]
    configs = teleport_pairs.skip_configurations([("heun", 18, 4)], [0], ("gaussian", "plain"))
    assert configs == [("heun", 18, 0, 0, "none"), ("heun", 18, 4, 0, "gaussian"), ("heun", 14, 0, 0, "none")]


# --------------------------------------------------------------------------- same samples, same NFE


def test_every_comparison_at_a_skip_uses_the_common_samples() -> None:
    """The Gaussian arm extended to 48 samples, its noise control left at 24: every comparison at that skip (against the
    plain budget, the equal-NFE plain run and the control) is made on the first 24 samples of each run."""
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    lengths = {("heun", 6, 0, 0, "none"): 48, ("heun", 6, 2, 0, "gaussian"): 48, ("heun", 6, 2, 0, "noise"): 24,
               ("heun", 4, 0, 0, "none"): 48}
    features = {c: 1.1 * torch.randn(n, 4, generator=gen, dtype=torch.float64) + 0.1 * i
                for i, (c, n) in enumerate(lengths.items())}
    frechet = FrechetReference(ref)
    table = pd.DataFrame([{"sampler": s, "steps": n, "skip": k, "jump": j, "seed": seed, "n_samples": 24,
                           "sigma_skip": teleportation.skip_schedule(n, k)[0],
                           "nfe": teleport.nfe(s, teleportation.skip_schedule(n, k)[1]),
                           "fd": frechet.fd(features[(s, n, k, seed, j)][:24])} for s, n, k, seed, j in lengths])
    result = teleportation.TeleportSweep(table, features=features)
    paired = teleport_pairs.paired_table(result, frechet, n_boot=20, level=0.9)
    skipped = paired[paired["skip"] > 0]
    assert set(zip(skipped["jump"], skipped["against"], strict=True)) == {
        ("gaussian", "budget"), ("noise", "budget"), ("plain", "budget"), ("gaussian", "plain"), ("noise", "plain"),
        ("gaussian", "noise")}
    assert (skipped["n_samples"] == 24).all()
    fd24 = {c: frechet.fd(f[:24]) for c, f in features.items()}
    versus = skipped.set_index(["jump", "against"])
    assert versus.loc[("gaussian", "plain"), "fd_change"] == pytest.approx(
        fd24[("heun", 6, 2, 0, "gaussian")] - fd24[("heun", 4, 0, 0, "none")], rel=1e-12)
    assert versus.loc[("gaussian", "noise"), "fd_change"] == pytest.approx(
        fd24[("heun", 6, 2, 0, "gaussian")] - fd24[("heun", 6, 2, 0, "noise")], rel=1e-12)
    assert versus.loc[("gaussian", "plain"), "nfe"] == versus.loc[("gaussian", "plain"), "nfe_against"] == 7


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m", "unipc"])
@pytest.mark.parametrize("n_levels", [6, 10, 12, 18])
def test_a_teleported_run_costs_what_the_plain_run_of_the_levels_left_costs(sampler, n_levels) -> None:
    for k in teleportation.skip_grid(n_levels, FRACTIONS)[1:]:
        teleported = teleport.nfe(sampler, teleportation.skip_schedule(n_levels, k)[1])
        plain = teleport.nfe(sampler, karras_sigmas(n_levels - k))
        assert teleported == plain == (2 * (n_levels - k) - 1 if sampler == "heun" else n_levels - k)


def test_the_equal_nfe_budgets_are_the_levels_left() -> None:
    needed = teleportation.equal_nfe_budgets((("heun", 10), ("dpmpp_2m", 6)), (0.0, 0.2, 0.5))
    assert needed == [("dpmpp_2m", 3), ("dpmpp_2m", 5), ("heun", 5), ("heun", 8)]


# --------------------------------------------------------------------------- why plain Heun gets worse with N


def test_the_hybrid_denoiser_is_the_network_up_to_the_cutoff_and_the_gaussian_above() -> None:
    gen = torch.Generator().manual_seed(1)
    network = IsotropicGaussianDenoiser(torch.zeros(16), 0.3, (1, 4, 4))
    gaussian = IsotropicGaussianDenoiser(torch.ones(16), 2.0, (1, 4, 4))
    hybrid = heun_rise.GaussianAbove(network, gaussian, 16.0)
    x = 20.0 * torch.randn(6, 1, 4, 4, generator=gen)
    for sigma in (0.5, 15.9, 16.0):
        assert torch.equal(hybrid(x, sigma), network(x, sigma))
    for sigma in (16.01, 80.0):
        assert torch.equal(hybrid(x, sigma), gaussian(x, sigma))
    sigmas = torch.tensor([80.0, 16.0, 3.0, 20.0, 16.5, 0.1])
    out, above = hybrid(x, sigmas), sigmas > 16.0
    assert torch.equal(out[above], gaussian(x[above], sigmas[above]))
    assert torch.equal(out[~above], network(x[~above], sigmas[~above]))
    assert not torch.equal(network(x, 80.0), gaussian(x, 80.0))  # the two differ: the test can fail


@pytest.mark.parametrize("n_levels", [6, 10, 18])
def test_heun_evaluates_at_each_level_and_each_next_level_but_zero(n_levels) -> None:
    levels = [float(s) for s in karras_sigmas(n_levels)]
    seen = heun_rise.evaluation_sigmas("heun", karras_sigmas(n_levels))
    assert len(seen) == teleport.nfe("heun", karras_sigmas(n_levels)) == 2 * n_levels - 1
    assert sorted(seen, reverse=True) == sorted(levels[:-1] + levels[1:-1], reverse=True)
    above = heun_rise.evaluations_above("heun", n_levels, 16.0)
    expected = sum(s > 16 for s in levels[:-1]) + sum(s > 16 for s in levels[1:-1])
    assert above == expected and above > 0


def test_rise_steps_spread_over_the_budgets() -> None:
    assert heun_rise.rise_steps([5, 6, 8, 9, 10, 12, 14, 16, 18]) == (6, 10, 14, 18)
    assert heun_rise.rise_steps([4, 5, 6]) == (4, 5, 6)


def test_rise_summary_reads_the_rise_after_the_best_budget() -> None:
    """The rise is FD(largest N) - FD(N) at the N with the lowest FD below the largest; its interval gives the trend."""
    rows = []
    for name, fds in (("network", (30.0, 20.0, 24.0)), ("Gaussian above 16", (30.0, 20.0, 20.0)),
                      ("Gaussian above 10", (30.0, 25.0, 22.0))):
        for n, fd in zip((6, 10, 18), fds, strict=True):
            rise = fds[-1] - fd
            rows.append({"denoiser": name, "steps": n, "fd": fd, "rise": rise, "ci_low": rise - 0.5,
                         "ci_high": rise + 0.5})
    summary = heun_rise.rise_summary(pd.DataFrame(rows))
    assert list(summary["trend"]) == ["rises", "flat", "falls"]
    assert list(summary["best N"]) == [10, 10, 10] and math.isclose(summary["rise"].iloc[0], 4.0)
    assert np.isfinite(summary["ci_low"]).all()


def _summary(network: tuple[float, float, float], replaced: tuple[float, float, float]) -> pd.DataFrame:
    rows = [{"denoiser": name, "best N": 10, "largest N": 18, "fd_best": 17.0, "fd_largest": 17.0 + r,
             "rise": r, "ci_low": lo, "ci_high": hi, "trend": "rises" if lo > 0 else "falls" if hi < 0 else "flat"}
            for name, (r, lo, hi) in (("network", network), ("Gaussian above 16", replaced))]
    return pd.DataFrame(rows)


def test_a_rise_is_removed_only_when_it_gets_smaller_beyond_its_uncertainty() -> None:
    """Notebook 07's run: the network rises +1.49 [+0.01, +2.79]; with the Gaussian above 16, +1.34 [-0.24, +2.78]:
    an interval that reaches 0 with the same point estimate is no removal."""
    same = _summary((1.49, 0.01, 2.79), (1.34, -0.24, 2.78))
    assert not heun_rise.removes_rise(same, "Gaussian above 16")
    assert "does not explain" in heun_rise.rise_takeaway(same)
    gone = _summary((1.49, 0.01, 2.79), (0.1, -0.5, 0.7))
    assert heun_rise.removes_rise(gone, "Gaussian above 16")
    assert "explains it" in heun_rise.rise_takeaway(gone)
    unresolved = _summary((1.0, -0.2, 2.0), (0.1, -0.5, 0.7))
    assert not heun_rise.removes_rise(unresolved, "Gaussian above 16")
    assert "No resolved rise" in heun_rise.rise_takeaway(unresolved)

"""Issue 29's glue (lib.analysis.gain_study), its beyond-the-paper scorecard rows (lib.verdicts.beyond, G1-G3) and
their round trip through verdicts.csv, and notebook 08's panel, which must skip cleanly on a table without them."""

from __future__ import annotations

import dataclasses
import math
import types

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis import gain_findings as gf
from lib.analysis import gain_study
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import IsotropicGaussianDenoiser
from lib.plotting import gains as plotting_gains
from lib.verdicts import REPRODUCED, beyond, findings, scorecard

matplotlib.use("Agg")
D, SHAPE = 16, (1, 4, 4)
SIGMAS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]


@pytest.fixture(scope="module")
def data(gain_data):
    return gain_data


@pytest.fixture(scope="module")
def gaussian_findings(data):
    """G1 on the Gaussian's own gains, G2 on modes learned at 100 / lambda, G3 on the closed forms."""
    x, stats = data
    gauss = GaussianDenoiser.from_stats(stats, dtype=torch.float64)
    iso = IsotropicGaussianDenoiser.from_stats(stats, dtype=torch.float64)
    g1 = gf.across_noise_finding(gain_study.gains.gain_table(gauss, x[:8], SIGMAS, stats, seed=1))
    rows = []
    for step in [0, *np.unique(np.round(np.geomspace(10, 1e6, 41)))]:
        for sigma in SIGMAS:
            for k, lam in enumerate(stats.eigvals.numpy(), start=1):
                g = lam / (lam + sigma**2)
                rows.append({"step": int(step), "sigma": sigma, "k": k, "lambda": lam, "gaussian_gain": g,
                             "gain_mean": g * (1 - math.exp(-step / (100.0 / lam))), "gain_se": 1e-3})
    g2 = gf.across_training_finding(pd.DataFrame(rows))
    x_t = 80.0 * torch.randn((64, *SHAPE), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    levels = torch.cat([torch.logspace(math.log10(80), -3, 200, dtype=torch.float64), torch.zeros(1)])
    runs = {name: gain_study.gain_steps.closed_form_estimates(m, x_t, 80.0, levels[:-1])
            for name, m in (("gauss", gauss), ("iso", iso))}
    tables = {name: gain_study.gain_steps.emergence_table(est, levels[:-1], stats) for name, est in runs.items()}
    g3 = gf.emergence_finding(tables["gauss"], tables["iso"])
    return g1, g2, g3, gf.emergence_finding(tables["iso"])


def beyond_rows(gaussian_findings) -> dict[str, list[findings.Finding]]:
    g1, g2, g3, iso = gaussian_findings
    return {"G1": beyond.g1_findings(g1, g1), "G2": beyond.g2_findings(g2, "2 of 16 learned within the warm-up"),
            "G3": beyond.g3_findings(g3, iso)}


def test_the_gaussians_own_tables_give_findings_that_hold_beside_their_controls(gaussian_findings):
    rows = beyond_rows(gaussian_findings)
    assert {claim: beyond.claim_outcome(r) for claim, r in rows.items()} == {"G1": gf.HOLDS, "G2": gf.HOLDS,
                                                                            "G3": gf.HOLDS}
    g1, g2, g3 = rows["G1"][0], rows["G2"][0], rows["G3"][0]
    assert g1.ours <= 0.1 < 10 < g1.control_value  # down to the lowest informative level; the isotropic: 30
    assert g2.ours == pytest.approx(-1.0, abs=0.05) and g2.ours_high < g2.threshold == 0.0
    assert "Wang & Pehlevan" in g2.finding and "not a claim of this paper" in g2.finding
    assert g3.ours == pytest.approx(1.0, abs=0.1) and abs(g3.control_value) < 0.1
    assert all(r.headline for r in (g1, g2, g3)) and sum(r.headline for r in rows["G1"]) == 1


def test_beyond_rows_round_trip_through_verdicts_csv_and_stay_apart_from_the_claims(tmp_path, gaussian_findings):
    path = tmp_path / "verdicts.csv"
    c1 = [findings.Finding("C1", "an order", REPRODUCED, 2.05, "order", threshold=2.0, headline=True)]
    scorecard.record(c1, REPRODUCED, "smoke", "01", path)
    for claim, rows in beyond_rows(gaussian_findings).items():
        scorecard.record(rows, beyond.claim_outcome(rows), "smoke", {"G1": "03", "G2": "04", "G3": "06"}[claim], path)
    claims_only = scorecard.read(path)
    assert claims_only["claim"].tolist() == ["C1"] and list(claims_only.columns) == scorecard.COLUMNS
    table = scorecard.read(path, beyond=True)
    assert list(dict.fromkeys(table["claim"])) == ["C1", "G1", "G2", "G3"]
    assert set(table.loc[table["claim"] != "C1", "verdict"]) <= set(scorecard.BEYOND_OUTCOMES)
    g2 = table[table["claim"] == "G2"].iloc[0]
    assert g2["ours"] == pytest.approx(beyond_rows(gaussian_findings)["G2"][0].ours, rel=1e-5)
    assert g2["notebook"] == "04" and g2["threshold"] == 0.0 and bool(g2["headline"])
    lines = scorecard.markdown(table).splitlines()
    heading = next(i for i, line in enumerate(lines) if beyond.HEADING in line)
    assert lines[heading - 1].startswith("| **C1**") and lines[heading + 1].startswith("| **G1** | **HOLDS**")
    # recording C1 again keeps the beyond rows
    again = scorecard.record(c1, REPRODUCED, "smoke", "01", path)
    assert list(dict.fromkeys(again["claim"])) == ["C1", "G1", "G2", "G3"]


def test_a_verdict_word_of_the_other_family_is_refused(tmp_path, gaussian_findings):
    rows = beyond_rows(gaussian_findings)["G1"]
    with pytest.raises(ValueError, match="not one of"):
        scorecard.record(rows, REPRODUCED, "smoke", "03", tmp_path / "verdicts.csv")
    c1 = [findings.Finding("C1", "an order", REPRODUCED, 2.05, "order", headline=True)]
    with pytest.raises(ValueError, match="not one of"):
        scorecard.record(c1, gf.HOLDS, "smoke", "01", tmp_path / "verdicts.csv")


def test_a_table_written_before_the_beyond_rows_reads_as_before(tmp_path):
    old = tmp_path / "verdicts.csv"
    columns = [c for c in scorecard.COLUMNS if c not in scorecard.OPTIONAL_COLUMNS]
    pd.DataFrame([{c: "" for c in columns} | {"claim": "C1", "verdict": REPRODUCED, "claim_verdict": REPRODUCED,
                                             "ours": 2.0, "headline": True}]).to_csv(old, index=False)
    assert scorecard.read(old)["claim"].tolist() == scorecard.read(old, beyond=True)["claim"].tolist() == ["C1"]


def test_the_summary_panel_skips_a_table_without_beyond_rows_and_draws_one_with_them(tmp_path, gaussian_findings):
    path = tmp_path / "verdicts.csv"
    c1 = [findings.Finding("C1", "an order", REPRODUCED, 2.05, "order", headline=True)]
    scorecard.record(c1, REPRODUCED, "smoke", "01", path)
    args = (scorecard.BEYOND_CLAIMS, beyond.TITLES, beyond.PASSES)
    assert plotting_gains.beyond_summary(scorecard.read(path, beyond=True), *args) is None
    assert plotting_gains.beyond_summary(pd.DataFrame(columns=scorecard.COLUMNS), *args) is None
    rows = beyond_rows(gaussian_findings)["G3"]
    scorecard.record(rows, beyond.claim_outcome(rows), "smoke", "06", path)
    fig = plotting_gains.beyond_summary(scorecard.read(path, beyond=True), *args)
    assert fig is not None and len(fig.axes) == 1 and "G3" in fig.axes[0].get_title()


def test_linear_range_walks_down_from_the_first_linear_level():
    table = pd.DataFrame({"sigma": [80.0, 10.0, 2.0, 1.0, 0.5, 0.1],
                          "jvp_variation": [0.3, 0.01, 0.05, 0.2, 0.02, 0.5]})
    r = gain_study.linear_range(table)
    assert (r.top, r.down_to, r.stops_at, r.above) == (10.0, 2.0, 1.0, (80.0,))
    assert "down to sigma = 2" in r.describe() and "not at sigma = 1" in r.describe()
    assert gain_study.linear_range(table.assign(jvp_variation=1.0)).down_to is None
    assert gain_study.linear_range(table.assign(jvp_variation=0.0)).stops_at is None


def test_checkpoints_and_levels_are_picked_as_documented(data):
    assert gain_study.pick_checkpoints([0, 50, 100, 200, 500, 1000, 4000], 4) == [0, 100, 500, 4000]
    assert gain_study.pick_checkpoints([0, 15, 30], 14) == [0, 15, 30]
    plan = gain_study.levels_for_modes(data[1].eigvals, [1, 8, 16], SIGMAS)
    lam = data[1].eigvals.numpy()
    for level, modes in plan.items():
        for k in modes:
            assert abs(math.log(level) - 0.5 * math.log(lam[k - 1])) <= 0.5 * math.log(3.0) + 1e-9


def test_only_modes_decidable_on_the_probe_grid_are_followed_across_training(data):
    """A mode whose sqrt(lambda) lies below the lowest probe level cannot be judged (its Gaussian gain there is below
    what a finite difference resolves): `across_training` follows only the decidable ones."""
    from lib.core.config import SCALES

    stats = data[1]
    scale = dataclasses.replace(SCALES["smoke"], gain_top_modes=D, gain_log_modes=0)
    kept = gain_study.decidable_modes(stats, scale, (0.1, 1.0))
    root = np.sqrt(stats.eigvals.numpy())
    assert set(kept) == {k for k in range(1, D + 1) if 0.1 <= root[k - 1] <= 1.0}
    assert 0 < len(kept) < D


def test_expensive_tables_are_cached_by_what_they_were_computed_from(tmp_path, monkeypatch, data):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"sigma": [1.0, 2.0], "gain_mean": [0.5, 0.2]})

    first = gain_study.cached_rows("gains", ["net", 1], compute)
    again = gain_study.cached_rows("gains", ["net", 1], compute)
    other = gain_study.cached_rows("gains", ["net", 2], compute)
    assert len(calls) == 2 and first.equals(again) and other.equals(first)
    x = data[0][:4]
    assert gain_study.tensor_digest(x) == gain_study.tensor_digest(x.clone()) != gain_study.tensor_digest(x[:3])


def test_the_warmup_check_counts_modes_learned_within_it_and_refits_in_cumulative_learning_rate():
    steps = pd.DataFrame({"k": [1, 2, 3, 4, 5], "lambda": [10.0, 1.0, 0.1, 0.01, 0.001], "status": ["learned"] * 5,
                          "step": [50.0, 200.0, 1500.0, 3000.0, 3500.0],
                          "step_before": [0.0, 100.0, 1000.0, 2500.0, 3000.0]})
    warm = 1000
    tau = gain_study.cumulative_learning_rate(lambda s: min(1.0, s / warm), 4000)
    assert tau[warm] == pytest.approx((warm + 1) / 2) and tau[0] == 0.0
    check = gain_study.warmup_check(steps, warm, tau)
    assert (check.n_within, check.n_after) == (2, 3) and check.tau_fit.slope < 0
    assert "2 of 5 fitted modes learned within the 1,000-step warm-up" in check.describe()
    few = gain_study.warmup_check(steps.iloc[:2], warm, tau)  # as few modes as finding (b) refuses to fit
    assert few.tau_fit is None and "too few modes to fit" in few.describe()


# --------------------------------------------------------------------------- fixed levels (lib.analysis.gain_levels)


def synthetic_checkpoints(lam: np.ndarray, levels, c: float = 100.0) -> pd.DataFrame:
    """Every mode at every level, each learned like a gradient flow: its gain reaches g_k(1 - exp(-step lambda_k / c)),
    within 10% of g_k at step c ln(10) / lambda_k whatever the level (the standard error scales with g_k)."""
    rows = []
    for step in [0, *np.unique(np.round(np.geomspace(10, 1e6, 201)))]:  # checkpoints 6% apart
        for sigma in levels:
            for k, la in enumerate(lam, start=1):
                g = la / (la + sigma**2)
                rows.append({"step": int(step), "sigma": sigma, "k": k, "lambda": la, "gaussian_gain": g,
                             "gain_mean": g * (1 - math.exp(-step * la / c)), "gain_se": 1e-4 * g})
    return pd.DataFrame(rows)


def test_modes_learned_at_c_over_lambda_give_slope_minus_one_at_each_fixed_level_over_resolvable_modes(data):
    from lib.analysis import gain_levels

    lam = data[1].eigvals.numpy()
    table = synthetic_checkpoints(lam, gain_levels.FIXED_LEVELS)
    tau = gain_study.cumulative_learning_rate(lambda s: min(1.0, s / 1000), 1_000_000)
    by_level = gain_levels.steps_by_level(table, 1000, tau)
    assert sorted(by_level) == list(gain_levels.FIXED_LEVELS)
    for sigma, lv in by_level.items():
        resolvable = {k for k, la in enumerate(lam, start=1) if la / (la + sigma**2) >= gain_levels.RESOLVED_GAIN}
        assert set(lv.steps["k"]) == resolvable and len(resolvable) < len(lam)  # the unresolvable ones left out
        assert (lv.steps["status"] == "learned").all()
        assert lv.fit.n == len(resolvable) and lv.fit.slope == pytest.approx(-1.0, abs=0.05)
        assert lv.fit.contains(-1.0)
        assert lv.warmup.n_within == int((lv.steps["step"] <= 1000).sum())
        assert f"sigma = {sigma:g}: {len(resolvable)} resolvable modes" in lv.describe()
        assert "higher-variance modes earlier among them" in lv.describe()
        assert "final gain / Gaussian gain 1.00, 1.00 to 1.00" in lv.describe()
    plan = gain_levels.resolvable_plan(lam, range(1, len(lam) + 1))
    assert {s: set(ks) for s, ks in plan.items()} == {s: set(lv.steps["k"]) for s, lv in by_level.items()}
    fig = plotting_gains.learning_by_level_figure(by_level, gf.PREDICTED_LEARNING_SLOPE, 1000, 1_000_000)
    assert len(fig.axes) == len(by_level) and "Wang & Pehlevan" in " ".join(
        t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_a_level_with_too_few_bracketed_modes_is_reported_without_a_fit(data):
    from lib.analysis import gain_levels

    table = synthetic_checkpoints(data[1].eigvals.numpy(), (5.0,))
    table.loc[table["k"] > 2, "gain_mean"] = 0.0  # only two modes ever learned
    lv = gain_levels.steps_by_level(table, 1000, np.arange(1_000_001, dtype=float))[5.0]
    assert lv.fit is None and lv.count("never") == len(lv.steps) - 2
    assert "too few bracketed modes to fit a slope" in lv.describe()


def test_fixed_level_gains_follow_only_resolvable_modes_and_are_cached(tmp_path, monkeypatch, data):
    from lib.analysis import gain_levels
    from lib.core.config import SCALES

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    x, stats = data
    gauss = GaussianDenoiser.from_stats(stats, dtype=torch.float64)
    loads = []

    class History:
        model = types.SimpleNamespace(has_history=False)  # a model from a folder: keyed by its tag alone

        def model_tag(self):
            return "gaussian-test"

        def checkpoint_steps(self):
            return [0, 100, 200]

        def network(self, step):
            loads.append(step)
            return gauss

    scale = dataclasses.replace(SCALES["smoke"], gain_top_modes=D, gain_log_modes=0, n_gain_checkpoints=2,
                                n_gain_training_probes=4)
    table = gain_levels.fixed_level_gains(History(), x, stats, scale, progress=False)
    assert sorted(table["step"].unique()) == [0, 200] and loads == [0, 200]
    assert (table["gaussian_gain"] >= gain_levels.RESOLVED_GAIN).all()
    plan = gain_levels.resolvable_plan(stats.eigvals.numpy(), range(1, D + 1))
    assert len(table) == 2 * sum(len(ks) for ks in plan.values())
    assert np.allclose(table["gain_mean"], table["gaussian_gain"], atol=1e-3)  # the Gaussian is its own gain
    again = gain_levels.fixed_level_gains(History(), x, stats, scale, progress=False)
    assert loads == [0, 200] and again.equals(table)  # read from the cache: no network loaded


def test_a_bootstrap_replicate_of_one_repeated_point_has_no_slope():
    """The mean of three equal logs can round off them (here by ~1e-16): the replicate must read NaN, not the slope
    of that rounding, which with 3 modes (1 replicate in 9) would move the interval's ends."""
    lx = np.full((1, 3), math.log(0.06220871681090287))
    assert ((lx - lx.mean()) ** 2).sum() > 0  # the rounding this guards against
    assert np.isnan(gain_study.gain_steps._slopes(lx, np.log([[100.0, 300.0, 200.0]])))[0]

"""C2: the Gaussian range is judged against the isotropic models, interpolated, against its trivial controls
(the isotropic models' own 99% range, the training set's own range), over a grid of thresholds, and can fail."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lib import verdicts

SIGMAS = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 80.0]


def linearity_table(residual: dict[str, callable], std=None, n_probes=None) -> pd.DataFrame:
    """One row per (sigma, model) with St_EV = 1 - residual(sigma), optionally with a spread."""
    rows = []
    for sigma in SIGMAS:
        for model, r in residual.items():
            row = {"step": 100, "sigma": sigma, "model": model, "probe_set": "train", "St_EV": 1 - r(sigma)}
            if std is not None:
                row |= {"St_EV_std": std(sigma, model), "n_probes": n_probes}
            rows.append(row)
    return pd.DataFrame(rows)


def gaussian_good_down_to(sigma_g: float, sigma_iso: float | None = None):
    """Residuals of a network that is Gaussian (1e-3) for sigma >= sigma_g, where the isotropic models explain 99% of
    it only down to sigma_iso (default 4 sigma_g) and leave 5x the Gaussian's residual."""
    sigma_iso = 4 * sigma_g if sigma_iso is None else sigma_iso
    return {
        "gaussian": lambda s: 1e-3 if s >= sigma_g else 0.05,
        "mean_std": lambda s: 5e-3 if s >= sigma_iso else 0.02 if s >= sigma_g else 0.2,
        "mean": lambda s: 6e-3 if s >= sigma_iso else 0.03 if s >= sigma_g else 0.9,
        "delta": lambda s: 5e-4,
    }


def test_reproduced_when_the_gaussian_beats_the_isotropic_model_far_below_the_naive_scale():
    verdict = verdicts.c2_verdict(linearity_table(gaussian_good_down_to(1.0)), naive_scale=15.2)
    assert verdict.outcome == verdicts.REPRODUCED and verdict.holds
    assert 0.5 < verdict.sigma_gaussian < 1.0  # interpolated between the levels 0.5 and 1
    assert verdict.report().splitlines()[-1] == "verdict: C2 REPRODUCED"


def test_not_reproduced_when_the_isotropic_model_explains_as_much():
    residual = gaussian_good_down_to(1.0)
    residual["mean_std"] = residual["gaussian"]
    verdict = verdicts.c2_verdict(linearity_table(residual), naive_scale=15.2)
    assert verdict.outcome == verdicts.NOT_REPRODUCED
    assert verdict.report().splitlines()[-1] == "verdict: C2 NOT REPRODUCED"


def test_not_informative_when_the_isotropic_models_alone_explain_99_percent_as_far_down():
    """The trivial control: the isotropic models' own 99% range reaches the same probe level as the Gaussian's."""
    verdict = verdicts.c2_verdict(linearity_table(gaussian_good_down_to(1.0, sigma_iso=1.0)), naive_scale=15.2)
    assert verdict.gaussian_range.sigma < 1.0 and not verdict.beyond_isotropic
    assert verdict.outcome == verdicts.NOT_INFORMATIVE
    assert verdict.report().splitlines()[-1] == "verdict: C2 NOT INFORMATIVE"
    findings = verdicts.findings.c2_findings({"train": verdict}, None)
    assert findings[0].control.startswith("isotropic") and findings[0].verdict == verdicts.NOT_INFORMATIVE
    assert verdicts.findings.claim_outcome(findings) == verdicts.NOT_INFORMATIVE


def test_the_crossing_is_known_no_better_than_the_probe_levels_around_it():
    """The interpolated crossing between the levels 2 and 5 may be anywhere between them: that is its interval."""
    crossing = verdicts.c2_verdict(linearity_table(gaussian_good_down_to(5.0)), naive_scale=100.0).gaussian_range
    assert crossing.bracket == (2.0, 5.0) and (crossing.lower, crossing.upper) == (2.0, 5.0)
    assert "between the probe levels 2 and 5" in crossing.describe()


def test_the_data_own_range_is_the_first_finding_and_counts_only_when_the_network_goes_further():
    table = linearity_table(gaussian_good_down_to(1.0))
    further = verdicts.Crossing(3.0, "inside", bracket=(2.0, 5.0))  # the training set's score: Gaussian down to 3
    as_far = verdicts.Crossing(0.7, "inside", bracket=(0.5, 1.0))
    rows = verdicts.findings.c2_findings({"train": verdicts.c2_verdict(table, 15.2, ideal_range=further)}, None)
    assert rows[0].headline and rows[0].control == "the training set's own score" and rows[0].control_value == 1
    assert rows[0].verdict == verdicts.REPRODUCED and rows[0].ours > 1
    rows = verdicts.findings.c2_findings({"train": verdicts.c2_verdict(table, 15.2, ideal_range=as_far)}, None)
    assert rows[0].verdict == verdicts.NOT_INFORMATIVE


def test_the_verdict_moves_with_its_thresholds_and_the_robustness_table_shows_it():
    """A range that ends at 2% residual: REPRODUCED at a 98% level, NOT REPRODUCED at 99%."""
    residual = gaussian_good_down_to(1.0)
    residual["gaussian"] = lambda s: 1e-3 if s >= 5 else 0.015 if s >= 1 else 0.05
    residual["mean_std"] = lambda s: 5e-3 if s >= 4 else 0.04 if s >= 1 else 0.2
    table = linearity_table(residual)

    def at(rules):
        return verdicts.findings.c2_findings({"train": verdicts.c2_verdict(table, 15.2, rules=rules)}, None)

    loose, strict = verdicts.C2Rules(ev_threshold=0.98), verdicts.C2Rules(ev_threshold=0.99)
    assert verdicts.c2_verdict(table, 15.2, rules=loose).outcome == verdicts.REPRODUCED
    assert verdicts.c2_verdict(table, 15.2, rules=strict).outcome != verdicts.REPRODUCED
    j = verdicts.robustness.judged("C2", at, grid=[loose, strict])
    rows, claim, robust, grid = j.findings, j.verdict, j.robustness, j.table
    assert list(grid["claim verdict"]) == [verdicts.REPRODUCED, claim] and claim != verdicts.REPRODUCED
    assert robust == "same verdict in 1 of 2 settings" and rows[0].robustness.endswith("of 2 settings")


def test_partly_when_the_range_ends_near_the_naive_scale_and_not_when_above_it():
    table = linearity_table(gaussian_good_down_to(10.0))
    assert verdicts.c2_verdict(table, naive_scale=15.2).outcome == verdicts.PARTLY
    assert verdicts.c2_verdict(table, naive_scale=4.0).outcome == verdicts.NOT_REPRODUCED


def test_levels_where_every_model_matches_the_network_are_not_judged():
    residual = gaussian_good_down_to(1.0)
    # at sigma >= 20 every model (isotropic included) has the network's own error: nothing to judge there
    for name in residual:
        residual[name] = (lambda f: lambda s: 1e-6 if s >= 20 else f(s))(residual[name])
    verdict = verdicts.c2_verdict(linearity_table(residual), naive_scale=15.2)
    assert verdict.judged == (10.0, 5.0, 2.0, 1.0, 0.5, 0.1)
    assert verdict.holds


def test_the_crossing_is_interpolated_on_log_log_axes():
    residual = {"gaussian": lambda s: {2.0: 0.02, 5.0: 0.005}.get(s, 1e-3 if s > 5 else 0.1),
                "mean_std": lambda s: 0.5, "delta": lambda s: 1e-4}
    verdict = verdicts.c2_verdict(linearity_table(residual), naive_scale=100.0)
    # log(r / 0.01) goes from log(0.5) at sigma = 5 to log(2) at sigma = 2: zero half-way in log sigma
    assert verdict.crossings["gaussian"].sigma == pytest.approx(math.sqrt(10.0))
    assert verdict.sigma_gaussian == pytest.approx(math.sqrt(10.0))


def test_standard_errors_give_an_interval_around_the_crossing():
    table = linearity_table({"gaussian": lambda s: 2e-3 * (5.0 / s) ** 2, "mean_std": lambda s: 0.5,
                             "delta": lambda s: 1e-5}, std=lambda s, m: 0.02, n_probes=256)
    crossing = verdicts.c2_verdict(table, naive_scale=100.0).gaussian_range
    assert crossing.low < crossing.sigma < crossing.high


def test_the_denoiser_column_is_judged_the_same_way():
    table = linearity_table(gaussian_good_down_to(1.0)).assign(Dt_EV=lambda t: t["St_EV"])
    assert verdicts.c2_verdict(table, 15.2, column="Dt_EV").outcome == verdicts.REPRODUCED


def test_a_table_without_isotropic_models_or_gaussian_gets_a_one_line_error():
    table = linearity_table({"gaussian": lambda s: 1e-3, "delta": lambda s: 1e-4})
    with pytest.raises(verdicts.TableError, match="mean and mean_std"):
        verdicts.c2_verdict(table, 15.2)
    with pytest.raises(verdicts.TableError, match="models gaussian"):
        verdicts.c2_verdict(table[table["model"] != "gaussian"], 15.2)
    with pytest.raises(verdicts.TableError, match="columns Dt_EV"):
        verdicts.c2_verdict(table, 15.2, column="Dt_EV")


def test_an_interval_that_reaches_above_the_top_level_is_open_and_not_reproduced():
    table = linearity_table({"gaussian": lambda s: 0.008 if s >= 1 else 0.05, "mean_std": lambda s: 0.05,
                             "delta": lambda s: 1e-4}, std=lambda s, m: 0.04, n_probes=16)
    verdict = verdicts.c2_verdict(table, naive_scale=15.2)
    assert verdict.gaussian_range.high == math.inf and "above the top level" in verdict.gaussian_range.describe()
    assert verdict.outcome == verdicts.PARTLY  # the point estimate is far below sqrt(tr Sigma), its bound is not


def test_the_threshold_crossing_walks_down_from_the_top_and_stops_at_the_first_failure():
    def crossing(evs):
        table = pd.DataFrame({"sigma": list(evs), "St_EV": list(evs.values()), "model": "gaussian"})
        return verdicts.threshold_crossing(verdicts.residuals(table, "gaussian"), 0.01)

    assert 0.1 < crossing({80: 1.0, 10: 0.995, 1: 0.999, 0.1: 0.5}).sigma < 1
    assert 10 < crossing({80: 1.0, 10: 0.98, 1: 0.999, 0.1: 0.5}).sigma < 80  # 1 passes again: not counted
    never = crossing({80: 0.9, 10: 0.999})
    assert never.sigma is None and never.status == "never"

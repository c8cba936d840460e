"""C3: judged where it can show, robust to probe noise, and able to say no."""

from __future__ import annotations

import pandas as pd
import pytest

from lib import verdicts

STEPS = [0, 100, 500, 1000, 2000, 3000, 4000]


def dynamics_table(gaussian: dict[float, dict[int, float]], delta=None, se: float | None = None,
                   isotropic=None) -> pd.DataFrame:
    """Rows per (step, sigma) for the Gaussian (residuals given per sigma and step), the training set
    (by default improving steadily to half its step-0 value) and the isotropic control (by default flat at 0.3)."""
    rows = []
    for sigma, curve in gaussian.items():
        for step in STEPS:
            r_delta = (delta or (lambda s, t: 0.02 * (1 - t / 8000)))(sigma, step)
            r_iso = 0.3 if isotropic is None else isotropic[step]
            for model, r in (("gaussian", curve[step]), ("delta", r_delta), ("mean_std", r_iso)):
                row = {"step": step, "sigma": sigma, "model": model, "probe_set": "train", "St_EV": 1 - r}
                if se is not None:
                    row |= {"St_EV_std": se * 16, "n_probes": 256}
                rows.append(row)
    return pd.DataFrame(rows)


EARLY_PEAK = dict(zip(STEPS, [0.5, 0.05, 0.012, 0.010, 0.011, 0.0115, 0.012], strict=True))
NEVER_DEGRADES = dict(zip(STEPS, [0.5, 0.05, 0.02, 0.015, 0.012, 0.011, 0.010], strict=True))
LATE_PEAK = dict(zip(STEPS, [0.5, 0.05, 0.02, 0.015, 0.011, 0.010, 0.0115], strict=True))


def test_reproduced_for_an_early_peak_then_slight_degradation():
    verdict = verdicts.c3_verdict(dynamics_table({0.5: EARLY_PEAK, 1.0: EARLY_PEAK, 2.0: EARLY_PEAK}))
    assert verdict.outcome == verdicts.REPRODUCED
    assert all(lv.best_step == 1000 and lv.pattern for lv in verdict.levels)
    assert verdict.report().splitlines()[-1] == "verdict: C3 REPRODUCED"


def test_not_informative_when_the_isotropic_model_peaks_early_and_degrades_as_well():
    """The trivial control: a network that fits every simple model best early and then drifts from all of them."""
    iso = {step: 10 * r for step, r in EARLY_PEAK.items()}
    table = dynamics_table({0.5: EARLY_PEAK, 1.0: EARLY_PEAK, 2.0: EARLY_PEAK}, isotropic=iso)
    verdict = verdicts.c3_verdict(table)
    assert verdict.n_pattern == verdict.n_control == 3 and verdict.outcome == verdicts.NOT_INFORMATIVE
    assert verdict.report().splitlines()[-1] == "verdict: C3 NOT INFORMATIVE"
    (row,) = verdicts.findings.c3_findings({"train": verdict}, None)
    assert row.control_value == row.ours == 100 and row.verdict == verdicts.NOT_INFORMATIVE
    late = verdicts.C3Rules(early_fraction=0.1)  # the early cutoff moves it: best at step 1,000 is not early then
    assert verdicts.c3_verdict(table, rules=late).outcome == verdicts.NOT_REPRODUCED


def test_not_reproduced_when_the_gaussian_fit_never_degrades():
    verdict = verdicts.c3_verdict(dynamics_table({0.5: NEVER_DEGRADES, 1.0: NEVER_DEGRADES}))
    assert verdict.outcome == verdicts.NOT_REPRODUCED
    assert verdict.report().splitlines()[-1] == "verdict: C3 NOT REPRODUCED"


def test_not_reproduced_when_the_gaussian_fit_peaks_late():
    verdict = verdicts.c3_verdict(dynamics_table({0.5: LATE_PEAK, 1.0: LATE_PEAK}))
    assert all(lv.best_step == 3000 and not lv.early for lv in verdict.levels)
    assert verdict.outcome == verdicts.NOT_REPRODUCED


def test_not_reproduced_when_the_training_set_fit_stops_improving():
    table = dynamics_table({1.0: EARLY_PEAK}, delta=lambda s, t: 0.02 if t >= 1000 else 0.05)
    assert verdicts.c3_verdict(table).outcome == verdicts.NOT_REPRODUCED


def test_partly_when_the_pattern_shows_at_some_informative_levels_only():
    table = dynamics_table({0.5: EARLY_PEAK, 1.0: NEVER_DEGRADES, 2.0: NEVER_DEGRADES})
    assert verdicts.c3_verdict(table).outcome == verdicts.PARTLY


def test_levels_where_the_gaussian_is_exact_or_hopeless_do_not_vote():
    exact = {step: 1e-4 for step in STEPS}
    hopeless = {step: 0.6 for step in STEPS}
    verdict = verdicts.c3_verdict(dynamics_table({0.1: hopeless, 1.0: EARLY_PEAK, 10.0: exact}))
    assert [lv.sigma for lv in verdict.levels] == [1.0]
    assert {s for s, _ in verdict.skipped} == {0.1, 10.0}
    assert verdict.outcome == verdicts.REPRODUCED


def test_the_best_step_is_robust_to_probe_noise_on_a_flat_curve():
    flat = dict(zip(STEPS, [0.5, 0.05, 0.0100, 0.0101, 0.0100, 0.00995, 0.0102], strict=True))
    verdict = verdicts.c3_verdict(dynamics_table({1.0: flat}, se=5e-4))
    level = verdict.levels[0]
    assert level.best_step == 500  # the argmin is step 3000, but step 500 is within one standard error of it
    assert not level.degrades  # +2.5% and within the standard error: not a degradation
    assert verdict.outcome == verdicts.NOT_REPRODUCED


def test_a_rise_within_the_standard_error_does_not_count():
    assert verdicts.c3_verdict(dynamics_table({1.0: EARLY_PEAK})).levels[0].degrades
    assert not verdicts.c3_verdict(dynamics_table({1.0: EARLY_PEAK}, se=5e-3)).levels[0].degrades


def test_the_learning_order_lists_every_models_best_step():
    order = verdicts.c3_verdict(dynamics_table({1.0: EARLY_PEAK})).learning_order
    assert order.loc[1.0, "gaussian"] == 1000 and order.loc[1.0, "delta"] == 4000


def test_a_table_without_steps_or_the_training_set_gets_a_one_line_error():
    table = dynamics_table({1.0: EARLY_PEAK})
    with pytest.raises(verdicts.TableError, match="models delta"):
        verdicts.c3_verdict(table[table["model"] != "delta"])
    with pytest.raises(verdicts.TableError, match="at least 3 checkpoints"):
        verdicts.c3_verdict(table[table["step"] == 4000])

"""The C2 and C3 verdicts print the opposite when the data say the opposite."""

from __future__ import annotations

import pandas as pd

from lib import verdicts

SIGMAS = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 80.0]


def _linearity_table(gaussian_ev, iso_ev) -> pd.DataFrame:
    rows = []
    for s in SIGMAS:
        rows.append({"sigma": s, "model": "gaussian", "probe_set": "train", "St_EV": gaussian_ev(s)})
        rows.append({"sigma": s, "model": "mean_std", "probe_set": "train", "St_EV": iso_ev(s)})
    return pd.DataFrame(rows)


def test_c2_holds_when_the_gaussian_is_good_far_below_the_naive_scale():
    table = _linearity_table(lambda s: 0.999 if s >= 1 else 0.9, lambda s: 0.9)
    verdict = verdicts.c2_verdict(table, naive_scale=15.2)
    assert verdict.sigma_99 == 1.0 and verdict.holds
    assert "verdict: C2 REPRODUCED" in verdict.report()


def test_c2_fails_when_the_gaussian_is_only_good_near_the_naive_scale():
    table = _linearity_table(lambda s: 0.999 if s >= 10 else 0.9, lambda s: 0.5)
    verdict = verdicts.c2_verdict(table, naive_scale=15.2)
    assert verdict.sigma_99 == 10.0 and not verdict.holds
    assert "verdict: C2 NOT REPRODUCED" in verdict.report()


def test_c2_fails_when_the_isotropic_model_does_as_well():
    table = _linearity_table(lambda s: 0.999 if s >= 1 else 0.9, lambda s: 0.9995)
    assert not verdicts.c2_verdict(table, naive_scale=15.2).holds


def test_c2_reports_a_gaussian_that_never_fits():
    table = _linearity_table(lambda s: 0.5, lambda s: 0.4)
    verdict = verdicts.c2_verdict(table, naive_scale=15.2)
    assert verdict.sigma_99 is None and "at no probed sigma" in verdict.report() and not verdict.holds


def _dynamics(gaussian_residual, other_ev) -> pd.DataFrame:
    steps = [0, 100, 500, 1000, 2000, 4000]
    rows = []
    for s in (0.5, 1.0, 2.0):
        for step in steps:
            rows.append({"step": step, "sigma": s, "model": "gaussian", "probe_set": "train",
                         "St_EV": 1 - gaussian_residual(step)})
            rows.append({"step": step, "sigma": s, "model": "delta", "probe_set": "train", "St_EV": other_ev(step)})
    return pd.DataFrame(rows)


def test_c3_holds_for_an_early_peak_then_slight_degradation():
    residual = {0: 0.5, 100: 0.05, 500: 0.01, 1000: 0.012, 2000: 0.015, 4000: 0.02}
    verdict = verdicts.c3_verdict(_dynamics(residual.get, lambda step: step / 5000), [0.5, 1.0, 2.0], ("delta",))
    assert verdict.holds and all(r.peak_step == 500 for r in verdict.rows)
    assert "verdict: C3 REPRODUCED" in verdict.report()


def test_c3_fails_when_the_gaussian_fit_keeps_improving_to_the_end():
    residual = {0: 0.5, 100: 0.05, 500: 0.01, 1000: 0.008, 2000: 0.006, 4000: 0.005}
    verdict = verdicts.c3_verdict(_dynamics(residual.get, lambda step: step / 5000), [0.5, 1.0, 2.0], ("delta",))
    assert not verdict.holds and "verdict: C3 NOT REPRODUCED" in verdict.report()


def test_c3_fails_when_the_other_models_stop_improving():
    residual = {0: 0.5, 100: 0.05, 500: 0.01, 1000: 0.012, 2000: 0.015, 4000: 0.02}
    verdict = verdicts.c3_verdict(_dynamics(residual.get, lambda step: 1 - step / 5000), [0.5, 1.0, 2.0], ("delta",))
    assert not verdict.holds

"""C4: coarse mixtures (2 <= K <= 100, our rule) against the training-set score at low noise."""

from __future__ import annotations

import pandas as pd
import pytest

from lib import verdicts

SIGMAS = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]


def grid_table(residual: dict[str, callable], probe_set: str = "train") -> pd.DataFrame:
    rows = [{"step": 4000, "sigma": s, "model": m, "probe_set": probe_set, "St_EV": 1 - r(s)}
            for s in SIGMAS for m, r in residual.items()]
    return pd.DataFrame(rows)


def models(coarse: float, delta: float, large_k: float = 0.5) -> dict[str, callable]:
    """Low-noise residuals (higher elsewhere) of a coarse mixture, the training set and a K = 500 mixture."""
    def at_low(value):
        return lambda s: value if s <= 0.2 else 0.01

    return {"gaussian": at_low(0.6), "gmm10": at_low(coarse * 1.2), "gmm50_rank32": at_low(coarse),
            "gmm500": at_low(large_k), "delta": at_low(delta)}


def test_reproduced_when_a_coarse_mixture_beats_the_training_set_at_every_low_level():
    verdict = verdicts.c4_verdict(grid_table(models(coarse=0.15, delta=0.3)))
    assert verdict.outcome == verdicts.REPRODUCED and verdict.coarse_model == "gmm50_rank32"
    assert verdict.n_coarse == 2
    assert verdict.report().splitlines()[-1] == "verdict: C4 REPRODUCED"


def test_not_reproduced_when_the_network_is_closest_to_the_training_set():
    verdict = verdicts.c4_verdict(grid_table(models(coarse=0.3, delta=0.1)))
    assert verdict.outcome == verdicts.NOT_REPRODUCED
    assert all(lv.outcome == "training set" for lv in verdict.levels)


def test_a_large_k_mixture_beating_the_training_set_does_not_count():
    verdict = verdicts.c4_verdict(grid_table(models(coarse=0.3, delta=0.2, large_k=0.1)))
    assert verdict.best_model == "gmm500"  # reported as the selection over all models ...
    assert verdict.outcome == verdicts.NOT_REPRODUCED  # ... but the verdict uses coarse mixtures only


def test_within_ten_percent_is_a_tie_and_mixed_levels_are_partly():
    assert verdicts.c4_verdict(grid_table(models(coarse=0.2, delta=0.21))).outcome == verdicts.NOT_REPRODUCED
    residual = models(coarse=0.2, delta=0.4)
    residual["delta"] = lambda s: 0.4 if s <= 0.05 else 0.1 if s <= 0.2 else 0.01
    verdict = verdicts.c4_verdict(grid_table(residual))
    assert verdict.outcome == verdicts.PARTLY and verdict.wins == 2


def test_probe_sets_are_judged_separately():
    table = pd.concat([grid_table(models(0.3, 0.1), "train"), grid_table(models(0.15, 0.3), "test")])
    assert verdicts.c4_verdict(table, probe_set="train").outcome == verdicts.NOT_REPRODUCED
    assert verdicts.c4_verdict(table, probe_set="test").outcome == verdicts.REPRODUCED


def test_not_informative_when_the_plain_gaussian_beats_the_training_set_as_often():
    """Held-out probes snap to a training image under the training-set score (residual 3): anything smooth wins,
    the plain Gaussian (K = 1, not coarse-grained) included, so the coarse mixture's win says nothing."""
    snapping = models(coarse=0.15, delta=3.0)
    verdict = verdicts.c4_verdict(grid_table(snapping, "test"), probe_set="test")
    assert verdict.wins == 4 and verdict.control_wins("gaussian") == 4
    assert verdict.outcome == verdicts.NOT_INFORMATIVE and "control gaussian" in verdict.report()
    rows = verdicts.findings.c4_findings({"test": verdict}, verdict)
    assert rows[0].control == "gaussian against the training set" and rows[0].control_value == rows[0].ours == 100
    snapping["gaussian"] = lambda s: 4.0 if s <= 0.2 else 0.01  # a control that loses: the win counts again
    assert verdicts.c4_verdict(grid_table(snapping, "test"), probe_set="test").outcome == verdicts.REPRODUCED


def test_the_coarse_cutoff_and_the_tie_factor_move_the_verdict_in_the_robustness_table():
    residual = models(coarse=0.3, delta=0.32)
    residual["gmm200"] = lambda s: 0.1 if s <= 0.2 else 0.01  # coarse only when K <= 200 counts
    table = grid_table(residual)

    def at(rules):
        return verdicts.findings.c4_findings({"train": verdicts.c4_verdict(table, rules=rules)},
                                             verdicts.c4_verdict(table, rules=rules))

    grid = [verdicts.C4Rules(coarse_max_k=k) for k in (100, 200)]
    j = verdicts.robustness.judged("C4", at, grid=grid)
    claim, robust, frame = j.verdict, j.robustness, j.table
    assert list(frame["claim verdict"]) == [verdicts.NOT_REPRODUCED, verdicts.REPRODUCED]
    assert claim == verdicts.NOT_REPRODUCED and robust == "same verdict in 1 of 2 settings"


def test_the_residual_still_falling_at_the_largest_k_is_reported():
    verdict = verdicts.c4_verdict(grid_table(models(coarse=0.3, delta=0.2, large_k=0.1)))
    assert verdict.still_falling_at_largest_k
    assert not verdicts.c4_verdict(grid_table(models(coarse=0.15, delta=0.3, large_k=0.5))).still_falling_at_largest_k


def test_a_table_without_coarse_mixtures_gets_a_one_line_error():
    table = grid_table({"gaussian": lambda s: 0.5, "gmm500": lambda s: 0.1, "delta": lambda s: 0.2})
    with pytest.raises(verdicts.TableError, match="coarse mixtures"):
        verdicts.c4_verdict(table)
    with pytest.raises(verdicts.TableError, match="probe set 'test'"):
        verdicts.c4_verdict(grid_table(models(0.1, 0.2)), probe_set="test")


def test_levels_where_neither_model_explains_anything_are_not_judged():
    residual = models(coarse=0.15, delta=0.3)
    residual["gmm50_rank32"] = lambda s: 2.0 if s <= 0.05 else 0.15 if s <= 0.2 else 0.01
    residual["gmm10"] = residual["gmm50_rank32"]
    residual["delta"] = lambda s: 5.0 if s <= 0.05 else 0.3 if s <= 0.2 else 0.01
    verdict = verdicts.c4_verdict(grid_table(residual))
    assert [lv.outcome for lv in verdict.levels] == ["not judged", "not judged", "mixture", "mixture"]
    assert verdict.outcome == verdicts.REPRODUCED

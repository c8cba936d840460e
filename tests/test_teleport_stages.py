"""The two-stage C6 design: more samples for the undecided skips (lib.analysis.teleport_sweep.extend), paired tables at
mixed sample counts (lib.analysis.teleport_pairs) and the rule that picks the skips and judges them (lib.verdicts)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lib import verdicts
from lib.analysis import teleport_pairs, teleport_sweep, teleportation
from lib.analysis.metrics import FrechetReference
from lib.diffusion import teleport

F64 = torch.float64


def inputs(feature_setup, **kwargs) -> teleport_sweep.SweepInputs:
    classifier, model, reference = feature_setup
    return teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=8, **kwargs)


def sweep(feature_setup, n_samples: int, **kwargs) -> teleportation.TeleportSweep:
    return teleport_sweep.sweep(inputs(feature_setup, **kwargs), (("heun", 6),), (0.0, 0.5), seeds=(0,),
                                n_samples=n_samples, progress=False, jumps=("gaussian", "noise"))


# --------------------------------------------------------------------------- noise streams and extension


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 32, 32), (2, 4, 4)])
def test_initial_noise_continues_the_seed_stream(shape) -> None:
    whole = teleportation.initial_noise(4, 30, shape)
    parts = [teleportation.initial_noise(4, 12, shape), teleportation.initial_noise(4, 18, shape, first=12)]
    torch.testing.assert_close(torch.cat(parts),
                               whole, rtol=0, atol=0)


def test_initial_noise_refuses_to_extend_a_shape_without_the_prefix_property() -> None:
    with pytest.raises(ValueError, match="cannot be extended"):
        teleportation.initial_noise(3, 13, (1, 5, 5), first=7)
    with pytest.raises(ValueError, match=">= 0"):
        teleportation.initial_noise(3, 4, (1, 4, 4), first=-1)


def test_extend_gives_the_samples_a_longer_sweep_would_have(feature_setup) -> None:
    """Extending 16 samples to 24 gives the features of the first 24 samples of a 24-sample sweep (the same noise,
    run in other batches: float tolerance), for the plain and the teleported run alike."""
    short, long = sweep(feature_setup, 16), sweep(feature_setup, 24)
    configs = [("heun", 6, 0, 0, "none"), ("heun", 6, 3, 0, "gaussian")]
    teleport_sweep.extend(short, configs, 24, inputs(feature_setup), progress=False)
    for config in configs:
        assert len(short.features[config]) == 24
        torch.testing.assert_close(short.features[config], long.features[config], rtol=1e-4, atol=1e-4)
    assert len(short.features[("heun", 6, 3, 0, "noise")]) == 16  # not asked for: left alone
    assert (short.table["n_samples"] == 16).all()  # the table keeps the first stage's scores
    with pytest.raises(ValueError, match="not in it"):
        teleport_sweep.extend(short, [("heun", 9, 0, 0, "none")], 24, inputs(feature_setup), progress=False)


def test_extend_caches_the_added_samples_apart_from_the_first(feature_setup, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    config = [("heun", 6, 3, 0, "gaussian")]
    first = teleport_sweep.extend(sweep(feature_setup, 16, cache_tag="t"), config, 24,
                                  inputs(feature_setup, cache_tag="t"), progress=False)
    assert len(list((tmp_path / "cache" / "teleportation").glob("*.pt"))) == 3 + 1  # the sweep's 3, one extension

    def fail(*args, **kwargs):
        raise AssertionError("a cached configuration was run again")

    monkeypatch.setattr(teleport_sweep, "run_configuration", fail)
    again = teleport_sweep.extend(sweep(feature_setup, 16, cache_tag="t"), config, 24,
                                  inputs(feature_setup, cache_tag="t"), progress=False)
    torch.testing.assert_close(again.features[config[0]], first.features[config[0]], rtol=0, atol=0)


def test_paired_table_judges_extended_pairs_on_all_their_samples(feature_setup) -> None:
    """Every comparison at a skip is made on the same samples: extending the Gaussian arm and the plain run alone leaves
    them compared on the 16 samples the noise control has (changed deliberately: the Gaussian jump was judged on 32
    while its control was judged on 16); extending every run at the skip compares all of them on the 32."""
    reference = feature_setup[2]
    result = sweep(feature_setup, 16)
    before = teleport_pairs.paired_table(result, reference, n_boot=40)
    refine = teleport_pairs.configurations_of([("heun", 6, 3, "gaussian")], [0])
    assert refine == [("heun", 6, 0, 0, "none"), ("heun", 6, 3, 0, "gaussian")]
    teleport_sweep.extend(result, refine, 32, inputs(feature_setup), progress=False)
    partial = teleport_pairs.paired_table(result, reference, n_boot=40)
    skipped = partial["skip"] > 0
    assert (partial[skipped]["n_samples"] == 16).all()
    pd.testing.assert_frame_equal(partial[skipped], before[skipped])
    every = teleport_pairs.skip_configurations([("heun", 6, 3)], [0])
    assert every == [("heun", 6, 0, 0, "none"), ("heun", 6, 3, 0, "gaussian"), ("heun", 6, 3, 0, "isotropic"),
                     ("heun", 6, 3, 0, "noise"), ("heun", 3, 0, 0, "none")]
    teleport_sweep.extend(result, [c for c in every if c in result.features], 32, inputs(feature_setup),
                          progress=False)
    after = teleport_pairs.paired_table(result, reference, n_boot=40)
    row = after[(after["jump"] == "gaussian") & (after["against"] == "budget")].iloc[0]
    ref = FrechetReference(reference)
    expected = (ref.fd(result.features[refine[1]].double()) - ref.fd(result.features[refine[0]].double()))
    assert row["fd_change"] == pytest.approx(expected, rel=1e-9)
    assert (after[after["skip"] > 0]["n_samples"] == 32).all()
    # the tolerance's base stays the first stage's FD
    assert row["fd_base"] == before["fd_base"].iloc[0]


# --------------------------------------------------------------------------- the rule


def test_c6_level_splits_the_error_over_the_stages() -> None:
    assert verdicts.c6_level(1) == pytest.approx(0.95) and verdicts.c6_level(2) == pytest.approx(0.975)
    with pytest.raises(ValueError, match=">= 1"):
        verdicts.c6_level(0)


@pytest.mark.parametrize(("low", "high", "status"), [
    (-1.0, 0.5, "kept"), (-1.0, 1.0, "kept"), (-1.0, 1.5, "unresolved"), (0.5, 1.5, "unresolved"),
    (1.2, 3.0, "loss"), (math.nan, math.nan, "loss"), (-1.0, math.inf, "loss"),
])
def test_skip_status(low: float, high: float, status: str) -> None:
    assert verdicts.skip_status(low, high, tolerance=1.0) == status


def stage_table(intervals: dict[tuple[str, int], tuple[float, float]], n_samples: dict | None = None,
                level: float = 0.975) -> pd.DataFrame:
    """A paired table for heun N = 10 (plain FD 20: tolerance 1.0) with the given (low, high) per (jump, skip)."""
    rows = [{"sampler": "heun", "steps": 10, "skip": 0, "jump": "none", "sigma_skip": 80.0, "nfe": 19, "nfe_base": 19,
             "n_seeds": 1, "n_samples": 500, "fd_base": 20.0, "fd_change": 0.0, "ci_low": 0.0, "ci_high": 0.0,
             "ci_level": level, "wall_s": 19.0, "wall_base": 19.0}]
    for (jump, k), (low, high) in intervals.items():
        sigma_skip, sigmas = teleportation.skip_schedule(10, k)
        rows.append({**rows[0], "skip": k, "jump": jump, "sigma_skip": sigma_skip, "nfe": teleport.nfe("heun", sigmas),
                     "n_samples": (n_samples or {}).get((jump, k), 500), "fd_change": 0.5 * (low + high),
                     "ci_low": low, "ci_high": high, "wall_s": float(teleport.nfe("heun", sigmas))})
    return pd.DataFrame(rows, columns=teleport_pairs.PAIRED_COLUMNS)


def test_undecided_skips_walk_each_arm_up_to_its_first_measured_loss() -> None:
    table = stage_table({("gaussian", 1): (-0.5, 0.5), ("gaussian", 2): (-0.5, 1.5), ("gaussian", 3): (0.5, 2.5),
                         ("gaussian", 4): (1.5, 3.0), ("gaussian", 5): (0.0, 2.0),
                         ("noise", 1): (1.1, 2.0), ("noise", 2): (0.0, 2.0)})
    assert verdicts.undecided_skips(table) == [("heun", 10, 2, "gaussian"), ("heun", 10, 3, "gaussian")]
    assert verdicts.undecided_skips(table, jumps=("noise",)) == []  # noise k=1 is a loss: k=2 is never refined
    decided = stage_table({("gaussian", 1): (-0.5, 0.5), ("gaussian", 2): (2.0, 3.0)})
    assert verdicts.undecided_skips(decided) == []


def test_the_second_stage_can_keep_or_lose_what_the_first_left_open() -> None:
    first = stage_table({("gaussian", 1): (-0.5, 0.5), ("gaussian", 2): (-0.8, 1.6), ("gaussian", 3): (2.0, 4.0)})
    assert verdicts.c6_verdict(first).rows[0].kept_skip == 1 and verdicts.c6_verdict(first).rows[0].unresolved == (2,)
    narrow = {("gaussian", 2): 2000}
    kept = verdicts.c6_verdict(stage_table({("gaussian", 1): (-0.5, 0.5), ("gaussian", 2): (-0.3, 0.6),
                                            ("gaussian", 3): (2.0, 4.0)}, narrow))
    lost = verdicts.c6_verdict(stage_table({("gaussian", 1): (-0.5, 0.5), ("gaussian", 2): (1.1, 1.6),
                                            ("gaussian", 3): (2.0, 4.0)}, narrow))
    assert kept.rows[0].kept_skip == 2 and kept.rows[0].first_failure[0] == 3
    assert lost.rows[0].kept_skip == 1 and lost.rows[0].unresolved == ()
    report = kept.report()
    assert "97.5% interval" in report and "samples per run: 500; 2000 for the skips refined" in report
    assert "heun N=10 k=2" in report
    assert "samples per run: 500\n" in verdicts.c6_verdict(first).report()
    assert np.isclose(kept.level, 0.975)

"""Samplers that need more than (denoiser, x, sigmas): DPM-Solver-v3's statistics reach it through the sweep, and
enter its cache keys, so runs with other statistics are never read back as these."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from lib.analysis import teleport_sweep, teleportation
from lib.core.config import get_scale
from lib.diffusion import ems as ems_module
from lib.diffusion.sampler_records import RECORDS
from lib.experiments import teleportation as c6

BUDGETS = (("dpm_solver_v3", 5),)


def _statistics(shape, l_value: float = 1.0) -> ems_module.EMS:
    base = ems_module.degenerate_ems(tuple(shape), levels=8)
    return replace(base, l=np.full_like(base.l, l_value))


def _sweep(feature_setup, options, **kwargs):
    classifier, model, reference = feature_setup
    inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=8,
                                        sampler_options=options or {}, **kwargs)
    return teleport_sweep.sweep(inputs, BUDGETS, (0.0, 0.2), seeds=(0,), n_samples=8, progress=False)


def test_dpm_solver_v3_needs_the_statistics_of_the_model():
    assert RECORDS["dpm_solver_v3"].needs == ("ems",)
    assert all(not r.needs for name, r in RECORDS.items() if name != "dpm_solver_v3")


def test_the_sweep_passes_each_sampler_its_options(feature_setup, monkeypatch):
    seen = []
    real = teleport_sweep.run_configuration

    def spy(*args, **kwargs):
        seen.append(kwargs.get("sampler_options"))
        return real(*args, **kwargs)

    monkeypatch.setattr(teleport_sweep, "run_configuration", spy)
    statistics = _statistics(feature_setup[1].shape)
    _sweep(feature_setup, {"dpm_solver_v3": {"ems": statistics}})
    assert seen and all(options["ems"] is statistics for options in seen)


def test_other_statistics_are_other_runs(feature_setup, tmp_path, monkeypatch):
    """The statistics change the samples, and a cached run is read back only with the statistics it was run with."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    shape = feature_setup[1].shape
    degenerate, other = _statistics(shape), _statistics(shape, 0.8)
    assert degenerate.digest() != other.digest() and degenerate.digest() == _statistics(shape).digest()
    first = _sweep(feature_setup, {"dpm_solver_v3": {"ems": degenerate}}, cache_tag="v3")
    second = _sweep(feature_setup, {"dpm_solver_v3": {"ems": other}}, cache_tag="v3")
    config = ("dpm_solver_v3", 5, 0, 0, "none")
    assert not torch.equal(first.features[config], second.features[config])
    for statistics in (degenerate, other):
        assert teleport_sweep.is_cached("v3", config, 8, "cpu", {"dpm_solver_v3": {"ems": statistics}})
    assert not teleport_sweep.is_cached("v3", config, 8, "cpu")
    assert not teleport_sweep.is_cached("v3", config, 8, "cpu", {"dpm_solver_v3": {"ems": _statistics(shape, 0.5)}})


def test_degenerate_statistics_sample_as_dpm_solver_pp(feature_setup):
    """With (l, s, b) = (1, 0, 0) the run is the one the solver makes without statistics (`ems=None`)."""
    _, model, _ = feature_setup
    run = [teleportation.run_configuration(model, model, ("dpm_solver_v3", 5, 1, 0, "gaussian"), 6, model.shape,
                                           sampler_options=o)
           for o in ({"ems": _statistics(model.shape)}, None)]
    torch.testing.assert_close(run[0].samples, run[1].samples, rtol=1e-5, atol=1e-5)


def test_the_statistics_are_estimated_only_when_a_budget_needs_them(monkeypatch):
    calls = []
    monkeypatch.setattr(c6, "model_statistics", lambda study, progress=True, network=None: calls.append(study) or "EMS")
    with_v3 = SimpleNamespace(scale=get_scale("smoke"))
    assert c6.sampler_options(with_v3) == {"dpm_solver_v3": {"ems": "EMS"}} and len(calls) == 1
    budgets = tuple(b for b in get_scale("smoke").teleport_budgets if b[0] != "dpm_solver_v3")
    plain = tuple(b for b in get_scale("smoke").plain_budgets if b[0] != "dpm_solver_v3")
    without = SimpleNamespace(scale=replace(get_scale("smoke"), teleport_budgets=budgets, plain_budgets=plain))
    assert c6.sampler_options(without) == {} and len(calls) == 1

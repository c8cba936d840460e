"""Each expensive experiment through both of its entry points: `python -m lib.sweep` (run in process) fills the caches,
then the library calls its notebook makes (04, 05, 07) build the notebook's table from them, computing nothing again,
and the table is the one the command computed.

The notebooks' cells are followed with the study's current members (`Study.with_history`,
`lib.experiments.mixture_grid.network_steps`). The study is small so that the three run in seconds: our network
trained for 4 steps on a tiny RGB dataset (48 training images, `tiny_rgb_study`), at the smoke scale with fewer
teleportation samples and the early checkpoint of notebook 05 at step 2 (a checkpoint of that run). Everything is
written under a temporary `REPRO_DATA_DIR`.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from lib import runtime, sweep
from lib.analysis import dynamics, grid_sweep, linearity, mixture_grid, teleport_pairs, teleport_sweep
from lib.analysis.metrics import FrechetReference
from lib.core import config
from lib.diffusion import ems, train_config
from lib.experiments import mixture_grid as grid_experiment
from lib.experiments import teleportation as c6_experiment
from lib.experiments import training_dynamics
from lib.models import gmm
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
               "REPRO_DATASET", "REPRO_DATASET_DIR", "REPRO_MODEL", "REPRO_INCEPTION")


@pytest.fixture(scope="module")
def study(tiny_rgb_study, tmp_path_factory):
    """(the dataset's path, the data folder): our network trained on the tiny dataset, the scale made smaller."""
    dataset = str(tiny_rgb_study[0])
    data = tmp_path_factory.mktemp("entry_points") / "data"
    short = dataclasses.replace(train_config.train_config("smoke"), total_steps=4, warmup_steps=2, checkpoint_every=2,
                                checkpoint_early=(0,))
    small = dataclasses.replace(config.SCALES["smoke"], early_step=2, n_teleport_samples=16,
                                n_teleport_samples_max=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_DATA_DIR", str(data))
        for name in ENVIRONMENT:
            patch.delenv(name, raising=False)
        patch.setattr(train_config, "train_config", lambda scale=None: short)
        patch.setitem(config.SCALES, "smoke", small)
        assert runtime.setup("smoke", verbose=False, dataset=dataset).study.train() == [0, 2, 4]
        yield dataset, data


def _cache_files(data) -> dict[str, int]:
    """Every file under the data folder's caches, with its modification time: a file rewritten shows too."""
    return {str(p.relative_to(data)): p.stat().st_mtime_ns for p in (data / "cache").rglob("*") if p.is_file()}


def _spy(monkeypatch, owner, name: str) -> list:
    """Replace `owner.name` by a wrapper that records what each call returns."""
    real, returned = getattr(owner, name), []

    def spy(*args, **kwargs):
        returned.append(real(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(owner, name, spy)
    return returned


def _refuse(*args, **kwargs):
    pytest.fail("the notebook's path computed something the command had cached")


def _command_then_notebook(monkeypatch, what: str, dataset: str, data, refuse: list[tuple[object, str]]):
    """Run the command, then forbid `refuse` (the computations the cache saves) and return the notebook's context."""
    assert sweep.main([what, "--scale", "smoke", "--dataset", dataset]) == 0
    for owner, name in refuse:
        monkeypatch.setattr(owner, name, _refuse)
    return runtime.setup("smoke", verbose=False, dataset=dataset), _cache_files(data)


def test_training_dynamics_notebook_04_reads_what_the_command_scored(study, monkeypatch):
    dataset, data = study
    computed = _spy(monkeypatch, dynamics, "checkpoint_table")
    ctx, files = _command_then_notebook(monkeypatch, "dynamics", dataset, data,
                                        [(linearity.ProbeBank, "score_network")])
    # notebook 04, cells 4 and 6
    history = ctx.study.with_history()
    steps = history.checkpoint_steps()
    banks = dynamics.probe_banks(ctx.study.stats("train"), ctx.study.images("train"), ctx.study.images("test"),
                                 ctx.scale, device=ctx.device, progress=False)
    table = dynamics.checkpoint_table(banks, history.network, steps, cache_tag=training_dynamics.cache_tag(history),
                                      progress=False)
    assert _cache_files(data) == files and len(computed) == 2
    assert sorted(set(table["step"])) == [0, 2, 4]
    pd.testing.assert_frame_equal(table, computed[0])


def test_mixture_grid_notebook_05_reads_what_the_command_scored(study, monkeypatch):
    dataset, data = study
    computed = _spy(monkeypatch, grid_sweep, "score_grid")
    ctx, files = _command_then_notebook(monkeypatch, "grid", dataset, data,
                                        [(grid_sweep, "score_level"), (gmm, "_kmeans_labels")])
    # notebook 05, cells 4, 6 and 8
    steps = grid_experiment.network_steps(ctx.study)
    assert steps == {"early": 2, "final": 4}
    networks = {name: ctx.study.network(step) for name, step in steps.items()}
    stats, x_train, x_test = ctx.study.stats("train"), ctx.study.images("train"), ctx.study.images("test")
    subset = x_train if ctx.scale.train_subset is None else x_train[: ctx.scale.train_subset]
    data_key = f"{stats.key}-n{len(subset)}"
    fits = mixture_grid.fit_grid(subset, ctx.scale.grid_components, seed=0, data_key=data_key)
    models = mixture_grid.grid_models(fits, ctx.scale.grid_ranks, device=ctx.device)
    models["gaussian"] = GaussianDenoiser.from_stats(stats, device=ctx.device)
    models["delta"] = DeltaMixtureDenoiser(subset, device=ctx.device)
    probe_sets = grid_sweep.probe_sets(subset, x_test, ctx.scale.n_grid_probes)
    banks = {split: linearity.ProbeBank(x0, config.PROBE_SIGMAS, split, seed=0, device=ctx.device)
             for split, x0 in probe_sets.items()}
    net_outputs = {name: {split: bank.network_outputs(networks[name], step=step) for split, bank in banks.items()}
                   for name, step in steps.items()}
    scored = grid_sweep.score_grid(banks, models, net_outputs, steps,
                                   cache_tag=grid_experiment.cache_tag(ctx.study, data_key), progress=False)
    assert _cache_files(data) == files and len(computed) == 2
    assert len(scored.table) == len(computed[0].table) > 0 and scored.dsm == computed[0].dsm
    pd.testing.assert_frame_equal(mixture_grid.annotate(scored.table, n_train=len(subset)),
                                  mixture_grid.annotate(computed[0].table, n_train=len(subset)))


def test_teleportation_notebook_07_reads_what_the_command_sampled(study, monkeypatch):
    dataset, data = study
    first = _spy(monkeypatch, sweep, "first_stage")
    extended = _spy(monkeypatch, c6_experiment, "extend_runs")
    ctx, files = _command_then_notebook(monkeypatch, "teleportation", dataset, data,
                                        [(teleport_sweep, "run_configuration"), (ems, "compute_ems")])
    # notebook 07, cells 6, 19 and 23
    inputs = c6_experiment.sweep_inputs(ctx.study)
    result, plain_runs = c6_experiment.first_stage(ctx.study, inputs, progress=False)
    merged = teleport_sweep.merge(result, plain_runs)
    frechet = FrechetReference(inputs.reference)
    _, level, refine = c6_experiment.refinement(ctx.study, merged, frechet)
    c6_experiment.extend_runs(ctx.study, inputs, merged, refine, progress=False)
    paired = teleport_pairs.paired_table(merged, frechet, n_boot=ctx.scale.n_bootstrap, level=level)
    assert _cache_files(data) == files and len(first) == 1 and len(extended) == 2  # the command's, the notebook's
    assert refine and any(len(f) == ctx.scale.n_teleport_samples_max for f in merged.features.values())
    ran, ran_plain = first[0]
    pd.testing.assert_frame_equal(pd.concat([result.table, plain_runs.table], ignore_index=True),
                                  pd.concat([ran.table, ran_plain.table], ignore_index=True))
    command = extended[0]  # the command's merged sweep, extended in its second stage
    assert set(command.features) == set(merged.features)
    assert all(command.features[c].equal(merged.features[c]) for c in merged.features)
    pd.testing.assert_frame_equal(paired, teleport_pairs.paired_table(command, frechet, n_boot=ctx.scale.n_bootstrap,
                                                                      level=level))

"""Sharded sweeps: workers deal the configurations round-robin, fill one cache side by side, and the full sweep read
back from the cache is the table one worker computes alone."""

from __future__ import annotations

import multiprocessing

import pandas as pd
import pytest
import torch

from lib.analysis import teleport_sweep
from lib.core import shards
from lib.core.shards import WHOLE, Shard, ShardError, parse_shard, shard_from_environment

BUDGETS = (("heun", 6), ("unipc", 5))
FRACTIONS = (0.0, 0.2, 0.5)


def _run_two_workers(target, *args) -> None:
    """`target(*args, index)` in two processes forked from this one (a fresh interpreter would cost ~10 s of
    imports each), joined; both must succeed."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=(*args, i)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0]


def test_shards_deal_every_item_to_exactly_one_worker():
    items = list(range(11))
    for count in (1, 2, 3, 11, 12):
        dealt = [Shard(i, count).of(items) for i in range(count)]
        assert sorted(sum(dealt, [])) == items
        assert max(map(len, dealt)) - min(map(len, dealt)) <= 1  # round-robin: even loads


def test_a_shard_is_read_from_the_command_line_torchrun_or_slurm():
    assert parse_shard("1/4") == Shard(1, 4)
    assert shard_from_environment({}) == Shard(0, 1)
    assert shard_from_environment({"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3)
    assert shard_from_environment({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                                   "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(2, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ShardError, match="shard"):
            parse_shard(bad)


def _sweep(feature_setup, **kwargs):
    classifier, model, reference = feature_setup
    shard = kwargs.pop("shard", WHOLE)
    inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=6, **kwargs)
    return teleport_sweep.sweep(inputs, BUDGETS, FRACTIONS, seeds=(0, 1), n_samples=12, progress=False,
                                jumps=("gaussian", "noise"), shard=shard)


def _worker(data_dir: str, feature_setup, index: int) -> None:
    import os

    os.environ["REPRO_DATA_DIR"] = data_dir
    torch.set_num_threads(1)  # a forked child must not wait on the parent's OpenMP threads
    _sweep(feature_setup, cache_tag="shards", shard=Shard(index, 2))


def test_two_workers_fill_the_cache_and_the_full_sweep_equals_one_worker(feature_setup, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "alone"))
    alone = _sweep(feature_setup).table  # one worker, no cache
    _run_two_workers(_worker, str(tmp_path / "shared"), feature_setup)
    cached = sorted((tmp_path / "shared" / "cache" / "teleportation").glob("*.pt"))
    assert len(cached) == len(alone)  # each configuration written once, by one of the two

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "shared"))

    def refuse(*args, **kwargs):
        raise AssertionError("a configuration a worker finished was computed again")

    monkeypatch.setattr(teleport_sweep, "run_configuration", refuse)
    merged = _sweep(feature_setup, cache_tag="shards").table
    measured = [c for c in alone.columns if c != "wall_s"]  # wall times are the workers' own
    pd.testing.assert_frame_equal(merged[measured], alone[measured])
    assert all(teleport_sweep.is_cached("shards", (s, n, k, seed, j), 12, "cpu")
               for s, n, k, seed, j in zip(merged["sampler"], merged["steps"], merged["skip"], merged["seed"],
                                           merged["jump"], strict=True))


def test_a_shard_alone_computes_only_its_configurations(feature_setup, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    every = _sweep(feature_setup, cache_tag="one").table
    half = _sweep(feature_setup, cache_tag="two", shard=Shard(1, 2)).table
    assert len(half) == len(every) // 2 and half.reset_index(drop=True).drop(columns="wall_s").equals(
        every.iloc[1::2].reset_index(drop=True).drop(columns="wall_s"))
    with pytest.raises(ValueError, match="cache_tag"):
        _sweep(feature_setup, shard=Shard(0, 2))
    assert shards.WHOLE == Shard(0, 1)


def test_the_second_stage_shards_its_extensions_too(feature_setup, tmp_path, monkeypatch):
    """Extensions (more samples for chosen configurations) dealt to two shards, read back by the full extension,
    equal one worker's extension sample for sample."""
    classifier, model, reference = feature_setup
    chosen = [("heun", 6, 0, 0, "none"), ("heun", 6, 1, 0, "gaussian"), ("unipc", 5, 0, 1, "none")]

    def extend(result, **kwargs):
        shard = kwargs.pop("shard", WHOLE)
        inputs = teleport_sweep.SweepInputs(model, model, classifier, reference, model.shape, batch_size=6, **kwargs)
        return teleport_sweep.extend(result, chosen, 18, inputs, shard, progress=False)

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "alone"))
    alone = extend(_sweep(feature_setup))
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "shared"))
    for index in range(2):
        part = extend(_sweep(feature_setup, cache_tag="x"), cache_tag="x", shard=Shard(index, 2))
        extended = [c for c in chosen if len(part.features[c]) == 18]
        assert extended == Shard(index, 2).of(chosen)  # its shard only
    monkeypatch.setattr(teleport_sweep, "run_configuration", lambda *a, **k: pytest.fail("computed again"))
    merged = extend(_sweep(feature_setup, cache_tag="x"), cache_tag="x")
    for config in chosen:
        torch.testing.assert_close(merged.features[config], alone.features[config])
    with pytest.raises(ValueError, match="cache_tag"):
        extend(merged, shard=Shard(0, 2))


def _dynamics_banks():
    from lib.analysis import linearity
    from lib.data.statistics import compute_stats
    from lib.models.gaussian import GaussianDenoiser

    x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.2, 1, 16).reshape(
        1, 1, 4, 4)
    gauss = GaussianDenoiser.from_stats(compute_stats(x))
    banks = {}
    for name, x0 in {"train": x[:8], "test": x[8:16]}.items():
        banks[name] = linearity.ProbeBank(x0, (0.1, 1.0), name, seed=1)
        banks[name].add_models({"gaussian": gauss}, progress=False)
    return banks, gauss


def _network_at(step: int):
    """A "checkpoint": the Gaussian denoiser pulled towards 0 by a step-dependent factor."""
    _, gauss = _dynamics_banks()
    return lambda x, sigma: gauss(x, sigma) * (1 - 0.1 / (1 + step))


def _dynamics_worker(data_dir: str, index: int) -> None:
    import os

    from lib.analysis import dynamics

    os.environ["REPRO_DATA_DIR"] = data_dir
    torch.set_num_threads(1)  # a forked child must not wait on the parent's OpenMP threads
    banks, _ = _dynamics_banks()
    dynamics.checkpoint_table(banks, _network_at, [0, 5, 10, 20, 40], cache_tag="run", shard=Shard(index, 2),
                              progress=False)


def test_two_workers_share_the_checkpoints_of_the_training_dynamics(tmp_path, monkeypatch):
    from lib.analysis import dynamics

    steps = [0, 5, 10, 20, 40]
    banks, _ = _dynamics_banks()
    alone = dynamics.checkpoint_table(banks, _network_at, steps, progress=False)
    _run_two_workers(_dynamics_worker, str(tmp_path))
    assert len(list((tmp_path / "cache" / "dynamics").glob("*.pt"))) == len(steps)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    merged = dynamics.checkpoint_table(banks, lambda step: pytest.fail(f"step {step} scored again"), steps,
                                       cache_tag="run", progress=False)
    pd.testing.assert_frame_equal(merged, alone)  # every row, every dtype, in step order
    assert list(dict.fromkeys(merged["step"])) == steps
    with pytest.raises(ValueError, match="cache_tag"):
        dynamics.checkpoint_table(banks, _network_at, steps, shard=Shard(0, 2))


def _grid_setup():
    """Two probe sets at three levels, three grid models and two "checkpoints" of a network."""
    from lib.analysis import grid_sweep, linearity
    from lib.data.statistics import compute_stats
    from lib.models.gaussian import GaussianDenoiser

    x = torch.randn(80, 1, 4, 4, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.2, 1, 16).reshape(
        1, 1, 4, 4)
    gauss = GaussianDenoiser.from_stats(compute_stats(x))
    models = {"gmm2": GaussianDenoiser.from_stats(compute_stats(x[:40])), "gaussian": gauss,
              "delta": GaussianDenoiser.from_stats(compute_stats(x[40:]))}
    banks = {split: linearity.ProbeBank(x0, (0.05, 0.5, 5.0), split, seed=0)
             for split, x0 in grid_sweep.probe_sets(x[:60], x[60:], 8).items()}
    steps = {"early": 10, "final": 100}
    nets = {name: (lambda x, s, f=0.9 + step / 1000: gauss(x, s) * f) for name, step in steps.items()}
    net_outputs = {name: {split: bank.network_outputs(nets[name], step=step) for split, bank in banks.items()}
                   for name, step in steps.items()}
    return banks, models, steps, net_outputs


def _grid_worker(data_dir: str, index: int) -> None:
    import os

    from lib.analysis import grid_sweep

    os.environ["REPRO_DATA_DIR"] = data_dir
    torch.set_num_threads(1)  # a forked child must not wait on the parent's OpenMP threads
    banks, models, steps, net_outputs = _grid_setup()
    grid_sweep.score_grid(banks, models, net_outputs, steps, cache_tag="g", shard=Shard(index, 2), progress=False)


def test_the_mixture_grid_level_by_level_equals_the_probe_banks_and_two_workers_equal_one(tmp_path, monkeypatch):
    from lib.analysis import grid_sweep, mixture_grid

    banks, models, steps, net_outputs = _grid_setup()
    scored = grid_sweep.score_grid(banks, models, net_outputs, steps, progress=False)
    # what the notebook computed before: every model's outputs kept in the banks, scored per step
    for bank in banks.values():
        bank.add_models(models, progress=False)
    before = pd.concat([bank.score_outputs(net_outputs[name][split], step=step) for split, bank in banks.items()
                        for name, step in steps.items()], ignore_index=True)
    pd.testing.assert_frame_equal(scored.table, before)
    networks = {f"network {name}": net_outputs[name] for name in steps}
    pd.testing.assert_frame_equal(mixture_grid.dsm_loss_table(banks, networks, 60, model_losses=scored.dsm),
                                  mixture_grid.dsm_loss_table(banks, networks, 60))
    assert list(scored.seconds) == list(models)

    _run_two_workers(_grid_worker, str(tmp_path))
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(grid_sweep, "score_level", lambda *a, **k: pytest.fail("a level was scored again"))
    merged = grid_sweep.score_grid(banks, models, net_outputs, steps, cache_tag="g", progress=False)
    pd.testing.assert_frame_equal(merged.table, scored.table)
    assert merged.dsm == scored.dsm

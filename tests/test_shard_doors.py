"""Shards are never lost (issue 30): Slurm job arrays with a step or an offset map their task ids onto shards
0..count-1, malformed ids are one `ShardError` line, and the sweep's read-back names what no shard produced."""

from __future__ import annotations

import pytest

from lib.core.shards import WHOLE, Shard, ShardError, parse_shard, shard_from_environment, slurm_shard
from lib.experiments import teleportation as c6


def _array(first: int, last: int, step: int = 1) -> list[dict[str, str]]:
    """The environment of every task of `sbatch --array=<first>-<last>:<step>`, as Slurm sets it."""
    ids = list(range(first, last + 1, step))
    return [{"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_MIN": str(first), "SLURM_ARRAY_TASK_MAX": str(ids[-1]),
             "SLURM_ARRAY_TASK_STEP": str(step), "SLURM_ARRAY_TASK_COUNT": str(len(ids))} for i in ids]


@pytest.mark.parametrize(("first", "last", "step"), [(0, 4, 2), (5, 8, 1), (3, 9, 3), (0, 15, 1), (1, 10, 4)])
def test_every_task_of_a_slurm_array_takes_its_own_shard(first, last, step):
    shards = [shard_from_environment(env) for env in _array(first, last, step)]
    count = len(shards)
    assert shards == [Shard(i, count) for i in range(count)]
    items = list(range(23))
    assert sorted(x for shard in shards for x in shard.of(items)) == items, "every item in exactly one shard"


def test_the_measured_fault_task_2_of_a_step_2_array_is_shard_1_of_3():
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
           "SLURM_ARRAY_TASK_COUNT": "3"}
    assert slurm_shard(env) == Shard(1, 3)


def test_without_step_or_min_a_slurm_array_starts_at_0_in_steps_of_1():
    assert shard_from_environment({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(3, 4)


@pytest.mark.parametrize("env", [
    {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
     "SLURM_ARRAY_TASK_COUNT": "3"},  # off the grid 0, 2, 4
    {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"},  # --array=1,2,7
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_COUNT": "3"},  # below the first
    {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"},
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "0"},
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "two"},
    {"RANK": "abc", "WORLD_SIZE": "2"},
    {"RANK": "1", "WORLD_SIZE": "\u00b2"},
    {"RANK": "-1", "WORLD_SIZE": "2"},
])
def test_a_malformed_or_impossible_task_id_is_one_shard_error_line(env):
    with pytest.raises(ShardError) as err:
        shard_from_environment(env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["\u00b2/4", "1/\u0664", "+1/2", "1 / x", "1/2/3", "", "/"])
def test_a_malformed_shard_is_one_shard_error_line(text):
    with pytest.raises(ShardError, match="shard") as err:
        parse_shard(text)
    assert "\n" not in str(err.value)


def test_a_shard_with_spaces_is_read():
    assert parse_shard(" 1 / 4 ") == Shard(1, 4)


CONFIGS = [("heun", 6, k, seed, "gaussian") for k in (0, 1, 2) for seed in (0, 1)]


def test_the_read_back_names_every_configuration_no_shard_produced(monkeypatch):
    monkeypatch.setattr(c6, "missing_configurations", lambda study, inputs: CONFIGS[:5])
    line = c6.read_back(None, None, Shard(0, 2))
    assert line.startswith("5 stage-1 configurations are in no shard's cache yet: heun N=6 k=0 gaussian seed=0")
    assert "and 1 more" in line and "\n" not in line
    with pytest.raises(c6.SweepError, match="5 stage-1 configurations are not in the cache after the whole sweep"):
        c6.read_back(None, None, WHOLE)
    monkeypatch.setattr(c6, "missing_configurations", lambda study, inputs: [])
    assert c6.read_back(None, None, WHOLE) == "every stage-1 configuration is in the cache"


def test_stage_2_names_the_missing_configurations(monkeypatch):
    monkeypatch.setattr(c6, "missing_configurations", lambda study, inputs: CONFIGS[:2])
    with pytest.raises(c6.SweepError, match="2 are missing .heun N=6 k=0 gaussian seed=0; heun N=6 k=0 gaussian "
                                               "seed=1.: let every stage-1 worker finish"):
        c6.second_stage(None, None)

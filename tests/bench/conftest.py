"""Benchmarks run only when asked for (`make bench` = `pytest tests/bench -s`), never in `make test`."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    targets = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    return any(t == BENCH_DIR or BENCH_DIR in t.parents for t in targets)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench`")
    for item in items:
        if BENCH_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)

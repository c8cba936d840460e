"""The cache of the gain tables (issue 29): a table keyed by a digest of what it was computed from, under
`data/cache/gains/`, checked on every load (`lib.core.integrity`); a damaged entry is reported in one line and
computed again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from lib.core import integrity, paths

CACHE_VERSION = 1


def tensor_digest(x: torch.Tensor) -> str:
    """sha256 (16 hex) of a tensor's values, shape and dtype."""
    t = x.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}{t.dtype}".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _check(rows: dict) -> None:
    integrity.require(isinstance(rows, dict) and "sigma" in rows, "cached gain rows with a sigma column")


def cached_rows(kind: str, settings: Sequence, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """`compute()`, read from `data/cache/gains/<kind>_<key>.pt` when a verified copy is there (key: a digest of
    `settings`), else computed and written there."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, kind, *settings], default=str).encode()).hexdigest()[:16]
    path = paths.cache_dir("gains") / f"{kind}_{key}.pt"
    rows = integrity.load_cache(path, _check, "[gains]", "computing it again")
    if rows is not None:
        return pd.DataFrame(rows)
    table = compute()
    integrity.save({column: table[column].tolist() for column in table.columns}, path)
    return table

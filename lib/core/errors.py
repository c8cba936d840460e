"""The project's own errors: each says in one line what was wrong and what to do.

Every error class the library raises for bad input (a dataset, a checkpoint, a table, a shard, a scale)
derives from `ReproError` as well as from the built-in class it always had (`ValueError`, `RuntimeError`),
so callers that catch the built-in keep working and the command lines (`lib.core.cli`) can tell the
project's one-line errors from bugs.
"""

from __future__ import annotations


class ReproError(Exception):
    """Base of the project's one-line errors: the message names what was wrong and what to do."""

"""The models' one-line errors: a bad argument to a model or an adapter, a model folder that cannot be used.

`ModelError` is a `ValueError` (what these doors always raised) and a `ReproError`, so the command lines print its
one line; `ModelFileError`, a missing model folder or file, is a `ModelError` and still the `FileNotFoundError` those
doors raised before.
Each message names the argument or the file and says what to do.
"""

from __future__ import annotations

from lib.core.errors import ReproError


class ModelError(ReproError, ValueError):
    """A model, an adapter or a model folder was given something it cannot use."""


class ModelFileError(ModelError, FileNotFoundError):
    """A model folder or a file it needs is missing."""

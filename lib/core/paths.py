"""Repository-rooted paths and atomic writes.

Every path comes from the repository root, never from the working directory: papermill, nbval and
the command line run notebooks from different folders. Outputs of the `default` scale are the
committed ones (`figures/`, `data/results/`); every other scale writes under `data/scales/<scale>/`
so that a smoke run in CI can never overwrite what a reader sees.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_SCALE = "default"


def data_dir() -> Path:
    """Folder of fetched data and caches; `REPRO_DATA_DIR` overrides it (tests use a temp folder)."""
    override = os.environ.get("REPRO_DATA_DIR")
    return Path(override).resolve() if override else REPO_ROOT / "data"


def cache_dir(*parts: str) -> Path:
    """A folder under `data/cache/` (ignored by git), created on demand."""
    return _ensure(data_dir().joinpath("cache", *parts))


def checkpoints_dir() -> Path:
    """Training checkpoints (ignored by git)."""
    return _ensure(data_dir() / "checkpoints")


def _scale_dir(scale: str, committed: Path, kind: str) -> Path:
    if scale == COMMITTED_SCALE:
        return _ensure(committed)
    return _ensure(data_dir() / "scales" / scale / kind)


def figures_dir(scale: str) -> Path:
    """`figures/` at the default scale, `data/scales/<scale>/figures/` otherwise."""
    return _scale_dir(scale, REPO_ROOT / "figures", "figures")


def results_dir(scale: str) -> Path:
    """`data/results/` at the default scale, `data/scales/<scale>/results/` otherwise."""
    return _scale_dir(scale, REPO_ROOT / "data" / "results", "results")


def notebook_output_dir(scale: str) -> Path:
    """Where executed notebooks go: in place at the default scale, under `data/scales/` otherwise."""
    return _scale_dir(scale, REPO_ROOT / "notebooks", "notebooks")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    A crash or kill while writing leaves the old file (or none), never a half-written one. `suffix` ends the
    temporary name (for writers that check the extension).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, what: str) -> Iterator[None]:
    """One process at a time in the block (training a network, fitting a cache): a second one says so and
    waits, then finds the work done. The OS releases the lock if its holder dies."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[lock] another process is {what}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def lock_if_free(lock_file: Path) -> Iterator[bool]:
    """Hold `lock_file`'s lock in the block if no other process holds it (yields True), else yield False
    at once; also False where the lock cannot be created (a read-only folder). For optional tidying."""
    try:
        fh = open(lock_file, "w")
    except OSError:
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_refused(err: OSError) -> bool:
    """Whether `err` is the system refusing a write (no permission, or a read-only file system)."""
    return isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def not_writable(err: OSError) -> str:
    """One line for a write refused by the system: which path, and which folder must be writable."""
    where = Path(err.filename) if err.filename else data_dir()
    folder = where if where.is_dir() else where.parent
    return (f"cannot write {where} ({err.strerror or type(err).__name__}): make {folder} writable, "
            "or set REPRO_DATA_DIR to a writable folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

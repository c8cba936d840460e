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
    """`path`, created if missing (an existing folder is left alone: a read-only one is fine to read)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    A crash or kill while writing leaves the old file (or none), never a half-written one. `suffix` ends the
    temporary name (for writers that check the extension).
    """
    with temporary_beside(target, suffix) as tmp_path:
        yield tmp_path
        publish(tmp_path, target)


@contextlib.contextmanager
def temporary_beside(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new empty file `.<name>.<random><suffix>` next to `target` (its folder created), removed after the block
    unless the block moved it (`publish`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def publish(tmp_path: Path, target: Path) -> None:
    """Move the finished temporary `tmp_path` onto `target` in one step: synced to disk first, with the normal
    permissions of a new file (mkstemp creates 0600)."""
    with open(tmp_path, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp_path, 0o666 & ~_umask())
    os.replace(tmp_path, target)


def lock_path(target: Path) -> Path:
    """`.<name>.lock` next to `target`: the file `file_lock` locks for it."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def file_lock(target: Path, exclusive: bool) -> Iterator[bool]:
    """Hold the lock of `target` (`lock_path`) in the block: exclusive to replace the file (and what goes with it,
    such as its digest), shared to read it. Yields whether a lock is held: none where the lock file can neither
    be created nor opened (a read-only folder, where no one can replace the file either) or the file system
    has no locks, so reading a valid file never needs write access."""
    fd = _open_lock_file(lock_path(target))
    if fd is None:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:  # ENOLCK and kin: a file system without locks
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(lock: Path) -> int | None:
    """A descriptor of `lock`, created if need be: read-write where possible (NFS locks need it), read-only where
    the file exists in a folder we cannot write; None when neither works."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(lock, flags, 0o666)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, what: str) -> Iterator[None]:
    """One process at a time in the block (training a network, fitting a cache): a second one says so and
    waits, then finds the work done. The OS releases the lock if its holder dies. In an existing folder where
    the lock cannot be created (read-only), the block runs without it: no one can write there, so a block that
    only reads (every checkpoint present) works, and one that writes fails with its own one-line error."""
    lock_file = Path(lock_file)
    _ensure(lock_file.parent)
    fd = _open_lock_file(lock_file)
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[lock] another process is {what}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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

"""Integrity of the files this project saves (caches, checkpoints): a sha256 digest beside each, checked on load.

Why: `torch.load` never checks the CRCs of its zip archive, so one flipped bit in a cache or a checkpoint
loads silently and changes every result downstream (a flipped byte in the statistics cache once gave
tr Sigma = 226.96 instead of 231.21). Valid files with wrong contents (eigenvalues x2, a mean of 10 entries)
were used as they were, too.

Design:
- `save(obj, path)` writes the file and its sha256 sidecar `<name>.sha256` (one line in `sha256sum` format, so
  `sha256sum -c` checks it as well) to temporaries, then moves both into place under the file's exclusive lock
  (`paths.file_lock`, on `.<name>.lock`); `load` reads the file and its sidecar under the shared lock, so two
  writers and readers of one cache never see a file with another write's digest. The old sidecar goes before the
  new file lands, so a sidecar never describes an older file; a kill between the two moves leaves a file without a
  digest, handled as a legacy file (below). In a read-only folder the lock cannot be created and is skipped (no one
  can write there). A full disk is an `OSError` (ENOSPC) naming the file, also where torch reports it as a
  `RuntimeError` from its zip writer.
- `load(path, check)` reads the file once, compares the sha256 of those bytes with the sidecar, unpickles the
  same bytes (weights only) and runs `check`, a cheap content test (shapes, keys, invariants) that raises
  `IntegrityError`. Hashing runs at ~1.5 GB/s: 0.2 s for the largest cache (250 MB).
- Legacy files, written before digests existed, have no sidecar. Such a file is accepted when its zip CRCs
  (written by torch, never checked by it) and `check` pass, and its digest is then recorded, once (best
  effort: a read-only folder only skips the recording). The existing caches are verified, never recomputed.

A cache goes through `load_cache`: a failure is one line and the caller recomputes it. A checkpoint failure
becomes `lib.diffusion.checkpoints.CheckpointError`, saying what to do.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from lib.core import paths
from lib.core.errors import ReproError

DIGEST_SUFFIX = ".sha256"
_CHUNK = 1 << 24


class IntegrityError(ReproError, ValueError):
    """A saved file that fails its digest, its zip CRCs or a content check; the message is one line."""


def sidecar(path: Path) -> Path:
    """`<name>.sha256` next to `path`."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def save(obj: Any, target: Path) -> None:
    """`torch.save(obj)` to `target` and its digest to the sidecar, both moved into place under the file's lock."""
    target = Path(target)
    digest_file = sidecar(target)
    with paths.temporary_beside(target) as tmp, paths.temporary_beside(digest_file) as tmp_digest:
        _torch_save(obj, tmp, target)
        digest = file_digest(tmp)
        tmp_digest.write_text(f"{digest}  {target.name}\n")
        with paths.file_lock(target, exclusive=True):
            digest_file.unlink(missing_ok=True)
            paths.publish(tmp, target)
            paths.publish(tmp_digest, digest_file)


#: What torch's zip writer says when a write fails (a full disk, mostly), instead of raising an OSError.
TORCH_WRITE_FAILURES = ("enforce fail at inline_container.cc", "file write failed")


def _torch_save(obj: Any, tmp: Path, target: Path) -> None:
    """`torch.save(obj, tmp)`; torch's `RuntimeError` for a failed write becomes `OSError(ENOSPC)` naming `target`."""
    try:
        torch.save(obj, tmp)
    except RuntimeError as err:
        if not any(text in str(err) for text in TORCH_WRITE_FAILURES):
            raise
        raise OSError(errno.ENOSPC, "No space left on device (torch could not write the file)", str(target)) from err


def load(path: Path, check: Callable[[Any], None] | None = None, **load_kwargs: Any) -> Any:
    """The object saved at `path` (weights only), once its digest and `check` pass; else `IntegrityError`."""
    path = Path(path)
    with paths.file_lock(path, exclusive=False):
        blob, written = _read_with_stat(path)
        recorded = recorded_digest(path)
    digest = hashlib.sha256(blob).hexdigest()
    if recorded is None:
        _check_zip_crcs(blob, path)
    elif digest != recorded:
        raise IntegrityError(f"the sha256 of {path.name} differs from the one recorded in {sidecar(path).name} "
                             "(the file is corrupt)")
    obj = torch.load(io.BytesIO(blob), weights_only=True, **load_kwargs)
    if check is not None:
        check(obj)
    if recorded is None:
        _record_legacy_digest(path, digest, written)
    return obj


def _read_with_stat(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of `path` and the status of the file they were read from (to tell a later write apart)."""
    with open(path, "rb") as fh:
        return fh.read(), os.fstat(fh.fileno())


def load_cache(path: Path, check: Callable[[Any], None] | None, who: str, then: str) -> Any | None:
    """The verified cache at `path`, or None when there is none or it fails (`load`, then `check`): a failure
    is reported in one line, `<who> <name> rejected (<why>); <then>`, and the caller rebuilds the cache."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path, check)
    except Exception as exc:  # corrupt (digest, CRC), inconsistent contents, not a torch file...
        print(f"{who} {path.name} rejected ({one_line(exc)}); {then}", file=sys.stderr)
        return None


def recorded_digest(path: Path) -> str | None:
    """The hex digest in the sidecar of `path`, None when there is none (a file older than digests)."""
    try:
        text = sidecar(path).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"digest file {sidecar(path).name} is unreadable ({type(exc).__name__})") from None
    token = text.split(maxsplit=1)[0] if text.strip() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", token):
        raise IntegrityError(f"digest file {sidecar(path).name} holds no sha256")
    return token


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, at most ~160 characters: what a one-line report shows."""
    detail = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a file, read in chunks: the digest every sidecar records."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _record_legacy_digest(path: Path, digest: str, read: os.stat_result) -> None:
    """Record `digest` for the legacy file `path` (no sidecar) read as `read`, under its lock and only if it is
    still that file without a sidecar (a writer may have replaced it since). Best effort: a read-only folder only
    skips the recording."""
    try:
        with paths.temporary_beside(sidecar(path)) as tmp_digest, paths.file_lock(path, exclusive=True):
            now = os.stat(path)
            if sidecar(path).exists() or (now.st_ino, now.st_size, now.st_mtime_ns) != (
                    read.st_ino, read.st_size, read.st_mtime_ns):
                return
            tmp_digest.write_text(f"{digest}  {path.name}\n")
            paths.publish(tmp_digest, sidecar(path))
    except OSError as exc:  # a read-only folder: the file stays usable, it is verified by CRC next time too
        print(f"[integrity] could not record the digest of {path.name} ({type(exc).__name__})", file=sys.stderr)


def _check_zip_crcs(blob: bytes, path: Path) -> None:
    """The CRC32 of every member of a torch zip file: the only check a file without a digest can get."""
    try:
        bad = zipfile.ZipFile(io.BytesIO(blob)).testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise IntegrityError(f"{path.name} is not a readable torch file ({one_line(exc)})") from None
    if bad is not None:
        raise IntegrityError(f"{path.name}: CRC mismatch in member {bad} (the file is corrupt)")


# --------------------------------------------------------------------------- content checks


def require(condition: bool, what: str) -> None:
    """Raise `IntegrityError(what)` unless `condition`."""
    if not condition:
        raise IntegrityError(what)


def check_keys(obj: Any, keys: Iterable[str], what: str) -> None:
    """`obj` is a dict holding every one of `keys`."""
    require(isinstance(obj, dict), f"{what} is a {type(obj).__name__}, not a dict")
    missing = sorted(set(keys) - set(obj))
    require(not missing, f"{what} lacks {', '.join(missing)}")


STATS_KEYS = ("mean", "cov", "eigvals", "eigvecs", "n", "shape")
MIXTURE_KEYS = ("means", "counts", "eigvals", "eigvecs", "shape")


def check_stats(fields: Any, n: int, shape: tuple[int, ...], rtol: float = 1e-6) -> None:
    """Dataset statistics of `n` images of `shape`: sizes, finite values, eigenvalues sorted, non-negative
    and summing to tr Sigma (a corrupt or doubled spectrum changes every analytic model built on it)."""
    check_keys(fields, STATS_KEYS, "statistics cache")
    got = (int(fields["n"]), tuple(fields["shape"]))
    shape = tuple(shape)
    require(got == (n, shape), f"statistics of {got[0]} images of shape {got[1]}, expected {n} of {shape}")
    d = math.prod(shape)
    for name, expected in (("mean", (d,)), ("cov", (d, d)), ("eigvals", (d,)), ("eigvecs", (d, d))):
        have = tuple(fields[name].shape)
        require(have == expected, f"{name} has shape {have}, expected {expected}")
    require(all(bool(torch.isfinite(fields[k]).all()) for k in ("mean", "cov", "eigvals")), "non-finite statistics")
    eig = fields["eigvals"]
    require(bool((eig[:-1] >= eig[1:]).all()), "eigenvalues are not in decreasing order")
    require(float(eig[-1]) >= -rtol * max(float(eig[0]), 0.0), f"negative eigenvalue {float(eig[-1]):.3g}")
    total, trace = float(eig.sum()), float(torch.diagonal(fields["cov"]).sum())
    require(abs(total - trace) <= rtol * abs(trace), f"eigenvalues sum to {total:.6g}, tr Sigma is {trace:.6g}")


def check_mixture(fields: Any, n_components: int) -> None:
    """A mixture fit of `n_components` clusters: the same K in every field, eigenpairs of matching sizes."""
    check_keys(fields, MIXTURE_KEYS, "mixture fit")
    means, counts, eigvals, eigvecs = (fields[k] for k in ("means", "counts", "eigvals", "eigvecs"))
    ks = (means.shape[0], counts.shape[0], len(eigvals), len(eigvecs))
    require(len(set(ks)) == 1 and ks[0] == n_components,
            f"inconsistent K: means {ks[0]}, counts {ks[1]}, eigvals {ks[2]}, eigvecs {ks[3]}; expected {n_components}")
    d = math.prod(fields["shape"])
    expected = (n_components, d)
    require(tuple(means.shape) == expected, f"means of shape {tuple(means.shape)}, expected {expected}")
    require(bool((counts > 0).all()), "a cluster without members")
    require(all(tuple(v.shape) == (d, len(w)) for w, v in zip(eigvals, eigvecs, strict=True)),
            "eigenvector and eigenvalue counts differ")
    values = torch.cat([w.reshape(-1) for w in eigvals])
    require(bool(torch.isfinite(values).all() and (values >= 0).all()), "negative or non-finite eigenvalues")


def check_checkpoint(state: Any, keys: Iterable[str]) -> None:
    """A training checkpoint: every key the writer saves, and one loss per step done."""
    check_keys(state, keys, "checkpoint")
    require(len(state["losses"]) == int(state["step"]),
            f"{len(state['losses'])} losses for step {int(state['step'])}")


# --------------------------------------------------------------------------- resumed training


def thread_changes(meta: dict, step: int, threads: int, tag: str, warn: bool = True) -> list[dict]:
    """The run's record of thread-count changes, extended when a resume at `step` uses `threads` torch threads
    but the checkpoint was written with another count: CPU kernels split reductions by thread, so the run
    is no longer bit-identical to an uninterrupted one (3e-4 in the final weights). Warned in one line and
    recorded in the checkpoint metadata, not refused: the run is still a valid training run. `warn=False` records
    without warning (the data-parallel ranks other than 0)."""
    changes = [dict(change) for change in meta.get("thread_changes", [])]
    before = meta.get("threads")
    if before is not None and int(before) != threads:
        if warn:
            print(f"[train] warning: resuming {tag} at step {step} with {threads} threads, but it ran with {before}: "
                  "not bit-identical to an uninterrupted run (recorded in the checkpoint metadata)", file=sys.stderr)
        changes.append({"step": int(step), "from": int(before), "to": int(threads)})
    return changes

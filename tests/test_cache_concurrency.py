"""Two writers and a reader on one cache file (issue 30): the reader never sees a file with another write's digest,
and the file and its sidecar agree at the end. Before the per-file lock (`lib.core.paths.file_lock`) the reader
rejected thousands of loads per run as corrupt and the sidecar could end up describing the other writer's file."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
from pathlib import Path
from types import ModuleType

import pytest
import torch

from lib.core import integrity

WRITES = 300  # per writer
ELEMENTS = 256


def write_many(module: ModuleType, path: str, writer: int, count: int) -> None:
    """`count` saves of distinct small tensors to `path` through `module.save` (a writer process)."""
    torch.set_num_threads(1)
    for k in range(count):
        module.save({"values": torch.full((ELEMENTS,), float(writer * count + k))}, Path(path))


def read_until(module: ModuleType, path: str, done, rejected) -> None:
    """Load `path` through `module.load` until `done` is set, counting the loads rejected (a reader process)."""
    torch.set_num_threads(1)
    while not done.is_set():
        try:
            module.load(Path(path))
        except Exception:  # IntegrityError, or a half-visible file: every kind of rejection counts
            with rejected.get_lock():
                rejected.value += 1


def race(module: ModuleType, path: Path, writes: int = WRITES) -> tuple[int, bool]:
    """Two writers and a reader on `path` with `module` (`lib.core.integrity`, or an older copy of it):
    (loads rejected, whether the file and its sidecar agree at the end)."""
    context = multiprocessing.get_context("fork")
    module.save({"values": torch.zeros(ELEMENTS)}, path)
    done, rejected = context.Event(), context.Value("i", 0)
    reader = context.Process(target=read_until, args=(module, str(path), done, rejected))
    writers = [context.Process(target=write_many, args=(module, str(path), i, writes)) for i in range(2)]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    done.set()
    reader.join(timeout=60)
    assert [p.exitcode for p in (*writers, reader)] == [0, 0, 0]
    agree = integrity.recorded_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    return rejected.value, agree


def test_two_writers_and_a_reader_never_see_a_mismatch(tmp_path):
    rejected, agree = race(integrity, tmp_path / "cache.pt")
    assert rejected == 0, f"the reader rejected {rejected} loads"
    assert agree, "the file and its sidecar disagree"


def test_every_write_leaves_only_the_file_its_sidecar_and_its_lock(tmp_path):
    path = tmp_path / "cache.pt"
    integrity.save({"values": torch.ones(3)}, path)
    integrity.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.pt.lock", "cache.pt", "cache.pt.sha256"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    from lib.core import cli

    def full(obj, where):
        Path(where).write_bytes(b"PK half")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    target = tmp_path / "cache.pt"
    with pytest.raises(OSError) as raised:
        integrity.save({"values": torch.ones(3)}, target)
    err = raised.value
    assert err.errno == errno.ENOSPC and err.filename == str(target)
    assert cli.one_line(err) == f"no space left on the device while writing {target}: free some space and run " \
                                "the command again"
    assert cli.exit_code(err) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no temporary is left behind"


def test_other_torch_errors_pass_unchanged(tmp_path, monkeypatch):
    def broken(obj, where):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="^cannot pickle this$"):
        integrity.save({"values": torch.ones(3)}, tmp_path / "cache.pt")

from __future__ import annotations

import pytest

from lib.core import paths


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), paths.atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target], "the temporary file must be cleaned up"
    with paths.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o044, "written files must be readable by others (not mkstemp's 0600)"


def test_repo_root_holds_the_project():
    assert (paths.REPO_ROOT / "pyproject.toml").exists()
    assert (paths.REPO_ROOT / "lib" / "core" / "paths.py").exists()


def test_exclusive_lock_makes_a_second_holder_wait(tmp_path, capfd):
    import threading
    import time

    order = []

    def second():
        with paths.exclusive_lock(tmp_path / "x.lock", "fitting x"):
            order.append("second")

    with paths.exclusive_lock(tmp_path / "x.lock", "fitting x"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("first")
    waiter.join(timeout=10)
    assert order == ["first", "second"]
    assert "another process is fitting x; waiting" in capfd.readouterr().err

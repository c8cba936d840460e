"""lib.prepare runs the cache-filling commands side by side and names the ones that failed."""

from __future__ import annotations

import sys

from lib import prepare


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_commands_run_in_parallel_with_a_share_of_the_cores(tmp_path):
    out = tmp_path / "threads"
    codes = prepare.run_in_parallel({
        "ok": _python(f"import os; open({str(out)!r}, 'w').write(os.environ['REPRO_THREADS'])"),
        "broken": _python("raise SystemExit(3)"),
    }, cores=4)
    assert codes == {"ok": 0, "broken": 3}
    assert out.read_text() == "2"


def test_a_failed_task_fails_the_run_and_is_named(monkeypatch, capsys):
    monkeypatch.setattr(prepare, "tasks", lambda scale: {"smoke network": _python("raise SystemExit(1)"),
                                                         "classifier": _python("pass")})
    assert prepare.main(["--scale", "smoke"]) == 1
    assert "FAILED: smoke network" in capsys.readouterr().err


def test_unknown_scale_is_a_usage_error(capsys):
    assert prepare.main(["--scale", "huge"]) == 2
    assert "smoke, default, paper" in capsys.readouterr().err


def test_the_tasks_build_the_network_and_the_classifier():
    commands = prepare.tasks("smoke")
    assert any("lib.train" in cmd and "smoke" in cmd for cmd in commands.values())
    assert any("load_classifier" in " ".join(cmd) for cmd in commands.values())

"""Threads follow the idle cores; bf16 is detected from the CPU's flags (lib.runtime)."""

from __future__ import annotations

import os

import pytest

from lib.core import devices


def test_cpu_times_read_idle_and_total(tmp_path):
    (tmp_path / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert devices._cpu_times(str(tmp_path / "stat")) == (850, 1000)


@pytest.mark.parametrize(("busy_jiffies", "expected"), [(0, 1.0), (100, 0.5), (200, 0.0)])
def test_idle_fraction_is_the_idle_share_between_two_reads(tmp_path, monkeypatch, busy_jiffies, expected):
    stat = tmp_path / "stat"
    snapshots = iter([(0, 0, 0, 0, 0, 0, 0, 0), (busy_jiffies, 0, 0, 200 - busy_jiffies, 0, 0, 0, 0)])
    original = devices._cpu_times

    def cpu_times(path="/proc/stat"):
        stat.write_text("cpu  " + " ".join(map(str, next(snapshots))) + "\n")
        return original(str(stat))

    monkeypatch.setattr(devices, "_cpu_times", cpu_times)
    assert devices.idle_fraction(interval=0.0) == pytest.approx(expected)


def test_unreadable_stat_counts_as_idle(tmp_path):
    assert devices.idle_fraction(interval=0.0, stat=str(tmp_path / "missing")) == 1.0


@pytest.mark.parametrize(("idle", "expected"), [(1.0, 2), (0.9, 2), (0.5, 1), (0.0, 1)])
def test_default_threads_leave_busy_cores_alone(monkeypatch, idle, expected):
    monkeypatch.delenv("REPRO_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(devices, "idle_fraction", lambda: idle)
    assert devices.default_threads() == expected


def test_repro_threads_overrides_the_measurement(monkeypatch):
    monkeypatch.setenv("REPRO_THREADS", "3")
    monkeypatch.setattr(devices, "idle_fraction", lambda: 0.0)
    assert devices.default_threads() == 3


def test_native_bf16_from_the_cpu_flags(tmp_path):
    amd = tmp_path / "avx2"
    amd.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n")
    assert not devices.native_bf16(str(amd))
    assert devices.native_bf16(str(sapphire))
    assert not devices.native_bf16(str(tmp_path / "missing"))


# --------------------------------------------------------------------------- bad settings (issue 14, item 7)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "2 threads"])
def test_bad_repro_threads_is_a_one_line_error_naming_what_is_valid(monkeypatch, value):
    monkeypatch.setenv("REPRO_THREADS", value)
    with pytest.raises(ValueError) as err:
        devices.default_threads()
    message = str(err.value)
    assert "REPRO_THREADS must be a positive integer" in message and repr(value) in message
    assert "\n" not in message


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" 2 ", 2), (4, 4)])
def test_positive_int_accepts_positive_integers(value, expected):
    assert devices.positive_int(value, "x") == expected


@pytest.mark.parametrize("value", [0, -3, 1.5, True, None, "", "+-1"])
def test_positive_int_refuses_the_rest(value):
    with pytest.raises(ValueError, match="x must be a positive integer"):
        devices.positive_int(value, "x")


def test_cuda_on_a_machine_without_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here: use cpu"):
        devices.resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        devices.resolve_device("gpu")
    assert devices.resolve_device("cpu").type == "cpu"

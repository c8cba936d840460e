"""Devices and threads: which device to use, how many torch threads, whether the CPU has native bf16.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import torch


def pick_device() -> torch.device:
    """CUDA when present (every scale uses it), otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_times(stat: str = "/proc/stat") -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs together since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in Path(stat).read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def idle_fraction(interval: float = 0.25, stat: str = "/proc/stat") -> float:
    """The share of the machine's CPU time left idle over `interval` seconds (1.0 where unknown)."""
    try:
        idle0, total0 = _cpu_times(stat)
        time.sleep(interval)
        idle1, total1 = _cpu_times(stat)
    except (OSError, ValueError, IndexError):
        return 1.0
    return (idle1 - idle0) / (total1 - total0) if total1 > total0 else 1.0


def default_threads(processes: int = 1) -> int:
    """Torch intra-op threads: `$REPRO_THREADS`, else the cores this process may use that are idle now, shared
    by the `processes` that start together (data-parallel training): max(1, idle cores // processes) each.

    Threads that outnumber the free cores wait on each other at every parallel region: beside one busy
    core, two threads ran small networks several times slower than one. So the cores other processes
    keep busy (measured over a quarter of a second) are left to them; at least one thread.
    """
    env = os.environ.get("REPRO_THREADS", "").strip()
    if env:
        return positive_int(env, "REPRO_THREADS", "the number of torch threads, e.g. REPRO_THREADS=2")
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, round(cores * idle_fraction())) // processes)


def positive_int(value: object, name: str, meaning: str = "") -> int:
    """`value` (an int or its decimal text) as an int >= 1, else a one-line ValueError naming `name`.

    A bool, a float such as 1.5, text such as "abc", zero and negative numbers are refused: none of
    them means "all cores" or "unlimited".
    """
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and re.fullmatch(r"\+?[0-9]+", text):
        text = int(text)
    if isinstance(text, int) and not isinstance(text, bool) and text >= 1:
        return text
    raise ValueError(f"{name} must be a positive integer{f' ({meaning})' if meaning else ''}, got {value!r}")


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """`device` as a torch.device (None: `pick_device()`), or a one-line ValueError when it is not a device
    name or not present here (CUDA asked for on a machine without it)."""
    if device is None:
        return pick_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use cpu or cuda") from exc
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {str(resolved)!r} asked for, but CUDA is not available here: use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {str(resolved)!r} asked for, but only {count} CUDA device(s) exist here")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {str(resolved)!r}: use cpu or cuda")
    return resolved


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (the avx512_bf16 or amx_bf16 flag on Linux).

    Without it torch emulates bf16 arithmetic and autocast makes training 10-30x slower than fp32.
    """
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_full_fp32() -> None:
    """Evaluations are fp32: forbid TF32 in CUDA matmuls and convolutions (cuDNN allows it by default)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """Deterministic cuDNN kernels in the block (training): without them a resumed CUDA run drifts (~1e-6 after a
    few steps, seen on an H200); the cost is negligible for networks this small."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved

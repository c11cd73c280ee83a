"""This machine as the bench sees it: its progress lines on stderr, and the load, memory and CPU
that /proc tells."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (MiB) and Threads of a process."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            number = float(value.split()[0])
            out[key] = round(number / 1024, 1) if key != "Threads" else number
    return out


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process, plus the host's busy and total seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
    cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    out["host total"] = sum(cpu) / tick
    out["host busy"] = (sum(cpu) - cpu[3] - cpu[4]) / tick  # minus idle and iowait
    return {k: round(v, 3) for k, v in out.items()}


def cpu_window(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """Who used the CPU between two snapshots: seconds per process and the host's busy share."""
    used = {k: round(after[k] - before[k], 2) for k in after if k in before and "host" not in k}
    total = after["host total"] - before["host total"]
    busy = after["host busy"] - before["host busy"]
    return {
        "window_s": round(seconds, 2),
        "host_busy_pct": round(100 * busy / total, 1) if total else None,
        "cpu_s": dict(sorted(used.items(), key=lambda kv: -kv[1])),
    }

"""The operator under test: ``nightshift run`` as a child process, with its metrics and its /proc
numbers (not named ``operator``: ``python bench/fire.py`` puts bench/ first on sys.path, where
that name would hide the standard library's)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.host import proc_status
from support.metrics import Samples, by_label, delta, parse_metrics, total
from support.ports import free_port
from support.wait import poll


class Operator:
    """``nightshift run`` as a child process, with its metrics and /proc numbers."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.extra_env = env or {}
        self.extra_args = args or []
        self.namespace = namespace
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.started_at = 0.0

    def start(self) -> None:
        exe = Path(sys.executable).parent / "nightshift"
        cmd = [
            str(exe if exe.exists() else shutil.which("nightshift") or "nightshift"),
            "run",
            f"--kubeconfig={self.kubeconfig}",
            "--health-port=0",
            f"--namespace={self.namespace}",
            # The tick tasks fire every few seconds, below the default minimum interval (1m).
            "--min-interval=1s",
        ]
        self.port = free_port()
        cmd.append(f"--metrics-port={self.port}")
        cmd += self.extra_args
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            log.write(f"# {' '.join(cmd)}\n".encode())
            log.flush()
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> Samples | None:
        if not self.alive():
            raise RuntimeError(
                f"the operator exited ({self.proc and self.proc.returncode}); see {self.log_path}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return parse_metrics(r.read().decode(), ("nightshift_",))
        except OSError:
            return None

    def scrape_cost(self) -> dict[str, float]:
        """Size and time of one /metrics scrape."""
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            size = len(r.read())
        return {"bytes": size, "ms": round((time.monotonic() - start) * 1000, 1)}

    def gauge(self, name: str) -> float | None:
        samples = self.metrics()
        return None if samples is None else total(samples, name)

    def calls(self, samples: Samples | None = None) -> dict[str, float]:
        samples = samples if samples is not None else self.metrics() or {}
        return by_label(samples, "nightshift_api_requests_total", "call")

    def wait_tasks(self, count: int, *, timeout: float, interval: float = 0.05) -> float:
        """Wait until nightshift_tasks == count; returns the time.time() it was seen."""
        poll(
            lambda: self.gauge("nightshift_tasks") == count,
            timeout=timeout,
            what=f"nightshift_tasks == {count}",
            interval=interval,
        )
        return time.time()

    def proc_status(self) -> dict[str, float]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_settled(self, *, timeout: float, quiet: float = 2.0, interval: float = 0.25) -> float:
        """Wait until the API call counters have not moved for ``quiet`` s and the process used
        under 10 % of a core meanwhile; returns when it was seen (time.time())."""
        deadline = time.monotonic() + timeout
        last = (self.calls(), self.cpu_seconds(), time.monotonic())
        while time.monotonic() < deadline:
            time.sleep(interval)
            now = (self.calls(), self.cpu_seconds(), time.monotonic())
            if now[0] != last[0]:
                last = now
                continue
            elapsed = now[2] - last[2]
            if elapsed >= quiet:
                if (now[1] - last[1]) / elapsed < 0.1:
                    return time.time()
                last = now
        raise TimeoutError(f"operator not idle after {timeout:.0f} s")

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def profile(self, py_spy: str, out: Path, seconds: float) -> subprocess.Popen[bytes]:
        """Sample this process with py-spy (collapsed stacks, idle frames and threads kept)."""
        return subprocess.Popen(
            [
                py_spy,
                "record",
                f"--pid={self.pid}",
                "--rate=200",
                "--format=raw",
                "--idle",
                "--threads",
                "--nonblocking",
                f"--duration={math.ceil(seconds)}",
                f"--output={out}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    @property
    def identity(self) -> str:
        """The identity the operator holds Leases under (no POD_NAME here: host-pid)."""
        return f"{socket.gethostname()}-{self.pid}"


def skew_histogram(before: Samples, after: Samples) -> dict[str, Any]:
    """The operator's own nightshift_fire_skew_seconds over the phase."""
    name = "nightshift_fire_skew_seconds"
    count = total(after, name + "_count") - total(before, name + "_count")
    seconds = total(after, name + "_sum") - total(before, name + "_sum")
    buckets = delta(
        by_label(after, name + "_bucket", "le"), by_label(before, name + "_bucket", "le")
    )
    return {
        "count": count,
        "mean_ms": round(seconds / count * 1000, 1) if count else None,
        "buckets_le": dict(sorted(buckets.items(), key=lambda kv: float(kv[0]))),
    }

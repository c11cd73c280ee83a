"""`nightshift run` as a real process against the local control plane: start, kill, restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.certs import self_signed
from support.ports import free_port


class Operator:
    """`nightshift run` in a subprocess, watching the given namespaces."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        *,
        namespaces: list[str],
        webhook: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        name: str = "operator",
        min_interval: str | None = "1s",
    ) -> None:
        """``min_interval``: the operator's --min-interval (the tests' schedules are seconds
        apart, below the default of 1m); None: the default."""
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.namespaces = namespaces
        self.webhook = webhook
        self.env = env or {}
        self.extra_args = extra_args or []
        if min_interval is not None:
            self.extra_args = [f"--min-interval={min_interval}", *self.extra_args]
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.webhook_port = free_port() if webhook else 0
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self, **env: str) -> Operator:
        self.starts += 1
        args = [
            sys.executable, "-m", "nightshift", "run", "--kubeconfig", str(self.kubeconfig),
            "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        args += self.extra_args
        if self.webhook:
            cert, key = self_signed(self.log_dir)
            args += [
                "--webhook-port", str(self.webhook_port), "--webhook-addr", "127.0.0.1",
                "--webhook-host", "127.0.0.1", "--webhook-cert", str(cert),
                "--webhook-key", str(key), "--webhook-manage", self.webhook,
            ]  # fmt: skip
        environment = dict(os.environ)
        environment.pop("NIGHTSHIFT_FAULT", None)  # only a test that asks for a fault gets one
        environment.update(self.env)
        environment.update(env)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"operator exited early:\n{self.log_path.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.metrics_port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"operator not ready in {timeout} s:\n{self.log_path.read_text()}")
        # The metrics port opens before the watches start; give kopf a moment to list.
        time.sleep(1.0)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def metrics(self) -> str:
        """The metrics endpoint's text (``support.metrics.parse_metrics`` reads it)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/") as response:
            text: str = response.read().decode()
            return text

    def health(self, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of the operator's liveness (or readiness) endpoint."""
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def logs(self) -> str:
        return "\n".join(
            (self.log_dir / f"{self.name}-{i}.log").read_text() for i in range(1, self.starts + 1)
        )

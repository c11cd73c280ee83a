"""Integration-test support: a real local control plane (hack/cluster/cluster.py).

The session-scoped `cluster` fixture reuses a healthy cluster at $NIGHTSHIFT_CLUSTER_DIR (default
<repo>/.cluster, i.e. the one `make cluster-up` starts); otherwise it starts its own in a
temporary state directory and stops it when the session ends. Binaries must be built already
(`make binaries`): a cold build takes longer than the test timeout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PY = REPO / "hack" / "cluster" / "cluster.py"
INTEGRATION_DIR = Path(__file__).resolve().parent

T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an `integration` test."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cluster_py(
    command: str, state_dir: Path, *, extra_env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Runs hack/cluster/cluster.py COMMAND against STATE_DIR with the current Python."""
    env = {**os.environ, "NIGHTSHIFT_CLUSTER_DIR": str(state_dir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(CLUSTER_PY), command],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def wait_for(
    fn: Callable[[], T | bool | None], *, timeout: float, what: str, interval: float = 0.2
) -> T:
    """Polls FN until it returns something other than None/False; fails after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result is not None and result is not False:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    server: str
    owned: bool  # started by this test session (and stopped at its end)

    @classmethod
    def from_state(cls, state_dir: Path, *, owned: bool) -> Cluster:
        data = json.loads((state_dir / "state.json").read_text())
        return cls(
            state_dir=state_dir,
            kubeconfig=state_dir / "kubeconfig",
            bin_dir=Path(data["bin_dir"]),
            server=data["server"],
            owned=owned,
        )

    wait_for = staticmethod(wait_for)

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools run against this cluster: its kubeconfig, built binaries first."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl against this cluster."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and res.returncode != 0:
            raise KubectlError(res.returncode, cmd, res.stdout, res.stderr)
        return res

    def get(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any], namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def wait_for_job_finished(
        self, name: str, namespace: str, timeout: float = 60
    ) -> tuple[str, dict[str, Any]]:
        """Waits until Job NAME has a Complete or Failed condition; returns (type, job)."""

        def finished() -> tuple[str, dict[str, Any]] | None:
            job = self.get("job", name, "-n", namespace)
            for cond in job.get("status", {}).get("conditions") or []:
                if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
                    return cond["type"], job
            return None

        return wait_for(finished, timeout=timeout, what=f"Job {namespace}/{name} to finish")


def _start_own_cluster() -> Cluster:
    state_dir = Path(tempfile.mkdtemp(prefix="nightshift-cluster-"))
    res = run_cluster_py("up", state_dir)
    if res.returncode != 0:
        run_cluster_py("down", state_dir)
        pytest.fail(
            f"could not start the local control plane (state in {state_dir}):\n{res.stderr}",
            pytrace=False,
        )
    return Cluster.from_state(state_dir, owned=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local control plane: reused when already up at the default state dir, else started."""
    default_dir = Path(os.environ.get("NIGHTSHIFT_CLUSTER_DIR") or REPO / ".cluster").resolve()
    if run_cluster_py("status", default_dir).returncode == 0:
        yield Cluster.from_state(default_dir, owned=False)
        return
    own = _start_own_cluster()
    try:
        yield own
    finally:
        res = run_cluster_py("down", own.state_dir)
        if res.returncode == 0:
            shutil.rmtree(own.state_dir, ignore_errors=True)
        else:
            print(f"cluster teardown failed; state left in {own.state_dir}:\n{res.stderr}")


RunClusterPy = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def cluster_py() -> RunClusterPy:
    """`cluster_py(command, state_dir, extra_env=None)` runs hack/cluster/cluster.py."""
    return run_cluster_py


def _dns_label(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its `default` ServiceAccount ready) deleted after the test."""
    name = f"t-{_dns_label(request.node.name, 48)}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "test.nightshift.dev/owner=pytest")
    # Pods are rejected until the ServiceAccount controller has created `default`.
    wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=30,
        what=f"ServiceAccount {name}/default",
    )
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    """The generated CRDs (ScheduledTask, Calendar, Backfill), installed and Established."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{path.stem}")

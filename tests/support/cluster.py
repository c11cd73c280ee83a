"""The local control plane (hack/cluster/cluster.py): a handle on a running one, and starting or
stopping one of our own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.wait import poll

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PY = REPO / "hack" / "cluster" / "cluster.py"

# The real node's label and taint (hack/cluster/realnode.py): pods that must run for real select
# the node with the label and tolerate the taint.
REAL_NODE = {"test.nightshift.dev/node": "real"}
REAL_NODE_TOLERATIONS = [
    {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
    for key, value in REAL_NODE.items()
]
# The real node's bridge address (realnode.GATEWAY): pods on it reach the machine there, where a
# test's HTTP receiver must listen to be reached from a pod (127.0.0.1 is the pod's own).
REAL_NODE_GATEWAY = "10.245.0.1"


def want_real_node() -> bool:
    """Whether the session wants a cluster with a real node (NIGHTSHIFT_NODE=real)."""
    return os.environ.get("NIGHTSHIFT_NODE") == "real"


def on_real_node(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ScheduledTask whose Job pods select the real node and tolerate its taint."""
    out: dict[str, Any] = json.loads(json.dumps(manifest))
    template = out["spec"]["jobTemplate"].setdefault("spec", {}).setdefault("template", {})
    pod_spec = template.setdefault("spec", {})
    pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **REAL_NODE}
    pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *REAL_NODE_TOLERATIONS]
    return out


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cluster_py(
    command: str,
    state_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Runs hack/cluster/cluster.py COMMAND against STATE_DIR with the current Python."""
    env = {**os.environ, "NIGHTSHIFT_CLUSTER_DIR": str(state_dir), **(extra_env or {})}
    env.pop("NIGHTSHIFT_NODE", None)  # `up` gets --node explicitly
    return subprocess.run(
        [sys.executable, str(CLUSTER_PY), command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


RunClusterPy = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    server: str
    owned: bool  # started by this test session (and stopped at its end)
    node_bin_dir: Path | None = None  # the real node's binaries (ctr), when it has one

    @classmethod
    def from_state(cls, state_dir: Path, *, owned: bool) -> Cluster:
        data = json.loads((state_dir / "state.json").read_text())
        node_bin = data.get("node_bin_dir") if data.get("node") == "real" else None
        return cls(
            state_dir=state_dir,
            kubeconfig=state_dir / "kubeconfig",
            bin_dir=Path(data["bin_dir"]),
            server=data["server"],
            owned=owned,
            node_bin_dir=Path(node_bin) if node_bin else None,
        )

    @property
    def real_node(self) -> bool:
        return self.node_bin_dir is not None

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools run against this cluster: its kubeconfig, built binaries first."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl against this cluster (``timeout`` None: no limit)."""
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

        return poll(finished, timeout=timeout, what=f"Job {namespace}/{name} to finish")


class ClusterError(RuntimeError):
    """`cluster.py up` failed (and `down` has cleaned up after it)."""

    def __init__(self, state_dir: Path, stderr: str) -> None:
        super().__init__(f"cluster.py up failed (state in {state_dir}):\n{stderr}")
        self.state_dir = state_dir
        self.stderr = stderr


def start_cluster(state_dir: Path, *, args: tuple[str, ...] = (), timeout: float = 900) -> Cluster:
    """`cluster.py up ARGS` in STATE_DIR: the cluster, owned by the caller. On failure `down`
    runs, and ClusterError carries `up`'s stderr."""
    res = run_cluster_py("up", state_dir, args=args, timeout=timeout)
    if res.returncode != 0:
        run_cluster_py("down", state_dir)
        raise ClusterError(state_dir, res.stderr)
    return Cluster.from_state(state_dir, owned=True)


def stop_cluster(state_dir: Path, *, remove: bool) -> None:
    """`cluster.py down`; then the state directory is removed if ``remove``. A failed `down`
    leaves it and says so."""
    res = run_cluster_py("down", state_dir)
    if res.returncode != 0:
        print(f"cluster teardown failed; state left in {state_dir}:\n{res.stderr}")
    elif remove:
        shutil.rmtree(state_dir, ignore_errors=True)

"""The local control plane does what the operator's tests rely on (docs/local-cluster.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster, RunClusterPy
from support.wait import poll

K8S_VERSION = "v1.36.3"
IMAGE = "busybox:1.36"  # never pulled: KWOK only pretends to run containers


def job_manifest(
    name: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "command": ["true"]}],
                },
            },
        },
    }


def job_pods(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={name}"
    )["items"]
    return items


def terminated_state(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]
    assert set(state) == {"terminated"}, state
    return state["terminated"]  # type: ignore[no-any-return]


def condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in job["status"]["conditions"] if c["type"] == type_)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------
# The control plane itself


def test_server_and_client_are_the_built_version(cluster: Cluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION


def test_env_puts_the_built_kubectl_first(cluster: Cluster, cluster_py: RunClusterPy) -> None:
    res = cluster_py("env", cluster.state_dir)
    assert res.returncode == 0, res.stderr
    # What `eval "$(hack/cluster/cluster.py env)"` does in a user's shell.
    script = res.stdout + 'command -v kubectl; echo "$KUBECONFIG"\n'
    shell = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    kubectl_path, kubeconfig = shell.stdout.split()
    assert Path(kubectl_path) == cluster.bin_dir / "kubectl"
    assert Path(kubeconfig) == cluster.kubeconfig


def test_two_untainted_ready_fake_nodes(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes", "-l", "type=kwok")["items"]}
    assert set(nodes) == {"kwok-node-0", "kwok-node-1"}
    for node in nodes.values():
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert not node["spec"].get("taints")
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True"
        capacity = node["status"]["capacity"]
        assert (capacity["pods"], capacity["memory"]) == ("10k", "4Ti")


# ---------------------------------------------------------------------------------------------
# Jobs and the KWOK pod annotations


def test_plain_job_completes(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job_manifest("plain"), namespace)
    kind, _ = cluster.wait_for_job_finished("plain", namespace, timeout=30)
    assert kind == "Complete"
    (pod,) = job_pods(cluster, "plain", namespace)
    assert pod["status"]["phase"] == "Succeeded"
    assert terminated_state(pod)["exitCode"] == 0


def test_exit_code_annotation_fails_the_pod_with_that_code(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(job_manifest("exit3", {"test.nightshift.dev/exit-code": "3"}), namespace)
    kind, job = cluster.wait_for_job_finished("exit3", namespace, timeout=30)
    assert kind == "Failed"
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    (pod,) = job_pods(cluster, "exit3", namespace)
    assert pod["status"]["phase"] == "Failed"
    terminated = terminated_state(pod)
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"


def test_message_annotation_is_the_termination_message(cluster: Cluster, namespace: str) -> None:
    annotations = {
        "test.nightshift.dev/exit-code": "7",
        "test.nightshift.dev/message": 'disk full: "/data" (ENOSPC)',
        "test.nightshift.dev/run-for": "2s",
    }
    started = time.monotonic()
    cluster.apply(job_manifest("msg", annotations), namespace)
    kind, _ = cluster.wait_for_job_finished("msg", namespace, timeout=30)
    assert time.monotonic() - started >= 2.0  # exit code and message come after run-for
    assert kind == "Failed"
    (pod,) = job_pods(cluster, "msg", namespace)
    terminated = terminated_state(pod)
    assert terminated["exitCode"] == 7
    assert terminated["message"] == 'disk full: "/data" (ENOSPC)'


def test_run_for_keeps_the_pod_running_that_long(cluster: Cluster, namespace: str) -> None:
    started = time.monotonic()
    cluster.apply(job_manifest("slow", {"test.nightshift.dev/run-for": "3s"}), namespace)
    poll(
        lambda: [
            p for p in job_pods(cluster, "slow", namespace) if p["status"]["phase"] == "Running"
        ],
        timeout=30,
        what="the pod to be Running",
    )
    kind, _ = cluster.wait_for_job_finished("slow", namespace, timeout=30)
    elapsed = time.monotonic() - started
    assert kind == "Complete"
    assert 3.0 <= elapsed < 20.0, elapsed


def test_run_forever_until_the_active_deadline(cluster: Cluster, namespace: str) -> None:
    manifest = job_manifest(
        "forever", {"test.nightshift.dev/run-for": "forever"}, activeDeadlineSeconds=3
    )
    cluster.apply(manifest, namespace)
    phases_before_deadline: set[str] = set()

    def failed() -> dict[str, Any] | None:
        job: dict[str, Any] = cluster.get("job", "forever", "-n", namespace)
        if any(c["type"] == "Failed" for c in job.get("status", {}).get("conditions") or []):
            return job
        phases_before_deadline.update(
            p["status"].get("phase", "?") for p in job_pods(cluster, "forever", namespace)
        )
        return None

    job = poll(failed, timeout=30, what="the Job to fail")
    assert "Running" in phases_before_deadline
    assert phases_before_deadline <= {"Pending", "Running"}
    failure = condition(job, "Failed")
    assert failure["reason"] == "DeadlineExceeded"
    assert (ts(failure["lastTransitionTime"]) - ts(job["status"]["startTime"])).seconds >= 3
    # The Job controller deletes the still-running pod; KWOK finishes the deletion.
    poll(lambda: not job_pods(cluster, "forever", namespace), timeout=30, what="the pod to go")


def test_cronjob_controller_creates_jobs(cluster: Cluster, namespace: str) -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "every-minute"},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {"spec": job_manifest("unused")["spec"]},
        },
    }
    cluster.apply(cronjob, namespace)

    def owned_job() -> dict[str, Any] | None:
        jobs: list[dict[str, Any]] = cluster.get("jobs", "-n", namespace)["items"]
        for job in jobs:
            owners = job["metadata"].get("ownerReferences") or []
            if any(o["kind"] == "CronJob" and o["name"] == "every-minute" for o in owners):
                return job
        return None

    job = poll(owned_job, timeout=90, what="the CronJob to create a Job", interval=1)
    kind, _ = cluster.wait_for_job_finished(job["metadata"]["name"], namespace, timeout=30)
    assert kind == "Complete"


# ---------------------------------------------------------------------------------------------
# cluster.py's own contract, on separate throw-away state directories


@pytest.fixture
def state_dir(cluster_py: RunClusterPy) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nightshift-cluster-test-"))
    try:
        yield path
    finally:
        cluster_py("down", path)
        shutil.rmtree(path, ignore_errors=True)


def recorded_pids(state_dir: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in (state_dir / "pids").glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_broken_start_names_the_component_shows_its_log_and_cleans_up(
    state_dir: Path, cluster_py: RunClusterPy
) -> None:
    res = cluster_py(
        "up", state_dir, extra_env={"NIGHTSHIFT_EXTRA_ARGS_KUBE_APISERVER": "--no-such-flag"}
    )
    assert res.returncode != 0
    assert "FAILED: kube-apiserver exited" in res.stderr
    assert str(state_dir / "logs" / "kube-apiserver.log") in res.stderr
    assert "unknown flag: --no-such-flag" in res.stderr  # the log's tail
    assert recorded_pids(state_dir) == []
    processes = [Path(p).read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline")]
    assert not [c for c in processes if str(state_dir).encode() in c and b"etcd" in c]


def test_up_is_idempotent_and_down_leaves_nothing_running(
    state_dir: Path, cluster_py: RunClusterPy
) -> None:
    first = cluster_py("up", state_dir)
    assert first.returncode == 0, first.stderr
    pids = recorded_pids(state_dir)
    assert len(pids) == 5
    assert all(alive(p) for p in pids)

    again = cluster_py("up", state_dir)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert recorded_pids(state_dir) == pids

    assert cluster_py("status", state_dir).returncode == 0
    down = cluster_py("down", state_dir)
    assert down.returncode == 0, down.stderr
    assert not [p for p in pids if alive(p)]
    assert not (state_dir / "etcd").exists()
    assert cluster_py("status", state_dir).returncode != 0
    assert cluster_py("down", state_dir).returncode == 0

"""nightshift.kube against the real API server: the preconditions and timeouts the controller
relies on (a status write at a stale resourceVersion fails, a namesake never receives an old
status, a delete by uid spares a re-created Job, a silent server costs a timeout, not a thread)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from nightshift.api import Conflict, Unreachable
from nightshift.kube import KubeClient


def task_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": name},
        "spec": {
            "interval": "1h",
            "suspend": True,
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}
            },
        },
    }


@pytest.fixture
def kube(cluster: Any) -> Iterator[KubeClient]:
    """A KubeClient configured from the cluster's kubeconfig (restored afterwards)."""
    before = k8s.Configuration.get_default_copy()
    k8s_config.load_kube_config(config_file=str(cluster.kubeconfig))
    api = KubeClient(timeout=(5, 10))
    try:
        yield api
    finally:
        api.close()
        k8s.Configuration.set_default(before)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_status_write_at_a_stale_resource_version_fails_and_a_namesake_gets_nothing(
    cluster: Any, crd: None, namespace: str, kube: KubeClient
) -> None:
    cluster.apply(task_body("cas"), namespace)
    first = cluster.get("stask", "cas", "-n", namespace)
    rv = first["metadata"]["resourceVersion"]

    written = run(kube.patch_status(namespace, "cas", {"runCount": 1}, rv))
    assert written["status"]["runCount"] == 1
    # The same version again: someone (we) wrote since, so this write must not land.
    with pytest.raises(Conflict):
        run(kube.patch_status(namespace, "cas", {"runCount": 99}, rv))
    assert cluster.get("stask", "cas", "-n", namespace)["status"]["runCount"] == 1

    # Deleted and re-created under the same name: the old task's version never matches.
    newest = written["metadata"]["resourceVersion"]
    cluster.kubectl("delete", "stask", "cas", "-n", namespace)
    cluster.apply(task_body("cas"), namespace)
    with pytest.raises(Conflict):
        run(kube.patch_status(namespace, "cas", {"runCount": 7}, newest))
    assert "runCount" not in (cluster.get("stask", "cas", "-n", namespace).get("status") or {})
    # And a task that is gone answers None.
    cluster.kubectl("delete", "stask", "cas", "-n", namespace)
    assert run(kube.patch_status(namespace, "cas", {"runCount": 1}, newest)) is None
    assert run(kube.get_task(namespace, "cas")) is None


def test_delete_by_uid_spares_a_job_recreated_under_the_same_name(
    cluster: Any, namespace: str, kube: KubeClient
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "precond"},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}
            },
        },
    }
    cluster.apply(job, namespace)
    old_uid = cluster.get("job", "precond", "-n", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "job", "precond", "-n", namespace, "--wait=true")
    cluster.apply(job, namespace)
    new_uid = cluster.get("job", "precond", "-n", namespace)["metadata"]["uid"]
    assert new_uid != old_uid
    run(kube.delete_job(namespace, "precond", old_uid))  # not that Job any more: left alone
    assert cluster.get("job", "precond", "-n", namespace)["metadata"]["uid"] == new_uid
    run(kube.delete_job(namespace, "precond", new_uid))
    assert cluster.kubectl(
        "get", "job", "precond", "-n", namespace, check=False
    ).returncode != 0 or (
        "deletionTimestamp" in cluster.get("job", "precond", "-n", namespace)["metadata"]
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP listener that accepts connections and never says a word (a dead peer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.timeout(60)  # without timeouts the calls below never return
def test_a_server_that_never_answers_costs_a_timeout_not_a_thread(
    cluster: Any, silent_server: int, tmp_path: Path
) -> None:
    config = json.loads(Path(cluster.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent_server}"
    path = tmp_path / "silent.kubeconfig"
    path.write_text(json.dumps(config))
    before = k8s.Configuration.get_default_copy()
    k8s_config.load_kube_config(config_file=str(path))
    api = KubeClient(max_workers=2, timeout=(1, 2), lease_timeout=(1, 1))
    unreachable: list[str] = []
    api.on_unreachable = lambda: unreachable.append("!")

    async def calls() -> list[BaseException | Any]:
        # More calls than threads: each must give up, so the pool never stays blocked.
        return await asyncio.gather(
            *(api.get_task("ns", f"t{i}") for i in range(4)),
            api.read_lease("ns", "lease"),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(calls())
    finally:
        api.close()
        k8s.Configuration.set_default(before)
    assert all(isinstance(r, Unreachable) for r in results), results
    assert len(unreachable) == 5

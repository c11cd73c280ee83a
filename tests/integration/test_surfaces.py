"""Surfaces closed (issue 18): what someone with less than the operator's rights can make it do.

A user who may create pods in a task's namespace can copy a Job's name label onto a pod of their
own, with an exit code and message of their choosing; a user who may write a task's status can
name any Job in `status.active`. Neither may steer the operator: it reads exit codes only from pods
their Job controls, and deletes only Jobs its task controls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Operator, poll
from test_operator import jobs, status, task


@pytest.fixture
def operator(cluster: Any, crd: None, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace])
    op.start()
    try:
        yield op
    finally:
        op.stop()


def pods_of(cluster: Any, namespace: str, job: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}"
    )["items"]
    return items


def test_a_foreign_pod_with_the_jobs_label_does_not_decide_the_exit_code_or_the_retry(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    # The Job's own pod runs 4 s, then fails with exit code 3, which is not retried.
    cluster.apply(
        task(
            "victim", schedule="@yearly",
            retry={"maxRetries": 1, "backoff": {"initial": "1s"}, "onExitCodes": [75]},
            pod_annotations={
                "test.nightshift.dev/run-for": "4s", "test.nightshift.dev/exit-code": "3",
                "test.nightshift.dev/message": "the real failure",
            },
        ),
        namespace,
    )  # fmt: skip
    cluster.kubectl("annotate", "stask", "victim", "-n", namespace, "nightshift.dev/run-now=go")
    (job,) = poll(lambda: jobs(cluster, namespace, "victim"), timeout=30, what="the Job")
    name = job["metadata"]["name"]
    poll(lambda: pods_of(cluster, namespace, name), timeout=30, what="the Job's pod")
    time.sleep(1.1)  # creation timestamps have whole seconds: the forgery is the newest pod

    # Someone who may create pods: the Job's label, a later creation time, a terminated
    # container that asks for a retry (75 is in onExitCodes) with a message of their own.
    forged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-forged",
            "labels": {"batch.kubernetes.io/job-name": name, "job-name": name},
        },
        # Never scheduled (no node has this label), so nothing but this test writes its status.
        "spec": {
            "nodeSelector": {"test.nightshift.dev/nowhere": "true"},
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.invalid/job:1"}],
        },
    }
    cluster.apply(forged, namespace)
    terminated = {
        "exitCode": 75, "reason": "Error", "message": "forged: please retry",
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z",
    }  # fmt: skip
    cluster.kubectl(
        "patch", "pod", f"{name}-forged", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"phase": "Failed", "containerStatuses": [
            {"name": "main", "image": "registry.invalid/job:1", "imageID": "", "ready": False,
             "restartCount": 0, "state": {"terminated": terminated}}]}}),
    )  # fmt: skip
    assert len(pods_of(cluster, namespace, name)) == 2

    st = poll(
        lambda: (s := status(cluster, namespace, "victim")).get("runs") and s,
        timeout=30,
        what="the run's record",
    )
    (record,) = st["runs"]
    assert (record["result"], record["exitCode"], record["message"]) == (
        "Failed", 3, "the real failure"
    )  # fmt: skip
    time.sleep(2)  # twice the back-off: a retry would have its Job by now
    assert not status(cluster, namespace, "victim").get("pendingRetries")
    assert [j["metadata"]["name"] for j in jobs(cluster, namespace, "victim")] == [name]


def test_replace_does_not_delete_a_job_that_a_status_writer_names_in_status_active(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    # A Job the task does not own (someone else's), running until deleted.
    victim = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "someone-elses"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"test.nightshift.dev/run-for": "forever"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.invalid/job:1"}],
                },
            }
        },
    }
    cluster.apply(victim, namespace)
    cluster.apply(task("replacer", schedule="@yearly", concurrencyPolicy="Replace"), namespace)
    poll(
        lambda: status(cluster, namespace, "replacer").get("observedGeneration"),
        timeout=30,
        what="the operator's first status",
    )
    # Who may patch the task's status names that Job as the task's active run (no startedAt, so
    # the operator cannot tell it vanished), then asks for a run, which replaces active runs.
    cluster.kubectl(
        "patch", "stask", "replacer", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"active": [
            {"run": "2026-01-01T00:00:00Z", "attempt": 1, "job": "someone-elses"}]}}),
    )  # fmt: skip
    cluster.kubectl("annotate", "stask", "replacer", "-n", namespace, "nightshift.dev/run-now=x")
    poll(lambda: jobs(cluster, namespace, "replacer"), timeout=30, what="the new run's Job")
    poll(
        lambda: any(
            r["result"] == "Replaced"
            for r in status(cluster, namespace, "replacer").get("runs", [])
        ),
        timeout=30,
        what="the named run recorded as Replaced",
    )
    time.sleep(2)  # deletes follow the status write
    job = cluster.get("job", "someone-elses", "-n", namespace)
    assert job["metadata"].get("deletionTimestamp") is None
    assert "not this task's" in operator.logs() or "not controlled by" in operator.logs()

"""Surfaces closed (issue 18): what someone with less than the operator's rights can make it do.

A user who may create pods in a task's namespace can copy a Job's name label onto a pod of their
own, with an exit code and message of their choosing; a user who may write a task's status can
name any Job in `status.active`. Neither may steer the operator: it reads exit codes only from pods
their Job controls, and deletes only Jobs its task controls.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.certs import self_signed
from support.chart import (
    apply_rbac_only,
    assert_not_refused,
    delete_objects,
    of_kind,
    release_name,
    render,
    token_kubeconfig,
)
from support.operator import Operator
from support.tasks import jobs, status, task
from support.wait import poll


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


# --- secure metrics ------------------------------------------------------------------------------


def scrape(port: int, token: str | None) -> tuple[int, str]:
    """GET https://127.0.0.1:PORT/metrics (the operator's self-signed test certificate is not
    verified here: the point is who gets an answer)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_need_a_token_the_api_server_authenticates_and_authorizes(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    """The chart's default (metrics.secure): the operator, with only the chart's grants, serves
    /metrics over TLS; no token gets 401, a ServiceAccount without the metrics-reader grant 403,
    one the chart binds to it (metrics.readers) 200."""
    release = release_name()
    sa = f"{release}-nightshift"
    for account in ("scraper", "stranger"):
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    values = {
        "watchNamespaces": [namespace],
        "metrics": {"readers": [{"kind": "ServiceAccount", "name": "scraper",
                                 "namespace": namespace}]},
    }  # fmt: skip
    docs = render(cluster, tmp_path, values, release=release, namespace=namespace)
    args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--metrics-secure", "--metrics-cert=/certs/tls.crt"} <= set(args)
    applied = apply_rbac_only(cluster, docs)
    kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "sa.kubeconfig")
    cert, key = self_signed(tmp_path)
    operator = Operator(
        kubeconfig, tmp_path, namespaces=[namespace],
        extra_args=["--metrics-secure", f"--metrics-cert={cert}", f"--metrics-key={key}"],
    )  # fmt: skip

    def token(account: str) -> str:
        out = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=10m")
        return str(out.stdout.strip())

    try:
        operator.start()
        port = operator.metrics_port
        assert scrape(port, None)[0] == 401
        assert scrape(port, "not-a-token") == (401, "the token was not accepted\n")
        code, body = scrape(port, token("stranger"))
        assert code == 403, body
        assert f'"system:serviceaccount:{namespace}:stranger" may not get /metrics' in body
        code, body = poll(
            lambda: (r := scrape(port, token("scraper")))[0] == 200 and r,
            timeout=20,
            what="the bound scraper's 200 (RBAC caches update within seconds)",
        )
        assert "nightshift_scheduler_queue_depth" in body
        # Plain HTTP gets nothing on that port.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        operator.stop()
        delete_objects(cluster, applied)
    assert_not_refused(operator.logs())

"""Jobs held by a queue count as active: against Kueue's own controller, and by hand.

Kueue v0.17.0 is built from its Go module (hack/build-kueue.sh: in the background while the
session's other tests run, these last; or `make kueue`) and runs as a
process against the local control plane, with its Job webhook registered by URL on 127.0.0.1.
Kueue suspends each Job carrying the `kueue.x-k8s.io/queue-name` label (spec.suspend) until its
ClusterQueue admits it: with a quota of 0, nothing is admitted, so the first run stays queued and
later slots must not pile up (Forbid: Skipped; Replace: the queued Job is replaced). Raising the
quota admits the run, which then succeeds. The same is checked with a Job suspended by hand.

Kueue has no flag for its metrics certificate directory (a fixed /etc/kueue/metrics/certs), so
the fixture runs it in a private mount namespace whose /etc is an overlay: the host's /etc is not
changed. That needs root (or CAP_SYS_ADMIN), which the test machines have.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.certs import self_signed
from support.kueue import KueueBuild
from support.operator import Operator
from support.ports import free_port
from support.tasks import condition, jobs, status, task
from support.wait import poll

QUEUE = "kueue.x-k8s.io/queue-name"
PRIORITY = "kueue.x-k8s.io/priority-class"


@pytest.fixture(scope="module")
def kueue(
    cluster: Any, kueue_build: KueueBuild, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Kueue's controller manager running against the cluster; yields the namespace label value
    its Job webhook applies to."""
    built = kueue_build.directory()
    work = tmp_path_factory.mktemp("kueue")
    cert, key = self_signed(work)
    certs = work / "certs"
    certs.mkdir()
    shutil.copy(cert, certs / "tls.crt")
    shutil.copy(key, certs / "tls.key")
    (work / "upper").mkdir()
    (work / "overlay-work").mkdir()
    health, webhook = free_port(), free_port()
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook, "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        "visibilityServer": {"bindPort": free_port()},
    }
    (work / "config.yaml").write_text(json.dumps(config))
    cluster.kubectl("apply", "--server-side", "-f", str(built / "crds"))
    for crd in ("workloads", "clusterqueues", "localqueues", "resourceflavors"):
        # Poll: `kubectl wait` fails outright on a CRD whose status has no conditions yet.
        poll(
            lambda crd=crd: cluster.kubectl(
                "wait", "--for=condition=Established", "--timeout=5s",
                f"crd/{crd}.kueue.x-k8s.io", check=False,
            ).returncode == 0,
            timeout=60,
            what=f"the CRD {crd}.kueue.x-k8s.io to be Established",
        )  # fmt: skip
    # The overlay gives Kueue the metrics certificate it insists on, in its own view of /etc.
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={work}/upper,"
        f"workdir={work}/overlay-work /etc && mkdir -p /etc/kueue/metrics/certs && "
        f"cp {certs}/tls.crt {certs}/tls.key /etc/kueue/metrics/certs/ && "
        f'exec "$0" --config {work}/config.yaml --feature-gates=VisibilityOnDemand=false'
    )
    log = (work / "kueue.log").open("wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
         str(built / "kueue")],
        stdout=log, stderr=subprocess.STDOUT, env=cluster.env, start_new_session=True,
    )  # fmt: skip
    log.close()
    label = f"k{proc.pid}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"Kueue exited:\n{(work / 'kueue.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2):
                    return True
            except OSError:
                return False

        poll(ready, timeout=60, what="Kueue to be ready")
        ca = base64.b64encode(cert.read_bytes()).decode()
        objects = [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": f"nightshift-test-kueue-{label}"},
                "webhooks": [
                    {
                        "name": "mjob.kb.io",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{webhook}/mutate-batch-v1-job",
                            "caBundle": ca,
                        },
                        "rules": [
                            {
                                "apiGroups": ["batch"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["jobs"],
                            }
                        ],
                        "namespaceSelector": {"matchLabels": {"test.nightshift.dev/kueue": label}},
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "failurePolicy": "Fail",
                    }
                ],
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ResourceFlavor",
                "metadata": {"name": f"{label}-flavor"},
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": f"{label}-high"},
                "value": 1000,
            },
        ]
        for obj in objects:
            cluster.apply(obj, "default")
        yield label
    finally:
        for kind, name in [
            ("mutatingwebhookconfiguration", f"nightshift-test-kueue-{label}"),
            ("clusterqueue", label),
            ("resourceflavor", f"{label}-flavor"),
            ("workloadpriorityclass", f"{label}-high"),
        ]:
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def set_quota(cluster: Any, label: str, cpu: str) -> None:
    queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": label},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [
                        {
                            "name": f"{label}-flavor",
                            "resources": [{"name": "cpu", "nominalQuota": cpu}],
                        }
                    ],
                }
            ],
        },
    }
    cluster.apply(queue, "default")


def queued_task(name: str, policy: str, labels: dict[str, str]) -> dict[str, Any]:
    manifest = task(name, interval="3s", concurrencyPolicy=policy, history={"failed": 20})
    manifest["metadata"]["labels"] = labels  # on the task: passed on to every Job
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    return manifest


def live(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [j for j in jobs(cluster, namespace, name) if not j["metadata"].get("deletionTimestamp")]


def test_runs_held_by_kueue_count_as_active(
    cluster: Any, crd: None, kueue: str, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("label", "namespace", namespace, f"test.nightshift.dev/kueue={kueue}")
    set_quota(cluster, kueue, "0")  # nothing is admitted
    local_queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": "team-a"},
        "spec": {"clusterQueue": kueue},
    }
    cluster.apply(local_queue, namespace)
    labels = {QUEUE: "team-a", PRIORITY: f"{kueue}-high", "app": "report"}
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace]).start()
    try:
        cluster.apply(queued_task("forbid", "Forbid", labels), namespace)
        cluster.apply(queued_task("replace", "Replace", labels), namespace)
        first = poll(lambda: live(cluster, namespace, "forbid"), timeout=30, what="a Job")[0]
        meta = first["metadata"]
        assert meta["labels"][QUEUE] == "team-a"
        assert meta["labels"][PRIORITY] == f"{kueue}-high"
        assert "app" not in meta["labels"]  # only Kueue's labels are passed on from the task
        stamp = meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        assert stamp == meta["annotations"]["nightshift.dev/scheduled-at"].replace("+00:00", "Z")
        assert first["spec"]["suspend"] is True  # Kueue's webhook: queued, not admitted

        def held() -> dict[str, Any] | None:
            st = status(cluster, namespace, "forbid")
            return st if [a.get("queued") for a in st.get("active") or []] == [True] else None

        st = poll(held, timeout=30, what="the run shown as queued")
        assert condition(st, "Running")["reason"] == "Queued"
        workloads = cluster.get("workloads", "-n", namespace)["items"]
        assert any(w["spec"].get("priority") == 1000 for w in workloads)

        # Slots keep coming while the run waits in the queue: they must not pile up.
        time.sleep(10)
        assert [j["metadata"]["name"] for j in live(cluster, namespace, "forbid")] == [meta["name"]]
        results = [r["result"] for r in status(cluster, namespace, "forbid").get("runs") or []]
        assert results.count("Skipped") >= 2
        assert len(live(cluster, namespace, "replace")) == 1
        replaced = [r["result"] for r in status(cluster, namespace, "replace").get("runs") or []]
        assert replaced.count("Replaced") >= 2

        # Quota: Kueue admits the run (spec.suspend false), the pod runs and the run succeeds.
        set_quota(cluster, kueue, "1")
        poll(
            lambda: status(cluster, namespace, "forbid").get("lastResult") == "Succeeded",
            timeout=60,
            what="the admitted run to succeed",
        )
        runs = status(cluster, namespace, "forbid")["runs"]
        assert any(r["job"] == meta["name"] and r["result"] == "Succeeded" for r in runs)
    finally:
        op.stop()


def test_a_job_suspended_by_hand_counts_as_active(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    # No queue controller: the template itself says suspend, as a queue would.
    manifest = task("held", interval="3s")
    manifest["spec"]["jobTemplate"]["spec"]["suspend"] = True
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace]).start()
    try:
        cluster.apply(manifest, namespace)
        [job] = poll(lambda: live(cluster, namespace, "held"), timeout=30, what="a Job")
        assert job["spec"]["suspend"] is True
        time.sleep(8)
        assert [j["metadata"]["name"] for j in live(cluster, namespace, "held")] == [
            job["metadata"]["name"]
        ]
        st = status(cluster, namespace, "held")
        assert [a.get("queued") for a in st["active"]] == [True]
        assert condition(st, "Running")["reason"] == "Queued"
        assert [r["result"] for r in st["runs"]].count("Skipped") >= 2
        # Unsuspended (admitted, in a queue's terms): it runs and succeeds.
        cluster.kubectl("patch", "job", job["metadata"]["name"], "-n", namespace,
                        "--type=merge", "-p", '{"spec":{"suspend":false}}')  # fmt: skip
        poll(
            lambda: status(cluster, namespace, "held").get("lastResult") == "Succeeded",
            timeout=40,
            what="the run to succeed once unsuspended",
        )
    finally:
        op.stop()

"""Nightshift for real: the chart runs the operator image built here as pods on the local cluster's
real node (containerd, kubelet, kube-proxy; hack/cluster/realnode.py), and Jobs run the job
images built here, with real exit codes, signals, termination messages and logs.

All tests share one release (the session fixture `real_release`, in conftest.py) and one
namespace of tasks; the last test upgrades and uninstalls the release.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.chart import CHART, METRICS_SCRAPER, RealRelease, helm, real_release_values
from support.cluster import Cluster, on_real_node
from support.tasks import finished, jobs, status, ts
from support.wait import poll

PLUGIN = Path(sys.executable).parent / "kubectl-nightshift"
# A container reads the run's attempt and slot from its own pod's annotations.
DOWNWARD_ENV = [
    {
        "name": name,
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['nightshift.dev/{key}']"}},
    }
    for name, key in (
        ("NIGHTSHIFT_ATTEMPT", "attempt"),
        ("NIGHTSHIFT_SCHEDULED_AT", "scheduled-at"),
    )
]
FAILOVER_LIMIT = 15.0  # seconds from losing the leader until the other replica creates a Job


def rtask(name: str, image: str, *args: str, **spec: Any) -> dict[str, Any]:
    """A ScheduledTask running localhost/nightshift/jobs-IMAGE:dev on the real node."""
    container: dict[str, Any] = {
        "name": "main",
        "image": f"localhost/nightshift/jobs-{image}:dev",
        "env": DOWNWARD_ENV,
    }
    if args:
        container["args"] = list(args)
    return on_real_node(
        {
            "apiVersion": "nightshift.dev/v1alpha1",
            "kind": "ScheduledTask",
            "metadata": {"name": name},
            "spec": {
                **spec,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [container]}}}},
            },
        }
    )


def soon(seconds: float) -> str:
    """An `at` time a few seconds from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def runs(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return sorted(
        status(cluster, namespace, name).get("runs") or [],
        key=lambda r: (r["run"], r["attempt"]),
    )


@dataclass
class Watch:
    """`kubectl get KIND --watch -o json` in the background: every version of every object seen,
    with the wall time it arrived, including objects deleted meanwhile."""

    cluster: Cluster
    kind: str
    namespace: str
    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self.proc = subprocess.Popen(
            [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}",
             "get", self.kind, "-n", self.namespace, "--watch", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.cluster.env,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                self.seen.append((time.time(), obj))
                buffer = buffer.lstrip()[end:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.reader is not None:
                self.reader.join(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def objects(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """uid -> (first seen, last version)."""
        out: dict[str, tuple[float, dict[str, Any]]] = {}
        for when, obj in list(self.seen):
            uid = obj["metadata"]["uid"]
            out[uid] = (out[uid][0] if uid in out else when, obj)
        return out


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state", {}).get("terminated")
        if state:
            return dict(state)
    return None


def ended(watch: Watch, task: str) -> list[dict[str, Any]]:
    """Terminated states of the task's containers, as the watch saw them (pods may be gone)."""
    out = []
    for _, pod in watch.objects().values():
        state = terminated(pod)
        if state and pod["metadata"].get("labels", {}).get("nightshift.dev/task") == task:
            out.append(state)
    return out


def job_slots(watch: Watch, task: str) -> dict[tuple[str, str], list[str]]:
    """(run, attempt) -> uids of the task's Jobs seen by the watch."""
    slots: dict[tuple[str, str], list[str]] = {}
    for uid, (_, job) in watch.objects().items():
        meta = job["metadata"]
        if meta.get("labels", {}).get("nightshift.dev/task") != task:
            continue
        ann = meta.get("annotations", {})
        slots.setdefault((ann["nightshift.dev/run"], ann["nightshift.dev/attempt"]), []).append(uid)
    return slots


def operator_pods(cluster: Cluster, release: RealRelease) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "pods", "-n", release.system, "-l", f"app.kubernetes.io/instance={release.name}"
    )["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
    return pod["status"].get("phase") == "Running" and conds.get("Ready") == "True"


def two_ready(cluster: Cluster, release: RealRelease) -> list[dict[str, Any]] | None:
    pods = operator_pods(cluster, release)
    return pods if len(pods) == 2 and all(ready(p) for p in pods) else None


def leader(cluster: Cluster, release: RealRelease) -> str:
    lease = cluster.get("lease", release.fullname, "-n", release.system)
    return str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture(scope="module")
def tasks(real_release: RealRelease) -> str:
    return real_release.tasks


# --- install, webhook, metrics -----------------------------------------------------------------


def test_install_two_ready_non_root_read_only_replicas_one_holds_the_lease(
    cluster: Cluster, real_release: RealRelease
) -> None:
    ns = cluster.get("namespace", real_release.system)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = poll(lambda: two_ready(cluster, real_release), timeout=60, what="two Ready replicas")
    assert {p["spec"]["nodeName"] for p in pods} == {"real-node"}
    for pod in pods:
        assert pod["spec"]["containers"][0]["image"] == "localhost/nightshift/operator:dev"
        # Ask the running process itself: who it is and whether / is writable.
        res = cluster.kubectl(
            "exec", "-n", real_release.system, pod["metadata"]["name"], "--",
            "python", "-c", "import os; print(os.getuid(), os.getgid()); open('/probe', 'w')",
            check=False,
        )  # fmt: skip
        assert res.stdout.split() == ["10001", "10001"], res
        assert "Read-only file system" in res.stderr, res.stderr
    names = {p["metadata"]["name"] for p in pods}
    assert poll(lambda: leader(cluster, real_release) in names, timeout=30, what="a lease holder")
    print(f"\nhelm install until both replicas Ready: {real_release.install_seconds:.1f} s")


def test_webhook_in_the_pod_rejects_a_bad_cron_through_its_service(
    cluster: Cluster, real_release: RealRelease, tasks: str
) -> None:
    service = f"{real_release.fullname}-webhook"
    slices = cluster.get(
        "endpointslices", "-n", real_release.system, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    endpoint_ips = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    pod_ips = {p["status"]["podIP"] for p in operator_pods(cluster, real_release)}
    assert endpoint_ips == pod_ips  # the API server calls these (aggregator routing)
    bad = rtask("bad-cron", "hello", schedule="61 * * * *")
    res = cluster.kubectl("apply", "-n", tasks, "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    # failurePolicy is Ignore: only an answer from the webhook rejects the write.
    assert 'admission webhook "scheduledtasks.nightshift.dev" denied' in res.stderr, res.stderr
    assert "spec.schedule" in res.stderr, res.stderr
    assert cluster.kubectl("get", "stask", "bad-cron", "-n", tasks, check=False).returncode != 0


def test_metrics_answer_over_tls_only_to_a_scraper_the_api_server_authorizes(
    cluster: Cluster, real_release: RealRelease
) -> None:
    """What the ServiceMonitor does: https with a ServiceAccount token, the certificate verified
    against the webhook Secret's CA under the webhook Service's name, at the pods and the
    Service. No token: 401; the release's own ServiceAccount (no metrics-reader grant): 403."""
    ns = real_release.system
    service = cluster.get("service", f"{real_release.fullname}-metrics", "-n", ns)
    assert service["spec"]["ports"][0]["name"] == "https-metrics"
    secret = cluster.get("secret", f"{real_release.fullname}-webhook-tls", "-n", ns)
    context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
    server_name = f"{real_release.fullname}-webhook.{ns}.svc"

    def scrape(ip: str, token: str | None) -> tuple[int, str]:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = f"GET /metrics HTTP/1.1\r\nHost: {ip}\r\n{auth}Connection: close\r\n\r\n"
        raw = socket.create_connection((ip, 9090), timeout=10)
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(request.encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        return int(head.split()[1]), body

    def token(account: str) -> str:
        return str(cluster.kubectl("create", "token", account, "-n", ns).stdout.strip())

    scraper, operator = token(METRICS_SCRAPER), token(real_release.fullname)
    ips = [service["spec"]["clusterIP"]]  # through kube-proxy
    ips += [p["status"]["podIP"] for p in operator_pods(cluster, real_release)]
    for ip in ips:
        code, body = scrape(ip, scraper)
        assert code == 200, (ip, body)
        assert "nightshift_scheduler_queue_depth" in body, ip
        assert "nightshift_tasks" in body, ip
        assert scrape(ip, None)[0] == 401, ip
        assert scrape(ip, operator)[0] == 403, ip


# --- the job images, for real ------------------------------------------------------------------


def test_hello_runs_and_its_message_and_log_are_real(cluster: Cluster, tasks: str) -> None:
    cluster.apply(rtask("hello", "hello", at=soon(2)), tasks)
    job = poll(
        lambda: [j for j in jobs(cluster, tasks, "hello") if finished(j)],
        timeout=60,
        what="the hello Job to finish",
    )[0]
    assert finished(job) == "Complete"
    slot = job["metadata"]["annotations"]["nightshift.dev/scheduled-at"]
    run = poll(
        lambda: [r for r in runs(cluster, tasks, "hello") if r.get("finishedAt")],
        timeout=30,
        what="the run in status",
    )[0]
    assert run["result"] == "Succeeded"
    assert run["exitCode"] == 0
    assert run["message"] == f"greeted world for {slot}"  # /dev/termination-log, written by hello
    res = subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(cluster.kubeconfig), "-n", tasks, "logs", "hello"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "hello, world" in res.stdout


def test_flaky_exits_75_twice_then_succeeds_after_measured_backoffs(
    cluster: Cluster, tasks: str
) -> None:
    retry = {
        "maxRetries": 3,
        "backoff": {"initial": "2s", "factor": 2, "jitter": False},
        "onExitCodes": [75],
    }
    cluster.apply(rtask("flaky", "flaky", "--fail-times", "2", at=soon(2), retry=retry), tasks)

    def succeeded() -> list[dict[str, Any]] | None:
        found = runs(cluster, tasks, "flaky")
        return found if any(r["result"] == "Succeeded" for r in found) else None

    attempts = poll(succeeded, timeout=120, what="flaky to succeed")
    assert [(r["attempt"], r["result"], r["exitCode"]) for r in attempts] == [
        (1, "Failed", 75),
        (2, "Failed", 75),
        (3, "Succeeded", 0),
    ]
    assert [r["message"] for r in attempts] == [
        "attempt 1: upstream unavailable (try again later)",
        "attempt 2: upstream unavailable (try again later)",
        "attempt 3: synced",
    ]
    assert len(jobs(cluster, tasks, "flaky")) == 3
    gaps = [
        (ts(b["startedAt"]) - ts(a["finishedAt"])).total_seconds()
        for a, b in itertools.pairwise(attempts)
    ]
    print(f"\nflaky back-off gaps (finished -> next started): {gaps} s (configured 2 s, 4 s)")
    assert 1.5 <= gaps[0] <= 6, gaps
    assert 3.5 <= gaps[1] <= 8, gaps


def test_not_on_exit_codes_stops_after_the_first_failure(cluster: Cluster, tasks: str) -> None:
    retry = {"maxRetries": 3, "backoff": {"initial": "1s"}, "notOnExitCodes": [2]}
    manifest = rtask("permanent", "flaky", "--fail-times", "9", "--exit-code", "2", at=soon(2),
                     retry=retry)  # fmt: skip
    cluster.apply(manifest, tasks)

    def failed() -> dict[str, Any] | None:
        st = status(cluster, tasks, "permanent")
        return st if any(r["result"] == "Failed" for r in st.get("runs") or []) else None

    st = poll(failed, timeout=60, what="the failed run")
    assert [(r["attempt"], r["exitCode"]) for r in st["runs"]] == [(1, 2)]
    assert not st.get("pendingRetry")
    time.sleep(4)  # four times the back-off: a retry would have been created by now
    assert len(jobs(cluster, tasks, "permanent")) == 1
    assert len(runs(cluster, tasks, "permanent")) == 1


def test_sleeper_timeout_sends_sigterm_and_the_run_is_timed_out(
    cluster: Cluster, tasks: str
) -> None:
    with Watch(cluster, "pods", tasks) as pods:
        cluster.apply(rtask("slow", "sleeper", "--seconds", "60", at=soon(2), timeout="5s"), tasks)

        def timed_out() -> dict[str, Any] | None:
            found = [r for r in runs(cluster, tasks, "slow") if r.get("finishedAt")]
            return found[0] if found else None

        run = poll(timed_out, timeout=90, what="the slow run to end")
        assert run["result"] == "TimedOut", run
        assert run["reason"] == "DeadlineExceeded", run
        state = poll(lambda: ended(pods, "slow"), timeout=30, what="the sleeper's end")[0]
    assert state["exitCode"] == 143  # 128 + SIGTERM: it stopped itself
    assert state["message"].startswith("stopped by SIGTERM after "), state
    worked = float(state["message"].split()[4])
    assert 3 <= worked <= 10, state  # about the 5 s timeout, far from the 60 s it meant to work


def test_replace_stops_the_running_sleeper_with_sigterm(cluster: Cluster, tasks: str) -> None:
    manifest = rtask("replacer", "sleeper", "--seconds", "120", interval="15s",
                     concurrencyPolicy="Replace")  # fmt: skip
    with Watch(cluster, "pods", tasks) as pods:
        cluster.apply(manifest, tasks)

        def replaced() -> dict[str, Any] | None:
            found = [r for r in runs(cluster, tasks, "replacer") if r["result"] == "Replaced"]
            return found[0] if found else None

        poll(replaced, timeout=60, what="a Replaced run")
        state = poll(lambda: ended(pods, "replacer"), timeout=40, what="the sleeper's end")[0]
    cluster.kubectl("delete", "stask", "replacer", "-n", tasks, "--wait=false")
    assert state["exitCode"] == 143
    assert state["message"].startswith("stopped by SIGTERM after "), state


# --- failover, upgrade, uninstall --------------------------------------------------------------


def _failover(
    cluster: Cluster, release: RealRelease, tasks: str, kill: Any, task: str, *, other: bool
) -> tuple[float, str]:
    """Kill the leader with KILL(pod); returns the seconds until the first Job after that, and
    the new leader. With OTHER, the other replica must be the one that took over."""
    poll(lambda: two_ready(cluster, release), timeout=120, what="two Ready replicas")
    with Watch(cluster, "jobs", tasks) as watch:
        cluster.apply(rtask(task, "hello", interval="5s"), tasks)
        poll(lambda: len(job_slots(watch, task)) >= 2, timeout=60, what="two Jobs")
        old = poll(lambda: leader(cluster, release), timeout=30, what="a leader")
        standby = next(
            p["metadata"]["name"]
            for p in operator_pods(cluster, release)
            if p["metadata"]["name"] != old
        )
        killed_at = time.time()
        kill(old)
        if other:
            poll(lambda: leader(cluster, release) == standby, timeout=30, what=f"{standby} leads")
        new_jobs = poll(
            lambda: sorted(t for t, _ in watch.objects().values() if t > killed_at + 0.5),
            timeout=FAILOVER_LIMIT + 15,
            what="a Job after the failover",
        )
        time.sleep(6)  # one more slot under the new leader
        slots = job_slots(watch, task)
        new_leader = leader(cluster, release)
    cluster.kubectl("delete", "stask", task, "-n", tasks, "--wait=false")
    duplicates = {slot: uids for slot, uids in slots.items() if len(uids) > 1}
    assert duplicates == {}
    return new_jobs[0] - killed_at, new_leader


def test_failover_when_the_leader_pod_is_force_deleted(
    cluster: Cluster, real_release: RealRelease, tasks: str
) -> None:
    def force_delete(pod: str) -> None:
        cluster.kubectl(
            "delete", "pod", pod, "-n", real_release.system, "--grace-period=0", "--force"
        )

    took, _ = _failover(cluster, real_release, tasks, force_delete, "ticker-delete", other=True)
    print(f"\nforce-deleted leader pod: the other replica's first Job after {took:.1f} s")
    assert took <= FAILOVER_LIMIT


def test_failover_when_the_leaders_process_is_killed_on_the_node(
    cluster: Cluster, real_release: RealRelease, tasks: str
) -> None:
    """kill -9 of the leader's process: the kubelet restarts the container at once, and the new
    process takes the Lease back without waiting for it to expire, because its identity is its
    pod's name (POD_NAME), the holder's. Either way the next Job must come within the limit."""
    assert cluster.node_bin_dir is not None
    ctr = [str(cluster.node_bin_dir / "ctr"), "--address=/run/nightshift-node/containerd.sock",
           "-n", "k8s.io"]  # fmt: skip
    restarts: dict[str, int] = {}

    def kill_9(pod_name: str) -> None:
        pod = cluster.get("pod", pod_name, "-n", real_release.system)
        status_ = pod["status"]["containerStatuses"][0]
        restarts[pod_name] = status_["restartCount"]
        container_id = status_["containerID"].removeprefix("containerd://")
        out = subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True, check=True)
        pid = next(
            int(line.split()[1])
            for line in out.stdout.splitlines()
            if line.startswith(container_id)
        )
        os.kill(pid, signal.SIGKILL)

    took, new_leader = _failover(cluster, real_release, tasks, kill_9, "ticker-kill", other=False)
    print(f"\nkill -9 of the leader's process: first Job after {took:.1f} s, by {new_leader}")
    assert took <= FAILOVER_LIMIT
    ((name, before),) = restarts.items()
    after = cluster.get("pod", name, "-n", real_release.system)["status"]["containerStatuses"][0]
    assert after["restartCount"] == before + 1  # the kubelet restarted the killed container
    assert after["lastState"]["terminated"]["exitCode"] == 137


def test_upgrade_to_a_new_tag_rolls_without_missed_or_duplicate_slots_then_uninstall_keeps_crd(
    cluster: Cluster, real_release: RealRelease, tasks: str
) -> None:
    assert cluster.node_bin_dir is not None
    tag = f"upgrade-{real_release.name}"
    subprocess.run(
        [str(cluster.node_bin_dir / "ctr"), "--address=/run/nightshift-node/containerd.sock",
         "-n", "k8s.io", "images", "tag", "localhost/nightshift/operator:dev",
         f"localhost/nightshift/operator:{tag}"],
        capture_output=True, check=True,
    )  # fmt: skip
    poll(lambda: two_ready(cluster, real_release), timeout=120, what="two Ready replicas")
    before = {p["metadata"]["name"] for p in operator_pods(cluster, real_release)}
    # Allow: a slot whose predecessor is still running is not Skipped (Forbid would skip it
    # while the node is busy rolling pods, which is not what this test is about).
    manifest = rtask("steady", "hello", interval="5s", catchUp="All", maxCatchUp=10,
                     startingDeadlineSeconds=120, concurrencyPolicy="Allow")  # fmt: skip
    with Watch(cluster, "jobs", tasks) as watch:
        cluster.apply(manifest, tasks)
        poll(lambda: len(job_slots(watch, "steady")) >= 2, timeout=60, what="two Jobs")
        helm(
            cluster, "upgrade", real_release.name, str(CHART),
            "--namespace", real_release.system, *real_release_values(real_release, tag),
            "--wait", "--timeout", "180s",
        )  # fmt: skip
        pods = poll(lambda: two_ready(cluster, real_release), timeout=120, what="the new pods")
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {
            f"localhost/nightshift/operator:{tag}"
        }
        assert not before & {p["metadata"]["name"] for p in pods}
        new_leader = poll(
            lambda: leader(cluster, real_release) in {p["metadata"]["name"] for p in pods},
            timeout=30,
            what="a new pod holding the Lease",
        )
        assert new_leader
        time.sleep(11)  # two more slots under the new leader
        slots = job_slots(watch, "steady")
    recorded = [(r["run"], r["attempt"], r["result"]) for r in runs(cluster, tasks, "steady")]
    cluster.kubectl("delete", "stask", "steady", "-n", tasks, "--wait=false")
    assert {slot: uids for slot, uids in slots.items() if len(uids) > 1} == {}
    first = sorted(datetime.fromisoformat(run) for run, attempt in slots if attempt == "1")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(first)]
    assert gaps, first
    assert set(gaps) == {5.0}, ([t.isoformat() for t in first], recorded)  # every slot, once
    assert {result for _, _, result in recorded} <= {"Succeeded"}, recorded

    out = helm(
        cluster, "uninstall", real_release.name, "--namespace", real_release.system, "--wait"
    )
    assert "kept due to the resource policy" in out
    crd = cluster.get("crd", "scheduledtasks.nightshift.dev")
    assert crd["metadata"].get("deletionTimestamp") is None
    assert cluster.kubectl("get", "stask", "-n", tasks).returncode == 0

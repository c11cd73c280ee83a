"""Runs that look after themselves, against the real control plane and a real operator process.

Pause on repeated failure and `kubectl nightshift resume --note`, deadlines (Late), and
notifications delivered to a real HTTP receiver on 127.0.0.1 that is up, answers 500, is down
across an operator restart, or is slow. Pods are KWOK's: the pod-template annotations choose their
exit code and how long they run (docs/local-cluster.md).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from receiver import Receiver

from support.operator import Operator
from support.tasks import condition, events, jobs, reasons, status, task, ts
from support.wait import poll


def plugin(cluster: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nightshift.kubectl", "--kubeconfig", str(cluster.kubeconfig),
         "-n", namespace, *args],
        capture_output=True, text=True, timeout=60, check=True, env=cluster.env,
    )  # fmt: skip


def uid_of(cluster: Any, namespace: str, name: str) -> str:
    return str(cluster.get("stask", name, "-n", namespace)["metadata"]["uid"])


def count(items: list[str], reason: str) -> int:
    return sum(1 for r in items if r == reason)


def pod_annotations(exit_code: int = 0, run_for: str = "1s") -> dict[str, str]:
    return {"test.nightshift.dev/exit-code": str(exit_code), "test.nightshift.dev/run-for": run_for}


# --- pause on failure -----------------------------------------------------------------------------


def test_repeated_failures_suspend_the_task_until_resumed_with_a_note(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    with Receiver() as hook:
        spec = {
            "interval": "3s",
            "failurePolicy": {"suspendAfter": 2},
            "notify": [{"name": "ops", "url": f"{hook.url}/hook"}],
            "pod_annotations": pod_annotations(exit_code=1),
        }
        cluster.apply(task("flaky", **spec), namespace)
        st = poll(
            lambda: (s := status(cluster, namespace, "flaky")).get("suspendedByPolicy") and s,
            timeout=60,
            what="the failure policy to suspend the task",
        )
        paused = st["suspendedByPolicy"]
        assert paused["failures"] == 2
        assert paused["reason"] == "FailureThreshold"
        assert "exit code 1" in paused["message"]
        suspended = condition(st, "Suspended")
        assert (suspended["status"], suspended["reason"]) == ("True", "FailureThreshold")
        assert suspended["message"] == paused["message"]
        obj = cluster.get("stask", "flaky", "-n", namespace)
        assert obj["spec"].get("suspend") in (None, False)  # the user's switch is left alone
        assert st["nextScheduleTimes"] == []

        # Suspended: no new Jobs, over several intervals.
        created = len(jobs(cluster, namespace, "flaky"))
        time.sleep(8)
        assert len(jobs(cluster, namespace, "flaky")) == created
        assert count(reasons(cluster, namespace, "flaky"), "FailureThreshold") == 1

        # Failing was sent once (on the first failure, not on every run), then Suspended.
        def sent() -> list[str] | None:
            changes = [r.json()["change"] for r in hook.received("/hook")]
            return changes if "Suspended" in changes else None

        assert poll(sent, timeout=30, what="the Suspended notification") == [
            "Failing",
            "Suspended",
        ]

        # Fixing the spec does not resume it: a person does, with a note.
        patch = {"spec": {"jobTemplate": task("x", pod_annotations=pod_annotations())[
            "spec"]["jobTemplate"]}}  # fmt: skip
        cluster.kubectl("patch", "stask", "flaky", "-n", namespace, "--type=merge",
                        "-p", json.dumps(patch))  # fmt: skip
        time.sleep(5)
        assert len(jobs(cluster, namespace, "flaky")) == created
        shown = plugin(cluster, namespace, "status", "flaky").stdout
        assert "Suspended by its failure policy since" in shown
        assert "kubectl nightshift resume flaky --note TEXT" in shown
        whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)
        result = plugin(cluster, namespace, "resume", "flaky", "--note", "fixed the exit code")
        assert "its failure policy had suspended it" in result.stdout

        st = poll(
            lambda: (s := status(cluster, namespace, "flaky")).get("lastResume") and s,
            timeout=30,
            what="the resume in status",
        )
        assert st["lastResume"]["by"] == whoami["status"]["userInfo"]["username"]
        assert st["lastResume"]["note"] == "fixed the exit code"
        assert "suspendedByPolicy" not in st
        assert "Resumed" in reasons(cluster, namespace, "flaky")
        resumed = [e for e in events(cluster, namespace, "flaky") if e["reason"] == "Resumed"]
        assert "fixed the exit code" in resumed[0]["message"]

        # It runs again, succeeds, and that is news: Recovered.
        poll(
            lambda: status(cluster, namespace, "flaky").get("lastResult") == "Succeeded",
            timeout=40,
            what="a successful run after the resume",
        )
        poll(
            lambda: "Recovered" in [r.json()["change"] for r in hook.received("/hook")],
            timeout=30,
            what="the Recovered notification",
        )
        st = status(cluster, namespace, "flaky")
        assert condition(st, "Failing")["status"] == "False"
        assert st["failuresSinceResume"] == 0


# --- deadlines ------------------------------------------------------------------------------------


def test_a_run_past_its_deadline_is_late_on_time_and_its_success_clears_it(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    spec = {"interval": "30s", "deadline": "3s", "pod_annotations": pod_annotations(run_for="8s")}
    cluster.apply(task("slow", **spec), namespace)
    late = poll(
        lambda: (
            (c := condition(status(cluster, namespace, "slow"), "Late")).get("status") == "True"
            and c
        ),
        timeout=50,
        what="Late=True",
        interval=0.1,
    )
    job = jobs(cluster, namespace, "slow")[-1]
    slot = ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])
    # The wake-up at the deadline makes it fire on time, not at the next event or slot.
    became = ts(late["lastTransitionTime"])
    assert timedelta(seconds=2) <= became - slot <= timedelta(seconds=5), (slot, became)
    assert late["reason"] == "DeadlineExceeded"
    assert "still running" in late["message"]
    assert count(reasons(cluster, namespace, "slow"), "RunLate") == 1
    assert "nightshift_late_runs_total 1.0" in operator.metrics()
    # The run succeeds after 8 s: Late clears.
    poll(
        lambda: condition(status(cluster, namespace, "slow"), "Late").get("status") == "False",
        timeout=30,
        what="Late to clear on success",
    )
    assert status(cluster, namespace, "slow")["lastResult"] == "Succeeded"


# --- notifications --------------------------------------------------------------------------------


def test_notifications_are_delivered_at_least_once_through_500s_and_a_restart(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    with Receiver(behaviour="fail") as hook:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ops-hook"},
            "data": {
                k: base64.b64encode(v.encode()).decode()
                for k, v in {
                    "url": f"{hook.url}/hook",
                    "header.Authorization": "Bearer s3cret",
                }.items()
            },
        }
        cluster.apply(secret, namespace)
        sinks = [
            {"name": "ops", "secretRef": {"name": "ops-hook"}, "changes": ["Failing", "Recovered"]},
            {"name": "bus", "type": "CloudEvents", "url": f"{hook.url}/ce"},
            {"name": "chat", "type": "Slack", "url": f"{hook.url}/slack", "mode": None},
        ]
        sinks[2].pop("mode")
        spec = {"interval": "4s", "notify": sinks, "pod_annotations": pod_annotations(exit_code=1)}
        cluster.apply(task("noisy", **spec), namespace)
        uid = uid_of(cluster, namespace, "noisy")

        # The receiver answers 500: retried with back-off, the same idempotency key each time.
        failed = poll(
            lambda: len(hook.received("/hook", 500)) >= 2 and hook.received("/hook", 500),
            timeout=60,
            what="two failed deliveries",
        )
        keys = {r.headers["Idempotency-Key"] for r in failed}
        assert len(keys) == 1
        [key] = keys
        assert key.startswith(f"{uid}/")
        assert key.endswith("/1/Failing")
        assert failed[1].at - failed[0].at >= 4  # back-off (5 s), not a busy loop
        st = status(cluster, namespace, "noisy")
        notified = condition(st, "Notified")
        assert (notified["status"], notified["reason"]) == ("False", "DeliveryFailed")
        assert "HTTP 500" in notified["message"]
        assert count(reasons(cluster, namespace, "noisy"), "NotificationFailed") == 1
        assert any(n["change"] == "Failing" for n in st["notifications"])

        hook.behaviour = "ok"
        delivered = poll(
            lambda: hook.received("/hook", 204), timeout=40, what="the delivery after the 500s"
        )
        assert delivered[0].headers["Idempotency-Key"] == key
        assert delivered[0].headers["Authorization"] == "Bearer s3cret"  # from the Secret
        assert delivered[0].json()["change"] == "Failing"
        ce = poll(lambda: hook.received("/ce", 204), timeout=40, what="the CloudEvent")
        assert ce[0].headers["ce-id"] == key
        assert ce[0].headers["ce-specversion"] == "1.0"
        assert ce[0].headers["ce-type"] == "dev.nightshift.task.failing"
        slack = poll(lambda: hook.received("/slack", 204), timeout=40, what="the Slack message")
        assert slack[0].json()["text"].startswith(f":red_circle: ScheduledTask {namespace}/noisy")
        st = poll(
            lambda: (
                (s := status(cluster, namespace, "noisy")).get("notifications") in (None, []) and s
            ),
            timeout=30,
            what="status.notifications to empty",
        )
        assert condition(st, "Notified")["reason"] == "Delivered"
        # Only changes: the task keeps failing, nothing more is sent.
        time.sleep(6)
        assert {r.json()["change"] for r in hook.received("/hook")} == {"Failing"}

        # Down, then the operator restarts with the notification still owed: it is not lost.
        hook.stop()
        fixed = task("noisy", **{**spec, "pod_annotations": pod_annotations()})
        cluster.apply(fixed, namespace)

        def owed() -> bool:
            pending = status(cluster, namespace, "noisy").get("notifications") or []
            return any(n["change"] == "Recovered" and n.get("failures", 0) >= 1 for n in pending)

        poll(owed, timeout=60, what="a Recovered notification that failed (receiver down)")
        operator.kill()
        hook.start()
        operator.start()
        recovered = poll(
            lambda: [r for r in hook.received("/hook", 204) if r.json()["change"] == "Recovered"],
            timeout=60,
            what="Recovered delivered after the restart",
        )
        assert recovered[0].headers["Idempotency-Key"].endswith("/1/Recovered")


def test_a_slow_receiver_times_out_and_never_delays_scheduling(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    with Receiver(behaviour="slow", delay=6) as hook:
        sink = [{"name": "slow", "url": f"{hook.url}/hook", "timeout": "1s"}]
        # More notifications at once than the notifier has workers.
        for i in range(6):
            failing = {"interval": "5s", "notify": sink,
                       "pod_annotations": pod_annotations(exit_code=1)}  # fmt: skip
            cluster.apply(task(f"failing-{i}", **failing), namespace)
        # Every Job kept, to look at each one's creation.
        ticker = {"interval": "2s", "concurrencyPolicy": "Allow", "history": {"succeeded": 50}}
        cluster.apply(task("ticker", **ticker), namespace)

        def timed_out() -> dict[str, Any] | None:
            cond = condition(status(cluster, namespace, "failing-0"), "Notified")
            return cond if cond.get("reason") == "DeliveryFailed" else None

        cond = poll(timed_out, timeout=60, what="a delivery to time out")
        assert "no answer within 1 s" in cond["message"]
        poll(lambda: len(hook.received()) >= 8, timeout=60, what="retries to the slow receiver")
        # Meanwhile, and after, the ticker keeps firing every 2 s...
        ticks = poll(
            lambda: (found := jobs(cluster, namespace, "ticker")) and len(found) >= 8 and found,
            timeout=40,
            what="eight ticker Jobs",
        )
        # ... each one on time: within 2 s of its slot, slow deliveries or not.
        for job in ticks:
            meta = job["metadata"]
            slot = ts(meta["annotations"]["nightshift.dev/scheduled-at"])
            assert ts(meta["creationTimestamp"]) - slot <= timedelta(seconds=2), meta["name"]

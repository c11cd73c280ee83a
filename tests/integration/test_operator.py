"""The operator against the real control plane: what a user sees in Jobs, status and Events.

Each test runs its own `nightshift run` process restricted to the test's namespace, so tests can
kill and restart it. Schedules use second-level intervals to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.metrics import parse_metrics, total
from support.operator import Operator
from support.tasks import condition, finished, jobs, reasons, status, task, ts
from support.wait import poll

# --- firing ----------------------------------------------------------------------------------


def test_interval_task_creates_owned_jobs_and_reports_status(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("tick", interval="3s", timeout="90s"), namespace)
    found = poll(
        lambda: [j for j in jobs(cluster, namespace, "tick") if finished(j) == "Complete"],
        timeout=30,
        what="a completed Job",
    )
    job = found[0]
    meta = job["metadata"]
    uid = cluster.get("stask", "tick", "-n", namespace)["metadata"]["uid"]
    assert meta["ownerReferences"][0]["uid"] == uid
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"]["nightshift.dev/task"] == "tick"
    assert meta["annotations"]["nightshift.dev/attempt"] == "1"
    slot = ts(meta["annotations"]["nightshift.dev/scheduled-at"])
    assert slot.second % 3 == 0  # aligned to the epoch
    assert meta["name"] == f"tick-{slot.astimezone(UTC):%Y%m%d%H%M%S}-1"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 90
    # The Job was created within a second of its slot.
    assert ts(meta["creationTimestamp"]) - slot < timedelta(seconds=2)

    def recorded() -> dict[str, Any] | None:
        st = status(cluster, namespace, "tick")
        ok = [r for r in st.get("runs") or [] if r["result"] == "Succeeded"]
        return st if ok else None

    st = poll(recorded, timeout=20, what="a Succeeded run in status")
    assert st["lastScheduleTime"]
    assert st["nextScheduleTime"]
    assert st["lastSuccessfulTime"]
    assert ts(st["nextScheduleTime"]) > ts(st["lastScheduleTime"])
    assert condition(st, "Ready")["status"] == "True"
    assert st["schedule"] == "every 3s"
    table = cluster.kubectl("get", "stask", "tick", "-n", namespace).stdout
    assert "every 3s" in table
    assert "Succeeded" in table
    assert "RunStarted" in reasons(cluster, namespace, "tick")
    assert "RunSucceeded" in reasons(cluster, namespace, "tick")


def test_cron_task_fires_on_the_minute(cluster: Any, namespace: str, operator: Operator) -> None:
    cluster.apply(task("cron", schedule="* * * * *"), namespace)
    job = poll(lambda: jobs(cluster, namespace, "cron"), timeout=75, what="a Job")[0]
    slot = ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])
    assert slot.second == 0
    assert ts(job["metadata"]["creationTimestamp"]) - slot < timedelta(seconds=2)


# --- retries ---------------------------------------------------------------------------------


def test_retry_only_on_listed_exit_codes_with_backoff(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    retry = {
        "maxRetries": 2,
        "backoff": {"initial": "3s", "factor": 2, "jitter": False},
        "onExitCodes": [3],
    }
    anchor = (datetime.now(UTC) + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"interval": "1h", "anchor": anchor, "retry": retry}
    cluster.apply(
        task("exit3", pod_annotations={"test.nightshift.dev/exit-code": "3"}, **common), namespace
    )
    cluster.apply(
        task("exit4", pod_annotations={"test.nightshift.dev/exit-code": "4"}, **common), namespace
    )

    def three_attempts() -> list[dict[str, Any]] | None:
        found = [j for j in jobs(cluster, namespace, "exit3") if finished(j)]
        return found if len(found) == 3 else None

    attempts = poll(three_attempts, timeout=60, what="three attempts of exit3")
    assert [j["metadata"]["annotations"]["nightshift.dev/attempt"] for j in attempts] == [
        "1",
        "2",
        "3",
    ]
    # Back-off: attempt 2 starts ~3 s after attempt 1 failed, attempt 3 ~6 s after attempt 2.
    for earlier, later, delay in ((attempts[0], attempts[1], 3), (attempts[1], attempts[2], 6)):
        failed_at = max(
            ts(c["lastTransitionTime"])
            for c in earlier["status"]["conditions"]
            if c["type"] == "Failed"
        )
        gap = (ts(later["metadata"]["creationTimestamp"]) - failed_at).total_seconds()
        assert delay - 1.5 <= gap <= delay + 2.5, gap

    def final() -> dict[str, Any] | None:
        st = status(cluster, namespace, "exit3")
        return st if st.get("consecutiveFailures") == 1 and not st.get("pendingRetries") else None

    st = poll(final, timeout=20, what="exit3 to give up")
    assert [r["exitCode"] for r in st["runs"]] == [3, 3, 3]
    assert condition(st, "Failing")["status"] == "True"
    assert reasons(cluster, namespace, "exit3").count("RetryScheduled") == 2
    assert "RunFailed" in reasons(cluster, namespace, "exit3")

    # exit 4 is not in onExitCodes: one attempt only.
    poll(
        lambda: status(cluster, namespace, "exit4").get("consecutiveFailures") == 1,
        timeout=30,
        what="exit4 to fail",
    )
    time.sleep(4)
    assert len(jobs(cluster, namespace, "exit4")) == 1
    assert status(cluster, namespace, "exit4")["runs"][0]["exitCode"] == 4


def test_termination_message_and_timeout_are_recorded(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    anchor = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.apply(
        task(
            "slowpoke",
            interval="1h",
            anchor=anchor,
            timeout="2s",
            pod_annotations={"test.nightshift.dev/run-for": "forever"},
        ),
        namespace,
    )
    cluster.apply(
        task(
            "reporter",
            interval="1h",
            anchor=anchor,
            pod_annotations={
                "test.nightshift.dev/exit-code": "2",
                "test.nightshift.dev/message": "synced 0 of 12 calendars: auth expired",
            },
        ),
        namespace,
    )
    run = poll(
        lambda: (status(cluster, namespace, "slowpoke").get("runs") or [None])[0],
        timeout=30,
        what="the timed-out run",
    )
    assert run["result"] == "TimedOut"
    assert run["reason"] == "DeadlineExceeded"
    run = poll(
        lambda: (status(cluster, namespace, "reporter").get("runs") or [None])[0],
        timeout=30,
        what="the failed run",
    )
    assert run["result"] == "Failed"
    assert run["exitCode"] == 2
    assert run["message"] == "synced 0 of 12 calendars: auth expired"


# --- concurrency -----------------------------------------------------------------------------


def _max_active(cluster: Any, namespace: str, name: str, seconds: float) -> int:
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        active = [j for j in jobs(cluster, namespace, name) if not finished(j)]
        peak = max(peak, len(active))
        time.sleep(0.5)
    return peak


def test_forbid_skips_while_a_run_is_active(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(
        task(
            "forbid",
            interval="2s",
            concurrencyPolicy="Forbid",
            pod_annotations={"test.nightshift.dev/run-for": "5s"},
        ),
        namespace,
    )
    assert _max_active(cluster, namespace, "forbid", 12) == 1
    st = status(cluster, namespace, "forbid")
    assert any(r["result"] == "Skipped" for r in st.get("runs") or [])
    assert "RunSkipped" in reasons(cluster, namespace, "forbid")


def test_allow_overlaps(cluster: Any, namespace: str, operator: Operator) -> None:
    cluster.apply(
        task(
            "allow",
            interval="2s",
            concurrencyPolicy="Allow",
            pod_annotations={"test.nightshift.dev/run-for": "6s"},
        ),
        namespace,
    )
    assert _max_active(cluster, namespace, "allow", 10) >= 2


def test_replace_deletes_the_running_job(cluster: Any, namespace: str, operator: Operator) -> None:
    cluster.apply(
        task(
            "replace",
            interval="4s",
            concurrencyPolicy="Replace",
            pod_annotations={"test.nightshift.dev/run-for": "forever"},
        ),
        namespace,
    )

    def replaced() -> dict[str, Any] | None:
        st = status(cluster, namespace, "replace")
        return st if any(r["result"] == "Replaced" for r in st.get("runs") or []) else None

    st = poll(replaced, timeout=30, what="a Replaced run")
    assert len(st["active"]) == 1
    assert "RunReplaced" in reasons(cluster, namespace, "replace")
    old = next(r["job"] for r in st["runs"] if r["result"] == "Replaced")
    poll(
        lambda: old not in [j["metadata"]["name"] for j in jobs(cluster, namespace, "replace")],
        timeout=30,
        what=f"Job {old} to be deleted",
    )


# --- run now, suspend, maxRuns, history ----------------------------------------------------------


def test_run_now_starts_exactly_one_run_per_token(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("manual", schedule="@yearly", suspend=True), namespace)
    time.sleep(2)
    assert jobs(cluster, namespace, "manual") == []
    annotate = ("annotate", "stask", "manual", "-n", namespace, "--overwrite")
    cluster.kubectl(*annotate, "nightshift.dev/run-now=token-a")
    poll(lambda: len(jobs(cluster, namespace, "manual")) == 1, timeout=20, what="one Job")
    # The same token again (any other change to the object) starts nothing.
    cluster.kubectl(*annotate, "nightshift.dev/run-now=token-a", "unrelated=1")
    time.sleep(3)
    assert len(jobs(cluster, namespace, "manual")) == 1
    cluster.kubectl(*annotate, "nightshift.dev/run-now=token-b")
    poll(lambda: len(jobs(cluster, namespace, "manual")) == 2, timeout=20, what="a second Job")
    found = jobs(cluster, namespace, "manual")
    tokens = sorted(j["metadata"]["annotations"]["nightshift.dev/run-now"] for j in found)
    assert tokens == ["token-a", "token-b"]


def test_suspend_then_resume_does_not_catch_up(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("pausable", interval="2s", suspend=True), namespace)
    time.sleep(6)
    assert jobs(cluster, namespace, "pausable") == []
    st = poll(lambda: status(cluster, namespace, "pausable"), timeout=10, what="status")
    assert condition(st, "Suspended")["status"] == "True"
    resumed_at = datetime.now(UTC)
    cluster.kubectl(
        "patch", "stask", "pausable", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"suspend": False}}),
    )  # fmt: skip
    job = poll(lambda: jobs(cluster, namespace, "pausable"), timeout=15, what="a Job")[0]
    slot = ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])
    assert slot >= resumed_at - timedelta(seconds=1), "a slot from the suspended time ran"


def test_max_runs_then_completed(cluster: Any, namespace: str, operator: Operator) -> None:
    cluster.apply(task("twice", interval="2s", maxRuns=2), namespace)

    def completed() -> dict[str, Any] | None:
        st = status(cluster, namespace, "twice")
        return st if condition(st, "Completed").get("status") == "True" else None

    st = poll(completed, timeout=30, what="Completed")
    time.sleep(4)
    assert len(jobs(cluster, namespace, "twice")) == 2
    assert st["runCount"] == 2
    assert "Completed" in reasons(cluster, namespace, "twice")


def test_history_limits_prune_status_and_jobs(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("pruned", interval="2s", history={"succeeded": 1, "failed": 1}), namespace)

    def enough() -> bool:
        st = status(cluster, namespace, "pruned")
        return st.get("runCount", 0) >= 5

    poll(enough, timeout=30, what="five runs")
    time.sleep(2)
    st = status(cluster, namespace, "pruned")
    assert len([r for r in st["runs"] if r["result"] == "Succeeded"]) <= 1
    finished_jobs = [j for j in jobs(cluster, namespace, "pruned") if finished(j)]
    assert len(finished_jobs) <= 2  # the kept one, plus one that just finished


# --- bad input -------------------------------------------------------------------------------


def test_invalid_stored_spec_is_reported_once_and_fixable(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    # No webhook runs in this test, so the apiserver stores what its schema accepts.
    cluster.apply(task("broken", interval="2s", timeZone="Mars/Olympus"), namespace)
    cluster.apply(task("healthy", interval="2s"), namespace)

    def not_ready() -> dict[str, Any] | None:
        st = status(cluster, namespace, "broken")
        return st if condition(st, "Ready").get("reason") == "InvalidSpec" else None

    st = poll(not_ready, timeout=20, what="Ready=False InvalidSpec")
    assert 'unknown time zone "Mars/Olympus"' in condition(st, "Ready")["message"]
    # More syncs (touching the object) post no further Event.
    for i in range(3):
        cluster.kubectl("annotate", "stask", "broken", "-n", namespace, f"touch={i}", "--overwrite")
        time.sleep(1)
    assert reasons(cluster, namespace, "broken").count("InvalidSpec") == 1
    assert jobs(cluster, namespace, "broken") == []
    # The neighbour keeps firing (every other 2 s slot: its runs take ~2 s under Forbid).
    poll(lambda: len(jobs(cluster, namespace, "healthy")) >= 2, timeout=15, what="two Jobs")
    cluster.kubectl(
        "patch", "stask", "broken", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"timeZone": "Europe/Zurich"}}),
    )  # fmt: skip
    poll(lambda: jobs(cluster, namespace, "broken"), timeout=20, what="a Job after the fix")
    assert condition(status(cluster, namespace, "broken"), "Ready")["status"] == "True"


def test_webhook_rejects_invalid_specs_naming_the_field(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    op = Operator(
        cluster.kubeconfig, tmp_path, namespaces=[namespace], webhook=f"{namespace}.nightshift.dev"
    )
    op.start()
    try:
        poll(
            lambda: (
                cluster.kubectl(
                    "get",
                    "validatingwebhookconfiguration",
                    f"{namespace}.nightshift.dev",
                    check=False,
                ).returncode
                == 0
            ),
            timeout=20,
            what="the webhook configuration",
        )
        # The API server picks up a new webhook configuration asynchronously, and with
        # failurePolicy Ignore an unreachable webhook admits everything: probe until it answers.
        probe = json.dumps(task("probe", schedule="61 * * * *"))
        poll(
            lambda: (
                cluster.kubectl(
                    "apply",
                    "--dry-run=server",
                    "-n",
                    namespace,
                    "-f",
                    "-",
                    input=probe,
                    check=False,
                ).returncode
                != 0
            ),
            timeout=20,
            what="the webhook to be called",
        )
        cases = [
            ({"schedule": "61 * * * *"}, "spec.schedule: minute field '61'"),
            ({"schedule": "* * * * *", "timeZone": "Mars/Olympus"}, "spec.timeZone: unknown"),
            ({"schedule": "0 0 31 2 *"}, "spec.schedule: "),
        ]
        for spec, expected in cases:
            result = cluster.kubectl(
                "apply", "-n", namespace, "-f", "-",
                input=json.dumps(task("bad", **spec)), check=False,
            )  # fmt: skip
            assert result.returncode != 0, spec
            assert expected in result.stderr, result.stderr
        template = {
            "spec": {
                "template": {
                    "metadata": {"namespace": "kube-system"},
                    "spec": {"containers": [{"name": "a", "image": "b"}]},
                }
            }
        }
        result = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-",
            input=json.dumps(task("bad", interval="1h", job_template=template)), check=False,
        )  # fmt: skip
        assert result.returncode != 0
        assert "spec.jobTemplate.spec" in result.stderr
        assert "namespace" in result.stderr
    finally:
        op.stop()
        cluster.kubectl(
            "delete", "validatingwebhookconfiguration", f"{namespace}.nightshift.dev", check=False
        )


def test_foreign_job_with_our_name_is_neither_adopted_nor_deleted(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    slot = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    name = f"clash-{slot:%Y%m%d%H%M%S}-1"
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"owner": "someone-else"}},
        "spec": {
            "template": {
                "metadata": {"annotations": {"test.nightshift.dev/run-for": "forever"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "a", "image": "b"}],
                },
            }
        },
    }
    cluster.apply(foreign, namespace)
    cluster.apply(
        task("clash", at=slot.strftime("%Y-%m-%dT%H:%M:%SZ"), startingDeadlineSeconds=60),
        namespace,
    )

    def conflict() -> dict[str, Any] | None:
        st = status(cluster, namespace, "clash")
        return st if condition(st, "Ready").get("reason") == "JobNameConflict" else None

    poll(conflict, timeout=30, what="Ready=False JobNameConflict")
    assert "JobNameConflict" in reasons(cluster, namespace, "clash")
    time.sleep(3)  # later syncs keep the condition and leave the Job alone
    assert condition(status(cluster, namespace, "clash"), "Ready")["reason"] == "JobNameConflict"
    assert reasons(cluster, namespace, "clash").count("JobNameConflict") == 1
    job = cluster.get("job", name, "-n", namespace)
    assert not job["metadata"].get("ownerReferences")
    assert job["metadata"]["labels"]["owner"] == "someone-else"
    assert "nightshift.dev/task" not in job["metadata"]["labels"]
    assert "deletionTimestamp" not in job["metadata"]


# --- crashes and downtime ------------------------------------------------------------------------


@contextlib.contextmanager
def status_writes_refused(cluster: Any, namespace: str) -> Iterator[None]:
    """The API server refuses every status write of ScheduledTasks in NAMESPACE (a
    ValidatingAdmissionPolicy), until the block ends."""
    name = f"refuse-status-{namespace}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["nightshift.dev"],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["scheduledtasks/status"],
                    }
                ]
            },
            "validations": [{"expression": "false", "message": "status writes refused by a test"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": namespace},
                }
            },
        },
    }
    probe = task("status-probe", interval="1h", suspend=True)
    cluster.apply(probe, namespace)
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1",
                        "items": [policy, binding]}))  # fmt: skip

        def refused() -> bool:
            res = cluster.kubectl(
                "patch", "stask", "status-probe", "-n", namespace, "--subresource=status",
                "--type=merge", "-p", '{"status": {"runCount": 0}}', check=False,
            )  # fmt: skip
            return res.returncode != 0 and "status writes refused" in res.stderr

        poll(refused, timeout=30, what="the policy to refuse status writes")
        yield
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        name, "--ignore-not-found", check=False)  # fmt: skip
        cluster.kubectl("delete", "stask", "status-probe", "-n", namespace, check=False)


def test_crash_between_create_and_status_write_adopts_the_job(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    # The API server refuses the status write after the Job create; the operator is then killed
    # (kill -9) and restarted with status writes allowed again: it adopts the Job it created.
    with status_writes_refused(cluster, namespace):
        cluster.apply(task("crashy", interval="1h"), namespace)
        cluster.kubectl(
            "annotate", "stask", "crashy", "-n", namespace, "nightshift.dev/run-now=once"
        )
        poll(lambda: jobs(cluster, namespace, "crashy"), timeout=30, what="the Job")
        poll(
            lambda: "status writes refused" in operator.logs(),
            timeout=30,
            what="a refused status write",
        )
        operator.kill()
        assert len(jobs(cluster, namespace, "crashy")) == 1
        assert not status(cluster, namespace, "crashy").get("active")
    operator.start()

    def adopted() -> dict[str, Any] | None:
        st = status(cluster, namespace, "crashy")
        return st if st.get("runs") or st.get("active") else None

    st = poll(adopted, timeout=20, what="the Job to be adopted")
    time.sleep(3)
    assert len(jobs(cluster, namespace, "crashy")) == 1
    assert st.get("runNowToken") == "once"


def test_pending_retry_survives_a_restart_and_runs_once(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    anchor = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.apply(
        task(
            "retrier",
            interval="1h",
            anchor=anchor,
            retry={"maxRetries": 1, "backoff": {"initial": "8s", "jitter": False}},
            pod_annotations={"test.nightshift.dev/exit-code": "1"},
        ),
        namespace,
    )
    pending = poll(
        lambda: status(cluster, namespace, "retrier").get("pendingRetries"),
        timeout=30,
        what="a pending retry",
    )[0]
    operator.kill()
    time.sleep(2)
    operator.start()
    retry = poll(
        lambda: [
            j for j in jobs(cluster, namespace, "retrier") if j["metadata"]["name"][-2:] == "-2"
        ],
        timeout=30,
        what="the retry Job",
    )
    assert len(retry) == 1
    created = ts(retry[0]["metadata"]["creationTimestamp"])
    assert created >= ts(pending["notBefore"]) - timedelta(seconds=1)
    time.sleep(3)
    assert len(jobs(cluster, namespace, "retrier")) == 2


@pytest.mark.parametrize(
    ("policy", "expected_jobs"), [("Skip", 0), ("Latest", 1), ("All", 2)], ids=str
)
def test_downtime_catch_up_follows_policy(
    cluster: Any, namespace: str, operator: Operator, policy: str, expected_jobs: int
) -> None:
    # Allow, so that catch-up runs are not Skipped by Forbid while the first one is active.
    spec = {
        "interval": "10s",
        "catchUp": policy,
        "maxCatchUp": 2,
        "startingDeadlineSeconds": 120,
        "concurrencyPolicy": "Allow",
    }
    cluster.apply(task("catchup", **spec), namespace)
    poll(lambda: jobs(cluster, namespace, "catchup"), timeout=20, what="a first Job")
    operator.kill()
    killed = datetime.now(UTC)
    # Restart 6-7 s after a slot: past the 5 s on-time grace (half the interval), before the
    # next slot, so exactly the slots that passed while down are "missed".
    time.sleep(30)  # at least three slots pass, so All with maxCatchUp 2 still misses one
    time.sleep((16 - time.time() % 10) % 10)
    restarted = datetime.now(UTC)
    operator.start()

    def settled() -> dict[str, Any] | None:
        st = status(cluster, namespace, "catchup")
        return st if any(r["result"] == "Missed" for r in st.get("runs") or []) else None

    st = poll(settled, timeout=20, what="Missed runs in status")
    time.sleep(1)
    downtime_jobs = [
        j
        for j in jobs(cluster, namespace, "catchup")
        if killed < ts(j["metadata"]["annotations"]["nightshift.dev/scheduled-at"]) < restarted
    ]
    assert len(downtime_jobs) == expected_jobs, [j["metadata"]["name"] for j in downtime_jobs]
    missed = [r for r in st["runs"] if r["result"] == "Missed"]
    assert len(missed) + expected_jobs >= 2
    if expected_jobs:
        # Catch-up runs the newest slots.
        newest = max(ts(r["scheduledAt"]) for r in missed)
        assert all(
            ts(j["metadata"]["annotations"]["nightshift.dev/scheduled-at"]) > newest
            for j in downtime_jobs
        )
    assert reasons(cluster, namespace, "catchup").count("MissedSlots") == 1


def test_deleting_a_task_deletes_its_jobs_and_pods(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(
        task(
            "doomed",
            interval="2s",
            pod_annotations={"test.nightshift.dev/run-for": "forever"},
            concurrencyPolicy="Allow",
        ),
        namespace,
    )
    poll(lambda: len(jobs(cluster, namespace, "doomed")) >= 2, timeout=20, what="two Jobs")
    cluster.kubectl("delete", "stask", "doomed", "-n", namespace)
    poll(lambda: jobs(cluster, namespace, "doomed") == [], timeout=60, what="Jobs gone")
    poll(
        lambda: (
            cluster.get("pods", "-n", namespace, "-l", "nightshift.dev/task=doomed")["items"] == []
        ),
        timeout=60,
        what="pods gone",
    )


def test_editing_the_schedule_creates_no_retroactive_runs(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    far = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.apply(task("edited", at=far), namespace)
    poll(
        lambda: status(cluster, namespace, "edited").get("nextScheduleTime"),
        timeout=15,
        what="status",
    )
    time.sleep(4)
    edited_at = datetime.now(UTC)
    cluster.apply(task("edited", interval="2s"), namespace)
    job = poll(lambda: jobs(cluster, namespace, "edited"), timeout=15, what="a Job")[0]
    slot = ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])
    assert slot >= edited_at - timedelta(seconds=1)
    assert not any(
        r["result"] == "Missed" for r in status(cluster, namespace, "edited").get("runs") or []
    )


def test_metrics_are_scraped_after_real_runs(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("measured", interval="2s"), namespace)
    cluster.apply(
        task("failing", interval="2s", pod_annotations={"test.nightshift.dev/exit-code": "1"}),
        namespace,
    )
    poll(
        lambda: (
            status(cluster, namespace, "measured").get("lastResult") == "Succeeded"
            and status(cluster, namespace, "failing").get("lastResult") == "Failed"
        ),
        timeout=30,
        what="a success and a failure",
    )
    text = poll(
        lambda: (m := operator.metrics()) and 'nightshift_runs_total{result="Failed"}' in m and m,
        timeout=10,
        what="run counters",
    )
    samples = parse_metrics(text)
    assert total(samples, "nightshift_runs_total", result="Succeeded") >= 1
    assert total(samples, "nightshift_runs_total", result="Failed") >= 1
    assert total(samples, "nightshift_fire_skew_seconds_count") >= 2
    # Sub-second firing shows up in the 10 ms .. 1 s buckets, which CronJob's 1 s floor hides.
    assert total(samples, "nightshift_fire_skew_seconds_bucket", le="1.0") >= 1
    assert total(samples, "nightshift_tasks") == 2
    assert total(samples, "nightshift_scheduler_lag_seconds_count") >= 1
    assert total(samples, "nightshift_api_requests_total", call="create_job") >= 2


def test_liveness_and_readiness_answer_while_the_scheduler_runs(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("alive", interval="2s"), namespace)
    poll(lambda: jobs(cluster, namespace, "alive"), timeout=20, what="a Job")
    assert operator.health("/healthz") == (200, {"status": "ok"})
    assert operator.health("/readyz") == (200, {"status": "ready"})

"""Every example in examples/ does what its comment promises, on the local cluster.

All examples are applied at once to one namespace with one operator (module-scoped), so the suite
waits for the slowest example once instead of once per example. Each test runs twice:

- `kwok`: the operator runs as a process, the Jobs' pods on the KWOK nodes (simulated);
- `real`: the operator runs in the cluster (the chart, test_realnode's release) and the Jobs run
  the job images built here on the real node. These examples are applied as soon as the `kwok`
  pass starts, so both wait for their slowest example at the same time.
"""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from receiver import Receiver

from support.chart import RealRelease
from support.cluster import REAL_NODE_GATEWAY, Cluster, on_real_node
from support.operator import Operator
from support.tasks import condition, finished, jobs, reasons, status, ts
from support.wait import poll

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def preview(name: str, namespace: str, start: datetime, count: int) -> list[str]:
    text = (EXAMPLES / name).read_text()
    text = text.replace("metadata:\n", f"metadata:\n  namespace: {namespace}\n", 1)
    result = subprocess.run(
        [sys.executable, "-m", "nightshift", "preview", "-", "--from",
         start.strftime("%Y-%m-%dT%H:%M:%SZ"), "-n", str(count)],
        input=text, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.splitlines()


# Example 13's webhook sink, one per examples namespace: the example's Secret names a URL that goes
# nowhere, so it is replaced by one of these as soon as the examples are applied (the first
# Failing notification is owed seconds later; a test that changed it minutes later would wait for
# the delivery's back-off instead).
HOOKS: dict[str, Receiver] = {}


def our_webhook(cluster: Cluster, namespace: str, host: str) -> None:
    hook = Receiver(host=host).start()
    HOOKS[namespace] = hook
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ops-webhook"},
        "stringData": {"url": f"{hook.url}/nightshift", "header.Authorization": "Bearer t"},
    }
    cluster.apply(secret, namespace)


@pytest.fixture(scope="module")
def real_examples(cluster: Cluster, real_release: RealRelease) -> Iterator[str]:
    """The examples on the real node, in the namespace that the in-cluster operator watches;
    deleted after this module, so their pods do not load the machine during later tests."""
    for example in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            if doc:
                real = on_real_node(doc) if doc.get("kind") == "ScheduledTask" else doc
                cluster.apply(real, real_release.examples)
    # The operator runs in a pod: it reaches the machine at the real node's gateway.
    our_webhook(cluster, real_release.examples, REAL_NODE_GATEWAY)
    yield real_release.examples
    HOOKS.pop(real_release.examples).stop()
    cluster.kubectl("delete", "stask", "--all", "-n", real_release.examples, "--wait=false")


@pytest.fixture(scope="module", params=["kwok", "real"])
def demo(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    crd: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    if request.param == "real":
        yield request.getfixturevalue("real_examples")
        return
    if cluster.real_node:
        request.getfixturevalue("real_examples")  # start them now, checked in the `real` pass
    namespace = f"examples-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    poll(
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        timeout=30,
        what="the default ServiceAccount",
    )
    op = Operator(cluster.kubeconfig, tmp_path_factory.mktemp("examples"), namespaces=[namespace])
    op.start()
    for example in sorted(EXAMPLES.glob("*.yaml")):
        cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    our_webhook(cluster, namespace, "127.0.0.1")
    try:
        yield namespace
    finally:
        HOOKS.pop(namespace).stop()
        op.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_01_cron_fires_on_the_minute_and_succeeds(cluster: Any, demo: str) -> None:
    def done() -> list[dict[str, Any]]:
        return [j for j in jobs(cluster, demo, "hello-cron") if finished(j) == "Complete"]

    job = poll(done, timeout=100, what="a completed hello-cron Job")[0]
    slot = ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])
    assert slot.second == 0
    assert ts(job["metadata"]["creationTimestamp"]) - slot <= timedelta(seconds=1)
    poll(
        lambda: status(cluster, demo, "hello-cron").get("lastResult") == "Succeeded",
        timeout=30,
        what="Succeeded in status",
    )


def test_02_h_spread_is_stable_and_differs_per_name(cluster: Any, demo: str) -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    times = preview("02-h-spread.yaml", demo, start, 5)
    assert len({t[11:19] for t in times}) == 1  # the same wall time every day
    assert all(t[11:13] == "03" for t in times)
    minutes = {preview("02-h-spread.yaml", f"team-{i}", start, 1)[0][14:16] for i in range(20)}
    assert len(minutes) > 5  # different tasks spread over the hour
    nxt = poll(
        lambda: status(cluster, demo, "nightly-report").get("nextScheduleTime"),
        timeout=30,
        what="nextScheduleTime",
    )
    expected = preview("02-h-spread.yaml", demo, datetime.now(UTC), 1)[0]
    assert ts(nxt) == datetime.fromisoformat(expected)


def test_03_interval_jobs_are_20_s_apart_on_the_grid(cluster: Any, demo: str) -> None:
    poll(lambda: len(jobs(cluster, demo, "every-20s")) >= 2, timeout=70, what="two Jobs")
    found = jobs(cluster, demo, "every-20s")
    slots = sorted(ts(j["metadata"]["annotations"]["nightshift.dev/scheduled-at"]) for j in found)
    assert all(s.second in (0, 20, 40) for s in slots)
    assert slots[1] - slots[0] == timedelta(seconds=20)


def test_04_one_shot_waits_for_its_time(cluster: Any, demo: str) -> None:
    st = poll(lambda: status(cluster, demo, "migrate-once"), timeout=30, what="status")
    assert ts(st["nextScheduleTime"]) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert jobs(cluster, demo, "migrate-once") == []
    assert condition(st, "Completed").get("status") == "False"


def test_05_time_zone_follows_the_dst_rule(cluster: Any, demo: str) -> None:
    times = preview("05-time-zone.yaml", demo, datetime(2026, 3, 6, tzinfo=UTC), 4)
    assert times == [
        "2026-03-06T02:30:00-05:00",
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    fall = preview("05-time-zone.yaml", demo, datetime(2026, 10, 31, 12, tzinfo=UTC), 2)
    assert fall == ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"]
    nxt = poll(
        lambda: status(cluster, demo, "backup-new-york").get("nextScheduleTime"),
        timeout=30,
        what="nextScheduleTime",
    )
    assert ts(nxt) == datetime.fromisoformat(
        preview("05-time-zone.yaml", demo, datetime.now(UTC), 1)[0]
    )


def test_06_retries_exit_3_twice_with_backoff_then_fails(cluster: Any, demo: str) -> None:
    def given_up() -> list[dict[str, Any]] | None:
        st = status(cluster, demo, "flaky-sync")
        by_run: dict[str, list[dict[str, Any]]] = {}
        for record in st.get("runs") or []:
            if record.get("exitCode") == 3:
                by_run.setdefault(record["run"], []).append(record)
        complete = [rs for rs in by_run.values() if len(rs) == 3]
        return complete[0] if complete else None

    attempts = sorted(
        poll(given_up, timeout=150, what="a run of flaky-sync with three failed attempts"),
        key=lambda r: r["attempt"],
    )
    assert [r["attempt"] for r in attempts] == [1, 2, 3]
    gaps = [
        (ts(b["startedAt"]) - ts(a["finishedAt"])).total_seconds()
        for a, b in itertools.pairwise(attempts)
    ]
    assert 3.5 <= gaps[0] <= 8, gaps  # 5 s back-off
    assert 8.5 <= gaps[1] <= 13, gaps  # 10 s back-off
    assert "RunFailed" in reasons(cluster, demo, "flaky-sync")


def test_07_forbid_skips_every_other_slot(cluster: Any, demo: str) -> None:
    def skipped() -> dict[str, Any] | None:
        st = status(cluster, demo, "slow-forbid")
        return st if any(r["result"] == "Skipped" for r in st.get("runs") or []) else None

    poll(skipped, timeout=200, what="a Skipped slot")
    assert len([j for j in jobs(cluster, demo, "slow-forbid") if not finished(j)]) <= 1
    assert "RunSkipped" in reasons(cluster, demo, "slow-forbid")


def test_08_timeout_is_timed_out_and_retried_once(cluster: Any, demo: str) -> None:
    def done() -> dict[str, Any] | None:
        st = status(cluster, demo, "stuck-export")
        runs = [r for r in st.get("runs") or [] if r["result"] == "TimedOut"]
        return st if len(runs) >= 2 else None

    st = poll(done, timeout=150, what="two TimedOut attempts")
    assert {r["reason"] for r in st["runs"] if r["result"] == "TimedOut"} == {"DeadlineExceeded"}


def test_09_history_keeps_two_successes(cluster: Any, demo: str) -> None:
    poll(
        lambda: status(cluster, demo, "tidy").get("runCount", 0) >= 4,
        timeout=90,
        what="four tidy runs",
    )
    st = status(cluster, demo, "tidy")
    assert len([r for r in st["runs"] if r["result"] == "Succeeded"]) <= 2
    poll(
        lambda: len([j for j in jobs(cluster, demo, "tidy") if finished(j)]) <= 2,
        timeout=30,
        what="old tidy Jobs deleted",
    )


def test_10_run_now_runs_once_per_token(cluster: Any, demo: str) -> None:
    annotate = ("annotate", "stask", "on-demand", "-n", demo, "--overwrite")
    cluster.kubectl(*annotate, "nightshift.dev/run-now=example-1")
    found = poll(lambda: jobs(cluster, demo, "on-demand"), timeout=30, what="the manual Job")
    assert len(found) == 1
    assert found[0]["metadata"]["labels"]["team"] == "data"  # jobTemplate.metadata.labels
    cluster.kubectl(*annotate, "nightshift.dev/run-now=example-1", "touched=yes")
    poll(
        lambda: status(cluster, demo, "on-demand").get("runNowToken") == "example-1",
        timeout=20,
        what="the token in status",
    )
    assert len(jobs(cluster, demo, "on-demand")) == 1


def test_11_pause_on_failure_suspends_after_two_and_resumes_with_a_note(
    cluster: Any, demo: str
) -> None:
    st = poll(
        lambda: (s := status(cluster, demo, "nightly-import")).get("suspendedByPolicy") and s,
        timeout=90,
        what="nightly-import suspended by its failure policy",
    )
    assert "401 Unauthorized from the supplier API" in st["suspendedByPolicy"]["message"]
    assert condition(st, "Suspended")["reason"] == "FailureThreshold"
    assert "FailureThreshold" in reasons(cluster, demo, "nightly-import")
    subprocess.run(
        [sys.executable, "-m", "nightshift.kubectl", "--kubeconfig", str(cluster.kubeconfig),
         "-n", demo, "resume", "nightly-import", "--note", "rotated the expired API token"],
        check=True, capture_output=True, env=cluster.env, timeout=60,
    )  # fmt: skip
    resumed = poll(
        lambda: (s := status(cluster, demo, "nightly-import")).get("lastResume") and s,
        timeout=30,
        what="the resume recorded",
    )
    assert resumed["lastResume"]["note"] == "rotated the expired API token"
    assert resumed["lastResume"]["by"]


def test_12_deadline_makes_each_run_late_then_success_clears_it(cluster: Any, demo: str) -> None:
    seen: list[str] = []

    def late_then_clear() -> bool:
        cond = condition(status(cluster, demo, "report-by-nine"), "Late")
        if cond.get("status") and (not seen or seen[-1] != cond["status"]):
            seen.append(cond["status"])
        return seen[-2:] == ["True", "False"]

    poll(late_then_clear, timeout=90, what="Late True, then cleared by a success", interval=0.5)
    assert "RunLate" in reasons(cluster, demo, "report-by-nine")


def test_13_notify_sends_failing_once_to_the_secrets_url(cluster: Any, demo: str) -> None:
    hook = HOOKS[demo]  # the URL in the example's Secret, replaced by ours (our_webhook)
    [request] = poll(
        lambda: hook.received("/nightshift", 204), timeout=120, what="the Failing notification"
    )
    body = request.json()
    assert body["change"] == "Failing"
    assert body["task"]["name"] == "sync-invoices"
    assert "3 invoices rejected by the ledger" in body["message"]
    assert request.headers["Authorization"] == "Bearer t"
    assert request.headers["Idempotency-Key"] == body["id"]
    time.sleep(20)  # more failed runs: not news
    assert len(hook.received("/nightshift")) == 1


def test_14_kueue_labels_and_the_cronjob_timestamp_reach_the_jobs(cluster: Any, demo: str) -> None:
    job = poll(lambda: jobs(cluster, demo, "train-nightly"), timeout=40, what="a Job")[0]
    meta = job["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert meta["labels"]["kueue.x-k8s.io/priority-class"] == "nightly-batch"
    slot = ts(meta["annotations"]["nightshift.dev/scheduled-at"])
    assert ts(meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]) == slot


def test_15_next_fire_times_in_status_match_preview(cluster: Any, demo: str) -> None:
    shown = poll(
        lambda: status(cluster, demo, "weekday-digest").get("nextScheduleTimes"),
        timeout=30,
        what="status.nextScheduleTimes",
    )
    expected = preview("15-next-fire-times.yaml", demo, datetime.now(UTC), 3)
    # Status times are RFC 3339 to the second (metav1.Time); the jitter adds milliseconds.
    assert [ts(t) for t in shown] == [
        datetime.fromisoformat(t).replace(microsecond=0) for t in expected
    ]


def test_16_several_schedules_are_one_union_in_their_own_zones(cluster: Any, demo: str) -> None:
    times = preview("16-several-schedules.yaml", demo, datetime(2026, 3, 6, tzinfo=UTC), 4)
    assert times == [
        "2026-03-06T08:00:00+00:00",  # London open
        "2026-03-06T14:30:00+00:00",  # New York open, 09:30 EST
        "2026-03-09T08:00:00+00:00",
        "2026-03-09T13:30:00+00:00",  # 09:30 EDT: the US has moved its clocks, the UK not yet
    ]
    st = poll(
        lambda: (
            status(cluster, demo, "market-open").get("nextScheduleTime")
            and status(cluster, demo, "market-open")
        ),
        timeout=30,
        what="nextScheduleTime",
    )
    assert st["schedule"] == "0 8 * * MON-FRI (Europe/London); 30 9 * * MON-FRI (America/New_York)"
    expected = preview("16-several-schedules.yaml", demo, datetime.now(UTC), 1)[0]
    assert ts(st["nextScheduleTime"]) == datetime.fromisoformat(expected)


def test_17_calendar_days_are_skipped(cluster: Any, demo: str) -> None:
    times = preview("17-calendar.yaml", demo, datetime(2026, 12, 23, tzinfo=UTC), 4)
    assert times == [
        "2026-12-23T08:00:00+01:00",
        "2026-12-24T08:00:00+01:00",  # then Christmas, a weekend, the office closed to the 31st,
        "2027-01-04T08:00:00+01:00",  # the task's own New Year's Day and another weekend
        "2027-01-05T08:00:00+01:00",
    ]
    st = poll(
        lambda: (s := status(cluster, demo, "office-report")).get("nextScheduleTime") and s,
        timeout=30,
        what="nextScheduleTime",
    )
    assert condition(st, "Ready")["status"] == "True"
    expected = preview("17-calendar.yaml", demo, datetime.now(UTC), 1)[0]
    assert ts(st["nextScheduleTime"]) == datetime.fromisoformat(expected)
    table = cluster.kubectl("get", "calendar", "zurich-office", "-n", demo).stdout
    assert "Europe/Zurich" in table


def test_18_queue_holds_one_slot_until_the_run_ends(cluster: Any, demo: str) -> None:
    st = poll(
        lambda: (s := status(cluster, demo, "slow-queue")).get("queued") and s,
        timeout=200,
        what="a queued slot",
    )
    queued = st["queued"]["run"]
    assert len([j for j in jobs(cluster, demo, "slow-queue") if not finished(j)]) == 1
    assert "RunQueued" in reasons(cluster, demo, "slow-queue")
    # It starts when the active run ends (90 s runs: within a minute), not at a later slot.
    started = poll(
        lambda: [
            a for a in status(cluster, demo, "slow-queue").get("active") or [] if a["run"] == queued
        ],
        timeout=100,
        what="the queued run to start",
    )
    assert ts(started[0]["startedAt"]) > ts(queued)


def test_19_backfill_dry_run_lists_the_weeks_slots(cluster: Any, demo: str) -> None:
    def planned() -> dict[str, Any] | None:
        obj = cluster.get("backfill", "daily-etl-first-week", "-n", demo)
        st: dict[str, Any] = obj.get("status") or {}
        return st if st.get("phase") == "DryRun" else None

    st = poll(planned, timeout=30, what="the dry run's plan")
    # 02:00 in Zurich (CET, +01:00) is 01:00Z, from 1 to 7 January: the task never ran them.
    assert [s["run"] for s in st["slots"]] == [f"2026-01-0{d}T01:00:00Z" for d in range(1, 8)]
    assert {(s["state"], s["firstAttempt"]) for s in st["slots"]} == {("Pending", 1)}
    assert st["progress"] == "0/7"
    backfilled = [
        j
        for j in jobs(cluster, demo, "daily-etl")
        if "nightshift.dev/backfill" in j["metadata"]["labels"]
    ]
    assert backfilled == []  # a dry run runs nothing

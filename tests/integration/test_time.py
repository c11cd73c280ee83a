"""Several schedules, calendars, queueing and backfills with the real operator process on the
local control plane: what a user sees in Jobs, status and Events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.operator import Operator
from support.tasks import condition, events, finished, jobs, reasons, status, task, ts
from support.wait import poll


def calendar(name: str, *exclude: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "Calendar",
        "metadata": {"name": name},
        "spec": {"exclude": list(exclude)},
    }


def slot_of(job: dict[str, Any]) -> datetime:
    return ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])


# --- several schedules ----------------------------------------------------------------------------


def test_several_schedules_run_a_shared_slot_once(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    # Every minute is a slot of the first two entries (Kolkata is +05:30: whole minutes too),
    # every other minute of all three: one run per minute, never two.
    schedules = [
        {"cron": "* * * * *"},
        {"cron": "* * * * *", "timeZone": "Asia/Kolkata"},
        {"cron": "*/2 * * * *", "timeZone": "America/New_York"},
    ]
    cluster.apply(task("union", schedules=schedules), namespace)
    poll(lambda: len(jobs(cluster, namespace, "union")) >= 2, timeout=140, what="two Jobs")
    cluster.kubectl(
        "patch", "stask", "union", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"suspend": True}}),
    )  # fmt: skip
    time.sleep(2)  # a run that started meanwhile shows in Jobs, status and Events alike
    found = jobs(cluster, namespace, "union")
    slots = sorted(slot_of(j) for j in found)
    assert all(s.second == 0 for s in slots)
    assert len(set(slots)) == len(slots)
    assert slots[1] - slots[0] == timedelta(minutes=1)
    st = poll(
        lambda: (s := status(cluster, namespace, "union")).get("runCount", 0) >= len(found) and s,
        timeout=20,
        what="the runs counted",
    )
    started = poll(
        lambda: (n := reasons(cluster, namespace, "union").count("RunStarted")) >= len(found) and n,
        timeout=20,
        what="the RunStarted Events",
    )
    assert st["runCount"] == started == len(found)  # one run per slot, shared or not
    assert st["schedule"] == ("* * * * *; * * * * * (Asia/Kolkata); */2 * * * * (America/New_York)")


# --- calendars ------------------------------------------------------------------------------------


def test_a_calendar_is_held_while_missing_and_its_changes_apply_at_once(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("held", interval="4s", calendarRef={"name": "blackout"}), namespace)
    cluster.apply(task("neighbour", interval="4s"), namespace)

    # Missing: Ready=False with one Warning Event, no Job; the neighbour is not affected.
    st = poll(
        lambda: (
            (s := status(cluster, namespace, "held"))
            and condition(s, "Ready").get("reason") == "CalendarNotFound"
            and s
        ),
        timeout=20,
        what="Ready=False CalendarNotFound",
    )
    assert 'calendar "blackout" not found' in condition(st, "Ready")["message"]
    poll(lambda: len(jobs(cluster, namespace, "neighbour")) >= 2, timeout=20, what="two Jobs")
    assert reasons(cluster, namespace, "held").count("CalendarNotFound") == 1
    assert jobs(cluster, namespace, "held") == []

    # The calendar arrives, excluding the minutes from now on: slots are Excluded, not run.
    now = datetime.now(UTC)
    minutes = ",".join(str((now.minute + i) % 60) for i in range(4))
    cluster.apply(
        calendar("blackout", {"cron": f"{minutes} * * * *", "reason": "freeze"}), namespace
    )

    def excluded() -> list[dict[str, Any]]:
        st = status(cluster, namespace, "held")
        return [r for r in st.get("runs") or [] if r["result"] == "Excluded"]

    records = poll(lambda: len(excluded()) >= 2 and excluded(), timeout=20, what="Excluded runs")
    assert "excluded by calendar blackout: freeze" in records[0]["message"]
    st = status(cluster, namespace, "held")
    assert condition(st, "Ready")["status"] == "True"
    assert "CalendarFound" in reasons(cluster, namespace, "held")
    assert "RunExcluded" in reasons(cluster, namespace, "held")
    frozen = {int(m) for m in minutes.split(",")}
    # Slots held before the calendar came are caught up (Latest) or Missed; excluded ones never.
    assert not any(
        r["result"] != "Excluded" and ts(r["run"]).minute in frozen and ts(r["run"]) >= now
        for r in st.get("runs") or []
    )
    held_jobs = jobs(cluster, namespace, "held")
    assert all(slot_of(j) < now.replace(second=0, microsecond=0) for j in held_jobs), held_jobs

    # Lifting the exclusion takes effect at once: a Job within the formerly excluded minutes.
    cluster.kubectl(
        "patch", "calendar", "blackout", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"exclude": []}}),
    )  # fmt: skip
    lifted = datetime.now(UTC)
    found = poll(
        lambda: [j for j in jobs(cluster, namespace, "held") if slot_of(j) >= lifted],
        timeout=15,
        what="a Job once the exclusion is lifted",
    )
    assert slot_of(found[0]) - lifted < timedelta(seconds=6)
    assert slot_of(found[0]).minute in frozen

    # Deleting the calendar holds the task again, with one more Event.
    cluster.kubectl("delete", "calendar", "blackout", "-n", namespace)
    poll(
        lambda: (
            condition(status(cluster, namespace, "held"), "Ready").get("reason")
            == "CalendarNotFound"
        ),
        timeout=20,
        what="CalendarNotFound again",
    )
    assert reasons(cluster, namespace, "held").count("CalendarNotFound") == 2


# --- concurrencyPolicy Queue ----------------------------------------------------------------------


def job_finished_at(job: dict[str, Any]) -> datetime:
    return max(
        ts(c["lastTransitionTime"])
        for c in job["status"]["conditions"]
        if c["type"] in ("Complete", "Failed") and c["status"] == "True"
    )


def test_queue_starts_the_waiting_slot_as_soon_as_the_run_ends(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(
        task(
            "queue",
            interval="5s",
            concurrencyPolicy="Queue",
            history={"succeeded": 10, "failed": 10},
            pod_annotations={"test.nightshift.dev/run-for": "12s"},
        ),
        namespace,
    )
    # While the first run is active, the next slot waits in status.queued.
    st = poll(
        lambda: (s := status(cluster, namespace, "queue")).get("queued") and s,
        timeout=30,
        what="a queued slot in status",
    )
    first = st["active"][0]
    assert ts(st["queued"]["scheduledAt"]) > ts(first["scheduledAt"])

    def two_finished() -> list[dict[str, Any]] | None:
        done = [j for j in jobs(cluster, namespace, "queue") if finished(j) == "Complete"]
        return done if len(done) >= 2 else None

    peak = 0
    deadline = time.monotonic() + 60
    done = None
    while done is None and time.monotonic() < deadline:
        peak = max(peak, len([j for j in jobs(cluster, namespace, "queue") if not finished(j)]))
        done = two_finished()
        time.sleep(0.5)
    assert done is not None, "two runs did not finish"
    assert peak == 1  # never two at once
    earlier, later = sorted(done, key=slot_of)[:2]
    # The queued run's Job was created as soon as the earlier run ended, not at a later slot.
    gap = ts(later["metadata"]["creationTimestamp"]) - job_finished_at(earlier)
    assert timedelta(0) <= gap < timedelta(seconds=3), gap
    assert slot_of(later) - slot_of(earlier) == timedelta(seconds=5)  # the very next slot
    # Slots that came due while one was already queued were Skipped: at most one waits.
    st = status(cluster, namespace, "queue")
    skipped = [r for r in st["runs"] if r["result"] == "Skipped"]
    assert skipped
    assert "already queued" in skipped[0]["message"]
    assert {"RunQueued", "RunSkipped"} <= set(reasons(cluster, namespace, "queue"))
    started = [e["message"] for e in events(cluster, namespace, "queue")]
    assert any("it was queued at" in m for m in started)


# --- backfill -------------------------------------------------------------------------------------


def backfill(
    name: str, task_name: str, start: datetime, end: datetime, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "Backfill",
        "metadata": {"name": name},
        "spec": {
            "taskRef": {"name": task_name},
            "from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **spec,
        },
    }


def bf_status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get("backfill", name, "-n", namespace).get("status") or {}
    return result


def bf_reasons(cluster: Any, namespace: str, name: str) -> list[str]:
    items = cluster.get(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [e["reason"] for e in items if e["involvedObject"].get("kind") == "Backfill"]


def test_backfill_runs_the_missing_slots_once_across_a_restart(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(seconds=now.second % 20)
    # The schedule's own slots are every 20 s from its creation on; the 9 slots before it are
    # the past to backfill.
    cluster.apply(
        task(
            "report",
            interval="20s",
            anchor=anchor.strftime("%Y-%m-%dT%H:%M:%SZ"),
            history={"succeeded": 20},  # keeps every Job, to count them
            pod_annotations={"test.nightshift.dev/run-for": "3s"},
        ),
        namespace,
    )
    start, end = anchor - timedelta(seconds=180), anchor - timedelta(seconds=1)
    expected = [start + timedelta(seconds=20 * i) for i in range(9)]

    # A dry run lists the slots and runs none.
    cluster.apply(backfill("look", "report", start, end, dryRun=True), namespace)
    st = poll(
        lambda: (s := bf_status(cluster, namespace, "look")).get("phase") == "DryRun" and s,
        timeout=20,
        what="the dry run's plan",
    )
    assert [ts(s["run"]) for s in st["slots"]] == expected
    assert {s["state"] for s in st["slots"]} == {"Pending"}
    assert "DryRun" in bf_reasons(cluster, namespace, "look")

    cluster.apply(backfill("past", "report", start, end), namespace)

    def ours() -> list[dict[str, Any]]:
        return [
            j
            for j in jobs(cluster, namespace, "report")
            if j["metadata"]["labels"].get("nightshift.dev/backfill") == "past"
        ]

    poll(
        lambda: len([j for j in ours() if finished(j) == "Complete"]) >= 2,
        timeout=40,
        what="two backfilled runs",
    )
    operator.kill()  # part-way: the plan and the progress are in status
    operator.start()
    st = poll(
        lambda: (s := bf_status(cluster, namespace, "past")).get("phase") == "Succeeded" and s,
        timeout=90,
        what="the backfill to finish",
    )
    assert st["progress"] == "9/9"
    assert st["succeeded"] == 9
    assert [ts(s["run"]) for s in st["slots"]] == expected
    # Exactly one Job per slot, with the name the schedule would have used.
    names = sorted(j["metadata"]["name"] for j in ours())
    assert names == [f"report-{slot:%Y%m%d%H%M%S}-1" for slot in expected]
    assert {"BackfillPlanned", "RunStarted", "BackfillComplete"} <= set(
        bf_reasons(cluster, namespace, "past")
    )
    # The task's own record is undisturbed: no backfilled run in its history, nothing Missed,
    # and its cursor only ever moved over its own slots.
    task_status = status(cluster, namespace, "report")
    assert ts(task_status["lastSlotTime"]) >= anchor
    assert not any(ts(r["run"]) < anchor for r in task_status.get("runs") or [])
    assert not any(r["result"] == "Missed" for r in task_status.get("runs") or [])

    # Reprocessing All plans re-runs with the next attempt number: new Job names.
    cluster.apply(backfill("again", "report", start, end, reprocess="All", dryRun=True), namespace)
    st = poll(
        lambda: (s := bf_status(cluster, namespace, "again")).get("phase") == "DryRun" and s,
        timeout=20,
        what="the second plan",
    )
    assert {(s["state"], s["firstAttempt"]) for s in st["slots"]} == {("Pending", 2)}


# --- admission ------------------------------------------------------------------------------------


def test_admission_rejects_bad_schedules_calendars_and_backfills_naming_the_field(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    webhook = f"{namespace}.nightshift.dev"
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace], webhook=webhook)
    op.start()

    def apply(obj: dict[str, Any]) -> Any:
        return cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
        )

    try:
        # The API server picks up the webhook configuration asynchronously (failurePolicy
        # Ignore admits everything meanwhile): probe until it answers for a Calendar.
        probe = calendar("probe", {"cron": "61 * * * *"})
        poll(lambda: apply(probe).returncode != 0, timeout=30, what="the webhook to be called")
        start = datetime(2026, 11, 1, tzinfo=UTC)
        cases = [
            # The webhook: what the schema and CEL cannot judge.
            (task("t", schedules=[{"cron": "@daily"}, {"cron": "61 * * * *"}]),
             "spec.schedules[1].cron: minute field '61'"),
            (task("t", schedules=[{"cron": "@daily", "timeZone": "Mars/Olympus"}]),
             'spec.schedules[0].timeZone: unknown time zone "Mars/Olympus"'),
            (task("t", interval="1h", exclude=[{"cron": "* 25 * * *"}]),
             "spec.exclude[0].cron: hour field '25'"),
            (calendar("c", {"date": "2026-02-30"}), "spec.exclude[0].date: "),
            (calendar("c", {"cron": "* * * * FUNDAY"}), "spec.exclude[0].cron: "),
            # The schema and CEL.
            (task("t", schedule="@daily", schedules=[{"cron": "@hourly"}]),
             "set exactly one of schedule, interval, at and schedules"),
            (calendar("c", {"date": "2026-12-25", "cron": "* * * * *"}),
             "set exactly one of date, start (with end) and cron"),
            (calendar("c", {"start": "2026-12-26", "end": "2026-12-24"}),
             "start must not be after end"),
            (calendar("c", {"date": "25.12.2026"}), "spec.exclude[0].date"),
            (backfill("b", "t", start, start - timedelta(days=1)), "from must be before to"),
            (backfill("b", "t", start, start + timedelta(days=1), parallelism=0),
             "spec.parallelism"),
            (backfill("b", "t", start, start + timedelta(days=1), reprocess="Some"),
             "spec.reprocess"),
        ]  # fmt: skip
        for obj, expected in cases:
            result = apply(obj)
            assert result.returncode != 0, obj
            assert expected in result.stderr, (expected, result.stderr)
        # A Backfill's spec is fixed once created: another range is another Backfill.
        assert apply(backfill("b", "t", start, start + timedelta(days=1))).returncode == 0
        result = apply(backfill("b", "t", start, start + timedelta(days=2)))
        assert result.returncode != 0
        assert "a Backfill's spec cannot change" in result.stderr
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", webhook, check=False)

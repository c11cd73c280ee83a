"""Several schedules, calendars, queueing and backfills with the real operator process on the
local control plane: what a user sees in Jobs, status and Events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import Operator, poll
from test_operator import condition, events, finished, jobs, reasons, status, task, ts


@pytest.fixture
def operator(cluster: Any, crd: None, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace])
    op.start()
    try:
        yield op
    finally:
        op.stop()


def calendar(name: str, *exclude: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "Calendar",
        "metadata": {"name": name},
        "spec": {"exclude": list(exclude)},
    }


def slot_of(job: dict[str, Any]) -> datetime:
    return ts(job["metadata"]["annotations"]["nightshift.dev/scheduled-at"])


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

"""Tables for the pure reconciler ``nightshift.reconcile`` (``decide`` and ``settle``).

In the style of Kubernetes' ``pkg/controller/cronjob`` sync tests: one row per situation, each row
asserting the Jobs created (by name), the Jobs deleted, the Event reasons, status fields and the
wake-up time. Every expected value is written out by hand; none is computed with the code under
test (the jitter rows take the jitter from ``nightshift.schedule``, which has its own tests).

The task is ``school/sync-ics``; unless a row says otherwise it runs hourly (``0 * * * *``, UTC)
with the defaults (Forbid, catchUp Latest, no deadline, no retries, history 3/5), and every time is
on 2026-03-01 (``at("03:00")`` is 2026-03-01T03:00:00Z).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightshift.jobs import ANNOTATION_RUN_NOW, ANNOTATION_SLOT, job_name
from nightshift.models import SpecError, TaskSpec, TaskStatus, parse_spec
from nightshift.reconcile import (
    Decision,
    JobView,
    Outcome,
    TaskView,
    backoff_delay,
    decide,
    settle,
)
from nightshift.schedule import jitter_for, next_fire_times, plan_for

NS = "school"
NAME = "sync-ics"
UID = "6f1c2a9e-0000-4000-8000-000000000001"
TEMPLATE: dict[str, Any] = {
    "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
}
DAY = "2026-03-01T"
BEFORE = "2026-02-01T00:00:00Z"  # default creation time: long before every row's slots


# --- builders -------------------------------------------------------------------------------------


def utc(text: str) -> datetime:
    """An aware UTC datetime from RFC 3339 (``...Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def at(hms: str) -> str:
    """``"03:00"`` or ``"03:00:05"`` on the test day, as RFC 3339 UTC."""
    return f"{DAY}{hms if hms.count(':') == 2 else hms + ':00'}Z"


def t(hms: str) -> datetime:
    return utc(at(hms))


def make_spec(**overrides: Any) -> TaskSpec:
    """Hourly UTC task; an override of None removes the field (e.g. schedule=None, at=...)."""
    data: dict[str, Any] = {"schedule": "0 * * * *", "jobTemplate": TEMPLATE}
    data.update(overrides)
    return parse_spec({k: v for k, v in data.items() if v is not None})


def manual(token: str) -> str:
    """The run id of a run-now token, written out (sha256(token)[:10])."""
    return {
        "abc": "manual-ba7816bf8f",
        "def": "manual-cb8379ac20",
    }[token]


def name_of(run: str, attempt: int = 1) -> str:
    return job_name(NAME, run, attempt)


def job(
    slot: str,
    attempt: int = 1,
    *,
    finished: Literal["Succeeded", "Failed"] | None = None,
    reason: str | None = None,
    finished_at: str | None = None,
    exit_code: int | None = None,
    message: str | None = None,
    token: str | None = None,
    created: str | None = None,
) -> JobView:
    """A Job of the task: ``slot`` is ``"03:00"`` or a manual run id."""
    run = slot if slot.startswith("manual-") else at(slot)
    return JobView(
        name=name_of(run, attempt),
        run=run,
        attempt=attempt,
        slot=None if slot.startswith("manual-") else utc(run),
        created=utc(created) if created else (utc(run) if not token else None),
        finished=finished,
        reason=reason,
        finished_at=utc(finished_at) if finished_at else None,
        exit_code=exit_code,
        message=message,
        run_now_token=token,
    )


def active(slot: str, attempt: int = 1, *, started: str | None = None) -> dict[str, Any]:
    """A status.active entry (JSON form) for the Job of ``slot``."""
    run = slot if slot.startswith("manual-") else at(slot)
    entry: dict[str, Any] = {
        "run": run,
        "attempt": attempt,
        "job": name_of(run, attempt),
        "startedAt": started or (at(slot) if not slot.startswith("manual-") else at("03:20")),
    }
    if not slot.startswith("manual-"):
        entry["scheduledAt"] = run
    return entry


def record(slot: str, result: str, attempt: int = 1, *, job: bool = True) -> dict[str, Any]:
    """A status.runs entry (JSON form)."""
    run = slot if slot.startswith("manual-") else at(slot)
    entry: dict[str, Any] = {"run": run, "attempt": attempt, "result": result}
    if job:
        entry["job"] = name_of(run, attempt)
    return entry


def pending(slot: str, attempt: int, not_before: str) -> dict[str, Any]:
    return {
        "run": at(slot),
        "attempt": attempt,
        "notBefore": at(not_before),
        "scheduledAt": at(slot),
    }


def task(
    spec: TaskSpec | None = None,
    *,
    status: dict[str, Any] | TaskStatus | None = None,
    jobs: tuple[JobView, ...] = (),
    run_now: str | None = None,
    created: str = BEFORE,
    generation: int = 1,
    spec_error: SpecError | None = None,
    name: str = NAME,
) -> TaskView:
    parsed = status if isinstance(status, TaskStatus) else TaskStatus.model_validate(status or {})
    return TaskView(
        namespace=NS,
        name=name,
        uid=UID,
        generation=generation,
        created=utc(created),
        spec=spec if spec_error is None else None,
        spec_error=spec_error,
        status=parsed,
        run_now=run_now,
        jobs=jobs,
    )


def ran(slot: str, **more: Any) -> dict[str, Any]:
    """A status where ``slot`` was the last slot handled and started (observedGeneration 1)."""
    return {
        "observedGeneration": 1,
        "lastSlotTime": at(slot),
        "lastScheduleTime": at(slot),
        "runCount": 1,
        **more,
    }


# --- rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One situation and everything one sync must decide about it."""

    id: str
    now: str
    spec: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    jobs: tuple[JobView, ...] = ()
    run_now: str | None = None
    created: str = BEFORE
    generation: int = 1
    # expectations
    creates: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    wake: str | None = None
    active: tuple[str, ...] | None = None  # job names in status.active
    runs: tuple[tuple[str, int, str], ...] | None = None  # (run, attempt, result), newest first
    first_run: dict[str, Any] = field(default_factory=dict)  # fields of status.runs[0]
    pending: tuple[tuple[str, int, str], ...] | None = None  # (run, attempt, notBefore)
    fields: dict[str, Any] = field(default_factory=dict)  # status fields, JSON form
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type: (status, reason)
    says: dict[str, str] = field(default_factory=dict)  # event reason: text in its message


def view_of(row: Row) -> TaskView:
    return task(
        make_spec(**row.spec),
        status=row.status,
        jobs=row.jobs,
        run_now=row.run_now,
        created=row.created,
        generation=row.generation,
    )


def condition(status: TaskStatus, kind: str) -> tuple[str, str]:
    found = [c for c in status.conditions if c.type == kind]
    assert len(found) == 1, f"exactly one {kind} condition expected, got {found}"
    return found[0].status, found[0].reason


def check(row: Row, view: TaskView, decision: Decision) -> None:
    """Assert a row's expectations and the invariants every sync must keep."""
    status = decision.status
    now = utc(row.now)
    assert [c.name for c in decision.create] == list(row.creates)
    assert [d.name for d in decision.delete] == list(row.deletes)
    assert [e.reason for e in decision.events] == list(row.events)
    assert decision.wake_at == (utc(row.wake) if row.wake else None)
    if row.active is not None:
        assert [a.job for a in status.active] == list(row.active)
    if row.runs is not None:
        assert [(r.run, r.attempt, r.result.value) for r in status.runs] == list(row.runs)
    if row.pending is not None:
        got = [(p.run, p.attempt, p.notBefore) for p in status.pendingRetries]
        assert got == [(run, attempt, utc(nb)) for run, attempt, nb in row.pending]
    if row.first_run:
        first = status.runs[0].model_dump(mode="json")
        assert {k: first[k] for k in row.first_run} == row.first_run
    dumped = status.model_dump(mode="json")
    for key, value in row.fields.items():
        assert dumped[key] == value, key
    for kind, expected in row.conditions.items():
        assert condition(status, kind) == expected, kind
    for reason, text in row.says.items():
        messages = [e.message for e in decision.events if e.reason == reason]
        assert messages, f"no {reason} Event"
        assert any(text in m for m in messages), messages

    # Invariants of every sync.
    assert status.activeCount == len(status.active)
    assert status.observedGeneration == view.generation
    existing = {j.name for j in view.jobs}
    for create in decision.create:
        assert create.name not in existing, "asked to create a Job that already exists"
        assert create.name in {a.job for a in status.active}
        assert len(create.name) <= 63
    assert len({c.name for c in decision.create}) == len(decision.create)
    active_jobs = {j.name for j in view.jobs if j.finished is None}
    replaced = {r.job for r in status.runs if r.result.value == "Replaced"}
    for delete in decision.delete:
        assert delete.name not in active_jobs or delete.name in replaced
    before = view.status.lastScheduleTime
    if before is not None:
        assert status.lastScheduleTime is not None
        assert status.lastScheduleTime >= before, "lastScheduleTime went backwards"
    assert decision.wake_at is None or decision.wake_at > now
    reasons = [e.reason for e in decision.events]
    for once in ("MissedSlots", "InvalidSpec", "Completed", "JobNameConflict", "SpecValid"):
        assert reasons.count(once) <= 1, once
    TaskStatus.model_validate(dumped)  # what is written back reads back


def run_rows(row: Row) -> Decision:
    view = view_of(row)
    decision = decide(view, utc(row.now))
    check(row, view, decision)
    return decision


# --- scheduling: never ran / ran / due / not due / missed / deadline ------------------------------

J03 = "sync-ics-20260301030000-1"
J04 = "sync-ics-20260301040000-1"

SCHEDULING = [
    Row(
        id="never ran, not yet due: wake at the next fire time",
        created=at("02:30"),
        now=at("02:45"),
        wake=at("03:00"),
        fields={"nextScheduleTime": at("03:00"), "lastScheduleTime": None, "runCount": 0},
        conditions={
            "Ready": ("True", "Scheduled"),
            "Suspended": ("False", "Active"),
            "Running": ("False", "Idle"),
            "Failing": ("False", "AsExpected"),
            "Completed": ("False", "Scheduling"),
        },
    ),
    Row(
        id="never ran, due now: one Job for the slot",
        created=at("02:30"),
        now=at("03:00:05"),
        creates=(J03,),
        events=("RunStarted",),
        wake=at("04:00"),
        active=(J03,),
        runs=(),
        fields={
            "lastScheduleTime": at("03:00"),
            "lastSlotTime": at("03:00"),
            "nextScheduleTime": at("04:00"),
            "runCount": 1,
            "activeCount": 1,
        },
        conditions={"Running": ("True", "JobActive")},
        says={"RunStarted": J03},
    ),
    Row(
        id="created after the slot: that slot is not run",
        created=at("03:00:30"),
        now=at("03:00:40"),
        wake=at("04:00"),
        fields={"lastScheduleTime": None},
    ),
    Row(
        id="ran, next not yet due",
        status=ran("03:00", runs=[record("03:00", "Succeeded")]),
        now=at("03:30"),
        wake=at("04:00"),
        runs=((at("03:00"), 1, "Succeeded"),),
        fields={"nextScheduleTime": at("04:00"), "lastScheduleTime": at("03:00")},
    ),
    Row(
        id="ran, next due exactly now",
        status=ran("03:00"),
        now=at("04:00"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("05:00"),
        fields={"lastScheduleTime": at("04:00"), "runCount": 2},
    ),
    Row(
        id="one late slot, catchUp Latest: still run",
        status=ran("03:00"),
        now=at("04:30"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("05:00"),
    ),
    Row(
        id="one late slot, catchUp Skip: Missed",
        spec={"catchUp": "Skip"},
        status=ran("03:00"),
        now=at("04:30"),
        events=("MissedSlots",),
        wake=at("05:00"),
        runs=((at("04:00"), 1, "Missed"),),
        fields={"lastSlotTime": at("04:00"), "lastScheduleTime": at("03:00")},
    ),
    Row(
        id="missed many, catchUp Latest: newest runs, the rest Missed, one Event",
        status=ran("03:00"),
        now=at("08:10"),
        creates=("sync-ics-20260301080000-1",),
        events=("MissedSlots", "RunStarted"),
        wake=at("09:00"),
        runs=(
            (at("07:00"), 1, "Missed"),
            (at("06:00"), 1, "Missed"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
        ),
        fields={"lastSlotTime": at("08:00"), "lastScheduleTime": at("08:00"), "runCount": 2},
        says={"MissedSlots": "4 slot(s) missed"},
    ),
    Row(
        id="missed many, catchUp Skip, newest on time: only it runs",
        spec={"catchUp": "Skip"},
        status=ran("03:00"),
        now=at("08:00:30"),
        creates=("sync-ics-20260301080000-1",),
        events=("MissedSlots", "RunStarted"),
        wake=at("09:00"),
        runs=(
            (at("07:00"), 1, "Missed"),
            (at("06:00"), 1, "Missed"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
        ),
    ),
    Row(
        id="missed many, catchUp Skip, none on time: all Missed",
        spec={"catchUp": "Skip"},
        status=ran("03:00"),
        now=at("08:10"),
        events=("MissedSlots",),
        wake=at("09:00"),
        runs=(
            (at("08:00"), 1, "Missed"),
            (at("07:00"), 1, "Missed"),
            (at("06:00"), 1, "Missed"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
        ),
        fields={"lastSlotTime": at("08:00"), "lastScheduleTime": at("03:00"), "runCount": 1},
    ),
    Row(
        id="missed many, catchUp All under Allow: the newest maxCatchUp run",
        spec={"catchUp": "All", "maxCatchUp": 3, "concurrencyPolicy": "Allow"},
        status=ran("03:00"),
        now=at("08:10"),
        creates=(
            "sync-ics-20260301060000-1",
            "sync-ics-20260301070000-1",
            "sync-ics-20260301080000-1",
        ),
        events=("MissedSlots", "RunStarted", "RunStarted", "RunStarted"),
        wake=at("09:00"),
        runs=((at("05:00"), 1, "Missed"), (at("04:00"), 1, "Missed")),
        fields={"lastScheduleTime": at("08:00"), "runCount": 4, "activeCount": 3},
    ),
    Row(
        id="missed many, catchUp All under Forbid: first runs, the others Skipped",
        spec={"catchUp": "All", "maxCatchUp": 3},
        status=ran("03:00"),
        now=at("08:10"),
        creates=("sync-ics-20260301060000-1",),
        events=("MissedSlots", "RunStarted", "RunSkipped", "RunSkipped"),
        wake=at("09:00"),
        runs=(
            (at("08:00"), 1, "Skipped"),
            (at("07:00"), 1, "Skipped"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
        ),
        fields={"lastScheduleTime": at("06:00"), "lastSlotTime": at("08:00"), "runCount": 2},
    ),
    Row(
        id="down for a month: Missed records bounded by the cap, still one Event",
        spec={"catchUp": "All", "maxCatchUp": 2, "concurrencyPolicy": "Allow"},
        status=ran("03:00").copy() | {"lastSlotTime": BEFORE, "lastScheduleTime": BEFORE},
        now=at("08:10"),
        # cap = max(maxCatchUp 2, history.failed 5) + 1 = 6 slots looked at: 03:00..08:00
        creates=("sync-ics-20260301070000-1", "sync-ics-20260301080000-1"),
        events=("MissedSlots", "RunStarted", "RunStarted"),
        wake=at("09:00"),
        runs=(
            (at("06:00"), 1, "Missed"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
            (at("03:00"), 1, "Missed"),
        ),
        fields={"lastSlotTime": at("08:00")},
        says={"MissedSlots": "4 or more slot(s) missed"},
    ),
    Row(
        id="past startingDeadlineSeconds: Missed, not run",
        spec={"startingDeadlineSeconds": 300},
        status=ran("03:00"),
        now=at("04:10"),
        events=("MissedSlots",),
        wake=at("05:00"),
        runs=((at("04:00"), 1, "Missed"),),
        first_run={"message": "missed: past startingDeadlineSeconds", "job": None},
        fields={"lastSlotTime": at("04:00"), "lastScheduleTime": at("03:00"), "runCount": 1},
    ),
    Row(
        id="late but within startingDeadlineSeconds: run",
        spec={"startingDeadlineSeconds": 300},
        status=ran("03:00"),
        now=at("04:04"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("05:00"),
    ),
    Row(
        id="a deadline shorter than the grace period still counts",
        spec={"startingDeadlineSeconds": 10},
        status=ran("03:00"),
        now=at("04:00:30"),
        events=("MissedSlots",),
        wake=at("05:00"),
        runs=((at("04:00"), 1, "Missed"),),
    ),
    Row(
        id="missed many with a deadline: the newest within it runs",
        spec={"startingDeadlineSeconds": 300},
        status=ran("03:00"),
        now=at("08:02"),
        creates=("sync-ics-20260301080000-1",),
        events=("MissedSlots", "RunStarted"),
        wake=at("09:00"),
        runs=(
            (at("07:00"), 1, "Missed"),
            (at("06:00"), 1, "Missed"),
            (at("05:00"), 1, "Missed"),
            (at("04:00"), 1, "Missed"),
        ),
    ),
]


@pytest.mark.parametrize("row", SCHEDULING, ids=lambda r: r.id)
def test_scheduling(row: Row) -> None:
    run_rows(row)


# --- concurrency ----------------------------------------------------------------------------------

RUNNING_03 = ran("03:00", active=[active("03:00", started=at("03:00:01"))])
JOB_03_RUNNING = job("03:00", created=at("03:00:01"))
RETRY_PENDING_03 = ran(
    "03:00",
    pendingRetries=[pending("03:00", 2, "04:05")],
    runs=[record("03:00", "Failed")],
)
JOB_03_FAILED = job(
    "03:00", finished="Failed", reason="BackoffLimitExceeded", finished_at=at("03:55"), exit_code=1
)

CONCURRENCY = [
    Row(
        id="Allow, previous still active: overlap, two active",
        spec={"concurrencyPolicy": "Allow"},
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        now=at("04:00:05"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("05:00"),
        active=(J03, J04),
        runs=(),
        fields={"lastScheduleTime": at("04:00"), "runCount": 2, "activeCount": 2},
    ),
    Row(
        id="Forbid, previous still active: slot Skipped, no Job",
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        now=at("04:00:05"),
        events=("RunSkipped",),
        wake=at("05:00"),
        active=(J03,),
        runs=((at("04:00"), 1, "Skipped"),),
        first_run={"job": None, "scheduledAt": at("04:00")},
        fields={"lastSlotTime": at("04:00"), "lastScheduleTime": at("03:00"), "runCount": 1},
        says={"RunSkipped": "Forbid"},
    ),
    Row(
        id="Replace, previous still active: delete it, record Replaced, new Job",
        spec={"concurrencyPolicy": "Replace"},
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        now=at("04:00:05"),
        creates=(J04,),
        deletes=(J03,),
        events=("RunReplaced", "RunStarted"),
        wake=at("05:00"),
        active=(J04,),
        runs=((at("03:00"), 1, "Replaced"),),
        first_run={"job": J03, "finishedAt": at("04:00:05")},
        fields={"lastScheduleTime": at("04:00"), "runCount": 2},
    ),
    Row(
        id="Forbid, a retry is pending: the new slot is Skipped",
        spec={"retry": {"maxRetries": 2}},
        status=RETRY_PENDING_03,
        jobs=(JOB_03_FAILED,),
        now=at("04:00:05"),
        events=("RunSkipped",),
        wake=at("04:05"),
        runs=((at("04:00"), 1, "Skipped"), (at("03:00"), 1, "Failed")),
        pending=((at("03:00"), 2, at("04:05")),),
        fields={"nextScheduleTime": at("04:05")},
        conditions={"Running": ("False", "RetryPending")},
    ),
    Row(
        id="Replace, a retry is pending: the retry is cancelled (one Event), new Job",
        spec={"retry": {"maxRetries": 2}, "concurrencyPolicy": "Replace"},
        status=RETRY_PENDING_03,
        jobs=(JOB_03_FAILED,),
        now=at("04:00:05"),
        creates=(J04,),
        events=("RunReplaced", "RunStarted"),
        wake=at("05:00"),
        runs=((at("03:00"), 2, "Cancelled"), (at("03:00"), 1, "Failed")),
        pending=(),
        active=(J04,),
    ),
    Row(
        id="Allow, a retry is pending: new Job, the retry stays",
        spec={"retry": {"maxRetries": 2}, "concurrencyPolicy": "Allow"},
        status=RETRY_PENDING_03,
        jobs=(JOB_03_FAILED,),
        now=at("04:00:05"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("04:05"),
        pending=((at("03:00"), 2, at("04:05")),),
    ),
    Row(
        id="Forbid, previous finished: the new slot runs",
        status=RUNNING_03,
        jobs=(job("03:00", finished="Succeeded", finished_at=at("03:30"), exit_code=0),),
        now=at("04:00:05"),
        creates=(J04,),
        events=("RunSucceeded", "RunStarted"),
        wake=at("05:00"),
        active=(J04,),
        runs=((at("03:00"), 1, "Succeeded"),),
    ),
]


@pytest.mark.parametrize("row", CONCURRENCY, ids=lambda r: r.id)
def test_concurrency(row: Row) -> None:
    run_rows(row)


QUEUED_03 = replace(job("03:00", created=at("03:00:01")), suspended=True)

QUEUED = [
    Row(
        id="a Job held by a queue (spec.suspend) is active, and shown as queued",
        status=RUNNING_03,
        jobs=(QUEUED_03,),
        now=at("03:30"),
        wake=at("04:00"),
        active=(J03,),
        conditions={"Running": ("True", "Queued")},
    ),
    Row(
        id="Forbid: a slot due while the run is queued is Skipped",
        status=RUNNING_03,
        jobs=(QUEUED_03,),
        now=at("04:00:05"),
        events=("RunSkipped",),
        wake=at("05:00"),
        active=(J03,),
        runs=((at("04:00"), 1, "Skipped"),),
    ),
    Row(
        id="Replace: the queued run is replaced, not left to pile up",
        spec={"concurrencyPolicy": "Replace"},
        status=RUNNING_03,
        jobs=(QUEUED_03,),
        now=at("04:00:05"),
        creates=(J04,),
        deletes=(J03,),
        events=("RunReplaced", "RunStarted"),
        wake=at("05:00"),
        active=(J04,),
        runs=((at("03:00"), 1, "Replaced"),),
    ),
    Row(
        id="admitted by the queue: running, no longer queued",
        status=ran("03:00", active=[{**active("03:00"), "queued": True}]),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:40"),
        wake=at("04:00"),
        active=(J03,),
        conditions={"Running": ("True", "JobActive")},
    ),
]


@pytest.mark.parametrize("row", QUEUED, ids=lambda r: r.id)
def test_jobs_held_by_a_queue_count_as_active(row: Row) -> None:
    decision = run_rows(row)
    queued = [a.queued for a in decision.status.active]
    held = any(j.suspended for j in row.jobs) and not row.deletes
    assert queued == ([True] if held else [None])


# --- suspend, window, one-shot, interval, maxRuns ------------------------------------------------

SUSPENDED = {
    "type": "Suspended",
    "status": "True",
    "reason": "Suspended",
    "lastTransitionTime": at("03:30"),
}
COMPLETED = {
    "type": "Completed",
    "status": "True",
    "reason": "Finished",
    "lastTransitionTime": at("04:10"),
}

KINDS = [
    Row(
        id="suspended, a slot is due: no Job, no wake-up",
        spec={"suspend": True},
        status=ran("03:00"),
        now=at("04:00:05"),
        fields={"lastSlotTime": at("04:00:05"), "nextScheduleTime": None, "runCount": 1},
        conditions={"Suspended": ("True", "Suspended"), "Completed": ("False", "Scheduling")},
    ),
    Row(
        id="suspended, the active run still finishes and is recorded",
        spec={"suspend": True},
        status=RUNNING_03,
        jobs=(job("03:00", finished="Succeeded", finished_at=at("03:40"), exit_code=0),),
        now=at("04:00:05"),
        events=("RunSucceeded",),
        runs=((at("03:00"), 1, "Succeeded"),),
        active=(),
    ),
    Row(
        id="suspended, a pending retry of an earlier run still starts",
        spec={"suspend": True, "retry": {"maxRetries": 2}},
        status=RETRY_PENDING_03,
        jobs=(JOB_03_FAILED,),
        now=at("04:05"),
        creates=("sync-ics-20260301030000-2",),
        events=("RetryStarted",),
    ),
    Row(
        id="resumed (generation bump): the slots that passed while suspended do not run",
        status=ran("03:00", lastSlotTime=at("03:30"), conditions=[SUSPENDED]),
        generation=2,
        now=at("06:10"),
        wake=at("07:00"),
        runs=(),
        fields={"lastScheduleTime": at("03:00"), "nextScheduleTime": at("07:00")},
        conditions={"Suspended": ("False", "Active")},
    ),
    Row(
        id="window: before startAt, wake at the first slot at startAt",
        spec={"startAt": at("05:00")},
        created=at("02:30"),
        now=at("03:00:05"),
        wake=at("05:00"),
    ),
    Row(
        id="window: a slot at startAt runs",
        spec={"startAt": at("05:00")},
        created=at("02:30"),
        now=at("05:00:02"),
        creates=("sync-ics-20260301050000-1",),
        events=("RunStarted",),
        wake=at("06:00"),
    ),
    Row(
        id="window: endAt passed, nothing active: Completed once",
        spec={"endAt": at("05:00")},
        status=ran("04:00", runs=[record("04:00", "Succeeded")]),
        now=at("04:30"),
        events=("Completed",),
        fields={"nextScheduleTime": None},
        conditions={"Completed": ("True", "Finished")},
        says={"Completed": "window"},
    ),
    Row(
        id="window: no slot left but a run is active: not Completed yet",
        spec={"endAt": at("05:00")},
        status=ran("04:00", active=[active("04:00")]),
        jobs=(job("04:00"),),
        now=at("04:30"),
        conditions={"Completed": ("False", "Scheduling")},
    ),
    Row(
        id="window: Completed already: no second Event",
        spec={"endAt": at("05:00")},
        status=ran("04:00", conditions=[COMPLETED]),
        now=at("06:30"),
        conditions={"Completed": ("True", "Finished")},
    ),
    Row(
        id="one-shot at, not yet: wake at it",
        spec={"schedule": None, "at": at("06:00")},
        created=at("02:30"),
        now=at("05:00"),
        wake=at("06:00"),
        fields={"nextScheduleTime": at("06:00"), "schedule": "at 2026-03-01T06:00:00Z"},
    ),
    Row(
        id="one-shot at, due: one Job, nothing after it",
        spec={"schedule": None, "at": at("06:00")},
        created=at("02:30"),
        now=at("06:00:10"),
        creates=("sync-ics-20260301060000-1",),
        events=("RunStarted",),
        fields={"nextScheduleTime": None, "runCount": 1},
        conditions={"Completed": ("False", "Scheduling")},
    ),
    Row(
        id="one-shot at, its run finished: Completed",
        spec={"schedule": None, "at": at("06:00")},
        status=ran("06:00", active=[active("06:00")]),
        jobs=(job("06:00", finished="Succeeded", finished_at=at("06:05"), exit_code=0),),
        now=at("06:05:30"),
        events=("RunSucceeded", "Completed"),
        runs=((at("06:00"), 1, "Succeeded"),),
        conditions={"Completed": ("True", "Finished")},
        says={"Completed": "one-shot"},
    ),
    Row(
        id="one-shot at, Completed already: nothing more",
        spec={"schedule": None, "at": at("06:00")},
        status=ran("06:00", conditions=[COMPLETED]),
        now=at("07:00"),
        conditions={"Completed": ("True", "Finished")},
    ),
    Row(
        id="interval 6h (anchored at the epoch): due at 06:00",
        spec={"schedule": None, "interval": "6h"},
        created=at("02:30"),
        now=at("06:00:01"),
        creates=("sync-ics-20260301060000-1",),
        events=("RunStarted",),
        wake=at("12:00"),
        fields={"schedule": "every 6h"},
    ),
    Row(
        id="interval 6h anchored at 01:00: next at 07:00",
        spec={"schedule": None, "interval": "6h", "anchor": at("01:00")},
        created=at("02:30"),
        now=at("06:00:01"),
        wake=at("07:00"),
    ),
    Row(
        id="maxRuns 2, second run: started, then no more wake-ups",
        spec={"maxRuns": 2},
        status=ran("03:00"),
        now=at("04:00:05"),
        creates=(J04,),
        events=("RunStarted",),
        fields={"runCount": 2, "nextScheduleTime": None},
        conditions={"Completed": ("False", "Scheduling")},
    ),
    Row(
        id="maxRuns 2 reached and the last run finished: Completed once",
        spec={"maxRuns": 2},
        status=ran("04:00", runCount=2, active=[active("04:00")]),
        jobs=(job("04:00", finished="Succeeded", finished_at=at("04:10"), exit_code=0),),
        now=at("04:10:30"),
        events=("RunSucceeded", "Completed"),
        conditions={"Completed": ("True", "Finished")},
        says={"Completed": "maxRuns 2 reached"},
    ),
    Row(
        id="maxRuns reached, later slots: nothing, no second Event",
        spec={"maxRuns": 2},
        status=ran("04:00", runCount=2, conditions=[COMPLETED]),
        now=at("09:00:05"),
        fields={"runCount": 2, "lastScheduleTime": at("04:00")},
        conditions={"Completed": ("True", "Finished")},
    ),
]


@pytest.mark.parametrize("row", KINDS, ids=lambda r: r.id)
def test_suspend_window_kinds(row: Row) -> None:
    run_rows(row)


# --- jitter ---------------------------------------------------------------------------------------


def test_jitter_is_deterministic_and_bounded() -> None:
    spec = make_spec(jitter="30s")
    plan = plan_for(spec, NS, NAME)
    slots = [t(f"{h:02d}:00") for h in range(24)]
    delays = [jitter_for(plan, s) for s in slots]
    assert delays == [jitter_for(plan_for(spec, NS, NAME), s) for s in slots]  # same every time
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(set(delays)) > 12  # spread, not one constant
    other = plan_for(spec, NS, "another-task")
    assert [jitter_for(other, s) for s in slots] != delays  # seeded by the task


@pytest.mark.parametrize(
    ("offset", "creates", "wake"),
    [
        pytest.param(
            timedelta(0), (), "slot+jitter", id="at the slot: not yet, wake at slot+jitter"
        ),
        pytest.param(
            timedelta(milliseconds=-1), (), "slot+jitter", id="1ms before slot+jitter: not yet"
        ),
        pytest.param(None, (J04,), at("05:00"), id="at slot+jitter: the Job is created"),
    ],
)
def test_jitter_delays_the_job(
    offset: timedelta | None, creates: tuple[str, ...], wake: str
) -> None:
    spec = make_spec(jitter="30s")
    slot = t("04:00")
    delay = jitter_for(plan_for(spec, NS, NAME), slot)
    assert delay > timedelta(seconds=1)  # otherwise the rows below say nothing
    now = slot if offset == timedelta(0) else slot + delay + (offset or timedelta(0))
    decision = decide(task(spec, status=ran("03:00")), now)
    assert [c.name for c in decision.create] == list(creates)
    fire = slot + delay
    if wake == "slot+jitter":
        assert decision.wake_at == fire
        assert decision.status.nextScheduleTime == fire
        assert decision.status.lastSlotTime == t("03:00")
    else:
        assert decision.wake_at == t("05:00") + jitter_for(plan_for(spec, NS, NAME), t("05:00"))
        assert decision.status.lastScheduleTime == slot  # the slot, not the fire time


@pytest.mark.parametrize("now", ["04:00", "04:00:01", "04:00:29", "04:00:30", "04:59:59"])
def test_the_first_fire_time_next_and_preview_list_is_the_operators_next(now: str) -> None:
    spec = make_spec(jitter="30s")
    decision = decide(task(spec, status=ran("03:00")), t(now))
    assert next_fire_times(plan_for(spec, NS, NAME), t(now), 1) == [
        decision.status.nextScheduleTime
    ]


# --- run now --------------------------------------------------------------------------------------

MANUAL_ABC = "sync-ics-mba7816bf8f-1"
MANUAL_DEF = "sync-ics-mcb8379ac20-1"

RUN_NOW = [
    Row(
        id="first token: one manual run",
        status=ran("03:00"),
        run_now="abc",
        now=at("03:20"),
        creates=(MANUAL_ABC,),
        events=("RunStarted",),
        wake=at("04:00"),
        active=(MANUAL_ABC,),
        fields={"runNowToken": "abc", "lastScheduleTime": at("03:00"), "runCount": 1},
        says={"RunStarted": "manual run"},
    ),
    Row(
        id="same token, its run active: nothing",
        status=ran("03:00", runNowToken="abc", active=[active(manual("abc"))]),
        jobs=(job(manual("abc"), token="abc", created=at("03:20")),),
        run_now="abc",
        now=at("03:25"),
        wake=at("04:00"),
        active=(MANUAL_ABC,),
    ),
    Row(
        id="same token, its run finished: nothing",
        status=ran("03:00", runNowToken="abc", runs=[record(manual("abc"), "Succeeded")]),
        run_now="abc",
        now=at("03:50"),
        wake=at("04:00"),
    ),
    Row(
        id="a new token: another manual run",
        status=ran("03:00", runNowToken="abc", runs=[record(manual("abc"), "Succeeded")]),
        run_now="def",
        now=at("03:40"),
        creates=(MANUAL_DEF,),
        events=("RunStarted",),
        wake=at("04:00"),
        fields={"runNowToken": "def"},
    ),
    Row(
        id="Forbid, a run is active: the manual run is Skipped (once)",
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        run_now="abc",
        now=at("03:20"),
        events=("RunSkipped",),
        wake=at("04:00"),
        runs=((manual("abc"), 1, "Skipped"),),
        active=(J03,),
        fields={"runNowToken": "abc"},
    ),
    Row(
        id="Forbid skipped it before: the same token does not try again",
        status=RUNNING_03 | {"runNowToken": "abc", "runs": [record(manual("abc"), "Skipped")]},
        jobs=(JOB_03_RUNNING,),
        run_now="abc",
        now=at("03:30"),
        wake=at("04:00"),
    ),
    Row(
        id="Allow, a run is active: the manual run overlaps",
        spec={"concurrencyPolicy": "Allow"},
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        run_now="abc",
        now=at("03:20"),
        creates=(MANUAL_ABC,),
        events=("RunStarted",),
        active=(J03, MANUAL_ABC),
        wake=at("04:00"),
    ),
    Row(
        id="Replace, a run is active: the manual run replaces it",
        spec={"concurrencyPolicy": "Replace"},
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        run_now="abc",
        now=at("03:20"),
        creates=(MANUAL_ABC,),
        deletes=(J03,),
        events=("RunReplaced", "RunStarted"),
        active=(MANUAL_ABC,),
        wake=at("04:00"),
    ),
    Row(
        id="manual runs do not count against maxRuns",
        spec={"maxRuns": 5},
        status=ran("03:00"),
        run_now="abc",
        now=at("03:20"),
        creates=(MANUAL_ABC,),
        events=("RunStarted",),
        fields={"runCount": 1},
        wake=at("04:00"),
    ),
]


@pytest.mark.parametrize("row", RUN_NOW, ids=lambda r: r.id)
def test_run_now(row: Row) -> None:
    decision = run_rows(row)
    for create in decision.create:
        if create.name.startswith("sync-ics-m"):
            annotations = create.manifest["metadata"]["annotations"]
            assert annotations[ANNOTATION_RUN_NOW] == row.run_now
            assert ANNOTATION_SLOT not in annotations


def test_run_now_long_token_does_not_break_the_status() -> None:
    """Annotations are free text; status.runNowToken is bounded (128). One run, no crash."""
    token = "x" * 300
    spec = make_spec()
    first = decide(task(spec, status=ran("03:00"), run_now=token), t("03:20"))
    assert len(first.create) == 1
    assert first.create[0].manifest["metadata"]["annotations"][ANNOTATION_RUN_NOW] == token
    job_view = JobView(
        name=first.create[0].name,
        run=first.create[0].run,
        attempt=1,
        created=t("03:20"),
        run_now_token=token,
    )
    again = decide(task(spec, status=first.status, run_now=token, jobs=(job_view,)), t("03:25"))
    assert again.create == []
    assert again.events == []
    # Crash between create and status write: the Job is adopted, the token is not run again.
    lost = decide(task(spec, status=ran("03:00"), run_now=token, jobs=(job_view,)), t("03:25"))
    assert lost.create == []
    assert [a.job for a in lost.status.active] == [first.create[0].name]
    assert (
        decide(task(spec, status=lost.status, run_now=token, jobs=(job_view,)), t("03:26")).create
        == []
    )


# --- tracking finished Jobs -----------------------------------------------------------------------


def finished(
    result: Literal["Succeeded", "Failed"],
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    message: str | None = None,
    attempt: int = 1,
) -> tuple[JobView, ...]:
    return (
        job(
            "03:00",
            attempt,
            finished=result,
            reason=reason,
            finished_at=at("03:05"),
            exit_code=exit_code,
            message=message,
            created=at("03:00:01"),
        ),
    )


TRACKING = [
    Row(
        id="still running: nothing changes",
        status=RUNNING_03,
        jobs=(JOB_03_RUNNING,),
        now=at("03:10"),
        wake=at("04:00"),
        active=(J03,),
        conditions={"Running": ("True", "JobActive")},
    ),
    Row(
        id="Succeeded: recorded with exit code and message",
        status=RUNNING_03,
        jobs=finished("Succeeded", reason="Completed", exit_code=0, message="synced 12 events"),
        now=at("03:10"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        active=(),
        runs=((at("03:00"), 1, "Succeeded"),),
        first_run={
            "job": J03,
            "scheduledAt": at("03:00"),
            "startedAt": at("03:00:01"),
            "finishedAt": at("03:05"),
            "exitCode": 0,
            "reason": "Completed",
            "message": "synced 12 events",
        },
        fields={
            "lastSuccessfulTime": at("03:05"),
            "lastFailureTime": None,
            "lastResult": "Succeeded",
            "consecutiveFailures": 0,
        },
        conditions={"Running": ("False", "Idle"), "Failing": ("False", "AsExpected")},
    ),
    Row(
        id="Failed with an exit code, no retries: recorded, Failing",
        status=RUNNING_03,
        jobs=finished("Failed", reason="BackoffLimitExceeded", exit_code=2, message="boom"),
        now=at("03:10"),
        events=("RunFailed",),
        wake=at("04:00"),
        runs=((at("03:00"), 1, "Failed"),),
        first_run={"exitCode": 2, "reason": "BackoffLimitExceeded", "message": "boom"},
        fields={
            "lastFailureTime": at("03:05"),
            "lastSuccessfulTime": None,
            "lastResult": "Failed",
            "consecutiveFailures": 1,
        },
        conditions={"Failing": ("True", "RunFailed")},
        says={"RunFailed": "exit code 2"},
    ),
    Row(
        id="Failed with reason DeadlineExceeded: TimedOut",
        status=RUNNING_03,
        jobs=finished("Failed", reason="DeadlineExceeded"),
        now=at("03:10"),
        events=("RunFailed",),
        wake=at("04:00"),
        runs=((at("03:00"), 1, "TimedOut"),),
        first_run={"exitCode": None, "reason": "DeadlineExceeded", "message": None},
        fields={"lastResult": "TimedOut", "consecutiveFailures": 1},
        conditions={"Failing": ("True", "RunFailed")},
    ),
    Row(
        id="a third failure in a row",
        status=RUNNING_03 | {"consecutiveFailures": 2, "lastSuccessfulTime": at("00:05")},
        jobs=finished("Failed", reason="BackoffLimitExceeded", exit_code=1),
        now=at("03:10"),
        events=("RunFailed",),
        wake=at("04:00"),
        fields={"consecutiveFailures": 3, "lastSuccessfulTime": at("00:05")},
        says={"RunFailed": "no retry left"},
    ),
    Row(
        id="a success resets the failure count and clears Failing",
        status=RUNNING_03
        | {
            "consecutiveFailures": 2,
            "lastFailureTime": at("02:05"),
            "conditions": [{"type": "Failing", "status": "True", "reason": "RunFailed"}],
        },
        jobs=finished("Succeeded", exit_code=0),
        now=at("03:10"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        fields={"consecutiveFailures": 0, "lastFailureTime": at("02:05")},
        conditions={"Failing": ("False", "AsExpected")},
    ),
    Row(
        id="the Job was deleted before it finished: Cancelled",
        status=RUNNING_03,
        now=at("03:10"),
        events=("RunCancelled",),
        wake=at("04:00"),
        active=(),
        runs=((at("03:00"), 1, "Cancelled"),),
    ),
    Row(
        id="a Job created seconds ago is not in the cache yet: still active, looked at again "
        "once its absence can be trusted (not at the next slot)",
        status=RUNNING_03,
        now=at("03:00:20"),
        wake=at("03:00:32"),  # started 03:00:01, plus 30 s, plus 1
        active=(J03,),
    ),
    Row(
        id="looked at again: the Job is still missing, so it was deleted: Cancelled",
        status=RUNNING_03,
        now=at("03:00:32"),
        events=("RunCancelled",),
        wake=at("04:00"),
        active=(),
        runs=((at("03:00"), 1, "Cancelled"),),
    ),
]


@pytest.mark.parametrize("row", TRACKING, ids=lambda r: r.id)
def test_tracking(row: Row) -> None:
    run_rows(row)


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        pytest.param("x" * 1024, "x" * 1024, id="exactly 1 KiB: kept"),
        pytest.param("x" * 5000, "x" * 1024, id="5000 ASCII bytes: first 1024"),
        # "é" is two bytes in UTF-8: 1 KiB holds 512 of them, never half of one.
        pytest.param("é" * 1000, "é" * 512, id="multi-byte: 1 KiB of bytes, whole characters"),
        pytest.param("ok" + "€" * 600, "ok" + "€" * 340, id="3-byte characters cut cleanly"),
        pytest.param("", None, id="empty: none"),
    ],
)
def test_termination_message_is_truncated_to_1_kib(message: str, kept: str | None) -> None:
    jobs = finished("Succeeded", exit_code=0, message=message)
    decision = decide(task(make_spec(), status=RUNNING_03, jobs=jobs), t("03:10"))
    assert decision.status.runs[0].message == kept
    if kept is not None:
        assert len(kept.encode()) <= 1024


# --- retries --------------------------------------------------------------------------------------

RETRY: dict[str, Any] = {
    "maxRetries": 3,
    "backoff": {"initial": "10s", "factor": 2, "max": "1m", "jitter": False},
}


def running(attempt: int) -> dict[str, Any]:
    return ran("03:00", active=[active("03:00", attempt, started=at("03:00:01"))])


def failed(attempt: int, exit_code: int | None = 1, reason: str = "BackoffLimitExceeded") -> Any:
    return finished("Failed", reason=reason, exit_code=exit_code, attempt=attempt)


R03 = at("03:00")

RETRIES = [
    Row(
        id="attempt 1 fails: retry 2 pending after initial (10s)",
        spec={"retry": RETRY},
        status=running(1),
        jobs=failed(1),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        wake=at("03:05:10"),
        runs=((R03, 1, "Failed"),),
        pending=((R03, 2, at("03:05:10")),),
        fields={
            "nextScheduleTime": at("03:05:10"),
            "consecutiveFailures": 0,
            "lastFailureTime": at("03:05"),
        },
        conditions={"Running": ("False", "RetryPending"), "Failing": ("False", "AsExpected")},
        says={"RetryScheduled": "attempt 2 at 2026-03-01T03:05:10+00:00"},
    ),
    Row(
        id="attempt 2 fails: 10s x 2 = 20s",
        spec={"retry": RETRY},
        status=running(2),
        jobs=failed(2),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 3, at("03:05:20")),),
        wake=at("03:05:20"),
    ),
    Row(
        id="attempt 3 fails: 10s x 2^2 = 40s",
        spec={"retry": RETRY},
        status=running(3),
        jobs=failed(3),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 4, at("03:05:40")),),
        wake=at("03:05:40"),
    ),
    Row(
        id="attempt 3 fails, max 30s: capped",
        spec={"retry": RETRY | {"backoff": RETRY["backoff"] | {"max": "30s"}}},
        status=running(3),
        jobs=failed(3),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 4, at("03:05:30")),),
        wake=at("03:05:30"),
    ),
    Row(
        id="attempt 4 fails with maxRetries 3: no retry left",
        spec={"retry": RETRY},
        status=running(4),
        jobs=failed(4),
        now=at("03:05:01"),
        events=("RunFailed",),
        wake=at("04:00"),
        pending=(),
        runs=((R03, 4, "Failed"),),
        fields={"consecutiveFailures": 1},
        conditions={"Failing": ("True", "RunFailed")},
    ),
    Row(
        id="onExitCodes [3], exit 3: retried",
        spec={"retry": RETRY | {"onExitCodes": [3]}},
        status=running(1),
        jobs=failed(1, exit_code=3),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 2, at("03:05:10")),),
        wake=at("03:05:10"),
    ),
    Row(
        id="onExitCodes [3], exit 4: not retried",
        spec={"retry": RETRY | {"onExitCodes": [3]}},
        status=running(1),
        jobs=failed(1, exit_code=4),
        now=at("03:05:01"),
        events=("RunFailed",),
        pending=(),
        wake=at("04:00"),
    ),
    Row(
        id="onExitCodes [3], timed out (no exit code): not retried",
        spec={"retry": RETRY | {"onExitCodes": [3]}},
        status=running(1),
        jobs=failed(1, exit_code=None, reason="DeadlineExceeded"),
        now=at("03:05:01"),
        events=("RunFailed",),
        pending=(),
        wake=at("04:00"),
        runs=((R03, 1, "TimedOut"),),
    ),
    Row(
        id="notOnExitCodes [3], exit 3: not retried",
        spec={"retry": RETRY | {"notOnExitCodes": [3]}},
        status=running(1),
        jobs=failed(1, exit_code=3),
        now=at("03:05:01"),
        events=("RunFailed",),
        pending=(),
        wake=at("04:00"),
    ),
    Row(
        id="notOnExitCodes [3], exit 4: retried",
        spec={"retry": RETRY | {"notOnExitCodes": [3]}},
        status=running(1),
        jobs=failed(1, exit_code=4),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 2, at("03:05:10")),),
        wake=at("03:05:10"),
    ),
    Row(
        id="timed out, default filter: retried like a failure",
        spec={"retry": RETRY},
        status=running(1),
        jobs=failed(1, exit_code=None, reason="DeadlineExceeded"),
        now=at("03:05:01"),
        events=("RetryScheduled",),
        pending=((R03, 2, at("03:05:10")),),
        wake=at("03:05:10"),
        says={"RetryScheduled": "timed out"},
    ),
    Row(
        id="pending retry before notBefore: no Job, wake at notBefore",
        spec={"retry": RETRY},
        status=ran(
            "03:00",
            pendingRetries=[pending("03:00", 2, "03:05:10")],
            runs=[record("03:00", "Failed")],
        ),
        jobs=failed(1),
        now=at("03:05:09"),
        wake=at("03:05:10"),
        pending=((R03, 2, at("03:05:10")),),
    ),
    Row(
        id="pending retry at notBefore: attempt 2 Job",
        spec={"retry": RETRY},
        status=ran(
            "03:00",
            pendingRetries=[pending("03:00", 2, "03:05:10")],
            runs=[record("03:00", "Failed")],
        ),
        jobs=failed(1),
        now=at("03:05:10"),
        creates=("sync-ics-20260301030000-2",),
        events=("RetryStarted",),
        wake=at("04:00"),
        pending=(),
        active=("sync-ics-20260301030000-2",),
        fields={"runCount": 1, "lastScheduleTime": at("03:00")},
        conditions={"Running": ("True", "JobActive")},
    ),
    Row(
        id="pending retry whose Job exists (crash before the status write): adopted",
        spec={"retry": RETRY},
        status=ran(
            "03:00",
            pendingRetries=[pending("03:00", 2, "03:05:10")],
            runs=[record("03:00", "Failed")],
        ),
        jobs=(*failed(1), job("03:00", 2, created=at("03:05:10"))),
        now=at("03:05:30"),
        wake=at("04:00"),
        pending=(),
        active=("sync-ics-20260301030000-2",),
    ),
    Row(
        id="failed long ago (operator was down): retry Job at once",
        spec={"retry": RETRY},
        status=running(1),
        jobs=failed(1),
        now=at("03:30"),
        creates=("sync-ics-20260301030000-2",),
        events=("RetryScheduled", "RetryStarted"),
        wake=at("04:00"),
        runs=((R03, 1, "Failed"),),
        pending=(),
    ),
]


@pytest.mark.parametrize("row", RETRIES, ids=lambda r: r.id)
def test_retries(row: Row) -> None:
    run_rows(row)


@pytest.mark.parametrize(
    ("attempt", "base"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (7, 60.0)],
    ids=str,
)
def test_backoff_with_jitter_is_within_d_and_1_2d(attempt: int, base: float) -> None:
    jittered = make_spec(retry=RETRY | {"backoff": RETRY["backoff"] | {"jitter": True}})
    plain = make_spec(retry=RETRY)
    assert backoff_delay(plain, attempt, seed="school/sync-ics|run") == timedelta(seconds=base)
    delay = backoff_delay(jittered, attempt, seed="school/sync-ics|run")
    assert timedelta(seconds=base) <= delay <= timedelta(seconds=base * 1.2)
    assert delay == backoff_delay(jittered, attempt, seed="school/sync-ics|run")  # deterministic


def test_retry_not_before_with_jitter() -> None:
    spec = make_spec(retry=RETRY | {"backoff": RETRY["backoff"] | {"jitter": True}})
    decision = decide(task(spec, status=running(1), jobs=failed(1)), t("03:05:01"))
    [retry] = decision.status.pendingRetries
    assert retry.attempt == 2
    assert t("03:05:10") <= retry.notBefore <= t("03:05:12")
    assert decision.wake_at == retry.notBefore
    assert decision.status.nextScheduleTime == retry.notBefore
    again = decide(task(spec, status=running(1), jobs=failed(1)), t("03:05:02"))
    assert again.status.pendingRetries == decision.status.pendingRetries  # seeded, not random


# --- crash recovery and spec changes --------------------------------------------------------------

RECOVERY = [
    Row(
        id="a Job for a slot the status does not know: adopted, no second Job",
        status=ran("02:00"),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:00:20"),
        wake=at("04:00"),
        active=(J03,),
        runs=(),
        fields={"lastScheduleTime": at("03:00"), "lastSlotTime": at("03:00"), "runCount": 2},
        conditions={"Running": ("True", "JobActive")},
    ),
    Row(
        id="the unknown Job already finished: adopted and recorded",
        status=ran("02:00"),
        jobs=(job("03:00", finished="Succeeded", finished_at=at("03:02"), exit_code=0),),
        now=at("03:10"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        active=(),
        runs=((R03, 1, "Succeeded"),),
        fields={"lastScheduleTime": at("03:00"), "lastSuccessfulTime": at("03:02")},
    ),
    Row(
        id="an unknown older Job: adopted, lastScheduleTime does not go back",
        status=ran("05:00"),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("05:10"),
        wake=at("06:00"),
        active=(J03,),
        fields={"lastScheduleTime": at("05:00"), "lastSlotTime": at("05:00"), "runCount": 1},
    ),
    Row(
        id="an unknown manual Job for the current token: adopted, token recorded",
        status=ran("03:00"),
        jobs=(job(manual("abc"), token="abc", created=at("03:20")),),
        run_now="abc",
        now=at("03:20:30"),
        wake=at("04:00"),
        active=(MANUAL_ABC,),
        fields={"runNowToken": "abc"},
    ),
    Row(
        id="a Job for the due slot exists already: no second Job, no RunStarted",
        status=ran("03:00"),
        jobs=(job("04:00", created=at("04:00:01")),),
        now=at("04:00:05"),
        wake=at("05:00"),
        active=(J04,),
        fields={"lastScheduleTime": at("04:00"), "runCount": 2},
    ),
    Row(
        id="spec changed (generation bump): no retroactive runs",
        spec={"schedule": "30 * * * *"},
        status=ran("03:00"),
        generation=2,
        now=at("05:45"),
        wake=at("06:30"),
        runs=(),
        fields={"lastSlotTime": at("05:45"), "lastScheduleTime": at("03:00")},
    ),
    Row(
        id="(control) the same status without a spec change catches up",
        spec={"schedule": "30 * * * *"},
        status=ran("03:00"),
        now=at("05:45"),
        creates=("sync-ics-20260301053000-1",),
        events=("MissedSlots", "RunStarted"),
        wake=at("06:30"),
        runs=((at("04:30"), 1, "Missed"), (at("03:30"), 1, "Missed")),
    ),
]


@pytest.mark.parametrize("row", RECOVERY, ids=lambda r: r.id)
def test_recovery_and_spec_changes(row: Row) -> None:
    run_rows(row)


# --- history --------------------------------------------------------------------------------------


def done(slot: str, result: Literal["Succeeded", "Failed"]) -> JobView:
    """The Job of ``slot`` ("03:00"), finished five minutes after it."""
    exit_code = 0 if result == "Succeeded" else 1
    return job(slot, finished=result, finished_at=at(slot[:3] + "05"), exit_code=exit_code)


FOUR_RUNS = [
    record("03:00", "Succeeded"),
    record("02:00", "Succeeded"),
    record("01:00", "Failed"),
    record("00:00", "Failed"),
]
FOUR_JOBS = (
    done("03:00", "Succeeded"),
    done("02:00", "Succeeded"),
    done("01:00", "Failed"),
    done("00:00", "Failed"),
)
J04_RUNNING = job("04:00", created=at("04:00:01"))

HISTORY = [
    Row(
        id="runs trimmed to history 1/1, finished Jobs beyond it deleted, active kept",
        spec={"history": {"succeeded": 1, "failed": 1}},
        status=ran("04:00", runs=FOUR_RUNS, active=[active("04:00")]),
        jobs=(*FOUR_JOBS, J04_RUNNING),
        now=at("04:30"),
        deletes=("sync-ics-20260301020000-1", "sync-ics-20260301000000-1"),
        wake=at("05:00"),
        runs=((R03, 1, "Succeeded"), (at("01:00"), 1, "Failed")),
        active=(J04,),
    ),
    Row(
        id="within history: nothing deleted",
        status=ran("04:00", runs=FOUR_RUNS, active=[active("04:00")]),
        jobs=(*FOUR_JOBS, J04_RUNNING),
        now=at("04:30"),
        wake=at("05:00"),
        runs=(
            (R03, 1, "Succeeded"),
            (at("02:00"), 1, "Succeeded"),
            (at("01:00"), 1, "Failed"),
            (at("00:00"), 1, "Failed"),
        ),
    ),
    Row(
        id="a new success pushes the oldest success and its Job out",
        spec={"history": {"succeeded": 1, "failed": 1}},
        status=ran("04:00", runs=[record("03:00", "Succeeded")], active=[active("04:00")]),
        jobs=(done("03:00", "Succeeded"), done("04:00", "Succeeded")),
        now=at("04:30"),
        deletes=(J03,),
        events=("RunSucceeded",),
        wake=at("05:00"),
        runs=((at("04:00"), 1, "Succeeded"),),
    ),
    Row(
        id="history 0: the run is recorded by its Event only, its Job deleted",
        spec={"history": {"succeeded": 0, "failed": 0}},
        status=ran("04:00", active=[active("04:00")]),
        jobs=(done("04:00", "Succeeded"),),
        now=at("04:30"),
        deletes=(J04,),
        events=("RunSucceeded",),
        wake=at("05:00"),
        runs=(),
        fields={"lastSuccessfulTime": at("04:05")},
    ),
    Row(
        id="history 0: the trimmed Job still listed next sync is not recorded again",
        spec={"history": {"succeeded": 0, "failed": 0}},
        status=ran("04:00", lastSuccessfulTime=at("04:05"), lastResult="Succeeded"),
        jobs=(done("04:00", "Succeeded"),),
        now=at("04:31"),
        deletes=(J04,),
        wake=at("05:00"),
        runs=(),
        fields={"lastSuccessfulTime": at("04:05"), "runCount": 1},
    ),
    Row(
        id="a failed Job beyond history still listed: no second record, no second retry",
        spec={"history": {"succeeded": 3, "failed": 0}, "retry": RETRY},
        status=ran("04:00", pendingRetries=[pending("04:00", 2, "04:05:10")]),
        jobs=(job("04:00", finished="Failed", finished_at=at("04:05"), exit_code=1),),
        now=at("04:05:05"),
        deletes=(J04,),
        wake=at("04:05:10"),
        runs=(),
        pending=((at("04:00"), 2, at("04:05:10")),),
    ),
    Row(
        id="active Jobs are never deleted, even with history 0",
        spec={"history": {"succeeded": 0, "failed": 0}, "concurrencyPolicy": "Allow"},
        status=ran("04:00", active=[active("03:00"), active("04:00")]),
        jobs=(job("03:00"), J04_RUNNING),
        now=at("04:30"),
        wake=at("05:00"),
        active=(J03, J04),
    ),
]


@pytest.mark.parametrize("row", HISTORY, ids=lambda r: r.id)
def test_history(row: Row) -> None:
    run_rows(row)


# --- invalid spec ---------------------------------------------------------------------------------

BAD_ZONE = SpecError("spec.timeZone", "unknown time zone 'Mars/Olympus'")
BAD_CRON = SpecError("spec.schedule", "expected 5 fields")


def test_invalid_spec_warns_once_and_clears_when_fixed() -> None:
    # First sync of an invalid task: Ready=False InvalidSpec, one Warning, zero Jobs.
    first = decide(task(status=ran("03:00"), spec_error=BAD_ZONE, generation=2), t("04:00:05"))
    assert first.create == []
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "InvalidSpec")]
    assert "spec.timeZone" in first.events[0].message
    assert condition(first.status, "Ready") == ("False", "InvalidSpec")
    assert first.status.nextScheduleTime is None
    assert first.wake_at is None
    assert first.status.observedGeneration == 2

    # The same invalid spec again (periodic resync, any other sync): no Event.
    for minute in ("04:01", "05:00:05", "09:00"):
        again = decide(task(status=first.status, spec_error=BAD_ZONE, generation=2), t(minute))
        assert again.create == []
        assert again.events == []
        assert again.status.conditions == first.status.conditions

    # Another invalid spec: one Warning for it.
    other = decide(task(status=first.status, spec_error=BAD_CRON, generation=3), t("09:30"))
    assert [e.reason for e in other.events] == ["InvalidSpec"]
    assert other.create == []

    # Fixed: Ready True again, one Normal Event, and the slots during the outage do not run.
    fixed = decide(task(make_spec(), status=other.status, generation=4), t("10:10"))
    assert condition(fixed.status, "Ready") == ("True", "Scheduled")
    assert [(e.type, e.reason) for e in fixed.events] == [("Normal", "SpecValid")]
    assert fixed.create == []
    assert fixed.wake_at == t("11:00")
    later = decide(task(make_spec(), status=fixed.status, generation=4), t("11:00:05"))
    assert [c.name for c in later.create] == ["sync-ics-20260301110000-1"]
    assert [e.reason for e in later.events] == ["RunStarted"]


def test_invalid_spec_never_creates_or_deletes_jobs() -> None:
    view = task(
        status=RUNNING_03 | {"runs": FOUR_RUNS},
        jobs=(*FOUR_JOBS, JOB_03_RUNNING),
        spec_error=BAD_ZONE,
        run_now="abc",
    )
    decision = decide(view, t("04:00:05"))
    assert decision.create == []
    assert decision.delete == []
    assert [e.reason for e in decision.events] == ["InvalidSpec"]


def test_invalid_spec_with_a_huge_message_does_not_crash() -> None:
    """A field path names user keys; a condition message is bounded (4096)."""
    error = SpecError("spec.jobTemplate.spec." + "k" * 5000, "is not a known field")
    first = decide(task(status={}, spec_error=error), t("04:00"))
    ready = next(c for c in first.status.conditions if c.type == "Ready")
    assert ready.reason == "InvalidSpec"
    assert len(ready.message) <= 4096
    assert [e.reason for e in first.events] == ["InvalidSpec"]
    again = decide(task(status=first.status, spec_error=error), t("04:01"))
    assert again.events == []


# --- bounds of the status -------------------------------------------------------------------------


def test_allow_with_very_many_active_runs_does_not_crash() -> None:
    """status.active holds at most 100 entries and a condition message 4096 characters."""
    long_name = "a" * 60
    spec = make_spec(concurrencyPolicy="Allow", schedule="* * * * *")
    slots = [t("00:00") + timedelta(minutes=m) for m in range(100)]
    runs = [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in slots]
    status = {
        "observedGeneration": 1,
        "lastSlotTime": runs[-1],
        "lastScheduleTime": runs[-1],
        "runCount": 100,
        "active": [
            {"run": r, "attempt": 1, "job": job_name(long_name, r, 1), "startedAt": r} for r in runs
        ],
    }
    jobs = tuple(
        JobView(name=job_name(long_name, r, 1), run=r, attempt=1, slot=s, created=s)
        for r, s in zip(runs, slots, strict=True)
    )
    view = task(spec, status=status, jobs=jobs, name=long_name)
    decision = decide(view, slots[-1] + timedelta(minutes=1, seconds=5))
    assert len(decision.status.active) <= 100
    assert decision.create == []
    assert [e.reason for e in decision.events] == ["RunSkipped"]
    assert all(len(c.message) <= 4096 for c in decision.status.conditions)


# --- settle ---------------------------------------------------------------------------------------


def due_now(**spec: Any) -> tuple[TaskView, Decision]:
    view = task(make_spec(**spec), status=ran("02:00"))
    decision = decide(view, t("03:00:05"))
    assert [c.name for c in decision.create] == [J03]
    return view, decision


SETTLE: list[Any] = [
    pytest.param(
        "created",
        {},
        {"events": ["RunStarted"], "active": [J03], "runs": [], "ready": ("True", "Scheduled")},
        id="created: unchanged",
    ),
    pytest.param(
        "adopted",
        {},
        {"events": [], "active": [J03], "runs": [], "ready": ("True", "Scheduled")},
        id="adopted: the Job existed, no RunStarted",
    ),
    pytest.param(
        "conflict",
        {},
        {
            "events": ["JobNameConflict", "RunFailed"],
            "active": [],
            "runs": [(R03, 1, "Failed", "JobNameConflict")],
            "ready": ("False", "JobNameConflict"),
            "running": ("False", "Idle"),
            "failing": ("True", "RunFailed"),
        },
        id="conflict: not ours, Failed record, Ready False, Warning",
    ),
    pytest.param(
        "conflict",
        {"retry": RETRY},
        {
            "events": ["JobNameConflict", "RetryScheduled"],
            "active": [],
            "runs": [(R03, 1, "Failed", "JobNameConflict")],
            "ready": ("False", "JobNameConflict"),
            "running": ("False", "RetryPending"),
            "pending": [(R03, 2, at("03:00:15"))],
            "wake": at("03:00:15"),
        },
        id="conflict with retries: the next attempt has another name",
    ),
    pytest.param(
        "error",
        {},
        {
            "events": ["JobCreateFailed", "RunFailed"],
            "active": [],
            "runs": [(R03, 1, "Failed", "JobCreateFailed")],
            "ready": ("True", "Scheduled"),
            "running": ("False", "Idle"),
        },
        id="error: JobCreateFailed",
    ),
]


@pytest.mark.parametrize(("result", "spec", "want"), SETTLE)
def test_settle(result: Any, spec: dict[str, Any], want: dict[str, Any]) -> None:
    view, decision = due_now(**spec)
    message = "admission webhook denied the request" if result == "error" else ""
    settled = settle(view, decision, [Outcome(J03, result, message)], t("03:00:05"))
    status = settled.status
    assert [e.reason for e in settled.events] == want["events"]
    assert [a.job for a in status.active] == want["active"]
    assert status.activeCount == len(status.active)
    assert [(r.run, r.attempt, r.result.value, r.reason) for r in status.runs] == want["runs"]
    assert condition(status, "Ready") == want["ready"]
    if "running" in want:
        assert condition(status, "Running") == want["running"]
    if "failing" in want:
        assert condition(status, "Failing") == want["failing"]
    if result == "error":
        assert status.runs[0].message == message
        assert message in settled.events[0].message
    if result == "conflict":
        assert status.runs[0].job is None
        assert settled.events[0].type == "Warning"
        assert J03 in settled.events[0].message
    got = [(p.run, p.attempt, p.notBefore) for p in status.pendingRetries]
    assert got == [(r, a, utc(nb)) for r, a, nb in want.get("pending", [])]
    wake = want.get("wake", at("04:00"))
    assert settled.wake_at == utc(wake)
    assert status.nextScheduleTime == utc(wake)
    assert settled.create == decision.create  # settle never asks for more Jobs
    TaskStatus.model_validate(status.model_dump(mode="json"))


def test_settle_adopted_retry_drops_retry_started() -> None:
    spec = make_spec(retry=RETRY)
    view = task(
        spec,
        status=ran(
            "03:00",
            pendingRetries=[pending("03:00", 2, "03:05:10")],
            runs=[record("03:00", "Failed")],
        ),
        jobs=failed(1),
    )
    decision = decide(view, t("03:05:10"))
    assert [e.reason for e in decision.events] == ["RetryStarted"]
    name = "sync-ics-20260301030000-2"
    settled = settle(view, decision, [Outcome(name, "adopted")], t("03:05:10"))
    assert settled.events == []
    assert [a.job for a in settled.status.active] == [name]


def test_after_a_conflict_the_next_sync_does_not_claim_the_spec_was_fixed() -> None:
    view, decision = due_now()
    settled = settle(view, decision, [Outcome(J03, "conflict")], t("03:00:05"))
    later = decide(task(make_spec(), status=settled.status), t("03:30"))
    assert "SpecValid" not in [e.reason for e in later.events]
    assert later.create == []  # the slot is not tried again under the same name


def test_settle_with_several_creations_only_touches_the_failed_one() -> None:
    spec = make_spec(catchUp="All", maxCatchUp=3, concurrencyPolicy="Allow")
    view = task(spec, status=ran("03:00"))
    decision = decide(view, t("06:00:05"))
    names = [c.name for c in decision.create]
    assert names == [J04, "sync-ics-20260301050000-1", "sync-ics-20260301060000-1"]
    outcomes = [
        Outcome(names[0], "created"),
        Outcome(names[1], "conflict"),
        Outcome(names[2], "adopted"),
    ]
    settled = settle(view, decision, outcomes, t("06:00:05"))
    assert [a.job for a in settled.status.active] == [names[0], names[2]]
    assert [e.reason for e in settled.events] == ["RunStarted", "JobNameConflict", "RunFailed"]
    assert names[0] in settled.events[0].message
    assert [r.run for r in settled.status.runs] == [at("05:00")]


# --- a day of syncs: the exactly-once invariant ---------------------------------------------------


@dataclass
class FakeCluster:
    """Jobs as the operator would see them; creates and deletes applied between syncs."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    ever_created: list[str] = field(default_factory=list)

    def apply(self, decision: Decision, now: datetime) -> list[Outcome]:
        outcomes = []
        for create in decision.create:
            assert create.name not in self.ever_created, f"{create.name} created twice"
            self.ever_created.append(create.name)
            annotations = create.manifest["metadata"]["annotations"]
            slot = annotations.get(ANNOTATION_SLOT)
            self.jobs[create.name] = JobView(
                name=create.name,
                run=create.run,
                attempt=create.attempt,
                slot=datetime.fromisoformat(slot) if slot else None,
                created=now,
                run_now_token=annotations.get(ANNOTATION_RUN_NOW),
            )
            outcomes.append(Outcome(create.name, "created"))
        return outcomes

    def delete(self, decision: Decision) -> None:
        for delete in decision.delete:
            self.jobs.pop(delete.name, None)

    def finish(self, now: datetime, fail: bool) -> None:
        for name, view in list(self.jobs.items()):
            started = view.created
            if view.finished is None and started and now - started >= timedelta(minutes=20):
                self.jobs[name] = JobView(
                    name=view.name,
                    run=view.run,
                    attempt=view.attempt,
                    slot=view.slot,
                    created=view.created,
                    finished="Failed" if fail else "Succeeded",
                    reason="BackoffLimitExceeded" if fail else "Completed",
                    finished_at=now,
                    exit_code=1 if fail else 0,
                )


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from(["Allow", "Forbid", "Replace"]),
    catch_up=st.sampled_from(["Skip", "Latest", "All"]),
    retries=st.integers(min_value=0, max_value=2),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=4 * 3600),  # seconds until the next sync
            st.booleans(),  # Jobs that finish now fail
            st.booleans(),  # the Job deletions of this sync are lost (stale cache)
            st.sampled_from(["keep", "remove", "fresh"]),  # the run-now annotation
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_replayed_syncs_never_create_a_job_twice(
    policy: str,
    catch_up: str,
    retries: int,
    steps: list[tuple[int, bool, bool, str]],
) -> None:
    spec = make_spec(
        schedule="*/30 * * * *",
        concurrencyPolicy=policy,
        catchUp=catch_up,
        maxCatchUp=3,
        retry={"maxRetries": retries, "backoff": {"initial": "5m", "jitter": True}},
        history={"succeeded": 1, "failed": 1},
    )
    cluster = FakeCluster()
    status = TaskStatus()
    now = t("00:00")
    seen_slots: set[tuple[str, int]] = set()
    token: str | None = None
    for number, (seconds, fail, lose_deletes, action) in enumerate(steps):
        # The CLI sets a fresh token per request; an old token is never set again.
        if action == "remove":
            token = None
        elif action == "fresh":
            token = f"tok-{number}"
        now += timedelta(seconds=seconds)
        cluster.finish(now, fail)
        view = task(spec, status=status, jobs=tuple(cluster.jobs.values()), run_now=token)
        decision = decide(view, now)
        decision = settle(view, decision, cluster.apply(decision, now), now)
        if not lose_deletes:
            cluster.delete(decision)
        for create in decision.create:
            key = (create.run, create.attempt)
            assert key not in seen_slots
            seen_slots.add(key)
        if status.lastScheduleTime is not None:
            assert decision.status.lastScheduleTime is not None
            assert decision.status.lastScheduleTime >= status.lastScheduleTime
        if policy == "Forbid":
            assert len(decision.status.active) + len(decision.status.pendingRetries) <= 1
        records = [(r.run, r.attempt) for r in decision.status.runs]
        assert len(records) == len(set(records)), "a run attempt recorded twice"
        assert len(decision.status.runs) <= 2 + 0  # history 1 + 1
        status = TaskStatus.model_validate(decision.status.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("deadline", "expect_job"),
    [(None, True), (3600, True), (60, False)],
    ids=["no-deadline-runs", "within-deadline-runs", "past-deadline-missed"],
)
def test_one_shot_in_the_past_at_creation(deadline: int | None, expect_job: bool) -> None:
    # The task is created at 03:00 for a one-shot at 02:50: it is late, not impossible.
    spec = make_spec(schedule=None, at=at("02:50"), startingDeadlineSeconds=deadline)
    view = task(spec, created=at("03:00"))
    decision = decide(view, t("03:00:02"))
    assert bool(decision.create) is expect_job
    results = [r.result.value for r in decision.status.runs]
    assert results == ([] if expect_job else ["Missed"])
    assert condition(decision.status, "Completed")[0] == ("False" if expect_job else "True")


def test_job_name_conflict_stays_visible_until_a_job_is_created() -> None:
    conflict = {
        "type": "Ready",
        "status": "False",
        "reason": "JobNameConflict",
        "message": "Job x already exists and is not controlled by this task",
    }
    quiet = decide(task(make_spec(), status=ran("03:00", conditions=[conflict])), t("03:10"))
    assert condition(quiet.status, "Ready") == ("False", "JobNameConflict")
    assert not quiet.create
    due = decide(task(make_spec(), status=ran("03:00", conditions=[conflict])), t("04:00:01"))
    assert due.create
    assert condition(due.status, "Ready") == ("True", "Scheduled")

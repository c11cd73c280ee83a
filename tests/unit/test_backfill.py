"""Backfills, pure: planning (what counts as done, which attempt a re-run gets) and running
(parallelism, overlap, retries, adoption, completion), in the style of test_reconcile.py.

The task is ``school/sync-ics``, hourly in UTC, created long before 2026-03-01. Unless a test
says otherwise its cursor (status.lastSlotTime) is 10:00 on 2026-03-01 and the Backfill asks for
[03:00, 12:00): the slots 03:00 to 10:00 are the range's past, 11:00 is still the schedule's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nightshift.backfill import BackfillView, TaskFacts, decide_backfill, settle_backfill
from nightshift.jobs import (
    ANNOTATION_BACKFILL,
    ANNOTATION_BACKFILL_UID,
    LABEL_BACKFILL,
    build_job,
    job_name,
)
from nightshift.models import (
    BackfillStatus,
    CalendarSpec,
    SlotState,
    TaskStatus,
    parse_backfill,
    parse_spec,
)
from nightshift.reconcile import JobView, Outcome
from nightshift.store import JobRecord

NS, TASK, TASK_UID = "school", "sync-ics", "task-uid-1"
BF, BF_UID = "march", "bf-uid-1"
CONTAINERS = [{"name": "main", "image": "busybox"}]


def at(hm: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-01T{hm}:00+00:00")


def run(hm: str) -> str:
    return f"2026-03-01T{hm}:00Z"


def name(hm: str, attempt: int = 1) -> str:
    return job_name(TASK, run(hm), attempt)


def task_spec(**fields: Any) -> Any:
    template = {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}
    return parse_spec({"schedule": "0 * * * *", **fields, "jobTemplate": template})


def facts(status: dict[str, Any] | None = None, **spec: Any) -> TaskFacts:
    return TaskFacts(
        name=TASK,
        uid=TASK_UID,
        created=datetime(2026, 2, 1, tzinfo=UTC),
        spec=task_spec(**spec),
        spec_error=None,
        status=TaskStatus.model_validate(
            {"observedGeneration": 1, "lastSlotTime": run("10:00"), **(status or {})}
        ),
    )


def job(
    hm: str,
    attempt: int = 1,
    *,
    finished: Any = None,
    exit_code: int | None = None,
    backfill: str | None = None,
    created: str | None = None,
    finished_at: str | None = None,
) -> JobView:
    return JobView(
        name=name(hm, attempt),
        run=run(hm),
        attempt=attempt,
        slot=at(hm),
        created=at(created or hm),
        finished=finished,
        finished_at=at(finished_at) if finished_at else None,
        exit_code=exit_code,
        backfill=backfill,
    )


def view(
    status: dict[str, Any] | BackfillStatus | None = None,
    *,
    task: TaskFacts | None = None,
    jobs: tuple[JobView, ...] = (),
    others: tuple[tuple[str, BackfillStatus], ...] = (),
    **spec: Any,
) -> BackfillView:
    raw = {"taskRef": {"name": TASK}, "from": run("03:00"), "to": run("12:00"), **spec}
    parsed = (
        status
        if isinstance(status, BackfillStatus)
        else BackfillStatus.model_validate(status or {})
    )
    return BackfillView(
        namespace=NS,
        name=BF,
        uid=BF_UID,
        generation=1,
        spec=parse_backfill(raw),
        spec_error=None,
        status=parsed,
        task=task if task is not None else facts(),
        jobs=jobs,
        others=others,
    )


def slots(status: BackfillStatus) -> list[tuple[str, str, int]]:
    """(run HH:MM, state, firstAttempt) of every slot."""
    return [(s.run[11:16], s.state.value, s.firstAttempt) for s in status.slots]


def reasons(status: BackfillStatus) -> dict[str, str | None]:
    return {s.run[11:16]: s.reason for s in status.slots if s.state is SlotState.SKIPPED}


# --- planning -------------------------------------------------------------------------------------

# What the task knows: 05:00 succeeded and 06:00 failed (in status.runs), 07:00 was Missed (no
# Job), 08:00's record was trimmed but its Job is still there (succeeded), 10:00 is running.
HISTORY = {
    "runs": [
        {"run": run("07:00"), "attempt": 1, "result": "Missed"},
        {"run": run("06:00"), "attempt": 1, "result": "Failed", "job": name("06:00")},
        {"run": run("05:00"), "attempt": 1, "result": "Succeeded", "job": name("05:00")},
    ],
    "active": [{"run": run("10:00"), "attempt": 1, "job": name("10:00")}],
}
JOBS = (job("05:00", finished="Succeeded"), job("08:00", finished="Succeeded"), job("10:00"))

PLANS = [
    pytest.param(
        "Missing",
        [
            ("03:00", "Pending", 1),  # before anything: the schedule's own Job name
            ("04:00", "Pending", 1),
            ("05:00", "Skipped", 1),
            ("06:00", "Skipped", 1),
            ("07:00", "Pending", 1),  # Missed: no Job ran
            ("08:00", "Skipped", 1),  # its record is gone, but its Job says it ran
            ("09:00", "Pending", 1),
            ("10:00", "Skipped", 1),
        ],
        {
            "05:00": "already ran: Succeeded (attempt 1)",
            "06:00": "already ran: Failed (attempt 1)",
            "08:00": "already ran: Succeeded (attempt 1)",
            "10:00": "in progress: the schedule runs it",
        },
        id="missing",
    ),
    pytest.param(
        "Failed",
        [
            ("03:00", "Pending", 1),
            ("04:00", "Pending", 1),
            ("05:00", "Skipped", 1),
            ("06:00", "Pending", 2),  # a re-run: the next attempt number, a new Job name
            ("07:00", "Pending", 1),
            ("08:00", "Skipped", 1),
            ("09:00", "Pending", 1),
            ("10:00", "Skipped", 1),
        ],
        {"05:00": "already succeeded (attempt 1)", "08:00": "already succeeded (attempt 1)"},
        id="failed",
    ),
    pytest.param(
        "All",
        [
            ("03:00", "Pending", 1),
            ("04:00", "Pending", 1),
            ("05:00", "Pending", 2),
            ("06:00", "Pending", 2),
            ("07:00", "Pending", 1),
            ("08:00", "Pending", 2),
            ("09:00", "Pending", 1),
            ("10:00", "Skipped", 1),  # never two runs of a slot at once
        ],
        {"10:00": "in progress: the schedule runs it"},
        id="all",
    ),
]


@pytest.mark.parametrize(("reprocess", "expected", "why"), PLANS)
def test_the_plan_reads_what_is_done_from_jobs_and_history(
    reprocess: str, expected: list[tuple[str, str, int]], why: dict[str, str]
) -> None:
    decision = decide_backfill(
        view(task=facts(HISTORY), jobs=JOBS, reprocess=reprocess), at("10:30")
    )
    status = decision.status
    assert slots(status) == expected
    for hm, text in why.items():
        assert reasons(status)[hm] == text
    assert decision.create == []  # the plan is written before any Job is created
    assert [e.reason for e in decision.events] == ["BackfillPlanned"]
    assert status.phase == "Running"
    assert status.plannedAt == at("10:30")
    assert status.taskUID == TASK_UID
    assert status.leftToSchedule == 1  # 11:00 comes after the task's cursor: the schedule's
    pending = sum(1 for s in expected if s[1] == "Pending")
    assert (status.total, status.pending, status.skipped) == (8, pending, 8 - pending)
    assert status.progress == f"{8 - pending}/8"


def test_a_dry_run_lists_the_slots_and_runs_none() -> None:
    decision = decide_backfill(view(task=facts(HISTORY), jobs=JOBS, dryRun=True), at("10:30"))
    assert slots(decision.status)[0] == ("03:00", "Pending", 1)
    assert decision.status.phase == "DryRun"
    assert [e.reason for e in decision.events] == ["DryRun"]
    done = decide_backfill(view(decision.status, task=facts(HISTORY), jobs=JOBS), at("10:31"))
    assert done.create == []
    assert done.status == decision.status  # a dry run stays planned, never runs


def test_other_backfills_count_as_history_and_their_slots_are_not_run_twice() -> None:
    other = BackfillStatus(
        taskUID=TASK_UID,
        phase="Running",
        slots=[
            {"run": run("04:00"), "state": "Running", "firstAttempt": 1, "attempt": 1},
            {"run": run("09:00"), "state": "Succeeded", "attempt": 1, "result": "Succeeded"},
            {"run": run("03:00"), "state": "Pending", "firstAttempt": 3, "attempt": 3},
        ],
    )
    decision = decide_backfill(
        view(task=facts(), others=(("earlier", other),), reprocess="All"), at("10:30")
    )
    assert reasons(decision.status)["04:00"] == "in progress: Backfill earlier runs it"
    assert reasons(decision.status)["03:00"] == "in progress: Backfill earlier runs it"
    assert ("09:00", "Pending", 2) in slots(decision.status)  # after its attempt 1
    # A dry run's plan is only a plan: its slots are neither taken nor in progress.
    looked = other.model_copy(update={"phase": "DryRun"})
    decision = decide_backfill(view(task=facts(), others=(("look", looked),)), at("10:30"))
    assert {s[1:] for s in slots(decision.status)} == {("Pending", 1)}


def test_calendar_excluded_slots_are_not_backfilled() -> None:
    calendar = CalendarSpec.model_validate({"exclude": [{"cron": "* 4,5 * * *"}]})
    task = replace(facts(calendarRef={"name": "c"}), calendar=calendar)
    decision = decide_backfill(view(task=task), at("10:30"))
    assert [s[0] for s in slots(decision.status)] == [
        "03:00", "06:00", "07:00", "08:00", "09:00", "10:00"
    ]  # fmt: skip


def test_a_range_of_more_than_1000_slots_is_refused() -> None:
    task = facts(schedule="* * * * *")
    decision = decide_backfill(view(task=task, **{"from": "2026-02-28T00:00:00Z"}), at("10:30"))
    assert decision.status.phase == "Failed"
    assert [e.reason for e in decision.events] == ["TooManySlots"]
    assert "split it" in decision.events[0].message


def test_a_missing_task_is_one_warning_and_a_wait() -> None:
    v = replace(view(), task=None)
    first = decide_backfill(v, at("10:30"))
    assert [e.reason for e in first.events] == ["TaskNotFound"]
    assert first.status.phase == "Pending"
    assert first.status.plannedAt is None
    assert decide_backfill(replace(v, status=first.status), at("10:31")).events == []


# --- running --------------------------------------------------------------------------------------


def planned(*states: tuple[str, str, int], **extra: Any) -> BackfillStatus:
    """A planned status: (HH:MM, state, attempt) per slot; firstAttempt = attempt unless given."""
    result = []
    for hm, state, attempt in states:
        entry: dict[str, Any] = {"run": run(hm), "state": state, "attempt": attempt}
        entry["firstAttempt"] = extra.get("first", {}).get(hm, attempt)
        if state in ("Running",):
            entry["job"] = name(hm, attempt)
            entry["startedAt"] = extra.get("started", {}).get(hm, run("10:30"))
        if state == "RetryPending":
            entry["notBefore"] = extra["not_before"][hm]
        result.append(entry)
    return BackfillStatus.model_validate(
        {"phase": "Running", "plannedAt": run("10:30"), "taskUID": TASK_UID, "slots": result}
    )


def states(status: BackfillStatus) -> list[tuple[str, str, int]]:
    return [(s.run[11:16], s.state.value, s.attempt) for s in status.slots]


def test_runs_start_oldest_first_up_to_the_parallelism() -> None:
    status = planned(("03:00", "Pending", 1), ("04:00", "Pending", 1), ("07:00", "Pending", 1))
    decision = decide_backfill(view(status, parallelism=2), at("10:31"))
    assert [c.name for c in decision.create] == [name("03:00"), name("04:00")]
    assert states(decision.status) == [
        ("03:00", "Running", 1),
        ("04:00", "Running", 1),
        ("07:00", "Pending", 1),
    ]
    assert [e.reason for e in decision.events] == ["RunStarted", "RunStarted"]
    assert (decision.status.running, decision.status.pending) == (2, 1)


def test_a_backfill_job_is_the_tasks_marked_as_the_backfills() -> None:
    decision = decide_backfill(view(planned(("03:00", "Pending", 2))), at("10:31"))
    manifest = decision.create[0].manifest
    meta = manifest["metadata"]
    assert meta["name"] == "sync-ics-20260301030000-2"
    assert meta["ownerReferences"][0]["uid"] == TASK_UID  # the task's: deleted with it
    assert meta["annotations"][ANNOTATION_BACKFILL] == BF
    assert meta["annotations"][ANNOTATION_BACKFILL_UID] == BF_UID
    assert meta["labels"][LABEL_BACKFILL] == BF
    # The task's own sync leaves it alone: not its run to adopt, prune or count as missed.
    record = JobRecord.of({**manifest, "metadata": {**meta, "uid": "j1"}})
    assert record.backfill == BF_UID
    assert not record.belongs_to(TASK_UID)
    scheduled = build_job(
        task_name=TASK, task_uid=TASK_UID, spec=task_spec(), run=run("11:00"), attempt=1, slot=None
    )
    assert JobRecord.of(
        {**scheduled, "metadata": {**scheduled["metadata"], "uid": "j2"}}
    ).belongs_to(TASK_UID)


@pytest.mark.parametrize(
    ("policy", "creates"), [("Wait", []), ("Allow", [name("03:00")])], ids=["wait", "allow"]
)
def test_overlap_policy_with_the_tasks_own_run(policy: str, creates: list[str]) -> None:
    busy = facts({"active": [{"run": run("10:00"), "attempt": 1, "job": name("10:00")}]})
    decision = decide_backfill(
        view(planned(("03:00", "Pending", 1)), task=busy, overlapPolicy=policy), at("10:31")
    )
    assert [c.name for c in decision.create] == creates


def test_retries_follow_the_tasks_policy_counted_from_the_backfills_first_attempt() -> None:
    task = facts(retry={"maxRetries": 1, "backoff": {"initial": "10s", "jitter": False}})
    status = planned(("06:00", "Running", 2))  # a re-run of 06:00 (attempt 1 failed)
    failed = job("06:00", 2, finished="Failed", exit_code=3, backfill=BF_UID, finished_at="10:40")
    first = decide_backfill(view(status, task=task, jobs=(failed,)), at("10:40"))
    assert states(first.status) == [("06:00", "RetryPending", 3)]
    assert first.status.slots[0].notBefore == at("10:40") + timedelta(seconds=10)
    assert first.wake_at == at("10:40") + timedelta(seconds=10)
    assert [e.reason for e in first.events] == ["RetryScheduled"]
    second = decide_backfill(
        view(first.status, task=task, jobs=(failed,)), at("10:40") + timedelta(seconds=10)
    )
    assert [c.name for c in second.create] == [name("06:00", 3)]
    assert [e.reason for e in second.events] == ["RetryStarted"]
    again = job("06:00", 3, finished="Failed", exit_code=3, backfill=BF_UID, finished_at="10:50")
    last = decide_backfill(view(second.status, task=task, jobs=(failed, again)), at("10:50"))
    assert states(last.status) == [("06:00", "Failed", 3)]
    assert last.status.slots[0].exitCode == 3
    assert [e.reason for e in last.events] == ["RunFailed", "BackfillFailed"]
    assert last.status.phase == "Failed"


def test_a_job_created_before_a_lost_status_write_is_adopted_not_created_again() -> None:
    status = planned(("03:00", "Pending", 1), ("04:00", "Pending", 1))
    existing = job("03:00", created="10:31", backfill=BF_UID)
    decision = decide_backfill(view(status, jobs=(existing,)), at("10:32"))
    assert [c.name for c in decision.create] == []  # parallelism 1: 03:00 is running
    assert states(decision.status)[0] == ("03:00", "Running", 1)
    assert decision.status.slots[0].startedAt == at("10:31")


def test_completion_prunes_the_backfills_jobs_to_the_tasks_history() -> None:
    task = facts(history={"succeeded": 1, "failed": 1})
    status = planned(("03:00", "Running", 1), ("04:00", "Running", 1), ("05:00", "Running", 1))
    jobs = tuple(
        job(hm, finished="Succeeded", backfill=BF_UID) for hm in ("03:00", "04:00", "05:00")
    )
    decision = decide_backfill(view(status, task=task, jobs=jobs, parallelism=3), at("10:40"))
    assert decision.status.phase == "Succeeded"
    assert decision.status.progress == "3/3"
    assert [e.reason for e in decision.events][-1] == "BackfillComplete"
    assert [d.name for d in decision.delete] == [name("03:00"), name("04:00")]
    (complete,) = [c for c in decision.status.conditions if c.type == "Complete"]
    assert (complete.status, complete.reason) == ("True", "Succeeded")
    assert decide_backfill(view(decision.status, task=task), at("10:41")).events == []


def test_a_job_deleted_under_a_running_slot_is_cancelled_after_30_s() -> None:
    status = planned(("03:00", "Running", 1), started={"03:00": run("10:30")})
    soon = decide_backfill(view(status), at("10:30") + timedelta(seconds=10))
    assert states(soon.status) == [("03:00", "Running", 1)]
    assert soon.wake_at == at("10:30") + timedelta(seconds=31)
    later = decide_backfill(view(status), at("10:31"))
    assert states(later.status) == [("03:00", "Failed", 1)]
    assert later.status.slots[0].result is not None
    assert later.status.slots[0].result.value == "Cancelled"


def test_a_name_conflict_fails_the_slot() -> None:
    v = view(planned(("03:00", "Pending", 1)))
    decision = decide_backfill(v, at("10:31"))
    settled = settle_backfill(
        v, decision, [Outcome(name("03:00"), "conflict", "exists, not ours")], at("10:31")
    )
    assert states(settled.status) == [("03:00", "Failed", 1)]
    assert [e.reason for e in settled.events] == ["JobNameConflict", "RunFailed", "BackfillFailed"]


def test_a_task_created_again_under_its_name_ends_the_backfill() -> None:
    other = TaskFacts(
        **{f: getattr(facts(), f) for f in TaskFacts.__slots__ if f != "uid"}, uid="x"
    )
    decision = decide_backfill(view(planned(("03:00", "Pending", 1)), task=other), at("10:31"))
    assert decision.create == []
    assert decision.status.phase == "Failed"
    assert [e.reason for e in decision.events] == ["TaskReplaced"]

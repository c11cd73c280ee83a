"""Backfills: which of a task's past slots to run (again), and the state machine that runs them.

A Backfill is planned once, and the plan is written to its status before any Job exists: every
slot of the range the task's schedule has passed, what is known of it (from the task's Jobs, its
history and its other Backfills), and whether it runs. A slot that runs gets ``firstAttempt``:
one more than any attempt known, so a slot that never ran gets the very Job name the schedule
would have used (``<task>-<slot>-1``), and a re-run gets a name no Job has had. Because those
names are fixed in status before the first create, a restart or a second replica computes the
same names, and a create that finds its Job adopts it: exactly once, as for the schedule.

The slots after the task's cursor (``status.lastSlotTime``) are the schedule's own: a Backfill
never runs them and never moves the cursor. Its Jobs are the task's (its name, its owner, its
retry policy) marked with the Backfill's uid, so the task's own sync leaves them alone: they are
never adopted, counted as missed or pruned by the schedule. Pure: the time is an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from nightshift.jobs import build_job, job_name, run_id_for_slot
from nightshift.models import (
    BackfillSlot,
    BackfillSpec,
    BackfillStatus,
    CalendarSpec,
    Condition,
    OverlapPolicy,
    Reprocess,
    RunResult,
    SlotState,
    SpecError,
    TaskSpec,
    TaskStatus,
)
from nightshift.reconcile import (
    JOB_VISIBLE,
    CreateJob,
    DeleteJob,
    Event,
    JobView,
    Outcome,
    backoff_delay,
    condition,
    retry_allowed,
)
from nightshift.schedule import iter_slots, plan_for

__all__ = [
    "MAX_SLOTS",
    "BackfillDecision",
    "BackfillView",
    "TaskFacts",
    "decide_backfill",
    "settle_backfill",
]

MAX_SLOTS = 1000  # status.slots' bound: a longer range is refused, to be split
MESSAGE_LIMIT = 256  # bytes of a termination message kept per slot (1000 slots fit in status)
_TICK = timedelta(microseconds=1)
_OPEN = (SlotState.PENDING, SlotState.RUNNING, SlotState.RETRY_PENDING)
_FINAL_PHASES = ("Succeeded", "Failed", "DryRun")
_TIMED_OUT = "DeadlineExceeded"


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What a Backfill needs of its task."""

    name: str
    uid: str
    created: datetime
    spec: TaskSpec | None
    spec_error: str | None
    status: TaskStatus
    calendar: CalendarSpec | None = None
    calendar_problem: tuple[str, str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # the task's (Kueue's pass through)


@dataclass(frozen=True, slots=True)
class BackfillView:
    """A Backfill as read from the API, its task, and every Job of that task."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: BackfillSpec | None
    spec_error: SpecError | None
    status: BackfillStatus
    task: TaskFacts | None
    jobs: tuple[JobView, ...] = ()  # the task's Jobs: the schedule's and every Backfill's
    others: tuple[tuple[str, BackfillStatus], ...] = ()  # the task's other Backfills


@dataclass(slots=True)
class BackfillDecision:
    """What one sync of a Backfill wants done, and the status to write afterwards."""

    status: BackfillStatus
    create: list[CreateJob] = field(default_factory=list)
    delete: list[DeleteJob] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None


class _Work:
    """The working copy of one sync."""

    def __init__(self, view: BackfillView, now: datetime) -> None:
        self.view = view
        self.now = now
        self.slots: list[BackfillSlot] = list(view.status.slots)
        self.events: list[Event] = []
        self.create: list[CreateJob] = []
        self.delete: list[DeleteJob] = []
        self.wake: datetime | None = None

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def wake_at(self, moment: datetime) -> None:
        self.wake = moment if self.wake is None else min(self.wake, moment)

    def condition(self, kind: str, status: bool, reason: str, message: str = "") -> Condition:
        return condition(
            self.view.status.conditions,
            kind,
            status,
            reason,
            message,
            now=self.now,
            generation=self.view.generation,
        )


def _clip(text: str | None) -> str | None:
    return text.encode()[:MESSAGE_LIMIT].decode(errors="ignore") if text else None


def _result_of(job: JobView) -> RunResult:
    if job.finished == "Succeeded":
        return RunResult.SUCCEEDED
    return RunResult.TIMED_OUT if job.reason == _TIMED_OUT else RunResult.FAILED


# --- planning -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Known:
    """What is known of one slot when the Backfill is planned."""

    highest: int = 0  # the highest attempt number any Job of the slot has had (or will have)
    latest: tuple[int, RunResult] | None = None  # the last finished attempt and its result
    ran: bool = False  # some Job of the slot existed
    busy: str | None = None  # where it is in progress now

    def finished(self, attempt: int, result: RunResult) -> None:
        if self.latest is None or attempt >= self.latest[0]:
            self.latest = (attempt, result)


def _knowledge(view: BackfillView, task: TaskFacts) -> dict[str, _Known]:
    known: dict[str, _Known] = {}

    def of(run: str) -> _Known:
        return known.setdefault(run, _Known())

    for job in view.jobs:
        k = of(job.run)
        k.highest = max(k.highest, job.attempt)
        k.ran = True
        if job.finished is not None:
            k.finished(job.attempt, _result_of(job))
        elif job.backfill not in (None, view.uid):
            k.busy = "a Job of another Backfill is active"
    status = task.status
    for record in status.runs:
        if record.job is None:
            continue  # Missed, Skipped, Excluded: no Job ran
        k = of(record.run)
        k.highest = max(k.highest, record.attempt)
        k.ran = True
        k.finished(record.attempt, record.result)
    for active in status.active:
        k = of(active.run)
        k.highest, k.ran, k.busy = max(k.highest, active.attempt), True, "the schedule runs it"
    for pending in status.pendingRetries:
        k = of(pending.run)
        k.highest = max(k.highest, pending.attempt)
        k.busy = "the schedule retries it"
    if status.queued is not None:
        of(status.queued.run).busy = "it is queued by the schedule"
    for other, other_status in view.others:
        if other_status.taskUID not in (None, task.uid) or other_status.phase == "DryRun":
            continue  # planned for an earlier task of that name, or planned only to look
        running = other_status.phase == "Running"
        for slot in other_status.slots:
            if slot.state is SlotState.SKIPPED:
                continue
            if slot.state is SlotState.PENDING and not running:
                continue  # it will never run (its Backfill ended without it)
            k = of(slot.run)
            # Its planned attempts are taken even before its Jobs exist.
            k.highest = max(k.highest, slot.attempt, slot.firstAttempt)
            if slot.state in _OPEN and running:
                k.busy = f"Backfill {other} runs it"
            if slot.result is not None:
                k.ran = True
                k.finished(slot.attempt, slot.result)
    return known


def _verdict(reprocess: Reprocess, k: _Known) -> str | None:
    """None: the slot runs; else why it is skipped."""
    if k.busy is not None:
        return f"in progress: {k.busy}"
    if reprocess is Reprocess.ALL:
        return None
    if reprocess is Reprocess.MISSING and k.ran:
        if k.latest is None:
            return "already ran: a Job of it exists"
        attempt, result = k.latest
        return f"already ran: {result.value} (attempt {attempt})"
    if reprocess is Reprocess.FAILED and k.latest is not None:
        attempt, result = k.latest
        if result is RunResult.SUCCEEDED:
            return f"already succeeded (attempt {attempt})"
    return None


def _plan(
    view: BackfillView, spec: BackfillSpec, task: TaskFacts, task_spec: TaskSpec
) -> tuple[list[BackfillSlot], int] | str:
    """The slots of the range and what becomes of each, and how many slots of the range are the
    schedule's own (after its cursor); or why the range cannot be planned."""
    plan = plan_for(task_spec, view.namespace, task.name, calendar=task.calendar)
    # Slots up to the cursor were handled by the schedule (run, skipped, missed, excluded), or
    # came before the task existed; later ones it will handle itself.
    cutoff = task.status.lastSlotTime or task.created
    known = _knowledge(view, task)
    slots: list[BackfillSlot] = []
    left = 0
    for slot in iter_slots(plan, spec.from_ - _TICK):
        if slot >= spec.to:
            break
        if slot > cutoff:
            left += 1
            if left >= MAX_SLOTS:
                break  # counting the schedule's future slots need not go on for ever
            continue
        if len(slots) >= MAX_SLOTS:
            return (
                f"the range holds more than {MAX_SLOTS} of the task's slots; "
                "split it into several Backfills"
            )
        run = run_id_for_slot(slot)
        k = known.get(run, _Known())
        why = _verdict(spec.reprocess, k)
        if why is None:
            first = k.highest + 1
            slots.append(
                BackfillSlot(run=run, state=SlotState.PENDING, firstAttempt=first, attempt=first)
            )
        else:
            slots.append(BackfillSlot(run=run, state=SlotState.SKIPPED, reason=why))
    return slots, left


# --- running --------------------------------------------------------------------------------------


def _slot_time(run: str) -> datetime:
    return datetime.strptime(run, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _create(w: _Work, task: TaskFacts, spec: TaskSpec, slot: BackfillSlot, attempt: int) -> str:
    view = w.view
    moment = _slot_time(slot.run)
    plan = plan_for(spec, view.namespace, task.name)
    manifest = build_job(
        task_name=task.name,
        task_uid=task.uid,
        spec=spec,
        run=slot.run,
        attempt=attempt,
        slot=moment,
        tz_offset_slot=moment.astimezone(plan.tz),
        backfill=(view.name, view.uid),
        task_labels=task.labels,
    )
    w.create.append(CreateJob(run=slot.run, attempt=attempt, manifest=manifest))
    return str(manifest["metadata"]["name"])


def _finish(
    w: _Work, i: int, spec: TaskSpec, task: TaskFacts, job: JobView, result: RunResult
) -> None:
    """Record a finished attempt of slot ``i`` and decide whether it is retried."""
    slot = w.slots[i]
    label = f"run {slot.run} attempt {slot.attempt}"
    done = {
        "finishedAt": job.finished_at or w.now,
        "result": result,
        "exitCode": job.exit_code,
        "reason": job.reason,
        "message": _clip(job.message),
    }
    if result is RunResult.SUCCEEDED:
        w.slots[i] = slot.model_copy(update={**done, "state": SlotState.SUCCEEDED})
        w.event("Normal", "RunSucceeded", f"{label} succeeded (Job {slot.job})")
        return
    detail = f"exit code {job.exit_code}" if job.exit_code is not None else (job.reason or "")
    within = slot.attempt - slot.firstAttempt + 1  # the attempt within this Backfill's run
    if retry_allowed(spec, within, job.exit_code):
        seed = f"{w.view.namespace}/{task.name}|{slot.run}|{w.view.uid}"
        not_before = (job.finished_at or w.now) + backoff_delay(spec, within, seed=seed)
        w.slots[i] = slot.model_copy(
            update={
                **done,
                "state": SlotState.RETRY_PENDING,
                "attempt": slot.attempt + 1,
                "notBefore": not_before,
            }
        )
        w.wake_at(not_before)
        w.event(
            "Warning",
            "RetryScheduled",
            f"{label} {result.value} ({detail}); attempt {slot.attempt + 1} at "
            f"{not_before.astimezone(UTC).isoformat(timespec='seconds')}",
        )
        return
    w.slots[i] = slot.model_copy(update={**done, "state": SlotState.FAILED})
    w.event("Warning", "RunFailed", f"{label} {result.value} ({detail}); no retry left")


def _track(w: _Work, task: TaskFacts, spec: TaskSpec) -> None:
    """Adopt the Jobs this Backfill created but did not record, and record finished ones."""
    jobs = {job.name: job for job in w.view.jobs}
    for i, listed in enumerate(w.slots):
        slot = listed
        if slot.state in (SlotState.PENDING, SlotState.RETRY_PENDING):
            name = job_name(task.name, slot.run, slot.attempt)
            found = jobs.get(name)
            if found is None:
                continue
            # Created by a sync whose status write was lost (or by anyone, for attempt 1 of a
            # slot that never ran: the schedule's own name): this is the slot's run.
            slot = slot.model_copy(
                update={
                    "state": SlotState.RUNNING,
                    "job": name,
                    "startedAt": found.created or w.now,
                    "notBefore": None,
                }
            )
            w.slots[i] = slot
        if slot.state is not SlotState.RUNNING or slot.job is None:
            continue
        job = jobs.get(slot.job)
        if job is None:
            started = slot.startedAt or w.now
            if w.now - started > JOB_VISIBLE:
                w.slots[i] = slot.model_copy(
                    update={
                        "state": SlotState.FAILED,
                        "result": RunResult.CANCELLED,
                        "finishedAt": w.now,
                        "reason": "the Job was deleted before it finished",
                    }
                )
                w.event(
                    "Warning",
                    "RunCancelled",
                    f"run {slot.run} attempt {slot.attempt}: Job {slot.job} was deleted",
                )
            else:
                w.wake_at(started + JOB_VISIBLE + timedelta(seconds=1))
            continue
        if job.finished is not None:
            _finish(w, i, spec, task, job, _result_of(job))


def _task_busy(task: TaskFacts) -> bool:
    status = task.status
    return bool(status.active or status.pendingRetries or status.queued)


def _start(w: _Work, spec: BackfillSpec, task: TaskFacts, task_spec: TaskSpec) -> None:
    """Start due retries, then pending slots (oldest first) up to the parallelism."""
    for i, slot in enumerate(w.slots):
        if slot.state is SlotState.RETRY_PENDING and slot.notBefore is not None:
            if slot.notBefore > w.now:
                w.wake_at(slot.notBefore)
                continue
            name = _create(w, task, task_spec, slot, slot.attempt)
            w.slots[i] = slot.model_copy(
                update={
                    "state": SlotState.RUNNING,
                    "job": name,
                    "startedAt": w.now,
                    "notBefore": None,
                }
            )
            w.event(
                "Normal",
                "RetryStarted",
                f"run {slot.run} attempt {slot.attempt} started (Job {name})",
            )
    in_flight = sum(1 for s in w.slots if s.state in (SlotState.RUNNING, SlotState.RETRY_PENDING))
    room = spec.parallelism - in_flight
    if spec.overlapPolicy is OverlapPolicy.WAIT and _task_busy(task):
        room = 0  # the task's own runs go first; its status change brings us back
    for i, slot in enumerate(w.slots):
        if room <= 0:
            break
        if slot.state is not SlotState.PENDING:
            continue
        name = _create(w, task, task_spec, slot, slot.attempt)
        w.slots[i] = slot.model_copy(
            update={"state": SlotState.RUNNING, "job": name, "startedAt": w.now}
        )
        w.event("Normal", "RunStarted", f"backfill run {slot.run} started (Job {name})")
        room -= 1


def _prune(w: _Work, task_spec: TaskSpec) -> None:
    """Once done, keep the Jobs of the newest slots as the task's history limits say."""
    ours = {j.name: j for j in w.view.jobs if j.backfill == w.view.uid and j.finished is not None}
    keep: set[str] = set()
    ok = bad = 0
    for slot in reversed(w.slots):
        if slot.job is None or slot.job not in ours:
            continue
        if slot.state is SlotState.SUCCEEDED:
            if ok < task_spec.history.succeeded:
                keep.add(slot.job)
            ok += 1
        elif bad < task_spec.history.failed:
            keep.add(slot.job)
            bad += 1
    for name in sorted(set(ours) - keep):
        w.delete.append(DeleteJob(name, "beyond the task's history limits"))


# --- the decision ---------------------------------------------------------------------------------


def _counts(slots: list[BackfillSlot]) -> dict[str, int | str]:
    by = {state: sum(1 for s in slots if s.state is state) for state in SlotState}
    done = by[SlotState.SUCCEEDED] + by[SlotState.FAILED] + by[SlotState.SKIPPED]
    return {
        "total": len(slots),
        "pending": by[SlotState.PENDING],
        "running": by[SlotState.RUNNING] + by[SlotState.RETRY_PENDING],
        "succeeded": by[SlotState.SUCCEEDED],
        "failed": by[SlotState.FAILED],
        "skipped": by[SlotState.SKIPPED],
        "progress": f"{done}/{len(slots)}",
    }


def _status(w: _Work, **fields: object) -> BackfillStatus:
    data = {
        **w.view.status.model_dump(),
        **_counts(w.slots),
        "slots": w.slots,
        "observedGeneration": w.view.generation,
        **fields,
    }
    return BackfillStatus.model_validate(data)


def _ready_changed(old: list[Condition], new: Condition) -> bool:
    for cond in old:
        if cond.type == new.type:
            return (cond.status, cond.reason, cond.message) != (new.status, new.reason, new.message)
    return True


def _waiting(w: _Work, reason: str, message: str, *, final: bool = False) -> BackfillDecision:
    """The Backfill cannot go on: say why once (Ready=False and one Warning Event)."""
    ready = w.condition("Ready", False, reason, message)
    if _ready_changed(w.view.status.conditions, ready):
        w.event("Warning", reason, message)
    fields: dict[str, object] = {"conditions": [ready, w.condition("Complete", final, reason)]}
    if final:
        fields["phase"] = "Failed"
    elif w.view.status.phase is None:
        fields["phase"] = "Pending"
    return BackfillDecision(status=_status(w, **fields), events=w.events)


def decide_backfill(view: BackfillView, now: datetime) -> BackfillDecision:
    """Decide one sync of a Backfill at time ``now``."""
    w = _Work(view, now)
    status = view.status
    if status.phase in _FINAL_PHASES:
        return BackfillDecision(status=status)  # done: nothing changes any more
    if view.spec is None:
        assert view.spec_error is not None
        return _waiting(w, "InvalidSpec", str(view.spec_error))
    spec = view.spec
    task = view.task
    ref = f'task "{spec.taskRef.name}"'
    if task is not None and status.taskUID is not None and task.uid != status.taskUID:
        return _waiting(
            w,
            "TaskReplaced",
            f"{ref} was deleted and created again after the plan: its slots are another's",
            final=True,
        )
    if task is None:
        return _waiting(w, "TaskNotFound", f"{ref} not found in namespace {view.namespace}")
    if task.spec is None:
        return _waiting(w, "InvalidTask", f"{ref} has an invalid spec: {task.spec_error}")
    task_spec = task.spec
    if status.plannedAt is None:
        if task.calendar_problem is not None:
            return _waiting(w, "TaskCalendar", f"{ref}: {task.calendar_problem[1]}")
        planned = _plan(view, spec, task, task_spec)
        if isinstance(planned, str):
            return _waiting(w, "TooManySlots", planned, final=True)
        w.slots, left = planned
        return _planned(w, spec, task, left)
    _track(w, task, task_spec)
    _start(w, spec, task, task_spec)
    return _progress(w, task_spec)


def _planned(w: _Work, spec: BackfillSpec, task: TaskFacts, left: int) -> BackfillDecision:
    counts = _counts(w.slots)
    runs = counts["pending"]
    after = (
        f"; {left}{'+' if left >= MAX_SLOTS else ''} later slots are the schedule's" if left else ""
    )
    summary = f"{runs} of {counts['total']} slots to run, {counts['skipped']} skipped{after}"
    ready = w.condition("Ready", True, "Planned", summary)
    if spec.dryRun:
        w.event("Normal", "DryRun", f"dry run: {summary}; nothing runs")
        phase = "DryRun"
        complete = w.condition("Complete", True, "DryRun", "a dry run only plans")
    elif not runs:
        w.event("Normal", "BackfillComplete", f"nothing to run: {summary}")
        phase = "Succeeded"
        complete = w.condition("Complete", True, "NothingToRun", summary)
    else:
        w.event("Normal", "BackfillPlanned", summary)
        phase = "Running"
        complete = w.condition("Complete", False, "Running")
    status = _status(
        w,
        conditions=[ready, complete],
        phase=phase,
        taskUID=task.uid,
        plannedAt=w.now,
        leftToSchedule=left,
    )
    return BackfillDecision(status=status, events=w.events)


def _progress(w: _Work, task_spec: TaskSpec) -> BackfillDecision:
    counts = _counts(w.slots)
    open_ = counts["pending"] or counts["running"]
    ready = w.condition("Ready", True, "Running" if open_ else "Finished")
    phase = "Running"
    complete = w.condition("Complete", False, "Running")
    if not open_:
        failed = counts["failed"]
        phase = "Failed" if failed else "Succeeded"
        summary = (
            f"{counts['succeeded']} succeeded, {failed} failed, {counts['skipped']} skipped "
            f"of {counts['total']} slots"
        )
        complete = w.condition("Complete", True, phase, summary)
        if failed:
            w.event("Warning", "BackfillFailed", summary)
        else:
            w.event("Normal", "BackfillComplete", summary)
        _prune(w, task_spec)
    status = _status(w, conditions=[ready, complete], phase=phase)
    return BackfillDecision(
        status=status, create=w.create, delete=w.delete, events=w.events, wake_at=w.wake
    )


def settle_backfill(
    view: BackfillView, decision: BackfillDecision, outcomes: list[Outcome], now: datetime
) -> BackfillDecision:
    """Fold the results of the Job creations into the decision's status and Events."""
    by_name = {o.name: o for o in outcomes}
    adopted = {n for n, o in by_name.items() if o.result == "adopted"}
    failed = {n: o for n, o in by_name.items() if o.result in ("conflict", "error")}
    events = [
        e
        for e in decision.events
        if not (e.starts_a_job and any(f"(Job {n})" in e.message for n in adopted | set(failed)))
    ]
    if not failed:
        decision.events = events
        return decision
    w = _Work(view, now)
    w.slots = list(decision.status.slots)
    w.events = events
    task = view.task
    assert task is not None
    assert task.spec is not None
    for i, slot in enumerate(w.slots):
        outcome = failed.get(slot.job or "")
        if outcome is None or slot.state is not SlotState.RUNNING:
            continue
        reason = "JobNameConflict" if outcome.result == "conflict" else "JobCreateFailed"
        message = outcome.message or f"Job {slot.job} exists and is not the task's"
        w.event("Warning", reason, f"Job {slot.job}: {message}")
        job = JobView(
            name=slot.job or "",
            run=slot.run,
            attempt=slot.attempt,
            finished="Failed",
            reason=reason,
            finished_at=now,
            message=message,
        )
        _finish(w, i, task.spec, task, job, RunResult.FAILED)
    rest = _progress(w, task.spec)
    rest.create = decision.create
    rest.delete = decision.delete + [d for d in rest.delete if d not in decision.delete]
    if decision.wake_at is not None:
        rest.wake_at = min(t for t in (decision.wake_at, rest.wake_at) if t is not None)
    return rest

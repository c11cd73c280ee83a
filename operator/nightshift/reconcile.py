"""The pure heart of the operator: given a task, its Jobs and the time, decide what to do.

``decide`` works on a copy of the task's status, collects every change (Jobs to create and delete,
Events, the new status) and says when to look again, like the CronJob controller's ``sync()``.
``settle`` folds the outcome of the Job creations back in. Neither does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nightshift import care, guard
from nightshift.durations import format_duration
from nightshift.jobs import build_job, manual_run_id, run_id_for_slot, token_key
from nightshift.models import (
    ActiveRun,
    CalendarSpec,
    CatchUp,
    Change,
    ConcurrencyPolicy,
    Condition,
    PendingNotification,
    PendingRetry,
    PolicySuspension,
    QueuedRun,
    RunRecord,
    RunResult,
    SpecError,
    TaskSpec,
    TaskStatus,
)
from nightshift.schedule import (
    Plan,
    describe,
    fire_time,
    next_fire_times,
    next_slot,
    plan_for,
    slots_between,
    without_exclusions,
)

__all__ = [
    "GRACE",
    "JOB_VISIBLE",
    "CreateJob",
    "Decision",
    "DeleteJob",
    "Event",
    "JobView",
    "Outcome",
    "TaskView",
    "backoff_delay",
    "condition",
    "decide",
    "retry_allowed",
    "settle",
]

# A slot whose fire time passed less than this long ago (and less than half the gap to the next
# slot) is "on time" rather than missed: it covers API latency and a short operator restart, and
# it is what catchUp: Skip still runs.
GRACE = timedelta(seconds=60)
_TICK = timedelta(microseconds=1)
_FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
# Bytes of a termination message kept in a run record (docs/architecture.md#status-and-events).
MESSAGE_LIMIT = 1024
CONDITION_MESSAGE_LIMIT = 4096  # characters; Condition.message's bound
# status.active and status.pendingRetries hold at most 100 entries each (and the CRD says so): under
# Allow, a slot that would go beyond that is Skipped rather than making the status unwritable.
MAX_IN_FLIGHT = 100
# How long a Job the operator created may be missing from its memory (the watch lags) before its
# absence means it was deleted.
JOB_VISIBLE = timedelta(seconds=30)
# status.nextScheduleTimes: how many upcoming fire times the status shows.
NEXT_TIMES = 3


@dataclass(frozen=True, slots=True)
class JobView:
    """What the operator knows about one Job controlled by the task."""

    name: str
    run: str
    attempt: int
    slot: datetime | None = None
    created: datetime | None = None
    finished: Literal["Succeeded", "Failed"] | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    run_now_token: str | None = None
    backfill: str | None = None  # the uid of the Backfill that runs it (None: the schedule)
    suspended: bool = False  # spec.suspend: held by a queue (Kueue), still an active run


@dataclass(frozen=True, slots=True)
class TaskView:
    """A ScheduledTask as read from the API, plus its Jobs."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime
    spec: TaskSpec | None
    spec_error: SpecError | None
    status: TaskStatus
    run_now: str | None = None
    jobs: tuple[JobView, ...] = ()
    # The Calendar spec.calendarRef names, as stored; or why it cannot be used: (reason, message)
    # with reason CalendarNotFound or InvalidCalendar. No scheduled slot runs while it cannot.
    calendar: CalendarSpec | None = None
    calendar_problem: tuple[str, str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # the task's metadata.labels
    resume: str | None = None  # the nightshift.dev/resume annotation
    deliveries: tuple[care.Delivery, ...] = ()  # notification outcomes not yet in status
    # Why no Job may be created for the task (nightshift.guard): its namespace's Pod Security
    # level, ServiceAccount allowlist, or the operator's limits. None: it may have Jobs.
    refusal: guard.Refusal | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to post on the task."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str

    @property
    def starts_a_job(self) -> bool:
        """It announces a Job this process created (named in the message as ``(Job NAME)``).

        Only the creator knows its create succeeded, and whoever finds the Job later adopts it
        without a word, so the creator posts this Event even when its status write is lost.
        """
        return self.reason in ("RunStarted", "RetryStarted")


@dataclass(frozen=True, slots=True)
class CreateJob:
    """Create this Job (one attempt of one run)."""

    run: str
    attempt: int
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """The Job's deterministic name."""
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True, slots=True)
class DeleteJob:
    """Delete this Job (and, with background propagation, its pods)."""

    name: str
    why: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a CreateJob: created, adopted (ours already), conflict, or error."""

    name: str
    result: Literal["created", "adopted", "conflict", "error"]
    message: str = ""


@dataclass(slots=True)
class Decision:
    """Everything one sync wants done, and the status to write afterwards."""

    status: TaskStatus
    create: list[CreateJob] = field(default_factory=list)
    delete: list[DeleteJob] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None
    late: list[str] = field(default_factory=list)  # runs that became Late (the metric counts them)


def _clip_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes of UTF-8, whole characters."""
    return text.encode()[:limit].decode(errors="ignore")


def backoff_delay(spec: TaskSpec, attempt: int, *, seed: str) -> timedelta:
    """Delay after failed ``attempt`` (1-based): initial * factor^(attempt-1), capped, + jitter."""
    backoff = spec.retry.backoff
    seconds = backoff.initial.total_seconds() * backoff.factor ** (attempt - 1)
    seconds = min(seconds, backoff.max.total_seconds())
    if backoff.jitter:
        digest = hashlib.sha256(f"{seed}|retry|{attempt}".encode()).digest()
        seconds *= 1 + 0.2 * (int.from_bytes(digest[:8], "big") / 2**64)
    return timedelta(seconds=round(seconds, 3))


class _Work:
    """Mutable working copy of a status during one decision."""

    def __init__(self, view: TaskView, now: datetime) -> None:
        s = view.status
        self.view = view
        self.now = now
        self.active: list[ActiveRun] = list(s.active)
        self.pending: list[PendingRetry] = list(s.pendingRetries)
        self.queued: QueuedRun | None = s.queued
        self.runs: list[RunRecord] = list(s.runs)
        self.fields: dict[str, Any] = {}
        self.status = s
        self.events: list[Event] = []
        self.create: list[CreateJob] = []
        self.delete: list[DeleteJob] = []
        self.conflict: str | None = None
        self.recheck: datetime | None = None  # look again then, though nothing is scheduled
        # Changes of state to notify about: (change, run, attempt, message).
        self.notices: list[tuple[Change, str, int, str]] = []
        self.notifications: list[PendingNotification] = list(s.notifications)
        self.succeeded = False  # a run succeeded in this sync (clears Late)
        self.late: tuple[tuple[str, str], ...] = ()
        self.delivered: tuple[care.Delivery, ...] = ()
        self.undelivered: tuple[care.Delivery, ...] = ()

    def get(self, name: str) -> Any:
        return self.fields.get(name, getattr(self.status, name))

    def set(self, name: str, value: Any) -> None:
        self.fields[name] = value

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def wake(self, when: datetime) -> None:
        """Look again at ``when`` (the earliest such time wins)."""
        self.recheck = when if self.recheck is None else min(self.recheck, when)


def _slot_of(run: str) -> datetime | None:
    if run.startswith("manual-"):
        return None
    try:
        return datetime.strptime(run, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


_WORDS = {RunResult.FAILED: "failed", RunResult.TIMED_OUT: "timed out"}


def retry_allowed(spec: TaskSpec, attempt: int, exit_code: int | None) -> bool:
    """Whether the task's retry policy retries a failed ``attempt`` (1-based, within the run)
    that exited with ``exit_code`` (None: none was read, e.g. it timed out)."""
    return _retry_allowed(spec, attempt, exit_code)


def condition(
    old: list[Condition],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
) -> Condition:
    """A condition as :func:`decide` writes them: its lastTransitionTime kept while status and
    reason stay (for other objects than tasks, e.g. Backfills)."""
    value: Literal["True", "False"] = "True" if status else "False"
    if len(message) > CONDITION_MESSAGE_LIMIT:
        message = message[: CONDITION_MESSAGE_LIMIT - 1] + "…"
    for cond in old:
        if cond.type == kind and cond.status == value and cond.reason == reason:
            return cond.model_copy(update={"message": message, "observedGeneration": generation})
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        lastTransitionTime=now,
        observedGeneration=generation,
    )


def _retry_allowed(spec: TaskSpec, attempt: int, exit_code: int | None) -> bool:
    retry = spec.retry
    if attempt > retry.maxRetries:
        return False
    if retry.onExitCodes is not None:
        return exit_code is not None and exit_code in retry.onExitCodes
    if retry.notOnExitCodes is not None:
        return exit_code is None or exit_code not in retry.notOnExitCodes
    return True


def _finish(
    w: _Work,
    spec: TaskSpec,
    *,
    run: str,
    attempt: int,
    job: str | None,
    result: RunResult,
    scheduled_at: datetime | None,
    started_at: datetime | None,
    finished_at: datetime,
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    """Record a finished attempt and decide whether it is retried."""
    w.runs.insert(
        0,
        RunRecord(
            run=run,
            attempt=attempt,
            job=job,
            scheduledAt=scheduled_at,
            startedAt=started_at,
            finishedAt=finished_at,
            result=result,
            exitCode=exit_code,
            reason=reason,
            message=_clip_bytes(message, MESSAGE_LIMIT) if message else None,
        ),
    )
    w.set("lastResult", result)
    label = f"run {run} attempt {attempt}"
    if result is RunResult.SUCCEEDED:
        w.set("lastSuccessfulTime", finished_at)
        failures = w.get("consecutiveFailures")
        if failures:
            w.notices.append(
                (
                    Change.RECOVERED,
                    run,
                    attempt,
                    f"{label} succeeded after {failures} failed run(s) in a row",
                )
            )
        w.set("consecutiveFailures", 0)
        w.set("failuresSinceResume", 0)
        w.succeeded = True
        w.event("Normal", "RunSucceeded", f"{label} succeeded (Job {job})")
        return
    w.set("lastFailureTime", finished_at)
    detail = f"exit code {exit_code}" if exit_code is not None else (reason or result.value)
    if _retry_allowed(spec, attempt, exit_code):
        delay = backoff_delay(spec, attempt, seed=f"{w.view.namespace}/{w.view.name}|{run}")
        not_before = finished_at + delay
        w.pending.append(
            PendingRetry(
                run=run, attempt=attempt + 1, notBefore=not_before, scheduledAt=scheduled_at
            )
        )
        w.event(
            "Warning",
            "RetryScheduled",
            f"{label} {_WORDS.get(result, result.value)} ({detail}); attempt {attempt + 1} "
            f"at {not_before.astimezone(UTC).isoformat(timespec='seconds')}",
        )
        return
    w.set("consecutiveFailures", w.get("consecutiveFailures") + 1)
    w.event("Warning", "RunFailed", f"{label} {result.value} ({detail}); no retry left")
    what = f"{label} {result.value} ({detail})" + (f": {message}" if message else "")
    if w.get("consecutiveFailures") == 1:
        w.notices.append((Change.FAILING, run, attempt, what))
    _count_toward_pause(w, spec, run=run, attempt=attempt, what=what)


def _count_toward_pause(w: _Work, spec: TaskSpec, *, run: str, attempt: int, what: str) -> None:
    """spec.failurePolicy: after suspendAfter failed runs in a row, the task suspends itself
    (status.suspendedByPolicy, never spec.suspend: that switch is the user's alone)."""
    failures = w.get("failuresSinceResume") + 1
    w.set("failuresSinceResume", failures)
    limit = spec.failurePolicy.suspendAfter
    if not limit or failures < limit or w.get("suspendedByPolicy") is not None:
        return
    why = f"{failures} runs failed in a row (failurePolicy.suspendAfter {limit}); the last: {what}"
    w.set(
        "suspendedByPolicy",
        PolicySuspension(
            since=w.now, failures=failures, run=run, message=_clip_bytes(why, MESSAGE_LIMIT)
        ),
    )
    w.event(
        "Warning",
        "FailureThreshold",
        f"suspended: {why}; `kubectl nightshift resume {w.view.name}` resumes it",
    )
    w.notices.append((Change.SUSPENDED, run, attempt, why))


def _resume(w: _Work) -> None:
    """Act once on each distinct resume request: clear a suspension by the failure policy, start
    its count afresh, and record who asked and why."""
    request = care.read_resume(w.view.resume)
    last = w.get("lastResume")
    if request is None or (last is not None and last.token == request.token):
        return
    w.set(
        "lastResume",
        {"token": request.token, "at": w.now, "by": request.by, "note": request.note},
    )
    w.set("failuresSinceResume", 0)
    if w.get("suspendedByPolicy") is None:
        return
    w.set("suspendedByPolicy", None)
    # As after spec.suspend: the slots that passed while suspended are not caught up.
    last = w.get("lastSlotTime")
    w.set("lastSlotTime", max(last, w.now) if last else w.now)
    who = f" by {request.by}" if request.by else ""
    note = f": {request.note}" if request.note else ""
    w.event("Normal", "Resumed", f"resumed{who} after the failure policy suspended it{note}")


def _create(
    w: _Work,
    spec: TaskSpec,
    *,
    run: str,
    attempt: int,
    slot: datetime | None,
    plan: Plan,
    token: str | None = None,
) -> None:
    view = w.view
    manifest = build_job(
        task_name=view.name,
        task_uid=view.uid,
        spec=spec,
        run=run,
        attempt=attempt,
        slot=slot,
        tz_offset_slot=slot.astimezone(plan.tz) if slot else None,
        run_now_token=token,
        task_labels=view.labels,
    )
    w.create.append(CreateJob(run=run, attempt=attempt, manifest=manifest))
    w.active.append(
        ActiveRun(
            run=run,
            attempt=attempt,
            job=manifest["metadata"]["name"],
            scheduledAt=slot,
            startedAt=w.now,
        )
    )


def _replace_all(w: _Work, spec: TaskSpec, by: str) -> None:
    """Concurrency Replace: stop every active attempt and pending retry before a new run."""
    for active in w.active:
        w.delete.append(DeleteJob(active.job, f"replaced by run {by}"))
        _record_plain(
            w,
            active.run,
            active.attempt,
            active.job,
            RunResult.REPLACED,
            active.scheduledAt,
            active.startedAt,
            f"replaced by run {by}",
        )
        w.event("Normal", "RunReplaced", f"run {active.run} replaced by run {by}")
    for pending in w.pending:
        _record_plain(
            w,
            pending.run,
            pending.attempt,
            None,
            RunResult.CANCELLED,
            pending.scheduledAt,
            None,
            f"pending retry cancelled by run {by}",
        )
        w.event(
            "Normal",
            "RunReplaced",
            f"run {pending.run} (attempt {pending.attempt} pending) replaced by run {by}",
        )
    w.active = []
    w.pending = []


def _record_plain(
    w: _Work,
    run: str,
    attempt: int,
    job: str | None,
    result: RunResult,
    scheduled_at: datetime | None,
    started_at: datetime | None,
    message: str,
) -> None:
    w.runs.insert(
        0,
        RunRecord(
            run=run,
            attempt=attempt,
            job=job,
            scheduledAt=scheduled_at,
            startedAt=started_at,
            finishedAt=w.now if result is not RunResult.MISSED else None,
            result=result,
            message=_clip_bytes(message, MESSAGE_LIMIT),
        ),
    )


def _busy(w: _Work) -> bool:
    return bool(w.active or w.pending)


def _start_run(
    w: _Work,
    spec: TaskSpec,
    plan: Plan,
    *,
    run: str,
    slot: datetime | None,
    token: str | None = None,
) -> bool:
    """Start attempt 1 of a run under the concurrency policy; False if it was skipped (or
    queued: it starts later, see :func:`_start_queued`)."""
    if any(a.run == run for a in w.active) or any(p.run == run for p in w.pending):
        return False  # already in progress (e.g. adopted after a restart)
    if w.queued is not None and w.queued.run == run:
        return False  # already queued
    policy = spec.concurrencyPolicy
    if _busy(w) and policy is ConcurrencyPolicy.QUEUE:
        _queue(w, run=run, slot=slot, token=token)
        return False
    if _busy(w) and policy is ConcurrencyPolicy.FORBID:
        busy = ", ".join(sorted({a.run for a in w.active} | {p.run for p in w.pending}))
        _record_plain(
            w,
            run,
            1,
            None,
            RunResult.SKIPPED,
            slot,
            None,
            f"skipped: run {busy} still active (concurrencyPolicy Forbid)",
        )
        w.event("Normal", "RunSkipped", f"run {run} skipped: run {busy} still active (Forbid)")
        return False
    in_flight = len(w.active) + len(w.pending)
    if policy is ConcurrencyPolicy.ALLOW and in_flight >= MAX_IN_FLIGHT:
        _record_plain(
            w,
            run,
            1,
            None,
            RunResult.SKIPPED,
            slot,
            None,
            f"skipped: {in_flight} runs already active or retrying (at most {MAX_IN_FLIGHT})",
        )
        w.event("Warning", "RunSkipped", f"run {run} skipped: {in_flight} runs already in flight")
        return False
    if _busy(w) and policy is ConcurrencyPolicy.REPLACE:
        _replace_all(w, spec, run)
    _create(w, spec, run=run, attempt=1, slot=slot, plan=plan, token=token)
    what = "manual run" if slot is None else "run"
    w.event("Normal", "RunStarted", f"{what} {run} started (Job {w.create[-1].name})")
    return True


def _queue(w: _Work, *, run: str, slot: datetime | None, token: str | None) -> None:
    """Concurrency Queue (Temporal's BufferOne): hold one run until the active one ends; a run
    that comes due while one is held already is Skipped, so runs never pile up."""
    busy = ", ".join(sorted({a.run for a in w.active} | {p.run for p in w.pending}))
    if w.queued is None:
        w.queued = QueuedRun(
            run=run,
            scheduledAt=slot,
            queuedAt=w.now,
            runNowToken=token if token is not None and len(token) <= 4096 else None,
        )
        w.event("Normal", "RunQueued", f"run {run} queued: run {busy} still active (Queue)")
        return
    _record_plain(
        w,
        run,
        1,
        None,
        RunResult.SKIPPED,
        slot,
        None,
        f"skipped: run {w.queued.run} is already queued behind run {busy} "
        "(concurrencyPolicy Queue holds one)",
    )
    w.event("Normal", "RunSkipped", f"run {run} skipped: run {w.queued.run} is already queued")


def _start_queued(w: _Work, spec: TaskSpec, plan: Plan) -> None:
    """Start the queued run once nothing is active or waiting for a retry."""
    queued = w.queued
    if queued is None:
        return
    if any(a.run == queued.run for a in w.active) or any(r.run == queued.run for r in w.runs):
        # Its Job was created by a sync whose status write was lost, and adopted just now (and
        # maybe found finished): it started then, so count it as started.
        w.queued = None
        _count_start(w, queued.scheduledAt)
        return
    scheduled = queued.scheduledAt is not None
    if scheduled and w.get("suspendedByPolicy") is not None:
        # The run it waited for was the failure that made the policy suspend the task: starting
        # the queued slot now would be one more failure the policy is there to prevent. It is
        # dropped like a slot that passes while suspended (a queued run-now request still runs).
        w.queued = None
        _record_plain(
            w,
            queued.run,
            1,
            None,
            RunResult.SKIPPED,
            queued.scheduledAt,
            None,
            "skipped: the failure policy suspended the task while the run was queued",
        )
        w.event(
            "Normal",
            "RunSkipped",
            f"run {queued.run} skipped: the failure policy suspended the task while it was queued",
        )
        return
    if _busy(w):
        return
    w.queued = None
    if scheduled and spec.maxRuns and w.get("runCount") >= spec.maxRuns:
        _record_plain(
            w,
            queued.run,
            1,
            None,
            RunResult.SKIPPED,
            queued.scheduledAt,
            None,
            f"skipped: maxRuns {spec.maxRuns} reached while it was queued",
        )
        w.event("Normal", "RunSkipped", f"run {queued.run} skipped: maxRuns reached")
        return
    _create(
        w,
        spec,
        run=queued.run,
        attempt=1,
        slot=queued.scheduledAt,
        plan=plan,
        token=queued.runNowToken,
    )
    since = queued.queuedAt.astimezone(UTC).isoformat(timespec="seconds")
    w.event(
        "Normal",
        "RunStarted",
        f"run {queued.run} started (Job {w.create[-1].name}); it was queued at {since}",
    )
    _count_start(w, queued.scheduledAt)


def _count_start(w: _Work, slot: datetime | None) -> None:
    """A queued scheduled run started: it counts towards maxRuns and lastScheduleTime."""
    if slot is None:
        return
    w.set("runCount", w.get("runCount") + 1)
    last = w.get("lastScheduleTime")
    if last is None or slot > last:
        w.set("lastScheduleTime", slot)


def _condition(w: _Work, kind: str, status: bool, reason: str, message: str = "") -> Condition:
    value: Literal["True", "False"] = "True" if status else "False"
    if len(message) > CONDITION_MESSAGE_LIMIT:
        message = message[: CONDITION_MESSAGE_LIMIT - 1] + "…"
    for old in w.status.conditions:
        if old.type == kind and old.status == value and old.reason == reason:
            if old.message == message:
                return old.model_copy(update={"observedGeneration": w.view.generation})
            return old.model_copy(
                update={"message": message, "observedGeneration": w.view.generation}
            )
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        lastTransitionTime=w.now,
        observedGeneration=w.view.generation,
    )


def _ready_changed(old: TaskStatus, new: Condition) -> bool:
    for cond in old.conditions:
        if cond.type == "Ready":
            return (cond.status, cond.reason, cond.message) != (new.status, new.reason, new.message)
    return True


def _invalid(view: TaskView, now: datetime, reason: str, message: str) -> Decision:
    """No Jobs at all: the spec is invalid, or the guard refuses it (Ready=False, one Event)."""
    w = _Work(view, now)
    ready = _condition(w, "Ready", False, reason, message)
    events = []
    if _ready_changed(view.status, ready):
        events.append(Event("Warning", reason, f"{message}; no Jobs will be created"))
    others = [c for c in view.status.conditions if c.type != "Ready"]
    status = view.status.model_copy(
        update={
            "conditions": [ready, *others],
            "observedGeneration": view.generation,
            "nextScheduleTime": None,
            "nextScheduleTimes": [],
        }
    )
    return Decision(status=status, events=events)


def _track_jobs(w: _Work, spec: TaskSpec) -> None:
    """Adopt Jobs we created but did not record (a crash between create and status write), and
    record the ones that finished."""
    view = w.view
    jobs = {job.name: job for job in view.jobs}
    known_active = {a.job for a in w.active}
    recorded = {(r.run, r.attempt) for r in w.runs}
    for job in view.jobs:
        if job.name in known_active or (job.run, job.attempt) in recorded:
            continue
        if job.finished is not None and not _creation_unrecorded(view, job):
            # Its record was already trimmed from history and the Job's deletion has not shown
            # yet (or failed): recording it again would repeat its Event, and maybe its retry.
            continue
        w.active.append(
            ActiveRun(
                run=job.run,
                attempt=job.attempt,
                job=job.name,
                scheduledAt=job.slot,
                startedAt=job.created,
            )
        )
        known_active.add(job.name)
        w.pending = [p for p in w.pending if (p.run, p.attempt) != (job.run, job.attempt)]
        if job.run_now_token is not None and job.run_now_token == view.run_now:
            w.set("runNowToken", token_key(job.run_now_token))
        if job.slot is not None and job.attempt == 1:
            last = w.get("lastSlotTime")
            if last is None or job.slot > last:
                w.set("lastSlotTime", job.slot)
                w.set("lastScheduleTime", job.slot)
                w.set("runCount", w.get("runCount") + 1)
    still: list[ActiveRun] = []
    for active in w.active:
        found = jobs.get(active.job)
        if found is None:
            # Only trust absence for Jobs created a while ago: one just created by another replica
            # (before a failover) may not have reached this one's memory yet.
            if active.startedAt is not None and w.now - active.startedAt > JOB_VISIBLE:
                _record_plain(
                    w,
                    active.run,
                    active.attempt,
                    active.job,
                    RunResult.CANCELLED,
                    active.scheduledAt,
                    active.startedAt,
                    "the Job was deleted before it finished",
                )
                w.event(
                    "Warning",
                    "RunCancelled",
                    f"run {active.run} attempt {active.attempt}: Job {active.job} was deleted",
                )
                continue
            if active.startedAt is not None:
                # Look again once its absence can be trusted, instead of at the next slot.
                recheck = active.startedAt + JOB_VISIBLE + timedelta(seconds=1)
                w.recheck = recheck if w.recheck is None else min(w.recheck, recheck)
            still.append(active)
            continue
        job = found
        if job.finished is None:
            queued = True if job.suspended else None
            still.append(
                active if active.queued == queued else active.model_copy(update={"queued": queued})
            )
            continue
        if job.finished == "Succeeded":
            result = RunResult.SUCCEEDED
        elif job.reason == "DeadlineExceeded":
            result = RunResult.TIMED_OUT
        else:
            result = RunResult.FAILED
        _finish(
            w,
            spec,
            run=active.run,
            attempt=active.attempt,
            job=active.job,
            result=result,
            scheduled_at=active.scheduledAt or job.slot,
            started_at=job.created or active.startedAt,
            finished_at=job.finished_at or w.now,
            exit_code=job.exit_code,
            reason=job.reason,
            message=job.message,
        )
    w.active = still


def _creation_unrecorded(view: TaskView, job: JobView) -> bool:
    """Whether a Job the status does not mention was created by a sync whose status write was lost
    (so it is adopted), rather than dropped from status.runs by the history limits."""
    status = view.status
    if job.attempt > 1:
        return any((p.run, p.attempt) == (job.run, job.attempt) for p in status.pendingRetries)
    if status.queued is not None and status.queued.run == job.run:
        return True  # a queued run's Job, created by a sync whose status write was lost
    if job.slot is not None:
        return status.lastSlotTime is None or job.slot > status.lastSlotTime
    token = job.run_now_token
    return token is not None and token == view.run_now and token_key(token) != status.runNowToken


def _due_slots(w: _Work, spec: TaskSpec, plan: Plan) -> datetime | None:
    """Handle the slots that came due since the cursor; return the next fire time."""
    view = w.view
    now = w.now
    cursor: datetime = w.get("lastSlotTime") or view.created
    if plan.kind == "at" and plan.at is not None and w.get("lastSlotTime") is None:
        # A one-shot whose time passed before the task existed still runs (within the starting
        # deadline, under catchUp) instead of silently completing.
        # (At the very first instant of the calendar there is no "just before": it stays missed.)
        cursor = min(cursor, max(plan.at, _FIRST_INSTANT + _TICK) - _TICK)
    cap = max(spec.maxCatchUp, spec.history.failed, 1) + 1
    excluded = _excluded_slots(w, spec, plan, cursor)
    candidates = slots_between(plan, cursor, now, limit=cap)
    due = [s for s in candidates if fire_time(plan, s) <= now]
    if not due:
        if excluded:
            cursor = max(cursor, excluded[-1])
            w.set("lastSlotTime", cursor)
        upcoming = next_slot(plan, cursor)
        return fire_time(plan, upcoming) if upcoming else None
    deadline = (
        timedelta(seconds=spec.startingDeadlineSeconds)
        if spec.startingDeadlineSeconds is not None
        else None
    )

    def late(slot: datetime) -> timedelta:
        return now - fire_time(plan, slot)

    eligible = [s for s in due if deadline is None or late(s) <= deadline]

    def grace(slot: datetime) -> timedelta:
        following = next_slot(plan, slot)
        return GRACE if following is None else min(GRACE, (following - slot) / 2)

    on_time = [s for s in eligible if late(s) <= grace(s)]
    if len(due) == 1 and on_time:
        to_run = on_time
    elif spec.catchUp is CatchUp.SKIP:
        to_run = on_time[-1:]
    elif spec.catchUp is CatchUp.LATEST:
        to_run = eligible[-1:]
    else:
        to_run = eligible[-spec.maxCatchUp :]
    missed = [s for s in due if s not in to_run]
    for slot in missed:
        why = (
            "past startingDeadlineSeconds"
            if deadline is not None and late(slot) > deadline
            else f"not run under catchUp {spec.catchUp.value}"
        )
        _record_plain(
            w, run_id_for_slot(slot), 1, None, RunResult.MISSED, slot, None, f"missed: {why}"
        )
    if missed:
        more = " or more" if len(candidates) >= cap else ""
        w.event(
            "Warning",
            "MissedSlots",
            f"{len(missed)}{more} slot(s) missed between "
            f"{run_id_for_slot(missed[0])} and {run_id_for_slot(missed[-1])}; "
            f"catchUp {spec.catchUp.value} ran {len(to_run)}",
        )
    for slot in to_run:
        if spec.maxRuns and w.get("runCount") >= spec.maxRuns:
            break
        if _start_run(w, spec, plan, run=run_id_for_slot(slot), slot=slot):
            w.set("runCount", w.get("runCount") + 1)
            w.set("lastScheduleTime", slot)
    w.set("lastSlotTime", max([due[-1], *excluded[-1:]]))
    upcoming = next_slot(plan, due[-1])
    return fire_time(plan, upcoming) if upcoming else None


def _excluded_slots(w: _Work, spec: TaskSpec, plan: Plan, cursor: datetime) -> list[datetime]:
    """Record the slots after ``cursor`` that the calendar or spec.exclude skipped and whose fire
    time has passed (Excluded: neither Missed nor Failed); return them, oldest first.

    Also asks to look again at the next skipped slot, so that it is recorded when it passes,
    not only at the next slot that runs.
    """
    if plan.exclusions is None:
        return []
    bare = without_exclusions(plan)
    limit = max(spec.history.excluded, 1) + 1
    skipped = [
        s
        for s in slots_between(bare, cursor, w.now, limit=limit)
        if fire_time(bare, s) <= w.now and plan.exclusions.match(s) is not None
    ]
    for slot in skipped:
        rule = plan.exclusions.match(slot)
        assert rule is not None
        _record_plain(
            w,
            run_id_for_slot(slot),
            1,
            None,
            RunResult.EXCLUDED,
            slot,
            None,
            f"excluded by {rule.describe()}",
        )
    if len(skipped) == 1:
        rule = plan.exclusions.match(skipped[0])
        assert rule is not None
        w.event(
            "Normal",
            "RunExcluded",
            f"slot {run_id_for_slot(skipped[0])} excluded by {rule.describe()}",
        )
    elif skipped:
        w.event(
            "Normal",
            "RunExcluded",
            f"{len(skipped)} slots between {run_id_for_slot(skipped[0])} and "
            f"{run_id_for_slot(skipped[-1])} excluded by the calendar or spec.exclude",
        )
    after = max([cursor, *skipped])
    following = next_slot(bare, after)
    if following is not None and plan.exclusions.match(following) is not None:
        recheck = fire_time(bare, following)
        w.recheck = recheck if w.recheck is None else min(w.recheck, recheck)
    return skipped


def _excluded_ahead(w: _Work, plan: Plan) -> bool:
    """Whether the bare schedule goes on although no slot outside the exclusions was found (a
    calendar that excludes everything for as far as the search looks): not Completed."""
    if plan.exclusions is None:
        return False
    cursor = w.get("lastSlotTime") or w.view.created
    return next_slot(without_exclusions(plan), max(cursor, w.now)) is not None


def _trim_history(w: _Work, spec: TaskSpec) -> None:
    kept: list[RunRecord] = []
    ok = bad = skipped = 0
    for record in w.runs:
        if record.result is RunResult.EXCLUDED:
            # Counted apart: a weekend of excluded hourly slots must not push failures out.
            if skipped < spec.history.excluded:
                kept.append(record)
            skipped += 1
            continue
        if record.result is RunResult.SUCCEEDED:
            if ok < spec.history.succeeded:
                kept.append(record)
            ok += 1
        else:
            if bad < spec.history.failed:
                kept.append(record)
            bad += 1
    w.runs = kept
    keep_jobs = {r.job for r in kept if r.job} | {a.job for a in w.active}
    for job in w.view.jobs:
        already = any(d.name == job.name for d in w.delete)
        if job.finished is not None and job.name not in keep_jobs and not already:
            w.delete.append(DeleteJob(job.name, "beyond history limits"))


def decide(view: TaskView, now: datetime) -> Decision:
    """Decide one sync of a task at time ``now``."""
    if view.spec is None:
        assert view.spec_error is not None
        return _invalid(view, now, "InvalidSpec", str(view.spec_error))
    if view.refusal is not None:
        return _invalid(view, now, view.refusal.reason, view.refusal.message)
    spec = view.spec
    plan = plan_for(spec, view.namespace, view.name, calendar=view.calendar)
    w = _Work(view, now)
    status = view.status

    if status.observedGeneration is not None and status.observedGeneration != view.generation:
        # The spec changed: never run slots retroactively under the new schedule.
        last = w.get("lastSlotTime")
        w.set("lastSlotTime", max(last, now) if last else now)

    _resume(w)
    _track_jobs(w, spec)

    # Run now: exactly one manual run per distinct token.
    token = view.run_now
    if token and token_key(token) != w.get("runNowToken"):
        w.set("runNowToken", token_key(token))
        run = manual_run_id(token)
        if not any(a.run == run for a in w.active) and not any(r.run == run for r in w.runs):
            _start_run(w, spec, plan, run=run, slot=None, token=token)

    # Retries whose back-off has passed; the earliest one still pending sets the next wake-up.
    waiting: list[PendingRetry] = []
    for pending in w.pending:
        if pending.notBefore <= now:
            _create(
                w,
                spec,
                run=pending.run,
                attempt=pending.attempt,
                slot=pending.scheduledAt,
                plan=plan,
            )
            w.event(
                "Normal",
                "RetryStarted",
                f"run {pending.run} attempt {pending.attempt} started (Job {w.create[-1].name})",
            )
        else:
            waiting.append(pending)
    w.pending = waiting

    # concurrencyPolicy Queue: the queued run goes first, before any slot that is due now.
    _start_queued(w, spec, plan)

    next_fire: datetime | None = None
    completed = False
    if spec.suspend or w.get("suspendedByPolicy") is not None:
        # Suspended time is not caught up on resume.
        last = w.get("lastSlotTime")
        w.set("lastSlotTime", max(last, now) if last else now)
    elif spec.maxRuns and w.get("runCount") >= spec.maxRuns:
        completed = True
    elif view.calendar_problem is not None:
        # Without its calendar the task cannot know which slots to skip: it runs none (run-now
        # and retries still do), and the slots that pass are caught up afterwards like after
        # downtime, under catchUp and startingDeadlineSeconds.
        pass
    else:
        next_fire = _due_slots(w, spec, plan)
        if spec.maxRuns and w.get("runCount") >= spec.maxRuns:
            next_fire = None
            completed = True
        elif next_fire is None and not _excluded_ahead(w, plan):
            completed = True  # one-shot done, window over, or the schedule never fires again
    times = (
        next_fire_times(plan, now, NEXT_TIMES, max_runs=spec.maxRuns, runs_so_far=w.get("runCount"))
        if next_fire is not None
        else []
    )
    w.set("nextScheduleTimes", times)
    _look_after(w, spec)
    _trim_history(w, spec)
    return _finalize(w, spec, next_fire, completed)


def _look_after(w: _Work, spec: TaskSpec) -> None:
    """Deadlines, and the notifications of this sync's changes of state (see nightshift.care)."""
    view = w.view
    fresh = view.status.observedGeneration != view.generation
    judged = care.judge_deadline(
        spec.deadline,
        w.get("deadlineCheckedUntil"),
        fresh=fresh,
        active=w.active,
        pending=w.pending,
        runs=w.runs,
        now=w.now,
        queued=w.queued,
    )
    w.set("deadlineCheckedUntil", judged.cursor)
    if judged.wake is not None:
        w.wake(judged.wake)
    w.late = judged.late
    if judged.late:
        assert spec.deadline is not None
        limit = format_duration(spec.deadline)
        text = "; ".join(f"run {run} ({doing})" for run, doing in judged.late)
        w.event("Warning", "RunLate", f"not Succeeded within {limit} of the slot: {text}")
        run, doing = judged.late[-1]
        w.notices.append((Change.LATE, run, 1, f"run {run} not Succeeded within {limit} ({doing})"))
    before = {(r.run, r.attempt, r.result) for r in view.status.runs}
    missed = [
        r for r in w.runs if r.result is RunResult.MISSED and (r.run, 1, r.result) not in before
    ]
    if missed:
        newest = max(missed, key=lambda r: r.run)
        w.notices.append(
            (Change.MISSED, newest.run, 1, f"{len(missed)} slot(s) missed, the last {newest.run}")
        )
    _deliveries(w, spec)
    _queue_notices(w, spec)


def _deliveries(w: _Work, spec: TaskSpec) -> None:
    """Fold the notifier's delivery outcomes into status.notifications."""
    sinks = [s.name for s in spec.notify or []]
    folded = care.fold_deliveries(w.notifications, w.view.deliveries, sinks)
    w.notifications = folded.pending
    w.delivered, w.undelivered = folded.delivered, folded.failed
    for item in folded.dropped:
        w.event(
            "Warning",
            "NotificationDropped",
            f"{item.change.value} of run {item.run} not delivered to {', '.join(item.sinks)} "
            f"after {item.failures} attempts: {item.lastError}",
        )


def _queue_notices(w: _Work, spec: TaskSpec) -> None:
    for change, run, attempt, message in w.notices:
        dropped = care.queue_notification(
            w.notifications,
            spec.notify or [],
            uid=w.view.uid,
            change=change,
            run=run,
            attempt=attempt,
            at=w.now,
            message=message,
        )
        if dropped is not None:
            w.event(
                "Warning",
                "NotificationDropped",
                f"{dropped.change.value} of run {dropped.run} dropped undelivered: more than "
                f"{care.MAX_PENDING} notifications waiting",
            )
    w.notices = []
    w.set("notifications", w.notifications)
    waiting = [n.notBefore for n in w.notifications if n.notBefore and n.notBefore > w.now]
    if waiting:
        w.wake(min(waiting))


def _finalize(
    w: _Work,
    spec: TaskSpec,
    next_fire: datetime | None,
    completed: bool,
) -> Decision:
    view = w.view
    pending_times = [p.notBefore for p in w.pending]
    shown_next = min([t for t in [next_fire, *pending_times] if t is not None], default=None)
    done = completed and not w.active and not w.pending
    previous = next((c for c in view.status.conditions if c.type == "Ready"), None)
    if w.conflict:
        ready = _condition(w, "Ready", False, "JobNameConflict", w.conflict)
    elif view.calendar_problem is not None:
        reason, message = view.calendar_problem
        ready = _condition(w, "Ready", False, reason, message)
        if _ready_changed(view.status, ready):
            w.event("Warning", reason, f"{message}; no scheduled slot runs until it is fixed")
    elif (
        previous is not None
        and previous.status == "False"
        and previous.reason == "JobNameConflict"
        and not w.create
        and view.status.observedGeneration == view.generation
    ):
        # A name conflict stays visible until a Job is created again or the spec changes.
        ready = previous
    else:
        ready = _condition(w, "Ready", True, "Scheduled", "the spec is valid")
    conditions = [
        ready,
        _suspended(w, spec),
        _running(w),
        _failing(w),
        _condition(
            w,
            "Completed",
            done,
            "Finished" if done else "Scheduling",
            _completed_message(spec) if done else "",
        ),
        *_care_conditions(w, spec),
    ]
    was = _was_invalid(view.status)
    if w.conflict is None and was == "InvalidSpec":
        w.event("Normal", "SpecValid", "the spec is valid again; scheduling resumed")
    elif w.conflict is None and was is not None:
        w.event("Normal", "SpecValid", f"no longer refused ({was}); scheduling resumed")
    if (
        view.calendar_problem is None
        and previous is not None
        and previous.reason in _CALENDAR_REASONS
        and ready.reason != previous.reason
    ):
        w.event("Normal", "CalendarFound", "the calendar can be read again; scheduling resumed")
    if done and not _was_completed(view.status):
        w.event("Normal", "Completed", _completed_message(spec))
    update = dict(w.fields)
    update.update(
        {
            "observedGeneration": view.generation,
            "conditions": conditions,
            "schedule": describe(spec),
            "nextScheduleTime": shown_next,
            "active": w.active,
            "activeCount": len(w.active),
            "pendingRetries": w.pending,
            "queued": w.queued,
            "runs": w.runs,
        }
    )
    status = TaskStatus.model_validate({**w.status.model_dump(), **update})
    return Decision(
        status=status,
        create=w.create,
        delete=w.delete,
        events=w.events,
        wake_at=min((t for t in (shown_next, w.recheck) if t is not None), default=None),
        late=[run for run, _ in w.late],
    )


_CALENDAR_REASONS = ("CalendarNotFound", "InvalidCalendar")


def _suspended(w: _Work, spec: TaskSpec) -> Condition:
    paused: PolicySuspension | None = w.get("suspendedByPolicy")
    if paused is not None:
        also = " (spec.suspend is true as well)" if spec.suspend else ""
        return _condition(w, "Suspended", True, paused.reason, paused.message + also)
    return _condition(w, "Suspended", spec.suspend, "Suspended" if spec.suspend else "Active")


def _previous(w: _Work, kind: str) -> Condition | None:
    return next((c for c in w.view.status.conditions if c.type == kind), None)


def _care_conditions(w: _Work, spec: TaskSpec) -> list[Condition]:
    """Late (with spec.deadline) and Notified (with spec.notify)."""
    out: list[Condition] = []
    late = _previous(w, "Late")
    if spec.deadline is not None:
        if w.late:
            run, doing = w.late[-1]
            limit = format_duration(spec.deadline)
            text = f"run {run} not Succeeded within {limit} of its slot ({doing})"
            out.append(_condition(w, "Late", True, "DeadlineExceeded", text))
        elif late is not None and late.status == "True" and not w.succeeded:
            out.append(late.model_copy(update={"observedGeneration": w.view.generation}))
        else:
            out.append(_condition(w, "Late", False, "OnTime"))
    if spec.notify:
        notified = _previous(w, "Notified")
        if w.undelivered:
            last = w.undelivered[-1]
            text = f"sink {last.sink}: {last.error}"
            out.append(_condition(w, "Notified", False, "DeliveryFailed", text))
            if notified is None or notified.reason != "DeliveryFailed":
                w.event("Warning", "NotificationFailed", f"delivery failed; will retry: {text}")
        elif w.delivered:
            out.append(_condition(w, "Notified", True, "Delivered"))
        elif notified is not None:
            out.append(notified.model_copy(update={"observedGeneration": w.view.generation}))
        else:
            out.append(_condition(w, "Notified", True, "AsExpected"))
    return out


def _running(w: _Work) -> Condition:
    if w.active and all(a.queued for a in w.active):
        # Every active Job is held by a queue (spec.suspend): active, but not running yet.
        reason = "Queued"
    else:
        reason = "JobActive" if w.active else ("RetryPending" if w.pending else "Idle")
    return _condition(w, "Running", bool(w.active), reason, ", ".join(a.job for a in w.active))


def _failing(w: _Work) -> Condition:
    failures: int = w.get("consecutiveFailures")
    return _condition(
        w,
        "Failing",
        failures > 0,
        "RunFailed" if failures else "AsExpected",
        f"{failures} run(s) failed in a row" if failures else "",
    )


def _completed_message(spec: TaskSpec) -> str:
    if spec.maxRuns:
        return f"maxRuns {spec.maxRuns} reached"
    if spec.at is not None:
        return "the one-shot run is done"
    return "no slot is left in the schedule's window"


_INVALID = ("InvalidSpec", *guard.REASONS)


def _was_invalid(status: TaskStatus) -> str | None:
    """The reason the task had no Jobs at all (InvalidSpec or a refusal), if it had none.
    A JobNameConflict clearing is not "valid again"."""
    return next(
        (
            c.reason
            for c in status.conditions
            if c.type == "Ready" and c.status == "False" and c.reason in _INVALID
        ),
        None,
    )


def _was_completed(status: TaskStatus) -> bool:
    return any(c.type == "Completed" and c.status == "True" for c in status.conditions)


def _names_job(event: Event, names: dict[str, Outcome]) -> bool:
    return any(f"(Job {name})" in event.message for name in names)


def settle(view: TaskView, decision: Decision, outcomes: list[Outcome], now: datetime) -> Decision:
    """Fold the results of the Job creations into the decision's status and Events."""
    adopted = {o.name: o for o in outcomes if o.result == "adopted"}
    if adopted:
        # The Job already existed (we created it before a restart): it did not start now.
        decision.events = [
            e for e in decision.events if not (e.starts_a_job and _names_job(e, adopted))
        ]
    failed = {o.name: o for o in outcomes if o.result in ("conflict", "error")}
    if not failed or view.spec is None:
        return decision
    spec = view.spec
    w = _Work(view, now)
    w.status = decision.status
    w.active = list(decision.status.active)
    w.pending = list(decision.status.pendingRetries)
    w.runs = list(decision.status.runs)
    w.notifications = list(decision.status.notifications)
    # A Job that could not be created did not start: drop its "started" Event.
    w.events = [
        e
        for e in decision.events
        if not (e.reason in ("RunStarted", "RetryStarted") and _names_job(e, failed))
    ]
    for active in list(w.active):
        outcome = failed.get(active.job)
        if outcome is None:
            continue
        w.active.remove(active)
        if outcome.result == "conflict":
            w.conflict = (
                f"Job {active.job} already exists and is not controlled by this task; "
                "Nightshift will not adopt or delete it"
            )
            w.event("Warning", "JobNameConflict", w.conflict)
            _finish(
                w,
                spec,
                run=active.run,
                attempt=active.attempt,
                job=None,
                result=RunResult.FAILED,
                scheduled_at=active.scheduledAt,
                started_at=None,
                finished_at=now,
                reason="JobNameConflict",
                message=w.conflict,
            )
        else:
            w.event("Warning", "JobCreateFailed", f"Job {active.job}: {outcome.message}")
            _finish(
                w,
                spec,
                run=active.run,
                attempt=active.attempt,
                job=None,
                result=RunResult.FAILED,
                scheduled_at=active.scheduledAt,
                started_at=None,
                finished_at=now,
                reason="JobCreateFailed",
                message=outcome.message,
            )
    _queue_notices(w, spec)
    _trim_history(w, spec)
    # Creations that failed change what is running and failing: recompute those conditions.
    replaced = {"Running": _running(w), "Failing": _failing(w), "Suspended": _suspended(w, spec)}
    if w.conflict:
        replaced["Ready"] = _condition(w, "Ready", False, "JobNameConflict", w.conflict)
    conditions = [replaced.get(c.type, c) for c in decision.status.conditions]
    pending_times = [p.notBefore for p in w.pending]
    wake = [t for t in [decision.wake_at, *pending_times] if t is not None]
    shown = [t for t in [decision.status.nextScheduleTime, *pending_times] if t is not None]
    status = TaskStatus.model_validate(
        {
            **decision.status.model_dump(),
            **w.fields,
            "conditions": conditions,
            "nextScheduleTime": min(shown, default=None),
            "active": w.active,
            "activeCount": len(w.active),
            "pendingRetries": w.pending,
            "runs": w.runs,
        }
    )
    return Decision(
        status=status,
        create=decision.create,
        delete=decision.delete + [d for d in w.delete if d not in decision.delete],
        events=w.events,
        wake_at=min([*wake, *([w.recheck] if w.recheck else [])], default=None),
        late=decision.late,
    )

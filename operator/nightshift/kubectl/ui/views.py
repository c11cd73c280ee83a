"""What the pages show of a task, read from its object: schedule, fires, results, spec summary.

The rules come from the core so the page agrees with the operator and the other commands: fire
times from ``schedule.next_fire_times`` (as ``kubectl nightshift next`` and ``nightshift
preview`` print them), the schedule summary from ``schedule.describe``, timestamps through
``models.read_time``. Everything here is pure and takes ``now`` as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nightshift.durations import format_duration
from nightshift.kubectl.render import ANNOTATION_SUSPEND_REASON
from nightshift.models import TaskSpec, parse_spec, read_time
from nightshift.schedule import Plan, describe, next_fire_times, plan_for

__all__ = [
    "STREAK",
    "EventRow",
    "StreakItem",
    "TaskView",
    "event_rows",
    "spec_summary",
    "streak",
    "task_view",
]

STREAK = 10  # runs in an overview streak


@dataclass(frozen=True, slots=True)
class StreakItem:
    """A finished run: its identity, the result of its last attempt, how many attempts it took."""

    run: str
    result: str
    attempts: int
    when: datetime | None


def streak(status: Mapping[str, Any], limit: int = STREAK) -> tuple[StreakItem, ...]:
    """The last ``limit`` finished runs, oldest first. A run's result is its last attempt's (a
    failure retried into a success is a success that took two attempts); a run with an attempt
    running or a retry waiting is not finished yet."""
    unfinished = {str(a.get("run")) for a in status.get("active") or []}
    unfinished |= {str(p.get("run")) for p in status.get("pendingRetries") or []}
    runs: dict[str, list[Mapping[str, Any]]] = {}
    for record in status.get("runs") or []:
        run = str(record.get("run"))
        if run not in unfinished:
            runs.setdefault(run, []).append(record)
    items = []
    for run, records in runs.items():
        last = max(records, key=lambda r: int(r.get("attempt") or 1))
        times = [
            read_time(r.get(key))
            for r in records
            for key in ("finishedAt", "startedAt", "scheduledAt")
        ]
        known = [t for t in times if t is not None]
        items.append(
            StreakItem(
                run,
                str(last.get("result") or "Unknown"),
                int(last.get("attempt") or 1),
                max(known) if known else None,
            )
        )
    earliest = datetime.min.replace(tzinfo=UTC)
    items.sort(key=lambda item: (item.when or earliest, item.run))
    return tuple(items[-limit:]) if limit > 0 else ()


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task as the pages show it."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    spec: TaskSpec | None  # None when the spec does not parse (see ``problem``)
    problem: str | None
    schedule: str
    zone: ZoneInfo | None
    suspended: bool
    suspend_reason: str | None
    active: int
    fires: tuple[datetime, ...]  # the next fire times, in order
    last_result: str | None
    failures: int
    streak: tuple[StreakItem, ...]
    status: Mapping[str, Any] = field(repr=False)
    plan: Plan | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def next_fire(self) -> datetime | None:
        """The next fire time, if any."""
        return self.fires[0] if self.fires else None

    def conditions(self) -> list[Mapping[str, Any]]:
        """The status conditions, as stored."""
        return list(self.status.get("conditions") or [])

    def fire_times(
        self, now: datetime, count: int, until: datetime | None = None
    ) -> tuple[datetime, ...]:
        """The next ``count`` fire times after ``now`` (none after ``until``), by the core's
        ``next_fire_times``: jitter, the startAt/endAt window and maxRuns included."""
        if self.plan is None or self.spec is None:
            return ()
        runs = int(self.status.get("runCount") or 0)
        found = next_fire_times(
            self.plan, now, count, max_runs=self.spec.maxRuns, runs_so_far=runs, until=until
        )
        return tuple(found)


def _ready_problem(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'NotReady'}: {condition.get('message') or ''}"
    return None


def task_view(obj: Mapping[str, Any], now: datetime, *, fires: int = 1) -> TaskView:
    """``obj`` (a ScheduledTask as the API returns it) for the pages, with its next ``fires``
    fire times after ``now``: the ones the operator will use (``schedule.next_fire_times``:
    jitter, window and maxRuns included)."""
    meta = obj.get("metadata") or {}
    raw_spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    spec: TaskSpec | None = None
    problem = _ready_problem(status)
    plan: Plan | None = None
    try:
        spec = parse_spec(raw_spec)
        plan = plan_for(spec, namespace, name)
    except ValueError as error:  # SpecError; or a zone or cron the plan cannot resolve
        spec, problem = None, f"invalid spec: {error}"
    schedule = describe(spec) if spec is not None else str(status.get("schedule") or "-")
    active = status.get("activeCount")
    annotations = meta.get("annotations") or {}
    view = TaskView(
        namespace=namespace,
        name=name,
        labels=dict(meta.get("labels") or {}),
        spec=spec,
        problem=problem,
        schedule=schedule,
        zone=plan.tz if plan is not None else None,
        suspended=bool(raw_spec.get("suspend", False)),
        suspend_reason=annotations.get(ANNOTATION_SUSPEND_REASON),
        active=int(active if active is not None else len(status.get("active") or [])),
        fires=(),
        last_result=status.get("lastResult"),
        failures=int(status.get("consecutiveFailures") or 0),
        streak=streak(status),
        status=status,
        plan=plan,
    )
    return replace(view, fires=view.fire_times(now, fires)) if fires else view


def _duration(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "-"


def spec_summary(spec: TaskSpec, status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The spec in a few lines of (label, value), as the task page lists it."""
    rows = [("Schedule", describe(spec)), ("Time zone", spec.timeZone)]
    if spec.anchor is not None:
        rows.append(("Anchor", spec.anchor.isoformat()))
    if spec.startAt is not None or spec.endAt is not None:
        start = spec.startAt.isoformat() if spec.startAt else "-"
        end = spec.endAt.isoformat() if spec.endAt else "-"
        rows.append(("Active window", f"{start} → {end}"))
    if spec.jitter:
        rows.append(("Jitter", _duration(spec.jitter)))
    rows.append(("Concurrency", str(spec.concurrencyPolicy)))
    deadline = spec.startingDeadlineSeconds
    rows.append(("Starting deadline", f"{deadline}s" if deadline else "none"))
    catch_up = str(spec.catchUp)
    if catch_up == "All":
        catch_up += f" (at most {spec.maxCatchUp})"
    rows.append(("Catch-up", catch_up))
    if spec.maxRuns:
        rows.append(("Runs", f"{int(status.get('runCount') or 0)} of at most {spec.maxRuns}"))
    rows.append(("Timeout per attempt", _duration(spec.timeout) if spec.timeout else "none"))
    retry = spec.retry
    if retry.maxRetries:
        backoff = retry.backoff
        text = (
            f"up to {retry.maxRetries}, back-off {_duration(backoff.initial)} x{backoff.factor:g}"
            f" up to {_duration(backoff.max)}"
        )
        if backoff.jitter:
            text += ", with jitter"
        if retry.onExitCodes is not None:
            text += f"; only on exit codes {', '.join(map(str, retry.onExitCodes))}"
        if retry.notOnExitCodes is not None:
            text += f"; not on exit codes {', '.join(map(str, retry.notOnExitCodes))}"
        rows.append(("Retries", text))
    else:
        rows.append(("Retries", "none"))
    rows.append(
        ("History kept", f"{spec.history.succeeded} succeeded, {spec.history.failed} failed")
    )
    pod = spec.jobTemplate.spec.template.get("spec") or {}
    for container in pod.get("containers") or []:
        if isinstance(container, Mapping):
            rows.append((f"Container {container.get('name')}", str(container.get("image"))))
    return rows


@dataclass(frozen=True, slots=True)
class EventRow:
    """One Event about the task, newest first in a list."""

    type: str
    reason: str
    message: str
    count: int
    last: datetime | None


def event_rows(events: Sequence[Mapping[str, Any]]) -> list[EventRow]:
    """The task's Events, newest first (by last occurrence)."""
    rows = []
    for event in events:
        meta = event.get("metadata") or {}
        series = event.get("series") or {}
        last = (
            read_time(series.get("lastObservedTime"))
            or read_time(event.get("lastTimestamp"))
            or read_time(event.get("eventTime"))
            or read_time(meta.get("creationTimestamp"))
        )
        count = int(event.get("count") or series.get("count") or 1)
        rows.append(
            EventRow(
                str(event.get("type") or "Normal"),
                str(event.get("reason") or ""),
                str(event.get("message") or ""),
                count,
                last,
            )
        )
    earliest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: row.last or earliest, reverse=True)
    return rows

"""The verbs of ``kubectl nightshift``: one function per command, and how ``logs`` picks a pod.

Each command takes the parsed arguments, a :class:`~nightshift.kubectl.session.Session` and the
two output streams, and returns the exit code. The rules they rely on are the core's: the run-now
token and Job names from ``nightshift.jobs``, the fire times from ``nightshift.schedule``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from nightshift.care import ANNOTATION_RESUME
from nightshift.durations import format_duration
from nightshift.jobs import (
    ANNOTATION_RUN_NOW,
    LABEL_TASK,
    job_name,
    manual_run_id,
    new_token,
    task_label_value,
    token_key,
)
from nightshift.kubectl.render import (
    ANNOTATION_SUSPEND_REASON,
    HISTORY_HEADERS,
    PLAN_HEADERS,
    RunProgress,
    attempt_line,
    backfill_rows,
    emit,
    fire_time_text,
    history_rows,
    list_table,
    one_line,
    plan_rows,
    progress_bar,
    progress_text,
    render_table,
    result_line,
    run_progress,
    status_text,
    status_view,
    task_row,
    terminal_safe,
)
from nightshift.kubectl.session import KIND_LOWER, RESOURCE, PluginError, Session
from nightshift.models import (
    API_VERSION,
    BACKFILL_KIND,
    GROUP,
    CalendarSpec,
    SpecError,
    format_time,
    parse_calendar,
    parse_spec,
    read_time,
)
from nightshift.schedule import next_fire_slots, plan_for, schedule_texts, sources

__all__ = [
    "ANNOTATION_SUSPEND_REASON",
    "Attempt",
    "LogSource",
    "RunRequest",
    "choose_container",
    "cmd_backfill",
    "cmd_history",
    "cmd_list",
    "cmd_logs",
    "cmd_next",
    "cmd_resume",
    "cmd_run",
    "cmd_status",
    "cmd_suspend",
    "controlled_by",
    "log_source",
    "newest_pod",
    "request_run",
    "select_attempt",
    "set_suspend",
    "utc_now",
]

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
POLL_SECONDS = 1.0


def utc_now() -> datetime:
    """The time the commands go by: the one place they read the clock (tests set it)."""
    return datetime.now(UTC)


def _ref(name: str) -> str:
    return f"{KIND_LOWER}.{GROUP}/{name}"


# --- run, suspend, resume -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run-now request that was made: its token, the run's identity and its first Job."""

    token: str
    run: str
    job: str
    replaced: str | None  # an earlier token the operator had not taken yet, now replaced
    suspended: bool  # the task is suspended (a run-now request still runs)


def request_run(session: Session, name: str, now: datetime) -> RunRequest:
    """Set a fresh run-now token on the task (a merge patch): the operator starts exactly one
    run per distinct token. Shared by ``run`` and the web UI's Run now."""
    task = session.get_task(name)
    previous = ((task.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
    replaced = None
    if previous and token_key(str(previous)) != (task.get("status") or {}).get("runNowToken"):
        # The operator acts on the annotation's latest value only.
        replaced = str(previous)
    token = new_token(now)
    run = manual_run_id(token)
    session.patch_task(name, {"metadata": {"annotations": {ANNOTATION_RUN_NOW: token}}})
    suspended = bool((task.get("spec") or {}).get("suspend"))
    return RunRequest(token, run, job_name(name, run, 1), replaced, suspended)


def cmd_run(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Request a run now; with --wait follow it to its result."""
    request = request_run(session, args.task, utc_now())
    if request.replaced:
        err.write(
            f"note: the previous run-now request ({request.replaced}) has not been picked up "
            "yet; this one replaces it\n"
        )
    token, run, job = request.token, request.run, request.job
    data: dict[str, Any] = {
        "task": args.task,
        "namespace": session.namespace,
        "token": token,
        "run": run,
        "job": job,
    }
    if args.output == "table":
        out.write(f"{_ref(args.task)}: run requested (token {token})\n")
        out.write(f"run {run}: first attempt is Job {job}\n")
        if request.suspended:
            err.write("note: the task is suspended; a run-now request still runs\n")
        out.flush()
    if not args.wait:
        if args.output != "table":
            emit(out, args.output, data, str)
        return 0
    progress = _wait_for_run(session, args.task, run, token, args.timeout, err)
    data["result"] = (progress.final or {}).get("result") or "Unknown"
    data["attempts"] = [dict(r) for r in progress.records]
    if args.output == "table":
        out.write(result_line(progress) + "\n")
    else:
        emit(out, args.output, data, str)
    return 0 if progress.succeeded else 1


def _wait_for_run(
    session: Session, task: str, run: str, token: str, timeout: timedelta, err: TextIO
) -> RunProgress:
    deadline = time.monotonic() + timeout.total_seconds()
    reported: set[int] = set()
    waiting: set[int] = set()
    while True:
        obj = session.get_task(task)
        progress = run_progress(obj.get("status") or {}, run, token)
        for record in progress.records:
            number = int(record.get("attempt") or 1)
            if number not in reported:
                reported.add(number)
                err.write(attempt_line(record) + "\n")
        for pending in progress.pending:
            number = int(pending.get("attempt") or 2)
            if number not in waiting:
                waiting.add(number)
                err.write(f"attempt {number}: retry not before {pending.get('notBefore')}\n")
        err.flush()
        if progress.done:
            return progress
        if progress.blocked:
            raise PluginError(f"run {run} cannot start: {progress.blocked}")
        if time.monotonic() >= deadline:
            limit = format_duration(timeout)
            if progress.acknowledged:
                raise PluginError(f"timed out after {limit}: run {run} is still in progress")
            current = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
            why = "is the operator running and watching this namespace?"
            if current != token:
                why = f"the {ANNOTATION_RUN_NOW} annotation now holds another request ({current})"
            raise PluginError(
                f"timed out after {limit}: the operator has not picked up run {run} ({why})"
            )
        time.sleep(POLL_SECONDS)


def set_suspend(session: Session, name: str, suspend: bool, reason: str | None) -> bool:
    """Merge-patch spec.suspend and the reason annotation (None removes it); True when the task
    was suspended before. Shared by ``suspend``, ``resume`` and the web UI."""
    task = session.get_task(name)
    was = bool((task.get("spec") or {}).get("suspend"))
    session.patch_task(
        name,
        {
            "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: reason}},
            "spec": {"suspend": suspend},
        },
    )
    return was


def cmd_suspend(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Set spec.suspend=true and the reason annotation."""
    # A suspend without --reason clears an older reason rather than leaving a stale one.
    already = set_suspend(session, args.task, True, args.reason if args.reason else None)
    note = " (was already suspended)" if already else ""
    out.write(f"{_ref(args.task)} suspended{note}\n")
    return 0


def cmd_resume(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Set spec.suspend=false and drop the reason annotation; for a task its failure policy
    suspended, also ask the operator to resume it, saying who asks and why."""
    task = session.get_task(args.task)
    paused = (task.get("status") or {}).get("suspendedByPolicy")
    was = bool((task.get("spec") or {}).get("suspend"))
    patch: dict[str, Any] = {
        "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: None}},
        "spec": {"suspend": False},
    }
    if paused or args.note:
        # The operator acts once on each distinct token (like run-now) and records who and why
        # in status.lastResume. Who is what the API server says we are.
        request = {"token": new_token(utc_now()), "by": session.whoami(), "note": args.note}
        patch["metadata"]["annotations"][ANNOTATION_RESUME] = json.dumps(request)
    session.patch_task(args.task, patch)
    if paused:
        why = one_line(paused.get("message"), 120)
        out.write(f"{_ref(args.task)} resumed (its failure policy had suspended it: {why})\n")
        if was:
            err.write("note: spec.suspend was true as well; it is false now\n")
        return 0
    note = "" if was else " (was not suspended)"
    out.write(f"{_ref(args.task)} resumed{note}\n")
    return 0


# --- next, history, list --------------------------------------------------------------------------


def cmd_next(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print the next fire times, in the task's zone and in UTC."""
    task = session.get_task(args.task)
    status = task.get("status") or {}
    try:
        spec = parse_spec(task.get("spec"))
    except SpecError as error:
        raise PluginError(f"{KIND_LOWER} {args.task!r} has an invalid spec: {error}") from None
    calendar = None
    if spec.calendarRef is not None:
        calendar, problem = _calendar(session, spec.calendarRef.name)
        if problem:
            err.write(f"note: {problem}; the operator runs no scheduled slot until it is fixed\n")
    plan = plan_for(spec, session.namespace, args.task, calendar=calendar)
    found = next_fire_slots(
        plan,
        utc_now(),
        args.count,
        max_runs=spec.maxRuns,
        runs_so_far=int(status.get("runCount") or 0),
    )
    paused = status.get("suspendedByPolicy")
    if spec.suspend:
        err.write("note: the task is suspended (spec.suspend); these times apply once resumed\n")
    if paused:
        err.write(
            f"note: its failure policy suspended the task at {paused.get('since')} "
            f"({one_line(paused.get('message'), 120)}); these times apply once "
            f"`kubectl nightshift resume {args.task}` resumes it\n"
        )
    rows = [[fire_time_text(t, plan.tz), fire_time_text(t, UTC)] for _, t in found]
    times: list[dict[str, Any]] = [{"local": local, "utc": utc} for local, utc in rows]
    header = [f"LOCAL ({spec.timeZone})", "UTC"]
    if spec.schedules is not None:
        # Several schedules: say which entries each time comes from (several when they share it).
        texts = schedule_texts(spec)
        header.append("SCHEDULES")
        for (slot, _), row, entry in zip(found, rows, times, strict=True):
            which = sources(plan, slot)
            entry["schedules"] = [texts[i] for i in which]
            row.append(" + ".join(f"[{i}] {texts[i]}" for i in which))
    # What the operator last wrote: the same function, at its last sync.
    shown = [read_time(v) for v in status.get("nextScheduleTimes") or []]
    current = (task.get("metadata") or {}).get("generation") == status.get("observedGeneration")
    upcoming = [t for t in shown if t is not None and t > utc_now()]
    computed = [t for _, t in found]
    if current and upcoming and computed and upcoming != computed[: len(upcoming)]:
        err.write(
            "note: the operator's status.nextScheduleTimes differ "
            f"({', '.join(fire_time_text(t, UTC) for t in upcoming)}); is it running?\n"
        )
    data = {
        "task": args.task,
        "namespace": session.namespace,
        "timeZone": spec.timeZone,
        "suspended": spec.suspend or bool(paused),
        "suspendedByPolicy": paused,
        "times": times,
        "statusTimes": status.get("nextScheduleTimes") or [],
    }
    if not found and args.output == "table":
        err.write(f"{KIND_LOWER} {args.task!r} has no upcoming fire times\n")
        return 0
    emit(out, args.output, data, lambda: render_table(header, rows))
    return 0


def _calendar(session: Session, name: str) -> tuple[CalendarSpec | None, str | None]:
    """The Calendar a task references, or why it cannot be used (as the operator says it)."""
    body = session.get_calendar(name)
    if body is None:
        return None, f'calendar "{name}" not found in namespace {session.namespace}'
    try:
        return parse_calendar(body.get("spec") or {}), None
    except SpecError as error:
        return None, f'calendar "{name}" is invalid: {error}'


def cmd_history(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print status.runs (and the attempts in flight) as a table, JSON or YAML, then the runs
    of the task's Backfills, each under its own heading."""
    task = session.get_task(args.task)
    status = task.get("status") or {}
    backfills = _backfills_of(session, args.task)
    data = {
        "task": args.task,
        "namespace": session.namespace,
        "active": status.get("active") or [],
        "pendingRetries": status.get("pendingRetries") or [],
        "queued": status.get("queued"),
        "runs": status.get("runs") or [],
        "backfills": [
            {
                "name": (b.get("metadata") or {}).get("name"),
                "reprocess": (b.get("spec") or {}).get("reprocess"),
                "phase": (b.get("status") or {}).get("phase"),
                "progress": (b.get("status") or {}).get("progress"),
                "runs": [
                    s
                    for s in (b.get("status") or {}).get("slots") or []
                    if s.get("state") not in ("Pending", "Skipped")
                ],
            }
            for b in backfills
        ],
    }
    if args.output == "table":
        now = utc_now()
        rows = history_rows(status, now)
        sections = [(b, backfill_rows(b.get("status") or {}, now)) for b in backfills]
        sections = [(b, r) for b, r in sections if r]
        if not rows and not sections:
            out.write("no runs yet\n")
            return 0
        out.write(render_table(HISTORY_HEADERS, rows) if rows else "no scheduled runs yet\n")
        for backfill, backfill_table in sections:
            spec = backfill.get("spec") or {}
            phase = (backfill.get("status") or {}).get("phase") or "Pending"
            progress = (backfill.get("status") or {}).get("progress") or "-"
            name = (backfill.get("metadata") or {}).get("name")
            out.write(
                f"\nbackfill {name} ({spec.get('from')} to {spec.get('to')}, reprocess "
                f"{spec.get('reprocess') or 'Missing'}): {phase}, {progress} slots\n"
            )
            out.write(render_table(HISTORY_HEADERS, backfill_table))
        return 0
    emit(out, args.output, data, str)
    return 0


def cmd_status(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print a task's state: conditions, next fire times, a suspension by its failure policy,
    the last resume and the notifications still owed."""
    view = status_view(session.get_task(args.task))
    emit(out, args.output, view, lambda: status_text(view))
    return 0


def _backfills_of(session: Session, task: str) -> list[dict[str, Any]]:
    found = [
        b
        for b in session.list_backfills()
        if ((b.get("spec") or {}).get("taskRef") or {}).get("name") == task
    ]
    return sorted(found, key=lambda b: str((b.get("metadata") or {}).get("creationTimestamp")))


# --- backfill -------------------------------------------------------------------------------------

_DONE = ("Succeeded", "Failed", "DryRun")


def cmd_backfill(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Create a Backfill of TASK's slots in [--from, --to); --dry-run prints its plan, --wait
    follows it with a progress bar and exits 0 only if every run succeeded."""
    session.get_task(args.task)  # a clear error for a task that does not exist
    start, end = args.start, args.end
    if start >= end:
        raise PluginError("--from must be before --to")
    metadata: dict[str, Any] = {"labels": {LABEL_TASK: task_label_value(args.task)}}
    if args.name:
        metadata["name"] = args.name
    else:
        metadata["generateName"] = f"{args.task[:50]}-"
    body = {
        "apiVersion": API_VERSION,
        "kind": BACKFILL_KIND,
        "metadata": metadata,
        "spec": {
            "taskRef": {"name": args.task},
            "from": format_time(start),
            "to": format_time(end),
            "reprocess": args.reprocess,
            "parallelism": args.parallelism,
            "overlapPolicy": args.overlap,
            "dryRun": args.dry_run,
        },
    }
    created = session.create_backfill(body)
    name = str((created.get("metadata") or {}).get("name"))
    if args.output == "table":
        what = "dry run" if args.dry_run else f"reprocess {args.reprocess}"
        out.write(
            f"backfill.{GROUP}/{name} created: {args.task} from {format_time(start)} to "
            f"{format_time(end)} ({what})\n"
        )
        out.flush()
    if not (args.wait or args.dry_run):
        if args.output != "table":
            emit(out, args.output, created, str)
        return 0
    final = _follow(session, name, args.timeout, err, bar=args.wait and not args.dry_run)
    status = final.get("status") or {}
    if args.output != "table":
        emit(out, args.output, final, str)
    elif args.dry_run and status.get("phase") == "DryRun":
        rows = plan_rows(status)
        out.write(render_table(PLAN_HEADERS, rows) if rows else "no slots in the range\n")
        if status.get("leftToSchedule"):
            out.write(
                f"{status['leftToSchedule']} later slot(s) in the range are the schedule's own\n"
            )
    else:
        out.write(f"backfill {name}: {status.get('phase')}, {progress_text(status)}\n")
    return 0 if status.get("phase") in ("Succeeded", "DryRun") else 1


def _follow(
    session: Session, name: str, timeout: timedelta, err: TextIO, *, bar: bool
) -> dict[str, Any]:
    """Poll the Backfill until it is done (or planned, for a dry run); a progress bar on
    ``err`` (redrawn in place on a terminal, a line per change otherwise)."""
    deadline = time.monotonic() + timeout.total_seconds()
    tty = err.isatty()
    shown = ""
    while True:
        obj = session.get_backfill(name)
        status = obj.get("status") or {}
        phase = status.get("phase")
        if bar and status.get("plannedAt"):
            line = progress_bar(status)
            if line != shown:
                err.write(("\r" + line) if tty else (line + "\n"))
                err.flush()
                shown = line
        problem = _waiting_for(status)
        if phase in _DONE:
            if tty and shown:
                err.write("\n")
            return obj
        if time.monotonic() >= deadline:
            if tty and shown:
                err.write("\n")
            why = f" ({problem})" if problem else ""
            raise PluginError(
                f"timed out after {format_duration(timeout)}: backfill {name} is "
                f"{phase or 'not planned yet'}{why}"
            )
        time.sleep(POLL_SECONDS)


def _waiting_for(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason"))
    return None


def cmd_list(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """List the tasks in the namespace or everywhere."""
    items = session.list_tasks(all_namespaces=args.all_namespaces)
    rows = sorted(
        (task_row(obj) for obj in items),
        key=lambda r: (str(r["namespace"]), str(r["name"])),
    )
    if not rows and args.output == "table":
        where = "any namespace" if args.all_namespaces else f'namespace "{session.namespace}"'
        err.write(f"No {RESOURCE} found in {where}.\n")
        return 0
    emit(out, args.output, rows, lambda: list_table(rows, all_namespaces=args.all_namespaces))
    return 0


# --- logs: which attempt, which pod, which container ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a run and its Job (None when no Job was created: Skipped, Missed)."""

    run: str
    attempt: int
    job: str | None
    result: str | None = None  # None while running
    started: datetime | None = None


def _attempts(status: Mapping[str, Any]) -> list[Attempt]:
    found = [
        Attempt(
            str(a.get("run")),
            int(a.get("attempt") or 1),
            a.get("job"),
            None,
            read_time(a.get("startedAt")),
        )
        for a in status.get("active") or []
    ]
    found += [
        Attempt(
            str(r.get("run")),
            int(r.get("attempt") or 1),
            r.get("job"),
            r.get("result"),
            read_time(r.get("startedAt")) or read_time(r.get("finishedAt")),
        )
        for r in status.get("runs") or []
    ]
    return found


def select_attempt(
    status: Mapping[str, Any], task: str, run: str | None = None, attempt: int | None = None
) -> Attempt:
    """The attempt ``logs`` shows: the newest by default; ``run`` is a run identity or Job name.

    A run no longer kept in status still has a deterministic Job name, so it is returned with the
    name computed from (task, run, attempt) and the caller finds out whether its pod exists.
    """
    candidates = _attempts(status)
    if run is None:
        if not candidates:
            raise PluginError(f'{KIND_LOWER} "{task}" has no runs yet')
        latest = datetime.max.replace(tzinfo=UTC)
        earliest = datetime.min.replace(tzinfo=UTC)
        # Newest start wins; a running attempt wins a tie (and counts as newest without a start).
        newest = max(
            candidates,
            key=lambda c: (
                c.started or (latest if c.result is None else earliest),
                c.result is None,
            ),
        )
        run = newest.run
    by_job = [c for c in candidates if c.job == run]
    if by_job:
        if attempt is not None and by_job[0].attempt != attempt:
            raise PluginError(f"Job {run} is attempt {by_job[0].attempt}, not {attempt}")
        chosen = by_job[0]
    else:
        same_run = [c for c in candidates if c.run == run]
        if not same_run:
            if run.startswith(f"{task}-") and attempt is None:
                return Attempt(run, 1, run)  # a Job name no longer in status
            return Attempt(run, attempt or 1, job_name(task, run, attempt or 1))
        if attempt is None:
            chosen = max(same_run, key=lambda c: c.attempt)
        else:
            matching = [c for c in same_run if c.attempt == attempt]
            if not matching:
                known = ", ".join(str(c.attempt) for c in sorted(same_run, key=lambda c: c.attempt))
                raise PluginError(f"run {run} has no attempt {attempt} in status (known: {known})")
            chosen = matching[0]
    if chosen.job is None:
        raise PluginError(
            f"run {chosen.run} attempt {chosen.attempt} was {chosen.result or 'not started'}: "
            "no Job was created, so there is no log"
        )
    return chosen


def choose_container(
    containers: Sequence[str],
    annotations: Mapping[str, str],
    requested: str | None,
    init_containers: Sequence[str] = (),
) -> tuple[str, str | None]:
    """The container whose log to read, and a note for stderr when it was defaulted.

    Like kubectl: the ``kubectl.kubernetes.io/default-container`` annotation, else the first.
    """
    if requested is not None:
        if requested not in [*containers, *init_containers]:
            known = ", ".join([*containers, *init_containers])
            raise PluginError(f"container {requested!r} is not in the pod (containers: {known})")
        return requested, None
    if not containers:
        raise PluginError("the pod has no containers")
    preferred = annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    name = preferred if preferred is not None and preferred in containers else containers[0]
    if len(containers) == 1:
        return name, None
    return name, f'Defaulted container "{name}" out of: {", ".join(containers)}'


def controlled_by(pod: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the object with ``uid`` is ``pod``'s controller (its controller ownerReference).

    A pod is looked up by its Job's name label, which anyone allowed to create pods in the
    namespace can copy, with a log of their own; the Job controller's pods also name the Job's
    uid as their controller."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return uid is not None and any(r.get("controller") and r.get("uid") == uid for r in refs)


def newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created pod (a Job with backoffLimit 0 normally has one)."""
    if not pods:
        return None
    return max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


@dataclass(frozen=True, slots=True)
class LogSource:
    """Whose log to read: the attempt, its pod and container (``note``: how it was defaulted)."""

    attempt: Attempt
    pod: str
    container: str
    note: str | None

    def describe(self) -> str:
        """``pod P (Job J, run R, attempt N)``."""
        a = self.attempt
        return f"pod {self.pod} (Job {a.job}, run {a.run}, attempt {a.attempt})"


def log_source(
    session: Session,
    task: Mapping[str, Any],
    name: str,
    run: str | None = None,
    attempt: int | None = None,
    container: str | None = None,
) -> LogSource:
    """The pod and container of one attempt of ``task`` (by default its newest): a pod with its
    Job's name label that the Job controls. Shared by ``logs`` and the web UI's last-run log."""
    chosen = select_attempt(task.get("status") or {}, name, run, attempt)
    assert chosen.job is not None
    uid = session.job_uid(chosen.job)
    pods = session.pods_of_job(chosen.job) if uid is not None else []
    pod = newest_pod([p for p in pods if controlled_by(p, uid)])
    if pod is None:
        raise PluginError(
            f"no pod found for Job {chosen.job} (run {chosen.run}, attempt {chosen.attempt}): "
            "it has not started yet, or the Job was pruned under spec.history"
        )
    meta = pod.get("metadata") or {}
    pod_spec = pod.get("spec") or {}
    names = [str(c.get("name")) for c in pod_spec.get("containers") or []]
    inits = [str(c.get("name")) for c in pod_spec.get("initContainers") or []]
    picked, note = choose_container(names, meta.get("annotations") or {}, container, inits)
    return LogSource(chosen, str(meta.get("name")), picked, note)


def cmd_logs(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print the pod log of one attempt's Job: without terminal control sequences, unless
    --raw asks for the bytes as the container wrote them (``out.unfiltered``, when ``main``
    wrapped the stream)."""
    task = session.get_task(args.task)
    source = log_source(session, task, args.task, args.run, args.attempt, args.container)
    if source.note:
        err.write(terminal_safe(source.note) + "\n")
    err.write(terminal_safe(source.describe()) + "\n")
    err.flush()
    text = session.pod_log(source.pod, source.container)
    if args.raw:
        getattr(out, "unfiltered", out).write(text)
    else:
        out.write(terminal_safe(text))
    return 0

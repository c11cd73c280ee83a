"""Runs that look after themselves: the pure rules of pausing, deadlines and notifications.

``reconcile.decide`` calls these with the time passed in: when repeated failures suspend a task
(``spec.failurePolicy``) and a resume request clears that, which scheduled runs are Late under
``spec.deadline``, and how notifications of changes of state are queued in status and folded
back in once the operator's notifier has tried to deliver them. None of it does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nightshift.jobs import PREFIX, token_key
from nightshift.models import (
    ActiveRun,
    Change,
    NotifySink,
    PendingNotification,
    PendingRetry,
    QueuedRun,
    RunRecord,
    RunResult,
)

__all__ = [
    "ANNOTATION_RESUME",
    "MAX_DELIVERIES",
    "MAX_PENDING",
    "Delivery",
    "Folded",
    "Judgement",
    "ResumeRequest",
    "delivery_backoff",
    "fold_deliveries",
    "judge_deadline",
    "notification_id",
    "queue_notification",
    "read_resume",
]

# `kubectl nightshift resume` sets it; each distinct token is acted on once (like run-now).
ANNOTATION_RESUME = PREFIX + "resume"
# A notification that failed this many deliveries is dropped (with a Warning Event): about an
# hour of back-off (5 s doubling to 10 min), so a receiver that is down for a deploy still gets it.
MAX_DELIVERIES = 12
# status.notifications holds at most this many; beyond that the oldest is dropped, so a receiver
# that is down for days cannot make the status unwritable.
MAX_PENDING = 20
_BACKOFF_FIRST = timedelta(seconds=5)
_BACKOFF_MAX = timedelta(minutes=10)
# Runs that did not succeed but whose slot another run took care of are never Late, nor are the
# slots a calendar or spec.exclude skipped (Excluded: they were never meant to run).
_EXCUSED = frozenset(
    {RunResult.SUCCEEDED, RunResult.SKIPPED, RunResult.REPLACED, RunResult.EXCLUDED}
)
_TEXT_LIMIT = 1024


def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- pause on failure -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """What a nightshift.dev/resume annotation asks: its token, and who says so and why."""

    token: str
    by: str | None = None
    note: str | None = None


def read_resume(value: str | None) -> ResumeRequest | None:
    """The resume request in the annotation: JSON ``{"token", "by", "note"}`` as the plugin
    writes it, or any other text, taken as a bare token (``kubectl annotate ... resume=1``)."""
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("token"), str) and data["token"]:
        by, note = data.get("by"), data.get("note")
        return ResumeRequest(
            token=token_key(data["token"]),
            by=_clip(by, 256) if isinstance(by, str) and by else None,
            note=_clip(note) if isinstance(note, str) and note else None,
        )
    return ResumeRequest(token=token_key(value))


# --- deadlines ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judgement:
    """Which runs became Late, where the judged cursor moves, and when to look again."""

    late: tuple[tuple[str, str], ...]  # (run, what it is doing), oldest slot first
    cursor: datetime | None
    wake: datetime | None


def judge_deadline(
    deadline: timedelta | None,
    cursor: datetime | None,
    *,
    fresh: bool,
    active: Sequence[ActiveRun],
    pending: Sequence[PendingRetry],
    runs: Sequence[RunRecord],
    now: datetime,
    queued: QueuedRun | None = None,
) -> Judgement:
    """The scheduled runs that have not Succeeded ``deadline`` after their slot, as of ``now``.

    A run is judged once its deadline has passed, whatever it is doing then: running, held by a
    queue such as Kueue (its Job suspended), waiting behind the active run under concurrencyPolicy
    Queue (``queued``, no Job yet), waiting for a retry, failed, timed out, cancelled, or Missed
    (it never started). A run whose slot another run took care of (Skipped, Replaced) is excused,
    and so is a slot the calendar or spec.exclude skipped (Excluded). ``cursor`` is the latest slot
    judged so far; ``fresh`` (a new or changed spec) moves it to ``now - deadline``, so that a
    deadline added later never reports the runs of the past. The cursor moves only when a run's
    deadline passes, so an idle sync does not rewrite the status. Manual runs have no slot and
    are never judged.
    """
    if deadline is None:
        return Judgement((), None, None)
    horizon = now - deadline  # a slot at or before it has had its whole deadline
    if cursor is None or fresh:
        cursor = horizon if cursor is None else max(cursor, horizon)
    slots: dict[str, datetime] = {}
    doing: dict[str, str] = {}
    excused: set[str] = set()
    for a in active:
        if a.scheduledAt is not None:
            slots[a.run] = a.scheduledAt
            doing.setdefault(a.run, "held by its queue (Kueue)" if a.queued else "still running")
    for p in pending:
        if p.scheduledAt is not None:
            slots[p.run] = p.scheduledAt
            doing.setdefault(p.run, f"waiting to retry (attempt {p.attempt})")
    if queued is not None and queued.scheduledAt is not None:
        slots[queued.run] = queued.scheduledAt
        doing.setdefault(queued.run, "queued behind the active run (concurrencyPolicy Queue)")
    for r in runs:
        if r.scheduledAt is None:
            continue
        slots.setdefault(r.run, r.scheduledAt)
        if r.result in _EXCUSED:
            excused.add(r.run)
        doing.setdefault(r.run, r.result.value)
    late: list[tuple[datetime, str]] = []
    judged = cursor
    wake: datetime | None = None
    for run, slot in slots.items():
        if slot <= cursor:
            continue
        if slot > horizon:
            if run not in excused:
                due = slot + deadline
                wake = due if wake is None else min(wake, due)
            continue
        judged = max(judged, slot)
        if run not in excused:
            late.append((slot, run))
    late.sort()
    return Judgement(tuple((run, doing[run]) for _, run in late), judged, wake)


# --- notifications --------------------------------------------------------------------------------


def notification_id(uid: str, run: str, attempt: int, change: Change) -> str:
    """The idempotency key of a notification (the CloudEvents ``id``): the same for every
    delivery attempt and every replica, different for every change of every run."""
    return f"{uid}/{run}/{attempt}/{change.value}"


def queue_notification(
    pending: list[PendingNotification],
    sinks: Iterable[NotifySink],
    *,
    uid: str,
    change: Change,
    run: str,
    attempt: int,
    at: datetime,
    message: str,
) -> PendingNotification | None:
    """Queue a notification for the sinks that want ``change``; returns the one it dropped to
    stay within MAX_PENDING, if any. The same change of the same run is queued once."""
    names = [s.name for s in sinks if s.wants(change)]
    key = notification_id(uid, run, attempt, change)
    if not names or any(p.id == key for p in pending):
        return None
    pending.append(
        PendingNotification(
            id=key, change=change, run=run, attempt=attempt, at=at, message=_clip(message),
            sinks=names,
        )
    )  # fmt: skip
    return pending.pop(0) if len(pending) > MAX_PENDING else None


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one delivery attempt of a notification to one sink."""

    id: str
    sink: str
    ok: bool
    at: datetime
    error: str = ""
    # Which attempt this was: the notification's failures when it was offered, plus one. Sinks
    # are tried together; their outcomes may reach status in different syncs, and a round of
    # attempts must count once, not once per sink.
    round: int = 1


def delivery_backoff(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th failed attempt: 5 s doubling, at most 10 min."""
    delay: timedelta = _BACKOFF_FIRST * 2 ** min(max(0, failures - 1), 16)
    return min(_BACKOFF_MAX, delay)


@dataclass(frozen=True, slots=True)
class Folded:
    """Pending notifications after the outcomes, and what to tell the user about them."""

    pending: list[PendingNotification]
    delivered: tuple[Delivery, ...]
    failed: tuple[Delivery, ...]
    dropped: tuple[PendingNotification, ...]


def fold_deliveries(
    pending: Sequence[PendingNotification],
    outcomes: Sequence[Delivery],
    sinks: Sequence[str],
) -> Folded:
    """Apply delivery outcomes: a sink that got a notification is struck off it; a failure
    counts and backs off; a notification delivered everywhere (or to no sink that still exists)
    is done; one that failed MAX_DELIVERIES times is dropped."""
    by_id: dict[str, list[Delivery]] = {}
    for outcome in outcomes:
        by_id.setdefault(outcome.id, []).append(outcome)
    kept: list[PendingNotification] = []
    delivered: list[Delivery] = []
    failed: list[Delivery] = []
    dropped: list[PendingNotification] = []
    for item in pending:
        mine = by_id.get(item.id, [])
        left = [s for s in item.sinks if s in sinks]
        update: dict[str, object] = {}
        for outcome in mine:
            if outcome.sink not in left:
                continue
            if outcome.ok:
                left.remove(outcome.sink)
                delivered.append(outcome)
            else:
                failed.append(outcome)
        failures = [o for o in mine if not o.ok and o.sink in left]
        if failures:
            count = max(item.failures, *(o.round for o in failures))
            last = max(failures, key=lambda o: o.at)
            update = {
                "failures": count,
                "notBefore": last.at + delivery_backoff(count),
                "lastError": _clip(f"{last.sink}: {last.error}"),
            }
            if count >= MAX_DELIVERIES:
                dropped.append(item.model_copy(update={**update, "sinks": left}))
                continue
        if not left:
            continue
        if left != item.sinks:
            update["sinks"] = left
        kept.append(item.model_copy(update=update) if update else item)
    return Folded(kept, tuple(delivered), tuple(failed), tuple(dropped))

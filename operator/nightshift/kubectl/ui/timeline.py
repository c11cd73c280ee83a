"""Where things go on the timeline: an axis in a chosen zone, attempts as bars, fires as marks.

The horizontal axis is elapsed time: x is the share of the window's duration, in percent, so the
page draws it at any width. Wall-clock labels come from the chosen zone, which is how DST days are
drawn truthfully: a spring-forward day is 23 hours wide and has no 02:00, a fall-back day is 25
hours wide and shows 01:00 twice (each with its abbreviation), and a schedule that follows
elapsed time shows 23 or 25 marks on it. Everything here is pure and takes ``now`` as an argument.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from nightshift.kubectl.render import format_run_duration, one_line
from nightshift.kubectl.ui.clock import local_text, short_text
from nightshift.models import read_time

__all__ = [
    "LANES",
    "MAX_MARKS",
    "MIN_WIDTH",
    "Axis",
    "Bar",
    "Day",
    "Link",
    "Mark",
    "Row",
    "Tick",
    "Window",
    "axis",
    "lay_out",
]

LANES = 3  # attempt 1 on the first lane, retries below it (a third retry shares the last lane)
MIN_WIDTH = 0.3  # percent: a one-second run in a two-day window is still visible
MAX_MARKS = 400  # future fires drawn per row; an every-minute schedule would draw thousands
_STEP = timedelta(minutes=15)  # every UTC offset in use is a multiple of 15 minutes
_MAX_LABELS = 16
_HOUR_STEPS = (1, 2, 3, 4, 6, 12)


@dataclass(frozen=True, slots=True)
class Window:
    """The span of time the timeline shows, as aware instants (``start`` < ``end``)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window needs aware datetimes")
        if self.end <= self.start:
            raise ValueError("a window must end after it starts")

    @classmethod
    def around(cls, now: datetime, back: timedelta, ahead: timedelta) -> Window:
        """From ``back`` before ``now`` to ``ahead`` after it."""
        return cls(now - back, now + ahead)

    def x(self, moment: datetime) -> float:
        """Where ``moment`` is, in percent of the width (outside 0-100 when outside)."""
        share = (moment - self.start) / (self.end - self.start)
        return round(share * 100, 4)

    def clip(self, moment: datetime) -> float:
        """:meth:`x`, kept inside the window."""
        return min(100.0, max(0.0, self.x(moment)))

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment <= self.end


# --- the axis -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """A labelled wall-clock hour (``03:00``; ``03:00 EDT`` where the offset just changed)."""

    x: float
    label: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Day:
    """One local date: where it starts and ends on the axis (clipped) and how long it really is."""

    x0: float
    x1: float
    day: date
    hours: float  # 23 on a spring-forward day, 25 on a fall-back day
    label: str
    start: datetime  # its first instant (UTC)


@dataclass(frozen=True, slots=True)
class Axis:
    """The ticks and days of a window in one zone, and where now is (None: outside)."""

    zone: ZoneInfo
    ticks: tuple[Tick, ...]
    days: tuple[Day, ...]
    now: float | None


def _steps(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """(UTC instant, local time) every 15 minutes of UTC from just before ``start`` to ``end``."""
    utc = start.astimezone(UTC)
    t = utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)
    while t <= end:
        yield t, t.astimezone(zone)
        t += _STEP


def _hour_step(window: Window) -> int | None:
    """Label every k-th hour so that at most ~16 labels show; None: label days only."""
    hours = (window.end - window.start) / timedelta(hours=1)
    for step in _HOUR_STEPS:
        if hours / step <= _MAX_LABELS:
            return step
    return None


def _day_label(day: date, hours: float) -> str:
    text = f"{day:%a} {day.day} {day:%b}"
    if abs(hours - 24) > 0.01:
        text += f" · {hours:g} h"
    return text


def axis(window: Window, zone: ZoneInfo, now: datetime) -> Axis:
    """The wall-clock ticks and local days of ``window`` in ``zone``.

    A day starts at the first instant of its local date (midnight, or the end of a DST gap that
    swallows midnight); its width is its real length, so DST days stand out.
    """
    step = _hour_step(window)
    ticks: list[Tick] = []
    # Days are found from a day before to a day after, so partly shown days know their length.
    starts: list[tuple[datetime, date]] = []
    previous: datetime | None = None
    last_offset: timedelta | None = None
    named = False  # the first label, and the first after an offset change, name the abbreviation
    for utc, local in _steps(
        window.start - timedelta(days=1), window.end + timedelta(days=1), zone
    ):
        if previous is None or local.date() != previous.date():
            starts.append((utc, local.date()))
        previous = local
        if utc not in window or local.minute != 0:
            continue
        offset = local.utcoffset()
        if offset != last_offset:
            named = False
        last_offset = offset
        if step is None or local.hour % step != 0:
            continue
        label = f"{local:%H:%M}"
        if not named:
            label += f" {local.tzname() or ''}".rstrip()
            named = True
        ticks.append(Tick(window.x(utc), label, utc))
    # The first entry may be a day cut off by the scan's start: its length is unknown.
    starts = starts[1:]
    days: list[Day] = []
    for (begin, day), (finish, _) in pairwise(starts):
        if finish <= window.start or begin >= window.end:
            continue
        hours = (finish - begin) / timedelta(hours=1)
        label = _day_label(day, hours)
        days.append(Day(window.clip(begin), window.clip(finish), day, hours, label, begin))
    if step is None and len(days) > _MAX_LABELS:
        every = -(-len(days) // _MAX_LABELS)
        days = [d if i % every == 0 else _unlabelled(d) for i, d in enumerate(days)]
    return Axis(zone, tuple(ticks), tuple(days), window.x(now) if now in window else None)


def _unlabelled(day: Day) -> Day:
    return Day(day.x0, day.x1, day.day, day.hours, "", day.start)


# --- a task's row ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt that ran: from its start to its end (or to now while it runs)."""

    x: float
    width: float
    lane: int
    result: str  # Succeeded, Failed, TimedOut, ... or Running
    run: str
    attempt: int
    title: str


@dataclass(frozen=True, slots=True)
class Mark:
    """An instant: a future fire, a retry waiting for its back-off, a slot skipped or missed."""

    x: float
    kind: str  # fire, retry, Skipped, Missed, ... (a result without a Job)
    title: str


@dataclass(frozen=True, slots=True)
class Link:
    """A retry's connector: from the end of one attempt to the start of the next."""

    x0: float
    x1: float
    lane0: int
    lane1: int


@dataclass(frozen=True, slots=True)
class Row:
    """Everything drawn on one task's row; ``hidden`` counts fires left out past MAX_MARKS."""

    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]
    links: tuple[Link, ...]
    hidden: int = 0


def _lane(attempt: int) -> int:
    return min(max(attempt, 1) - 1, LANES - 1)


def _attempt_title(record: Mapping[str, Any], result: str, zone: ZoneInfo) -> str:
    started, finished = read_time(record.get("startedAt")), read_time(record.get("finishedAt"))
    head = result
    if record.get("exitCode") is not None:
        head += f" (exit {record['exitCode']})"
    parts = [head, f"run {record.get('run')}", f"attempt {record.get('attempt') or 1}"]
    if started is not None:
        span = local_text(started, zone)
        if finished is not None:
            span += f" → {local_text(finished, zone)}"
            span += f" ({format_run_duration(record.get('startedAt'), record.get('finishedAt'))})"
        parts.append(span)
    detail = record.get("message") or (record.get("reason") if result != "Succeeded" else None)
    if detail:
        parts.append(one_line(detail, 200))
    return " · ".join(parts)


def lay_out(
    status: Mapping[str, Any],
    fires: Sequence[datetime],
    window: Window,
    now: datetime,
    zone: ZoneInfo,
    *,
    suspended: bool = False,
) -> Row:
    """One task's row: its attempts from status (running ones up to ``now``) as bars, on a lane
    by attempt number, joined run by run; its skipped and missed slots, waiting retries and
    upcoming ``fires`` as marks. Only what falls in ``window`` is kept."""
    bars: list[Bar] = []
    marks: list[Mark] = []
    spans: dict[str, list[tuple[int, datetime, datetime]]] = {}
    records: list[tuple[Mapping[str, Any], str, datetime | None]] = [
        (r, str(r.get("result") or "Unknown"), read_time(r.get("finishedAt")))
        for r in status.get("runs") or []
    ]
    records += [(a, "Running", None) for a in status.get("active") or []]
    for record, result, finished in records:
        run, attempt = str(record.get("run")), int(record.get("attempt") or 1)
        started = read_time(record.get("startedAt"))
        if started is None or (result != "Running" and not record.get("job")):
            # No Job ran (Skipped, Missed): a mark at the slot.
            when = read_time(record.get("scheduledAt")) or finished
            if when is not None and when in window:
                marks.append(Mark(window.x(when), result, _attempt_title(record, result, zone)))
            continue
        end = now if result == "Running" else (finished or started)
        end = max(end, started)
        if end < window.start or started > window.end:
            continue
        x0, x1 = window.clip(started), window.clip(end)
        title = _attempt_title(record, result, zone)
        bars.append(Bar(x0, max(x1 - x0, MIN_WIDTH), _lane(attempt), result, run, attempt, title))
        spans.setdefault(run, []).append((attempt, started, end))
    links: list[Link] = []
    for attempts in spans.values():
        attempts.sort()
        for (a, _, end), (b, start, _) in pairwise(attempts):
            if b == a + 1:
                links.append(Link(window.clip(end), window.clip(start), _lane(a), _lane(b)))
    for pending in status.get("pendingRetries") or []:
        when = read_time(pending.get("notBefore"))
        if when is not None and when in window:
            title = (
                f"retry: run {pending.get('run')} attempt {pending.get('attempt')} "
                f"not before {local_text(when, zone)}"
            )
            marks.append(Mark(window.x(when), "retry", title))
    shown = [t for t in fires if t in window]
    note = " (suspended: fires once resumed)" if suspended else ""
    for moment in shown[:MAX_MARKS]:
        marks.append(Mark(window.x(moment), "fire", f"fires {short_text(moment, zone)}{note}"))
    bars.sort(key=lambda b: (b.x, b.lane))
    marks.sort(key=lambda m: m.x)
    return Row(tuple(bars), tuple(marks), tuple(links), max(0, len(shown) - MAX_MARKS))

"""When a task runs: slots for cron, several-cron, interval and one-shot specs, with window,
jitter and catch-up.

A *slot* is the instant a run is due before jitter (aware UTC datetime); it names the run and its
Jobs. The *fire time* is the slot plus the task's deterministic jitter: when the operator starts the
run, and what ``kubectl nightshift next`` and ``nightshift preview`` print. All functions are pure
and take the current time as an argument.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from nightshift.cron import CronExpr, NeverFiresError, next_cron_fire, parse_cron
from nightshift.durations import format_duration
from nightshift.exclusions import Exclusions, exclusions_for
from nightshift.models import CalendarSpec, TaskSpec, format_time
from nightshift.timezones import load_zone

__all__ = [
    "EPOCH",
    "Plan",
    "describe",
    "fire_time",
    "format_fire_time",
    "iter_slots",
    "jitter_for",
    "latest_slot",
    "next_fire_times",
    "next_slot",
    "plan_for",
    "schedule_texts",
    "slots_between",
    "sources",
    "without_exclusions",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
_TICK = timedelta(microseconds=1)
# Steps (an excluded day, range, hour or run of minutes, or an excluded slot) next_slot takes over
# excluded time before it gives up: years of excluded days, more than any holiday list holds.
_EXCLUSION_STEPS = 2000
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
# A cron search looks up to ~29 years ahead (nightshift.cron): starting this close to the end of
# the calendar it may run past year 9999.
_CALENDAR_END_YEARS = 30


@dataclass(frozen=True, slots=True)
class Plan:
    """The schedule part of a spec, resolved: parsed cron, loaded zone, UTC instants."""

    kind: Literal["schedule", "interval", "at", "schedules"]
    tz: ZoneInfo
    cron: CronExpr | None = None
    interval: timedelta | None = None
    anchor: datetime = EPOCH
    at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter: timedelta = timedelta(0)
    seed: str = ""
    # spec.schedules: each entry's cron in its own zone; the slots are the union.
    entries: tuple[tuple[CronExpr, ZoneInfo], ...] = ()
    # The calendar's and spec.exclude's rules: slots they match are not slots of the plan.
    exclusions: Exclusions | None = None


def plan_for(
    spec: TaskSpec,
    namespace: str,
    name: str,
    *,
    calendar: CalendarSpec | None = None,
    calendar_name: str = "",
) -> Plan:
    """Resolve a validated spec for the task ``namespace/name`` (the seed for H and jitter),
    with the exclusions of ``calendar`` (the one spec.calendarRef names) and spec.exclude."""
    seed = f"{namespace}/{name}"
    return Plan(
        kind=spec.kind,
        tz=load_zone(spec.timeZone),
        cron=parse_cron(spec.schedule, seed=seed) if spec.schedule is not None else None,
        interval=spec.interval,
        anchor=spec.anchor.astimezone(UTC) if spec.anchor else EPOCH,
        at=spec.at.astimezone(UTC) if spec.at else None,
        start_at=spec.startAt.astimezone(UTC) if spec.startAt else None,
        end_at=spec.endAt.astimezone(UTC) if spec.endAt else None,
        jitter=spec.jitter or timedelta(0),
        seed=seed,
        entries=tuple(
            (parse_cron(entry.cron, seed=seed), load_zone(entry.timeZone or spec.timeZone))
            for entry in spec.schedules or ()
        ),
        exclusions=exclusions_for(
            own=spec.exclude or (),
            own_zone=spec.timeZone,
            calendar=calendar.exclude if calendar is not None else (),
            calendar_zone=calendar.timeZone if calendar is not None else "UTC",
            calendar_name=calendar_name or (spec.calendarRef.name if spec.calendarRef else ""),
            seed=seed,
        ),
    )


def without_exclusions(plan: Plan) -> Plan:
    """The plan's bare schedule: every slot, also those its exclusions skip."""
    return replace(plan, exclusions=None) if plan.exclusions is not None else plan


def _next_cron(cron: CronExpr, tz: ZoneInfo, after: datetime) -> datetime | None:
    try:
        return next_cron_fire(cron, tz, after)
    except NeverFiresError:
        return None
    except (OverflowError, ValueError):
        # The search for the next match ran off the end of the calendar ("year 10000 is out
        # of range"); anywhere else these are bugs and must surface.
        if after.year < MAXYEAR - _CALENDAR_END_YEARS:
            raise
        return None


def _raw_next(plan: Plan, after: datetime) -> datetime | None:
    """The next slot of the bare schedule (ignoring the window) strictly after ``after``, or None
    when there is none, also when it would lie beyond the calendar's end (9999-12-31)."""
    if plan.kind == "schedule":
        assert plan.cron is not None
        return _next_cron(plan.cron, plan.tz, after)
    if plan.kind == "schedules":
        # The union: the earliest next slot of any entry. An instant two entries share is one
        # slot (one run, one Job name), because it is returned once and the search moves past it.
        found = [_next_cron(cron, tz, after) for cron, tz in plan.entries]
        return min((t for t in found if t is not None), default=None)
    if plan.kind == "interval":
        assert plan.interval is not None
        step = plan.interval
        elapsed = after - plan.anchor
        count = elapsed // step  # floor division of timedeltas: whole intervals so far
        # anchor + count*step <= after < anchor + (count+1)*step, also before the anchor.
        offset = (count + 1) * step
        if offset > _LAST_INSTANT - plan.anchor:
            return None
        return plan.anchor + offset
    assert plan.at is not None
    return plan.at if plan.at > after else None


def next_slot(plan: Plan, after: datetime) -> datetime | None:
    """The first slot strictly after ``after`` inside the active window and not excluded (by the
    calendar or spec.exclude), or None if none is left."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    slot = _windowed_next(plan, after.astimezone(UTC))
    if plan.exclusions is None:
        return slot
    budget = _EXCLUSION_STEPS
    while budget > 0:
        if slot is None:
            return None
        end, taken = plan.exclusions.walk(slot, budget)
        if end is None:
            return slot
        budget -= max(taken, 1)
        # Every slot before ``end`` is excluded: search on from there.
        slot = _windowed_next(plan, end - _TICK)
    # Excluded for as far as the search goes (a calendar that excludes everything): no slot is
    # known to come, though the bare schedule goes on (see reconcile: the task is not Completed).
    return None


def _windowed_next(plan: Plan, after: datetime) -> datetime | None:
    if plan.start_at is not None and after < plan.start_at:
        # Slots at startAt itself count: search from just before it.
        after = plan.start_at - timedelta(microseconds=1)
    slot = _raw_next(plan, after)
    if slot is None or (plan.end_at is not None and slot >= plan.end_at):
        return None
    return slot


def iter_slots(plan: Plan, after: datetime) -> Iterator[datetime]:
    """Successive slots strictly after ``after``."""
    current = after
    while (slot := next_slot(plan, current)) is not None:
        yield slot
        current = slot


def slots_between(plan: Plan, after: datetime, until: datetime, *, limit: int) -> list[datetime]:
    """The latest ``limit`` slots in (after, until], oldest first.

    Cost is bounded by the number of slots in a window that grows backwards from ``until``, so an
    operator that was down for a year does not walk a year of per-minute slots.
    """
    if limit <= 0 or until <= after:
        return []
    window = _initial_window(plan)
    while True:
        # Compare spans rather than computing ``until - window`` first: that would step below
        # datetime.min for a slot in the first centuries (an ``at`` in year 1).
        lo = after if window >= until - after else until - window
        found: deque[datetime] = deque(maxlen=limit)
        for slot in iter_slots(plan, lo):
            if slot > until:
                break
            found.append(slot)
        if len(found) >= limit or lo == after:
            return list(found)
        window *= 2


def _initial_window(plan: Plan) -> timedelta:
    if plan.kind == "interval" and plan.interval is not None:
        return plan.interval * 4
    return timedelta(hours=2)


def latest_slot(plan: Plan, until: datetime, *, after: datetime) -> datetime | None:
    """The most recent slot in (after, until], or None."""
    found = slots_between(plan, after, until, limit=1)
    return found[-1] if found else None


def jitter_for(plan: Plan, slot: datetime) -> timedelta:
    """The deterministic delay for ``slot``: the same on every replica and after every restart."""
    if plan.jitter <= timedelta(0):
        return timedelta(0)
    digest = hashlib.sha256(f"{plan.seed}|{slot.astimezone(UTC).isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(milliseconds=int(plan.jitter.total_seconds() * 1000 * fraction))


def fire_time(plan: Plan, slot: datetime) -> datetime:
    """When the run for ``slot`` should start: the slot plus its jitter (a slot at the very end of
    the calendar, such as ``at: 9999-12-31T23:59:59Z``, fires at its last instant instead of
    overflowing)."""
    delay = jitter_for(plan, slot)
    if _LAST_INSTANT - slot <= delay:
        return _LAST_INSTANT
    return slot + delay


def next_fire_times(
    plan: Plan,
    after: datetime,
    count: int,
    *,
    max_runs: int = 0,
    runs_so_far: int = 0,
    until: datetime | None = None,
) -> list[datetime]:
    """The next ``count`` instants strictly after ``after`` at which the operator starts a
    scheduled run, in slot order (and, with ``until``, none after it).

    They are what the operator will really use: each slot plus its jitter (so a slot just before
    ``after`` whose jitter has not passed yet is still ahead), inside the startAt/endAt window, and
    no more than ``max_runs`` (0: unlimited) leaves after the ``runs_so_far`` already started.
    """
    found = next_fire_slots(
        plan, after, count, max_runs=max_runs, runs_so_far=runs_so_far, until=until
    )
    return [moment for _, moment in found]


def next_fire_slots(
    plan: Plan,
    after: datetime,
    count: int,
    *,
    max_runs: int = 0,
    runs_so_far: int = 0,
    until: datetime | None = None,
) -> list[tuple[datetime, datetime]]:
    """:func:`next_fire_times` with the slot each fire time belongs to: (slot, fire time) pairs."""
    if max_runs:
        count = min(count, max(0, max_runs - runs_so_far))
    found: list[tuple[datetime, datetime]] = []
    if count <= 0:
        return found
    # Comparing spans rather than subtracting first keeps a start in year 1 from underflowing.
    lookback = min(plan.jitter, after - _FIRST_INSTANT)
    for slot in iter_slots(plan, after - lookback):
        if until is not None and slot > until:
            break  # a later slot's fire time is later still (jitter only delays)
        moment = fire_time(plan, slot)
        if moment <= after:
            continue
        if until is not None and moment > until:
            continue  # this slot's jitter passes ``until``; the next slot may still be inside
        found.append((slot, moment))
        if len(found) >= count:
            break
    return found


def format_fire_time(moment: datetime, zone: tzinfo) -> str:
    """RFC 3339 in ``zone``: to the second, or to the millisecond when jitter added a fraction."""
    local = moment.astimezone(zone)
    return local.isoformat(timespec="seconds" if local.microsecond == 0 else "milliseconds")


def sources(plan: Plan, slot: datetime) -> tuple[int, ...]:
    """For spec.schedules: the indexes of the entries that have ``slot`` as a slot (several when
    they share it). Empty for the other kinds."""
    before = slot - _TICK
    return tuple(
        i for i, (cron, tz) in enumerate(plan.entries) if _next_cron(cron, tz, before) == slot
    )


def schedule_texts(spec: TaskSpec) -> list[str]:
    """Each entry of spec.schedules as text: its cron, and its zone unless every zone is UTC."""
    texts = []
    for entry in spec.schedules or ():
        zone = entry.timeZone or spec.timeZone
        plain = zone == "UTC" and spec.timeZone == "UTC"
        texts.append(entry.cron if plain else f"{entry.cron} ({zone})")
    return texts


# status.schedule's bound (models.TaskStatus.schedule).
_SUMMARY_LIMIT = 300


def describe(spec: TaskSpec) -> str:
    """A one-line summary for the SCHEDULE column: ``0 3 * * * (Europe/Zurich)``, ``every 6h``,
    ``0 9 * * 1-5 (America/New_York); 0 12 * * SAT`` for several schedules."""
    if spec.schedules is not None:
        text = "; ".join(schedule_texts(spec))
        if len(text) > _SUMMARY_LIMIT:
            tail = f"… ({len(spec.schedules)} schedules)"
            text = text[: _SUMMARY_LIMIT - len(tail)].rstrip() + tail
        return text
    if spec.schedule is not None:
        text = spec.schedule
        if spec.timeZone != "UTC":
            text += f" ({spec.timeZone})"
        return text
    if spec.interval is not None:
        return f"every {format_duration(spec.interval)}"
    assert spec.at is not None
    return f"at {format_time(spec.at)}"

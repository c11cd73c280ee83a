"""Calendar arithmetic: which slots a Calendar or a task's ``spec.exclude`` skips, and how far.

A rule excludes a slot by the slot's local wall time in the rule's zone: a ``date`` or a range of
dates (``start``..``end``, both included) by its local date, a ``cron`` expression by its local
wall time to the minute. Mapping an instant to a wall time is a function, so DST needs no special
case here: a repeated hour is excluded twice if it matches, a skipped hour has no slots to exclude.

Searching for the next slot that is *not* excluded must not walk an excluded weekend one minute at
a time, so :meth:`Exclusions.skip` returns the end of the whole excluded block a slot falls into:
the first instant after it whose wall time no rule matches, found a day, an hour or a run of
minutes at a time (and never past an offset change, where wall time jumps). Pure: no clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from nightshift.cron import CronExpr, next_transition, parse_cron
from nightshift.models import Exclusion
from nightshift.timezones import load_zone

__all__ = ["Exclusions", "Rule", "exclusions_for"]

_TICK = timedelta(microseconds=1)
_DAY = timedelta(days=1)
# A block of adjacent rules is walked at most this many steps (days, hours or minute runs) per
# call: an exclusion that never ends (cron "* * * * *") stops there instead of looping.
_STEPS = 5000


@dataclass(frozen=True, slots=True)
class Rule:
    """One exclusion, resolved: its zone loaded, its cron parsed, and where it comes from."""

    kind: Literal["date", "range", "cron"]
    tz: ZoneInfo
    first: date | None = None
    last: date | None = None
    cron: CronExpr | None = None
    origin: str = ""  # "calendar holidays" or "spec.exclude[0]"
    text: str = ""  # the rule as the user wrote it, and its zone

    def matches(self, wall: datetime) -> bool:
        """Whether this rule excludes a slot with local wall time ``wall``."""
        if self.kind != "cron":
            assert self.first is not None
            assert self.last is not None
            return self.first <= wall.date() <= self.last
        assert self.cron is not None
        c = self.cron
        return (
            wall.month in c.months
            and c.day_matches(wall.date())
            and wall.hour in c.hours
            and wall.minute in c.minutes
        )

    def span(self, wall: datetime) -> timedelta:
        """How long, in wall time, the rule keeps matching from ``wall`` (which it matches).

        Wall time and elapsed time agree until the next offset change, which the caller caps at.
        """
        midnight = datetime.combine(wall.date(), datetime.min.time())
        if self.kind != "cron":
            assert self.last is not None
            return datetime.combine(self.last + _DAY, datetime.min.time()) - wall
        assert self.cron is not None
        c = self.cron
        if len(c.minutes) == 60 and len(c.hours) == 24:
            return midnight + _DAY - wall  # the rest of the (matching) day
        hour = midnight + timedelta(hours=wall.hour)
        if len(c.minutes) == 60:
            return hour + timedelta(hours=1) - wall  # the rest of the (matching) hour
        # The run of consecutive matching minutes this one belongs to.
        end = wall.minute + 1
        i = bisect.bisect_right(c.minutes, wall.minute)
        while i < len(c.minutes) and c.minutes[i] == end:
            end += 1
            i += 1
        return hour + timedelta(minutes=end) - wall

    def describe(self) -> str:
        """``calendar holidays: Christmas (2026-12-25, Europe/Zurich)``."""
        return f"{self.origin}: {self.text}"


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Exclusions:
    """The rules a task's slots are checked against (its calendar's and its own)."""

    rules: tuple[Rule, ...]

    def match(self, slot: datetime) -> Rule | None:
        """The first rule that excludes ``slot``, or None when it runs."""
        for rule in self.rules:
            if rule.matches(_wall(slot, rule.tz)):
                return rule
        return None

    def skip(self, slot: datetime) -> datetime | None:
        """None when ``slot`` is not excluded; else the end of its excluded block: the first
        instant after it that no rule excludes (the next slot at or after it may run).

        Gives up after a bounded walk and returns where it got to (still excluded), so a rule
        that excludes everything costs a bounded amount per call.
        """
        return self.walk(slot, _STEPS)[0]

    def walk(self, slot: datetime, steps: int) -> tuple[datetime | None, int]:
        """:meth:`skip` in at most ``steps`` steps; also returns how many it took."""
        t = slot.astimezone(UTC)
        moved = False
        for taken in range(steps):
            rule = self.match(t)
            if rule is None:
                return (t if moved else None), taken
            wall = _wall(t, rule.tz)
            step = rule.span(wall)
            end = t + step
            boundary = next_transition(rule.tz, t.replace(tzinfo=None))
            if boundary is not None and boundary.replace(tzinfo=UTC) < end:
                end = boundary.replace(tzinfo=UTC)  # wall time jumps there: look again
            t = max(end, t + _TICK)
            moved = True
        return t, steps


def _text(rule: Exclusion, zone: str) -> str:
    if rule.date is not None:
        what = rule.date.isoformat()
    elif rule.start is not None and rule.end is not None:
        what = f"{rule.start.isoformat()}..{rule.end.isoformat()}"
    else:
        what = f"cron {rule.cron}"
    if rule.reason:
        return f"{rule.reason} ({what}, {zone})"
    return f"{what} ({zone})"


def _resolve(rule: Exclusion, zone: str, origin: str, seed: str) -> Rule:
    zone = rule.timeZone or zone
    tz = load_zone(zone)
    text = _text(rule, zone)
    if rule.cron is not None:
        return Rule("cron", tz, cron=parse_cron(rule.cron, seed=seed), origin=origin, text=text)
    if rule.date is not None:
        return Rule("date", tz, first=rule.date, last=rule.date, origin=origin, text=text)
    return Rule("range", tz, first=rule.start, last=rule.end, origin=origin, text=text)


def exclusions_for(
    *,
    own: Sequence[Exclusion] = (),
    own_zone: str = "UTC",
    calendar: Sequence[Exclusion] = (),
    calendar_zone: str = "UTC",
    calendar_name: str = "",
    seed: str = "",
) -> Exclusions | None:
    """The task's exclusions: its calendar's rules (in the calendar's zone unless a rule names
    one) and its own ``spec.exclude`` (in the task's zone); None when there are none.

    ``seed`` hashes ``H`` in cron rules like the task's own schedule does.
    """
    rules = [_resolve(rule, calendar_zone, f"calendar {calendar_name}", seed) for rule in calendar]
    rules += [_resolve(rule, own_zone, f"spec.exclude[{i}]", seed) for i, rule in enumerate(own)]
    return Exclusions(tuple(rules)) if rules else None

"""Cron expressions (5 fields, names, macros, Jenkins ``H``) and their DST-correct fire times.

croniter parses the fields (names, ranges, steps, lists and ``H`` hashing); this module owns the
iteration and, above all, the daylight-saving rule, because croniter is known to fire twice around
fall-back transitions. The rule is ISC cron's (docs/architecture.md#time-zones-and-dst):

* A schedule whose hour field names fixed hours (``0 3 * * *``, ``30 1,13 * * *``, ``H 2 * * *``)
  fires once per matching local wall time and local date. A wall time skipped by spring-forward
  fires at the transition instant; a wall time repeated by fall-back fires at its first occurrence.
* A schedule whose hour field is a wildcard or a step (``0 * * * *``, ``*/5 */2 * * *``) follows
  elapsed time: it fires at every instant whose local wall time matches, so an hourly schedule fires
  23 times on a spring-forward day and 25 times on a fall-back day.

Everything here is pure: the time is always an argument, results are UTC datetimes.
"""

from __future__ import annotations

import bisect
import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterError

__all__ = [
    "MACROS",
    "CronError",
    "CronExpr",
    "NeverFiresError",
    "next_cron_fire",
    "next_wall_match",
    "parse_cron",
]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FULL = (range(60), range(24), range(1, 32), range(1, 13), range(7))
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAME_VALUES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {name: i + 1 for i, name in enumerate(_MONTHS)},
    {name: i for i, name in enumerate(_WEEKDAYS)},
)
_RANGE = re.compile(r"([0-9A-Za-z]+)-([0-9A-Za-z]+)(?:/0*[1-9][0-9]*)?")
# A schedule that matches no wall time in this many years never will: the Gregorian calendar's
# weekday/leap-year pattern repeats every 400 years, but any satisfiable 5-field cron expression
# matches within 28 years (the weekday pattern of a date repeats in at most 28 years).
_SEARCH_YEARS = 29
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """A cron expression that cannot be parsed or can never fire."""


class NeverFiresError(CronError):
    """A syntactically valid cron expression that matches no date, such as ``0 0 31 2 *``."""


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed cron expression: sorted value tuples per field plus the flags the DST rule needs."""

    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    dom_restricted: bool
    dow_restricted: bool
    fixed_hour: bool

    def day_matches(self, day: date) -> bool:
        """Whether ``day`` matches the day-of-month/day-of-week fields (Vixie's OR rule).

        As in Vixie cron, a field that starts with ``*`` (``*``, ``*/2``) is a "star" field: if
        either field is one, a day must match both fields (a plain ``*`` holds every value, so it
        matches trivially, while ``*/2`` still restricts); only when both fields are restricted
        does a day match if it matches either.
        """
        dom_ok = day.day in self.days
        dow_ok = (day.isoweekday() % 7) in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom_ok or dow_ok
        return dom_ok and dow_ok


def parse_cron(expr: str, *, seed: str = "") -> CronExpr:
    """Parse a 5-field cron expression or macro; ``H`` fields are hashed from ``seed``.

    ``seed`` is the task identity (``namespace/name``), so ``H 3 * * *`` picks the same minute for
    the same task on every host and different minutes for different tasks.
    Raises :class:`CronError` with a message that says what is wrong.
    """
    if not isinstance(expr, str):
        raise CronError("schedule must not be empty; write e.g. '0 3 * * *' or '@daily'")
    # Every sync parses its task's schedule; many tasks share one. The seed only matters with H.
    return _parse_cached(expr, seed if "H" in expr else "")


@lru_cache(maxsize=512)
def _parse_cached(expr: str, seed: str) -> CronExpr:
    if not expr.strip():
        raise CronError("schedule must not be empty; write e.g. '0 3 * * *' or '@daily'")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            known = ", ".join(sorted(MACROS))
            raise CronError(f"unknown macro {text!r}; use one of {known}")
        text = MACROS[text.lower()]
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronError(
            f"cron expression {expr!r} has {len(fields)} fields; it needs 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    for name, field in zip(_FIELD_NAMES, fields, strict=True):
        # Names (MON, JAN) are three letters; what remains may only be digits, H and * , - / ( ).
        bare = re.sub(r"[A-Za-z]{3}", "", field)
        bad = sorted(set(re.sub(r"[0-9H*,\-/()]", "", bare)))
        if bad:
            raise CronError(f"{name} field {field!r}: {''.join(bad)!r} is not supported")
    text = " ".join(_collapse_single_ranges(i, field) for i, field in enumerate(fields))
    try:
        expanded = croniter(text, hash_id=seed.encode() or b"nightshift").expanded
    except (CroniterError, ValueError, KeyError, IndexError) as error:
        raise CronError(_explain(fields, expr, error)) from None
    sets: list[tuple[int, ...]] = []
    for values, full in zip(expanded, _FULL, strict=True):
        if values == ["*"]:
            sets.append(tuple(full))
        else:
            sets.append(tuple(sorted({int(v) for v in values})))
    minutes, hours, days, months, weekdays = sets
    weekdays = tuple(sorted({d % 7 for d in weekdays}))
    hour_field = fields[1]
    cron = CronExpr(
        source=expr.strip(),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        dom_restricted=not fields[2].startswith("*"),
        dow_restricted=not fields[4].startswith("*"),
        fixed_hour="*" not in hour_field and "/" not in hour_field,
    )
    _check_satisfiable(cron, expr)
    return cron


def _collapse_single_ranges(index: int, field: str) -> str:
    """Rewrite ranges whose ends are equal (``5-5``, ``5-5/2``, ``MON-1``) as their single value.

    croniter expands such a range to the whole field (``5-5`` would fire every minute); in Vixie
    cron, as in Kubernetes, ``5-5`` means just 5.
    """
    names = _NAME_VALUES[index]
    parts = field.split(",")
    for i, part in enumerate(parts):
        match = _RANGE.fullmatch(part)
        if match is None:
            continue
        ends = [str(names.get(end.lower(), end)) for end in match.group(1, 2)]
        if all(end.isdigit() for end in ends) and int(ends[0]) == int(ends[1]):
            parts[i] = match.group(1)
    return ",".join(parts)


def _explain(fields: list[str], expr: str, error: Exception) -> str:
    """Name the field croniter refused, by parsing each field alone."""
    for i, (name, field) in enumerate(zip(_FIELD_NAMES, fields, strict=True)):
        probe = ["*"] * 5
        probe[i] = field
        try:
            croniter(" ".join(probe), hash_id=b"probe")
        except (CroniterError, ValueError, KeyError, IndexError) as field_error:
            return f"{name} field {field!r} is invalid: {_clean(field_error)}"
    return f"invalid cron expression {expr!r}: {_clean(error)}"


def _clean(error: Exception) -> str:
    message = str(error)
    # croniter prefixes messages with the expression in brackets; we name the field instead.
    if message.startswith("[") and "] " in message:
        message = message.split("] ", 1)[1]
    message = message.removeprefix("is ").removeprefix("not acceptable").lstrip(", ").strip()
    return message or "not understood"


def _check_satisfiable(cron: CronExpr, expr: str) -> None:
    if cron.dow_restricted or not cron.dom_restricted:
        return  # every week has each weekday; an unrestricted day field matches every day
    # Only day-of-month restricts: some listed month must have some listed day (Feb has 29 days
    # in leap years, so "0 0 29 2 *" is valid and fires every four years).
    longest = {m: calendar.monthrange(2000, m)[1] for m in range(1, 13)}
    if not any(day <= longest[month] for month in cron.months for day in cron.days):
        raise NeverFiresError(f"cron expression {expr!r} never fires: no month has that day")


def next_wall_match(cron: CronExpr, wall: datetime) -> datetime:
    """Return the earliest naive wall time >= ``wall`` (to the minute) that matches ``cron``."""
    w = wall.replace(second=0, microsecond=0, tzinfo=None)
    if w < wall.replace(tzinfo=None):
        w += _MINUTE
    limit = w.year + _SEARCH_YEARS
    while True:
        if w.year > limit:
            raise NeverFiresError(f"cron expression {cron.source!r} never fires")
        if w.month not in cron.months:
            i = bisect.bisect_right(cron.months, w.month)
            if i < len(cron.months):
                w = datetime(w.year, cron.months[i], 1)  # noqa: DTZ001 - naive wall time
            else:
                w = datetime(w.year + 1, cron.months[0], 1)  # noqa: DTZ001
            continue
        if not cron.day_matches(w.date()):
            w = datetime(w.year, w.month, w.day) + timedelta(days=1)  # noqa: DTZ001
            continue
        if w.hour not in cron.hours:
            i = bisect.bisect_right(cron.hours, w.hour)
            if i < len(cron.hours):
                w = w.replace(hour=cron.hours[i], minute=0)
            else:
                w = datetime(w.year, w.month, w.day) + timedelta(days=1)  # noqa: DTZ001
            continue
        if w.minute not in cron.minutes:
            i = bisect.bisect_right(cron.minutes, w.minute)
            if i < len(cron.minutes):
                w = w.replace(minute=cron.minutes[i])
            else:
                w = w.replace(minute=0) + timedelta(hours=1)
            continue
        return w


# --- time-zone arithmetic ------------------------------------------------------------------------

_SCAN_STEP = timedelta(hours=6)


@lru_cache(maxsize=4096)
def _transitions_in_year(tz: ZoneInfo, year: int) -> tuple[datetime, ...]:
    """UTC instants (naive) in ``year`` at which ``tz``'s UTC offset changes, to the second.

    zoneinfo does not expose its transition table, so we sample every six hours and bisect each
    change. No zone has had two offset changes within six hours of each other.
    """
    start = datetime(year, 1, 1)  # noqa: DTZ001 - naive UTC
    end = datetime(year + 1, 1, 1)  # noqa: DTZ001
    found: list[datetime] = []
    prev_t, prev_off = start, _offset(tz, start)
    t = start
    while t < end:
        t = min(t + _SCAN_STEP, end)
        off = _offset(tz, t)
        if off != prev_off:
            found.append(_bisect_change(tz, prev_t, t, prev_off))
        prev_t, prev_off = t, off
    # A change exactly at the start of the year belongs to this year, one at its end to the next.
    return tuple(x for x in found if start <= x < end)


def _offset(tz: ZoneInfo, utc_naive: datetime) -> timedelta:
    offset = utc_naive.replace(tzinfo=UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _bisect_change(tz: ZoneInfo, lo: datetime, hi: datetime, lo_off: timedelta) -> datetime:
    """The first instant in (lo, hi] whose offset differs from ``lo_off`` (to the second)."""
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if _offset(tz, mid) == lo_off:
            lo = mid
        else:
            hi = mid
    return hi


def next_transition(tz: ZoneInfo, after: datetime, *, within_years: int = 2) -> datetime | None:
    """The first offset change strictly after the naive UTC instant ``after``, or None."""
    for year in range(after.year, after.year + within_years + 1):
        table = _transitions_in_year(tz, year)
        i = bisect.bisect_right(table, after)
        if i < len(table):
            return table[i]
    return None


def _resolve_first(tz: ZoneInfo, wall: datetime) -> datetime:
    """The ISC instant for a wall time: itself, its first occurrence, or the gap's transition."""
    early = wall.replace(tzinfo=tz, fold=0).utcoffset()
    late = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert early is not None
    assert late is not None
    if early == late:
        return wall - early
    a, b = sorted((wall - early, wall - late))
    a_exists = a + _offset(tz, a) == wall
    b_exists = b + _offset(tz, b) == wall
    if a_exists:  # repeated wall time: the first occurrence
        return a
    if b_exists:
        return b
    # Skipped wall time: fire when the clock jumps over it.
    return _bisect_change(tz, a, b, _offset(tz, a))


def _floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def next_cron_fire(cron: CronExpr, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire time of ``cron`` in zone ``tz`` strictly after the aware instant ``after``.

    Returns an aware UTC datetime. Raises :class:`NeverFiresError` if there is none.
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    t = after.astimezone(UTC).replace(tzinfo=None)
    if cron.fixed_hour:
        wall = _floor_minute(t + _offset(tz, t))
        # Walls before wall(t) map to instants <= t (the mapping is monotone), so none is missed;
        # in a repeated hour a few walls resolve to their first occurrence <= t and are passed over.
        while True:
            wall = next_wall_match(cron, wall)
            fire = _resolve_first(tz, wall)
            if fire > t:
                return fire.replace(tzinfo=UTC)
            wall += _MINUTE
    # Elapsed time: walk the constant-offset segments of the zone from t onwards.
    lo = _floor_minute(t) + _MINUTE
    while True:
        offset = _offset(tz, lo)
        wall = next_wall_match(cron, lo + offset)
        fire = wall - offset
        # Search for an offset change up to the candidate's year, however far ahead it is: a
        # leap-day schedule can be years away, past a one-off change in a zone without DST.
        boundary = next_transition(tz, lo, within_years=max(2, fire.year - lo.year))
        if boundary is None or fire < boundary:
            return fire.replace(tzinfo=UTC)
        lo = boundary

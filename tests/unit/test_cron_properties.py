"""Property tests for ``nightshift.cron`` across many zones and the years 2000-2037.

The expectations come from independent oracles, never from the code under test:

* expressions are generated together with the value sets they denote (a tiny grammar);
* wall clocks and offsets come from ``zoneinfo`` directly;
* around real transitions, a brute-force oracle walks every UTC minute and applies the ISC rule
  (docs/architecture.md#time-zones-and-dst) literally;
* in UTC, croniter's own iteration (correct when there is no DST) is the reference.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nightshift.cron import CronExpr, NeverFiresError, next_cron_fire, parse_cron
from nightshift.timezones import load_zone

MINUTE = timedelta(minutes=1)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
END = datetime(2037, 12, 31, tzinfo=UTC)
SPAN_MINUTES = int((END - EPOCH) / MINUTE)

# The zones of the DST tables, zones with odd offsets (…:30, …:45, two-hour DST, DST at midnight,
# a skipped day, Ramadan suspensions, negative DST, abolished DST, one-off offset changes) and a
# spread of ordinary ones.
ZONE_NAMES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Antarctica/Troll",
    "Pacific/Apia",
    "America/St_Johns",
    "Africa/Casablanca",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Moscow",
    "Europe/Istanbul",
    "Europe/Volgograd",
    "Atlantic/Azores",
    "America/Scoresbysund",
    "America/Nuuk",
    "America/Caracas",
    "America/Santiago",
    "Pacific/Easter",
    "America/Asuncion",
    "America/Havana",
    "America/Port-au-Prince",
    "America/Grand_Turk",
    "America/Los_Angeles",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Halifax",
    "America/Mexico_City",
    "America/Argentina/Buenos_Aires",
    "America/Metlakatla",
    "Asia/Tehran",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Asia/Hebron",
    "Asia/Amman",
    "Asia/Damascus",
    "Asia/Beirut",
    "Africa/Cairo",
    "Africa/Juba",
    "Asia/Dhaka",
    "Asia/Pyongyang",
    "Asia/Colombo",
    "Asia/Yangon",
    "Asia/Kabul",
    "Asia/Almaty",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Australia/Adelaide",
    "Australia/Eucla",
    "Australia/Broken_Hill",
    "Australia/Perth",
    "Antarctica/Macquarie",
    "Pacific/Norfolk",
    "Pacific/Fiji",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
    "Pacific/Marquesas",
]


def _tzdata_names() -> set[str]:
    text = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return {line.strip() for line in text.splitlines() if line.strip()}


ZONES = sorted(set(ZONE_NAMES) & _tzdata_names())
assert len(ZONES) == len(ZONE_NAMES), set(ZONE_NAMES) - set(ZONES)

PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- independent zone helpers (zoneinfo only) ----------------------------------------------------


def offset_at(tz: ZoneInfo, instant: datetime) -> timedelta:
    value = instant.astimezone(tz).utcoffset()
    assert value is not None
    return value


def wall_at(tz: ZoneInfo, instant: datetime) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


@lru_cache(maxsize=4096)
def zone_transitions(name: str, year: int) -> tuple[datetime, ...]:
    """Offset changes of ``name`` in ``year`` (UTC, to the minute), by hourly scan + bisection."""
    tz = load_zone(name)
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=1)
    prev = offset_at(tz, t)
    while t.year <= year:
        nxt = t + timedelta(hours=1)
        off = offset_at(tz, nxt)
        if off != prev:
            lo, hi = t, nxt  # offset(lo) == prev != offset(hi)
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) // 2
                mid = mid.replace(second=0, microsecond=0)
                if offset_at(tz, mid) == prev:
                    lo = mid
                else:
                    hi = mid
            if hi.year == year:
                found.append(hi)
        t, prev = nxt, off
    return tuple(found)


# --- a small cron grammar that knows what it means ------------------------------------------------


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    # The same field for croniter, which reads a range with equal ends ("5-5") as "*".
    reference: str = ""

    @property
    def star(self) -> bool:
        return self.text.startswith("*")


MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@st.composite
def atom(draw: st.DrawFn, lo: int, hi: int, steps: tuple[int, ...], names: list[str] | None):
    kind = draw(st.sampled_from(["value", "range", "range-step"]))
    if kind == "value":
        v = draw(st.integers(lo, hi))
        if names is not None and draw(st.booleans()):
            name = names[v - (1 if lo == 1 else 0)]
            return name, name, frozenset({v})
        return str(v), str(v), frozenset({v})
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    if kind == "range":
        text = f"{a}-{b}"
        return text, text if a < b else str(a), frozenset(range(a, b + 1))
    n = draw(st.sampled_from(steps))
    text = f"{a}-{b}/{n}"
    return text, text if a < b else str(a), frozenset(range(a, b + 1, n))


@st.composite
def field(
    draw: st.DrawFn,
    lo: int,
    hi: int,
    steps: tuple[int, ...],
    names: list[str] | None = None,
    star_weight: int = 2,
) -> Field:
    kind = draw(st.sampled_from(["*"] * star_weight + ["*/n", "atom", "list"]))
    if kind == "*":
        return Field("*", frozenset(range(lo, hi + 1)), "*")
    if kind == "*/n":
        n = draw(st.sampled_from(steps))
        return Field(f"*/{n}", frozenset(range(lo, hi + 1, n)), f"*/{n}")
    parts = draw(
        st.lists(atom(lo, hi, steps, names), min_size=1, max_size=1 if kind == "atom" else 3)
    )
    return Field(
        ",".join(p[0] for p in parts),
        frozenset().union(*(p[2] for p in parts)),
        ",".join(p[1] for p in parts),
    )


@dataclass(frozen=True)
class Spec:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    @property
    def reference(self) -> str:
        fields = (self.minute, self.hour, self.dom, self.month, self.dow)
        return " ".join(f.reference or f.text for f in fields)

    @property
    def fixed_hour(self) -> bool:
        return "*" not in self.hour.text and "/" not in self.hour.text

    def day_ok(self, day: date) -> bool:
        dom_ok = day.day in self.dom.values
        dow_ok = day.isoweekday() % 7 in {d % 7 for d in self.dow.values}
        if not self.dom.star and not self.dow.star:
            return dom_ok or dow_ok  # Vixie: both restricted → either
        return dom_ok and dow_ok

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and wall.month in self.month.values
            and self.day_ok(wall.date())
        )


@st.composite
def specs(draw: st.DrawFn, dense: bool = False) -> Spec:
    """Random 5-field expressions; ``dense`` keeps day/month wide so windows hold fires."""
    minute = draw(field(0, 59, (2, 5, 7, 15, 20, 30)))
    hour = draw(field(0, 23, (2, 3, 5, 6, 12)))
    if dense:
        dom = Field("*", frozenset(range(1, 32)))
        month = Field("*", frozenset(range(1, 13)))
        dow = draw(
            st.sampled_from([Field("*", frozenset(range(7))), Field("1-5", frozenset(range(1, 6)))])
        )
    else:
        dom = draw(field(1, 31, (2, 3, 10), star_weight=4))
        month = draw(field(1, 12, (2, 3, 4), MONTH_NAMES, star_weight=4))
        dow = draw(field(0, 7, (2, 3), [*DAY_NAMES, "SUN"], star_weight=4))
    return Spec(minute, hour, dom, month, dow)


def parse_or_skip(spec: Spec) -> CronExpr:
    try:
        return parse_cron(spec.text, seed="ns/prop")
    except NeverFiresError:
        # Only legitimate when no listed month has a listed day and the weekday cannot rescue it.
        assert spec.dom.star is False
        assert not any(
            day <= (29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)
            for month in spec.month.values
            for day in spec.dom.values
        )
        assume(False)
        raise


zones = st.sampled_from(ZONES)
instants = st.builds(
    lambda m, s: EPOCH + timedelta(minutes=m, seconds=s),
    st.integers(0, SPAN_MINUTES),
    st.sampled_from([0, 0, 0, 1, 30, 59]),
)


# --- (a) + (b): strictly increasing, every fire matches ------------------------------------------


def check_fire_matches(spec: Spec, tz: ZoneInfo, fire: datetime) -> None:
    wall = wall_at(tz, fire)
    if spec.matches(wall):
        return
    # Otherwise it must be a fixed-hour fire standing in for a wall time skipped at this instant.
    assert spec.fixed_hour, f"{spec.text}: {fire} (local {wall}) does not match"
    before = offset_at(tz, fire - timedelta(seconds=1))
    after = offset_at(tz, fire)
    assert after > before, f"{spec.text}: {fire} is not a spring-forward transition"
    skipped = fire.replace(tzinfo=None) + before
    assert any(spec.matches(skipped + k * MINUTE) for k in range(int((after - before) / MINUTE))), (
        f"{spec.text}: no skipped wall time matches at {fire}"
    )


@PROPERTY_SETTINGS
@given(spec=specs(), zone=zones, start=instants)
def test_fires_increase_and_match(spec: Spec, zone: str, start: datetime) -> None:
    cron = parse_or_skip(spec)
    assert cron.fixed_hour == spec.fixed_hour
    tz = load_zone(zone)
    t = start
    for _ in range(15):
        nxt = next_cron_fire(cron, tz, t)
        assert nxt > t  # (a)
        assert nxt.tzinfo is UTC
        check_fire_matches(spec, tz, nxt)  # (b)
        t = nxt


@PROPERTY_SETTINGS
@given(spec=specs(dense=True), zone=zones, start=instants)
def test_after_on_a_fire_time_returns_the_next(spec: Spec, zone: str, start: datetime) -> None:
    cron = parse_or_skip(spec)
    tz = load_zone(zone)
    first = next_cron_fire(cron, tz, start)
    second = next_cron_fire(cron, tz, first)
    assert second > first
    # Nothing in between: asking from any point between the two lands on the second.
    middle = first + (second - first) / 2
    assert next_cron_fire(cron, tz, middle) == second
    assert next_cron_fire(cron, tz, second - timedelta(microseconds=1)) == second


# --- an exact oracle around real transitions -----------------------------------------------------


def oracle_fires(spec: Spec, tz: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """The ISC rule applied literally, minute by minute over [lo - 1 day, hi + 1 day]."""
    scan_from = lo - timedelta(days=1)
    scan_to = hi + timedelta(days=1)
    fires: set[datetime] = set()
    first_instant: dict[datetime, datetime] = {}
    prev_wall: datetime | None = None
    u = scan_from
    while u <= scan_to:
        wall = wall_at(tz, u)
        if spec.fixed_hour:
            if prev_wall is not None and wall > prev_wall + MINUTE:
                # Spring forward: every wall time jumped over fires at this instant.
                w = prev_wall + MINUTE
                while w < wall:
                    if spec.matches(w):
                        first_instant.setdefault(w, u)
                    w += MINUTE
            if spec.matches(wall):
                first_instant.setdefault(wall, u)  # fall back: the first occurrence only
        elif spec.matches(wall):
            fires.add(u)
        prev_wall = wall
        u += MINUTE
    if spec.fixed_hour:
        fires = set(first_instant.values())
    return sorted(f for f in fires if lo <= f < hi)


def engine_fires(cron: CronExpr, tz: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    out = []
    t = lo - timedelta(microseconds=1)
    while True:
        t = next_cron_fire(cron, tz, t)
        if t >= hi:
            return out
        out.append(t)


@st.composite
def transition_windows(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from([z for z in ZONES if z != "UTC"]))
    year = draw(st.integers(2000, 2037))
    found = zone_transitions(zone, year)
    assume(found)
    return zone, draw(st.sampled_from(found))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(dense=True), window=transition_windows())
def test_matches_brute_force_oracle_around_transitions(
    spec: Spec, window: tuple[str, datetime]
) -> None:
    zone, transition = window
    tz = load_zone(zone)
    cron = parse_or_skip(spec)
    lo = transition - timedelta(hours=26)
    hi = transition + timedelta(hours=26)
    assert engine_fires(cron, tz, lo, hi) == oracle_fires(spec, tz, lo, hi)


def test_oracle_agrees_with_a_hand_checked_case() -> None:
    # The oracle itself, checked against the DST tables: New York, 2026-03-08 and 2026-11-01.
    tz = load_zone("America/New_York")
    fixed = Spec(
        Field("30", frozenset({30})),
        Field("1,2", frozenset({1, 2})),
        Field("*", frozenset(range(1, 32))),
        Field("*", frozenset(range(1, 13))),
        Field("*", frozenset(range(7))),
    )
    got = oracle_fires(
        fixed, tz, datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC)
    )
    assert got == [datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 3, 8, 7, tzinfo=UTC)]
    got = oracle_fires(
        fixed, tz, datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC)
    )
    assert got == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 7, 30, tzinfo=UTC),
    ]


# --- (c): a fixed-hour daily schedule fires exactly once per local date --------------------------


@st.composite
def start_dates(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a UTC instant, half the time a few days before one of its transitions."""
    zone = draw(zones)
    year = draw(st.integers(2000, 2037))
    found = zone_transitions(zone, year) if zone != "UTC" else ()
    if found and draw(st.booleans()):
        t = draw(st.sampled_from(found)) - timedelta(days=draw(st.integers(1, 20)))
    else:
        t = datetime(year, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 525_000)))
    return zone, t


@PROPERTY_SETTINGS
@given(minute=st.integers(0, 59), hour=st.integers(0, 23), where=start_dates())
def test_fixed_hour_fires_once_per_local_date(
    minute: int, hour: int, where: tuple[str, datetime]
) -> None:
    zone, start = where
    tz = load_zone(zone)
    cron = parse_cron(f"{minute} {hour} * * *")
    days = 30
    # Each fire serves the local dates whose hour:minute wall time maps to it: the date shown at
    # the fire, and, at a spring-forward instant, the date of a skipped wall time (Apia skipped
    # all of 2011-12-30: that day's fire is at the instant the clock jumped to 12-31 00:00).
    served: Counter[date] = Counter()
    t = start
    first_date = wall_at(tz, start).date() + timedelta(days=1)
    last_date = first_date + timedelta(days=days)
    while True:
        t = next_cron_fire(cron, tz, t)
        wall = wall_at(tz, t)
        dates = set()
        if (wall.hour, wall.minute) == (hour, minute):
            dates.add(wall.date())
        before = offset_at(tz, t - timedelta(seconds=1))
        after = offset_at(tz, t)
        if after > before:
            w = t.replace(tzinfo=None) + before
            while w < wall:
                if (w.hour, w.minute) == (hour, minute):
                    dates.add(w.date())
                w += MINUTE
        assert dates, f"fire {t} (local {wall}) serves no date"
        served.update(dates)
        if min(dates) > last_date:
            break
    for k in range(days):
        d = first_date + timedelta(days=k)
        assert served[d] == 1, f"{zone} {minute} {hour} * * *: {d} served {served[d]} times"


# --- (d): an hourly schedule fires once per elapsed hour of the local day ------------------------


def local_day_bounds(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """First instant of local ``day`` and of the day after, by a minute scan (zoneinfo only)."""
    u = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=15)
    while wall_at(tz, u).date() < day:
        u += MINUTE
    start = u
    while wall_at(tz, u).date() <= day:
        u += MINUTE
    return start, u


def whole_hour_zone(name: str, year: int) -> bool:
    tz = load_zone(name)
    probes = [datetime(year, m, 1, tzinfo=UTC) for m in range(1, 13)]
    probes += [t + timedelta(minutes=d) for t in zone_transitions(name, year) for d in (-1, 1)]
    return all(offset_at(tz, p) % timedelta(hours=1) == timedelta(0) for p in probes)


WHOLE_HOUR_ZONES = [z for z in ZONES if whole_hour_zone(z, 2020) and whole_hour_zone(z, 2030)]


@st.composite
def whole_hour_days(draw: st.DrawFn) -> tuple[str, date]:
    zone = draw(st.sampled_from(WHOLE_HOUR_ZONES))
    year = draw(st.integers(2000, 2037))
    assume(whole_hour_zone(zone, year))
    tz = load_zone(zone)
    found = zone_transitions(zone, year)
    if found and draw(st.integers(0, 3)):
        t = draw(st.sampled_from(found))
        day = wall_at(tz, t).date()
    else:
        day = date(year, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    return zone, day


@PROPERTY_SETTINGS
@given(where=whole_hour_days())
def test_hourly_fires_once_per_elapsed_hour(where: tuple[str, date]) -> None:
    zone, day = where
    tz = load_zone(zone)
    start, end = local_day_bounds(tz, day)
    length = end - start
    # A transition off the hour makes a fractional day; the oracle test covers those.
    assume(length % timedelta(hours=1) == timedelta(0))
    hours = int(length / timedelta(hours=1))
    assert 22 <= hours <= 26
    got = engine_fires(parse_cron("0 * * * *"), tz, start, end)
    assert len(got) == hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(got))


def test_hourly_day_lengths_seen_include_short_and_long_days() -> None:
    # Not a property, a guard that the property above sees 23- and 25-hour days at all.
    tz = load_zone("Europe/Berlin")
    lengths = set()
    for day in (date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25)):
        start, end = local_day_bounds(tz, day)
        lengths.add(len(engine_fires(parse_cron("@hourly"), tz, start, end)))
    assert lengths == {23, 24, 25}


# --- (e): in UTC the engine agrees with croniter --------------------------------------------------


@PROPERTY_SETTINGS
@given(spec=specs(), start=instants)
def test_utc_agrees_with_croniter(spec: Spec, start: datetime) -> None:
    cron = parse_or_skip(spec)
    tz = load_zone("UTC")
    # croniter ORs the day fields whenever both expand to lists; Vixie (and we) only when neither
    # field starts with "*" — tell croniter which rule applies.
    reference = croniter(
        spec.reference, start.replace(tzinfo=None), day_or=not (spec.dom.star or spec.dow.star)
    )
    t = start
    for _ in range(10):
        t = next_cron_fire(cron, tz, t)
        want = reference.get_next(datetime)
        assert t.replace(tzinfo=None) == want, spec.text


# --- H in properties -----------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(seed=st.text(min_size=1, max_size=80), zone=zones, start=instants)
def test_hashed_fixed_hour_schedule(seed: str, zone: str, start: datetime) -> None:
    cron = parse_cron("H H(8-17) * * MON-FRI", seed=seed)
    assert cron == parse_cron("H H(8-17) * * MON-FRI", seed=seed)
    ((minute,), (hour,)) = cron.minutes, cron.hours
    assert 8 <= hour <= 17
    assert cron.fixed_hour
    tz = load_zone(zone)
    spec = Spec(
        Field(str(minute), frozenset({minute})),
        Field(str(hour), frozenset({hour})),
        Field("*", frozenset(range(1, 32))),
        Field("*", frozenset(range(1, 13))),
        Field("1-5", frozenset(range(1, 6))),
    )
    t = start
    for _ in range(5):
        nxt = next_cron_fire(cron, tz, t)
        assert nxt > t
        check_fire_matches(spec, tz, nxt)
        t = nxt

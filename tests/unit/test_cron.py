"""Parser tables and fire-time tables for ``nightshift.cron`` (no DST here: see test_cron_dst.py).

Every expected value is written out by hand from the calendar; none is computed with the code under
test. The fire-time tables follow the style of Kubernetes' ``pkg/controller/cronjob/utils_test.go``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from nightshift.cron import CronError, NeverFiresError, next_cron_fire, next_wall_match, parse_cron
from nightshift.timezones import load_zone

ALL_MINUTES = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DAYS = tuple(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_WEEKDAYS = tuple(range(7))


def utc(text: str) -> datetime:
    """An aware UTC datetime from an RFC 3339 string ending in Z."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.utcoffset() == timedelta(0)
    return value


def rfc3339(value: datetime) -> str:
    assert value.tzinfo is UTC
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fires(expr: str, zone: str, after: str, count: int, seed: str = "ns/name") -> list[str]:
    cron = parse_cron(expr, seed=seed)
    tz = load_zone(zone)
    t = utc(after)
    out = []
    for _ in range(count):
        t = next_cron_fire(cron, tz, t)
        out.append(rfc3339(t))
    return out


# --- parsing: the value sets of each field ------------------------------------------------------

FIELD_CASES = [
    # (expr, field, expected values)
    ("* * * * *", "minutes", ALL_MINUTES),
    ("* * * * *", "hours", ALL_HOURS),
    ("* * * * *", "days", ALL_DAYS),
    ("* * * * *", "months", ALL_MONTHS),
    ("* * * * *", "weekdays", ALL_WEEKDAYS),
    ("5 * * * *", "minutes", (5,)),
    ("0 13 * * *", "hours", (13,)),
    ("0 0 31 * *", "days", (31,)),
    ("1-5 * * * *", "minutes", (1, 2, 3, 4, 5)),
    ("0 9-17 * * *", "hours", tuple(range(9, 18))),
    ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
    ("0 */6 * * *", "hours", (0, 6, 12, 18)),
    ("5-50/15 * * * *", "minutes", (5, 20, 35, 50)),
    ("0 0 */10 * *", "days", (1, 11, 21, 31)),
    ("0 0 1 */4 *", "months", (1, 5, 9)),
    ("0,30 * * * *", "minutes", (0, 30)),
    ("1,2,3,40 * * * *", "minutes", (1, 2, 3, 40)),
    ("1-3,10,*/20 * * * *", "minutes", (0, 1, 2, 3, 10, 20, 40)),
    ("3,1,2 * * * *", "minutes", (1, 2, 3)),
    ("0 0 * JAN *", "months", (1,)),
    ("0 0 * DEC *", "months", (12,)),
    ("0 0 * jan,jul *", "months", (1, 7)),
    ("0 0 * JAN-MAR *", "months", (1, 2, 3)),
    ("0 0 * * MON", "weekdays", (1,)),
    ("0 0 * * mon", "weekdays", (1,)),
    ("0 0 * * SUN", "weekdays", (0,)),
    ("0 0 * * SAT", "weekdays", (6,)),
    ("0 0 * * MON-FRI", "weekdays", (1, 2, 3, 4, 5)),
    ("0 0 * * SAT,SUN", "weekdays", (0, 6)),
    ("0 0 * * 0", "weekdays", (0,)),
    ("0 0 * * 7", "weekdays", (0,)),
    ("0 0 * * 5-7", "weekdays", (0, 5, 6)),
    ("0 0 * * 1-7", "weekdays", ALL_WEEKDAYS),
    ("0 0 * * */2", "weekdays", (0, 2, 4, 6)),
    ("  0   3  *  *  * ", "hours", (3,)),
    # A range whose ends are equal is that one value (croniter alone would read it as "*").
    ("5-5 * * * *", "minutes", (5,)),
    ("5-5/2 * * * *", "minutes", (5,)),
    ("0-0,30 * * * *", "minutes", (0, 30)),
    ("0 0-0 * * *", "hours", (0,)),
    ("0 0 15-15 * *", "days", (15,)),
    ("0 0 * JAN-JAN *", "months", (1,)),
    ("0 0 * 6-6 *", "months", (6,)),
    ("0 0 * * MON-MON", "weekdays", (1,)),
    ("0 0 * * 5-5,1", "weekdays", (1, 5)),
    ("0 0 * * 0-SUN", "weekdays", (0,)),
    ("0 0 * * 7-7", "weekdays", (0,)),
    ("0 0 * * 0-7", "weekdays", ALL_WEEKDAYS),
]


@pytest.mark.parametrize(
    ("expr", "field", "expected"),
    FIELD_CASES,
    ids=[f"{expr.strip()}-{field}" for expr, field, _ in FIELD_CASES],
)
def test_field_values(expr: str, field: str, expected: tuple[int, ...]) -> None:
    assert getattr(parse_cron(expr), field) == expected


MACRO_CASES = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    ("@DAILY", "0 0 * * *"),
    ("@Weekly", "0 0 * * 0"),
    (" @hourly ", "0 * * * *"),
]


@pytest.mark.parametrize(("macro", "equivalent"), MACRO_CASES, ids=[m for m, _ in MACRO_CASES])
def test_macros(macro: str, equivalent: str) -> None:
    got = parse_cron(macro)
    want = parse_cron(equivalent)
    for field in ("minutes", "hours", "days", "months", "weekdays", "fixed_hour"):
        assert getattr(got, field) == getattr(want, field), field
    assert got.dom_restricted == want.dom_restricted
    assert got.dow_restricted == want.dow_restricted


def test_macro_keeps_its_source_for_messages() -> None:
    assert parse_cron("@daily").source == "@daily"


FIXED_HOUR_CASES = [
    ("30 2 * * *", True),
    ("0 1,13 * * *", True),
    ("H 2 * * *", True),
    ("0 H * * *", True),
    ("0 H(8-17) * * *", True),
    ("0 1-5 * * *", True),
    ("* 3 * * *", True),  # a wildcard minute does not make the hour elapsed-time
    ("*/15 3 * * *", True),
    ("@daily", True),
    ("@midnight", True),
    ("@weekly", True),
    ("@monthly", True),
    ("@yearly", True),
    ("0 * * * *", False),
    ("*/30 */2 * * *", False),
    ("0 H/2 * * *", False),
    ("0 0-23/2 * * *", False),
    ("0 1-5/2 * * *", False),
    ("0 */1 * * *", False),
    ("@hourly", False),
]


@pytest.mark.parametrize(("expr", "fixed"), FIXED_HOUR_CASES, ids=[e for e, _ in FIXED_HOUR_CASES])
def test_fixed_hour_flag(expr: str, fixed: bool) -> None:
    assert parse_cron(expr).fixed_hour is fixed


# --- Jenkins H ---------------------------------------------------------------------------------


def test_h_is_stable_for_the_same_seed() -> None:
    first = parse_cron("H 3 * * *", seed="school/sync-ics")
    for _ in range(5):
        assert parse_cron("H 3 * * *", seed="school/sync-ics") == first
    assert len(first.minutes) == 1
    assert 0 <= first.minutes[0] <= 59


def test_h_spreads_across_seeds() -> None:
    minutes = {parse_cron("H 3 * * *", seed=f"ns{i % 7}/task-{i}").minutes[0] for i in range(1000)}
    assert len(minutes) >= 45
    assert minutes <= set(range(60))


def test_h_hour_spreads_across_seeds() -> None:
    hours = {parse_cron("0 H * * *", seed=f"team/job-{i}").hours[0] for i in range(500)}
    assert len(hours) >= 20
    assert hours <= set(range(24))


@pytest.mark.parametrize("seed", ["a/b", "team/job-1", "team/job-2", "x/" + "y" * 60, "ns/name"])
def test_h_step_gives_four_values_fifteen_apart(seed: str) -> None:
    minutes = parse_cron("H/15 * * * *", seed=seed).minutes
    assert len(minutes) == 4
    assert minutes[0] < 15
    assert [b - a for a, b in itertools.pairwise(minutes)] == [15, 15, 15]


def test_h_step_offsets_differ_across_seeds() -> None:
    offsets = {parse_cron("H/15 * * * *", seed=f"team/job-{i}").minutes[0] for i in range(200)}
    assert len(offsets) >= 10


def test_h_range_stays_within_range() -> None:
    seen = set()
    for i in range(500):
        (minute,) = parse_cron("H(0-29) * * * *", seed=f"x/{i}").minutes
        assert 0 <= minute <= 29
        seen.add(minute)
    assert len(seen) >= 25


def test_h_hour_range_stays_within_range() -> None:
    for i in range(200):
        (hour,) = parse_cron("H H(8-17) * * MON-FRI", seed=f"x/{i}").hours
        assert 8 <= hour <= 17


def test_h_different_fields_hash_independently_of_other_text() -> None:
    # The same seed gives the same H minute whatever the other fields say.
    a = parse_cron("H 3 * * *", seed="ns/name").minutes
    b = parse_cron("H 4 * * MON", seed="ns/name").minutes
    assert a == b


# --- day-of-month / day-of-week (Vixie) ----------------------------------------------------------

DAY_RULE_CASES = [
    # (expr, after, expected fires in UTC)
    pytest.param(
        "0 0 1,15 * MON",
        "2026-05-31T12:00:00Z",
        [
            "2026-06-01T00:00:00Z",  # Monday and the 1st
            "2026-06-08T00:00:00Z",  # Monday
            "2026-06-15T00:00:00Z",  # Monday and the 15th
            "2026-06-22T00:00:00Z",
            "2026-06-29T00:00:00Z",
            "2026-07-01T00:00:00Z",  # Wednesday, the 1st
            "2026-07-06T00:00:00Z",
            "2026-07-13T00:00:00Z",
            "2026-07-15T00:00:00Z",  # Wednesday, the 15th
        ],
        id="dom-or-dow",
    ),
    pytest.param(
        "0 0 13 * FRI",
        "2026-02-01T00:00:00Z",
        [
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",  # Friday the 13th: once, not twice
            "2026-02-20T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-06T00:00:00Z",
            "2026-03-13T00:00:00Z",
        ],
        id="friday-13th-once",
    ),
    pytest.param(
        "0 0 * * MON",
        "2026-01-01T00:00:00Z",
        ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"],
        id="dow-only",
    ),
    pytest.param(
        "0 0 10 * *",
        "2026-01-01T00:00:00Z",
        ["2026-01-10T00:00:00Z", "2026-02-10T00:00:00Z"],
        id="dom-only",
    ),
    # A field that starts with "*" is a star for the OR rule (Vixie's DOM_STAR/DOW_STAR), but its
    # values still restrict: "*/2" in day-of-month means odd days.
    pytest.param(
        "0 0 */2 * *",
        "2026-01-27T00:00:00Z",
        [
            "2026-01-29T00:00:00Z",
            "2026-01-31T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-03T00:00:00Z",
        ],
        id="dom-step-alone",
    ),
    pytest.param(
        "0 0 * * */2",
        "2026-01-01T00:00:00Z",
        [
            "2026-01-03T00:00:00Z",  # Saturday
            "2026-01-04T00:00:00Z",  # Sunday
            "2026-01-06T00:00:00Z",  # Tuesday
            "2026-01-08T00:00:00Z",  # Thursday
        ],
        id="dow-step-alone",
    ),
    pytest.param(
        "0 0 */2 * MON",
        "2026-01-01T00:00:00Z",
        [
            "2026-01-05T00:00:00Z",  # Mondays on odd days only (Vixie: star field → AND)
            "2026-01-19T00:00:00Z",
            "2026-02-09T00:00:00Z",
            "2026-02-23T00:00:00Z",
        ],
        id="dom-star-step-and-dow",
    ),
    pytest.param(
        "0 0 1 * */2",
        "2026-01-01T00:00:00Z",
        [
            "2026-02-01T00:00:00Z",  # Sunday the 1st
            "2026-03-01T00:00:00Z",  # Sunday the 1st
            "2026-08-01T00:00:00Z",  # Saturday the 1st (Apr-Jul 1st fall on Wed/Fri/Mon/Wed)
        ],
        id="dom-and-dow-star-step",
    ),
]


@pytest.mark.parametrize(("expr", "after", "expected"), DAY_RULE_CASES)
def test_day_of_month_day_of_week_rule(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", after, len(expected)) == expected


def test_dom_restricted_flags() -> None:
    both = parse_cron("0 0 1,15 * MON")
    assert both.dom_restricted
    assert both.dow_restricted
    neither = parse_cron("0 0 * * *")
    assert not neither.dom_restricted
    assert not neither.dow_restricted


# --- errors -------------------------------------------------------------------------------------

ERROR_CASES = [
    # (id, expr, exception, fragments the message must contain)
    ("empty", "", CronError, ["empty"]),
    ("blank", "   ", CronError, ["empty"]),
    ("four-fields", "* * * *", CronError, ["4 fields", "needs 5"]),
    ("six-fields", "* * * * * *", CronError, ["6 fields", "needs 5"]),
    ("seven-fields", "0 0 0 * * * 2026", CronError, ["7 fields"]),
    ("minute-60", "60 * * * *", CronError, ["minute field", "'60'", "range"]),
    ("minute-range-60", "1-60 * * * *", CronError, ["minute field", "'1-60'"]),
    ("hour-24", "* 24 * * *", CronError, ["hour field", "'24'", "range"]),
    ("dom-0", "* * 0 * *", CronError, ["day of month field", "'0'", "range"]),
    ("dom-32", "* * 32 * *", CronError, ["day of month field", "'32'", "range"]),
    ("month-0", "* * * 0 *", CronError, ["month field", "'0'"]),
    ("month-13", "* * * 13 *", CronError, ["month field", "'13'"]),
    ("dow-8", "* * * * 8", CronError, ["day of week field", "'8'"]),
    ("unknown-month-name", "* * * FOO *", CronError, ["month field", "'FOO'"]),
    ("unknown-day-name", "* * * * FUN", CronError, ["day of week field", "'FUN'"]),
    ("day-name-in-minute", "MON * * * *", CronError, ["minute field", "'MON'"]),
    ("long-day-name", "0 0 * * MONDAY", CronError, ["day of week field"]),
    ("letters", "a * * * *", CronError, ["minute field", "not supported"]),
    ("L-dom", "* * L * *", CronError, ["day of month field", "'L' is not supported"]),
    ("L-dow", "* * * * 5L", CronError, ["day of week field", "'L' is not supported"]),
    ("W", "* * 15W * *", CronError, ["day of month field", "'W' is not supported"]),
    ("hash", "* * * * MON#2", CronError, ["day of week field", "'#' is not supported"]),
    ("question-mark", "* * ? * *", CronError, ["day of month field", "'?' is not supported"]),
    ("step-0", "*/0 * * * *", CronError, ["minute field", "step"]),
    ("hour-step-0", "0 */0 * * *", CronError, ["hour field", "step"]),
    ("single-range-step-0", "5-5/0 * * * *", CronError, ["minute field", "step"]),
    ("empty-list-item", "1,,2 * * * *", CronError, ["minute field"]),
    ("h-reversed-range", "H(30-20) * * * *", CronError, ["minute field"]),
    ("reboot", "@reboot", CronError, ["unknown macro", "@reboot", "@daily"]),
    ("every", "@every 5m", CronError, ["unknown macro"]),
    ("feb-31", "59 23 31 2 *", NeverFiresError, ["never fires"]),
    ("feb-30", "0 0 30 2 *", NeverFiresError, ["never fires"]),
    ("31st-of-short-months", "0 0 31 4,6,9,11 *", NeverFiresError, ["never fires"]),
]


@pytest.mark.parametrize(
    ("expr", "error", "fragments"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_errors(expr: str, error: type[Exception], fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        parse_cron(expr)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in message
    assert "\n" not in message


def test_never_fires_is_a_cron_error() -> None:
    assert issubclass(NeverFiresError, CronError)
    assert issubclass(CronError, ValueError)


VALID_RARE_CASES = [
    "0 0 29 2 *",  # leap years only
    "0 0 31 2,3 *",  # March has a 31st
    "0 0 31 2 MON",  # Mondays in February (OR rule)
    "0 0 30 2 MON",
]


@pytest.mark.parametrize("expr", VALID_RARE_CASES)
def test_rare_but_valid(expr: str) -> None:
    parse_cron(expr)


def test_leap_day_fires_only_in_leap_years() -> None:
    assert fires("0 0 29 2 *", "UTC", "2023-01-01T00:00:00Z", 4) == [
        "2024-02-29T00:00:00Z",
        "2028-02-29T00:00:00Z",
        "2032-02-29T00:00:00Z",
        "2036-02-29T00:00:00Z",
    ]
    # 2100 is not a leap year: from 2096 the next leap day is in 2104.
    assert fires("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", 1) == ["2104-02-29T00:00:00Z"]


# --- next_cron_fire tables (Kubernetes utils_test.go style) -------------------------------------

NEXT_CASES = [
    # (id, expr, zone, after, expected next fire)
    ("every-minute", "* * * * *", "UTC", "2026-05-05T10:00:00Z", "2026-05-05T10:01:00Z"),
    ("every-minute-seconds", "* * * * *", "UTC", "2026-05-05T10:00:30Z", "2026-05-05T10:01:00Z"),
    ("on-fire-time", "*/15 * * * *", "UTC", "2026-05-05T10:15:00Z", "2026-05-05T10:30:00Z"),
    ("just-after", "*/15 * * * *", "UTC", "2026-05-05T10:15:00.000001Z", "2026-05-05T10:30:00Z"),
    ("just-before", "*/15 * * * *", "UTC", "2026-05-05T10:14:59.999999Z", "2026-05-05T10:15:00Z"),
    ("daily-on-fire", "0 3 * * *", "UTC", "2026-05-05T03:00:00Z", "2026-05-06T03:00:00Z"),
    ("daily-before", "0 3 * * *", "UTC", "2026-05-05T02:59:59Z", "2026-05-05T03:00:00Z"),
    ("hour-rollover", "5 * * * *", "UTC", "2026-05-05T10:06:00Z", "2026-05-05T11:05:00Z"),
    ("day-rollover", "30 23 * * *", "UTC", "2026-05-05T23:31:00Z", "2026-05-06T23:30:00Z"),
    ("month-rollover", "0 0 1 * *", "UTC", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),
    ("month-rollover-dec", "0 0 1 * *", "UTC", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    (
        "31st-skips-30-day-months",
        "0 0 31 * *",
        "UTC",
        "2026-03-31T00:00:00Z",
        "2026-05-31T00:00:00Z",
    ),
    ("31st-skips-february", "0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"),
    ("30th-skips-february", "0 0 30 * *", "UTC", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z"),
    ("feb-28-non-leap", "0 0 28 2 *", "UTC", "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z"),
    ("month-field", "0 0 * 2 *", "UTC", "2026-02-28T00:00:00Z", "2027-02-01T00:00:00Z"),
    ("leap-day", "0 0 29 2 *", "UTC", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("leap-day-before", "0 12 29 2 *", "UTC", "2028-02-28T23:59:00Z", "2028-02-29T12:00:00Z"),
    ("last-minute-of-year", "59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z", "2026-12-31T23:59:00Z"),
    ("last-minute-on-fire", "59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"),
    ("new-year", "* * * * *", "UTC", "2026-12-31T23:59:00Z", "2027-01-01T00:00:00Z"),
    ("new-year-micro", "0 0 * * *", "UTC", "2026-12-31T23:59:59.999999Z", "2027-01-01T00:00:00Z"),
    ("yearly", "@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("weekly-sunday", "@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("dow-7-is-sunday", "0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("weekday-over-weekend", "30 8 * * 1-5", "UTC", "2026-01-02T09:00:00Z", "2026-01-05T08:30:00Z"),
    ("range-step", "5-50/15 * * * *", "UTC", "2026-05-05T10:50:00Z", "2026-05-05T11:05:00Z"),
    ("hour-step", "0 */6 * * *", "UTC", "2026-05-05T18:00:00Z", "2026-05-06T00:00:00Z"),
    ("quarterly", "0 0 1 */3 *", "UTC", "2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"),
    (
        "single-value-ranges",
        "30-30 9-9 * * *",
        "UTC",
        "2026-05-05T10:00:00Z",
        "2026-05-06T09:30:00Z",
    ),
    # Zones without a transition in the way: local wall times map at a constant offset.
    ("zurich-winter", "0 9 * * *", "Europe/Zurich", "2026-01-15T08:00:00Z", "2026-01-16T08:00:00Z"),
    ("zurich-summer", "0 9 * * *", "Europe/Zurich", "2026-07-15T06:00:00Z", "2026-07-15T07:00:00Z"),
    ("kolkata", "0 9 * * *", "Asia/Kolkata", "2026-07-15T00:00:00Z", "2026-07-15T03:30:00Z"),
    ("kathmandu", "0 0 * * *", "Asia/Kathmandu", "2026-07-15T00:00:00Z", "2026-07-15T18:15:00Z"),
    (
        "kathmandu-hourly",
        "0 * * * *",
        "Asia/Kathmandu",
        "2026-07-15T00:00:00Z",
        "2026-07-15T00:15:00Z",
    ),
    ("tokyo-new-year", "0 0 1 1 *", "Asia/Tokyo", "2026-06-01T00:00:00Z", "2026-12-31T15:00:00Z"),
    (
        "honolulu-dom",
        "0 0 1 * *",
        "Pacific/Honolulu",
        "2026-01-31T00:00:00Z",
        "2026-02-01T10:00:00Z",
    ),
    # Local date differs from the UTC date: the month rolls over in local time.
    ("tokyo-month", "0 8 1 * *", "Asia/Tokyo", "2026-01-31T23:00:00Z", "2026-02-28T23:00:00Z"),
    (
        "la-leap-day",
        "0 20 29 2 *",
        "America/Los_Angeles",
        "2024-01-01T00:00:00Z",
        "2024-03-01T04:00:00Z",
    ),
    # Caracas moved from -04:00 to -04:30 on 2007-12-09, years before the next leap day.
    (
        "caracas-fixed",
        "0 0 29 2 *",
        "America/Caracas",
        "2004-03-01T00:00:00Z",
        "2008-02-29T04:30:00Z",
    ),
    (
        "caracas-stepped",
        "0 */12 29 2 *",
        "America/Caracas",
        "2004-03-01T00:00:00Z",
        "2008-02-29T04:30:00Z",
    ),
    (
        "caracas-hourly",
        "0 * 29 2 *",
        "America/Caracas",
        "2004-03-01T05:00:00Z",
        "2008-02-29T04:30:00Z",
    ),
]


@pytest.mark.parametrize(
    ("expr", "zone", "after", "expected"),
    [case[1:] for case in NEXT_CASES],
    ids=[case[0] for case in NEXT_CASES],
)
def test_next_cron_fire(expr: str, zone: str, after: str, expected: str) -> None:
    got = next_cron_fire(parse_cron(expr, seed="ns/name"), load_zone(zone), utc(after))
    assert got.tzinfo is UTC
    assert rfc3339(got) == expected


SEQUENCE_CASES = [
    pytest.param(
        "0 0 28-31 * *",
        "UTC",
        "2026-01-28T00:00:00Z",
        [
            "2026-01-29T00:00:00Z",
            "2026-01-30T00:00:00Z",
            "2026-01-31T00:00:00Z",
            "2026-02-28T00:00:00Z",
            "2026-03-28T00:00:00Z",
        ],
        id="28-31-across-february",
    ),
    pytest.param(
        "59 23 31 12 *",
        "UTC",
        "2025-12-31T23:59:00Z",
        ["2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z", "2028-12-31T23:59:00Z"],
        id="last-minute-each-year",
    ),
    pytest.param(
        "*/20 23 31 12 *",
        "UTC",
        "2026-12-31T23:00:00Z",
        ["2026-12-31T23:20:00Z", "2026-12-31T23:40:00Z", "2027-12-31T23:00:00Z"],
        id="minutes-within-year-end-hour",
    ),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), SEQUENCE_CASES)
def test_fire_sequences(expr: str, zone: str, after: str, expected: list[str]) -> None:
    assert fires(expr, zone, after, len(expected)) == expected


def test_after_in_another_offset() -> None:
    cron = parse_cron("0 * * * *")
    after = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))  # 00:00Z
    assert rfc3339(next_cron_fire(cron, load_zone("UTC"), after)) == "2026-03-01T01:00:00Z"


def test_after_in_another_zone() -> None:
    cron = parse_cron("0 9 * * *")
    after = datetime(2026, 1, 15, 3, 0, tzinfo=load_zone("America/New_York"))  # 08:00Z
    got = next_cron_fire(cron, load_zone("Europe/Zurich"), after)
    assert rfc3339(got) == "2026-01-16T08:00:00Z"


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_cron_fire(parse_cron("* * * * *"), load_zone("UTC"), datetime(2026, 1, 1))


def test_result_is_strictly_after_and_minute_aligned() -> None:
    cron = parse_cron("* * * * *")
    tz = load_zone("Europe/Berlin")
    t = utc("2026-05-05T10:00:00.5Z")
    for _ in range(100):
        nxt = next_cron_fire(cron, tz, t)
        assert nxt > t
        assert nxt.second == 0
        assert nxt.microsecond == 0
        t = nxt


# --- next_wall_match ------------------------------------------------------------------------------

WALL_CASES = [
    ("0 3 * * *", datetime(2026, 1, 1, 3, 0), datetime(2026, 1, 1, 3, 0)),  # >= : itself
    ("0 3 * * *", datetime(2026, 1, 1, 3, 0, 1), datetime(2026, 1, 2, 3, 0)),
    ("30 2 * * *", datetime(2026, 3, 8, 0, 0), datetime(2026, 3, 8, 2, 30)),  # no zone: wall only
    ("0 0 29 2 *", datetime(2025, 3, 1), datetime(2028, 2, 29)),
    ("* * * * *", datetime(2026, 12, 31, 23, 59, 30), datetime(2027, 1, 1, 0, 0)),
    ("0 0 1,15 * MON", datetime(2026, 6, 2), datetime(2026, 6, 8)),
]


@pytest.mark.parametrize(
    ("expr", "wall", "expected"), WALL_CASES, ids=[str(c[1]) for c in WALL_CASES]
)
def test_next_wall_match(expr: str, wall: datetime, expected: datetime) -> None:
    assert next_wall_match(parse_cron(expr), wall) == expected

"""Parser tables for ``nightshift.durations``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nightshift.durations import DurationError, format_duration, parse_duration

VALID = [
    ("5m", timedelta(minutes=5)),
    ("30s", timedelta(seconds=30)),
    ("90s", timedelta(seconds=90)),
    ("1h30m", timedelta(minutes=90)),
    ("1.5h", timedelta(minutes=90)),
    ("100ms", timedelta(milliseconds=100)),
    ("2d", timedelta(days=2)),
    ("6h", timedelta(hours=6)),
    ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
    ("30m1h", timedelta(minutes=90)),  # order is not enforced (neither is it in Go)
    (" 5m ", timedelta(minutes=5)),
    ("3650d", timedelta(days=3650)),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t.strip() for t, _ in VALID])
def test_parse_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


INVALID = [
    ("negative", "-5s", "negative"),
    ("no-unit", "5", "unit"),
    ("letters", "abc", "unit"),
    ("unit-twice", "1m1m", "twice"),
    ("empty", "", "empty"),
    ("blank", "   ", "empty"),
    ("zero", "0", "unit"),
    ("zero-seconds", "0s", "greater than zero"),
    ("trailing-number", "1m30", "unit"),
    ("unit-first", "m5", "unit"),
    ("inner-space", "1h 30m", "unit"),
    ("upper-case", "5M", "unit"),
    ("leading-dot", ".5h", "unit"),
    ("exponent", "1e3s", "unit"),
    ("too-long", "3651d", "ten years"),
    ("unknown-unit", "5w", "unit"),
    ("microseconds", "5us", "unit"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(DurationError, match=fragment) as info:
        parse_duration(text)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text", ["0", "0s", "0m", "0ms"])
def test_zero_allowed_when_asked(text: str) -> None:
    assert parse_duration(text, allow_zero=True) == timedelta(0)


def test_negative_rejected_even_when_zero_allowed() -> None:
    with pytest.raises(DurationError, match="negative"):
        parse_duration("-5s", allow_zero=True)


def test_non_string_rejected() -> None:
    with pytest.raises(DurationError):
        parse_duration(5)  # type: ignore[arg-type]


FORMAT = [
    (timedelta(minutes=90), "1h30m"),
    (timedelta(minutes=5), "5m"),
    (timedelta(milliseconds=100), "100ms"),
    (timedelta(days=2), "2d"),
    (timedelta(days=2, seconds=1, milliseconds=5), "2d1s5ms"),
    (timedelta(hours=25), "1d1h"),
    (timedelta(0), "0s"),
    (timedelta(seconds=-30), "-30s"),
]


@pytest.mark.parametrize(("value", "text"), FORMAT, ids=[t for _, t in FORMAT])
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    "text", ["5m", "30s", "1h30m", "100ms", "2d", "1d2h3m4s5ms", "10m", "6h", "1d1h", "3650d"]
)
def test_round_trip_canonical(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"), [("90s", "1m30s"), ("1.5h", "1h30m"), ("30m1h", "1h30m"), ("24h", "1d")]
)
def test_round_trip_normalises(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
    assert parse_duration(canonical) == parse_duration(text)


@pytest.mark.parametrize("ms", [1, 999, 1000, 59_999, 61_001, 3_600_000, 86_399_999, 90_061_001])
def test_parse_format_round_trip_millis(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value

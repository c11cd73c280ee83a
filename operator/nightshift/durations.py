"""Parse and format the durations people write in manifests (``30s``, ``10m``, ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One or more <number><unit> parts, largest unit first is not enforced (Go's ParseDuration does not
# enforce it either), but each unit may appear only once so "1m1m" is rejected as a typo.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX = timedelta(days=3650)


class DurationError(ValueError):
    """A duration string that is not a positive ``<number><unit>...`` value."""


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Return the duration ``text`` denotes: ``parse_duration("1h30m") == timedelta(minutes=90)``.

    Accepts Go-style durations with the units ms, s, m, h and d (``1.5h``, ``90s``, ``2d``).
    A bare ``0`` is accepted when ``allow_zero`` is set. Negative, empty, unit-less or
    absurdly long (over ten years) values raise :class:`DurationError` with a readable reason.
    """
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string such as 30s, 10m or 1h30m, got {text!r}")
    s = text.strip()
    if s == "0" and allow_zero:
        return timedelta(0)
    if not s:
        raise DurationError("empty duration; write e.g. 30s, 10m or 1h30m")
    if s.startswith("-"):
        raise DurationError(f"negative duration {text!r} is not allowed")
    pos = 0
    total = 0.0
    seen: set[str] = set()
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit in seen:
            raise DurationError(f"invalid duration {text!r}: unit {unit!r} appears twice")
        seen.add(unit)
        total += float(number) * _UNITS[unit]
        pos = match.end()
    if pos != len(s) or not seen:
        raise DurationError(
            f"invalid duration {text!r}; write a number with a unit (ms, s, m, h, d), "
            "e.g. 30s, 10m, 1h30m"
        )
    value = timedelta(seconds=total)
    if value <= timedelta(0) and not allow_zero:
        raise DurationError(f"duration {text!r} must be greater than zero")
    if value > _MAX:
        raise DurationError(f"duration {text!r} is longer than ten years")
    return value


def format_duration(value: timedelta) -> str:
    """Return the shortest ``1h30m``-style spelling of ``value`` (sub-second parts in ms)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    seconds, ms = divmod(total_ms, 1000)
    if seconds == 0:
        return f"{sign}{ms}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return sign + "".join(parts)

"""How the UI writes instants: in a chosen IANA zone, with the zone's abbreviation, never naive."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from nightshift.timezones import TimeZoneError, load_zone

__all__ = ["UTC_ZONE", "local_text", "short_text", "utc_text", "zone_or_none"]

UTC_ZONE = load_zone("UTC")


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """The zone called ``name`` (from the tzdata package, as the operator loads it), or None
    when there is no such zone."""
    if not name:
        return None
    try:
        return load_zone(name)
    except TimeZoneError:
        return None


def local_text(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-03-08 03:00:05 EDT``: to the second, with the abbreviation in force then (which is
    how a repeated wall time after a fall-back is told apart)."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''}".rstrip()


def short_text(moment: datetime, zone: ZoneInfo) -> str:
    """``Sun 8 Mar 03:00 EDT``: for tooltips and the overview, where a year is noise."""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname() or ''}".rstrip()


def utc_text(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, with ``Z`` (as the API stores times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

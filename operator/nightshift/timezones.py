"""Validate and load IANA time zones the way Kubernetes does, from the ``tzdata`` package."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

__all__ = ["TimeZoneError", "load_zone"]

# The same rule the Kubernetes CronJob validation applies to spec.timeZone: each path component is
# 1-14 characters of [A-Za-z.-_0-9+], no component is "." or "..", and "Local" is refused because it
# would mean "whatever the operator's host is set to".
_COMPONENT = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")


class TimeZoneError(ValueError):
    """A time zone name that is not a valid, known IANA name."""


def _check_name(name: str) -> None:
    if not name:
        raise TimeZoneError("time zone must not be empty; use an IANA name such as Europe/Zurich")
    if name == "Local":
        raise TimeZoneError('time zone "Local" is not allowed; use an IANA name such as UTC')
    if len(name) > 64:
        raise TimeZoneError(f'time zone "{name[:64]}..." is longer than 64 characters')
    for component in name.split("/"):
        if component in ("", ".", "..") or not _COMPONENT.fullmatch(component):
            raise TimeZoneError(f'unknown time zone "{name}"')


@lru_cache(maxsize=1024)
def _load(name: str) -> ZoneInfo:
    # ZoneInfo prefers the host's zoneinfo directory; we want the pinned tzdata package so a task
    # fires at the same instant on every host, hence ZoneInfo.from_file over the package resource.
    try:
        ref = resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
        with ref.open("rb") as handle:
            return ZoneInfo.from_file(handle, key=name)
    except (OSError, ValueError):
        # Missing file, a directory such as "America", or not a TZif file.
        raise TimeZoneError(f'unknown time zone "{name}"') from None


def load_zone(name: str) -> ZoneInfo:
    """Return the zone for an IANA name such as ``Europe/Zurich``; raise TimeZoneError if bad."""
    _check_name(name)
    return _load(name)

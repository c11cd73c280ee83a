"""What a page's URL asks for: the namespace and label filter, the timeline's window and zone.

Each reader takes the parsed query string (``urllib.parse.parse_qs``) and either returns a value
or raises :class:`QueryError` with a sentence for the page; each value can write itself back into
a query string, so links and forms keep the filters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from nightshift.durations import DurationError, format_duration, parse_duration
from nightshift.kubectl.ui.clock import UTC_ZONE, zone_or_none
from nightshift.kubectl.ui.timeline import Window

__all__ = [
    "DEFAULT_AHEAD",
    "DEFAULT_BACK",
    "MAX_SPAN",
    "Filter",
    "QueryError",
    "Span",
    "ZoneChoice",
    "link",
    "read_filter",
    "read_span",
    "read_zone",
]

Query = Mapping[str, Sequence[str]]

DEFAULT_BACK = timedelta(hours=24)
DEFAULT_AHEAD = timedelta(hours=24)
MAX_SPAN = timedelta(days=31)  # each side; a month of per-minute fires is already capped
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_MAX_SELECTOR = 1024
_ZERO = re.compile(r"0+(ms|s|m|h|d)?")


class QueryError(ValueError):
    """A query parameter the page cannot use; the message says which and why."""


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1].strip() if values else None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which tasks a list shows: one namespace (None: all) and a label selector ("" : any)."""

    namespace: str | None
    labels: str = ""

    def params(self) -> dict[str, str]:
        """The query parameters that ask for this filter (``ns=`` means all namespaces)."""
        params = {"ns": self.namespace or ""}
        if self.labels:
            params["labels"] = self.labels
        return params


def read_filter(query: Query, default_namespace: str | None) -> Filter:
    """``ns`` (absent: ``default_namespace``; empty: every namespace) and ``labels`` (a label
    selector, checked by the API server when the list is made)."""
    namespace = _one(query, "ns")
    if namespace is None:
        namespace = default_namespace
    elif not namespace:
        namespace = None
    elif not _NAMESPACE.fullmatch(namespace):
        raise QueryError(f"namespace {namespace!r} is not a valid namespace name")
    labels = _one(query, "labels") or ""
    if len(labels) > _MAX_SELECTOR:
        raise QueryError(f"the label selector is longer than {_MAX_SELECTOR} characters")
    return Filter(namespace, labels)


@dataclass(frozen=True, slots=True)
class Span:
    """How far back and ahead of now the timeline reaches."""

    back: timedelta = DEFAULT_BACK
    ahead: timedelta = DEFAULT_AHEAD

    def window(self, now: datetime) -> Window:
        """The window around ``now``."""
        return Window.around(now, self.back, self.ahead)

    def params(self) -> dict[str, str]:
        """The query parameters, left out where they are the defaults."""
        params = {}
        if self.back != DEFAULT_BACK:
            params["back"] = format_duration(self.back)
        if self.ahead != DEFAULT_AHEAD:
            params["ahead"] = format_duration(self.ahead)
        return params


def _duration(query: Query, name: str, default: timedelta) -> timedelta:
    text = _one(query, name)
    if not text:
        return default
    if _ZERO.fullmatch(text):
        return timedelta(0)  # the core's durations are positive; a side of the window may be 0
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise QueryError(f"{name}: {error}") from None
    if value > MAX_SPAN:
        raise QueryError(f"{name}: at most {format_duration(MAX_SPAN)}")
    return value


def read_span(query: Query) -> Span:
    """``back`` and ``ahead`` as durations (``24h``, ``7d``, ``90m``); at least one is not 0."""
    span = Span(_duration(query, "back", DEFAULT_BACK), _duration(query, "ahead", DEFAULT_AHEAD))
    if span.back + span.ahead <= timedelta(0):
        raise QueryError("back and ahead are both 0: the window is empty")
    return span


@dataclass(frozen=True, slots=True)
class ZoneChoice:
    """The zone times are shown in: the browser's, each task's own, or a named one."""

    choice: str  # "browser", "task" or an IANA name
    browser: ZoneInfo | None  # what the browser said its zone is (a cookie), if it did

    def zone(self, task_zone: ZoneInfo | None = None) -> ZoneInfo:
        """The zone to use (for one task, when the choice is ``task``); UTC when unknown."""
        if self.choice == "task":
            return task_zone or UTC_ZONE
        if self.choice == "browser":
            return self.browser or UTC_ZONE
        return zone_or_none(self.choice) or UTC_ZONE

    def params(self) -> dict[str, str]:
        """The query parameter, left out for the default (the browser's zone)."""
        return {} if self.choice == "browser" else {"zone": self.choice}


def read_zone(query: Query, browser: str | None, default: str = "browser") -> ZoneChoice:
    """``zone``: ``browser`` (the zone the page's script reported in a cookie), ``task``, or an
    IANA name such as ``UTC``."""
    choice = _one(query, "zone") or default
    if choice not in ("browser", "task") and zone_or_none(choice) is None:
        raise QueryError(f"zone: unknown time zone {choice!r}")
    return ZoneChoice(choice, zone_or_none(browser))


def link(path: str, *parts: Mapping[str, str]) -> str:
    """``path`` with the query parameters of ``parts`` (later ones win)."""
    params: dict[str, str] = {}
    for part in parts:
        params.update(part)
    return f"{path}?{urlencode(params)}" if params else path

"""Slot times: UTC stamps, the first minute boundary far enough away, its daily cron schedule,
and the time of a run id."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def minute_slot(lead: float) -> float:
    """The first minute boundary at least ``lead`` seconds from now."""
    return float(math.ceil((time.time() + lead) / 60) * 60)


def daily_cron(slot: float) -> str:
    """A cron schedule due at this minute every day (UTC)."""
    when = datetime.fromtimestamp(slot, UTC)
    return f"{when.minute} {when.hour} * * *"


def run_time(run: str) -> float:
    """The slot time of a scheduled run id (``2026-11-23T03:00:00Z``)."""
    return datetime.strptime(run, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()

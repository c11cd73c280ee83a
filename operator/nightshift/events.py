"""Events as client-go's recorder posts them: aggregated per task and reason, rate-limited.

A task's identical Events (same type, reason and message) within ``WINDOW`` of each other are one
Event whose ``count`` (and ``series``) grows, not an Event each; once a reason has had ``SIMILAR``
different messages with less than ``WINDOW`` between them, further ones are combined into one
Event per reason ("(combined from similar events): ..."), whose count grows with the latest
message. Every write (a new Event or a
count) takes a token from the task's own bucket (``BURST`` at once, one per ``REFILL`` s after):
what finds it empty is dropped, and counted by the caller. A task firing once a minute never
meets the limit; one in a loop of failures cannot flood the API server, or its Event stream.

The book only decides: it holds what each Event should say and what the server has, and the
writer's posters send the difference. Time is passed in.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Literal

from nightshift.ratelimit import TokenBucket

__all__ = ["BURST", "COMBINED", "REFILL", "SIMILAR", "WINDOW", "EventBook", "Record"]

WINDOW = 600.0  # seconds (client-go's aggregation interval)
SIMILAR = 10  # different messages of one reason in WINDOW before they are combined (client-go)
BURST = 25  # writes a task may make at once (client-go's spam filter burst)
REFILL = 10.0  # seconds per write after that: 6 a minute
RECORDS = 4096  # Events remembered, least recently used forgotten first (client-go's cache)
COMBINED = "(combined from similar events): "

TaskKey = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)
class Record:
    """One Event as it should be on the server, and what the server has of it."""

    ref: dict[str, Any]  # the task's metadata (name, namespace, uid, resourceVersion)
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    first: float  # when it was first recorded (the book's clock)
    last: float
    count: int = 1
    name: str | None = None  # the server's name for it, once created
    posted: int = 0  # the count the server has
    busy: bool = False  # a poster is writing it (it sends the latest count when done)
    key: tuple[Any, ...] = field(default=(), repr=False)
    object_kind: str | None = None  # when the object is not a ScheduledTask (a Backfill)


@dataclass(slots=True)
class _Similar:
    """The different messages a task's reason had within the window."""

    messages: set[str] = field(default_factory=set)  # at most SIMILAR - 1
    last: float = 0.0


class EventBook:
    """Which Event each new Event becomes (a new one, or a count on an earlier one), or none."""

    def __init__(
        self,
        *,
        window: float = WINDOW,
        similar: int = SIMILAR,
        burst: int = BURST,
        refill: float = REFILL,
        records: int = RECORDS,
    ) -> None:
        self.window = window
        self.similar = similar
        self.burst = burst
        self.refill = refill
        self.limit = records
        self._records: collections.OrderedDict[tuple[Any, ...], Record] = collections.OrderedDict()
        self._similar: collections.OrderedDict[tuple[Any, ...], _Similar] = (
            collections.OrderedDict()
        )
        self._buckets: dict[TaskKey, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._records)

    def record(
        self,
        ref: dict[str, Any],
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        now: float,
    ) -> Record | None:
        """The Event to write for this one (None: the task's bucket is empty, drop it)."""
        meta = ref.get("metadata") or {}
        task: TaskKey = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        uid = str(meta.get("uid") or "")
        # A Backfill's Events are about the Backfill: its kind goes on the Event. (Its uid keeps
        # them apart from a namesake task's; the rate limit is per name, which they share.)
        object_kind = ref.get("kind")
        if not self._bucket(task, now).take(now):
            return None
        group = (*task, uid, kind, reason)
        similar = self._similar.pop(group, None)
        if similar is None or now - similar.last > self.window:
            similar = _Similar()
        similar.last = now
        self._similar[group] = similar
        self._trim(self._similar)
        key: tuple[Any, ...]
        if message in similar.messages or len(similar.messages) < self.similar - 1:
            similar.messages.add(message)
            key, text = (*group, message), message
        else:
            # The reason's tenth different message in the window: from now on one Event.
            key, text = (*group, None), COMBINED + message
        record = self._records.pop(key, None)
        if record is None or now - record.last > self.window:
            record = Record(
                dict(meta),
                kind,
                reason,
                text,
                first=now,
                last=now,
                key=key,
                object_kind=object_kind,
            )
        else:
            record.count += 1
            record.last = now
            record.message = text
            record.ref = dict(meta)
        self._records[key] = record
        self._trim(self._records)
        return record

    def _bucket(self, task: TaskKey, now: float) -> TokenBucket:
        bucket = self._buckets.get(task)
        if bucket is None:
            if len(self._buckets) >= self.limit:
                # A full bucket is as good as a new one: forget those.
                for key in [k for k, b in self._buckets.items() if b.full(now)]:
                    del self._buckets[key]
            bucket = self._buckets[task] = TokenBucket(1 / self.refill, self.burst, now)
        return bucket

    def _trim(self, cache: collections.OrderedDict[tuple[Any, ...], Any]) -> None:
        while len(cache) > self.limit:
            cache.popitem(last=False)

    def forget(self, task: TaskKey) -> None:
        """The task is gone: its bucket and Events go too."""
        self._buckets.pop(task, None)
        for cache in (self._records, self._similar):
            for key in [k for k in cache if k[:2] == task]:
                del cache[key]

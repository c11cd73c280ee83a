"""The write-behind: each task's status, Job deletes and Events, written after the Job creates.

A sync decides and creates Jobs at once; what it wants written goes here. Writes wait (at most
``YIELD_MAX`` s) while creates are queued or in flight, so that when many tasks are due together
the API server spends its time on the Jobs first. A task's writes go in order: the status, then
the deletes (a Job is pruned only once the status recording its run is stored), then the Events.

Every status write carries the resourceVersion its decision started from. If the task changed
since, the write fails instead of landing: a deposed leader cannot overwrite its successor's
status, and a task re-created under the same name never inherits the old one's. On such a
conflict the task is read again; the decision is kept and redone on the new spec when only the
spec or metadata changed, and dropped when someone else wrote the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nightshift import metrics
from nightshift.api import ApiError, Conflict, KubeApi
from nightshift.events import EventBook, Record
from nightshift.reconcile import Event
from nightshift.store import RESYNC, Entry, Key, Store, resource_version
from nightshift.workqueue import WorkQueue

__all__ = [
    "EVENT_QUEUE",
    "WRITERS",
    "YIELD_MAX",
    "CreateGate",
    "Start",
    "Writer",
    "canonical",
]

log = logging.getLogger(__name__)

WRITERS = 8  # status writes in flight at once
YIELD_MAX = 5.0  # seconds a write waits for the creates at most
EVENT_QUEUE = 2000  # Events waiting to be posted; beyond that they are dropped (and counted)
EVENT_POSTERS = 8
# Events a task's unwritten decisions may hold (a status write that keeps failing keeps them);
# beyond that the oldest are dropped (and counted).
PENDING_EVENTS = 100


def _ref(key: Key, uid: str, version: object) -> dict[str, Any]:
    """What an Event on the task names: the task at the version its writes left it."""
    namespace, name = key
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": str(version),
        }
    }


def canonical(status: Any) -> bytes:
    """A status as comparable text: keys sorted, and null fields left out (a merge patch's null
    deletes the field, so what the API server stores never has them)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(status or {}), sort_keys=True, separators=(",", ":")).encode()


def _bounded(events: list[Event]) -> list[Event]:
    """The newest PENDING_EVENTS of ``events``; the rest are counted as dropped."""
    if len(events) <= PENDING_EVENTS:
        return events
    metrics.EVENTS_DROPPED.inc(len(events) - PENDING_EVENTS)
    return events[-PENDING_EVENTS:]


class CreateGate:
    """Knows whether Job creates are queued or in flight; writes wait until they are not."""

    def __init__(self, queued: Callable[[], int]) -> None:
        self._queued = queued
        self.creating = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def update(self) -> None:
        """Call whenever the queue's length or the creates in flight change."""
        if self.creating or self._queued():
            self._idle.clear()
        else:
            self._idle.set()

    @contextlib.contextmanager
    def creating_jobs(self, count: int) -> Iterator[None]:
        self.creating += count
        self.update()
        try:
            yield
        finally:
            self.creating -= count
            self.update()

    async def wait_idle(self, limit: float) -> None:
        """Return once nothing is being created, or after ``limit`` seconds."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # comes with the event (CPython gh-86296).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._idle.wait()


@dataclass(frozen=True, slots=True)
class Start:
    """What a sync started from: the stored task, and the writer's unwritten decision if any."""

    entry: Entry
    body: dict[str, Any]
    pending: _Pending | None

    @property
    def status(self) -> dict[str, Any] | None:
        """The decided but unwritten status to start from (a fresh copy); None: the stored
        one."""
        if self.pending is None or self.pending.status is None:
            return None
        value: dict[str, Any] = json.loads(self.pending.status)
        return value


@dataclass(slots=True)
class _Pending:
    """What syncs of one task decided and is not written yet."""

    entry: Entry  # the stored task it was decided for (a namesake is another entry)
    base_rv: str  # the resourceVersion the first unwritten decision started from
    base_status: bytes  # that version's status (canonical): whose write a conflict was
    # The decided status as JSON: a first look at 12,000 new tasks decides their statuses far
    # faster than the client-side rate limit lets them be written, and as dicts they held ~40 MB.
    status: bytes | None = None
    deletes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name: (why, uid)
    events: list[Event] = field(default_factory=list)
    flushing: bool = False

    def empty(self) -> bool:
        return self.status is None and not self.deletes and not self.events


class Writer:
    """Per-task write-behind of status, deletes and Events, with optimistic concurrency."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        queue: WorkQueue[Key],
        gate: CreateGate,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        on_gone: Callable[[Key], None] = lambda key: None,
        writers: int = WRITERS,
        event_queue: int = EVENT_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.store = store
        self.queue = queue
        self.gate = gate
        self.is_leader = is_leader
        self.on_gone = on_gone  # the task no longer exists: forget it everywhere
        self._pending: dict[Key, _Pending] = {}
        self._writes = asyncio.Semaphore(writers)
        self._events: asyncio.Queue[Record] = asyncio.Queue(event_queue)
        self.book = EventBook()
        self.clock = clock
        self._flushes: set[asyncio.Task[None]] = set()
        # Write failures back off per task on their own: a sync that succeeds (it only reads
        # memory) must not reset the back-off of a write that keeps failing.
        self._failures: dict[Key, int] = {}
        self.backoff = queue.backoff  # the same delays, counted apart

    # --- what syncs read and hand over -----------------------------------------------------

    def begin(self, key: Key, entry: Entry, body: dict[str, Any]) -> Start:
        """Where a sync of the task starts: the status decided but not yet written, if any (a
        sync must build on it, not on the older status in the stored object), else ``body``'s.
        Hand the result back to :meth:`submit`."""
        pending = self._pending.get(key)
        if pending is not None and pending.entry is not entry:
            pending = None  # decided for a task that has since been re-created
        return Start(entry, body, pending)

    def submit(
        self,
        key: Key,
        start: Start,
        *,
        status: dict[str, Any] | None,
        deletes: dict[str, tuple[str, str | None]],
        events: list[Event],
    ) -> None:
        """Queue a sync's writes (``status`` None: the status it started from stands)."""
        entry = start.entry
        pending = self._pending.get(key)
        if pending is not None and pending.entry is not entry:
            pending = None
        if pending is None:
            if status is None and not deletes and not events:
                return
            if start.pending is not None:
                # The sync began from a decision that has been written since: it builds on that
                # write, whose resourceVersion is where the earlier decision's writer left it.
                base_rv, base_status = start.pending.base_rv, start.pending.base_status
            else:
                meta = start.body.get("metadata") or {}
                base_rv = str(meta.get("resourceVersion") or "")
                base_status = canonical(start.body.get("status"))
            pending = _Pending(entry=entry, base_rv=base_rv, base_status=base_status)
            self._pending[key] = pending
        if status is not None:
            pending.status = json.dumps(status, separators=(",", ":")).encode()
        for name, what in deletes.items():
            pending.deletes.setdefault(name, what)
        pending.events = _bounded(pending.events + events)
        self._start(key, pending)

    def _start(self, key: Key, pending: _Pending) -> None:
        if not pending.flushing and not pending.empty():
            pending.flushing = True
            flush = asyncio.create_task(self._flush(key, pending), name="nightshift-flush")
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    def flush_all(self) -> None:
        """Write everything still waiting (writes skip while this replica may not write, and
        are kept; call this once it may again)."""
        for key, pending in list(self._pending.items()):
            self._start(key, pending)

    def _retry(self, key: Key, *, at_least: float | None = None) -> float:
        """Sync (and so write) the task again after its write back-off; returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures, random.random())
        if at_least is not None:
            delay = max(delay, at_least)
        self.queue.add_after(key, self.queue.clock() + delay)
        return delay

    def drop(self, key: Key) -> None:
        """Forget what was decided for the task (it is gone)."""
        self._pending.pop(key, None)
        self._failures.pop(key, None)
        self.book.forget(key)

    def drop_all(self) -> None:
        """Forget every unwritten decision (a new term as leader: another leader may have acted
        since, and the stored objects, kept current by the watches, say what it did)."""
        self._pending.clear()

    async def settle(self) -> None:
        """Return once the writes in progress are done and every queued Event is posted (for a
        controller winding down: the posters must still run)."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._events.join()

    @property
    def backlog(self) -> int:
        """Tasks with writes waiting."""
        return len(self._pending)

    # --- writing ----------------------------------------------------------------------------

    async def _flush(self, key: Key, pending: _Pending) -> None:
        try:
            await self.gate.wait_idle(YIELD_MAX)
            async with self._writes:
                await self._write(key, pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug here must not lose the task: log it and let a later sync write again.
            log.exception("writing %s/%s failed", *key)
            metrics.SYNC_ERRORS.inc()
            self._retry(key)
        finally:
            pending.flushing = False

    def _current(self, key: Key, pending: _Pending) -> bool:
        return (
            self._pending.get(key) is pending
            and self.store.get(key) is pending.entry
            and self.is_leader()
        )

    async def _write(self, key: Key, pending: _Pending) -> None:
        namespace, name = key
        while self._current(key, pending):
            if pending.empty():
                del self._pending[key]
                return
            status, deletes, events = pending.status, pending.deletes, pending.events
            pending.deletes, pending.events = {}, []
            if status is not None:
                try:
                    updated = await self.api.patch_status(
                        namespace, name, json.loads(status), pending.base_rv
                    )
                except Conflict as conflict:
                    pending.deletes = deletes | pending.deletes
                    pending.events = _bounded(events + pending.events)
                    log.info("%s (written at %s); reading it again", conflict, pending.base_rv)
                    await self._conflict(key, pending)
                    return
                except ApiError as error:
                    # Keep it all; a later sync (after the back-off) writes it again.
                    pending.deletes = deletes | pending.deletes
                    pending.events = _bounded(events + pending.events)
                    delay = self._retry(key, at_least=error.retry_after)
                    log.warning("%s; retrying in %.1f s", error, delay)
                    metrics.SYNC_ERRORS.inc()
                    return
                if updated is None:
                    # 404: deleted while a watch was down (a DELETED event would have dropped
                    # the entry). Its Events must not be posted.
                    log.info("task %s/%s no longer exists; forgetting it", *key)
                    self._pending.pop(key, None)
                    self.on_gone(key)
                    return
                self._failures.pop(key, None)
                self.store.stored(key, pending.entry, updated)
                pending.base_rv = str(resource_version(updated))
                pending.base_status = canonical(updated.get("status"))
                if pending.status is status:
                    pending.status = None  # written, and no sync has changed it since
            failed: dict[str, tuple[str, str | None]] = {}
            for job, (why, uid) in deletes.items():
                try:
                    # A Job this task's record does not hold (not seen yet, or named by
                    # whoever wrote the status) is deleted only if the task controls it.
                    await self.api.delete_job(namespace, job, uid, owner_uid=pending.entry.uid)
                except ApiError as problem:
                    log.warning("deleting Job %s/%s (%s): %s", namespace, job, why, problem)
                    failed[job] = (why, uid)
            if failed:
                pending.deletes = failed | pending.deletes
                self._retry(key)
            ref = _ref(key, pending.entry.uid, pending.entry.rv)
            for event in events:
                self.post(ref, event)
            if failed:
                return

    async def _conflict(self, key: Key, pending: _Pending) -> None:
        """The task changed since the decision started: read it again, and decide again."""
        namespace, name = key
        try:
            fresh = await self.api.get_task(namespace, name)
        except ApiError as error:
            delay = self._retry(key, at_least=error.retry_after)
            log.warning("%s; retrying in %.1f s", error, delay)
            return
        if fresh is None:
            log.info("task %s/%s no longer exists; forgetting it", *key)
            self._pending.pop(key, None)
            self.on_gone(key)
            return
        metrics.STATUS_CONFLICTS.inc()
        if (fresh.get("metadata") or {}).get("uid") != pending.entry.uid:
            # Re-created under the same name: the new task starts from its own (empty) status.
            log.info("task %s/%s was re-created; its old status is not carried over", *key)
            self._pending.pop(key, None)
        elif canonical(fresh.get("status")) == pending.base_status:
            # Only the spec or metadata changed: decide again on them, from what we decided.
            pending.base_rv = str(resource_version(fresh))
        else:
            log.warning(
                "the status of %s/%s was written by someone else (another replica?); "
                "deciding again from it",
                *key,
            )
            self._pending.pop(key, None)
            # The next sync adopts the Jobs this one created without a word: announce them now
            # (only this process knows its creates succeeded). The rest is decided again.
            ref = _ref(key, pending.entry.uid, resource_version(fresh))
            for event in pending.events:
                if event.starts_a_job:
                    self.post(ref, event)
        queued = self.store.task_event(RESYNC, fresh)
        self.queue.add(queued or key)

    # --- Events -----------------------------------------------------------------------------

    def post(self, ref: dict[str, Any], event: Event) -> None:
        """Post an Event in the background, or count it on an earlier one (nightshift.events);
        when the task posts too many, or too many wait, drop it (and count that)."""
        record = self.book.record(ref, event.type, event.reason, event.message, self.clock())
        if record is None:
            metrics.EVENTS_THROTTLED.inc()
            return
        try:
            self._events.put_nowait(record)
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.inc()

    async def post_events(self) -> None:
        """Post queued Events, forever (run EVENT_POSTERS of these)."""
        while True:
            record = await self._events.get()
            try:
                await self._send(record)
            except ApiError as error:
                log.warning("cannot post Event %s on %s: %s", record.reason, record.ref, error)
            finally:
                self._events.task_done()

    async def _send(self, record: Record) -> None:
        """Bring the server's copy of the Event up to the record: create it, or patch its count.
        One poster at a time per Event: another finds it busy and leaves the latest count to the
        one writing it."""
        if record.busy:
            return
        record.busy = True
        try:
            while record.posted < record.count:
                count = record.count
                namespace = str(record.ref.get("namespace") or "")
                if record.name is not None and await self.api.patch_event(
                    namespace, record.name, count, record.message
                ):
                    record.posted = count
                    continue
                # New, or expired on the server (the API server keeps Events an hour).
                obj: dict[str, Any] = {"metadata": record.ref}
                if record.object_kind is not None:
                    obj["kind"] = record.object_kind
                record.name = await self.api.post_event(
                    obj, record.type, record.reason, record.message, count
                )
                record.posted = count
        finally:
            record.busy = False

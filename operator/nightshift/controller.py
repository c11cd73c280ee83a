"""The scheduler: one heap of wake-up times for all tasks, and workers that sync one task at a time.

Watch events (tasks and our Jobs) update an in-memory view and queue the task; the heap queues it
again when its next slot or retry comes due. A sync reads only memory and creates the Jobs the pure
reconciler asked for; a per-task writer then writes the status, deletes and Events behind the
creates. A resync lists everything afresh after re-lists and outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from nightshift import memory, metrics
from nightshift.jobs import ANNOTATION_RUN_NOW, ANNOTATION_SLOT, LABEL_MANAGED, job_identity
from nightshift.kube import ApiError, KubeApi
from nightshift.models import KIND, SpecError, TaskSpec, TaskStatus, parse_spec, parse_time
from nightshift.reconcile import Event, JobView, Outcome, TaskView, decide, settle
from nightshift.schedule import fire_time, plan_for

__all__ = ["Controller", "Key"]

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)
# Fault injection for the crash tests (never set in production): see tests/integration.
_FAULT = os.environ.get("NIGHTSHIFT_FAULT", "")
# How often the operator re-lists tasks and Jobs itself (see Controller.resync), besides after
# every kopf re-list and every time the API server was unreachable; and how long a kopf re-list
# must be quiet before that.
SWEEP_EVERY = 600.0
SWEEP_QUIET = 2.0
RESYNC = "RESYNC"  # the kind of the events a resync feeds in
# Status patches, deletes and Events are written behind the Job creates: they wait (at most
# YIELD_MAX seconds) while creates are queued or in flight, so that when many tasks are due at once
# the API server spends its time on the Jobs first. WRITERS bounds them in flight.
WRITERS = 8
YIELD_MAX = 5.0


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class _Job:
    """The few facts about a Job that the reconciler reads (a full Job body is ~5 KB)."""

    name: str
    owner_uid: str
    run: str | None
    attempt: int | None
    slot: datetime | None
    created: datetime | None
    finished: Literal["Succeeded", "Failed"] | None
    reason: str | None
    finished_at: datetime | None
    deleting: bool
    run_now_token: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> _Job:
        meta = body.get("metadata") or {}
        refs: list[dict[str, Any]] = meta.get("ownerReferences") or []
        owner = next((r for r in refs if r.get("controller")), {})
        identity = job_identity(body)
        annotations = meta.get("annotations") or {}
        finished, reason, finished_at = _finished(body)
        return cls(
            name=meta.get("name", ""),
            owner_uid=owner.get("uid", ""),
            run=identity[0] if identity else None,
            attempt=identity[1] if identity else None,
            slot=_time(annotations.get(ANNOTATION_SLOT)),
            created=_time(meta.get("creationTimestamp")),
            finished=finished,
            reason=reason,
            finished_at=finished_at,
            deleting=bool(meta.get("deletionTimestamp")),
            run_now_token=annotations.get(ANNOTATION_RUN_NOW),
        )


@dataclass(slots=True)
class _Entry:
    """One task: its latest object as compact JSON (parsed per sync) and its Jobs' facts.

    Keeping JSON text instead of parsed dicts and models is what keeps 10,000 tasks in budget.
    """

    raw: bytes
    uid: str
    rv: int
    seen: int = 0  # the controller's event counter when the task was last heard of
    jobs: dict[str, _Job] = field(default_factory=dict)
    job_seen: dict[str, int] = field(default_factory=dict)  # the same, per Job
    outcomes: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)
    # Decided but not yet written (see Controller._flush): the status, Jobs to delete, Events.
    pending: dict[str, Any] | None = None
    deletes: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    flushing: bool = False

    @classmethod
    def of(cls, body: dict[str, Any]) -> _Entry:
        meta = body.get("metadata") or {}
        return cls(raw=_pack(body), uid=meta.get("uid", ""), rv=_rv(body))

    def replace(self, body: dict[str, Any]) -> None:
        self.raw, self.rv = _pack(body), _rv(body)

    @property
    def body(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.raw)
        return value


def _pack(body: dict[str, Any]) -> bytes:
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)  # large and never read
    return json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode()


class Controller:
    """Holds every task's latest object and Jobs, a heap of wake-ups, and the sync workers."""

    def __init__(
        self,
        api: KubeApi,
        *,
        workers: int = 16,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        is_leader: Callable[[], bool] = lambda: True,
        namespaces: Sequence[str] = (),
        sweep_every: float = SWEEP_EVERY,
    ) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)  # empty: cluster-wide, like the watches
        self.sweep_every = sweep_every
        self.clock = clock
        self.is_leader = is_leader
        self.entries: dict[Key, _Entry] = {}
        self.orphans: dict[str, dict[str, _Job]] = {}  # task uid -> Jobs seen before the task
        self._orphan_seen: dict[str, int] = {}
        self._tick = itertools.count(1)  # orders watch events against resync lists
        self._relisted = asyncio.Event()
        self._last_listing = 0.0
        self._fresh = asyncio.Event()  # cleared while the API server was unreachable
        self._fresh.set()
        self._frozen = False
        api.on_unreachable = self._unreachable
        self._heap: list[tuple[float, int, Key]] = []
        self._next_wake: dict[Key, float] = {}  # the one wake-up per task that is current
        self._background: set[asyncio.Task[None]] = set()
        self._events = asyncio.Semaphore(16)
        self._writes = asyncio.Semaphore(WRITERS)
        self._creating = 0  # Job creates in flight
        self._seq = itertools.count()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._wakeup = asyncio.Event()
        self._workers = workers
        self.ready = asyncio.Event()

    # --- watch input ------------------------------------------------------------------------

    def task_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A ScheduledTask was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind is None:
            self._listed()
        if kind == "DELETED":
            self._forget(key)
            return
        entry = self.entries.get(key)
        if entry is not None and entry.uid != meta.get("uid"):
            entry = None  # deleted and re-created under the same name
        if kind == RESYNC and entry is not None and _rv(body) <= entry.rv:
            entry.seen = next(self._tick)
            return  # nothing new
        if entry is None:
            entry = _Entry.of(body)
            self.entries[key] = entry
            entry.jobs.update(self.orphans.pop(entry.uid, {}))
            seen = self._orphan_seen.pop(entry.uid, 0)
            entry.job_seen.update(dict.fromkeys(entry.jobs, seen))
        elif _rv(body) >= entry.rv:
            entry.replace(body)
        else:
            entry.seen = next(self._tick)
            return  # an older event than the status we wrote ourselves
        entry.seen = next(self._tick)
        metrics.TASKS.set(len(self.entries))
        self.enqueue(key)

    def job_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Job carrying our label changed; file it under its controlling task."""
        meta = body.get("metadata") or {}
        if kind is None:
            self._listed()
        owner = next(
            (
                ref
                for ref in meta.get("ownerReferences") or []
                if ref.get("controller") and ref.get("kind") == KIND
            ),
            None,
        )
        if owner is None:
            return
        key = (meta.get("namespace", ""), owner.get("name", ""))
        entry = self.entries.get(key)
        name = meta.get("name", "")
        if entry is None or entry.uid != owner.get("uid"):
            # Jobs can be listed before their task; keep them until the task arrives.
            uid = owner.get("uid", "")
            bucket = self.orphans.setdefault(uid, {})
            self._orphan_seen[uid] = next(self._tick)
            if kind == "DELETED":
                bucket.pop(name, None)
                if not bucket:
                    self.orphans.pop(uid, None)
                    self._orphan_seen.pop(uid, None)
            else:
                bucket[name] = _Job.of(body)
            return
        if kind == "DELETED":
            entry.jobs.pop(name, None)
            entry.outcomes.pop(name, None)
            entry.job_seen.pop(name, None)
        else:
            previous = entry.jobs.get(name)
            current = _Job.of(body)
            entry.jobs[name] = current
            entry.job_seen[name] = next(self._tick)
            if previous is not None and previous == current:
                return  # nothing the reconciler cares about changed
        self.enqueue(key)

    def _forget(self, key: Key) -> None:
        if self.entries.pop(key, None) is not None:
            with contextlib.suppress(KeyError):
                metrics.ACTIVE_RUNS.remove(*key)
        self._next_wake.pop(key, None)
        metrics.TASKS.set(len(self.entries))

    def _listed(self) -> None:
        """kopf re-lists after a watch expired (410 Gone) or broke; it reports what exists, but
        not what was deleted meanwhile, so a resync follows once the listing is over."""
        self._last_listing = time.monotonic()
        self._relisted.set()

    # --- resync -----------------------------------------------------------------------------

    def _unreachable(self) -> None:
        """A request did not reach the API server: what the watches delivered may be out of date
        (a task deleted or suspended meanwhile), so no sync runs until a resync has succeeded."""
        if self._fresh.is_set():
            log.warning("the API server is unreachable; syncs wait for a resync")
            self._fresh.clear()
        self._relisted.set()

    async def _resyncer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relisted.wait(), timeout=self.sweep_every)
            # After a kopf re-list, wait for it to finish: no listed object for SWEEP_QUIET s.
            while True:
                quiet = time.monotonic() - self._last_listing
                if quiet >= SWEEP_QUIET:
                    break
                await asyncio.sleep(SWEEP_QUIET - quiet)
            self._relisted.clear()
            try:
                await self.resync()
            except ApiError as error:
                retry = 2.0 if not self._fresh.is_set() else 10.0
                log.warning("resync failed: %s; retrying in %.0f s", error, retry)
                await asyncio.sleep(retry)
                self._relisted.set()
                continue
            if not self._fresh.is_set():
                log.info("resync done; syncs resume")
                self._fresh.set()
            # A list of many tasks leaves many MB freed; give them back.
            memory.trim()
            if not self._frozen:
                self._frozen = True
                memory.freeze()  # after the first full load: see memory.freeze

    async def resync(self) -> tuple[int, int]:
        """List every task and Job afresh: take in what changed, forget what no longer exists.

        kopf's re-list after a watch expired (410 Gone) or broke reports what exists but not what
        was deleted meanwhile, and after an outage the operator must not act on what it saw
        before. Only what was last heard of before the lists started can be forgotten: anything
        created after that has produced an event since, so a list that lacks it is merely older.
        Returns (tasks forgotten, Jobs forgotten).
        """
        mark = next(self._tick)
        scopes: Sequence[str | None] = self.namespaces or (None,)
        tasks: set[tuple[str, str, str]] = set()
        jobs: set[tuple[str, str]] = set()
        for namespace in scopes:
            async for page in self.api.list_tasks(namespace):
                for body in page:
                    meta = body.get("metadata") or {}
                    tasks.add(
                        (meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))
                    )
                    self.task_event(RESYNC, body)
            async for page in self.api.list_jobs(namespace, f"{LABEL_MANAGED}=true"):
                for body in page:
                    meta = body.get("metadata") or {}
                    jobs.add((meta.get("namespace", ""), meta.get("name", "")))
                    self.job_event(RESYNC, body)
        gone_tasks = [
            key
            for key, entry in self.entries.items()
            if entry.seen < mark and (*key, entry.uid) not in tasks
        ]
        for key in gone_tasks:
            log.info("task %s/%s was deleted while a watch was down; forgetting it", *key)
            self._forget(key)
        gone_jobs = 0
        for key, entry in self.entries.items():
            stale = [
                name
                for name, seen in entry.job_seen.items()
                if seen < mark and (key[0], name) not in jobs
            ]
            for name in stale:
                log.info("Job %s/%s was deleted while a watch was down", key[0], name)
                entry.jobs.pop(name, None)
                entry.outcomes.pop(name, None)
                entry.job_seen.pop(name, None)
            if stale:
                gone_jobs += len(stale)
                self.enqueue(key)
        live = {uid for *_, uid in tasks}
        for uid in [u for u, seen in self._orphan_seen.items() if seen < mark and u not in live]:
            self.orphans.pop(uid, None)
            self._orphan_seen.pop(uid, None)
        return len(gone_tasks), gone_jobs

    # --- scheduling -------------------------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        """Sync this task soon (deduplicated; re-run after the current sync if one is busy)."""
        if key in self._busy:
            self._again.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def wake_at(self, key: Key, when: datetime) -> None:
        """Sync this task at ``when`` (wall clock); replaces the task's earlier wake-up."""
        stamp = when.timestamp()
        if self._next_wake.get(key) == stamp:
            return
        self._next_wake[key] = stamp
        heapq.heappush(self._heap, (stamp, next(self._seq), key))
        self._wakeup.set()

    @property
    def queue_depth(self) -> int:
        """Wake-ups waiting in the heap."""
        return len(self._heap)

    async def _timer(self) -> None:
        while True:
            self._wakeup.clear()
            now = self.clock().timestamp()
            while self._heap and self._heap[0][0] <= now:
                stamp, _, key = heapq.heappop(self._heap)
                if self._next_wake.get(key) != stamp:
                    continue  # superseded by a later decision, or the task is gone
                del self._next_wake[key]
                metrics.SCHEDULER_LAG.observe(max(0.0, now - stamp))
                self.enqueue(key)
            metrics.QUEUE_DEPTH.set(len(self._heap))
            delay = self._heap[0][0] - now if self._heap else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, delay))

    async def _worker(self) -> None:
        while True:
            await self._fresh.wait()
            key = await self._queue.get()
            if not self._fresh.is_set():
                self._queue.task_done()
                self._queue.put_nowait(key)  # still in _queued: put back for after the resync
                continue
            self._queued.discard(key)
            self._busy.add(key)
            try:
                if self.is_leader():
                    await self.sync(key)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                log.warning("sync of %s/%s: %s; retrying in 10 s", *key, error)
                metrics.SYNC_ERRORS.inc()
                self.wake_at(key, datetime.fromtimestamp(time.time() + 10, UTC))
            except Exception:
                # One task's trouble must never stop the others: log, back off, try again.
                log.exception("sync of %s/%s failed; retrying in 10 s", *key)
                metrics.SYNC_ERRORS.inc()
                self.wake_at(key, datetime.fromtimestamp(time.time() + 10, UTC))
            finally:
                self._busy.discard(key)
                self._queue.task_done()
                if key in self._again:
                    self._again.discard(key)
                    self.enqueue(key)

    async def run(self) -> None:
        """Run the timer and the workers until cancelled."""
        tasks = [
            asyncio.create_task(self._timer(), name="nightshift-timer"),
            asyncio.create_task(self._resyncer(), name="nightshift-resync"),
        ]
        tasks += [
            asyncio.create_task(self._worker(), name=f"nightshift-worker-{i}")
            for i in range(self._workers)
        ]
        self.ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def resync_all(self) -> None:
        """Queue every task (used when this replica becomes the leader).

        Writes decided during an earlier term and never made are dropped: another leader may have
        acted since, and the stored objects (kept current by the watches) say what it did.
        """
        for key, entry in list(self.entries.items()):
            entry.pending, entry.deletes, entry.events = None, {}, []
            self.enqueue(key)

    # --- one sync ---------------------------------------------------------------------------

    async def _job_views(self, entry: _Entry, namespace: str) -> tuple[JobView, ...]:
        views = []
        for name, job in list(entry.jobs.items()):
            if job.deleting or job.owner_uid != entry.uid or job.run is None:
                continue
            assert job.attempt is not None
            exit_code = message = None
            if job.finished is not None:
                if name not in entry.outcomes:
                    entry.outcomes[name] = await self.api.pod_outcome(namespace, name)
                exit_code, message = entry.outcomes[name]
            views.append(
                JobView(
                    name=name,
                    run=job.run,
                    attempt=job.attempt,
                    slot=job.slot,
                    created=job.created,
                    finished=job.finished,
                    reason=job.reason,
                    finished_at=job.finished_at,
                    exit_code=exit_code,
                    message=message,
                    run_now_token=job.run_now_token,
                )
            )
        return tuple(views)

    def _post(self, task: dict[str, Any], event: Event) -> None:
        """Post an Event in the background: Events must not hold up the next task's Job."""

        async def post() -> None:
            async with self._events:
                with contextlib.suppress(ApiError):
                    await self.api.post_event(task, event.type, event.reason, event.message)

        self._spawn(post())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def _flush_soon(self, key: Key, entry: _Entry) -> None:
        if not entry.flushing:
            entry.flushing = True
            self._spawn(self._flush(key, entry))

    async def _yield_to_creates(self) -> None:
        """Wait while Jobs are being created (or are queued to be), for at most YIELD_MAX s."""
        deadline = time.monotonic() + YIELD_MAX
        # Polling: "nothing queued and nothing in flight" is two counters, not one Event.
        while (self._creating or self._queued) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _flush(self, key: Key, entry: _Entry) -> None:
        """Write what syncs of this task decided, in order: status, then deletes, then Events.

        Deletes wait for the status: a Job is pruned only once its run's record is stored, so a
        crash in between can never make a slot look unstarted with its Job gone.
        """
        namespace, name = key
        try:
            await self._yield_to_creates()
            async with self._writes:
                while self.entries.get(key) is entry and self.is_leader():
                    status, deletes, events = entry.pending, entry.deletes, entry.events
                    if status is None and not deletes and not events:
                        break
                    # The status stays pending while it is written: a sync meanwhile must start
                    # from it, not from the older status in the stored object.
                    entry.deletes, entry.events = {}, []
                    if status is not None:
                        try:
                            updated = await self.api.patch_status(namespace, name, status)
                        except ApiError as error:
                            # Keep it all for the next sync, which comes in 10 s.
                            entry.deletes = deletes | entry.deletes
                            entry.events = events + entry.events
                            log.warning("%s; retrying in 10 s", error)
                            metrics.SYNC_ERRORS.inc()
                            self.wake_at(key, datetime.fromtimestamp(time.time() + 10, UTC))
                            return
                        if updated is None:
                            # 404: deleted while a watch was down (the DELETED event would have
                            # removed the entry). Its Events must not be posted.
                            if self.entries.get(key) is entry:  # not a re-created namesake
                                log.info("task %s/%s no longer exists; forgetting it", *key)
                                self._forget(key)
                            return
                        if _rv(updated) >= entry.rv:
                            entry.replace(updated)
                            entry.seen = next(self._tick)
                        if entry.pending is status:
                            entry.pending = None  # written, and no sync has changed it since
                    for job in deletes:
                        try:
                            await self.api.delete_job(namespace, job)
                        except ApiError as problem:
                            log.warning("%s", problem)
                    ref = {
                        "metadata": {
                            "name": name,
                            "namespace": namespace,
                            "uid": entry.uid,
                            "resourceVersion": str(entry.rv),
                        }
                    }
                    for event in events:
                        self._post(ref, event)
        finally:
            entry.flushing = False

    async def sync(self, key: Key) -> None:
        """Reconcile one task: decide, create Jobs, and hand the status, deletes and Events to
        the task's writer (_flush)."""
        entry = self.entries.get(key)
        if entry is None:
            return
        namespace, name = key
        body = entry.body
        meta = body["metadata"]
        spec: TaskSpec | None = None
        error: SpecError | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as problem:
            error = problem
        try:
            status = TaskStatus.model_validate(
                entry.pending if entry.pending is not None else body.get("status") or {}
            )
        except ValueError:
            log.warning("status of %s/%s is unreadable; starting from an empty one", *key)
            status = TaskStatus()
        view = TaskView(
            namespace=namespace,
            name=name,
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            created=_time(meta.get("creationTimestamp")) or self.clock(),
            spec=spec,
            spec_error=error,
            status=status,
            run_now=(meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW),
            jobs=await self._job_views(entry, namespace),
        )
        now = self.clock()
        decision = decide(view, now)

        if not self.is_leader():
            return  # lost the lease while deciding: the new leader redoes this sync
        outcomes: list[Outcome] = []
        if decision.create:
            self._creating += len(decision.create)
            try:
                results = await asyncio.gather(
                    *(self.api.create_job(namespace, c.manifest, view.uid) for c in decision.create)
                )
            finally:
                self._creating -= len(decision.create)
            for create, (result, message, job) in zip(decision.create, results, strict=True):
                outcomes.append(Outcome(create.name, result, message))
                if job is not None:
                    entry.jobs[create.name] = _Job.of(job)  # do not wait for the watch
                    entry.job_seen[create.name] = next(self._tick)
                slot = _time(create.manifest["metadata"]["annotations"].get(ANNOTATION_SLOT))
                if result == "created" and slot is not None and create.attempt == 1 and spec:
                    due = fire_time(plan_for(spec, namespace, name), slot)
                    metrics.FIRE_SKEW.observe(max(0.0, (self.clock() - due).total_seconds()))
                if create.attempt > 1 and result == "created":
                    metrics.RETRIES.inc()
            decision = settle(view, decision, outcomes, self.clock())
            if _FAULT == "exit-after-create" and any(o.result == "created" for o in outcomes):
                # Test seam: die like kill -9 between Job create and status write.
                os._exit(137)

        new_status = decision.status.model_dump(mode="json")
        if new_status != status.model_dump(mode="json"):
            entry.pending = new_status
        for delete in decision.delete:
            entry.deletes.setdefault(delete.name, delete.why)
        entry.events += decision.events
        if entry.pending is not None or entry.deletes or entry.events:
            self._flush_soon(key, entry)
        seen = {(r.run, r.attempt, r.result) for r in status.runs}
        for record in decision.status.runs:
            if (record.run, record.attempt, record.result) not in seen:
                metrics.RUNS.labels(result=record.result.value).inc()
        metrics.ACTIVE_RUNS.labels(namespace=namespace, task=name).set(decision.status.activeCount)
        if decision.wake_at is not None:
            self.wake_at(key, decision.wake_at)
        else:
            self._next_wake.pop(key, None)


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    try:
        return parse_time(str(text))
    except ValueError:
        return None


def _finished(job: dict[str, Any]) -> tuple[Any, str | None, datetime | None]:
    """("Succeeded" | "Failed" | None, reason, finish time) from a Job's terminal condition."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded", cond.get("reason"), _time(cond.get("lastTransitionTime"))
        if cond.get("type") == "Failed":
            return "Failed", cond.get("reason"), _time(cond.get("lastTransitionTime"))
    return None, None, None

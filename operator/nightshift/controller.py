"""The scheduler: one heap of wake-up times for all tasks, and workers that sync one task at a time.

Watch events (tasks and our Jobs) update an in-memory view and queue the task; the heap queues it
again when its next slot or retry comes due. A sync reads only memory, then makes the API calls the
pure reconciler asked for, concurrently, and writes status once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nightshift import metrics
from nightshift.jobs import ANNOTATION_RUN_NOW, ANNOTATION_SLOT, job_identity
from nightshift.kube import ApiError, KubeApi
from nightshift.models import KIND, SpecError, TaskSpec, TaskStatus, parse_spec, parse_time
from nightshift.reconcile import JobView, Outcome, TaskView, decide, settle

__all__ = ["Controller", "Key"]

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)
# Fault injection for the crash tests (never set in production): see tests/integration.
_FAULT = os.environ.get("NIGHTSHIFT_FAULT", "")


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass(slots=True)
class _Entry:
    body: dict[str, Any]
    spec: TaskSpec | None = None
    error: SpecError | None = None
    parsed_generation: int | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)


class Controller:
    """Holds every task's latest object and Jobs, a heap of wake-ups, and the sync workers."""

    def __init__(
        self,
        api: KubeApi,
        *,
        workers: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.api = api
        self.clock = clock
        self.is_leader = is_leader
        self.entries: dict[Key, _Entry] = {}
        self.orphans: dict[str, dict[str, dict[str, Any]]] = {}  # task uid -> Jobs seen first
        self._heap: list[tuple[float, int, Key]] = []
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
        if kind == "DELETED":
            self.entries.pop(key, None)
            metrics.TASKS.set(len(self.entries))
            return
        entry = self.entries.get(key)
        if entry is not None and entry.body["metadata"].get("uid") != meta.get("uid"):
            entry = None  # deleted and re-created under the same name
        if entry is None:
            entry = _Entry(body=body)
            self.entries[key] = entry
            uid = meta.get("uid", "")
            entry.jobs.update(self.orphans.pop(uid, {}))
        elif _rv(body) >= _rv(entry.body):
            entry.body = body
        else:
            return  # an older event than the status we wrote ourselves
        metrics.TASKS.set(len(self.entries))
        self.enqueue(key)

    def job_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Job carrying our label changed; file it under its controlling task."""
        meta = body.get("metadata") or {}
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
        if entry is None or entry.body["metadata"].get("uid") != owner.get("uid"):
            # Jobs can be listed before their task; keep them until the task arrives.
            bucket = self.orphans.setdefault(owner.get("uid", ""), {})
            if kind == "DELETED":
                bucket.pop(meta.get("name", ""), None)
            else:
                bucket[meta.get("name", "")] = body
            return
        name = meta.get("name", "")
        if kind == "DELETED":
            entry.jobs.pop(name, None)
            entry.outcomes.pop(name, None)
        else:
            previous = entry.jobs.get(name)
            entry.jobs[name] = body
            if previous is not None and _finished(previous) == _finished(body):
                return  # nothing the reconciler cares about changed
        self.enqueue(key)

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
        """Sync this task at ``when`` (wall clock)."""
        heapq.heappush(self._heap, (when.timestamp(), next(self._seq), key))
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
                _, _, key = heapq.heappop(self._heap)
                if key in self.entries:
                    self.enqueue(key)
            metrics.QUEUE_DEPTH.set(len(self._heap))
            delay = self._heap[0][0] - now if self._heap else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, delay))

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
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
        tasks = [asyncio.create_task(self._timer(), name="nightshift-timer")]
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
        """Queue every task (used when this replica becomes the leader)."""
        for key in list(self.entries):
            self.enqueue(key)

    # --- one sync ---------------------------------------------------------------------------

    def _spec(self, entry: _Entry) -> tuple[TaskSpec | None, SpecError | None]:
        generation = entry.body["metadata"].get("generation")
        if entry.parsed_generation != generation or (entry.spec is None and entry.error is None):
            try:
                entry.spec, entry.error = parse_spec(entry.body.get("spec")), None
            except SpecError as error:
                entry.spec, entry.error = None, error
            entry.parsed_generation = generation
        return entry.spec, entry.error

    async def _job_views(self, entry: _Entry, namespace: str) -> tuple[JobView, ...]:
        views = []
        uid = entry.body["metadata"].get("uid")
        for name, job in list(entry.jobs.items()):
            meta = job.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            owner_ok = any(
                r.get("controller") and r.get("uid") == uid
                for r in meta.get("ownerReferences") or []
            )
            identity = job_identity(job)
            if not owner_ok or identity is None:
                continue
            finished, reason, finished_at = _finished(job)
            exit_code = message = None
            if finished is not None:
                if name not in entry.outcomes:
                    entry.outcomes[name] = await self.api.pod_outcome(namespace, name)
                exit_code, message = entry.outcomes[name]
            annotations = meta.get("annotations") or {}
            slot_text = annotations.get(ANNOTATION_SLOT)
            views.append(
                JobView(
                    name=name,
                    run=identity[0],
                    attempt=identity[1],
                    slot=_time(slot_text),
                    created=_time(meta.get("creationTimestamp")),
                    finished=finished,
                    reason=reason,
                    finished_at=finished_at,
                    exit_code=exit_code,
                    message=message,
                    run_now_token=annotations.get(ANNOTATION_RUN_NOW),
                )
            )
        return tuple(views)

    async def sync(self, key: Key) -> None:
        """Reconcile one task: decide, create/delete Jobs, post Events, write status once."""
        entry = self.entries.get(key)
        if entry is None:
            return
        namespace, name = key
        body = entry.body
        meta = body["metadata"]
        spec, error = self._spec(entry)
        try:
            status = TaskStatus.model_validate(body.get("status") or {})
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
            results = await asyncio.gather(
                *(self.api.create_job(namespace, c.manifest, view.uid) for c in decision.create)
            )
            for create, (result, message, job) in zip(decision.create, results, strict=True):
                outcomes.append(Outcome(create.name, result, message))
                if job is not None:
                    entry.jobs[create.name] = job  # do not wait for the watch to see it
                if result in ("created", "adopted"):
                    fire_at = create.manifest["metadata"]["annotations"].get(ANNOTATION_SLOT)
                    slot = _time(fire_at)
                    if slot is not None and create.attempt == 1:
                        metrics.FIRE_SKEW.observe(max(0.0, (self.clock() - slot).total_seconds()))
                if create.attempt > 1 and result == "created":
                    metrics.RETRIES.inc()
            decision = settle(view, decision, outcomes, self.clock())
            if _FAULT == "exit-after-create" and any(o.result == "created" for o in outcomes):
                # Test seam: die like kill -9 between Job create and status write.
                os._exit(137)

        for delete in decision.delete:
            try:
                await self.api.delete_job(namespace, delete.name)
            except ApiError as problem:
                log.warning("%s", problem)

        new_status = decision.status.model_dump(mode="json")
        if new_status != status.model_dump(mode="json"):
            updated = await self.api.patch_status(namespace, name, new_status)
            current = self.entries.get(key)
            if updated is not None and current is not None and _rv(updated) >= _rv(current.body):
                current.body = updated
        seen = {(r.run, r.attempt, r.result) for r in status.runs}
        for record in decision.status.runs:
            if (record.run, record.attempt, record.result) not in seen:
                metrics.RUNS.labels(result=record.result.value).inc()
        for event in decision.events:
            await self.api.post_event(body, event.type, event.reason, event.message)
        metrics.ACTIVE_RUNS.labels(namespace=namespace, task=name).set(decision.status.activeCount)
        if decision.wake_at is not None:
            self.wake_at(key, decision.wake_at)


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

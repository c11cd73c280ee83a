"""Backfills in the operator: their objects in memory, a work queue of their own, and the sync
that plans and runs each one through the pure ``nightshift.backfill``.

A Backfill is planned from fresh reads (the task, its Jobs and its other Backfills, listed from
the API rather than taken from memory a watch may not have filled yet), and the plan is written
before any Job is created. Running it reads memory like a task's sync: the Job watch brings the
Jobs' progress, which queues the Backfill again, and so do changes of its task (for
overlapPolicy Wait). Its status is written at once, conditionally on the resourceVersion the
sync started from; a conflict reads it again and decides again, adopting the Jobs it created.
Deleting a Backfill deletes its Jobs (running ones too): the Backfill is the record of its runs.

With shards every shard's controller has a Backfiller and sees every Backfill, but a Backfill
belongs to the shard of its task (``owns``, the task's uid): only that one plans, runs and writes
it. Its Jobs carry the task's shard-bucket label (they are the task's), so that shard's Job watch
brings them. A Backfill whose task does not exist is reported by the shard its own uid falls in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from nightshift import metrics
from nightshift.api import ApiError, Conflict, KubeApi
from nightshift.backfill import BackfillView, TaskFacts, decide_backfill, settle_backfill
from nightshift.guard import Refusal
from nightshift.jobs import ANNOTATION_BACKFILL, LABEL_TASK, task_label_value
from nightshift.models import (
    BACKFILL_KIND,
    BACKFILL_PLURAL,
    CALENDAR_PLURAL,
    BackfillSpec,
    BackfillStatus,
    CalendarSpec,
    SpecError,
    TaskSpec,
    TaskStatus,
    parse_backfill,
    parse_calendar,
    parse_spec,
    read_time,
)
from nightshift.reconcile import CreateJob, Event, JobView, Outcome
from nightshift.store import RESYNC, JobRecord, Key, Store, resource_version
from nightshift.workqueue import WorkQueue

__all__ = ["Backfiller"]

log = logging.getLogger(__name__)

WORKERS = 2  # Backfills are few; their syncs must not wait behind thousands of tasks, nor them
CalendarOf = Callable[[str, TaskSpec | None], tuple[CalendarSpec | None, tuple[str, str] | None]]


@dataclass(slots=True)
class _Known:
    raw: bytes
    uid: str
    rv: int
    task: str | None  # spec.taskRef.name
    seen: int


def _task_ref(body: dict[str, Any]) -> str | None:
    spec = body.get("spec")
    ref = spec.get("taskRef") if isinstance(spec, dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


def _key(body: dict[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class Backfiller:
    """Every Backfill the operator knows, and the workers that plan and run them."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        *,
        calendar_of: CalendarOf,
        post: Callable[[dict[str, Any], Event], None],
        clock: Callable[[], datetime],
        is_leader: Callable[[], bool],
        fresh: asyncio.Event,
        owns: Callable[[str], bool] = lambda _: True,
        refused: Callable[[str, str, TaskSpec, Any], Refusal | None] = lambda *_: None,
    ) -> None:
        """``owns(uid)``: whether a task of that uid is this controller's (its shard's);
        ``refused(namespace, name, spec, jobTemplate)``: the guard's refusal of a task's Jobs."""
        self.api = api
        self.store = store  # the tasks and their Jobs (the controller's memory)
        self.calendar_of = calendar_of
        self.post = post
        self.clock = clock
        self.is_leader = is_leader
        self.fresh = fresh
        self.owns = owns
        self.refused = refused
        self.queue: WorkQueue[Key] = WorkQueue(clock=lambda: self.clock().timestamp())
        self._known: dict[Key, _Known] = {}
        self._by_task: dict[Key, set[Key]] = {}
        self._cleanups: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._known)

    # --- watch input ------------------------------------------------------------------------

    def event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Backfill was listed, added, modified, deleted or resynced."""
        key = _key(body)
        meta = body.get("metadata") or {}
        if kind == "DELETED":
            gone = self._forget(key)
            if gone is not None:
                self._delete_jobs(key[0], gone)
            return
        known = self._known.get(key)
        rv = resource_version(body)
        if known is not None and known.uid == meta.get("uid") and rv <= known.rv:
            known.seen = self.store.tick()
            return  # nothing new (or older than our own write)
        if known is not None and known.uid != meta.get("uid"):
            self._forget(key)
        packed = json.dumps(body, separators=(",", ":")).encode()
        task = _task_ref(body)
        self._known[key] = _Known(packed, meta.get("uid", ""), rv, task, self.store.tick())
        if task is not None:
            self._by_task.setdefault((key[0], task), set()).add(key)
        self.queue.add(key)

    def _forget(self, key: Key) -> _Known | None:
        known = self._known.pop(key, None)
        self.queue.forget(key)
        if known is not None and known.task is not None:
            users = self._by_task.get((key[0], known.task), set())
            users.discard(key)
            if not users:
                self._by_task.pop((key[0], known.task), None)
        return known

    def sync_all(self) -> None:
        """Queue every Backfill (this replica just became the leader)."""
        for key in sorted(self._known):
            self.queue.add(key)

    def task_changed(self, task: Key) -> None:
        """The task changed (its status: its own runs, for overlapPolicy Wait) or went away."""
        for key in sorted(self._by_task.get(task, ())):
            self.queue.add(key)

    def job_changed(self, body: dict[str, Any]) -> None:
        """A Job of a Backfill changed: sync that Backfill."""
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        name = annotations.get(ANNOTATION_BACKFILL)
        if name:
            key = ((body.get("metadata") or {}).get("namespace", ""), str(name))
            if key in self._known:
                self.queue.add(key)

    def resync_done(self, mark: int, listed: set[Key]) -> None:
        """Forget the Backfills a full list (begun at ``mark``) no longer shows, delete their
        Jobs, and delete the Jobs of Backfills that were deleted while no one watched."""
        for key in [k for k, b in self._known.items() if b.seen < mark and k not in listed]:
            gone = self._forget(key)
            if gone is not None:
                self._delete_jobs(key[0], gone)
        live = {b.uid for b in self._known.values()}
        for (namespace, _), entry in list(self.store.entries.items()):
            orphans = [j for j in entry.jobs.values() if j.backfill and j.backfill not in live]
            for job in orphans:
                self._delete_job(namespace, job, "its Backfill no longer exists")

    def _delete_jobs(self, namespace: str, gone: _Known) -> None:
        """The Backfill was deleted: its runs are cancelled and its Jobs deleted."""
        if gone.task is None:
            return
        entry = self.store.get((namespace, gone.task))
        for job in list(entry.jobs.values()) if entry is not None else []:
            if job.backfill == gone.uid:
                self._delete_job(namespace, job, "its Backfill was deleted")

    def _delete_job(self, namespace: str, job: JobRecord, why: str) -> None:
        if not self.is_leader() or job.deleting:
            return

        async def delete() -> None:
            try:
                await self.api.delete_job(namespace, job.name, job.uid)
                log.info("deleted Job %s/%s: %s", namespace, job.name, why)
            except ApiError as error:
                log.warning("deleting Job %s/%s (%s): %s", namespace, job.name, why, error)

        task = asyncio.get_running_loop().create_task(delete(), name="nightshift-backfill-delete")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # --- running ----------------------------------------------------------------------------

    async def run_timer(self) -> None:
        """Move the Backfills' wake-ups (retry times, rechecks) into their queue, for ever."""
        await self.queue.run_timer(tick=5.0)

    async def worker(self) -> None:
        while True:
            await self.fresh.wait()
            key = await self.queue.get()
            try:
                if self.is_leader() and self.fresh.is_set():
                    async with asyncio.timeout(60):
                        await self.sync(key)
                self.queue.succeeded(key)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                delay = self.queue.retry(key, at_least=error.retry_after)
                log.warning("sync of backfill %s/%s: %s; retrying in %.1f s", *key, error, delay)
                metrics.SYNC_ERRORS.inc()
            except Exception:
                # One Backfill's trouble must never stop the others (nor the tasks).
                delay = self.queue.retry(key)
                log.exception("sync of backfill %s/%s failed; retrying in %.1f s", *key, delay)
                metrics.SYNC_ERRORS.inc()
            finally:
                self.queue.done(key)

    # --- one sync ---------------------------------------------------------------------------

    async def sync(self, key: Key) -> None:
        """Plan or advance one Backfill, create its Jobs, write its status and Events."""
        known = self._known.get(key)
        if known is None:
            return
        body: dict[str, Any] = json.loads(known.raw)
        meta = body.get("metadata") or {}
        spec: BackfillSpec | None = None
        error: SpecError | None = None
        try:
            spec = parse_backfill(body.get("spec"))
        except SpecError as problem:
            error = problem
        try:
            status = BackfillStatus.model_validate(body.get("status") or {})
        except ValueError:
            log.warning("status of backfill %s/%s is unreadable; starting afresh", *key)
            status = BackfillStatus()
        if status.phase in ("Succeeded", "Failed", "DryRun"):
            return  # done
        task: TaskFacts | None = None
        jobs: tuple[JobView, ...] = ()
        others: tuple[tuple[str, BackfillStatus], ...] = ()
        if spec is None:
            if not self.owns(known.uid):
                return  # reported by the shard of the Backfill's own uid
        elif status.plannedAt is None:
            facts = await self._fresh_facts(key, spec, known.uid)
            if facts is None:
                return  # its task is another shard's
            task, jobs, others = facts
        else:
            if status.taskUID is not None and not self.owns(status.taskUID):
                return  # its task is another shard's
            task, jobs = await self._facts_from_memory(key, spec)
        view = BackfillView(
            namespace=key[0],
            name=key[1],
            uid=known.uid,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            spec_error=error,
            status=status,
            task=task,
            jobs=jobs,
            others=others,
        )
        now = self.clock()
        decision = decide_backfill(view, now)
        if not self.is_leader():
            return
        if decision.create:
            assert task is not None
            outcomes = await self._create(key[0], task, decision.create)
            decision = settle_backfill(view, decision, outcomes, self.clock())
        meta_ref: dict[str, str] = {
            "name": key[1],
            "namespace": key[0],
            "uid": known.uid,
            "resourceVersion": str(known.rv),
        }
        ref: dict[str, Any] = {"kind": BACKFILL_KIND, "metadata": meta_ref}
        written = decision.status.model_dump(mode="json", exclude_none=True)
        if written != status.model_dump(mode="json", exclude_none=True):
            rv = str(meta.get("resourceVersion") or "")
            try:
                updated = await self.api.patch_object_status(
                    BACKFILL_PLURAL, key[0], key[1], written, rv
                )
            except Conflict:
                # Changed since the sync began (another replica took the shard, say): read it
                # again and decide again. The Jobs just created are adopted then, by their
                # names and silently, so their start is announced here, once.
                for event in decision.events:
                    if event.starts_a_job:
                        self.post(ref, event)
                fresh = await self.api.get_object(BACKFILL_PLURAL, key[0], key[1])
                if fresh is None:
                    self._forget(key)
                else:
                    self.event(RESYNC, fresh)
                    self.queue.add(key)
                return
            if updated is None:
                self._forget(key)
                return
            self.event(RESYNC, updated)
            if key in self._known:
                meta_ref["resourceVersion"] = str(self._known[key].rv)
        for event in decision.events:
            self.post(ref, event)
        for delete in decision.delete:
            with contextlib.suppress(ApiError):
                await self.api.delete_job(key[0], delete.name)
        if status.plannedAt is None and decision.status.plannedAt is not None:
            self.queue.add(key)  # planned and written: start running right away
        if decision.wake_at is not None:
            self.queue.add_after(key, decision.wake_at.timestamp())

    def _task_facts(self, namespace: str, body: dict[str, Any]) -> TaskFacts:
        meta = body.get("metadata") or {}
        spec: TaskSpec | None = None
        problem: str | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as error:
            problem = str(error)
        else:
            refusal = self.refused(
                namespace, meta.get("name", ""), spec, (body.get("spec") or {}).get("jobTemplate")
            )
            if refusal is not None:
                # Its runs would be the task's Jobs: a task the guard refuses gets none, by a
                # Backfill either.
                spec, problem = None, f"refused ({refusal.reason}): {refusal.message}"
        try:
            status = TaskStatus.model_validate(body.get("status") or {})
        except ValueError:
            status = TaskStatus()
        calendar, calendar_problem = self.calendar_of(namespace, spec)
        return TaskFacts(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            created=read_time(meta.get("creationTimestamp")) or self.clock(),
            spec=spec,
            spec_error=problem,
            status=status,
            calendar=calendar,
            calendar_problem=calendar_problem,
            labels=meta.get("labels") or {},
        )

    async def _fresh_facts(
        self, key: Key, spec: BackfillSpec, uid: str
    ) -> (
        tuple[TaskFacts | None, tuple[JobView, ...], tuple[tuple[str, BackfillStatus], ...]] | None
    ):
        """The task, its Jobs and its other Backfills as the API has them now (to plan from);
        None when the task is another shard's (``uid``: the Backfill's, for a missing task)."""
        namespace = key[0]
        body = await self.api.get_task(namespace, spec.taskRef.name)
        if body is None:
            return (None, (), ()) if self.owns(uid) else None
        if not self.owns(str((body.get("metadata") or {}).get("uid") or "")):
            return None
        task = self._task_facts(namespace, body)
        if task.spec is not None and task.spec.calendarRef is not None:
            # The Calendar decides which slots exist: read it afresh too.
            name = task.spec.calendarRef.name
            found = await self.api.get_object(CALENDAR_PLURAL, namespace, name)
            calendar: CalendarSpec | None = None
            problem: tuple[str, str] | None = None
            if found is None:
                problem = ("CalendarNotFound", f'calendar "{name}" not found in {namespace}')
            else:
                try:
                    calendar = parse_calendar(found.get("spec") or {})
                except SpecError as error:
                    problem = ("InvalidCalendar", f'calendar "{name}": {error}')
            task = replace(task, calendar=calendar, calendar_problem=problem)
        selector = f"{LABEL_TASK}={task_label_value(task.name)}"
        jobs: list[JobView] = []
        async for page in self.api.list_jobs(namespace, selector):
            for found in page:
                record = JobRecord.of(found)
                if record.owner_uid == task.uid and record.run is not None:
                    jobs.append(_view(record))
        others: list[tuple[str, BackfillStatus]] = []
        async for other in self._list(namespace):
            if _task_ref(other) != task.name or _key(other) == key:
                continue
            with contextlib.suppress(ValueError):
                others.append(
                    (_key(other)[1], BackfillStatus.model_validate(other.get("status") or {}))
                )
        return task, tuple(jobs), tuple(others)

    async def _list(self, namespace: str) -> AsyncIterator[dict[str, Any]]:
        async for page in self.api.list_objects(BACKFILL_PLURAL, namespace):
            for body in page:
                yield body

    async def _facts_from_memory(
        self, key: Key, spec: BackfillSpec
    ) -> tuple[TaskFacts | None, tuple[JobView, ...]]:
        """The task and its Jobs as the watches delivered them; reads the exit code of this
        Backfill's newly finished Jobs (a read that fails fails the sync, to be retried)."""
        task_key = (key[0], spec.taskRef.name)
        entry = self.store.get(task_key)
        if entry is None:
            return None, ()
        task = self._task_facts(key[0], entry.body)
        backfill_uid = self._known[key].uid
        views = []
        for record in list(entry.jobs.values()):
            if record.owner_uid != task.uid or record.run is None or record.deleting:
                continue
            current = record
            if current.backfill == backfill_uid and current.finished and current.outcome is None:
                outcome = await self.api.pod_outcome(key[0], current.name, current.uid)
                self.store.set_outcome(task_key, current, outcome)
                current = replace(current, outcome=outcome)
            views.append(_view(current))
        return task, tuple(views)

    async def _create(
        self, namespace: str, task: TaskFacts, creates: Sequence[CreateJob]
    ) -> list[Outcome]:
        """Create the Jobs in order; a transient error fails the sync (retried, then adopted)."""
        outcomes = []
        for create in creates:
            kind, message, job = await self.api.create_job(namespace, create.manifest, task.uid)
            outcomes.append(Outcome(create.name, kind, message))
            if job is not None:
                self.store.job_created((namespace, task.name), job)
        return outcomes


def _view(record: JobRecord) -> JobView:
    """A Job as the Backfill sees it: every Job of the task, the schedule's and Backfills'."""
    return record.view()

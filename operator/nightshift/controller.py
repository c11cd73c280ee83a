"""The controller: watch events in, Jobs and status out, one task sync at a time per task.

Watch events (tasks and our Jobs) update the :class:`~nightshift.store.Store` and queue the task;
the :class:`~nightshift.workqueue.WorkQueue`'s timer queues it again when its next slot or retry
comes due. A worker's sync reads only memory, lets the pure reconciler decide, creates the Jobs it
asked for, and hands the status, deletes and Events to the :class:`~nightshift.writer.Writer`.
A resync lists everything afresh after re-lists and outages. Every long-lived part runs under the
:class:`~nightshift.supervise.Supervisor`, which also answers the liveness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from nightshift import memory, metrics
from nightshift.api import ApiError, KubeApi
from nightshift.backfiller import WORKERS as BACKFILL_WORKERS
from nightshift.backfiller import Backfiller
from nightshift.jobs import ANNOTATION_RUN_NOW, ANNOTATION_SLOT, LABEL_MANAGED
from nightshift.models import (
    BACKFILL_PLURAL,
    CALENDAR_PLURAL,
    GROUP,
    CalendarSpec,
    SpecError,
    TaskSpec,
    TaskStatus,
    parse_calendar,
    parse_spec,
    read_time,
)
from nightshift.reconcile import CreateJob, JobView, Outcome, TaskView, decide, settle
from nightshift.schedule import fire_time, plan_for
from nightshift.store import RESYNC, Calendars, Entry, Key, Store
from nightshift.supervise import Supervisor
from nightshift.workqueue import WorkQueue
from nightshift.writer import EVENT_POSTERS, CreateGate, Writer

__all__ = ["RESYNC", "Controller", "Key"]

log = logging.getLogger(__name__)
# How often the operator re-lists tasks and Jobs itself (see Controller.resync), besides after
# every kopf re-list and every time the API server was unreachable; and how long a kopf re-list
# must be quiet before that.
SWEEP_EVERY = 600.0
SWEEP_QUIET = 2.0
# A sync is a few requests, each with its own timeout; one that takes longer than this is stuck.
SYNC_TIMEOUT = 60.0
# Liveness: the timer beats at least every TICK s and must not miss TIMER_LIMIT s; queued work
# must be taken by some worker within STUCK s (while the API server is reachable).
TICK = 5.0
TIMER_LIMIT = 15.0
STUCK = 30.0


class Controller:
    """The store, the work queue, the writer and the sync workers of one operator process."""

    def __init__(
        self,
        api: KubeApi,
        *,
        workers: int = 16,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        is_leader: Callable[[], bool] = lambda: True,
        namespaces: Sequence[str] = (),
        sweep_every: float = SWEEP_EVERY,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)  # empty: cluster-wide, like the watches
        self.sweep_every = sweep_every
        self.clock = clock
        self.is_leader = is_leader
        self.supervisor = supervisor or Supervisor()
        self.store = Store()
        self.calendars = Calendars(self.store.tick)
        self._missing_kinds: set[str] = set()  # resource types found not installed (logged once)
        self.gate = CreateGate(lambda: len(self.queue))
        self.queue: WorkQueue[Key] = WorkQueue(
            clock=lambda: self.clock().timestamp(), on_change=self.gate.update
        )
        self.writer = Writer(
            api, self.store, self.queue, self.gate, is_leader=is_leader, on_gone=self.forget
        )
        self._workers = workers
        self._relisted = asyncio.Event()
        self._last_listing = 0.0
        self._fresh = asyncio.Event()  # cleared while the API server was unreachable
        self._fresh.set()
        self.backfiller = Backfiller(
            api,
            self.store,
            calendar_of=self._calendar_of,
            post=self.writer.post,
            # Late-bound, like the queue's clock: a test may swap the controller's clock.
            clock=lambda: self.clock(),  # noqa: PLW0108
            is_leader=lambda: self.is_leader(),  # noqa: PLW0108
            fresh=self._fresh,
        )
        self._frozen = False
        api.on_unreachable = self._unreachable
        self.ready = asyncio.Event()

    # --- watch input ------------------------------------------------------------------------

    def task_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A ScheduledTask was listed (kind None), added, modified, deleted or resynced."""
        if kind is None:
            self._listed()
        if kind == "DELETED":
            meta = body.get("metadata") or {}
            self.forget((meta.get("namespace", ""), meta.get("name", "")))
            return
        key = self.store.task_event(kind, body)
        metrics.TASKS.set(len(self.store))
        if key is not None:
            self.calendars.task_event(key, body)
            self.queue.add(key)
            self.backfiller.task_changed(key)

    def calendar_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Calendar was listed, added, modified, deleted or resynced: every task that
        references it is synced again, so a change takes effect at once."""
        for key in self.calendars.event(kind, body):
            self.queue.add(key)
            self.backfiller.task_changed(key)

    def job_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Job carrying our label was listed, added, modified, deleted or resynced."""
        if kind is None:
            self._listed()
        key = self.store.job_event(kind, body)
        if key is not None:
            self.queue.add(key)
            self.backfiller.job_changed(body)

    def backfill_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Backfill was listed, added, modified, deleted or resynced."""
        self.backfiller.event(kind, body)

    def forget(self, key: Key) -> None:
        """The task is gone: drop it from memory, the queue's wake-ups and the writer."""
        self.store.forget(key)
        self.calendars.task_event(key, None)
        self.backfiller.task_changed(key)
        self.queue.forget(key)
        self.writer.drop(key)
        with contextlib.suppress(KeyError):
            metrics.ACTIVE_RUNS.remove(*key)
        metrics.TASKS.set(len(self.store))

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
            # (A sleep, not an Event: "quiet for 2 s" is the absence of events.)
            while (quiet := time.monotonic() - self._last_listing) < SWEEP_QUIET:  # noqa: ASYNC110
                await asyncio.sleep(SWEEP_QUIET - quiet)
            self._relisted.clear()
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                retry = 2.0 if not self._fresh.is_set() else 10.0
                if isinstance(error, ApiError):
                    log.warning("resync failed: %s; retrying in %.0f s", error, retry)
                else:
                    log.exception("resync failed; retrying in %.0f s", retry)
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
        before. Returns (tasks forgotten, Jobs forgotten).
        """
        mark = self.store.tick()
        scopes: Sequence[str | None] = self.namespaces or (None,)
        tasks: set[tuple[str, str, str]] = set()
        jobs: set[tuple[str, str]] = set()
        calendars: set[Key] = set()
        backfills: set[Key] = set()
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
            async for body in self._list_objects(CALENDAR_PLURAL, namespace):
                meta = body.get("metadata") or {}
                calendars.add((meta.get("namespace", ""), meta.get("name", "")))
                self.calendar_event(RESYNC, body)
            async for body in self._list_objects(BACKFILL_PLURAL, namespace):
                meta = body.get("metadata") or {}
                backfills.add((meta.get("namespace", ""), meta.get("name", "")))
                self.backfill_event(RESYNC, body)
        for key in self.calendars.resync_done(mark, calendars):
            self.queue.add(key)
        result = self.store.resync_done(mark, tasks, jobs)
        self.backfiller.resync_done(mark, backfills)
        for key in result.gone_tasks:
            log.info("task %s/%s was deleted while a watch was down; forgetting it", *key)
            self.forget(key)
        for key in result.changed:
            log.info("Jobs of %s/%s were deleted while a watch was down", *key)
            self.queue.add(key)
        return len(result.gone_tasks), result.gone_jobs

    async def _list_objects(
        self, plural: str, namespace: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object of ``plural``; none when its CRD is not installed (an older chart with
        crds.enabled=false): the tasks that reference one then report it missing."""
        try:
            async for page in self.api.list_objects(plural, namespace):
                for body in page:
                    yield body
        except ApiError as error:
            if error.status != 404:
                raise
            if plural not in self._missing_kinds:
                self._missing_kinds.add(plural)
                log.warning(
                    "%s.%s is not installed (%s); treating it as empty", plural, GROUP, error
                )

    # --- running ----------------------------------------------------------------------------

    def resync_all(self) -> None:
        """Queue every task (used when this replica becomes the leader).

        Writes decided during an earlier term and never made are dropped: another leader may have
        acted since, and the stored objects (kept current by the watches) say what it did.
        """
        self.writer.drop_all()
        for key in list(self.store.entries):
            self.queue.add(key)
        self.backfiller.sync_all()

    def _due(self, key: Key, when: float, now: float) -> None:
        metrics.SCHEDULER_LAG.observe(max(0.0, now - when))

    def _beat(self) -> None:
        self.supervisor.beat("timer", TIMER_LIMIT)
        metrics.QUEUE_DEPTH.set(self.queue.scheduled)

    async def _timer(self) -> None:
        await self.queue.run_timer(tick=TICK, on_due=self._due, beat=self._beat)

    async def _worker(self) -> None:
        while True:
            await self._fresh.wait()
            key = await self.queue.get()
            again = False
            try:
                if not self._fresh.is_set():
                    again = True  # taken just before an outage: back in line for after it
                    continue
                if self.is_leader():
                    async with asyncio.timeout(SYNC_TIMEOUT):
                        await self.sync(key)
                self.queue.succeeded(key)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                delay = self.queue.retry(key, at_least=error.retry_after)
                log.warning("sync of %s/%s: %s; retrying in %.1f s", *key, error, delay)
                metrics.SYNC_ERRORS.inc()
            except Exception:
                # One task's trouble must never stop the others: log, back off, try again.
                delay = self.queue.retry(key)
                log.exception("sync of %s/%s failed; retrying in %.1f s", *key, delay)
                metrics.SYNC_ERRORS.inc()
            finally:
                self.queue.done(key)
                if again:
                    self.queue.add(key)

    async def run(self) -> None:
        """Run the timer, the resync, the workers and the Event posters until cancelled."""
        start = self.supervisor.start
        start("timer", self._timer)
        start("resync", self._resyncer)
        for i in range(self._workers):
            start(f"worker-{i}", self._worker)
        for i in range(EVENT_POSTERS):
            start(f"events-{i}", self.writer.post_events)
        start(
            "backfill-timer",
            lambda: self.backfiller.run_timer(
                lambda: self.supervisor.beat("backfill-timer", TIMER_LIMIT)
            ),
        )
        for i in range(BACKFILL_WORKERS):
            start(f"backfill-{i}", self.backfiller.worker)
        self.ready.set()
        try:
            await asyncio.Event().wait()  # the supervisor keeps them running
        finally:
            self.ready.clear()
            await self.supervisor.stop()

    @property
    def running(self) -> bool:
        """Whether the timer and workers run (readiness)."""
        return self.ready.is_set()

    def problems(self) -> list[str]:
        """Why liveness should fail (empty: alive): a crash loop, a stopped timer, or queued work
        that no worker took for STUCK s while the API server was reachable."""
        out = self.supervisor.problems()
        if not self.ready.is_set():
            return out
        idle = time.monotonic() - self.queue.last_taken
        if self._fresh.is_set() and len(self.queue) and idle > STUCK:
            out.append(f"{len(self.queue)} task(s) queued and no worker took one for {idle:.0f} s")
        return out

    # --- one sync ---------------------------------------------------------------------------

    async def _job_views(self, key: Key, entry: Entry) -> tuple[JobView, ...]:
        """The task's Jobs as the reconciler sees them; reads the outcome of newly finished ones.

        An outcome that cannot be read now fails the sync (ApiError) rather than being recorded
        as "no exit code": the exit-code filter of the retry policy depends on it.
        """
        views = []
        for known in list(entry.jobs.values()):
            if not known.belongs_to(entry.uid):
                continue
            record = known
            if record.finished is not None and record.outcome is None:
                outcome = await self.api.pod_outcome(key[0], record.name, record.uid)
                self.store.set_outcome(key, record, outcome)
                record = replace(record, outcome=outcome)
            views.append(record.view())
        return tuple(views)

    async def sync(self, key: Key) -> None:
        """Reconcile one task: decide, create Jobs, and hand the rest to the writer."""
        entry = self.store.get(key)
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
        start = self.writer.begin(key, entry, body)
        try:
            status = TaskStatus.model_validate(
                start.status if start.status is not None else body.get("status") or {}
            )
        except ValueError:
            log.warning("status of %s/%s is unreadable; starting from an empty one", *key)
            status = TaskStatus()
        calendar, calendar_problem = self._calendar_of(namespace, spec)
        if calendar_problem is not None and not self.calendars.listed_in(namespace):
            # Just started: the watch may not have delivered the Calendar yet. Missing is only
            # known once a list of the namespace's Calendars has been taken in.
            async for found in self._list_objects(CALENDAR_PLURAL, namespace):
                self.calendars.event(RESYNC, found)
            self.calendars.namespace_listed(namespace)
            calendar, calendar_problem = self._calendar_of(namespace, spec)
        upcoming = status.nextScheduleTime
        if upcoming is not None and upcoming > self.clock():
            # Should reading the Jobs below fail, the next slot or retry still wakes the task.
            self.queue.add_after(key, upcoming.timestamp())
        view = TaskView(
            namespace=namespace,
            name=name,
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            created=read_time(meta.get("creationTimestamp")) or self.clock(),
            spec=spec,
            spec_error=error,
            status=status,
            run_now=(meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW),
            jobs=await self._job_views(key, entry),
            calendar=calendar,
            calendar_problem=calendar_problem,
        )
        now = self.clock()
        decision = decide(view, now)
        if decision.wake_at is not None:
            # Now, not after the creates: if they fail, the back-off must not be all that is left
            # (the work queue keeps whichever wake-up is earlier).
            self.queue.add_after(key, decision.wake_at.timestamp())
        if not self.is_leader():
            return  # lost the lease while deciding: the new leader redoes this sync
        if decision.create:
            outcomes = await self._create(key, view, decision.create, spec)
            decision = settle(view, decision, outcomes, self.clock())

        new_status = decision.status.model_dump(mode="json")
        deletes = {
            d.name: (d.why, job.uid if (job := entry.jobs.get(d.name)) else None)
            for d in decision.delete
        }
        self.writer.submit(
            key,
            start,
            status=new_status if new_status != status.model_dump(mode="json") else None,
            deletes=deletes,
            events=decision.events,
        )
        seen = {(r.run, r.attempt, r.result) for r in status.runs}
        for record in decision.status.runs:
            if (record.run, record.attempt, record.result) not in seen:
                metrics.RUNS.labels(result=record.result.value).inc()
        metrics.ACTIVE_RUNS.labels(namespace=namespace, task=name).set(decision.status.activeCount)
        if decision.wake_at is not None:
            self.queue.add_after(key, decision.wake_at.timestamp())

    def _calendar_of(
        self, namespace: str, spec: TaskSpec | None
    ) -> tuple[CalendarSpec | None, tuple[str, str] | None]:
        """The Calendar spec.calendarRef names, or why it cannot be used (reason, message)."""
        if spec is None or spec.calendarRef is None:
            return None, None
        name = spec.calendarRef.name
        body = self.calendars.get((namespace, name))
        if body is None:
            return None, (
                "CalendarNotFound",
                f'spec.calendarRef: calendar "{name}" not found in namespace {namespace}',
            )
        try:
            return parse_calendar(body.get("spec") or {}), None
        except SpecError as error:
            return None, ("InvalidCalendar", f'spec.calendarRef: calendar "{name}": {error}')

    async def _create(
        self, key: Key, view: TaskView, creates: Sequence[CreateJob], spec: TaskSpec | None
    ) -> list[Outcome]:
        """Create the Jobs of a decision, in order (usually there is one).

        A transient error (throttled, unreachable, the operator's permissions gone) says nothing
        about the run: the decision is abandoned and the sync fails, to be retried after a
        back-off. The Jobs created before it are adopted by that next sync, as after a crash
        between create and status write. Creating in order is what makes that safe: the created
        ones are always the earliest slots, so adopting them never moves the schedule's cursor
        past a slot that got no Job.
        """
        namespace = key[0]
        outcomes: list[Outcome] = []
        with self.gate.creating_jobs(len(creates)):
            for create in creates:
                kind, message, job = await self.api.create_job(namespace, create.manifest, view.uid)
                outcomes.append(Outcome(create.name, kind, message))
                if job is not None:
                    self.store.job_created(key, job)  # do not wait for the watch
                if kind != "created":
                    continue
                if create.attempt > 1:
                    metrics.RETRIES.inc()
                slot = read_time(create.manifest["metadata"]["annotations"].get(ANNOTATION_SLOT))
                if create.attempt == 1 and slot is not None and spec is not None:
                    due = fire_time(plan_for(spec, namespace, view.name), slot)
                    metrics.FIRE_SKEW.observe(max(0.0, (self.clock() - due).total_seconds()))
        return outcomes

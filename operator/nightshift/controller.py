"""The controller: watch events in, Jobs and status out, one task sync at a time per task.

Informers (``nightshift.informer``) list and watch the tasks, the Jobs the operator made, the
Calendars and the Backfills, and feed the :class:`~nightshift.store.Store` (and the Calendars'
index, and the :class:`~nightshift.backfiller.Backfiller`), which queues the task; the
:class:`~nightshift.workqueue.WorkQueue`'s timer queues it again when its next slot or retry
comes due. A worker's sync reads only memory, lets the pure reconciler decide, creates the Jobs it
asked for, and hands the status, deletes and Events to the :class:`~nightshift.writer.Writer`.
Every long-lived part runs under the :class:`~nightshift.supervise.Supervisor`, which also
answers the liveness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from nightshift import memory, metrics
from nightshift.api import ApiError, KubeApi
from nightshift.backfiller import WORKERS as BACKFILL_WORKERS
from nightshift.backfiller import Backfiller
from nightshift.care import ANNOTATION_RESUME, Delivery
from nightshift.guard import Limits, Refusal, judge
from nightshift.informer import BACKFILLS, CALENDARS, JOBS, TASKS, Informer
from nightshift.jobs import ANNOTATION_RUN_NOW, ANNOTATION_SLOT, LABEL_MANAGED, token_key
from nightshift.models import (
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
from nightshift.namespaces import Namespaces
from nightshift.notify import WORKERS as NOTIFY_WORKERS
from nightshift.notify import Notifier, TaskRef
from nightshift.reconcile import (
    CreateJob,
    Decision,
    JobView,
    Outcome,
    TaskView,
    decide,
    settle,
)
from nightshift.schedule import fire_time, plan_for
from nightshift.store import RESYNC, Calendars, Entry, Key, Store
from nightshift.supervise import Supervisor
from nightshift.workqueue import WorkQueue
from nightshift.writer import EVENT_POSTERS, YIELD_MAX, CreateGate, Start, Writer

__all__ = ["Controller", "Key"]

log = logging.getLogger(__name__)
# A sync is a few requests, each with its own timeout; one that takes longer than this is stuck.
SYNC_TIMEOUT = 60.0
# Liveness: the timer beats at least every TICK s and must not miss TIMER_LIMIT s; queued work
# must be taken by some worker within STUCK s (while the API server is reachable).
TICK = 5.0
TIMER_LIMIT = 15.0
STUCK = 30.0
# A controller stopping on purpose finishes its syncs and writes for at most this long (well
# inside a pod's 30 s termination grace period).
WIND_DOWN = 5.0
# A delivery the notifier's full queue refused is offered again this many seconds later.
NOTIFY_AGAIN = 5.0


LOOKAHEAD = timedelta(seconds=30)
# A sync due at a wake-up is decided this many seconds before it (see Controller.sync), and that
# decision is used if its time came no more than PREPARED_FOR s ago.
PREPARE = 10.0
PREPARED_FOR = 10.0
DEFAULT_LIMITS = Limits()


def _needs_attention(body: dict[str, Any], now: datetime) -> tuple[datetime | None, bool]:
    """(the task's next wake-up as its status says, whether a sync is needed at once): a list
    brings every task, and most of them only need looking at when their next slot comes."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    upcoming = read_time(status.get("nextScheduleTime"))
    if upcoming is None or upcoming <= now + LOOKAHEAD:
        return upcoming, True
    if status.get("observedGeneration") != meta.get("generation"):
        return upcoming, True  # the spec changed
    token = (meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW)
    if token and token_key(token) != status.get("runNowToken"):
        return upcoming, True  # asked to run now
    return upcoming, bool(status.get("active") or status.get("pendingRetries"))


@dataclass(slots=True)
class _Look:
    """What a sync read and decided."""

    entry: Entry
    view: TaskView
    decision: Decision
    start: Start
    status: TaskStatus
    spec: TaskSpec | None
    # Decided ahead: the new and the old status as JSON, made then rather than at the slot.
    dumps: tuple[dict[str, Any], dict[str, Any]] | None = None


@dataclass(slots=True)
class _Plan:
    """A sync decided ahead, for the wake-up at ``at``, with what it rested on."""

    look: _Look
    at: float
    signature: tuple[Any, ...]


class _Feed:
    """What one informer feeds the controller (tasks, Jobs, Calendars or Backfills), and whether
    its list is done."""

    def __init__(self, controller: Controller, resource: str) -> None:
        self.controller = controller
        self.resource = resource
        self.synced = False
        self.mark: int | None = None  # while a list runs: the tick it began at

    def listing(self) -> int:
        self.mark = self.controller.store.tick()
        return self.mark

    def event(self, kind: str, body: dict[str, Any]) -> None:
        if self.resource == "tasks":
            self.controller.task_event(kind, body)
        elif self.resource == "calendars":
            self.controller.calendar_event(kind, body)
        elif self.resource == "backfills":
            self.controller.backfill_event(kind, body)
        else:
            self.controller.job_event(kind, body)

    def listed(self, mark: int, seen: set[tuple[str, str, str]]) -> None:
        self.controller.listed(self, mark, seen)


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
        supervisor: Supervisor | None = None,
        task_selector: str = "",
        task_shard: str = "",
        job_selector: str = f"{LABEL_MANAGED}=true",
        owns: Callable[[dict[str, Any]], bool] = lambda _: True,
        owns_uid: Callable[[str], bool] = lambda _: True,
        listen_unreachable: bool = True,
        policies: Namespaces | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """``task_selector``/``task_shard`` (label and shard selectors of the task watch) and
        ``job_selector`` narrow what this controller sees, e.g. to one shard; ``owns`` says
        whether a task it was sent is its own (a task it does not own is ignored, in case the
        API server did not filter), and ``owns_uid`` whether a task of that uid is (the
        Backfills it runs are its tasks'; it sees every Backfill and Calendar). With
        ``listen_unreachable`` it hears of requests that did not reach the API server itself;
        otherwise whoever owns it calls :meth:`unreachable`. ``policies`` says what each
        namespace allows its tasks' pods (nightshift.guard); None: the controller watches its
        namespaces itself. ``limits`` are the operator's.
        """
        self.api = api
        self.namespaces = tuple(namespaces)  # empty: cluster-wide
        self.clock = clock
        self.is_leader = is_leader
        self.owns = owns
        self.supervisor = supervisor or Supervisor()
        self.store = Store()
        self.calendars = Calendars(self.store.tick)
        self._missing_kinds: set[str] = set()  # resource types found not installed (logged once)
        self.gate = CreateGate(lambda: self.queue.urgent)
        self.queue: WorkQueue[Key] = WorkQueue(
            clock=lambda: self.clock().timestamp(),
            on_change=self.gate.update,
            monotonic=self.supervisor.clock,
        )
        self.writer = Writer(
            api, self.store, self.queue, self.gate, is_leader=is_leader, on_gone=self.forget
        )
        self._workers = workers
        # Syncs wait until every informer has listed: on start-up (a sync must see a task's Jobs),
        # and after the API server was unreachable (a task deleted or suspended meanwhile must
        # not fire on what was seen before).
        self._fresh = asyncio.Event()
        self.backfiller = Backfiller(
            api,
            self.store,
            calendar_of=self._calendar_of,
            post=self.writer.post,
            # Late-bound, like the queue's clock: a test may swap the controller's clock.
            clock=lambda: self.clock(),  # noqa: PLW0108
            is_leader=lambda: self.is_leader(),  # noqa: PLW0108
            fresh=self._fresh,
            owns=owns_uid,
            # A Backfill runs its task's template: the guard holds it to the same rules.
            refused=self._judge,
        )
        self._deferred: set[Key] = set()
        # Deciding ahead (see sync): the wake-up each task's prepare wake-up is for, the time of
        # the timer's last wake-up of each, and the decisions made ahead.
        self._prepare_at: dict[Key, float] = {}
        self._woken: dict[Key, float] = {}
        self._plans: dict[Key, _Plan] = {}
        self._skipped: set[Key] = set()  # syncs skipped while this replica might not act
        self._frozen = False
        if listen_unreachable:
            api.on_unreachable = self.unreachable
        scopes: Sequence[str | None] = self.namespaces or (None,)
        self._feeds: list[_Feed] = []
        self.informers: list[Informer] = []
        # Calendars and Backfills are watched whole by every controller (each shard's too): they
        # are few, a task of any shard may reference any Calendar, and a Backfill belongs to the
        # shard of its task, which the Backfiller checks (docs/operator.md#scale-out).
        watches = (
            (TASKS, task_selector, task_shard),
            (JOBS, job_selector, ""),
            (CALENDARS, "", ""),
            (BACKFILLS, "", ""),
        )
        for resource, selector, shard in watches:
            for namespace in scopes:
                feed = _Feed(self, resource.name)
                self._feeds.append(feed)
                self.informers.append(
                    Informer(
                        api, resource, feed, namespace=namespace, selector=selector, shard=shard
                    )
                )
        # A task is judged against its namespace's policy on every sync; a changed policy
        # (a Pod Security label set or removed) judges that namespace's tasks again at once.
        self._own_policies = policies is None
        self.policies = policies or Namespaces(api, names=self.namespaces)
        self.policies.watch(self._namespace_changed)
        self.limits = limits
        self.ready = asyncio.Event()
        self.notifier = Notifier(api, on_done=self._delivered, clock=self.clock)
        # Delivery outcomes the next sync folds into the task's status.
        self._deliveries: dict[Key, list[Delivery]] = {}

    def list_no_older_than(self, version: str) -> None:
        """Before :meth:`run`: every first list must show a state at least as new as
        ``version`` (e.g. the shard's Lease when it was taken: whatever its last owner wrote
        before), served from the API server's watch cache rather than read from etcd."""
        for informer in self.informers:
            informer.version = informer.version or version

    def _judge(self, namespace: str, name: str, spec: TaskSpec, template: Any) -> Refusal | None:
        """What the guard says of a task's Jobs: its namespace's policy and the operator's
        limits (nightshift.guard)."""
        return judge(
            spec,
            template,
            namespace=namespace,
            name=name,
            policy=self.policies.policy(namespace),
            limits=self.limits,
        )

    # --- watch input ------------------------------------------------------------------------

    def task_event(self, kind: str, body: dict[str, Any]) -> None:
        """A ScheduledTask was listed ("RESYNC"), added, modified or deleted."""
        if kind == "DELETED" or not self.owns(body):
            meta = body.get("metadata") or {}
            self.forget((meta.get("namespace", ""), meta.get("name", "")))
            return
        key = self.store.task_event(kind, body)
        if key is None:
            return
        self.calendars.task_event(key, body)
        self.backfiller.task_changed(key)
        if kind != RESYNC:
            self.queue.add(key)
            return
        # A list: look at every task once, but those that are due (or changed, or asked to run)
        # first; the rest wait in the background, and wake at their next slot regardless.
        upcoming, urgent = _needs_attention(body, self.clock())
        self.queue.add(key, background=not urgent)
        if upcoming is not None:
            self.queue.add_after(key, upcoming.timestamp())

    def job_event(self, kind: str, body: dict[str, Any]) -> None:
        """A Job carrying our label was listed ("RESYNC"), added, modified or deleted."""
        key = self.store.job_event(kind, body)
        if key is not None:
            # Recording a run's end can wait for the Jobs that are due now: its sync reads the
            # pod (an API call), and a burst of due Jobs ends in a burst of finished ones.
            self.queue.add(key, background=True)
            self.backfiller.job_changed(body)

    def calendar_event(self, kind: str, body: dict[str, Any]) -> None:
        """A Calendar was listed ("RESYNC"), added, modified or deleted: every task that
        references it (and their Backfills) is synced again, so a change takes effect at once."""
        for key in self.calendars.event(kind, body):
            self.queue.add(key)
            self.backfiller.task_changed(key)

    def backfill_event(self, kind: str, body: dict[str, Any]) -> None:
        """A Backfill was listed ("RESYNC"), added, modified or deleted."""
        self.backfiller.event(kind, body)

    def forget(self, key: Key) -> None:
        """The task is gone: drop it from memory, the queue's wake-ups and the writer."""
        self.store.forget(key)
        self.calendars.task_event(key, None)
        self.backfiller.task_changed(key)
        self.queue.forget(key)
        self.writer.drop(key)
        self._deliveries.pop(key, None)
        self._prepare_at.pop(key, None)
        self._woken.pop(key, None)
        self._plans.pop(key, None)
        self._skipped.discard(key)
        with contextlib.suppress(KeyError):
            metrics.ACTIVE_RUNS.remove(*key)

    def _namespace_changed(self, namespace: str) -> None:
        for key in [k for k in self.store.entries if k[0] == namespace]:
            self.queue.add(key)

    def close(self) -> None:
        """This controller stops for good (its shard moved on): drop its per-task gauges, which
        the new owner sets again."""
        self.policies.unwatch(self._namespace_changed)
        for key in list(self.store.entries):
            with contextlib.suppress(KeyError):
                metrics.ACTIVE_RUNS.remove(*key)

    def listed(self, feed: _Feed, mark: int, seen: set[tuple[str, str, str]]) -> None:
        """An informer finished a full list: forget what it no longer shows."""
        if feed.resource == "tasks":
            for key in self.store.tasks_listed(mark, seen):
                log.info("task %s/%s was deleted while no watch ran; forgetting it", *key)
                self.forget(key)
        elif feed.resource == "calendars":
            for key in self.calendars.resync_done(mark, {(ns, name) for ns, name, _ in seen}):
                self.queue.add(key)
                self.backfiller.task_changed(key)
        elif feed.resource == "backfills":
            self.backfiller.resync_done(mark, {(ns, name) for ns, name, _ in seen})
        else:
            changed, dropped = self.store.jobs_listed(mark, {(ns, name) for ns, name, _ in seen})
            if dropped:
                log.info("%d Job(s) were deleted while no watch ran", dropped)
            for key in changed:
                self.queue.add(key)
        feed.synced = True
        feed.mark = None
        # A list of many tasks leaves many MB freed; give them back.
        memory.trim()
        if feed.resource == "tasks":
            for key in self._deferred:
                self.queue.add(key)
            self._deferred.clear()
        if not self._fresh.is_set() and all(f.synced for f in self._feeds if f.resource == "jobs"):
            log.info("Jobs listed; syncs %s", "resume" if self._frozen else "start")
            self._fresh.set()
        # (Calendars and Backfills are few, and their CRDs may be missing: not waited for.)
        if not self._frozen and all(
            f.synced for f in self._feeds if f.resource in ("tasks", "jobs")
        ):
            self._frozen = True
            memory.freeze()  # after the first full load: see memory.freeze

    def _stale(self, key: Key) -> bool:
        """Whether the task is known only from before a list of tasks that is still running
        (after an outage: it may have been deleted or changed meanwhile)."""
        entry = self.store.get(key)
        if entry is None:
            return False
        marks = [f.mark for f in self._feeds if f.resource == "tasks" and f.mark is not None]
        return bool(marks) and entry.seen < min(marks)

    def unreachable(self) -> None:
        """A request did not reach the API server: what the watches delivered may be out of date,
        so every informer lists again. No sync runs until the Jobs are listed again (a sync must
        see its task's Jobs), and a task is synced only once the new list has shown it."""
        if not self._fresh.is_set():
            return
        log.warning("the API server is unreachable; syncs wait until everything is listed again")
        self._fresh.clear()
        for feed in self._feeds:
            feed.synced = False
        for informer in self.informers:
            informer.relist()

    def resync_all(self) -> None:
        """Queue every task (used when this replica becomes the leader).

        Writes decided during an earlier term and never made are dropped: another leader may have
        acted since, and the stored objects (kept current by the watches) say what it did.
        """
        self.writer.drop_all()
        self._plans.clear()
        self._skipped.clear()
        for key in list(self.store.entries):
            self.queue.add(key)
        self.backfiller.sync_all()

    def resume(self) -> None:
        """The lease was renewed late (past the renew deadline) and nobody took it: the syncs
        and writes skipped meanwhile, while this replica might not act, are done now. (A
        replica that became leader anew resyncs instead: another may have acted.)"""
        # Only what was skipped: queueing every task again made a replica that had just taken
        # all 50,000 so busy that it lapsed again, and again (the scale benchmark).
        skipped, self._skipped = self._skipped, set()
        for key in skipped:
            if key in self.store.entries:
                self.queue.add(key)
        self.writer.flush_all()
        self.backfiller.sync_all()  # Backfills are few

    def _due(self, key: Key, when: float, now: float) -> None:
        metrics.SCHEDULER_LAG.observe(max(0.0, now - when))
        self._woken[key] = when  # the sync tells a wake-up to decide ahead by its time

    def _beat(self) -> None:
        self.supervisor.beat("timer", TIMER_LIMIT)

    async def _timer(self) -> None:
        await self.queue.run_timer(tick=TICK, on_due=self._due, beat=self._beat)

    async def _worker(self) -> None:
        # No Job before the namespaces' policies are known.
        await self.policies.synced.wait()
        while True:
            await self._fresh.wait()
            key = await self.queue.get()
            again = False
            try:
                if not self._fresh.is_set():
                    again = True  # taken just before an outage: back in line for after it
                    continue
                if self._stale(key):
                    self._deferred.add(key)  # queued again when the list of tasks is done
                    continue
                if not self.queue.taken_urgent(key):
                    # Background work (a finished Job, a list's first look) makes API calls
                    # too: it waits while Jobs that are due are being created (at most 5 s).
                    await self.gate.wait_idle(YIELD_MAX)
                if self.is_leader():
                    async with asyncio.timeout(SYNC_TIMEOUT):
                        await self.sync(key)
                else:
                    self._skipped.add(key)  # done by resume() if the lease comes back in time
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
        """Run the informers, the timer, the workers and the Event posters until cancelled."""
        start = self.supervisor.start
        start("timer", self._timer)
        for informer in self.informers:
            scope = informer.namespace or "all"
            start(f"informer-{informer.resource.name}-{scope}", informer.run)
        if self._own_policies:
            for i, informer in enumerate(self.policies.informers):
                start(f"informer-namespaces-{i}", informer.run)
        for i in range(self._workers):
            start(f"worker-{i}", self._worker)
        for i in range(EVENT_POSTERS):
            start(f"events-{i}", self.writer.post_events)
        # Supervised, not watched by liveness: the main timer's heartbeat says the loop runs.
        start("backfill-timer", self.backfiller.run_timer)
        for i in range(BACKFILL_WORKERS):
            start(f"backfill-{i}", self.backfiller.worker)
        for i in range(NOTIFY_WORKERS):
            start(f"notify-{i}", self.notifier.work)
        self.ready.set()
        try:
            await asyncio.Event().wait()  # the supervisor keeps them running
        finally:
            self.ready.clear()
            await self.supervisor.stop()
            await self.notifier.close()

    async def wind_down(self, limit: float = WIND_DOWN) -> None:
        """Before a stop on purpose (its shard given back, a clean shutdown): take no new work,
        let the syncs in progress finish, and write and post what they decided, for at most
        ``limit`` s. Cancelling at once would lose the Events queued behind the writes, and the
        start of a Job created just before (whoever takes over adopts it without a word). A
        controller that lost its lease stops at once instead: another may own its tasks now."""
        self.queue.close()
        self.backfiller.queue.close()
        try:
            async with asyncio.timeout(limit):
                await self.queue.drained()
                await self.backfiller.queue.drained()
                await self.writer.settle()
        except TimeoutError:
            log.warning("winding down took over %.0f s; stopping with writes unfinished", limit)

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
        idle = self.supervisor.clock() - self.queue.last_taken
        if self._fresh.is_set() and len(self.queue) and idle > STUCK:
            why = (
                ": the namespaces are not listed (the operator needs list and watch on them)"
                if not self.policies.synced.is_set()
                else ""
            )
            out.append(
                f"{len(self.queue)} task(s) queued and no worker took one for {idle:.0f} s{why}"
            )
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
        """Reconcile one task: decide, create Jobs, and hand the rest to the writer.

        The timer's wake-up PREPARE s before a task's next wake-up decides that sync ahead,
        as of its time (the reconciler takes the time as an argument): when it comes, and
        nothing the decision rests on has changed, the sync only creates the Jobs and hands
        over the writes. A thousand tasks due in the same second then spend their slot on
        creating Jobs, not on parsing specs and statuses, judging templates and computing
        schedules, which took a third of the operator's CPU in that second.
        """
        entry = self.store.get(key)
        if entry is None:
            return
        woken = self._woken.pop(key, None)
        target = self._prepare_at.pop(key, None)
        now = self.clock()
        if (
            target is not None
            and woken is not None
            and abs(woken - (target - PREPARE)) < 1e-3
            and now.timestamp() < target
        ):
            await self._prepare(key, entry, target)
            return
        plan = self._plans.pop(key, None)
        look = plan.look if plan is not None and self._holds(key, entry, plan, now) else None
        if look is None:
            look = await self._look(key, entry, now)
        await self._act(key, entry, look)

    async def _prepare(self, key: Key, entry: Entry, target: float) -> None:
        """Decide the sync due at ``target`` now, as of that time; keep it if it creates Jobs."""
        self.queue.add_after(key, target)
        look = await self._look(key, entry, datetime.fromtimestamp(target, UTC), ahead=True)
        if look.decision.create and self.is_leader():
            look.dumps = (
                look.decision.status.model_dump(mode="json"),
                look.status.model_dump(mode="json"),
            )
            self._plans[key] = _Plan(look, target, self._signature(key, entry, look))

    def _signature(self, key: Key, entry: Entry, look: _Look) -> tuple[Any, ...]:
        """Everything a decision rests on besides the time: the stored task (and the status
        decided but not written yet), its Jobs, the deliveries to fold, the namespace's policy,
        the Calendar it names."""
        pending = self.writer.begin(key, entry, {}).pending
        spec = look.view.spec
        return (
            entry.rv,
            tuple(entry.jobs.values()),
            pending,
            pending.status if pending is not None else None,
            tuple(self._deliveries.get(key, ())),
            self.policies.policy(key[0]),
            self.calendars.get((key[0], spec.calendarRef.name))
            if spec is not None and spec.calendarRef is not None
            else None,
        )

    def _holds(self, key: Key, entry: Entry, plan: _Plan, now: datetime) -> bool:
        """Whether a decision made ahead still stands: its time has come (and is not long
        past), and nothing it rests on changed since."""
        late = now.timestamp() - plan.at
        return (
            0 <= late < PREPARED_FOR
            and plan.look.entry is entry
            and plan.signature == self._signature(key, entry, plan.look)
        )

    async def _look(self, key: Key, entry: Entry, now: datetime, *, ahead: bool = False) -> _Look:
        """Read the task and its Jobs, and decide as of ``now``."""
        namespace, name = key
        body = entry.body
        meta = body["metadata"]
        spec: TaskSpec | None = None
        error: SpecError | None = None
        refusal: Refusal | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as problem:
            error = problem
        else:
            refusal = self._judge(namespace, name, spec, body["spec"].get("jobTemplate"))
        start = self.writer.begin(key, entry, body)
        decided = start.status
        try:
            status = TaskStatus.model_validate(
                decided if decided is not None else body.get("status") or {}
            )
        except ValueError:
            log.warning("status of %s/%s is unreadable; starting from an empty one", *key)
            status = TaskStatus()
        calendar, calendar_problem = self._calendar_of(namespace, spec)
        if calendar_problem is not None and not self.calendars.listed_in(namespace):
            # Just started: the Calendars' informer may not have listed yet. Missing is only
            # known once a list of the namespace's Calendars has been taken in.
            async for found in self._list_objects(CALENDAR_PLURAL, namespace):
                self.calendars.event(RESYNC, found)
            self.calendars.namespace_listed(namespace)
            calendar, calendar_problem = self._calendar_of(namespace, spec)
        upcoming = status.nextScheduleTime
        if not ahead and upcoming is not None and upcoming > now:
            # Should reading the Jobs below fail, the next slot or retry still wakes the task.
            self.queue.add_after(key, upcoming.timestamp())
        view = TaskView(
            namespace=namespace,
            name=name,
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            created=read_time(meta.get("creationTimestamp")) or now,
            spec=spec,
            spec_error=error,
            status=status,
            run_now=(meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW),
            jobs=await self._job_views(key, entry),
            calendar=calendar,
            calendar_problem=calendar_problem,
            labels=meta.get("labels") or {},
            resume=(meta.get("annotations") or {}).get(ANNOTATION_RESUME),
            deliveries=tuple(self._deliveries.get(key, ())),
            refusal=refusal,
        )
        return _Look(entry, view, decide(view, now), start, status, spec)

    async def _act(self, key: Key, entry: Entry, look: _Look) -> None:
        """Create the Jobs a decision asks for and hand its writes to the writer."""
        namespace, name = key
        view, decision, start, status, spec = (
            look.view,
            look.decision,
            look.start,
            look.status,
            look.spec,
        )
        if decision.wake_at is not None:
            # Now, not after the creates: if they fail, the back-off must not be all that is left
            # (the work queue keeps whichever wake-up is earlier).
            self._wake(key, decision.wake_at)
        if not self.is_leader():
            return  # lost the lease while deciding: the new leader redoes this sync
        if decision.create:
            outcomes = await self._create(key, view, decision.create, spec)
            decision = settle(view, decision, outcomes, self.clock())
        if look.dumps is not None and decision is look.decision:
            new_status, old_status = look.dumps  # settle changed nothing: the Jobs were made
        else:
            new_status = decision.status.model_dump(mode="json")
            old_status = status.model_dump(mode="json")
        deletes = {
            d.name: (d.why, job.uid if (job := entry.jobs.get(d.name)) else None)
            for d in decision.delete
        }
        self.writer.submit(
            key,
            start,
            status=new_status if new_status != old_status else None,
            deletes=deletes,
            events=decision.events,
        )
        self._folded(key, view.deliveries)
        if decision.late:
            metrics.LATE_RUNS.inc(len(decision.late))
        self._offer(key, view, decision.status, spec)
        seen = {(r.run, r.attempt, r.result) for r in status.runs}
        for record in decision.status.runs:
            if (record.run, record.attempt, record.result) not in seen:
                metrics.RUNS.labels(result=record.result.value).inc()
        metrics.ACTIVE_RUNS.labels(namespace=namespace, task=name).set(decision.status.activeCount)
        if decision.wake_at is not None:
            self._wake(key, decision.wake_at)

    def next_sync(self, key: Key) -> float | None:
        """When the task is next synced (its decision is made up to PREPARE s before)."""
        wake = self.queue.wake_of(key)
        target = self._prepare_at.get(key)
        if wake is not None and target is not None and abs(wake - (target - PREPARE)) < 1e-3:
            return target
        return wake

    def _wake(self, key: Key, at: datetime) -> None:
        """Sync the task at ``at``; one far enough off is decided PREPARE s before it."""
        when = at.timestamp()
        if when - self.clock().timestamp() > PREPARE:
            self._prepare_at[key] = when
            self.queue.add_after(key, when - PREPARE)
        else:
            self.queue.add_after(key, when)

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

    # --- notifications ----------------------------------------------------------------------

    def _delivered(self, key: Key, outcome: Delivery) -> None:
        """The notifier finished an attempt: the next sync records it in status."""
        if key in self.store.entries:
            self._deliveries.setdefault(key, []).append(outcome)
            self.queue.add(key)

    def _folded(self, key: Key, taken: Sequence[Delivery]) -> None:
        """A sync handed these outcomes to the writer with its status."""
        if not taken:
            return
        left = [d for d in self._deliveries.get(key, []) if d not in taken]
        if left:
            self._deliveries[key] = left
        else:
            self._deliveries.pop(key, None)

    def _offer(self, key: Key, view: TaskView, status: TaskStatus, spec: TaskSpec | None) -> None:
        """Hand the due notifications to the notifier: for each sink only the oldest one still
        owed (a sink gets them in order), none whose outcome the status does not show yet."""
        if not status.notifications or spec is None or not spec.notify:
            return
        sinks = {s.name: s for s in spec.notify}
        unfolded = {(d.id, d.sink) for d in self._deliveries.get(key, ())}
        task = TaskRef(view.namespace, view.name, view.uid)
        now = self.clock()
        taken: set[str] = set()
        refused = False
        for item in status.notifications:
            for name in item.sinks:
                if name in taken or name not in sinks:
                    continue
                taken.add(name)
                if (item.id, name) in unfolded:
                    continue
                if item.notBefore is not None and item.notBefore > now:
                    continue
                if not self.notifier.offer(key, task, item, sinks[name]):
                    refused = True
        if refused:
            log.warning("the notification queue is full; %s/%s tries again shortly", *key)
            self.queue.add_after(key, now.timestamp() + NOTIFY_AGAIN)

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

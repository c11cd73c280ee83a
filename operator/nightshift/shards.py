"""Scale-out by shards: this replica holds its fair share of the shards, each through a Lease of
its own, and runs one Controller per shard it holds.

Every replica announces itself with a member Lease, so each knows how many replicas are alive
(``R``) and takes at most ``ceil(S/R)`` of the ``S`` shards (``nightshift.sharding.rebalance``).
A shard's Lease is acquired and renewed with the leader election's rules (``nightshift.leader``):
expiry is judged by how long this replica has seen the record unchanged, and a shard that could
not be renewed within the renew deadline stops before its lease can expire for anyone else. A
replica above its share (one joined) gives shards back gracefully: it stops the shard's controller
first, then clears the holder so that another replica takes it on its next attempt.

The Leases are kept on an event loop of their own, in a thread of its own
(``nightshift.threads``); the shards' controllers run on the main loop, which the first looks at
a shard's tasks can keep busy for minutes. What the Lease side owns (``renewed``: the shards
held and when each was last renewed) is read by the controllers; what the main side owns
(``held``: the controllers) is changed only there, when the Lease side asks.

A held shard's Controller watches only that shard: its tasks by the API server's
``shardSelector`` where the server filters by it (Kubernetes 1.36 ``ShardedListAndWatch``), else
by the ``nightshift.dev/shard-bucket`` label; its Jobs always by that label, which every Job gets
at creation. The :class:`Labeller` gives the label to what lacks it: Jobs made before shards
existed and, where the server cannot filter, tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from nightshift import memory, metrics
from nightshift.api import ApiError, KubeApi
from nightshift.controller import Controller
from nightshift.guard import Limits
from nightshift.informer import JOBS, TASKS, Informer
from nightshift.jobs import ANNOTATION_TASK_UID, LABEL_MANAGED
from nightshift.leader import LeaseTiming, lease_body, may_acquire
from nightshift.namespaces import Namespaces
from nightshift.sharding import (
    LABEL_BUCKET,
    bucket,
    bucket_label_selector,
    rebalance,
    shard_buckets,
    shard_selector,
)
from nightshift.supervise import Supervisor
from nightshift.threads import call_soon, in_thread, run_on
from nightshift.workqueue import Backoff

__all__ = [
    "LABEL_GROUP",
    "Labeller",
    "ShardManager",
    "detect_server_filtering",
    "member_lease_name",
    "shard_lease_name",
]

log = logging.getLogger(__name__)

LABEL_GROUP = "nightshift.dev/lease-group"  # the Leases of one operator (its Lease name)
LABEL_ROLE = "nightshift.dev/lease-role"  # "shard" or "member"
LABEL_SHARD = "nightshift.dev/shard"
LABEL_SHARDS = "nightshift.dev/shards"  # the shard count a shard Lease belongs to
# A member Lease unchanged this long belongs to a replica that is gone (killed, not stopped):
# it is deleted, or one would pile up per crashed pod.
STALE_MEMBER = 300.0
Mode = Literal["shardSelector", "label"]


def shard_lease_name(name: str, shard: int) -> str:
    return f"{name}-shard-{shard}"


def member_lease_name(name: str, identity: str) -> str:
    # Identities (pod names, host-pid) need not be valid object names; a digest always is.
    return f"{name}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _spec(lease: dict[str, Any] | None) -> dict[str, Any]:
    return dict((lease or {}).get("spec") or {})


def _holder(lease: dict[str, Any] | None) -> str:
    return str(_spec(lease).get("holderIdentity") or "")


def _labels(lease: dict[str, Any]) -> dict[str, str]:
    return dict((lease.get("metadata") or {}).get("labels") or {})


# --- how the API server filters tasks -------------------------------------------------------------


def _shard_info(raw: bytes) -> object:
    return (json.loads(raw).get("metadata") or {}).get("shardInfo")


async def detect_server_filtering(api: KubeApi, namespace: str | None) -> bool:
    """Whether the API server filters the task list and watch by ``shardSelector``.

    A server that filters echoes the selector in the list's ``metadata.shardInfo``. Kubernetes
    1.36 filters custom resources but does not echo it for them (their list type lacks the
    field), so a second request sends a malformed selector: a server that filters parses it and
    refuses the request; one that does not (the feature gate off, or older than 1.36) ignores
    the parameter and answers.
    """
    path = TASKS.path(namespace)
    params = {"limit": "1", "shardSelector": shard_selector(0, 2)}
    if await api.list_raw("probe_shards", path, params, _shard_info):
        return True
    malformed = {"limit": "1", "shardSelector": "shardRange(object.metadata.uid, '0x0', '0x1')"}
    try:
        await api.list_raw("probe_shards", path, malformed, _shard_info)
    except ApiError as error:
        if "shard selector" in str(error):
            return True
        raise
    return False


# --- the labeller ---------------------------------------------------------------------------------


def job_bucket(job: dict[str, Any]) -> int | None:
    """The bucket of a Job's task (its controller owner), or None when it names none."""
    meta = job.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid"):
            return bucket(str(ref["uid"]))
    uid = (meta.get("annotations") or {}).get(ANNOTATION_TASK_UID)
    return bucket(uid) if uid else None


def _needs(body: dict[str, Any], plural: str) -> tuple[str, str, str, int] | None:
    """(namespace, name, uid, bucket) of an object that lacks the bucket label, else None."""
    meta = body.get("metadata") or {}
    if LABEL_BUCKET in (meta.get("labels") or {}):
        return None
    found = job_bucket(body) if plural == "jobs" else bucket(str(meta.get("uid") or ""))
    if found is None or not meta.get("uid"):
        return None
    return str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta["uid"]), found


class Labeller:
    """Gives the bucket label to the Jobs (and, in label mode, the tasks) that lack it."""

    def __init__(
        self, api: KubeApi, *, namespaces: Sequence[str] = (), tasks: bool = False
    ) -> None:
        self.api = api
        self.scopes: Sequence[str | None] = tuple(namespaces) or (None,)
        self.tasks = tasks
        self.labelled = 0

    def _what(self) -> list[tuple[Literal["jobs", "scheduledtasks"], str, Any]]:
        out: list[tuple[Literal["jobs", "scheduledtasks"], str, Any]] = [
            ("jobs", f"{LABEL_MANAGED}=true,!{LABEL_BUCKET}", JOBS)
        ]
        if self.tasks:
            out.append(("scheduledtasks", f"!{LABEL_BUCKET}", TASKS))
        return out

    async def label_once(self, buckets: Collection[int] | None = None) -> int:
        """List what lacks the label and label it (only those in ``buckets``, if given).

        A shard runs this before its controller lists: a Job of one of its tasks that it could
        not see would look deleted, and its run would be recorded as cancelled.
        """
        done = 0
        for plural, selector, resource in self._what():
            for namespace in self.scopes:
                token = ""
                while True:
                    params = {"labelSelector": selector, "limit": "500"}
                    if token:
                        params["continue"] = token
                    page = await self.api.list_raw(
                        f"list_unlabelled_{resource.name}",
                        resource.path(namespace),
                        params,
                        resource.decode_page,
                    )
                    for body in page.items:
                        todo = _needs(body, plural)
                        if todo is None or (buckets is not None and todo[3] not in buckets):
                            continue
                        done += await self._label(plural, todo)
                    token = page.continue_
                    if not token:
                        break
        return done

    async def _label(self, plural: Literal["jobs", "scheduledtasks"], todo: Any) -> int:
        namespace, name, uid, found = todo
        if await self.api.label(plural, namespace, name, uid, {LABEL_BUCKET: str(found)}):
            self.labelled += 1
            log.info("labelled %s %s/%s with shard bucket %d", plural, namespace, name, found)
            return 1
        return 0

    async def run(self) -> None:
        """Watch what lacks the label and label it, for ever (the holder of shard 0 runs this):
        in label mode a new task is seen by no shard until it is labelled."""
        queue = _Todo()
        informers = [
            Informer(self.api, resource, _Unlabelled(plural, queue), namespace=ns, selector=sel)
            for plural, sel, resource in self._what()
            for ns in self.scopes
        ]
        tasks = [asyncio.create_task(i.run(), name="labeller-watch") for i in informers]
        try:
            while True:
                plural, todo = await queue.get()
                try:
                    await self._label(plural, todo)
                except ApiError as error:
                    log.warning("labeller: %s; trying again in 1 s", error)
                    await asyncio.sleep(1.0)
                    queue.put_nowait((plural, todo))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Todo:
    """What the labeller has to label, each object once however often its events come (a task
    updated in a loop must not grow the queue): bounded by the unlabelled objects that exist."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str], tuple[Literal["jobs", "scheduledtasks"], Any]] = {}
        self._ready = asyncio.Event()

    def put_nowait(self, item: tuple[Literal["jobs", "scheduledtasks"], Any]) -> None:
        plural, todo = item
        self._items[(plural, todo[0], todo[1])] = item  # the latest uid and bucket win
        self._ready.set()

    async def get(self) -> tuple[Literal["jobs", "scheduledtasks"], Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        key = next(iter(self._items))
        return self._items.pop(key)

    def __len__(self) -> int:
        return len(self._items)


class _Unlabelled:
    """The labeller's informers' sink: what lacks the label goes to the queue."""

    def __init__(self, plural: Literal["jobs", "scheduledtasks"], queue: _Todo) -> None:
        self.plural = plural
        self.queue = queue

    def listing(self) -> int:
        return 0

    def event(self, kind: str, body: dict[str, Any]) -> None:
        todo = _needs(body, self.plural) if kind != "DELETED" else None
        if todo is not None:
            self.queue.put_nowait((self.plural, todo))

    def listed(self, mark: int, seen: set[tuple[str, str, str]]) -> None:
        return None


# --- the shards this replica holds ---------------------------------------------------------------


@dataclass
class _Held:
    """A shard whose controller runs here (on the main event loop)."""

    index: int
    controller: Controller
    task: asyncio.Task[None]


@dataclass
class _Seen:
    record: tuple[str, str]  # (holder, resourceVersion)
    since: float


@dataclass
class ShardManager:
    """Takes and gives back shards, renews their Leases, and runs a Controller per held shard."""

    api: KubeApi
    namespace: str
    name: str
    identity: str
    shards: int
    namespaces: Sequence[str] = ()
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    workers: int = 16
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    make_supervisor: Callable[[], Supervisor] = Supervisor
    controller_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    mode: Mode | None = None  # None: ask the API server on the first round
    # The namespaces' policies, shared by the shards' controllers (None: each watches its own).
    policies: Namespaces | None = None
    limits: Limits = field(default_factory=Limits)
    # The Lease side: the shards held, each with when its Lease was last renewed (the moment the
    # write was sent, so that it never looks fresher than the Lease others see).
    renewed: dict[int, float] = field(default_factory=dict)
    # The main side: the controller of each shard held.
    held: dict[int, _Held] = field(default_factory=dict)
    _releasing: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    # The main event loop (None until run(): then everything runs on the caller's loop).
    _main: asyncio.AbstractEventLoop | None = None
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _rounds: int = 0
    _labeller: asyncio.Task[None] | None = None
    _warned: str = ""

    def __post_init__(self) -> None:
        self.member = member_lease_name(self.name, self.identity)
        shard_buckets(0, self.shards)  # refuses an impossible shard count now
        if self.mode is not None:
            log.info("shards: tasks are selected by %s (as configured)", self.mode)
        self.api.on_unreachable = self.unreachable

    # --- what the runner reads ---------------------------------------------------------------

    def holds(self, shard: int) -> bool:
        """Whether this replica holds ``shard`` and renewed it within the renew deadline."""
        renewed_at = self.renewed.get(shard)
        return renewed_at is not None and self.clock() - renewed_at < self.timing.renew_deadline

    def controllers(self) -> list[Controller]:
        return [h.controller for h in list(self.held.values())]

    def problems(self) -> list[str]:
        """Liveness of every shard's controller."""
        return [
            f"shard {h.index}: {problem}"
            for h in list(self.held.values())
            for problem in h.controller.problems()
        ]

    def unreachable(self) -> None:
        """A request did not reach the API server: every shard lists again before it syncs
        (called on whichever loop made the request; the controllers are the main loop's)."""

        def now() -> None:
            for controller in self.controllers():
                controller.unreachable()

        call_soon(self._main, now)

    def tasks(self) -> int:
        return sum(len(c.store) for c in self.controllers())

    def queued(self) -> int:
        return sum(c.queue.scheduled for c in self.controllers())

    def writes_pending(self) -> int:
        return sum(c.writer.backlog for c in self.controllers())

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the Leases from a thread of their own until cancelled; the controllers run on
        this (the caller's) event loop."""
        self._main = asyncio.get_running_loop()
        await in_thread(self.keep, name="shard-leases")

    async def keep(self) -> None:
        """A round every retry period, until cancelled."""
        try:
            while True:
                started = self.clock()
                try:
                    await self.step()
                except ApiError as error:
                    log.warning("shards: %s", error)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Never let this loop die: a dead loop would stop every renewal.
                    log.exception("shards: unexpected error")
                await self.drop_lapsed()
                elapsed = self.clock() - started
                pause = min(self.timing.retry_period - elapsed, self.expiry())
                await asyncio.sleep(max(0.0, pause))
        finally:
            for task in self._releasing.values():
                task.cancel()

    def expiry(self) -> float:
        """Seconds until just after another replica's Lease expires (as seen from here), so
        that the next round comes then, not up to a retry period later: a dead replica's shards
        are taken as soon as they may be."""
        expiries = [
            seen.since + self.timing.duration
            for name, seen in self._seen.items()
            if seen.record[0] and seen.record[0] != self.identity and name != self.member
        ]
        now = self.clock()
        soonest = min((e - now for e in expiries if e >= now), default=math.inf)
        # Just past it: may_acquire wants "unchanged for more than the duration".
        return max(0.1, soonest + 0.1)

    async def step(self) -> None:
        """One round: announce this replica, renew held shards, then take or give back some."""
        if self.mode is None:
            scope = self.namespaces[0] if self.namespaces else None
            filters = await detect_server_filtering(self.api, scope)
            self.mode = "shardSelector" if filters else "label"
            log.info(
                "shards: the API server %s; tasks are selected by %s",
                "filters by shardSelector" if filters else "does not filter by shardSelector",
                self.mode,
            )
        leases = await self.api.list_leases(self.namespace, f"{LABEL_GROUP}={self.name}")
        listed = {str(lease["metadata"]["name"]): lease for lease in leases}
        self._observe(listed)
        await self._announce(listed.get(self.member))
        await asyncio.gather(*(self._renew(i, listed) for i in list(self.renewed)))
        self._rounds += 1
        if self._rounds == 1:
            # Announce before taking anything: replicas that start together see each other, and
            # none takes every shard only to give most of them back a round later.
            return
        replicas = 1 + sum(
            1
            for name, lease in listed.items()
            if _labels(lease).get(LABEL_ROLE) == "member"
            and name != self.member
            and self._alive(name, lease)
        )
        free = [i for i in range(self.shards) if i not in self.renewed and self._free(i, listed)]
        decision = rebalance(
            me=self.identity,
            shards=self.shards,
            replicas=replicas,
            held=[i for i in self.renewed if i not in self._releasing],
            free=free,
        )
        for shard in decision.release:
            # In the background: the shard's controller winds down (up to seconds) on the main
            # loop meanwhile, and the other shards' renewals must not wait for it.
            self._releasing[shard] = asyncio.create_task(
                self._give_back(shard), name=f"release-shard-{shard}"
            )
        if (
            decision.acquire
            and not self._others_use_another_count(listed)
            and not await self._leader_alive()
        ):
            for shard in decision.acquire:
                await self._acquire(shard, listed.get(shard_lease_name(self.name, shard)))
        await self._collect(listed)
        metrics.SHARDS_HELD.set(len(self.renewed))

    def _observe(self, listed: dict[str, dict[str, Any]], *, forget: bool = True) -> None:
        now = self.clock()
        for name, lease in listed.items():
            # Any write changes the resourceVersion: a renewal is seen even if the holder's
            # clock stands still.
            record = (_holder(lease), str(lease["metadata"].get("resourceVersion") or ""))
            seen = self._seen.get(name)
            if seen is None or seen.record != record:
                self._seen[name] = _Seen(record, now)
        if forget:
            for name in set(self._seen) - set(listed) - {self.name}:
                del self._seen[name]

    def _unchanged_for(self, name: str) -> float:
        seen = self._seen.get(name)
        return self.clock() - seen.since if seen is not None else 0.0

    def _alive(self, name: str, lease: dict[str, Any]) -> bool:
        return bool(_holder(lease)) and self._unchanged_for(name) <= self.timing.duration

    def _free(self, shard: int, listed: dict[str, dict[str, Any]]) -> bool:
        name = shard_lease_name(self.name, shard)
        lease = listed.get(name)
        if lease is None:
            return True
        return may_acquire(_holder(lease), self.identity, self._unchanged_for(name), self.timing)

    def _others_use_another_count(self, listed: dict[str, dict[str, Any]]) -> bool:
        """A live shard Lease of another shard count (replicas with another ``--shards``, e.g.
        during a rolling update that changes it) owns ranges that overlap ours: take nothing
        until those replicas are gone."""
        for name, lease in listed.items():
            labels = _labels(lease)
            if labels.get(LABEL_ROLE) != "shard" or labels.get(LABEL_SHARDS) == str(self.shards):
                continue
            if self._alive(name, lease) and _holder(lease) != self.identity:
                warning = f"{name} ({labels.get(LABEL_SHARDS)} shards)"
                if warning != self._warned:
                    self._warned = warning
                    log.warning(
                        "shards: Lease %s is held with another shard count than ours (%d); "
                        "taking no shard until it is released or expires",
                        warning,
                        self.shards,
                    )
                return True
        return False

    async def _leader_alive(self) -> bool:
        """The Lease of an unsharded leader (``--shards 1``, e.g. before a rolling update that
        turns shards on) is held: that replica syncs every task, so take nothing yet."""
        lease = await self.api.read_lease(self.namespace, self.name)
        if lease is None:
            self._seen.pop(self.name, None)
            return False
        self._observe({self.name: lease}, forget=False)
        if self._alive(self.name, lease) and _holder(lease) != self.identity:
            warning = f"{self.name} (unsharded leader {_holder(lease)})"
            if warning != self._warned:
                self._warned = warning
                log.warning("shards: Lease %s is held; taking no shard until it is not", warning)
            return True
        return False

    def _body(
        self, name: str, labels: dict[str, str], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        body = lease_body(
            name, self.namespace, self.identity, self.timing, now=self.wall(), previous=previous
        )
        # A replace writes the whole object: the labels must be in it every time.
        body["metadata"]["labels"] = {LABEL_GROUP: self.name, **labels}
        return body

    async def _write(
        self, name: str, labels: dict[str, str], current: dict[str, Any] | None
    ) -> bool:
        body = self._body(name, labels, current)
        if current is None:
            return await self.api.create_lease(self.namespace, body)
        return await self.api.replace_lease(self.namespace, name, body)

    async def _announce(self, current: dict[str, Any] | None) -> None:
        try:
            await self._write(self.member, {LABEL_ROLE: "member"}, current)
        except ApiError as error:
            # The shards held must still be renewed this round.
            log.warning("shards: announcing %s: %s", self.identity, error)

    def _shard_labels(self, shard: int) -> dict[str, str]:
        return {LABEL_ROLE: "shard", LABEL_SHARD: str(shard), LABEL_SHARDS: str(self.shards)}

    async def _renew(self, shard: int, listed: dict[str, dict[str, Any]]) -> None:
        name = shard_lease_name(self.name, shard)
        current = listed.get(name)
        if current is None or _holder(current) != self.identity:
            if shard in self._releasing:
                return  # given back meanwhile
            log.warning(
                "shards: shard %d was taken by %s; stopping it", shard, _holder(current) or "nobody"
            )
            await self._lose(shard)
            return
        sent = self.clock()
        try:
            renewed = await self._write(name, self._shard_labels(shard), current)
        except ApiError as error:
            log.warning("shards: renewing shard %d: %s", shard, error)
            return
        if renewed and shard in self.renewed:  # not given back or dropped meanwhile
            lapsed = not self.holds(shard)
            self.renewed[shard] = sent
            if lapsed:
                # Renewed after the renew deadline (a slow API server), and nobody took it
                # meanwhile: syncs and writes were skipped while it lapsed.
                log.warning("shards: shard %d renewed after its renew deadline; resuming", shard)
                call_soon(self._main, lambda: self._resume(shard))

    def _resume(self, shard: int) -> None:
        held = self.held.get(shard)
        if held is not None:
            held.controller.resume()

    async def _acquire(self, shard: int, current: dict[str, Any] | None) -> None:
        name = shard_lease_name(self.name, shard)
        started = self.clock()
        if not await self._write(name, self._shard_labels(shard), current):
            return  # another replica wrote it first; the next round looks again
        log.info("shards: %s took shard %d of %d", self.identity, shard, self.shards)
        metrics.SHARD_CHANGES.labels(change="acquired").inc()
        self.renewed[shard] = started
        if self._on_main():
            self._start(shard)
        else:
            # Not awaited: the main loop may be busy, and this loop must keep renewing meanwhile.
            self._later(self._start_later(shard))

    def _on_main(self) -> bool:
        return self._main is None or self._main is asyncio.get_running_loop()

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Start or stop a shard's controller on the main loop without waiting for it. The
        starts and stops of one shard run in the order asked: each is a task there, and each
        changes ``held`` before its first await."""
        assert self._main is not None
        try:
            asyncio.run_coroutine_threadsafe(work, self._main)
        except RuntimeError:  # the main loop is closed: we are stopping
            work.close()

    async def _start_later(self, shard: int) -> None:
        self._start(shard)  # a task, not a callback: it must not overtake an earlier stop

    def _start(self, shard: int) -> None:
        """Start the shard's controller (on the main loop)."""
        if shard in self.held or shard not in self.renewed:
            return  # a controller runs already, or the shard was lost before it could start
        shards = self.shards
        owned = frozenset(shard_buckets(shard, shards))
        label_term = bucket_label_selector(shard, shards)
        if self.mode == "shardSelector":
            task_selector, task_shard = "", shard_selector(shard, shards)

            def owns(body: dict[str, Any]) -> bool:
                return bucket(str((body.get("metadata") or {}).get("uid") or "")) in owned

        else:
            task_selector, task_shard = label_term, ""

            def owns(body: dict[str, Any]) -> bool:
                labels = (body.get("metadata") or {}).get("labels") or {}
                value = str(labels.get(LABEL_BUCKET, ""))
                return value.isdigit() and int(value) in owned

        controller = Controller(
            self.api,
            workers=self.workers,
            is_leader=lambda: self.holds(shard),
            namespaces=self.namespaces,
            supervisor=self.make_supervisor(),
            task_selector=task_selector,
            task_shard=task_shard,
            job_selector=f"{LABEL_MANAGED}=true,{label_term}",
            owns=owns,
            # The shard of a Backfill is its task's: the bucket of the task's uid.
            owns_uid=lambda uid: bucket(uid) in owned,
            listen_unreachable=False,
            clock=self.controller_clock,
            policies=self.policies,
            limits=self.limits,
        )
        task = asyncio.create_task(self._run_shard(shard, controller), name=f"shard-{shard}")
        self.held[shard] = _Held(shard, controller, task)
        if shard == 0 and self._labeller is None:
            labeller = Labeller(self.api, namespaces=self.namespaces, tasks=self.mode == "label")
            self._labeller = asyncio.create_task(labeller.run(), name="shard-labeller")

    async def _run_shard(self, shard: int, controller: Controller) -> None:
        """Label this shard's unlabelled Jobs (and tasks), then run its controller, whose lists
        show at least what was written before this replica took the shard."""
        labeller = Labeller(self.api, namespaces=self.namespaces, tasks=self.mode == "label")
        failures = 0
        while True:
            try:
                await labeller.label_once(shard_buckets(shard, self.shards))
                lease = await self.api.read_lease(
                    self.namespace, shard_lease_name(self.name, shard)
                )
                break
            except ApiError as error:
                failures += 1
                delay = Backoff().delay(failures, random.random())
                log.warning("shard %d: labelling: %s; again in %.1f s", shard, error, delay)
                await asyncio.sleep(delay)
        version = str(((lease or {}).get("metadata") or {}).get("resourceVersion") or "")
        controller.list_no_older_than(version)
        await controller.run()

    async def _lose(self, shard: int) -> None:
        """Forget a shard this replica may no longer run and stop its controller: it syncs
        nothing from now on (``holds``), and the main loop stops it when it comes round."""
        if self.renewed.pop(shard, None) is None:
            return
        metrics.SHARDS_HELD.set(len(self.renewed))
        if self._on_main():
            await self._stop(shard, "lost")
        else:
            self._later(self._stop(shard, "lost"))

    async def _stop(self, shard: int, change: Literal["released", "lost"]) -> None:
        """Stop the shard's controller and forget everything it held (on the main loop)."""
        held = self.held.pop(shard, None)
        if held is None:
            return
        if change == "released":
            await held.controller.wind_down()  # the lease is still ours until given back
        held.task.cancel()
        await asyncio.gather(held.task, return_exceptions=True)
        held.controller.close()
        metrics.SHARD_CHANGES.labels(change=change).inc()
        if shard == 0 and self._labeller is not None:
            self._labeller.cancel()
            await asyncio.gather(self._labeller, return_exceptions=True)
            self._labeller = None
        del held
        memory.release()

    async def drop_lapsed(self) -> None:
        """Stop every shard not renewed within the renew deadline: its lease may expire for
        another replica soon, and two controllers must not run one shard."""
        for shard in [s for s in self.renewed if not self.holds(s)]:
            log.error(
                "shards: could not renew shard %d within %ss; stopping it",
                shard,
                self.timing.renew_deadline,
            )
            await self._lose(shard)

    async def _give_back(self, shard: int) -> None:
        try:
            await self.release(shard)
        finally:
            self._releasing.pop(shard, None)

    async def release(self, shard: int) -> None:
        """Give ``shard`` back: stop syncing it first, then clear the holder so that another
        replica takes it on its next attempt instead of waiting the lease out. The Lease is
        renewed until the controller has stopped: it is still this replica's meanwhile."""
        await run_on(self._main, lambda: self._stop(shard, "released"))
        if self.renewed.pop(shard, None) is None:
            return  # lost meanwhile
        metrics.SHARDS_HELD.set(len(self.renewed))
        name = shard_lease_name(self.name, shard)
        # A renewal sent before the pop may still land and change the resourceVersion: then
        # read again.
        for _ in range(3):
            try:
                current = await self.api.read_lease(self.namespace, name)
                if current is None or _holder(current) != self.identity:
                    return
                body = dict(current)
                body["spec"] = {**_spec(current), "holderIdentity": ""}
                if await self.api.replace_lease(self.namespace, name, body):
                    log.info("shards: %s gave shard %d back", self.identity, shard)
                    return
            except ApiError as error:
                log.warning("shards: could not give shard %d back: %s", shard, error)
                return
        log.warning("shards: could not give shard %d back: its Lease kept changing", shard)

    async def release_all(self) -> None:
        """On a clean shutdown: give every shard back and withdraw the member Lease, so that the
        others take the shards at once and count one replica fewer."""
        # Wind every controller down at once (each takes up to WIND_DOWN s), so that giving back
        # many shards stays within a pod's termination grace period; then release them in turn.
        # (The Lease loop has stopped: run() was cancelled first.)
        await asyncio.gather(*(held.controller.wind_down() for held in self.held.values()))
        for shard in sorted(set(self.held) | set(self.renewed)):
            self.renewed.setdefault(shard, self.clock())
            await self.release(shard)
        with contextlib.suppress(ApiError):
            current = await self.api.read_lease(self.namespace, self.member)
            if current is not None:
                version = str(current["metadata"].get("resourceVersion") or "")
                await self.api.delete_lease(self.namespace, self.member, version)

    async def _collect(self, listed: dict[str, dict[str, Any]]) -> None:
        """Delete member Leases of replicas gone long ago (killed, so never withdrawn)."""
        for name, lease in listed.items():
            if _labels(lease).get(LABEL_ROLE) != "member" or name == self.member:
                continue
            if self._unchanged_for(name) > STALE_MEMBER:
                version = str(lease["metadata"].get("resourceVersion") or "")
                await self.api.delete_lease(self.namespace, name, version)

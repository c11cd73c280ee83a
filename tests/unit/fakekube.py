"""An in-memory API server for unit tests: :class:`FakeKube` implements ``nightshift.api.KubeApi``.

It behaves like the real API server where the operator depends on it, and nowhere else:

- resourceVersions come from one counter that only grows (like etcd's revision), uids are unique;
- ``patch_status`` is a JSON merge patch of the status with a resourceVersion precondition:
  :class:`~nightshift.api.Conflict` when the task changed (or was re-created) since, None when it
  is gone; an empty resourceVersion is no precondition, as for the API server; nulls are pruned
  (the CRD's fields are not nullable), in list items too;
- ``create_job`` of an existing name is "adopted" only when the task's uid is the Job's controller
  ownerReference, otherwise a "conflict"; ``delete_job`` with a uid leaves a namesake alone,
  without one but with an owner uid a Job that owner does not control, and deletes the Job's pods
  with it (background propagation);
- ``pod_outcome`` reads only pods the Job (by uid) controls;
- lists come in pages of ``page_size``, encoded as the API server does, every page from the
  snapshot the first page was taken at (as a ``continue`` token does); a watch never delivers by
  itself: tests hand its events over (:meth:`FakeKube.take_watch`), so they can make it lag;
- Events are recorded (a patch updates the count; :meth:`FakeKube.expire_events` plays the TTL);
  Leases refuse a replace at a stale resourceVersion and are listed by label;
- namespaces exist only when a test makes them (:meth:`FakeKube.put_namespace`), and are listed
  and watched like the rest (a ``metadata.name`` field selector picks one); a SubjectAccessReview
  allows everyone but the users and groups :attr:`FakeKube.no_jobs` names for a namespace;
- Calendars and Backfills (:attr:`FakeKube.objects`) are listed, read and have their status
  patched like tasks; none exist unless a test creates them;
- label selectors (``k=v``, ``k!=v``, ``k in (a,b)``, ``k``, ``!k``) select list items, and so
  does a ``shardSelector`` (the FNV-1a hash of the uid) while :attr:`FakeKube.shard_filtering` is
  on, as on an API server with ``ShardedListAndWatch`` (which refuses a malformed one with a 500);
  off, it is ignored, as by older servers.

Faults are configured, never computed: :meth:`FakeKube.fail` makes the next calls of a verb raise
(an :class:`~nightshift.api.Unreachable` also calls ``on_unreachable`` first, as the real client
does), and :meth:`FakeKube.hold` keeps a verb's calls in flight until released. Every call is in
:attr:`FakeKube.calls`; what the watches would deliver is in :attr:`FakeKube.watch`. Mutations
made as "someone else" (a user, another replica, the Job controller) have their own methods.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import random
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from nightshift.api import ApiError, Conflict, CreateResult, Unreachable
from nightshift.models import API_VERSION, KIND, format_time
from nightshift.sharding import fnv1a64

__all__ = ["Call", "FakeClock", "FakeKube", "Hold", "Monotonic", "WatchEvent"]

T = TypeVar("T")
Obj = dict[str, Any]
ObjKey = tuple[str, str]
WRITES = frozenset(
    {
        "create_job",
        "delete_job",
        "patch_status",
        "post_event",
        "patch_event",
        "create_lease",
        "replace_lease",
        "delete_lease",
        "label",
        "patch_backfills_status",
        "patch_calendars_status",
    }
)


class FakeClock:
    """A wall clock that moves only when told: ``clock()`` is the time, ``advance`` moves it."""

    def __init__(self, now: datetime | str) -> None:
        self.now = _utc(now) if isinstance(now, str) else now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, when: datetime | str) -> datetime:
        self.now = _utc(when) if isinstance(when, str) else when
        return self.now


class Monotonic:
    """A monotonic clock (float seconds) that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the API: its verb and its arguments (bodies are copies)."""

    verb: str
    namespace: str | None = None
    name: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """What a watch would deliver: ``resource`` is "tasks" or "jobs"."""

    resource: Literal["tasks", "jobs", "namespaces"]
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    body: Obj


@dataclass(slots=True)
class _Fault:
    verb: str
    error: Exception
    remaining: int | None  # None: until healed
    match: Callable[[Call], bool] | None


class Hold:
    """Calls of a verb wait here until :meth:`release`; :attr:`arrived` is set once one waits.

    With ``match``, only the calls it accepts wait; with ``times``, only the first so many."""

    def __init__(
        self, match: Callable[[Call], bool] | None = None, times: int | None = None
    ) -> None:
        self.arrived = asyncio.Event()
        self.waiting = 0
        self._open = asyncio.Event()
        self._match = match
        self._left = times

    def catches(self, call: Call) -> bool:
        if self._open.is_set() or (self._match is not None and not self._match(call)):
            return False
        if self._left is not None:
            if self._left == 0:
                return False
            self._left -= 1
        return True

    async def wait(self) -> None:
        self.waiting += 1
        self.arrived.set()
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._open.set()


class FakeKube:
    """Tasks, Jobs, pods, Events and Leases in memory, behind the ``KubeApi`` calls."""

    def __init__(
        self, clock: Callable[[], datetime] = lambda: datetime.now(UTC), *, page_size: int = 500
    ) -> None:
        self.clock = clock
        self.page_size = page_size
        self.tasks: dict[ObjKey, Obj] = {}
        self.jobs: dict[ObjKey, Obj] = {}
        self.pods: dict[ObjKey, Obj] = {}
        self.leases: dict[ObjKey, Obj] = {}
        # Our API group's other kinds by plural (calendars, backfills): listed, read, their
        # status patched; none exist unless a test creates them.
        self.objects: dict[str, dict[ObjKey, Obj]] = {"calendars": {}, "backfills": {}}
        self.events: list[Obj] = []
        self.calls: list[Call] = []
        self.watch: list[WatchEvent] = []
        self.on_unreachable: Callable[[], None] = lambda: None
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        self._faults: list[_Fault] = []
        self._holds: dict[str, Hold] = {}
        self._snapshots: dict[tuple[str, ...], tuple[list[Obj], str]] = {}
        self.shard_filtering = True
        self.no_jobs: dict[str, set[str]] = {}  # namespace: users and groups refused Jobs there
        # Namespaces (keyed like the rest: "", name); none exist unless a test makes them.
        self.namespaces: dict[ObjKey, Obj] = {}

    # --- configuration: faults and holds -------------------------------------------------------

    def fail(
        self,
        verb: str,
        error: Exception,
        *,
        times: int | None = 1,
        match: Callable[[Call], bool] | None = None,
    ) -> None:
        """The next ``times`` calls of ``verb`` (None: all, until :meth:`heal`) that ``match``
        raise ``error`` (an ApiError, or anything else to play a bug). A non-transient ApiError
        on ``create_job`` is its permanent refusal: the call returns ("error", message, None),
        as the Protocol says."""
        self._faults.append(_Fault(verb, error, times, match))

    def heal(self, verb: str | None = None) -> None:
        """Forget the faults of ``verb`` (None: every verb)."""
        self._faults = [f for f in self._faults if verb is not None and f.verb != verb]

    def hold(
        self, verb: str, *, match: Callable[[Call], bool] | None = None, times: int | None = None
    ) -> Hold:
        """Keep the calls of ``verb`` (those ``match`` accepts; only the first ``times``) in
        flight, after they are recorded, until released."""
        hold = self._holds[verb] = Hold(match, times)
        return hold

    async def _enter(self, call: Call) -> None:
        self.calls.append(call)
        hold = self._holds.get(call.verb)
        if hold is not None and hold.catches(call):
            await hold.wait()
        for fault in self._faults:
            if fault.verb != call.verb or fault.remaining == 0:
                continue
            if fault.match is not None and not fault.match(call):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
            if isinstance(fault.error, Unreachable):
                self.on_unreachable()
            raise fault.error

    # --- what tests read -----------------------------------------------------------------------

    def verbs(self) -> list[str]:
        """Every call's verb, in order."""
        return [c.verb for c in self.calls]

    def writes(self) -> list[tuple[str, str]]:
        """(verb, object name) of every write, in order (an Event's name is its reason)."""
        return [(c.verb, c.name or "") for c in self.calls if c.verb in WRITES]

    def task(self, namespace: str, name: str) -> Obj:
        """The stored task (a copy)."""
        return copy.deepcopy(self.tasks[namespace, name])

    def job_names(self, namespace: str) -> list[str]:
        return sorted(name for ns, name in self.jobs if ns == namespace)

    def event_reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]

    def take_watch(self) -> list[WatchEvent]:
        """The watch events since the last call (and forget them)."""
        events, self.watch = self.watch, []
        return events

    # --- changes made by someone else: users, other replicas, the Job controller ---------------

    def _meta(self, namespace: str, name: str) -> Obj:
        return {
            "name": name,
            "namespace": namespace,
            "uid": _uuid(next(self._uid)),
            "resourceVersion": str(next(self._rv)),
            "creationTimestamp": format_time(self.clock()),
        }

    def _bump(self, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def _emit(self, resource: Literal["tasks", "jobs", "namespaces"], kind: Any, obj: Obj) -> None:
        self.watch.append(WatchEvent(resource, kind, copy.deepcopy(obj)))

    def create_task(
        self,
        namespace: str,
        name: str,
        spec: Obj,
        *,
        status: Obj | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        """A user creates a ScheduledTask (generation 1)."""
        meta = self._meta(namespace, name) | {"generation": 1}
        if annotations:
            meta["annotations"] = dict(annotations)
        obj: Obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
        if status is not None:
            obj["status"] = copy.deepcopy(status)
        self.tasks[namespace, name] = obj
        self._emit("tasks", "ADDED", obj)
        return copy.deepcopy(obj)

    def update_task(
        self,
        namespace: str,
        name: str,
        *,
        spec: Obj | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        """A user changes the spec (a new generation) or the annotations."""
        obj = self.tasks[namespace, name]
        if spec is not None and spec != obj["spec"]:
            obj["spec"] = copy.deepcopy(spec)
            obj["metadata"]["generation"] += 1
        if annotations is not None:
            obj["metadata"]["annotations"] = dict(annotations)
        self._bump(obj)
        self._emit("tasks", "MODIFIED", obj)
        return copy.deepcopy(obj)

    def write_status(self, namespace: str, name: str, status: Obj) -> Obj:
        """Someone else (another replica) replaces the status."""
        obj = self.tasks[namespace, name]
        obj["status"] = _prune(status)
        self._bump(obj)
        self._emit("tasks", "MODIFIED", obj)
        return copy.deepcopy(obj)

    def delete_task(self, namespace: str, name: str, *, cascade: bool = True) -> None:
        """A user deletes the task; with ``cascade`` the garbage collector takes its Jobs."""
        obj = self.tasks.pop((namespace, name))
        self._bump(obj)
        self._emit("tasks", "DELETED", obj)
        if cascade:
            uid = obj["metadata"]["uid"]
            for (ns, job), body in list(self.jobs.items()):
                if ns == namespace and _controller_uid(body) == uid:
                    self._remove_job(ns, job)

    def put_namespace(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        """A cluster admin creates the namespace, or sets its labels and annotations."""
        obj = self.namespaces.get(("", name))
        kind = "MODIFIED" if obj is not None else "ADDED"
        if obj is None:
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": self._meta("", name)}
            del obj["metadata"]["namespace"]
            self.namespaces["", name] = obj
        obj["metadata"]["labels"] = dict(labels or {})
        obj["metadata"]["annotations"] = dict(annotations or {})
        self._bump(obj)
        self._emit("namespaces", kind, obj)
        return copy.deepcopy(obj)

    def finish_job(
        self,
        namespace: str,
        name: str,
        *,
        succeeded: bool,
        exit_code: int | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> Obj:
        """The Job controller marks the Job finished; its pod terminated with ``exit_code``."""
        job = self.jobs[namespace, name]
        now = format_time(self.clock())
        job["status"] = {
            "conditions": [
                {
                    "type": "Complete" if succeeded else "Failed",
                    "status": "True",
                    "reason": reason or ("Completed" if succeeded else "BackoffLimitExceeded"),
                    "lastTransitionTime": now,
                }
            ]
        }
        self._bump(job)
        if exit_code is not None:
            self.add_pod(namespace, name, exit_code=exit_code, message=message)
        self._emit("jobs", "MODIFIED", job)
        return copy.deepcopy(job)

    def add_pod(
        self,
        namespace: str,
        job: str,
        *,
        exit_code: int | None,
        message: str | None = None,
        owner_uid: str | None = None,
        suffix: str | None = None,
    ) -> Obj:
        """A pod of Job ``job`` (controlled by it unless ``owner_uid`` says otherwise)."""
        uid = owner_uid if owner_uid is not None else self.jobs[namespace, job]["metadata"]["uid"]
        name = f"{job}-{suffix or format(len(self.pods), '05d')}"
        state: Obj = {"running": {}}
        if exit_code is not None:
            state = {"terminated": {"exitCode": exit_code}}
            if message is not None:
                state["terminated"]["message"] = message
        pod: Obj = {
            "metadata": self._meta(namespace, name)
            | {
                "labels": {"batch.kubernetes.io/job-name": job},
                "ownerReferences": [{"kind": "Job", "name": job, "uid": uid, "controller": True}],
            },
            "status": {"containerStatuses": [{"name": "main", "state": state}]},
        }
        self.pods[namespace, name] = pod
        return copy.deepcopy(pod)

    def remove_job(self, namespace: str, name: str) -> None:
        """Someone deletes the Job (kubectl delete job)."""
        self._remove_job(namespace, name)

    def _remove_job(self, namespace: str, name: str) -> None:
        job = self.jobs.pop((namespace, name))
        uid = job["metadata"]["uid"]
        for key, pod in list(self.pods.items()):
            if key[0] == namespace and _controller_uid(pod) == uid:
                del self.pods[key]
        self._bump(job)
        self._emit("jobs", "DELETED", job)

    def put_job(self, namespace: str, manifest: Obj) -> Obj:
        """A Job created by someone else (another replica, before this one saw it)."""
        name = manifest["metadata"]["name"]
        job = copy.deepcopy(manifest)
        job["metadata"] = job["metadata"] | self._meta(namespace, name)
        job.setdefault("status", {})
        self.jobs[namespace, name] = job
        self._emit("jobs", "ADDED", job)
        return copy.deepcopy(job)

    # --- KubeApi --------------------------------------------------------------------------------

    async def create_job(self, namespace: str, manifest: Obj, owner_uid: str) -> CreateResult:
        name = manifest["metadata"]["name"]
        call = Call("create_job", namespace, name, {"manifest": copy.deepcopy(manifest)})
        try:
            await self._enter(call)
        except ApiError as error:
            if error.transient:
                raise
            return "error", str(error), None
        existing = self.jobs.get((namespace, name))
        if existing is None:
            return "created", "", self.put_job(namespace, manifest)
        if _controller_uid(existing) == owner_uid:
            return "adopted", "", copy.deepcopy(existing)
        return "conflict", f"Job {name} exists and is controlled by someone else", None

    async def delete_job(
        self, namespace: str, name: str, uid: str | None = None, *, owner_uid: str | None = None
    ) -> None:
        await self._enter(Call("delete_job", namespace, name, {"uid": uid}))
        job = self.jobs.get((namespace, name))
        if job is None or (uid and job["metadata"]["uid"] != uid):
            return  # missing, or a namesake the precondition protects
        if uid is None and owner_uid is not None:
            refs = job["metadata"].get("ownerReferences") or []
            if not any(r.get("controller") and r.get("uid") == owner_uid for r in refs):
                return  # not the owner's: left alone
        self._remove_job(namespace, name)

    async def get_task(self, namespace: str, name: str) -> Obj | None:
        await self._enter(Call("get_task", namespace, name))
        obj = self.tasks.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def create_object(self, plural: str, kind: str, namespace: str, name: str, spec: Obj) -> Obj:
        """A user creates a Calendar or a Backfill."""
        meta = self._meta(namespace, name) | {"generation": 1}
        obj: Obj = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
        self.objects[plural][namespace, name] = obj
        return copy.deepcopy(obj)

    async def list_jobs(
        self, namespace: str | None, selector: str
    ) -> AsyncGenerator[list[Obj], None]:
        await self._enter(Call("list_jobs", namespace, None, {"labelSelector": selector}))
        yield [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self.jobs.items())
            if (namespace is None or ns == namespace) and matches(obj, selector)
        ]

    async def list_objects(
        self, plural: str, namespace: str | None
    ) -> AsyncGenerator[list[Obj], None]:
        await self._enter(Call(f"list_{plural}", namespace, None))
        yield [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self.objects[plural].items())
            if namespace is None or ns == namespace
        ]

    async def get_object(self, plural: str, namespace: str, name: str) -> Obj | None:
        await self._enter(Call(f"get_{plural}", namespace, name))
        obj = self.objects[plural].get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def patch_object_status(
        self, plural: str, namespace: str, name: str, status: Obj, resource_version: str
    ) -> Obj | None:
        call = Call(
            f"patch_{plural}_status",
            namespace,
            name,
            {"status": copy.deepcopy(status), "resourceVersion": resource_version},
        )
        await self._enter(call)
        obj = self.objects[plural].get((namespace, name))
        if obj is None:
            return None
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(f"status of {plural} {namespace}/{name}: the object has been modified")
        obj["status"] = _prune(_merge(obj.get("status") or {}, status))
        self._bump(obj)
        return copy.deepcopy(obj)

    async def patch_status(
        self, namespace: str, name: str, status: Obj, resource_version: str
    ) -> Obj | None:
        call = Call(
            "patch_status",
            namespace,
            name,
            {"status": copy.deepcopy(status), "resourceVersion": resource_version},
        )
        await self._enter(call)
        obj = self.tasks.get((namespace, name))
        if obj is None:
            return None
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(f"status of {namespace}/{name}: the object has been modified")
        obj["status"] = _prune(_merge(obj.get("status") or {}, status))
        self._bump(obj)
        self._emit("tasks", "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def pod_outcome(
        self, namespace: str, job: str, job_uid: str
    ) -> tuple[int | None, str | None]:
        await self._enter(Call("pod_outcome", namespace, job, {"uid": job_uid}))
        owned = sorted(
            (
                p
                for (ns, _), p in self.pods.items()
                if ns == namespace
                and p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job
                and _controller_uid(p) == job_uid
            ),
            key=lambda p: str(p["metadata"]["creationTimestamp"]),  # stable: ties keep their order
        )
        for pod in reversed(owned):
            for status in pod["status"]["containerStatuses"]:
                terminated = status["state"].get("terminated")
                if terminated is not None:
                    return terminated.get("exitCode"), terminated.get("message")
        return None, None

    async def list_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> T:
        """One page of a list at ``path``, as the API server encodes it (the ``continue`` token
        is the page number; every page comes from the first page's snapshot)."""
        namespace, resource = _parse_path(path)
        page = int(params.get("continue") or 0)
        await self._enter(Call(verb, namespace, None, {"page": page, **params}))
        # One snapshot per list (a continue token belongs to its own list).
        which = (path, params.get("labelSelector", ""), params.get("shardSelector", ""))
        if page == 0:
            shard = self._shard_range(params.get("shardSelector", ""))
            objects = {
                "scheduledtasks": self.tasks,
                "jobs": self.jobs,
                "namespaces": self.namespaces,
            }.get(resource)
            if objects is None:
                objects = self.objects[resource]
            self._snapshots[which] = (
                [
                    copy.deepcopy(obj)
                    for key, obj in sorted(objects.items())
                    if (namespace is None or key[0] == namespace)
                    and matches(obj, params.get("labelSelector", ""))
                    and fields_match(obj, params.get("fieldSelector", ""))
                    and (shard is None or shard[0] <= fnv1a64(obj["metadata"]["uid"]) < shard[1])
                ],
                str(next(self._rv)),
            )
        snapshot, version = self._snapshots[which]
        size = int(params.get("limit") or self.page_size)
        size = min(size, self.page_size)
        items = snapshot[page * size : (page + 1) * size]
        more = (page + 1) * size < len(snapshot)
        body = {
            "metadata": {
                "resourceVersion": version,
                **({"continue": str(page + 1)} if more else {}),
            },
            "items": items,
        }
        return decode(json.dumps(body).encode())

    def _shard_range(self, selector: str) -> tuple[int, int] | None:
        if not selector or not self.shard_filtering:
            return None
        found = re.fullmatch(
            r"shardRange\(object\.metadata\.uid, '0x([0-9a-f]{16}|10000000000000000)', "
            r"'0x([0-9a-f]{16}|10000000000000000)'\)",
            selector,
        )
        if found is None:
            raise ApiError(f"list: invalid shard selector: {selector} (HTTP 500)", status=500)
        return int(found[1], 16), int(found[2], 16)

    async def watch_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> AsyncGenerator[list[T], None]:
        """A watch that never delivers by itself: tests hand the events over with
        :meth:`take_watch` (so they can make the watch lag)."""
        namespace, _ = _parse_path(path)
        await self._enter(Call(verb, namespace, None, dict(params)))
        await asyncio.Event().wait()
        yield []  # never reached

    async def post_event(
        self,
        ref: Obj,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        count: int = 1,
    ) -> str:
        meta = ref["metadata"]
        await self._enter(
            Call("post_event", meta.get("namespace"), reason, {"message": message, "type": kind})
        )
        name = f"{meta.get('name')}.{len(self.events):05d}"
        self.events.append(
            {
                "metadata": {"name": name, "namespace": meta.get("namespace")},
                # As the real client fills it in: a ScheduledTask unless the ref names its kind.
                "involvedObject": {
                    "kind": ref.get("kind") or "ScheduledTask",
                    **copy.deepcopy(meta),
                },
                "type": kind,
                "reason": reason,
                "message": message,
                "count": count,
            }
        )
        return name

    async def patch_event(self, namespace: str, name: str, count: int, message: str) -> bool:
        found = next((e for e in self.events if e["metadata"]["name"] == name), None)
        reason = found["reason"] if found else name
        await self._enter(
            Call("patch_event", namespace, reason, {"count": count, "message": message})
        )
        if found is None or found["metadata"]["namespace"] != namespace:
            return False
        found["count"], found["message"] = count, message
        return True

    def expire_events(self) -> None:
        """The API server's event TTL passed: every Event is gone."""
        self.events.clear()

    async def may_create_jobs(self, namespace: str, user: Mapping[str, Any]) -> tuple[bool, str]:
        """Allowed unless the user (by name, or one of its groups) is in :attr:`no_jobs` for the
        namespace: tests say who may not."""
        await self._enter(Call("may_create_jobs", namespace, str(user.get("username"))))
        who = {str(user.get("username")), *(str(g) for g in user.get("groups") or [])}
        if who & self.no_jobs.get(namespace, set()):
            return False, ""
        return True, "allowed by the fake"

    async def read_lease(self, namespace: str, name: str) -> Obj | None:
        await self._enter(Call("read_lease", namespace, name))
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease is not None else None

    async def create_lease(self, namespace: str, body: Obj) -> bool:
        name = body["metadata"]["name"]
        await self._enter(Call("create_lease", namespace, name, {"body": copy.deepcopy(body)}))
        if (namespace, name) in self.leases:
            return False
        lease = copy.deepcopy(body)
        lease["metadata"] = lease["metadata"] | self._meta(namespace, name)
        self.leases[namespace, name] = lease
        return True

    async def replace_lease(self, namespace: str, name: str, body: Obj) -> bool:
        await self._enter(Call("replace_lease", namespace, name, {"body": copy.deepcopy(body)}))
        lease = self.leases.get((namespace, name))
        if lease is None:
            raise ApiError(f"update Lease {namespace}/{name}: not found (HTTP 404)", status=404)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != lease["metadata"]["resourceVersion"]:
            return False
        lease["spec"] = copy.deepcopy(body.get("spec") or {})
        labels = (body.get("metadata") or {}).get("labels")
        if labels is not None:
            lease["metadata"]["labels"] = dict(labels)
        else:
            lease["metadata"].pop("labels", None)  # a replace writes the whole object
        self._bump(lease)
        return True

    async def list_leases(self, namespace: str, selector: str) -> list[Obj]:
        await self._enter(Call("list_leases", namespace, None, {"selector": selector}))
        return [
            copy.deepcopy(lease)
            for (ns, _), lease in sorted(self.leases.items())
            if ns == namespace and matches(lease, selector)
        ]

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        await self._enter(Call("delete_lease", namespace, name, {"rv": resource_version}))
        lease = self.leases.get((namespace, name))
        if lease is not None and lease["metadata"]["resourceVersion"] == resource_version:
            del self.leases[namespace, name]

    async def label(
        self,
        plural: Literal["jobs", "scheduledtasks"],
        namespace: str,
        name: str,
        uid: str,
        labels: dict[str, str],
    ) -> bool:
        await self._enter(Call("label", namespace, name, {"plural": plural, "labels": labels}))
        objects = self.jobs if plural == "jobs" else self.tasks
        obj = objects.get((namespace, name))
        if obj is None or obj["metadata"]["uid"] != uid:
            return False
        obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **labels}
        self._bump(obj)
        self._emit("jobs" if plural == "jobs" else "tasks", "MODIFIED", obj)
        return True

    def hold_lease(
        self, namespace: str, name: str, holder: str, labels: dict[str, str] | None = None
    ) -> Obj:
        """Another replica writes (or renews) the Lease ``name`` as ``holder``."""
        lease = self.leases.get((namespace, name))
        if lease is None:
            lease = {"metadata": self._meta(namespace, name), "spec": {}}
            self.leases[namespace, name] = lease
        if labels is not None:
            lease["metadata"]["labels"] = dict(labels)
        lease["spec"] = {
            **lease.get("spec", {}),
            "holderIdentity": holder,
            "renewTime": format_time(self.clock()) + f"#{next(self._rv)}",
            "leaseDurationSeconds": 10,
        }
        self._bump(lease)
        return copy.deepcopy(lease)


def _uuid(n: int) -> str:
    """The ``n``-th uid: random-looking like the API server's (version 4 UUIDs), the same every
    run. Shards hash uids; "uid-1", "uid-2", ... would all fall in one bucket."""
    return str(uuid.UUID(int=random.Random(n).getrandbits(128), version=4))


def _terms(selector: str) -> list[str]:
    """A label selector's terms: split at the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


def matches(obj: Obj, selector: str) -> bool:
    """Whether ``obj``'s labels match a label selector (the forms the operator sends)."""
    labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    for term in _terms(selector):
        if found := re.fullmatch(r"(\S+)\s+in\s+\((.*)\)", term):
            if labels.get(found[1]) not in {v.strip() for v in found[2].split(",")}:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _parse_path(path: str) -> tuple[str | None, str]:
    """(namespace or None, plural) of a collection path like /apis/batch/v1/namespaces/x/jobs
    (or /api/v1/namespaces, the namespaces themselves)."""
    parts = path.strip("/").split("/")
    if parts[-1] == "namespaces":
        return None, "namespaces"
    namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
    return namespace, parts[-1]


def fields_match(obj: Obj, selector: str) -> bool:
    """Whether ``obj`` matches a field selector (only ``metadata.name=...``, what the operator
    sends)."""
    if not selector:
        return True
    key, _, value = selector.partition("=")
    assert key == "metadata.name", selector
    return bool(obj["metadata"]["name"] == value)


def _controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _prune(value: Any) -> Any:
    """What a structural schema stores: null fields (not nullable) are dropped, at any depth."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return copy.deepcopy(value)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

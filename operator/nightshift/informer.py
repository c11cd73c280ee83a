"""The operator's own list-and-watch of tasks and Jobs, decoded straight into what it keeps.

An informer lists its resource a page at a time (the next page is asked for only once the last
one has been taken in, so a list of 10,000 tasks never sits in memory whole), then watches from the
list's resourceVersion with bookmarks. A watch the server ends is resumed from the last version
seen; 410 Gone, or a request to list afresh (after the API server was unreachable), lists again.
Each list tells the consumer what exists, so what was deleted while no watch ran is forgotten.

A list asks for a state no older than the last version the informer saw (or than a version its
owner names, e.g. the shard Lease it took), which the API server serves from its watch cache. A
list with no version at all is a consistent read: a busy server whose cache lags etcd serves that
from etcd, filtering every object of the resource, which at 50,000 tasks took longer than the
read timeout and added to the load that made the cache lag.

Decoding happens in the watch's own thread with msgspec: a Job keeps only the fields the
controller reads (a full Job is ~5 KB of JSON), a task everything but ``managedFields``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from nightshift.api import ApiError, KubeApi
from nightshift.guard import ANNOTATION_SERVICE_ACCOUNTS, LABEL_ENFORCE
from nightshift.workqueue import Backoff

__all__ = [
    "BACKFILLS",
    "CALENDARS",
    "JOBS",
    "NAMESPACES",
    "PAGE",
    "TASKS",
    "Informer",
    "Resource",
    "Sink",
    "decode_job",
]

log = logging.getLogger(__name__)

PAGE = 500
WATCH_SECONDS = 300  # the server ends each watch after this; it is then resumed, not re-listed


# --- decoding ------------------------------------------------------------------------------------


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_: str = msgspec.field(name="continue", default="")


class _Envelope(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _Status(msgspec.Struct):
    code: int = 0
    message: str = ""


class _Bookmark(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)


class _OwnerRef(msgspec.Struct, omit_defaults=True):
    apiVersion: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool = False


class _JobMeta(msgspec.Struct, omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    ownerReferences: list[_OwnerRef] = msgspec.field(default_factory=list)


class _Condition(msgspec.Struct, omit_defaults=True):
    type: str = ""
    status: str = ""
    reason: str | None = None
    lastTransitionTime: str | None = None


class _JobSpec(msgspec.Struct, omit_defaults=True):
    suspend: bool | None = None


class _JobStatus(msgspec.Struct, omit_defaults=True):
    conditions: list[_Condition] = msgspec.field(default_factory=list)


class _Job(msgspec.Struct, omit_defaults=True):
    metadata: _JobMeta = msgspec.field(default_factory=_JobMeta)
    spec: _JobSpec = msgspec.field(default_factory=_JobSpec)
    status: _JobStatus = msgspec.field(default_factory=_JobStatus)


class _JobList(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Job] = msgspec.field(default_factory=list)


class _ObjectList(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[dict[str, Any]] = msgspec.field(default_factory=list)


_JSON = msgspec.json.Decoder()


def decode_job(raw: bytes | msgspec.Raw) -> dict[str, Any]:
    """A Job's body as a dict with only the fields the controller reads."""
    body: dict[str, Any] = msgspec.to_builtins(msgspec.json.decode(raw, type=_Job))
    return body


def _task(raw: bytes | msgspec.Raw) -> dict[str, Any]:
    body: dict[str, Any] = _JSON.decode(raw)
    return _trimmed(body)


def _trimmed(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)  # large, and never read
    return body


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: the items as the consumer takes them, and where to go on."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: its type, and the object (None for BOOKMARK and ERROR)."""

    type: str
    body: dict[str, Any] | None
    resource_version: str
    code: int = 0
    message: str = ""


def _event_decoder(item: Callable[[msgspec.Raw], dict[str, Any]]) -> Callable[[bytes], WatchEvent]:
    def decode(line: bytes) -> WatchEvent:
        envelope = msgspec.json.decode(line, type=_Envelope)
        if envelope.type == "ERROR":
            status = msgspec.json.decode(envelope.object, type=_Status)
            return WatchEvent("ERROR", None, "", status.code, status.message)
        if envelope.type == "BOOKMARK":
            mark = msgspec.json.decode(envelope.object, type=_Bookmark)
            return WatchEvent("BOOKMARK", None, mark.metadata.resourceVersion)
        body = item(envelope.object)
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return WatchEvent(envelope.type, body, version)

    return decode


def _jobs_page(raw: bytes) -> Page:
    listed = msgspec.json.decode(raw, type=_JobList)
    items = [msgspec.to_builtins(job) for job in listed.items]
    return Page(items, listed.metadata.resourceVersion, listed.metadata.continue_)


def _objects_page(raw: bytes) -> Page:
    listed = msgspec.json.decode(raw, type=_ObjectList)
    return Page(
        [_trimmed(item) for item in listed.items],
        listed.metadata.resourceVersion,
        listed.metadata.continue_,
    )


class _NamespaceMeta(msgspec.Struct, omit_defaults=True):
    name: str = ""
    uid: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class _Namespace(msgspec.Struct):
    metadata: _NamespaceMeta = msgspec.field(default_factory=_NamespaceMeta)


class _NamespaceList(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Namespace] = msgspec.field(default_factory=list)


def _kept(namespace: _Namespace) -> dict[str, Any]:
    """A namespace as the guard reads it: its name, Pod Security label and ServiceAccount
    allowlist (annotations can be large: last-applied-configuration)."""
    meta = namespace.metadata
    return {
        "metadata": {
            "name": meta.name,
            "uid": meta.uid,
            "resourceVersion": meta.resourceVersion,
            "labels": {k: v for k, v in meta.labels.items() if k == LABEL_ENFORCE},
            "annotations": {
                k: v for k, v in meta.annotations.items() if k == ANNOTATION_SERVICE_ACCOUNTS
            },
        }
    }


def _namespace(raw: bytes | msgspec.Raw) -> dict[str, Any]:
    return _kept(msgspec.json.decode(raw, type=_Namespace))


def _namespaces_page(raw: bytes) -> Page:
    listed = msgspec.json.decode(raw, type=_NamespaceList)
    items = [_kept(n) for n in listed.items]
    return Page(items, listed.metadata.resourceVersion, listed.metadata.continue_)


@dataclass(frozen=True, slots=True)
class Resource:
    """What an informer lists and watches, and how its objects are decoded."""

    name: str  # "tasks", "jobs" or "namespaces": for logs and request counters
    api_version: str  # "batch/v1"
    kind: str
    plural: str
    decode_page: Callable[[bytes], Page]
    decode_event: Callable[[bytes], WatchEvent]
    cluster: bool = False  # cluster-scoped: never under a namespace

    def path(self, namespace: str | None) -> str:
        group = "/api" if "/" not in self.api_version else "/apis"
        where = f"/namespaces/{namespace}" if namespace and not self.cluster else ""
        return f"{group}/{self.api_version}{where}/{self.plural}"


TASKS = Resource(
    "tasks",
    "nightshift.dev/v1alpha1",
    "ScheduledTask",
    "scheduledtasks",
    _objects_page,
    _event_decoder(_task),
)
JOBS = Resource("jobs", "batch/v1", "Job", "jobs", _jobs_page, _event_decoder(decode_job))
CALENDARS = Resource(
    "calendars",
    "nightshift.dev/v1alpha1",
    "Calendar",
    "calendars",
    _objects_page,
    _event_decoder(_task),
)
BACKFILLS = Resource(
    "backfills",
    "nightshift.dev/v1alpha1",
    "Backfill",
    "backfills",
    _objects_page,
    _event_decoder(_task),
)
NAMESPACES = Resource(
    "namespaces",
    "v1",
    "Namespace",
    "namespaces",
    _namespaces_page,
    _event_decoder(_namespace),
    cluster=True,
)


# --- the informer --------------------------------------------------------------------------------


class Sink(Protocol):
    """What an informer feeds: each listed or watched object, and the end of each list."""

    def listing(self) -> int:
        """A list begins; returns a mark to hand back to :meth:`listed`."""
        ...

    def event(self, kind: str, body: dict[str, Any]) -> None:
        """An object was listed (kind "RESYNC"), added, modified or deleted."""
        ...

    def listed(self, mark: int, seen: set[tuple[str, str, str]]) -> None:
        """A list begun at ``mark`` is complete: ``seen`` holds (namespace, name, uid) of what
        exists; anything else last heard of before ``mark`` is gone."""
        ...


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Informer:
    """Lists, then watches, one resource in one namespace (or all), for ever."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        sink: Sink,
        *,
        namespace: str | None = None,
        selector: str = "",
        shard: str = "",
        fields: str = "",
        page: int = PAGE,
        backoff: Backoff | None = None,
        not_older_than: str = "",
    ) -> None:
        """``not_older_than``: the resourceVersion the first list's state must have reached
        ("": a consistent read); later lists use the last version seen."""
        self.api = api
        self.resource = resource
        self.sink = sink
        self.namespace = namespace
        self.params: dict[str, str] = {}
        if selector:
            self.params["labelSelector"] = selector
        if shard:
            self.params["shardSelector"] = shard
        if fields:
            self.params["fieldSelector"] = fields
        self.page = page
        self.backoff = backoff or Backoff()
        self._relist = asyncio.Event()
        self.lists = 0  # completed lists (tests and logs)
        self.version = not_older_than  # the latest resourceVersion seen (or given)

    def relist(self) -> None:
        """List afresh as soon as possible (the current watch is abandoned)."""
        self._relist.set()

    async def run(self) -> None:
        failures = 0
        while True:
            self._relist.clear()
            try:
                self.version = await self._list()
                failures = 0
                while not self._relist.is_set():
                    self.version = await self._watch(self.version)
            except _Gone:
                log.info("%s: the watch expired (410 Gone); listing again", self._what)
            except ApiError as error:
                failures += 1
                delay = self.backoff.delay(failures, random.random())
                log.warning("%s: %s; listing again in %.1f s", self._what, error, delay)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
                # that comes with the event (CPython gh-86296), and stopping would then hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._relist.wait()

    @property
    def _what(self) -> str:
        return f"{self.resource.name} in {self.namespace or 'all namespaces'}"

    async def _list(self) -> str:
        mark = self.sink.listing()
        seen: set[tuple[str, str, str]] = set()
        path = self.resource.path(self.namespace)
        token = ""
        while True:
            params = {**self.params, "limit": str(self.page)}
            if token:
                params["continue"] = token  # the server keeps the first page's version
            elif self.version:
                # From the watch cache, as soon as it has reached that version (the server
                # answers 504 within seconds if it does not, and the list is tried again).
                params["resourceVersion"] = self.version
                params["resourceVersionMatch"] = "NotOlderThan"
            try:
                page = await self.api.list_raw(
                    f"list_{self.resource.name}", path, params, self.resource.decode_page
                )
            except ApiError as error:
                if error.status == 410:
                    raise _Gone from None  # the continue token expired: start over
                raise
            for body in page.items:
                body.setdefault("apiVersion", self.resource.api_version)
                body.setdefault("kind", self.resource.kind)
                meta = body.get("metadata") or {}
                seen.add((meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")))
                self.sink.event("RESYNC", body)
            token = page.continue_
            if not token:
                self.sink.listed(mark, seen)
                self.lists += 1
                return page.resource_version
            await asyncio.sleep(0)  # let the scheduler run between pages

    async def _watch(self, version: str) -> str:
        """Watch from ``version`` until the server ends the stream (or a relist is asked for);
        returns the last version seen."""
        params: Mapping[str, str] = {
            **self.params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        latest = version

        async def consume() -> None:
            nonlocal latest
            stream = self.api.watch_raw(
                f"watch_{self.resource.name}",
                self.resource.path(self.namespace),
                params,
                self.resource.decode_event,
            )
            async with contextlib.aclosing(stream) as events:
                async for batch in events:
                    for event in batch:
                        if event.type == "ERROR":
                            if event.code == 410:
                                raise _Gone
                            raise ApiError(f"watch {self._what}: {event.message} ({event.code})")
                        if event.resource_version:
                            latest = self.version = event.resource_version
                        if event.body is not None:
                            event.body.setdefault("apiVersion", self.resource.api_version)
                            event.body.setdefault("kind", self.resource.kind)
                            self.sink.event(event.type, event.body)

        watching = asyncio.ensure_future(consume())
        relisting = asyncio.ensure_future(self._relist.wait())
        try:
            await asyncio.wait({watching, relisting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, relisting):
                task.cancel()
            await asyncio.gather(watching, relisting, return_exceptions=True)
        if watching.done() and not watching.cancelled() and watching.exception() is not None:
            raise watching.exception()  # type: ignore[misc]
        return latest

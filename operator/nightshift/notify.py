"""Delivering notifications to HTTP sinks, off the scheduler's path: a bounded queue and workers.

What to send and when is decided by the pure core (``nightshift.care``) and kept in
``status.notifications``, so a restart loses nothing; this module only tries. The controller
offers each due notification after a sync (for each sink, only the oldest one: a sink gets them
in order); a worker reads the sink's Secret if it names one (only there, only in the task's
namespace), builds the request (Nightshift's JSON, CloudEvents 1.0 or Slack's), POSTs it with the
sink's timeout, and reports the outcome, which the next sync folds into the status. A full queue
refuses an offer instead of waiting, so delivery never slows scheduling down.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from yarl import URL

from nightshift import __version__, metrics
from nightshift.api import ApiError, KubeApi
from nightshift.care import Delivery
from nightshift.models import (
    API_VERSION,
    PLURAL,
    Change,
    CloudEventsMode,
    NotifySink,
    PendingNotification,
    SinkType,
    format_time,
)

__all__ = [
    "QUEUE",
    "WORKERS",
    "DeliveryError",
    "Notifier",
    "Request",
    "TaskRef",
    "build_request",
    "cloud_event_type",
    "payload",
    "target",
]

log = logging.getLogger(__name__)

WORKERS = 4  # deliveries in flight at once
QUEUE = 500  # deliveries waiting; an offer beyond that is refused and made again later
_RESPONSE_LIMIT = 64 * 1024  # bytes of an answer read (and ignored) before the connection is freed
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
_SLACK_MARK = {
    Change.FAILING: ":red_circle:",
    Change.RECOVERED: ":large_green_circle:",
    Change.MISSED: ":warning:",
    Change.LATE: ":hourglass:",
    Change.SUSPENDED: ":double_vertical_bar:",
}
_VERB = {
    Change.FAILING: "is failing",
    Change.RECOVERED: "recovered",
    Change.MISSED: "missed a slot",
    Change.LATE: "is late",
    Change.SUSPENDED: "was suspended by its failure policy",
}


class DeliveryError(Exception):
    """A delivery attempt failed for a reason worth one line in a condition."""


@dataclass(frozen=True, slots=True)
class TaskRef:
    """The task a notification is about."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP POST."""

    url: str
    headers: dict[str, str]
    body: bytes


# --- what is sent (pure) --------------------------------------------------------------------------


def payload(task: TaskRef, item: PendingNotification) -> dict[str, Any]:
    """Nightshift's JSON for a notification: the Webhook body and the CloudEvents data."""
    return {
        "id": item.id,
        "change": item.change.value,
        "time": format_time(item.at),
        "task": {"namespace": task.namespace, "name": task.name, "uid": task.uid},
        "run": item.run,
        "attempt": item.attempt,
        "message": item.message,
    }


def cloud_event_type(change: Change) -> str:
    """The CloudEvents ``type`` of a change: ``dev.nightshift.task.failing`` and so on."""
    return f"dev.nightshift.task.{change.value.lower()}"


def target(sink: NotifySink, secret: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """The sink's URL and extra headers: ``url`` from the spec or the Secret's key ``url``, and
    one header per Secret key ``header.NAME``."""
    data = secret or {}
    url = sink.url or data.get("url", "").strip()
    if not url:
        assert sink.secretRef is not None
        raise DeliveryError(f"Secret {sink.secretRef.name} has no key url")
    if not url.startswith(("http://", "https://")):
        raise DeliveryError("the URL is not http:// or https://")
    headers: dict[str, str] = {}
    for key, value in data.items():
        if not key.startswith("header."):
            continue
        name = key.removeprefix("header.")
        if not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise DeliveryError(f"Secret key {key} is not a valid HTTP header")
        headers[name] = value.strip()
    return url, headers


def build_request(
    sink: NotifySink,
    task: TaskRef,
    item: PendingNotification,
    url: str,
    headers: dict[str, str],
) -> Request:
    """The POST for one sink. Every kind carries the idempotency key in ``Idempotency-Key`` (and
    CloudEvents in its ``id``), the same on every attempt, so a receiver can drop repeats."""
    base = {
        **headers,
        "User-Agent": f"nightshift/{__version__}",
        "Idempotency-Key": item.id,
    }
    data = payload(task, item)
    if sink.type is SinkType.CLOUD_EVENTS:
        event = CloudEvent(
            attributes={
                "id": item.id,
                "source": f"/apis/{API_VERSION}/namespaces/{task.namespace}/{PLURAL}/{task.name}",
                "type": cloud_event_type(item.change),
                "subject": item.run,
                "time": item.at,
                "datacontenttype": "application/json",
            },
            data=data,
        )
        if sink.mode is CloudEventsMode.STRUCTURED:
            message = ce_http.to_structured_event(event)
        else:
            message = ce_http.to_binary_event(event)
        return Request(url, {**base, **message.headers}, message.body)
    if sink.type is SinkType.SLACK:
        text = (
            f"{_SLACK_MARK[item.change]} ScheduledTask {task.namespace}/{task.name} "
            f"{_VERB[item.change]}: {item.message}"
        )
        body = {"text": text}
    else:
        body = data
    return Request(
        url,
        {**base, "Content-Type": "application/json"},
        json.dumps(body, separators=(",", ":")).encode(),
    )


# --- where it may go ------------------------------------------------------------------------------


def _forbidden(address: str) -> bool:
    """Link-local addresses (169.254.0.0/16, fe80::/10) hold cloud metadata services, whose
    credentials a task author must not be able to reach through the operator."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_link_local or ip.is_unspecified


class _GuardedResolver(AbstractResolver):
    """The default resolver, minus the addresses :func:`_forbidden` rejects."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if not _forbidden(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to link-local addresses, which are refused")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# --- delivering -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    key: tuple[str, str]
    task: TaskRef
    item: PendingNotification
    sink: NotifySink


class Notifier:
    """A bounded queue of delivery attempts and the workers that make them."""

    def __init__(
        self,
        api: KubeApi,
        *,
        on_done: Callable[[tuple[str, str], Delivery], None],
        clock: Callable[[], datetime],
        queue: int = QUEUE,
    ) -> None:
        self.api = api
        self.on_done = on_done
        self.clock = clock
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(queue)
        self._offered: set[tuple[str, str, str]] = set()  # (task uid, id, sink) not done yet
        self._session: aiohttp.ClientSession | None = None

    def offer(
        self, key: tuple[str, str], task: TaskRef, item: PendingNotification, sink: NotifySink
    ) -> bool:
        """Queue one delivery attempt; False when the queue is full (offer it again later).
        An attempt already queued or under way is not queued twice."""
        mark = (task.uid, item.id, sink.name)
        if mark in self._offered:
            return True
        try:
            self._queue.put_nowait(_Job(key, task, item, sink))
        except asyncio.QueueFull:
            return False
        self._offered.add(mark)
        metrics.NOTIFY_QUEUE.set(self._queue.qsize())
        return True

    async def work(self) -> None:
        """Make queued attempts, forever (run WORKERS of these, supervised)."""
        while True:
            job = await self._queue.get()
            metrics.NOTIFY_QUEUE.set(self._queue.qsize())
            try:
                outcome = await self._attempt(job)
            finally:
                self._offered.discard((job.task.uid, job.item.id, job.sink.name))
                self._queue.task_done()
            metrics.NOTIFICATIONS.labels(
                sink=job.sink.type.value, result="delivered" if outcome.ok else "failed"
            ).inc()
            self.on_done(job.key, outcome)

    async def _attempt(self, job: _Job) -> Delivery:
        sink, task = job.sink, job.task
        try:
            secret = None
            if sink.secretRef is not None:
                # Only the Secret the task names, only in the task's own namespace.
                secret = await self.api.get_secret(task.namespace, sink.secretRef.name)
                if secret is None:
                    raise DeliveryError(
                        f"Secret {task.namespace}/{sink.secretRef.name} does not exist"
                    )
            url, headers = target(sink, secret)
            request = build_request(sink, task, job.item, url, headers)
            host = URL(request.url).host or ""
            if _forbidden(host):
                raise DeliveryError(f"{host} is a link-local address, which is refused")
            async with asyncio.timeout(sink.timeout.total_seconds()):
                # One limit for the whole attempt: connecting, sending, and the answer.
                status = await self._post(request)
        except DeliveryError as error:
            return self._failed(job, str(error))
        except ApiError as error:
            return self._failed(job, f"cannot read the Secret: {error}")
        except TimeoutError:
            return self._failed(job, f"no answer within {sink.timeout.total_seconds():g} s")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return self._failed(job, f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return Delivery(job.item.id, sink.name, True, self.clock(), round=job.item.failures + 1)
        return self._failed(job, f"HTTP {status}")

    def _failed(self, job: _Job, error: str) -> Delivery:
        log.warning(
            "notification %s of %s/%s to sink %s failed: %s",
            job.item.change.value,
            job.task.namespace,
            job.task.name,
            job.sink.name,
            error,
        )
        return Delivery(
            job.item.id, job.sink.name, False, self.clock(), error, round=job.item.failures + 1
        )

    async def _post(self, request: Request) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_GuardedResolver(), limit=WORKERS * 2),
                trust_env=False,
            )
        async with self._session.post(
            request.url, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            await response.content.read(_RESPONSE_LIMIT)
            return response.status

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

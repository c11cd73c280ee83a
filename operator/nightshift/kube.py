"""The one module that talks to the Kubernetes API (the official client, off the event loop).

The official client is synchronous, so every call runs in a bounded thread pool: a slow API server
delays the calls queued behind it, never the scheduler's clock or the watch streams. Every request
has a connect and a read timeout, so a connection that a load balancer or NAT silently forgot
frees its thread instead of holding it forever; after a timeout every pooled connection is
dropped, since the others may be just as dead. The Lease has a pool and connections of its own:
its renewals never wait behind a burst of Job creates, and never slow them down.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from nightshift import metrics
from nightshift.api import ApiError, Conflict, CreateResult, Unreachable
from nightshift.informer import decode_job
from nightshift.models import GROUP, PLURAL, VERSION
from nightshift.ratelimit import TokenBucket

__all__ = ["KubeClient", "classify", "load_config"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MESSAGE_LIMIT = 1024
PAGE = 500
# (connect, read) seconds. A list page of 500 tasks takes well under a second to serve; a Job create
# waits for admission webhooks (at most 30 s each, by their own timeouts).
TIMEOUT = (5.0, 30.0)
# The Lease must be renewed within the renew deadline (7 s): a renewal stuck on a dead connection
# gives up in time for a retry on a new one.
LEASE_TIMEOUT = (2.0, 4.0)
LEASE_WORKERS = 4
WATCH_CONNECTIONS = 32
# A watch stream: the API server sends a bookmark about every minute, so this long without a byte
# means the connection is dead.
WATCH_TIMEOUT = (5.0, 90.0)
# Watch events decoded and not yet taken by the event loop; beyond this the watch's thread stops
# reading until the loop catches up (a flood of task updates cannot grow memory without bound).
WATCH_BUFFER = 1000
# The client-side limit on writes (Job creates and deletes, status patches, Events, labels; not
# the Lease): a burst as large as a thousand Jobs due in the same second, then 100 a second.
QPS = 100.0
BURST = 1000
# 5xx answers and throttling say nothing about the request itself: try again later.
TRANSIENT = frozenset({429, 500, 502, 503, 504})


def load_config(kubeconfig: str | None) -> None:
    """Configure the client: an explicit kubeconfig, $KUBECONFIG, or the in-cluster account."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=kubeconfig)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class KubeClient:
    """The operator's API calls (:class:`~nightshift.api.KubeApi`), counted for the metrics."""

    def __init__(
        self,
        *,
        max_workers: int = 16,
        identity: str = "nightshift",
        timeout: tuple[float, float] = TIMEOUT,
        lease_timeout: tuple[float, float] = LEASE_TIMEOUT,
        qps: float = QPS,
        burst: int = BURST,
    ) -> None:
        """``qps`` and ``burst`` limit the operator's writes (0: no limit)."""
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube")
        # Sharded, a replica renews a Lease per shard it holds, each within the renew deadline.
        self._lease_pool = ThreadPoolExecutor(
            max_workers=LEASE_WORKERS, thread_name_prefix="kube-lease"
        )
        self._api_client = _client(max_workers)
        self._batch = client.BatchV1Api(self._api_client)
        self._core = client.CoreV1Api(self._api_client)
        self._custom = client.CustomObjectsApi(self._api_client)
        self._authorization = client.AuthorizationV1Api(self._api_client)
        self._lease_client = _client(LEASE_WORKERS)
        # Two watches per namespace and per shard held, each on a connection of its own.
        self._watch_client = _client(WATCH_CONNECTIONS)
        self._coordination = client.CoordinationV1Api(self._lease_client)
        self._authentication = client.AuthenticationV1Api(self._api_client)
        self._authorization = client.AuthorizationV1Api(self._api_client)
        self._timeout = timeout
        self._lease_timeout = lease_timeout
        self._identity = identity
        # Every write but the Lease's takes a token: a flood of work (one tenant's, or a bug's)
        # meets this before the API server's own limits.
        self._writes = TokenBucket(qps, burst, time.monotonic()) if qps > 0 else None
        self.calls: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        # Called (on the event loop) when a request could not reach the API server.
        self.on_unreachable: Callable[[], None] = lambda: None

    async def _call(
        self,
        verb: str,
        fn: Callable[..., T],
        *args: Any,
        _lease: bool = False,
        _write: bool = False,
        _list: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``fn`` in the pool with the timeouts; ApiException stays, the rest is ApiError.
        A write first waits for the client-side rate limit (the Lease's never do). A list that
        got no answer in time is a slow server, not a lost one (``_list``): see below."""
        if _write and self._writes is not None:
            wait = self._writes.reserve(time.monotonic())
            if wait > 0:
                metrics.API_THROTTLED.inc(wait)
                await asyncio.sleep(wait)
        self.calls[verb] = self.calls.get(verb, 0) + 1
        metrics.API_REQUESTS.labels(call=verb).inc()
        loop = asyncio.get_running_loop()
        pool = self._lease_pool if _lease else self._pool
        timeout = self._lease_timeout if _lease else self._timeout
        try:
            return await loop.run_in_executor(
                pool, lambda: fn(*args, _request_timeout=timeout, **kwargs)
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # No answer: a condition to log and retry, not a bug to trace.
            metrics.API_ERRORS.labels(call=verb).inc()
            self.errors[verb] = self.errors.get(verb, 0) + 1
            if _list and _read_timeout(error):
                # A list the server is slow to answer (an overloaded API server serving it from
                # etcd) says nothing about the other requests: only its informer tries again.
                # Calling the server unreachable would make every shard list again and stop
                # syncing meanwhile, which adds load to a server already behind.
                raise ApiError(
                    f"{verb}: no answer within {timeout[1]:g} s (the API server is slow)",
                    transient=True,
                ) from None
            if isinstance(
                error, urllib3.exceptions.TimeoutError | urllib3.exceptions.ProtocolError
            ):
                # The connections in the pool may be dead alike (a NAT forgot them): start afresh.
                (
                    self._lease_client if _lease else self._api_client
                ).rest_client.pool_manager.clear()
            self.on_unreachable()
            raise Unreachable(
                f"{verb}: no answer from the API server ({_describe(error)})"
            ) from None
        except ApiException as error:
            if error.status not in (404, 409):
                self.errors[verb] = self.errors.get(verb, 0) + 1
                metrics.API_ERRORS.labels(call=verb).inc()
            raise

    async def _json(
        self,
        verb: str,
        fn: Callable[..., Any],
        *args: Any,
        _write: bool = False,
        _list: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Like _call, but the response is plain JSON: building the client's model objects for
        every Job, pod and Event costs CPU the scheduler needs when many tasks are due at once."""

        def raw(**extra: Any) -> Any:
            response = fn(*args, **kwargs, **extra, _preload_content=False)
            try:
                return json.loads(response.data)
            finally:
                response.release_conn()

        return await self._call(verb, raw, _write=_write, _list=_list)

    # --- raw lists and watches (the informers decode them) ----------------------------------

    def _raw(
        self,
        client_: client.ApiClient,
        path: str,
        params: Mapping[str, str],
        timeout: tuple[float, float],
        *,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """GET ``path`` with ``params`` (or POST ``body``, a plain JSON object); the urllib3
        response, unread. ApiException if not 2xx.

        The generated API methods validate their arguments with pydantic and copy the body
        while serializing it: for a Job, as much CPU again as sending it."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        method, url, headers, _, _ = client_.param_serialize(
            method="GET" if body is None else "POST",
            resource_path=path,
            query_params=list(params.items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        response = client_.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )
        raw = response.response
        if not 200 <= raw.status <= 299:
            try:
                raise ApiException(http_resp=raw)
            finally:
                raw.release_conn()
        return raw

    async def list_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> T:
        """One GET of a list, decoded by ``decode`` in the pool's thread."""

        def fetch(_request_timeout: tuple[float, float]) -> T:
            raw = self._raw(self._api_client, path, params, _request_timeout)
            try:
                return decode(raw.data)
            finally:
                raw.release_conn()

        try:
            return await self._call(verb, fetch, _list=True)
        except ApiException as error:
            raise classify(verb, error) from None

    async def watch_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> AsyncGenerator[list[T], None]:
        """A watch stream: batches of events, each line decoded by ``decode`` in a thread of
        its own (watches are long; they must not hold a thread of the request pool).

        The read timeout is the inactivity limit: the API server sends a bookmark about every
        minute, so WATCH_IDLE s of silence means a dead connection. Ends when the server ends the
        stream; raises ApiError (Unreachable for no answer).
        """
        loop = asyncio.get_running_loop()
        ready: collections.deque[T] = collections.deque()
        woken = asyncio.Event()
        outcome: list[BaseException | None] = []
        response: list[Any] = []
        stopping = threading.Event()
        drained = threading.Event()
        self.calls[verb] = self.calls.get(verb, 0) + 1
        metrics.API_REQUESTS.labels(call=verb).inc()

        def pump() -> None:
            error: BaseException | None = None
            try:
                raw = self._raw(self._watch_client, path, params, WATCH_TIMEOUT)
                response.append(raw)
                buffer = b""
                for chunk in raw.stream(amt=None, decode_content=True):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    decoded = [d for line in lines if line and (d := decode(line)) is not None]
                    if decoded:
                        ready.extend(decoded)
                        loop.call_soon_threadsafe(woken.set)
                    # Back-pressure: while the event loop lags this far behind, stop reading;
                    # TCP then slows the API server down, and memory stays bounded.
                    while len(ready) >= WATCH_BUFFER and not stopping.is_set():
                        drained.wait(0.5)
                        drained.clear()
                    if stopping.is_set():
                        break
                raw.release_conn()
            except BaseException as problem:  # handed to the event loop, raised there
                error = problem
            if not stopping.is_set():
                outcome.append(error)
                loop.call_soon_threadsafe(woken.set)

        thread = threading.Thread(target=pump, name=f"watch-{verb}", daemon=True)
        thread.start()
        try:
            while True:
                await woken.wait()
                woken.clear()
                if ready:
                    # One popleft at a time: the thread may append between a copy and a clear.
                    batch = [ready.popleft() for _ in range(len(ready))]
                    drained.set()
                    yield batch
                if outcome and not ready:
                    break
        finally:
            stopping.set()
            for raw in response:
                with contextlib.suppress(Exception):
                    raw.shutdown()  # unblocks the thread's read
        error = outcome[0] if outcome else None
        if error is None:
            return
        if isinstance(error, ApiException):
            raise classify(verb, error)
        if isinstance(error, urllib3.exceptions.HTTPError | OSError):
            metrics.API_ERRORS.labels(call=verb).inc()
            self._watch_client.rest_client.pool_manager.clear()
            raise Unreachable(f"{verb}: the watch stream broke ({_describe(error)})")
        raise error

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._lease_pool.shutdown(wait=False, cancel_futures=True)

    async def create_job(
        self, namespace: str, manifest: dict[str, Any], owner_uid: str
    ) -> CreateResult:
        """Create a Job; AlreadyExists is adopted only if this task controls the existing Job."""
        name = manifest["metadata"]["name"]

        def post(_request_timeout: tuple[float, float]) -> dict[str, Any]:
            raw = self._raw(
                self._api_client,
                f"/apis/batch/v1/namespaces/{namespace}/jobs",
                {},
                _request_timeout,
                body=manifest,
            )
            try:
                return decode_job(raw.data)  # only what the controller reads
            finally:
                raw.release_conn()

        try:
            created = await self._call("create_job", post, _write=True)
            return "created", "", created
        except ApiException as error:
            if error.status != 409:
                problem = classify(f"create Job {namespace}/{name}", error)
                if problem.transient:
                    raise problem from None
                return "error", _reason(error), None
        try:
            body = await self._json("get_job", self._batch.read_namespaced_job, name, namespace)
        except ApiException as error:
            raise classify(f"read Job {namespace}/{name}", error) from None
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("uid") == owner_uid:
                return "adopted", "", body
        return "conflict", f"Job {name} exists and is controlled by someone else", None

    async def delete_job(
        self, namespace: str, name: str, uid: str | None = None, *, owner_uid: str | None = None
    ) -> None:
        """Delete a Job and, in the background, its pods. A missing Job is fine; with ``uid``,
        a Job of that name that is another object (re-created since) is left alone.

        Without ``uid`` but with ``owner_uid``, the Job is read first and deleted (with its uid as
        the precondition) only if that owner controls it: the name may come from a task's status,
        which anyone allowed to write the status can fill with another Job's name.
        """
        if uid is None and owner_uid is not None:
            try:
                body = await self._json("get_job", self._batch.read_namespaced_job, name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return
                raise classify(f"read Job {namespace}/{name}", error) from None
            meta = body.get("metadata") or {}
            refs = meta.get("ownerReferences") or []
            if not any(r.get("controller") and r.get("uid") == owner_uid for r in refs):
                log.warning(
                    "Job %s/%s is not controlled by task uid %s: not deleting it",
                    namespace, name, owner_uid,
                )  # fmt: skip
                return
            uid = meta.get("uid")
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self._call(
                "delete_job",
                self._batch.delete_namespaced_job,
                name,
                namespace,
                body=options,
                _write=True,
            )
        except ApiException as error:
            if error.status == 404:
                return
            if error.status == 409 and uid:
                log.info("Job %s/%s is no longer the one to delete (uid %s)", namespace, name, uid)
                return
            raise classify(f"delete Job {namespace}/{name}", error) from None

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ScheduledTask as stored now, or None when it does not exist."""
        try:
            body: dict[str, Any] = await self._json(
                "get_task",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise classify(f"read task {namespace}/{name}", error) from None
        return body

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any] | None:
        """Merge-patch the task's status subresource, only if the task is still at
        ``resource_version``; returns the updated object (None if gone), Conflict if changed."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            result = await self._json(
                "patch_status",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _write=True,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 409:
                raise Conflict(f"status of {namespace}/{name}: {_reason(error)}") from None
            raise classify(f"patch status of {namespace}/{name}", error) from None
        return result if isinstance(result, dict) else None

    async def pod_outcome(
        self, namespace: str, job: str, job_uid: str
    ) -> tuple[int | None, str | None]:
        """Exit code and termination message of a finished Job's latest pod.

        Pods are found by the Job's name label but count only if the Job (by uid) controls them:
        anyone who may create pods in the namespace can give one that label.
        """
        try:
            pods = await self._json(
                "list_pods",
                self._core.list_namespaced_pod,
                namespace,
                label_selector=f"batch.kubernetes.io/job-name={job}",
                _list=True,  # a slow answer is a busy server (the 50,000-task benchmark)
            )
        except ApiException as error:
            raise classify(f"read pods of Job {namespace}/{job}", error) from None
        owned = [
            p
            for p in pods.get("items") or []
            if any(
                r.get("controller") and r.get("uid") == job_uid
                for r in (p.get("metadata") or {}).get("ownerReferences") or []
            )
        ]
        # RFC 3339 timestamps in UTC sort as text.
        owned.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        for pod in reversed(owned):
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            terminated = [
                t for s in statuses if (t := (s.get("state") or {}).get("terminated")) is not None
            ]
            if not terminated:
                continue
            # The first container that failed explains the failure; otherwise the first one.
            chosen = next((t for t in terminated if t.get("exitCode")), terminated[0])
            message = str(chosen.get("message") or "").strip() or None
            code = chosen.get("exitCode")
            return (
                code if isinstance(code, int) else None,
                message[:MESSAGE_LIMIT] if message else None,
            )
        return None, None

    async def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded as UTF-8 text (None when it does not exist)."""
        try:
            body = await self._json(
                "get_secret", self._core.read_namespaced_secret, name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise classify(f"read Secret {namespace}/{name}", error) from None
        data: dict[str, str] = {}
        for key, value in (body.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # not text: no URL or header can be in it
        return data

    async def list_tasks(self, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledTask in ``namespace`` (None: all), a page at a time."""
        if namespace is None:
            fn: Callable[..., Any] = self._custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, PLURAL)
        else:
            fn = self._custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, PLURAL)
        async for page in self._pages("list_tasks", fn, *args):
            yield page

    async def list_jobs(
        self, namespace: str | None, selector: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every Job matching ``selector`` in ``namespace`` (None: all), a page at a time."""
        if namespace is None:
            fn: Callable[..., Any] = self._batch.list_job_for_all_namespaces
            args: tuple[Any, ...] = ()
        else:
            fn, args = self._batch.list_namespaced_job, (namespace,)
        async for page in self._pages("list_jobs", fn, *args, label_selector=selector):
            yield page

    async def list_objects(
        self, plural: str, namespace: str | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of our group's ``plural`` in ``namespace`` (None: all), a page at a time."""
        if namespace is None:
            fn: Callable[..., Any] = self._custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, plural)
        else:
            fn = self._custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, plural)
        async for page in self._pages(f"list_{plural}", fn, *args):
            yield page

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object of our group's ``plural`` as stored now, or None when it does not exist."""
        try:
            body: dict[str, Any] = await self._json(
                f"get_{plural}",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise classify(f"read {plural} {namespace}/{name}", error) from None
        return body

    async def patch_object_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str,
    ) -> dict[str, Any] | None:
        """Merge-patch the status of an object of our group's ``plural``, only if it is still at
        ``resource_version``; returns the updated object (None if gone), Conflict if changed."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            result = await self._json(
                f"patch_{plural}_status",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 409:
                raise Conflict(f"status of {plural} {namespace}/{name}: {_reason(error)}") from None
            raise classify(f"patch status of {plural} {namespace}/{name}", error) from None
        return result if isinstance(result, dict) else None

    async def _pages(
        self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A list, PAGE items at a time (one response with 10,000 tasks is tens of MB at once).
        Items carry apiVersion/kind like watch events do. ApiError if a page fails."""
        token: str | None = None
        while True:
            try:
                listed = await self._json(verb, fn, *args, **kwargs, limit=PAGE, _continue=token)
            except ApiException as error:
                raise classify(verb, error) from None
            kind = str(listed.get("kind") or "").removesuffix("List")
            items: list[dict[str, Any]] = listed.get("items") or []
            for item in items:
                item.setdefault("apiVersion", listed.get("apiVersion"))
                item.setdefault("kind", kind)
            yield items
            token = (listed.get("metadata") or {}).get("continue")
            if not token:
                return

    async def post_event(
        self,
        ref: dict[str, Any],
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        count: int = 1,
    ) -> str:
        """Post one core/v1 Event about the task ``ref``; returns its name."""
        meta = ref["metadata"]
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                # A ScheduledTask unless the ref says otherwise (a Backfill's Events).
                "kind": ref.get("kind") or "ScheduledTask",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:MESSAGE_LIMIT],
            "source": {"component": self._identity},
            "reportingComponent": "nightshift.dev/operator",
            "reportingInstance": self._identity,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": count,
        }
        if count > 1:
            body["series"] = _series(count, now)
        try:
            created = await self._json(
                "create_event",
                self._core.create_namespaced_event,
                meta["namespace"],
                body,
                _write=True,
            )
        except ApiException as error:
            raise classify(f"post Event {reason} on {meta['name']}", error) from None
        return str((created.get("metadata") or {}).get("name") or "")

    async def patch_event(self, namespace: str, name: str, count: int, message: str) -> bool:
        """Count an Event again (count, series, last timestamp and message, as client-go's
        recorder does); False when it is gone (the API server keeps Events an hour)."""
        now = datetime.now(UTC)
        patch = {
            "count": count,
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message": message[:MESSAGE_LIMIT],
            "series": _series(count, now),
        }
        try:
            await self._json(
                "patch_event",
                self._core.patch_namespaced_event,
                name,
                namespace,
                patch,
                _write=True,
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise classify(f"patch Event {namespace}/{name}", error) from None
        return True

    async def may_create_jobs(self, namespace: str, user: Mapping[str, Any]) -> tuple[bool, str]:
        """A SubjectAccessReview: may ``user`` create Jobs (batch) in ``namespace``?"""
        extra = {
            str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
            for k, v in (user.get("extra") or {}).items()
        }
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.get("username"),
                "uid": user.get("uid"),
                "groups": list(user.get("groups") or []),
                "extra": extra,
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "create",
                    "group": "batch",
                    "resource": "jobs",
                },
            },
        }
        try:
            review = await self._json(
                "create_subjectaccessreview",
                self._authorization.create_subject_access_review,
                body,
            )
        except ApiException as error:
            raise classify("SubjectAccessReview", error) from None
        status = review.get("status") or {}
        reason = str(status.get("reason") or status.get("evaluationError") or "")
        return bool(status.get("allowed")) and not status.get("denied"), reason

    async def review_token(self, token: str) -> dict[str, Any]:
        """The API server's TokenReview of a bearer token: its status (``authenticated``,
        ``user`` with username, uid, groups and extra; ``error``)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        try:
            result = await self._json(
                "create_tokenreview", self._authentication.create_token_review, body
            )
        except ApiException as error:
            raise classify("review a token", error) from None
        status: dict[str, Any] = result.get("status") or {}
        return status

    async def review_access(
        self, user: Mapping[str, Any], *, non_resource_attributes: Mapping[str, str]
    ) -> tuple[bool, str]:
        """A SubjectAccessReview: may ``user`` (a TokenReview's status.user) do this? Returns
        (allowed, the authorizer's reason)."""
        spec: dict[str, Any] = {
            "user": user.get("username"),
            "uid": user.get("uid"),
            "groups": user.get("groups") or [],
            "extra": user.get("extra") or {},
            "nonResourceAttributes": dict(non_resource_attributes),
        }
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {k: v for k, v in spec.items() if v not in (None, {}, [])},
        }
        try:
            result = await self._json(
                "create_subjectaccessreview",
                self._authorization.create_subject_access_review,
                body,
            )
        except ApiException as error:
            raise classify("review an access", error) from None
        status = result.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        try:
            lease = await self._call(
                "get_lease",
                self._coordination.read_namespaced_lease,
                name,
                namespace,
                _lease=True,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise classify(f"read Lease {namespace}/{name}", error) from None
        return dict(self._lease_client.sanitize_for_serialization(lease))

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the Lease; False if someone else created it first."""
        try:
            await self._call(
                "create_lease",
                self._coordination.create_namespaced_lease,
                namespace,
                body,
                _lease=True,
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise classify(f"create Lease in {namespace}", error) from None
        return True

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """Replace the Lease at the resourceVersion in ``body``; False on a conflict."""
        try:
            await self._call(
                "update_lease",
                self._coordination.replace_namespaced_lease,
                name,
                namespace,
                body,
                _lease=True,
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise classify(f"update Lease {namespace}/{name}", error) from None
        return True

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Leases in ``namespace`` matching the label ``selector`` (one page: a few dozen)."""
        try:
            listed = await self._call(
                "list_leases",
                self._coordination.list_namespaced_lease,
                namespace,
                label_selector=selector,
                _lease=True,
            )
        except ApiException as error:
            raise classify(f"list Leases in {namespace}", error) from None
        body = self._lease_client.sanitize_for_serialization(listed)
        return list(body.get("items") or [])

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        """Delete the Lease if it is still at ``resource_version``; gone or changed: nothing."""
        options = {"preconditions": {"resourceVersion": resource_version}}
        try:
            await self._call(
                "delete_lease",
                self._coordination.delete_namespaced_lease,
                name,
                namespace,
                body=options,
                _lease=True,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return
            raise classify(f"delete Lease {namespace}/{name}", error) from None

    async def label(
        self,
        plural: Literal["jobs", "scheduledtasks"],
        namespace: str,
        name: str,
        uid: str,
        labels: dict[str, str],
    ) -> bool:
        """Merge-patch ``labels`` onto the object if it is still ``uid`` (the uid in the patch is
        a precondition: a namesake created since is left alone)."""
        patch = {"metadata": {"uid": uid, "labels": labels}}
        try:
            if plural == "jobs":
                await self._json(
                    "label_job",
                    self._batch.patch_namespaced_job,
                    name,
                    namespace,
                    patch,
                    _write=True,
                )
            else:
                await self._json(
                    "label_task",
                    self._custom.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    patch,
                    _write=True,
                )
        except ApiException as error:
            # 409 or 422: the uid in the patch is another object's now (re-created since).
            if error.status in (404, 409, 422):
                return False
            raise classify(f"label {plural} {namespace}/{name}", error) from None
        return True


def _client(connections: int) -> client.ApiClient:
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 0  # the callers retry, with back-off; urllib3 must not
    # One pooled connection per worker thread (the default is 5 per CPU).
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def _series(count: int, now: datetime) -> dict[str, Any]:
    """An Event's series (client-go's EventSeries): how often, and when last."""
    return {"count": count, "lastObservedTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def _read_timeout(error: BaseException) -> bool:
    """Whether the request was sent and its answer did not come in time (not a failed connect)."""
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return isinstance(error, urllib3.exceptions.ReadTimeoutError)


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return type(error).__name__


def classify(what: str, error: ApiException) -> ApiError:
    """An ApiException as the ApiError callers act on: transient or not, with Retry-After."""
    status = error.status
    reason = _reason(error)
    # RBAC refusing the operator itself ("... cannot create resource ...") is transient: an admin
    # fixes the role, and nothing about the task is wrong. Other 403s (quota, admission, a
    # terminating namespace) are answers about the request.
    rbac = status == 403 and " cannot " in reason
    retry_after: float | None = None
    headers = getattr(error, "headers", None) or {}
    hint = headers.get("Retry-After")
    with contextlib.suppress(TypeError, ValueError):
        retry_after = float(str(hint)) if hint else None
    return ApiError(
        f"{what}: {reason} (HTTP {status})",
        status=status,
        transient=status in TRANSIENT or rbac,
        retry_after=retry_after,
    )


def _reason(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "{}")
        return str(body.get("message") or error.reason)
    except (ValueError, TypeError):
        return str(error.reason)

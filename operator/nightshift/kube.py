"""The one module that talks to the Kubernetes API (the official client, off the event loop).

The official client is synchronous, so every call runs in a bounded thread pool: a slow API server
delays the calls queued behind it, never the scheduler's clock or the watch streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from nightshift import metrics
from nightshift.models import GROUP, PLURAL, VERSION

__all__ = ["ApiError", "KubeApi", "load_config"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MESSAGE_LIMIT = 1024
PAGE = 500


class ApiError(Exception):
    """An API call failed in a way the caller should record (not a bug)."""


def load_config(kubeconfig: str | None) -> None:
    """Configure the client: an explicit kubeconfig, $KUBECONFIG, or the in-cluster account."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=kubeconfig)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class KubeApi:
    """Async facade over the calls the operator makes; counts them for the metrics."""

    def __init__(self, *, max_workers: int = 16, identity: str = "nightshift") -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube")
        configuration = client.Configuration.get_default_copy()
        configuration.retries = 0  # the reconciler retries; urllib3 must not hang
        # One pooled connection per worker thread (the default is 5 per CPU).
        configuration.connection_pool_maxsize = max_workers
        api_client = client.ApiClient(configuration)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self._identity = identity
        self.calls: dict[str, int] = {}
        # Called (on the event loop) when a request could not reach the API server.
        self.on_unreachable: Callable[[], None] = lambda: None
        self.errors: dict[str, int] = {}

    async def _call(self, verb: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.calls[verb] = self.calls.get(verb, 0) + 1
        metrics.API_REQUESTS.labels(call=verb).inc()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # The API server is unreachable: a condition to log and retry, not a bug to trace.
            metrics.API_ERRORS.labels(call=verb).inc()
            self.on_unreachable()
            raise ApiError(f"{verb}: API server unreachable ({type(error).__name__})") from None
        except ApiException as error:
            if error.status not in (404, 409):
                self.errors[verb] = self.errors.get(verb, 0) + 1
                metrics.API_ERRORS.labels(call=verb).inc()
            raise

    async def _json(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like _call, but the response is plain JSON: building the client's model objects for
        every Job, pod and Event costs CPU the scheduler needs when many tasks are due at once."""

        def raw() -> Any:
            response = fn(*args, **kwargs, _preload_content=False)
            try:
                return json.loads(response.data)
            finally:
                response.release_conn()

        return await self._call(verb, raw)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def create_job(
        self, namespace: str, manifest: dict[str, Any], owner_uid: str
    ) -> tuple[Literal["created", "adopted", "conflict", "error"], str, dict[str, Any] | None]:
        """Create a Job; AlreadyExists is adopted only if this task controls the existing Job."""
        name = manifest["metadata"]["name"]
        try:
            created = await self._json(
                "create_job", self._batch.create_namespaced_job, namespace, manifest
            )
            return "created", "", created
        except ApiException as error:
            if error.status != 409:
                return "error", _reason(error), None
        try:
            body = await self._json("get_job", self._batch.read_namespaced_job, name, namespace)
        except ApiException as error:
            return "error", _reason(error), None
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("uid") == owner_uid:
                return "adopted", "", body
        return "conflict", f"Job {name} exists and is controlled by someone else", None

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods. A missing Job is fine."""
        try:
            await self._call(
                "delete_job",
                self._batch.delete_namespaced_job,
                name,
                namespace,
                propagation_policy="Background",
            )
        except ApiException as error:
            if error.status != 404:
                raise ApiError(f"delete Job {namespace}/{name}: {_reason(error)}") from None

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the task's status subresource; returns the updated object (None if gone)."""
        try:
            result = await self._call(
                "patch_status",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise ApiError(f"patch status of {namespace}/{name}: {_reason(error)}") from None
        return result if isinstance(result, dict) else None

    async def pod_outcome(self, namespace: str, job: str) -> tuple[int | None, str | None]:
        """Exit code and termination message of a finished Job's (latest) pod."""
        try:
            pods = await self._json(
                "list_pods",
                self._core.list_namespaced_pod,
                namespace,
                label_selector=f"batch.kubernetes.io/job-name={job}",
            )
        except ApiException as error:
            log.warning("cannot read pods of Job %s/%s: %s", namespace, job, _reason(error))
            return None, None
        # RFC 3339 timestamps in UTC sort as text.
        items = sorted(
            pods.get("items") or [],
            key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
        )
        for pod in reversed(items):
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
                raise ApiError(f"{verb}: {_reason(error)}") from None
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
        task: dict[str, Any],
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        """Post one core/v1 Event about the task (best effort: failures are logged)."""
        meta = task["metadata"]
        now = datetime.now(UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ScheduledTask",
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
            "count": 1,
        }
        try:
            await self._json(
                "create_event", self._core.create_namespaced_event, meta["namespace"], body
            )
        except ApiException as error:
            log.warning("cannot post Event %s on %s: %s", reason, meta["name"], _reason(error))

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        try:
            lease = await self._call(
                "get_lease", self._coordination.read_namespaced_lease, name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise ApiError(f"read Lease {namespace}/{name}: {_reason(error)}") from None
        return self._to_dict(lease)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the Lease; False if someone else created it first."""
        try:
            await self._call(
                "create_lease", self._coordination.create_namespaced_lease, namespace, body
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise ApiError(f"create Lease in {namespace}: {_reason(error)}") from None
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
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise ApiError(f"update Lease {namespace}/{name}: {_reason(error)}") from None
        return True

    def _to_dict(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        return dict(client.ApiClient().sanitize_for_serialization(obj))


def _reason(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "{}")
        return str(body.get("message") or error.reason)
    except (ValueError, TypeError):
        return str(error.reason)

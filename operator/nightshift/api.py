"""What the controller needs from the Kubernetes API: a Protocol, and the errors its calls raise.

The controller, its writer and the leader election depend on :class:`KubeApi` only, never on the
official client: ``nightshift.kube`` implements it against a real API server, and the unit tests
drive the same code with an in-memory fake. Errors say what the caller should do: retry later
(``transient``), re-read and decide again (:class:`Conflict`), or record a failure.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

__all__ = ["ApiError", "Conflict", "CreateResult", "KubeApi", "Unreachable"]

T = TypeVar("T")
CreateResult = tuple[Literal["created", "adopted", "conflict", "error"], str, dict[str, Any] | None]


class ApiError(Exception):
    """An API call failed in a way the caller should record or retry (not a bug).

    ``transient`` errors (unreachable, timed out, throttled, 5xx, the operator's own permissions
    missing) say nothing about the object: the same call can succeed later. ``retry_after`` is the
    server's hint (seconds) when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


class Unreachable(ApiError):
    """The request did not get an answer: connection refused or reset, or a timeout."""


class Conflict(ApiError):
    """A write's precondition (resourceVersion or uid) no longer holds: someone else wrote."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, transient=False)


class KubeApi(Protocol):
    """The calls the operator makes. Implementations count them and apply timeouts."""

    # Called on the event loop when a request could not reach the API server.
    on_unreachable: Callable[[], None]

    async def create_job(
        self, namespace: str, manifest: dict[str, Any], owner_uid: str
    ) -> CreateResult:
        """Create a Job; an existing one is "adopted" only if ``owner_uid`` controls it.

        A permanent refusal (invalid, quota, admission) is ("error", message, None); a transient
        one raises :class:`ApiError`, because it says nothing about the run.
        """
        ...

    async def delete_job(
        self, namespace: str, name: str, uid: str | None = None, *, owner_uid: str | None = None
    ) -> None:
        """Delete a Job (background propagation); with ``uid``, only that very Job; without it,
        with ``owner_uid``, only if that owner controls the Job. Missing is fine."""
        ...

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ScheduledTask as stored now, or None when it does not exist."""
        ...

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any] | None:
        """Replace the task's status if it is still at ``resource_version``.

        Returns the updated object, or None when the task is gone. Raises :class:`Conflict` when
        the task changed (or was re-created) since that version.
        """
        ...

    async def pod_outcome(
        self, namespace: str, job: str, job_uid: str
    ) -> tuple[int | None, str | None]:
        """Exit code and termination message of the finished Job's latest pod (one the Job
        controls): (None, None) when there is none to read. Raises :class:`ApiError` when it
        could not be read, so that the caller asks again rather than forgetting an exit code."""
        ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded, or None when it does not exist. Called only for a Secret
        that a task names, in that task's own namespace (a notification sink's URL and headers).
        """
        ...

    def list_tasks(self, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledTask in ``namespace`` (None: all), a page at a time."""
        ...

    def list_jobs(
        self, namespace: str | None, selector: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every Job matching ``selector`` in ``namespace`` (None: all), a page at a time."""
        ...

    def list_objects(
        self, plural: str, namespace: str | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of our API group's ``plural`` (calendars, backfills) in ``namespace``
        (None: all), a page at a time. An ApiError with status 404 when the resource type is
        not installed."""
        ...

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object of our API group's ``plural`` as stored now, or None when it does not
        exist."""
        ...

    async def patch_object_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str,
    ) -> dict[str, Any] | None:
        """Like :meth:`patch_status`, for an object of our API group's ``plural``: the updated
        object, None when it is gone, :class:`Conflict` when it changed since
        ``resource_version``."""
        ...

    async def list_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> T:
        """One page of a list at ``path`` (e.g. /apis/batch/v1/jobs), decoded by ``decode``."""
        ...

    def watch_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> AsyncGenerator[list[T], None]:
        """A watch stream at ``path``: batches of events, each line decoded by ``decode``.
        Ends when the server ends the stream; raises ApiError when it breaks."""
        ...

    async def post_event(
        self,
        ref: dict[str, Any],
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        count: int = 1,
    ) -> str:
        """Post one core/v1 Event about the object ``ref`` (metadata: name, namespace, uid)
        that happened ``count`` times; returns the Event's name."""
        ...

    async def patch_event(self, namespace: str, name: str, count: int, message: str) -> bool:
        """Say that Event ``name`` happened ``count`` times, the last with ``message`` (count,
        series and last timestamp); False when the Event is gone (expired)."""
        ...

    async def may_create_jobs(self, namespace: str, user: Mapping[str, Any]) -> tuple[bool, str]:
        """Whether ``user`` (an AdmissionReview's userInfo: username, uid, groups, extra) may
        create Jobs in ``namespace``, asked with a SubjectAccessReview; (allowed, the
        authorizer's reason)."""
        ...

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the Lease; False if someone else created it first."""
        ...

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """Replace the Lease at the resourceVersion in ``body``; False on a conflict."""
        ...

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Leases in ``namespace`` matching the label ``selector``."""
        ...

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        """Delete the Lease if it is still at ``resource_version`` (else, or if gone, nothing)."""
        ...

    async def label(
        self,
        plural: Literal["jobs", "scheduledtasks"],
        namespace: str,
        name: str,
        uid: str,
        labels: dict[str, str],
    ) -> bool:
        """Set ``labels`` on the Job or task ``name`` if it is still the object ``uid``.

        False when it is gone or is another object of that name now."""
        ...

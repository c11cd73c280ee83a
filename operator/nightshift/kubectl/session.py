"""How ``kubectl nightshift`` talks to the API server: the kubeconfig, the calls, and their errors.

This is the plugin's one API module: the only part of it that imports the Kubernetes client or its
transport (an import-linter contract says so). The client is imported inside the functions, so
``--help`` and usage errors start fast. Every expected failure becomes a :class:`PluginError`
carrying one line for the user.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nightshift.models import BACKFILL_PLURAL, CALENDAR_PLURAL, GROUP, PLURAL, VERSION

__all__ = [
    "KIND_LOWER",
    "RESOURCE",
    "Access",
    "PluginError",
    "SecretFiles",
    "Session",
    "WatchExpired",
    "api_error_message",
    "connect",
    "namespace_from_contexts",
    "unreachable",
    "user_from_contexts",
    "with_session",
]

T = TypeVar("T")

RESOURCE = f"{PLURAL}.{GROUP}"  # scheduledtasks.nightshift.dev, as kubectl names it
KIND_LOWER = "scheduledtask"
REQUEST_TIMEOUT = (10, 60)  # seconds: connect, read
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class PluginError(Exception):
    """An expected failure (missing task, forbidden, unreachable): ``Error: <message>``, exit 1."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the API server's HTTP status, when it answered


class WatchExpired(PluginError):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch from there."""


@dataclass(frozen=True, slots=True)
class Access:
    """What a SelfSubjectAccessReview answered: may the user do it, and the server's reason."""

    allowed: bool
    reason: str = ""


def namespace_from_contexts(
    contexts: Sequence[Mapping[str, Any]] | None,
    active: Mapping[str, Any] | None,
    context: str | None,
) -> str:
    """The namespace of the chosen kubeconfig context (``--context`` or the current one)."""
    chosen: Mapping[str, Any] | None = active
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    details = (chosen or {}).get("context") or {}
    namespace = details.get("namespace") if isinstance(details, Mapping) else None
    return str(namespace) if namespace else "default"


def user_from_contexts(
    contexts: Sequence[Mapping[str, Any]] | None,
    active: Mapping[str, Any] | None,
    context: str | None,
) -> str | None:
    """The user entry of the chosen kubeconfig context (what `kubectl config view` calls it)."""
    chosen: Mapping[str, Any] | None = active
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    details = (chosen or {}).get("context") or {}
    user = details.get("user") if isinstance(details, Mapping) else None
    return str(user) if user else None


def api_error_message(
    status: int | None,
    reason: str | None,
    body: str | bytes | None,
    *,
    task: str | None = None,
    namespace: str | None = None,
) -> str:
    """One line for a failed API call, from its HTTP status and (Status object) body."""
    message = ""
    details: Mapping[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except (ValueError, TypeError):
            parsed = None
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or "")
            found = parsed.get("details")
            details = found if isinstance(found, dict) else {}
    if status == 404:
        if task is not None and details.get("name") == task:
            return f'{KIND_LOWER} "{task}" not found in namespace "{namespace}"'
        if not details:
            return (
                f'the server has no resource type "{RESOURCE}" (is the Nightshift CRD installed?)'
            )
        return message or "not found"
    if status == 403:
        return f"forbidden: {message or reason or 'the server refused the request'}"
    if status == 401:
        return f"unauthorized: {message or 'the server rejected the credentials'}"
    text = message or reason or "request failed"
    return f"the server answered {status}: {text}" if status else text


def _as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PluginError(f"unexpected answer from the server: {type(value).__name__}")
    return value


class Session:
    """The API calls the plugin makes, in one namespace, with errors turned into PluginError."""

    def __init__(
        self, api_client: Any, namespace: str, host: str, kube_user: str | None = None
    ) -> None:
        from kubernetes import client  # noqa: PLC0415 - keeps --help fast

        self.api_client = api_client
        self.namespace = namespace
        self.host = host
        self.kube_user = kube_user  # the kubeconfig context's user entry
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def _fail(self, error: Any, task: str | None = None) -> PluginError:
        status = getattr(error, "status", None)
        return PluginError(
            api_error_message(
                status,
                getattr(error, "reason", None),
                getattr(error, "body", None),
                task=task,
                namespace=self.namespace,
            ),
            status if isinstance(status, int) else None,
        )

    def in_namespace(self, namespace: str) -> Session:
        """The same connection, working in ``namespace``."""
        return Session(self.api_client, namespace, self.host)

    def get_task(self, name: str) -> dict[str, Any]:
        """The task object, or PluginError (not found, forbidden, ...)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            raise self._fail(error, task=name) from None
        return _as_dict(obj)

    def patch_task(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the task (the client's default for custom objects)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            obj = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                patch,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise self._fail(error, task=name) from None
        return _as_dict(obj)

    def get_calendar(self, name: str) -> dict[str, Any] | None:
        """The Calendar ``name`` in the namespace, or None when there is none."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                CALENDAR_PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._fail(error) from None
        return _as_dict(obj)

    def create_backfill(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Backfill in the namespace; returns it as stored."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            obj = self.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                BACKFILL_PLURAL,
                body,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise self._fail(error) from None
        return _as_dict(obj)

    def get_backfill(self, name: str) -> dict[str, Any]:
        """The Backfill ``name``, or PluginError."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                BACKFILL_PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(
                    f'backfill "{name}" not found in namespace "{self.namespace}"'
                ) from None
            raise self._fail(error) from None
        return _as_dict(obj)

    def list_backfills(self) -> list[dict[str, Any]]:
        """The Backfills in the namespace (none when their CRD is not installed)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            result = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, BACKFILL_PLURAL, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return []
            raise self._fail(error) from None
        return list(_as_dict(result).get("items") or [])

    def whoami(self) -> str | None:
        """Who the API server says we are (a SelfSubjectReview, Kubernetes 1.28+), else the
        kubeconfig context's user name; None when neither is known."""
        from kubernetes import client  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        review = client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        name: Any = None
        try:
            result = client.AuthenticationV1Api(self.api_client).create_self_subject_review(
                review, _request_timeout=REQUEST_TIMEOUT
            )
            info = result.status.user_info if result.status is not None else None
            name = info.username if info is not None else None
        except ApiException:
            name = None
        return str(name) if name else self.kube_user

    def list_tasks(
        self, *, all_namespaces: bool, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Tasks in the namespace, or in all namespaces (optionally only those matching a label
        selector, which the server applies)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        extra: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if label_selector:
            extra["label_selector"] = label_selector
        try:
            if all_namespaces:
                result = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **extra)
            else:
                result = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, **extra
                )
        except ApiException as error:
            raise self._fail(error) from None
        return list(_as_dict(result).get("items") or [])

    def task_events(self, name: str) -> list[dict[str, Any]]:
        """The Events whose involved object is the task ``name`` (as plain dicts)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            result = self.core.list_namespaced_event(
                self.namespace,
                field_selector=_task_events_selector(name),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise self._fail(error) from None
        data = self.api_client.sanitize_for_serialization(result)
        return list(data.get("items") or [])

    def access(self, verb: str, name: str | None = None) -> Access:
        """May the user ``verb`` the ScheduledTask ``name`` (or any) in the namespace?

        Asked with a SelfSubjectAccessReview, so the answer is the API server's own RBAC (and
        any other authorizer) for these credentials.
        """
        from kubernetes import client  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=GROUP, resource=PLURAL, verb=verb, namespace=self.namespace, name=name
                )
            )
        )
        try:
            answer = client.AuthorizationV1Api(self.api_client).create_self_subject_access_review(
                review, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            raise self._fail(error) from None
        status = answer.status
        if status is None:
            return Access(False, "the server gave no answer")
        reason = status.reason or status.evaluation_error or ""
        return Access(bool(status.allowed) and not status.denied, str(reason))

    def changes(
        self,
        kind: Literal["tasks", "events"],
        stop: threading.Event,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        name: str | None = None,
        timeout_seconds: int = 30,
    ) -> Iterator[str]:
        """Watch tasks (or a task's Events) and yield each change's type (ADDED, MODIFIED,
        DELETED) until ``stop`` is set; yield ``""`` whenever a watch request ends quietly (at
        least every ``timeout_seconds``), so the caller can look at its own state.

        The watch starts from a list's resourceVersion, so objects that already exist are not
        reported. A resourceVersion that expired (410 Gone) raises WatchExpired: what changed
        meanwhile is unknown, and the caller should reload. A server that cannot be reached
        raises a PluginError without a status.
        """
        import urllib3  # noqa: PLC0415 - the client's transport
        from kubernetes import watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        call: Callable[..., Any]
        args: tuple[Any, ...]
        extra: dict[str, Any] = {}
        if kind == "events":
            assert name is not None
            call = self.core.list_namespaced_event
            args = (self.namespace,)
            extra["field_selector"] = _task_events_selector(name)
        elif all_namespaces:
            call = self.custom.list_cluster_custom_object
            args = (GROUP, VERSION, PLURAL)
        else:
            call = self.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, self.namespace, PLURAL)
        if kind == "tasks" and name is not None:
            extra["field_selector"] = f"metadata.name={name}"
        if label_selector:
            extra["label_selector"] = label_selector
        try:
            # limit=1: only the list's resourceVersion is wanted, not the objects.
            first: dict[str, Any] = {"limit": 1, "_request_timeout": REQUEST_TIMEOUT, **extra}
            listed = call(*args, **first)
            data = self.api_client.sanitize_for_serialization(listed)
            version = (data.get("metadata") or {}).get("resourceVersion")
            while not stop.is_set():
                watcher = watch.Watch()
                for event in watcher.stream(
                    call,
                    *args,
                    resource_version=version,
                    timeout_seconds=timeout_seconds,
                    allow_watch_bookmarks=True,
                    _request_timeout=(REQUEST_TIMEOUT[0], timeout_seconds + 15),
                    **extra,
                ):
                    version = watcher.resource_version or version
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        yield str(event["type"])
                    if stop.is_set():
                        watcher.stop()
                        break
                version = watcher.resource_version or version
                yield ""
        except ApiException as error:
            if error.status == 410:
                raise WatchExpired("the watch expired", 410) from None
            raise self._fail(error) from None
        except urllib3.exceptions.HTTPError as error:
            raise PluginError(
                f"cannot reach the Kubernetes API server: {_connection_problem(error)}"
            ) from None

    def job_uid(self, job: str) -> str | None:
        """The uid of the Job named ``job``, or None when it does not exist (any more)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            found = self.batch.read_namespaced_job(
                job, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._fail(error) from None
        uid = found.metadata.uid if found.metadata is not None else None
        return str(uid) if uid else None

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        """The pods carrying ``job``'s name label (as plain dicts): anyone who may create pods
        can set that label, so the caller keeps those the Job controls (``controlled_by``)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            result = self.core.list_namespaced_pod(
                self.namespace,
                label_selector=f"{JOB_NAME_LABEL}={job}",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise self._fail(error) from None
        data = self.api_client.sanitize_for_serialization(result)
        return list(data.get("items") or [])

    def pod_log(self, pod: str, container: str, *, tail_lines: int | None = None) -> str:
        """The container's log (its last ``tail_lines`` lines, when given), or PluginError
        naming the pod."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        extra: dict[str, Any] = {}
        if tail_lines is not None:
            extra["tail_lines"] = tail_lines
        try:
            text = self.core.read_namespaced_pod_log(
                pod, self.namespace, container=container, _request_timeout=REQUEST_TIMEOUT, **extra
            )
        except ApiException as error:
            detail = api_error_message(error.status, error.reason, error.body)
            raise PluginError(
                f"cannot read the log of pod {self.namespace}/{pod} (container {container}): "
                f"{detail}",
                error.status,
            ) from None
        return str(text or "")


def _task_events_selector(name: str) -> str:
    return f"involvedObject.kind=ScheduledTask,involvedObject.name={name}"


def _connection_problem(error: BaseException) -> str:
    reason: Any = getattr(error, "reason", None) or error
    text = str(reason)
    # urllib3 puts "<HTTPSConnection object at 0x...>: " in front of the useful part.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text


def _memory_directory() -> str | None:
    """A directory held in memory (tmpfs) that this user may write to, or None."""
    candidates = [os.environ.get("XDG_RUNTIME_DIR") or "", "/dev/shm"]  # noqa: S108 - tmpfs
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            in_memory = {
                fields[1]
                for fields in (line.split() for line in handle)
                if len(fields) > 2 and fields[2] in ("tmpfs", "ramfs")
            }
    except OSError:
        return None  # not Linux: no way to tell
    for path in candidates:
        if path and path in in_memory and os.access(path, os.W_OK | os.X_OK):
            return path
    return None


class SecretFiles:
    """Where the Kubernetes client may put the certificates and keys it finds as data in a
    kubeconfig (it hands file names to the TLS library): a private directory in memory, removed
    by :meth:`close`. ``where`` is None when no memory-backed directory exists (the client's
    default, the temporary directory, is used then) and ``warning`` says so."""

    def __init__(self) -> None:
        base = _memory_directory()
        self.where = tempfile.mkdtemp(prefix="nightshift-ui-", dir=base) if base else None
        self.warning = (
            None
            if base
            else "no memory-backed directory found: certificates that the kubeconfig holds as "
            "data are written to temporary files while this runs (the Kubernetes client "
            "needs them as files)"
        )

    def close(self) -> None:
        """Remove the directory and what the client wrote into it."""
        if self.where is not None:
            shutil.rmtree(self.where, ignore_errors=True)


def connect(args: argparse.Namespace, *, secret_files: SecretFiles | None = None) -> Session:
    """Load the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or, in a pod,
    the in-cluster account; the namespace is ``-n``, else the context's, else ``default``.

    With ``secret_files`` (the long-running ``ui``), certificates held as data in the kubeconfig
    go to that private directory in memory rather than the disk, and refreshed credentials are
    never written back to the kubeconfig.
    """
    from kubernetes import client, config  # noqa: PLC0415 - keeps --help fast

    kubeconfig: str | None = args.kubeconfig
    if kubeconfig and not os.path.exists(kubeconfig):
        raise PluginError(f"kubeconfig {kubeconfig}: no such file")
    configuration = client.Configuration()
    namespace: str | None = args.namespace
    private: dict[str, Any] = {}
    if secret_files is not None:
        private = {"persist_config": False, "temp_file_path": secret_files.where}
    kube_user: str | None = None
    try:
        config.load_kube_config(
            config_file=kubeconfig,
            context=args.context,
            client_configuration=configuration,
            **private,
        )
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if namespace is None:
            namespace = namespace_from_contexts(contexts, active, args.context)
        kube_user = user_from_contexts(contexts, active, args.context)
    except config.ConfigException as error:
        in_pod = os.environ.get("KUBERNETES_SERVICE_HOST")
        if kubeconfig or args.context or os.environ.get("KUBECONFIG") or not in_pod:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            problem = str(error)
            if "No configuration found" in problem:
                raise PluginError(
                    f"no kubeconfig found at {where}: pass --kubeconfig or set $KUBECONFIG"
                ) from None
            raise PluginError(f"kubeconfig {where}: {problem}") from None
        config.load_incluster_config(client_configuration=configuration)
        if namespace is None:
            namespace = _pod_namespace()
    configuration.retries = 1
    if not configuration.verify_ssl:
        # The kubeconfig asked for insecure-skip-tls-verify; kubectl does not warn either.
        import urllib3  # noqa: PLC0415

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return Session(client.ApiClient(configuration), namespace, str(configuration.host), kube_user)


def _pod_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def unreachable(call: Callable[[], T]) -> T:
    """``call()``, with a server that cannot be reached (refused, TLS, timeout) turned into a
    PluginError that does not name the server (the ``ui`` shows it in a web page, and the
    kubeconfig's contents stay out of those)."""
    import urllib3  # noqa: PLC0415 - the client's transport

    try:
        return call()
    except urllib3.exceptions.HTTPError as error:
        raise PluginError(
            f"cannot reach the Kubernetes API server: {_connection_problem(error)}"
        ) from None


def with_session(
    args: argparse.Namespace,
    command: Callable[[Session], int],
    *,
    secret_files: SecretFiles | None = None,
) -> int:
    """Connect as ``args`` say and run ``command`` in the session; a server that cannot be
    reached (refused, TLS, timeout) becomes one PluginError naming it."""
    import urllib3  # noqa: PLC0415 - the client's transport

    session: Session | None = None
    try:
        session = (
            connect(args) if secret_files is None else connect(args, secret_files=secret_files)
        )
        return command(session)
    except urllib3.exceptions.HTTPError as error:
        host = session.host if session is not None else "the configured server"
        raise PluginError(
            f"cannot reach the Kubernetes API server at {host}: {_connection_problem(error)}"
        ) from None

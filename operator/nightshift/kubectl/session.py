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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nightshift.models import BACKFILL_PLURAL, CALENDAR_PLURAL, GROUP, PLURAL, VERSION

__all__ = [
    "KIND_LOWER",
    "RESOURCE",
    "PluginError",
    "Session",
    "api_error_message",
    "connect",
    "namespace_from_contexts",
    "with_session",
]

RESOURCE = f"{PLURAL}.{GROUP}"  # scheduledtasks.nightshift.dev, as kubectl names it
KIND_LOWER = "scheduledtask"
REQUEST_TIMEOUT = (10, 60)  # seconds: connect, read
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class PluginError(Exception):
    """An expected failure (missing task, forbidden, unreachable): ``Error: <message>``, exit 1."""


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

    def __init__(self, api_client: Any, namespace: str, host: str) -> None:
        from kubernetes import client  # noqa: PLC0415 - keeps --help fast

        self.api_client = api_client
        self.namespace = namespace
        self.host = host
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def _fail(self, error: Any, task: str | None = None) -> PluginError:
        return PluginError(
            api_error_message(
                getattr(error, "status", None),
                getattr(error, "reason", None),
                getattr(error, "body", None),
                task=task,
                namespace=self.namespace,
            )
        )

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

    def list_tasks(self, *, all_namespaces: bool) -> list[dict[str, Any]]:
        """Tasks in the namespace, or in all namespaces."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            if all_namespaces:
                result = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
            else:
                result = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as error:
            raise self._fail(error) from None
        return list(_as_dict(result).get("items") or [])

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        """The pods the Job controller created for ``job`` (as plain dicts)."""
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

    def pod_log(self, pod: str, container: str) -> str:
        """The container's log, or PluginError naming the pod."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            text = self.core.read_namespaced_pod_log(
                pod, self.namespace, container=container, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            detail = api_error_message(error.status, error.reason, error.body)
            raise PluginError(
                f"cannot read the log of pod {self.namespace}/{pod} (container {container}): "
                f"{detail}"
            ) from None
        return str(text or "")


def _connection_problem(error: BaseException) -> str:
    reason: Any = getattr(error, "reason", None) or error
    text = str(reason)
    # urllib3 puts "<HTTPSConnection object at 0x...>: " in front of the useful part.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text


def connect(args: argparse.Namespace) -> Session:
    """Load the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or, in a pod,
    the in-cluster account; the namespace is ``-n``, else the context's, else ``default``."""
    from kubernetes import client, config  # noqa: PLC0415 - keeps --help fast

    kubeconfig: str | None = args.kubeconfig
    if kubeconfig and not os.path.exists(kubeconfig):
        raise PluginError(f"kubeconfig {kubeconfig}: no such file")
    configuration = client.Configuration()
    namespace: str | None = args.namespace
    try:
        config.load_kube_config(
            config_file=kubeconfig, context=args.context, client_configuration=configuration
        )
        if namespace is None:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = namespace_from_contexts(contexts, active, args.context)
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
    return Session(client.ApiClient(configuration), namespace, str(configuration.host))


def _pod_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def with_session(args: argparse.Namespace, command: Callable[[Session], int]) -> int:
    """Connect as ``args`` say and run ``command`` in the session; a server that cannot be
    reached (refused, TLS, timeout) becomes one PluginError naming it."""
    import urllib3  # noqa: PLC0415 - the client's transport

    session: Session | None = None
    try:
        session = connect(args)
        return command(session)
    except urllib3.exceptions.HTTPError as error:
        host = session.host if session is not None else "the configured server"
        raise PluginError(
            f"cannot reach the Kubernetes API server at {host}: {_connection_problem(error)}"
        ) from None

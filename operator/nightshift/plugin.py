"""The ``kubectl nightshift`` plugin: run, suspend, resume and inspect ScheduledTasks in a cluster.

Installed as the ``kubectl-nightshift`` console script, so ``kubectl nightshift ...`` finds it on
$PATH. Pure helpers (tables, durations, choosing a run) are separate from the few API calls, which
go through :class:`Session` and the official client. Expected failures print one ``Error: ...``
line and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import yaml

from nightshift import __version__
from nightshift.durations import DurationError, format_duration, parse_duration
from nightshift.jobs import (
    ANNOTATION_RUN_NOW,
    PREFIX,
    job_name,
    manual_run_id,
    new_token,
    token_key,
)
from nightshift.models import GROUP, PLURAL, VERSION, SpecError, TaskSpec, parse_spec
from nightshift.schedule import describe, format_fire_time, next_fire_times, plan_for

__all__ = [
    "ANNOTATION_SUSPEND_REASON",
    "HISTORY_HEADERS",
    "Attempt",
    "PluginError",
    "RunProgress",
    "Session",
    "api_error_message",
    "attempt_line",
    "build_parser",
    "choose_container",
    "connect",
    "format_run_duration",
    "help_texts",
    "history_rows",
    "list_table",
    "main",
    "namespace_from_contexts",
    "new_token",
    "newest_pod",
    "one_line",
    "parse_args",
    "parse_ts",
    "render_table",
    "result_line",
    "run_progress",
    "select_attempt",
    "task_row",
    "token_key",
    "upcoming",
]

PROG = "kubectl nightshift"
ANNOTATION_SUSPEND_REASON = PREFIX + "suspend-reason"
RESOURCE = f"{PLURAL}.{GROUP}"  # scheduledtasks.nightshift.dev, as kubectl names it
KIND_LOWER = "scheduledtask"
OUTPUTS = ("table", "json", "yaml")
MESSAGE_WIDTH = 60
POLL_SECONDS = 1.0
REQUEST_TIMEOUT = (10, 60)  # seconds: connect, read
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; a fixed width so --help (and docs/cli.md, which
    quotes it) does not depend on the terminal."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


class PluginError(Exception):
    """An expected failure (missing task, forbidden, unreachable): ``Error: <message>``, exit 1."""


# --- pure helpers ---------------------------------------------------------------------------------


def parse_ts(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from status (``...Z``), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_run_duration(started: Any, finished: Any) -> str:
    """``1m5s`` between two status timestamps (whole seconds), or ``-`` when one is missing."""
    begin, end = parse_ts(started), parse_ts(finished)
    if begin is None or end is None:
        return "-"
    seconds = max(0, round((end - begin).total_seconds()))
    return format_duration(timedelta(seconds=seconds))


def one_line(text: Any, width: int | None = None) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``width`` characters with ``...``."""
    if text is None:
        return ""
    flat = " ".join(str(text).split())
    if width is not None and len(flat) > width:
        return flat[: max(0, width - 3)] + "..."
    return flat


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A kubectl-style table: left-aligned columns three spaces apart, no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


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


def task_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``list`` summary of one task object: what ``kubectl get stask`` shows, plus more."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    schedule = status.get("schedule")
    if not schedule:
        try:
            schedule = describe(parse_spec(spec))
        except SpecError:
            schedule = "<invalid spec>"
    active = status.get("activeCount")
    if active is None:
        active = len(status.get("active") or [])
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "schedule": schedule,
        "suspend": bool(spec.get("suspend", False)),
        "active": int(active),
        "next": status.get("nextScheduleTime"),
        "lastResult": status.get("lastResult"),
    }


def list_table(rows: Sequence[Mapping[str, Any]], *, all_namespaces: bool) -> str:
    """The ``list`` table; NAMESPACE only across namespaces, as kubectl does."""
    headers = ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "NEXT", "LAST RESULT"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    cells = []
    for row in rows:
        line = [
            _text(row["name"]),
            _text(row["schedule"]),
            "true" if row["suspend"] else "false",
            str(row["active"]),
            _text(row["next"]),
            _text(row["lastResult"]),
        ]
        if all_namespaces:
            line.insert(0, _text(row["namespace"]))
        cells.append(line)
    return render_table(headers, cells)


def _detail(record: Mapping[str, Any]) -> str | None:
    """The termination message; else the Job's reason, unless it merely says it succeeded."""
    if record.get("message"):
        return str(record["message"])
    if record.get("result") == "Succeeded":
        return None
    return record.get("reason")


HISTORY_HEADERS = ("RUN", "ATTEMPT", "RESULT", "EXIT", "STARTED", "DURATION", "MESSAGE")


def history_rows(
    status: Mapping[str, Any], now: datetime, *, width: int | None = MESSAGE_WIDTH
) -> list[list[str]]:
    """Rows for ``history``: running attempts, retries waiting, then status.runs (newest first)."""
    rows: list[list[str]] = []
    for active in status.get("active") or []:
        started = active.get("startedAt")
        running_for = format_run_duration(started, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        rows.append(
            [
                _text(active.get("run")),
                _text(active.get("attempt")),
                "Running",
                "-",
                _text(started),
                running_for if running_for == "-" else running_for + "+",
                one_line(f"Job {active.get('job')}", width),
            ]
        )
    for pending in status.get("pendingRetries") or []:
        rows.append(
            [
                _text(pending.get("run")),
                _text(pending.get("attempt")),
                "RetryPending",
                "-",
                "-",
                "-",
                one_line(f"retry not before {pending.get('notBefore')}", width),
            ]
        )
    for record in status.get("runs") or []:
        rows.append(
            [
                _text(record.get("run")),
                _text(record.get("attempt")),
                _text(record.get("result")),
                _text(record.get("exitCode")),
                _text(record.get("startedAt")),
                format_run_duration(record.get("startedAt"), record.get("finishedAt")),
                one_line(_detail(record), width),
            ]
        )
    return rows


def upcoming(
    task: TaskSpec, namespace: str, name: str, now: datetime, count: int, *, runs_so_far: int = 0
) -> list[datetime]:
    """The next ``count`` fire times after ``now`` (nightshift.schedule.next_fire_times)."""
    plan = plan_for(task, namespace, name)
    return next_fire_times(plan, now, count, max_runs=task.maxRuns, runs_so_far=runs_so_far)


def _iso(moment: datetime, zone: Any) -> str:
    text = format_fire_time(moment, zone)
    return text.replace("+00:00", "Z") if zone is UTC else text


@dataclass(frozen=True, slots=True)
class RunProgress:
    """Where one run stands in a task's status, for ``run --wait``."""

    run: str
    acknowledged: bool
    records: tuple[Mapping[str, Any], ...] = ()  # finished attempts, oldest first
    active: tuple[Mapping[str, Any], ...] = ()
    pending: tuple[Mapping[str, Any], ...] = ()
    blocked: str | None = None  # why the operator cannot act on the request

    @property
    def done(self) -> bool:
        """The operator took the request and no attempt of the run is active or pending."""
        return self.acknowledged and not self.active and not self.pending

    @property
    def final(self) -> Mapping[str, Any] | None:
        """The last finished attempt (the run's result once done)."""
        return self.records[-1] if self.records else None

    @property
    def succeeded(self) -> bool:
        """True when the run is done and its last attempt succeeded."""
        final = self.final
        return self.done and final is not None and final.get("result") == "Succeeded"


def run_progress(status: Mapping[str, Any], run: str, token: str | None = None) -> RunProgress:
    """The state of ``run`` in ``status``; ``token`` is the run-now token that requested it."""
    records = sorted(
        (r for r in status.get("runs") or [] if r.get("run") == run),
        key=lambda r: int(r.get("attempt") or 1),
    )
    active = tuple(a for a in status.get("active") or [] if a.get("run") == run)
    pending = tuple(p for p in status.get("pendingRetries") or [] if p.get("run") == run)
    acknowledged = bool(records or active or pending) or (
        token is not None and status.get("runNowToken") == token
    )
    blocked = None
    if not acknowledged:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("reason") == "InvalidSpec":
                blocked = f"the task's spec is invalid: {cond.get('message') or 'see its status'}"
    return RunProgress(run, acknowledged, tuple(records), active, pending, blocked)


def result_line(progress: RunProgress) -> str:
    """The one line ``run --wait`` ends with."""
    final = progress.final
    if final is None:
        return (
            f"run {progress.run}: finished, but its result is no longer in status "
            "(spec.history keeps none)"
        )
    result = final.get("result") or "Unknown"
    attempts = int(final.get("attempt") or 1)
    parts = []
    if final.get("exitCode") is not None:
        parts.append(f"exit {final['exitCode']}")
    duration = format_run_duration(final.get("startedAt"), final.get("finishedAt"))
    if duration != "-":
        parts.append(duration)
    tries = f"attempt {attempts}" if attempts == 1 else f"after {attempts} attempts"
    head = f"run {progress.run}: {result} ({', '.join([tries, *parts])})"
    detail = one_line(_detail(final))
    return f"{head}: {detail}" if detail else head


def attempt_line(record: Mapping[str, Any]) -> str:
    """A progress line for one finished attempt."""
    text = f"attempt {record.get('attempt')}: {record.get('result')}"
    if record.get("exitCode") is not None:
        text += f" (exit {record['exitCode']})"
    detail = one_line(_detail(record), MESSAGE_WIDTH)
    return f"{text}: {detail}" if detail else text


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a run and its Job (None when no Job was created: Skipped, Missed)."""

    run: str
    attempt: int
    job: str | None
    result: str | None = None  # None while running
    started: datetime | None = None


def _attempts(status: Mapping[str, Any]) -> list[Attempt]:
    found = [
        Attempt(
            str(a.get("run")),
            int(a.get("attempt") or 1),
            a.get("job"),
            None,
            parse_ts(a.get("startedAt")),
        )
        for a in status.get("active") or []
    ]
    found += [
        Attempt(
            str(r.get("run")),
            int(r.get("attempt") or 1),
            r.get("job"),
            r.get("result"),
            parse_ts(r.get("startedAt")) or parse_ts(r.get("finishedAt")),
        )
        for r in status.get("runs") or []
    ]
    return found


def select_attempt(
    status: Mapping[str, Any], task: str, run: str | None = None, attempt: int | None = None
) -> Attempt:
    """The attempt ``logs`` shows: the newest by default; ``run`` is a run identity or Job name.

    A run no longer kept in status still has a deterministic Job name, so it is returned with the
    name computed from (task, run, attempt) and the caller finds out whether its pod exists.
    """
    candidates = _attempts(status)
    if run is None:
        if not candidates:
            raise PluginError(f'{KIND_LOWER} "{task}" has no runs yet')
        latest = datetime.max.replace(tzinfo=UTC)
        earliest = datetime.min.replace(tzinfo=UTC)
        # Newest start wins; a running attempt wins a tie (and counts as newest without a start).
        newest = max(
            candidates,
            key=lambda c: (
                c.started or (latest if c.result is None else earliest),
                c.result is None,
            ),
        )
        run = newest.run
    by_job = [c for c in candidates if c.job == run]
    if by_job:
        if attempt is not None and by_job[0].attempt != attempt:
            raise PluginError(f"Job {run} is attempt {by_job[0].attempt}, not {attempt}")
        chosen = by_job[0]
    else:
        same_run = [c for c in candidates if c.run == run]
        if not same_run:
            if run.startswith(f"{task}-") and attempt is None:
                return Attempt(run, 1, run)  # a Job name no longer in status
            return Attempt(run, attempt or 1, job_name(task, run, attempt or 1))
        if attempt is None:
            chosen = max(same_run, key=lambda c: c.attempt)
        else:
            matching = [c for c in same_run if c.attempt == attempt]
            if not matching:
                known = ", ".join(str(c.attempt) for c in sorted(same_run, key=lambda c: c.attempt))
                raise PluginError(f"run {run} has no attempt {attempt} in status (known: {known})")
            chosen = matching[0]
    if chosen.job is None:
        raise PluginError(
            f"run {chosen.run} attempt {chosen.attempt} was {chosen.result or 'not started'}: "
            "no Job was created, so there is no log"
        )
    return chosen


def choose_container(
    containers: Sequence[str],
    annotations: Mapping[str, str],
    requested: str | None,
    init_containers: Sequence[str] = (),
) -> tuple[str, str | None]:
    """The container whose log to read, and a note for stderr when it was defaulted.

    Like kubectl: the ``kubectl.kubernetes.io/default-container`` annotation, else the first.
    """
    if requested is not None:
        if requested not in [*containers, *init_containers]:
            known = ", ".join([*containers, *init_containers])
            raise PluginError(f"container {requested!r} is not in the pod (containers: {known})")
        return requested, None
    if not containers:
        raise PluginError("the pod has no containers")
    preferred = annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    name = preferred if preferred is not None and preferred in containers else containers[0]
    if len(containers) == 1:
        return name, None
    return name, f'Defaulted container "{name}" out of: {", ".join(containers)}'


def newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created pod (a Job with backoffLimit 0 normally has one)."""
    if not pods:
        return None
    return max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


# --- the API --------------------------------------------------------------------------------------


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


# --- commands -------------------------------------------------------------------------------------


def _emit(out: TextIO, fmt: str, data: Any, table: Callable[[], str]) -> None:
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        out.write(table())


def _ref(name: str) -> str:
    return f"{KIND_LOWER}.{GROUP}/{name}"


def cmd_run(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Request a run now; with --wait follow it to its result."""
    task = session.get_task(args.task)
    previous = ((task.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
    if previous and token_key(str(previous)) != (task.get("status") or {}).get("runNowToken"):
        # The operator acts on the annotation's latest value only.
        err.write(
            f"note: the previous run-now request ({previous}) has not been picked up yet; "
            "this one replaces it\n"
        )
    token = new_token(datetime.now(UTC))
    run = manual_run_id(token)
    job = job_name(args.task, run, 1)
    session.patch_task(args.task, {"metadata": {"annotations": {ANNOTATION_RUN_NOW: token}}})
    data: dict[str, Any] = {
        "task": args.task,
        "namespace": session.namespace,
        "token": token,
        "run": run,
        "job": job,
    }
    if args.output == "table":
        out.write(f"{_ref(args.task)}: run requested (token {token})\n")
        out.write(f"run {run}: first attempt is Job {job}\n")
        if (task.get("spec") or {}).get("suspend"):
            err.write("note: the task is suspended; a run-now request still runs\n")
        out.flush()
    if not args.wait:
        if args.output != "table":
            _emit(out, args.output, data, str)
        return 0
    progress = _wait_for_run(session, args.task, run, token, args.timeout, err)
    data["result"] = (progress.final or {}).get("result") or "Unknown"
    data["attempts"] = [dict(r) for r in progress.records]
    if args.output == "table":
        out.write(result_line(progress) + "\n")
    else:
        _emit(out, args.output, data, str)
    return 0 if progress.succeeded else 1


def _wait_for_run(
    session: Session, task: str, run: str, token: str, timeout: timedelta, err: TextIO
) -> RunProgress:
    deadline = time.monotonic() + timeout.total_seconds()
    reported: set[int] = set()
    waiting: set[int] = set()
    while True:
        obj = session.get_task(task)
        progress = run_progress(obj.get("status") or {}, run, token)
        for record in progress.records:
            number = int(record.get("attempt") or 1)
            if number not in reported:
                reported.add(number)
                err.write(attempt_line(record) + "\n")
        for pending in progress.pending:
            number = int(pending.get("attempt") or 2)
            if number not in waiting:
                waiting.add(number)
                err.write(f"attempt {number}: retry not before {pending.get('notBefore')}\n")
        err.flush()
        if progress.done:
            return progress
        if progress.blocked:
            raise PluginError(f"run {run} cannot start: {progress.blocked}")
        if time.monotonic() >= deadline:
            limit = format_duration(timeout)
            if progress.acknowledged:
                raise PluginError(f"timed out after {limit}: run {run} is still in progress")
            current = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
            why = "is the operator running and watching this namespace?"
            if current != token:
                why = f"the {ANNOTATION_RUN_NOW} annotation now holds another request ({current})"
            raise PluginError(
                f"timed out after {limit}: the operator has not picked up run {run} ({why})"
            )
        time.sleep(POLL_SECONDS)


def cmd_suspend(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Set spec.suspend=true and the reason annotation."""
    task = session.get_task(args.task)
    already = bool((task.get("spec") or {}).get("suspend"))
    # A suspend without --reason clears an older reason rather than leaving a stale one.
    reason = args.reason if args.reason else None
    session.patch_task(
        args.task,
        {
            "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: reason}},
            "spec": {"suspend": True},
        },
    )
    note = " (was already suspended)" if already else ""
    out.write(f"{_ref(args.task)} suspended{note}\n")
    return 0


def cmd_resume(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Set spec.suspend=false and drop the reason annotation."""
    task = session.get_task(args.task)
    was = bool((task.get("spec") or {}).get("suspend"))
    session.patch_task(
        args.task,
        {
            "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: None}},
            "spec": {"suspend": False},
        },
    )
    note = "" if was else " (was not suspended)"
    out.write(f"{_ref(args.task)} resumed{note}\n")
    return 0


def cmd_next(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print the next fire times, in the task's zone and in UTC."""
    task = session.get_task(args.task)
    status = task.get("status") or {}
    try:
        spec = parse_spec(task.get("spec"))
    except SpecError as error:
        raise PluginError(f"{KIND_LOWER} {args.task!r} has an invalid spec: {error}") from None
    times = upcoming(
        spec,
        session.namespace,
        args.task,
        datetime.now(UTC),
        args.count,
        runs_so_far=int(status.get("runCount") or 0),
    )
    zone = plan_for(spec, session.namespace, args.task).tz
    if spec.suspend:
        err.write("note: the task is suspended (spec.suspend); these times apply once resumed\n")
    rows = [[_iso(t, zone), _iso(t, UTC)] for t in times]
    data = {
        "task": args.task,
        "namespace": session.namespace,
        "timeZone": spec.timeZone,
        "suspended": spec.suspend,
        "times": [{"local": local, "utc": utc} for local, utc in rows],
    }
    if not times and args.output == "table":
        err.write(f"{KIND_LOWER} {args.task!r} has no upcoming fire times\n")
        return 0
    header = [f"LOCAL ({spec.timeZone})", "UTC"]
    _emit(out, args.output, data, lambda: render_table(header, rows))
    return 0


def cmd_history(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print status.runs (and the attempts in flight) as a table, JSON or YAML."""
    task = session.get_task(args.task)
    status = task.get("status") or {}
    data = {
        "task": args.task,
        "namespace": session.namespace,
        "active": status.get("active") or [],
        "pendingRetries": status.get("pendingRetries") or [],
        "runs": status.get("runs") or [],
    }
    if args.output == "table":
        rows = history_rows(status, datetime.now(UTC))
        if not rows:
            out.write("no runs yet\n")
            return 0
        out.write(render_table(HISTORY_HEADERS, rows))
        return 0
    _emit(out, args.output, data, str)
    return 0


def cmd_logs(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Print the pod log of one attempt's Job."""
    task = session.get_task(args.task)
    chosen = select_attempt(task.get("status") or {}, args.task, args.run, args.attempt)
    assert chosen.job is not None
    pod = newest_pod(session.pods_of_job(chosen.job))
    if pod is None:
        raise PluginError(
            f"no pod found for Job {chosen.job} (run {chosen.run}, attempt {chosen.attempt}): "
            "it has not started yet, or the Job was pruned under spec.history"
        )
    meta = pod.get("metadata") or {}
    pod_spec = pod.get("spec") or {}
    names = [str(c.get("name")) for c in pod_spec.get("containers") or []]
    inits = [str(c.get("name")) for c in pod_spec.get("initContainers") or []]
    container, note = choose_container(names, meta.get("annotations") or {}, args.container, inits)
    if note:
        err.write(note + "\n")
    err.write(
        f"pod {meta.get('name')} (Job {chosen.job}, run {chosen.run}, attempt {chosen.attempt})\n"
    )
    err.flush()
    out.write(session.pod_log(str(meta.get("name")), container))
    return 0


def cmd_list(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """List the tasks in the namespace or everywhere."""
    items = session.list_tasks(all_namespaces=args.all_namespaces)
    rows = sorted(
        (task_row(obj) for obj in items),
        key=lambda r: (str(r["namespace"]), str(r["name"])),
    )
    if not rows and args.output == "table":
        where = "any namespace" if args.all_namespaces else f'namespace "{session.namespace}"'
        err.write(f"No {RESOURCE} found in {where}.\n")
        return 0
    _emit(out, args.output, rows, lambda: list_table(rows, all_namespaces=args.all_namespaces))
    return 0


# --- command line ---------------------------------------------------------------------------------


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_globals(
    parser: argparse.ArgumentParser,
    *,
    suppress: bool,
    short_namespace: bool = True,
    output: bool = False,
    all_namespaces: bool = False,
) -> None:
    """The kubectl-style flags. On a command they use SUPPRESS defaults, so a flag given before
    the command (on the top-level parser) is not reset by the command's parser."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global flags")
    flags = ["-n", "--namespace"] if short_namespace else ["--namespace"]
    group.add_argument(
        *flags,
        dest="namespace",
        metavar="NAMESPACE",
        default=default(None),
        help="the task's namespace (default: the kubeconfig context's, else default)",
    )
    group.add_argument("--context", default=default(None), help="the kubeconfig context to use")
    group.add_argument(
        "--kubeconfig",
        default=default(None),
        help="path to the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)",
    )
    if output:
        group.add_argument(
            "-o",
            "--output",
            choices=OUTPUTS,
            default=default("table"),
            metavar="FORMAT",
            help="table, json or yaml (default: table)",
        )
    if all_namespaces:
        group.add_argument(
            "-A",
            "--all-namespaces",
            action="store_true",
            default=default(False),
            help="list tasks in every namespace",
        )


def _command(
    commands: Any,
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=_HelpFormatter,
    )
    return parser


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per command (for ``help_texts``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_HelpFormatter,
        description="""\
Run, suspend, resume and inspect Nightshift ScheduledTasks (kubectl get stask) in a
cluster. The global flags may go before or after the command, as with kubectl.""",
        epilog="""\
examples:
  kubectl nightshift list -A
  kubectl nightshift run backup --wait
  kubectl nightshift -n prod history backup
  kubectl nightshift <command> --help""",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_globals(parser, suppress=False, output=True, all_namespaces=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub: dict[str, argparse.ArgumentParser] = {}

    p = sub["run"] = _command(
        commands,
        "run",
        summary="run a task now, once (optionally wait for its result)",
        description="""\
Ask the operator to run TASK now, once, outside its schedule. The plugin sets a fresh
nightshift.dev/run-now annotation (a UTC timestamp and a random suffix) with a merge patch
and prints the token, the run's identity (manual-<hash>) and the name of the Job its first
attempt gets. The run follows the task's concurrencyPolicy (under Forbid it is recorded as
Skipped while another run is active) and retry policy, and it runs even when the task is
suspended. With --wait the plugin follows the run through its retries until no attempt is
active or waiting to be retried, prints the result and exits 0 if the run succeeded and 1
otherwise (failed, timed out, skipped, replaced, or --timeout passed).""",
        examples="""\
  kubectl nightshift run backup
  kubectl nightshift run backup --wait --timeout 30m
  kubectl nightshift -n prod run backup --wait -o json""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument("--wait", action="store_true", help="wait for the run's result")
    p.add_argument(
        "--timeout",
        type=_duration,
        default=timedelta(minutes=10),
        metavar="DURATION",
        help="how long --wait waits (default 10m)",
    )
    _add_globals(p, suppress=True, output=True)
    p.set_defaults(handler=cmd_run)

    p = sub["suspend"] = _command(
        commands,
        "suspend",
        summary="stop scheduling new runs of a task",
        description="""\
Stop scheduling new runs of TASK: set spec.suspend=true with a merge patch and record
--reason in the nightshift.dev/suspend-reason annotation, where kubectl describe shows it
(without --reason an older reason is removed). Runs that are active continue, and run-now
requests still run. Slots that pass while the task is suspended are not caught up later.""",
        examples="""\
  kubectl nightshift suspend backup --reason "storage migration, ticket OPS-1234"
  kubectl nightshift -n prod suspend backup""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument("--reason", metavar="TEXT", help="why, for whoever looks at the task next")
    _add_globals(p, suppress=True)
    p.set_defaults(handler=cmd_suspend)

    p = sub["resume"] = _command(
        commands,
        "resume",
        summary="resume scheduling a suspended task",
        description="""\
Resume scheduling TASK: set spec.suspend=false with a merge patch and remove the
nightshift.dev/suspend-reason annotation. The next run is the first slot after now; the
slots that passed while the task was suspended are not run.""",
        examples="""\
  kubectl nightshift resume backup
  kubectl nightshift -n prod resume backup""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    _add_globals(p, suppress=True)
    p.set_defaults(handler=cmd_resume)

    p = sub["next"] = _command(
        commands,
        "next",
        summary="print a task's upcoming fire times",
        description="""\
Print the next fire times of TASK, computed locally from its spec as stored in the cluster
(cron, interval or one-shot, time zone with DST, startAt/endAt, jitter and maxRuns), in the
task's time zone and in UTC. The operator is not involved, so this works while it is down.
A suspended task is noted on standard error: the times apply once it is resumed. Retries
waiting for their back-off are not shown (see history). After the command, -n followed by
a number is the count (as in nightshift preview); otherwise -n is the namespace.""",
        examples="""\
  kubectl nightshift next backup
  kubectl nightshift next backup -n 3
  kubectl nightshift -n prod next backup --count 10 -o json""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument(
        "--count",
        type=_positive,
        default=argparse.SUPPRESS,
        metavar="N",
        help="how many fire times (default 5)",
    )
    p.add_argument(
        "-n",
        dest="count_or_namespace",
        default=argparse.SUPPRESS,
        metavar="N|NAMESPACE",
        help="a number: how many fire times; a name: the namespace",
    )
    _add_globals(p, suppress=True, short_namespace=False, output=True)
    p.set_defaults(handler=cmd_next)

    p = sub["history"] = _command(
        commands,
        "history",
        summary="show a task's recent runs",
        description="""\
Show the runs of TASK as the operator records them in status: attempts that are running or
waiting to be retried first, then the finished attempts kept in status.runs (newest first,
as many as spec.history keeps). Each row has the run's identity (its slot time in UTC, or
manual-<hash> for a run-now request), the attempt, the result, the container's exit code,
when the attempt started, how long it took and its termination message (cut to 60
characters in the table; -o json and -o yaml show everything).""",
        examples="""\
  kubectl nightshift history backup
  kubectl nightshift history backup -o json | jq '.runs[0].exitCode'""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    _add_globals(p, suppress=True, output=True)
    p.set_defaults(handler=cmd_history)

    p = sub["logs"] = _command(
        commands,
        "logs",
        summary="print the pod log of a task's run",
        description="""\
Print the log of the pod of one attempt of TASK: by default the most recent attempt,
running or finished; --run picks a run (its identity as history shows it, or a Job name)
and --attempt one of its attempts (default: the latest). The pod is found by the
batch.kubernetes.io/job-name label of the attempt's Job, so a log is there only while the
Job and its pod exist (spec.history decides how many finished Jobs are kept). Which pod,
Job, run and attempt were chosen is printed on standard error.""",
        examples="""\
  kubectl nightshift logs backup
  kubectl nightshift logs backup --run 2026-11-24T07:30:00Z --attempt 2
  kubectl nightshift logs backup --run backup-20261124073000-2 -c main""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument("--run", metavar="RUN", help="a run identity or a Job name (default: newest)")
    p.add_argument("--attempt", type=_positive, metavar="N", help="the attempt (default: latest)")
    p.add_argument(
        "-c", "--container", metavar="CONTAINER", help="the container (default: the first)"
    )
    _add_globals(p, suppress=True)
    p.set_defaults(handler=cmd_logs)

    p = sub["list"] = _command(
        commands,
        "list",
        summary="list tasks with their schedule, next run and last result",
        description="""\
List the ScheduledTasks in the namespace, or in every namespace with -A, with the schedule
summary, whether each is suspended, how many runs are active, the next fire time and the
result of the last finished attempt, as the operator last reported them in status.""",
        examples="""\
  kubectl nightshift list
  kubectl nightshift list -A
  kubectl nightshift list -n prod -o yaml""",
    )
    _add_globals(p, suppress=True, output=True, all_namespaces=True)
    p.set_defaults(handler=cmd_list)
    return parser, sub


def help_texts() -> dict[str, str]:
    """Each command's ``--help`` text, keyed ``kubectl nightshift``, ``run``, ``suspend``, ..."""
    parser, sub = build_parser()
    texts = {PROG: parser.format_help()}
    texts.update({name: p.format_help() for name, p in sub.items()})
    return texts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the command line; usage errors exit 2 (argparse's convention)."""
    parser, sub = build_parser()
    args = parser.parse_args(argv)
    command = str(args.command)
    if command == "next":
        value = getattr(args, "count_or_namespace", None)
        count = getattr(args, "count", None)
        if value is not None and value.isdigit():
            if count is not None:
                sub["next"].error("give the count once: -n N or --count N")
            try:
                count = _positive(value)
            except argparse.ArgumentTypeError as error:
                sub["next"].error(f"argument -n: {error}")
        elif value is not None:
            args.namespace = value
        args.count = count or 5
    if args.all_namespaces and command != "list":
        sub[command].error("-A/--all-namespaces only applies to list")
    if args.output != "table" and command not in ("run", "next", "history", "list"):
        sub[command].error(f"-o/--output is not supported by {command}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubectl-nightshift`` console script."""
    args = parse_args(argv)
    out, err = sys.stdout, sys.stderr
    session: Session | None = None
    try:
        import urllib3  # noqa: PLC0415 - the client's transport

        try:
            session = connect(args)
            code: int = args.handler(args, session, out, err)
        except urllib3.exceptions.HTTPError as error:
            host = session.host if session is not None else "the configured server"
            raise PluginError(
                f"cannot reach the Kubernetes API server at {host}: {_connection_problem(error)}"
            ) from None
    except PluginError as error:
        out.flush()
        print(f"Error: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

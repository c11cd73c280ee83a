"""The ``nightshift`` command: run the operator, print the CRD, preview a manifest's fire times."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import yaml

from nightshift import __version__
from nightshift.durations import DurationError, parse_duration
from nightshift.models import (
    API_VERSION,
    CALENDAR_KIND,
    KIND,
    CalendarSpec,
    SpecError,
    TaskSpec,
    parse_calendar,
    parse_spec,
    parse_time,
)
from nightshift.schedule import (
    describe,
    format_fire_time,
    next_fire_slots,
    plan_for,
    schedule_texts,
    sources,
)

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command line or its input; printed as one line, exit code 2."""


def _load_documents(path: str, stdin: TextIO) -> list[dict[str, Any]]:
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}") from None
    return [d for d in docs if isinstance(d, dict)]


def _select(docs: list[dict[str, Any]], path: str, name: str | None) -> dict[str, Any]:
    tasks = [d for d in docs if d.get("kind") == KIND]
    if name is not None:
        tasks = [d for d in tasks if (d.get("metadata") or {}).get("name") == name]
    if not tasks:
        raise UsageError(f"{path}: no {KIND} found" + (f" named {name!r}" if name else ""))
    if len(tasks) > 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in tasks)
        raise UsageError(f"{path}: several {KIND}s ({names}); choose one with --name")
    task = tasks[0]
    if task.get("apiVersion") != API_VERSION:
        raise UsageError(f"apiVersion: expected {API_VERSION}, got {task.get('apiVersion')!r}")
    return task


def _calendar(docs: list[dict[str, Any]], path: str, spec: TaskSpec) -> CalendarSpec | None:
    """The Calendar spec.calendarRef names, when FILE holds it (else a note: not applied)."""
    if spec.calendarRef is None:
        return None
    name = spec.calendarRef.name
    for doc in docs:
        if doc.get("kind") == CALENDAR_KIND and (doc.get("metadata") or {}).get("name") == name:
            return parse_calendar(doc.get("spec") or {})
    print(
        f"note: calendar {name!r} is not in {path}: its exclusions are not applied "
        "(put the Calendar in the same file, or pipe both in with -)",
        file=sys.stderr,
    )
    return None


def _runs_so_far(task: dict[str, Any]) -> int:
    """status.runCount when the manifest carries it (``kubectl get -o yaml``), else 0."""
    status = task.get("status")
    count = status.get("runCount") if isinstance(status, dict) else None
    # A hand-written manifest may hold anything here; bool is an int to Python.
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def preview(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print the next fire times of a manifest, one RFC 3339 timestamp per line: the instants the
    operator would start runs at after --from (jitter included, up to endAt and maxRuns)."""
    docs = _load_documents(args.file, stdin)
    task = _select(docs, args.file, args.name)
    metadata = task.get("metadata") or {}
    spec = parse_spec(task.get("spec"))
    calendar = _calendar(docs, args.file, spec)
    plan = plan_for(
        spec, metadata.get("namespace") or "default", metadata.get("name") or "", calendar=calendar
    )
    if args.start is None:
        start = datetime.now(UTC)
    else:
        try:
            start = parse_time(args.start)
        except ValueError as error:
            raise UsageError(f"--from: {error}") from None
    if spec.suspend:
        print("note: spec.suspend is true; these run only once it is resumed", file=sys.stderr)
    found = next_fire_slots(
        plan, start, args.count, max_runs=spec.maxRuns, runs_so_far=_runs_so_far(task)
    )
    if spec.schedules is not None and not args.explain:
        print(
            f"note: the union of {len(spec.schedules)} schedules (a time they share is listed "
            "once); --explain shows which schedule each time comes from",
            file=sys.stderr,
        )
    texts = schedule_texts(spec)
    for slot, moment in found:
        line = format_fire_time(moment, plan.tz)
        if args.explain and spec.schedules is None:
            line += "  " + describe(spec)
        elif args.explain:
            line += "  " + "; ".join(f"schedules[{i}] {texts[i]}" for i in sources(plan, slot))
        out.write(line + "\n")
    return 0


def print_crd(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print a CustomResourceDefinition generated from the models."""
    from nightshift.crd import KINDS, crd_yaml  # noqa: PLC0415 - keeps preview startup light

    if args.kind not in KINDS:
        raise UsageError(f"crd: unknown kind {args.kind!r}; one of {', '.join(KINDS)}")
    out.write(crd_yaml(args.kind))
    return 0


def run_operator(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Run the operator (kopf) until interrupted."""
    if args.metrics_secure:
        args.metrics_cert = args.metrics_cert or args.webhook_cert
        args.metrics_key = args.metrics_key or args.webhook_key
        if not (args.metrics_cert and args.metrics_key):
            raise UsageError(
                "--metrics-secure needs a serving certificate: --metrics-cert and --metrics-key "
                "(or --webhook-cert and --webhook-key)"
            )
    if args.kubeconfig:
        # The kubernetes package reads $KUBECONFIG once, at import; kopf's login relies on it.
        os.environ["KUBECONFIG"] = args.kubeconfig
    # Imported here so preview and crd start fast and work without kopf's event loop set-up.
    from nightshift.runner import run  # noqa: PLC0415

    return run(args)


def _shard_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError("must be 1 to 256 (each shard owns a bucket at least)")
    return value


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nightshift",
        description="Nightshift runs ScheduledTasks as Kubernetes Jobs.",
    )
    parser.add_argument("--version", action="version", version=f"nightshift {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "preview",
        help="print the next fire times of a ScheduledTask manifest (no cluster needed)",
        description="Print the next fire times of a ScheduledTask manifest, one RFC 3339 "
        "timestamp per line in the task's time zone. Needs no cluster. A Calendar that "
        "spec.calendarRef names is applied when FILE holds it too.",
    )
    p.add_argument("file", metavar="FILE", help="manifest (YAML); - reads standard input")
    p.add_argument("--from", dest="start", metavar="RFC3339", help="start after this time")
    p.add_argument("--count", "-n", type=int, default=10, help="how many (default 10)")
    p.add_argument("--name", help="which ScheduledTask, when FILE holds several")
    p.add_argument(
        "--explain",
        action="store_true",
        help="after each time, the schedule it comes from (for schedules: which entries)",
    )
    p.set_defaults(handler=preview)

    p = commands.add_parser("crd", help="print a CustomResourceDefinition")
    p.add_argument(
        "kind",
        nargs="?",
        default=KIND,
        metavar="KIND",
        help=f"which: {KIND} (default), Calendar or Backfill",
    )
    p.set_defaults(handler=print_crd)

    p = commands.add_parser("run", help="run the operator")
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        dest="namespaces",
        help="watch only this namespace (repeatable); default: all",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or $KUBECONFIG)")
    p.add_argument(
        "--webhook-port",
        type=int,
        default=None,
        help="serve the validating admission webhook on this port",
    )
    # In a pod the webhook must listen on the pod IP, reached through its Service.
    p.add_argument("--webhook-addr", default="0.0.0.0", help="webhook listen address")  # noqa: S104
    p.add_argument(
        "--webhook-host",
        default=None,
        help="host name the API server uses to reach the webhook (with --webhook-manage)",
    )
    p.add_argument("--webhook-cert", default=None, help="webhook serving certificate (PEM)")
    p.add_argument("--webhook-key", default=None, help="webhook serving key (PEM)")
    p.add_argument(
        "--webhook-ca", default=None, help="CA bundle for the webhook (default: the certificate)"
    )
    p.add_argument(
        "--webhook-manage",
        metavar="NAME",
        default=None,
        help="create and update ValidatingWebhookConfiguration NAME (development, tests)",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a coordination.k8s.io Lease; only the holder creates Jobs and writes status",
    )
    p.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    p.add_argument("--leader-election-name", default="nightshift", help="name of the Lease")
    p.add_argument(
        "--shards",
        type=_shard_count,
        default=1,
        metavar="S",
        help="split the tasks into S shards (1-256), each held through a Lease of its own "
        "(<lease name>-shard-<i>, in the leader-election namespace); every replica takes a fair "
        "share. 1 (default): one Lease, held with --leader-elect",
    )
    p.add_argument(
        "--shard-filter",
        choices=["auto", "shardSelector", "label"],
        default="auto",
        help="how a shard's tasks are selected: by the API server's shardSelector (Kubernetes "
        "1.36+, feature gate ShardedListAndWatch) or by the nightshift.dev/shard-bucket label "
        "(which the operator sets); auto (default): shardSelector where the API server filters "
        "by it",
    )
    p.add_argument(
        "--min-interval",
        type=_duration,
        default=timedelta(minutes=1),
        metavar="DURATION",
        help="the shortest interval (or cron gap) a task may have: shorter ones are refused at "
        "admission and get no Jobs (default 1m)",
    )
    p.add_argument(
        "--exclude-namespace",
        dest="exclude_namespaces",
        action="append",
        metavar="NAMESPACE",
        help="a namespace whose tasks get no Jobs (refused at admission, Ready=False with reason "
        "NamespaceExcluded); repeat for several (the chart passes kube-system and its own)",
    )
    p.add_argument(
        "--max-template-bytes",
        type=_positive,
        default=64 * 1024,
        metavar="BYTES",
        help="the largest spec.jobTemplate (compact JSON) a task may have (default 65536)",
    )
    p.add_argument(
        "--pod-security-default",
        choices=["privileged", "baseline", "restricted"],
        default="baseline",
        help="the Pod Security level Jobs are held to in a namespace without the label "
        "pod-security.kubernetes.io/enforce (default baseline)",
    )
    p.add_argument(
        "--pod-security",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold Jobs to their namespace's Pod Security level and ServiceAccount allowlist "
        "(reads namespaces); --no-pod-security leaves that to the cluster (default: on)",
    )
    p.add_argument(
        "--check-job-access",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the webhook refuses a task's spec from a user who may not create Jobs in its "
        "namespace (a SubjectAccessReview; default: on)",
    )
    p.add_argument(
        "--api-qps",
        type=float,
        default=100.0,
        help="writes per second to the API server, sustained (Job creates and deletes, status, "
        "Events; not the Lease); 0: no limit (default 100)",
    )
    p.add_argument(
        "--api-burst",
        type=_positive,
        default=1000,
        help="writes at once above --api-qps (default 1000: a thousand Jobs due together)",
    )
    p.add_argument("--health-port", type=int, default=8080, help="liveness/readiness port")
    p.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port")
    p.add_argument(
        "--metrics-secure",
        action="store_true",
        help="serve /metrics over TLS, only to a bearer token that the API server authenticates "
        "(TokenReview) and allows to get the non-resource URL /metrics (SubjectAccessReview); "
        "default: plain HTTP to anyone",
    )
    p.add_argument(
        "--metrics-cert",
        default=None,
        help="serving certificate for --metrics-secure (PEM; default: --webhook-cert)",
    )
    p.add_argument(
        "--metrics-key",
        default=None,
        help="serving key for --metrics-secure (PEM; default: --webhook-key)",
    )
    p.add_argument("--log-format", choices=["plain", "json"], default="plain")
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(handler=run_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nightshift`` console script."""
    args = _parser().parse_args(argv)
    if getattr(args, "count", 1) is not None and getattr(args, "count", 1) < 1:
        print("nightshift: --count must be at least 1", file=sys.stderr)
        return 2
    try:
        code: int = args.handler(args, sys.stdout, sys.stdin)
    except (UsageError, SpecError) as error:
        print(error, file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

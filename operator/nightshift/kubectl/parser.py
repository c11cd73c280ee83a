"""The command line of ``kubectl nightshift``: the parser, its help texts, and ``main``.

``main`` is the ``kubectl-nightshift`` console script, so ``kubectl nightshift ...`` finds it on
$PATH. Usage errors exit 2 (argparse's convention); expected failures print one ``Error: ...``
line and exit 1. docs/cli.md quotes the help texts (hack/gen_cli_docs.py, ``make verify``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from nightshift import __version__
from nightshift.durations import DurationError, parse_duration
from nightshift.kubectl.commands import (
    cmd_backfill,
    cmd_history,
    cmd_list,
    cmd_logs,
    cmd_next,
    cmd_resume,
    cmd_run,
    cmd_status,
    cmd_suspend,
)
from nightshift.kubectl.render import OUTPUTS, TerminalSafe
from nightshift.kubectl.session import PluginError, SecretFiles, with_session
from nightshift.kubectl.ui import cmd_ui
from nightshift.models import parse_time

__all__ = ["PROG", "build_parser", "help_texts", "main", "parse_args"]

PROG = "kubectl nightshift"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; a fixed width so --help (and docs/cli.md, which
    quotes it) does not depend on the terminal."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
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
            help="every namespace (list; ui: the namespace shown first)",
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
  kubectl nightshift backfill backup --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z
  kubectl nightshift ui
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
nightshift.dev/suspend-reason annotation. A task that suspended itself under
spec.failurePolicy (status.suspendedByPolicy) is resumed too: the plugin sets the
nightshift.dev/resume annotation with a fresh token, who you are (as the API server's
SelfSubjectReview says, else the kubeconfig user) and --note, and the operator records
them in status.lastResume and counts failures afresh. The next run is the first slot after
now; the slots that passed while the task was suspended are not run.""",
        examples="""\
  kubectl nightshift resume backup
  kubectl nightshift resume backup --note "rotated the expired token, INC-4711"
  kubectl nightshift -n prod resume backup""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument("--note", metavar="TEXT", help="why, recorded in status.lastResume")
    _add_globals(p, suppress=True)
    p.set_defaults(handler=cmd_resume)

    p = sub["next"] = _command(
        commands,
        "next",
        summary="print a task's upcoming fire times",
        description="""\
Print the next fire times of TASK, computed locally from its spec as stored in the cluster
(cron, several schedules, interval or one-shot, time zone with DST, startAt/endAt, jitter and
maxRuns), in the task's time zone and in UTC: the function the operator uses for
status.nextScheduleTimes and nightshift preview uses too, skipping what the task's calendar
and spec.exclude exclude. With several schedules a SCHEDULES column says which entries each
time comes from (a time two entries share runs once). The operator is not involved, so this
works while it is down; a difference from status.nextScheduleTimes is noted. A suspended
task (by spec.suspend or its failure policy) is noted on standard error: the times apply
once it is resumed. Retries
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
Show the runs of TASK as the operator records them in status: a run that concurrencyPolicy
Queue holds back (Queued: no Job yet, it starts when the active run ends), attempts that are
running (Held: the Job exists but a queue such as Kueue keeps it suspended) or waiting to be
retried first, then the finished attempts kept in status.runs (newest first, as many as
spec.history keeps), then the runs of the task's Backfills, each under its name. Each row
has the run's identity (its slot time in UTC, or manual-<hash> for a run-now request), the
attempt, the result, the container's exit code, when the attempt started, how long it took
and its termination message (cut to 60 characters in the table; -o json and -o yaml show
everything).""",
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
and --attempt one of its attempts (default: the latest). The pod is one with the
batch.kubernetes.io/job-name label of the attempt's Job that this Job controls (its
ownerReference names the Job's uid), so a log is there only while the Job and its pod exist
(spec.history decides how many finished Jobs are kept). Which pod, Job, run and attempt were
chosen is printed on standard error. Terminal control sequences in the log (colours
included) are removed unless --raw is given.""",
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
    p.add_argument(
        "--raw",
        action="store_true",
        help="print the log as written, terminal control sequences included",
    )
    _add_globals(p, suppress=True)
    p.set_defaults(handler=cmd_logs)

    p = sub["backfill"] = _command(
        commands,
        "backfill",
        summary="run a task's past slots it did not run (or run them again)",
        description="""\
Create a Backfill: run the slots of TASK's schedule in [--from, --to) that it did not run
(--reprocess Missing, the default), that did not succeed (Failed), or all of them (All),
as the task's own runs. What counts as done is read from the task's Jobs, its history
(status.runs) and its other Backfills. A slot that never ran gets the very Job name the
schedule would have used; a re-run gets the next attempt number. The runs follow the task's
jobTemplate, timeout and retry policy, at most --parallelism at once, and (--overlap Wait)
only while none of the task's own runs is active. Slots after the task's last handled slot
are left to its schedule. --dry-run prints the plan (each slot: run or skip, and why) and
runs nothing. --wait follows the runs with a progress bar on standard error and exits 0
if every run succeeded, 1 otherwise. kubectl nightshift history TASK lists the runs under
the Backfill's name.""",
        examples="""\
  kubectl nightshift backfill backup --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z --dry-run
  kubectl nightshift backfill backup --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z \\
      --reprocess Failed --parallelism 3 --wait
  kubectl get backfills""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    p.add_argument(
        "--from", dest="start", type=_time, required=True, metavar="RFC3339",
        help="the start of the range (included), e.g. 2026-11-01T00:00:00Z",
    )  # fmt: skip
    p.add_argument(
        "--to", dest="end", type=_time, required=True, metavar="RFC3339",
        help="the end of the range (excluded)",
    )  # fmt: skip
    p.add_argument(
        "--reprocess",
        choices=["Missing", "Failed", "All"],
        default="Missing",
        help="which slots run (default Missing)",
    )
    p.add_argument(
        "--parallelism", type=_positive, default=1, metavar="N", help="runs at once (default 1)"
    )
    p.add_argument(
        "--overlap",
        choices=["Wait", "Allow"],
        default="Wait",
        help="Wait (default): start only while the task runs nothing itself; Allow: regardless",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    p.add_argument("--wait", action="store_true", help="follow the runs to the end")
    p.add_argument(
        "--timeout",
        type=_duration,
        default=timedelta(hours=1),
        metavar="DURATION",
        help="how long --wait (or --dry-run) waits (default 1h)",
    )
    p.add_argument("--name", metavar="NAME", help="the Backfill's name (default: TASK-<random>)")
    _add_globals(p, suppress=True, output=True)
    p.set_defaults(handler=cmd_backfill)

    p = sub["status"] = _command(
        commands,
        "status",
        summary="show a task's state: conditions, suspension, deadlines, notifications",
        description="""\
Show how TASK is doing, as the operator last wrote it in status: the schedule and the next
fire times (status.nextScheduleTimes), every condition (Ready, Suspended, Running, Failing,
Completed, and Late with spec.deadline, Notified with spec.notify), a suspension by its
failure policy and how to resume it, the last resume (who and why), and the notifications
not yet delivered (which sinks, how many failed attempts, when the next one is, the last
error).""",
        examples="""\
  kubectl nightshift status backup
  kubectl nightshift status backup -o json | jq '.conditions'""",
    )
    p.add_argument("task", metavar="TASK", help="the ScheduledTask's name")
    _add_globals(p, suppress=True, output=True)
    p.set_defaults(handler=cmd_status)

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

    p = sub["ui"] = _command(
        commands,
        "ui",
        summary="serve a web view of tasks, their timeline and runs",
        description="""\
Serve a web page of the tasks you may list: an overview (schedule, next fire, last
result, recent runs; filter by namespace and label), a timeline of past runs and future
fires, and a page per task (spec, conditions, runs, Events, the last run's log, the next
10 fire times) with Run now, Suspend and Resume. Every request is made with your kubeconfig
and context, so the API server's RBAC decides what you see and may do. The page updates
live from watches. It listens on 127.0.0.1 only, on a free port unless --port is given,
and prints a link that carries an access token. Credentials stay in memory, never on
disk, and nothing of the kubeconfig reaches the page. Ctrl-C stops it. -n or -A choose
the namespace shown first (default: all namespaces if you may list them, else the
context's).""",
        examples="""\
  kubectl nightshift ui
  kubectl nightshift ui --port 8090 --open
  kubectl nightshift ui -n prod""",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="PORT",
        help="the port to listen on (default: a free one, printed)",
    )
    p.add_argument(
        "--address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address to listen on (default 127.0.0.1; any other is warned about)",
    )
    p.add_argument("--open", action="store_true", help="open the page in your web browser")
    _add_globals(p, suppress=True, all_namespaces=True)
    # A long-running process: certificates from the kubeconfig stay in memory (SecretFiles).
    p.set_defaults(handler=cmd_ui, keep_secrets_in_memory=True)
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
    if args.all_namespaces and command not in ("list", "ui"):
        sub[command].error("-A/--all-namespaces only applies to list and ui")
    if args.output != "table" and command not in (
        "run",
        "next",
        "history",
        "list",
        "backfill",
        "status",
    ):
        sub[command].error(f"-o/--output is not supported by {command}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubectl-nightshift`` console script."""
    args = parse_args(argv)
    # Whatever the commands print may quote server text (messages, names, errors): nothing of
    # it may reach the terminal as a control sequence (render.terminal_safe).
    out, err = TerminalSafe(sys.stdout), TerminalSafe(sys.stderr)
    secret_files = SecretFiles() if getattr(args, "keep_secrets_in_memory", False) else None
    if secret_files is not None and secret_files.warning:
        err.write(f"warning: {secret_files.warning}\n")
    try:
        code: int = with_session(
            args,
            lambda session: args.handler(args, session, out, err),
            secret_files=secret_files,
        )
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
    finally:
        if secret_files is not None:
            secret_files.close()
    return code

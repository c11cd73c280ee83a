"""What ``kubectl nightshift`` prints: tables, history rows, fire times and the progress of a run.

Everything here is pure: it turns a task object or its status (plain dicts, as the API returns
them) into text, and reads no clock of its own.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TextIO

import yaml

from nightshift.durations import format_duration
from nightshift.models import SpecError, parse_spec, read_time
from nightshift.schedule import describe, format_fire_time

__all__ = [
    "ANNOTATION_SUSPEND_REASON",
    "HISTORY_HEADERS",
    "MESSAGE_WIDTH",
    "OUTPUTS",
    "PLAN_HEADERS",
    "RunProgress",
    "TerminalSafe",
    "attempt_line",
    "backfill_rows",
    "emit",
    "fire_time_text",
    "format_run_duration",
    "history_rows",
    "list_table",
    "one_line",
    "plan_rows",
    "progress_bar",
    "progress_text",
    "render_table",
    "result_line",
    "run_progress",
    "status_text",
    "status_view",
    "task_row",
    "terminal_safe",
]

# Where ``suspend --reason`` records why (``kubectl describe`` shows annotations). Here, with the
# other pure definitions, so that the web UI's pure views can read it too.
ANNOTATION_SUSPEND_REASON = "nightshift.dev/suspend-reason"
OUTPUTS = ("table", "json", "yaml")
MESSAGE_WIDTH = 60
HISTORY_HEADERS = ("RUN", "ATTEMPT", "RESULT", "EXIT", "STARTED", "DURATION", "MESSAGE")


# --- terminal control characters -----------------------------------------------------------------
#
# Much of what the plugin prints was written by someone else: termination messages, condition
# messages, annotation values, names, error messages that quote a spec. A terminal obeys the
# control characters in it: ESC starts sequences that move the cursor, clear or retitle the
# window, hide text, or (OSC 52) write the clipboard; C1 characters (U+0080-U+009F, such as U+009B,
# a one-character CSI) do the same on terminals that honour them. So none of them reaches the
# terminal: whole escape sequences go (so "\x1b[31mfailed" reads "failed"), then every other C0
# control but tab and newline, DEL and every C1 control. A carriage return becomes a newline: on its
# own it would let a later text overwrite an earlier one on the same line.

_ESCAPE_SEQUENCE = re.compile(
    r"""
    (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?  # CSI: cursor, erase, colours
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])              # OSC, DCS, SOS, PM, APC ...
      [^\x07\x1b\x9c\n]* (?:\x07|\x1b\\|\x9c)?             # ... to the terminator or line end
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                       # any other escape sequence
    """,
    re.VERBOSE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` without terminal escape sequences and control characters, tab and newline
    excepted; carriage returns become newlines."""
    if text.isprintable():
        return text  # the common case: nothing to do (newlines and tabs are not "printable")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


class TerminalSafe(io.TextIOBase):
    """A text stream that writes everything through :func:`terminal_safe` to ``stream``.

    ``kubectl nightshift`` prints through two of these, so no message, note or error (whatever
    server text it quotes) can carry control characters to the terminal; ``unfiltered`` is the
    stream itself, for ``logs --raw``.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.unfiltered = stream

    def write(self, text: str) -> int:
        self.unfiltered.write(terminal_safe(text))
        return len(text)

    def flush(self) -> None:
        self.unfiltered.flush()

    def isatty(self) -> bool:
        return self.unfiltered.isatty()

    def writable(self) -> bool:
        return True


class _YamlDumper(yaml.SafeDumper):
    """PyYAML writes U+0085 (a C1 control, NEL) and other C1 characters as they are inside
    plain and single-quoted scalars; this dumper double-quotes such a string, where they are
    escaped (``\\N``, ``\\x9B``), so the YAML output stays exact and safe for a terminal."""

    def analyze_scalar(self, scalar: str) -> Any:
        analysis = super().analyze_scalar(scalar)
        if _CONTROL.search(scalar):
            analysis.allow_flow_plain = analysis.allow_block_plain = False
            analysis.allow_single_quoted = analysis.allow_block = False
        return analysis


def emit(out: TextIO, fmt: str, data: Any, table: Callable[[], str]) -> None:
    """Write ``data`` as JSON or YAML, or the table ``table()`` renders (one of OUTPUTS).

    JSON and YAML stay exact: their strings carry control characters only as escapes (JSON
    escapes every non-ASCII character, YAML's control characters are double-quoted escapes)."""
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        out.write(yaml.dump(data, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True))
    else:
        out.write(table())


def format_run_duration(started: Any, finished: Any) -> str:
    """``1m5s`` between two status timestamps (whole seconds), or ``-`` when one is missing."""
    begin, end = read_time(started), read_time(finished)
    if begin is None or end is None:
        return "-"
    seconds = max(0, round((end - begin).total_seconds()))
    return format_duration(timedelta(seconds=seconds))


def one_line(text: Any, width: int | None = None) -> str:
    """``text`` on one line (whitespace collapsed, control characters removed), cut to
    ``width`` characters with ``...``."""
    if text is None:
        return ""
    flat = " ".join(terminal_safe(str(text)).split())
    if width is not None and len(flat) > width:
        return flat[: max(0, width - 3)] + "..."
    return flat


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A kubectl-style table: left-aligned columns three spaces apart, no trailing blanks.

    A cell is one line without control characters (they would break the columns, or worse)."""
    rows = [[one_line(cell) for cell in row] for row in rows]
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


def fire_time_text(moment: datetime, zone: tzinfo) -> str:
    """A fire time in ``zone`` as ``next`` prints it; the UTC column ends in ``Z``."""
    text = format_fire_time(moment, zone)
    return text.replace("+00:00", "Z") if zone is UTC else text


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
        "suspendedByPolicy": bool(status.get("suspendedByPolicy")),
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
            "policy" if row.get("suspendedByPolicy") else ("true" if row["suspend"] else "false"),
            str(row["active"]),
            _text(row["next"]),
            _text(row["lastResult"]),
        ]
        if all_namespaces:
            line.insert(0, _text(row["namespace"]))
        cells.append(line)
    return render_table(headers, cells)


def status_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``status`` shows of a task: its state, and how it is looking after itself."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return {
        "task": meta.get("name"),
        "namespace": meta.get("namespace"),
        "schedule": task_row(obj)["schedule"],
        "suspend": bool((obj.get("spec") or {}).get("suspend", False)),
        "nextScheduleTimes": status.get("nextScheduleTimes") or [],
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
        ],
        "consecutiveFailures": status.get("consecutiveFailures") or 0,
        "suspendedByPolicy": status.get("suspendedByPolicy"),
        "lastResume": status.get("lastResume"),
        # Two kinds of waiting: a run concurrencyPolicy Queue holds back (no Job yet), and
        # active runs whose Jobs a queue such as Kueue holds suspended.
        "queued": status.get("queued"),
        "held": [a.get("job") for a in status.get("active") or [] if a.get("queued")],
        "notifications": status.get("notifications") or [],
    }


def status_text(view: Mapping[str, Any], *, width: int | None = MESSAGE_WIDTH * 2) -> str:
    """The ``status`` view as text: a few labelled lines, then tables."""
    lines = [
        f"Task:          {view['namespace']}/{view['task']}",
        f"Schedule:      {view['schedule']}"
        + ("  (spec.suspend: true)" if view["suspend"] else ""),
        f"Next:          {', '.join(view['nextScheduleTimes']) or '-'}",
    ]
    paused = view.get("suspendedByPolicy")
    if paused:
        lines.append(
            f"Suspended by its failure policy since {paused.get('since')}: "
            f"{one_line(paused.get('message'), width)}"
        )
        lines.append(f"  resume with: kubectl nightshift resume {view['task']} --note TEXT")
    queued = view.get("queued")
    if queued:
        lines.append(
            f"Queued:        run {queued.get('run')} since {queued.get('queuedAt')}: waits for "
            "the active run to end (concurrencyPolicy Queue)"
        )
    if view.get("held"):
        lines.append(
            f"Held:          Job {', '.join(view['held'])}: suspended until its queue "
            "(e.g. Kueue) admits it; counted as active"
        )
    resumed = view.get("lastResume")
    if resumed:
        who = f" by {resumed['by']}" if resumed.get("by") else ""
        note = f": {one_line(resumed['note'], width)}" if resumed.get("note") else ""
        lines.append(f"Last resumed:  {resumed.get('at')}{who}{note}")
    text = "\n".join(lines) + "\n"
    if view["conditions"]:
        rows = [
            [
                _text(c["type"]),
                _text(c["status"]),
                _text(c["reason"]),
                one_line(c["message"], width),
            ]
            for c in view["conditions"]
        ]
        text += "\nConditions:\n" + render_table(("TYPE", "STATUS", "REASON", "MESSAGE"), rows)
    owed = view["notifications"]
    if owed:
        rows = [
            [
                _text(n.get("change")),
                _text(n.get("run")),
                ",".join(n.get("sinks") or []) or "-",
                str(n.get("failures") or 0),
                _text(n.get("notBefore")),
                one_line(n.get("lastError"), MESSAGE_WIDTH),
            ]
            for n in owed
        ]
        headers = ("CHANGE", "RUN", "SINKS", "FAILURES", "NEXT ATTEMPT", "LAST ERROR")
        text += "\nNotifications not yet delivered:\n" + render_table(headers, rows)
    return text


def _detail(record: Mapping[str, Any]) -> str | None:
    """The termination message; else the Job's reason, unless it merely says it succeeded."""
    if record.get("message"):
        return str(record["message"])
    if record.get("result") == "Succeeded":
        return None
    return record.get("reason")


def history_rows(
    status: Mapping[str, Any], now: datetime, *, width: int | None = MESSAGE_WIDTH
) -> list[list[str]]:
    """Rows for ``history``: the run concurrencyPolicy Queue holds back, running (or held)
    attempts, retries waiting, then status.runs (newest first)."""
    rows: list[list[str]] = []
    queued = status.get("queued")
    if queued:
        # concurrencyPolicy Queue: a run with no Job yet, waiting for the active run to end.
        rows.append(
            [
                _text(queued.get("run")),
                "1",
                "Queued",
                "-",
                "-",
                "-",
                one_line(
                    f"waits for the active run to end (concurrencyPolicy Queue), since "
                    f"{_text(queued.get('queuedAt'))}",
                    width,
                ),
            ]
        )
    for active in status.get("active") or []:
        started = active.get("startedAt")
        running_for = format_run_duration(started, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        held = bool(active.get("queued"))
        rows.append(
            [
                _text(active.get("run")),
                _text(active.get("attempt")),
                # Held by a queue such as Kueue (status.active[].queued): an active run whose
                # Job exists but is suspended until the queue admits it. Not "Queued", which is
                # a run that concurrencyPolicy Queue holds back before any Job exists.
                "Held" if held else "Running",
                "-",
                _text(started),
                running_for if running_for == "-" else running_for + "+",
                one_line(
                    f"Job {active.get('job')}"
                    + (" (suspended until its queue admits it)" if held else ""),
                    width,
                ),
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


# --- backfills ------------------------------------------------------------------------------------

PLAN_HEADERS = ("SLOT", "ACTION", "ATTEMPT", "REASON")
_BAR_DONE, _BAR_RUN, _BAR_LEFT = "#", ">", "."


def progress_bar(status: Mapping[str, Any], width: int = 30) -> str:
    """``[#########>>>.........] 12/31 slots: 11 succeeded, 0 failed, 1 skipped, 2 running``."""
    total = int(status.get("total") or 0)
    running = int(status.get("running") or 0)
    done = sum(int(status.get(k) or 0) for k in ("succeeded", "failed", "skipped"))
    if total:
        full = round(width * done / total)
        going = min(width - full, round(width * running / total))
    else:
        full, going = 0, 0
    bar = _BAR_DONE * full + _BAR_RUN * going + _BAR_LEFT * (width - full - going)
    return f"[{bar}] {progress_text(status)}"


def progress_text(status: Mapping[str, Any]) -> str:
    """``12/31 slots: 11 succeeded, 0 failed, 1 skipped, 2 running``."""
    total = int(status.get("total") or 0)
    counts = [int(status.get(k) or 0) for k in ("succeeded", "failed", "skipped", "running")]
    succeeded, failed, skipped, running = counts
    done = succeeded + failed + skipped
    return (
        f"{done}/{total} slots: {succeeded} succeeded, {failed} failed, {skipped} skipped, "
        f"{running} running"
    )


def plan_rows(status: Mapping[str, Any], *, width: int | None = MESSAGE_WIDTH) -> list[list[str]]:
    """Rows of a Backfill's plan (a dry run): each slot, whether it runs, and why not."""
    rows = []
    for slot in status.get("slots") or []:
        runs = slot.get("state") != "Skipped"
        rows.append(
            [
                _text(slot.get("run")),
                "run" if runs else "skip",
                _text(slot.get("firstAttempt")) if runs else "-",
                one_line(slot.get("reason"), width) if not runs else "",
            ]
        )
    return rows


def backfill_rows(
    status: Mapping[str, Any], now: datetime, *, width: int | None = MESSAGE_WIDTH
) -> list[list[str]]:
    """History rows (HISTORY_HEADERS) of a Backfill's runs: the slots that ran or run now."""
    rows: list[list[str]] = []
    for slot in reversed(status.get("slots") or []):  # newest first, as status.runs
        state = slot.get("state")
        if state in ("Pending", "Skipped"):
            continue
        started = slot.get("startedAt")
        if state == "Running":
            took = format_run_duration(started, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
            duration = took if took == "-" else took + "+"
            detail = f"Job {slot.get('job')}"
        elif state == "RetryPending":
            duration, detail = "-", f"retry not before {slot.get('notBefore')}"
        else:
            duration = format_run_duration(started, slot.get("finishedAt"))
            detail = _detail({"message": slot.get("message"), **slot}) or ""
        result = state if state in ("Running", "RetryPending") else slot.get("result") or state
        rows.append(
            [
                _text(slot.get("run")),
                _text(slot.get("attempt")),
                _text(result),
                _text(slot.get("exitCode")),
                _text(started),
                duration,
                one_line(detail, width),
            ]
        )
    return rows

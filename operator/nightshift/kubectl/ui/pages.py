"""The UI's pages: the overview, the timeline and a task, each as controls and a content part.

The server reads what a page needs from the API and hands it here with the errors it got; each
function returns :class:`~.html.Html` for the frame (``frame.page``) or, for a live update, the
content part alone. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from nightshift.durations import format_duration
from nightshift.kubectl.render import HISTORY_HEADERS, history_rows
from nightshift.kubectl.ui.chart import TimelineEntry, legend, timeline_rows
from nightshift.kubectl.ui.clock import UTC_ZONE, short_text, utc_text
from nightshift.kubectl.ui.frame import (
    Problem,
    badges,
    filter_form,
    hidden,
    problem_of,
    result_of,
    section,
    table,
    task_path,
    time_of,
    zone_select,
)
from nightshift.kubectl.ui.html import Child, Html, join, tag
from nightshift.kubectl.ui.query import Filter, Span, ZoneChoice
from nightshift.kubectl.ui.timeline import Window
from nightshift.kubectl.ui.views import EventRow, TaskView, spec_summary
from nightshift.models import read_time
from nightshift.schedule import format_fire_time

__all__ = [
    "LogView",
    "TaskPage",
    "overview_content",
    "overview_controls",
    "task_content",
    "task_controls",
    "timeline_content",
    "timeline_controls",
]

_BACK_CHOICES = ("1h", "6h", "1d", "3d", "7d")  # as format_duration writes them
_AHEAD_CHOICES = ("0s", "1h", "6h", "1d", "3d", "7d")


# --- overview -------------------------------------------------------------------------------------


def _streak(view: TaskView, zone: ZoneInfo) -> Html:
    dots = []
    for item in view.streak:
        title = f"{item.result}: run {item.run}"
        if item.attempts > 1:
            title += f" after {item.attempts} attempts"
        if item.when is not None:
            title += f", {short_text(item.when, zone)}"
        dots.append(
            tag(
                "span",
                {
                    "class_": f"dot result-{item.result}"
                    + (" retried" if item.attempts > 1 else ""),
                    "title": title,
                    "data-result": item.result,
                },
            )
        )
    if not dots:
        return tag("span", {"class_": "none"}, "no runs yet")
    return tag("span", {"class_": "streak", "role": "img", "aria-label": "recent runs"}, dots)


def overview_content(
    views: Sequence[TaskView], problem: Problem | None, flt: Filter, zone: ZoneChoice
) -> Html:
    """The task table: schedule, next fire, last result and the streak of recent runs."""
    if problem is not None:
        return problem_of(problem)
    if not views:
        where = f'namespace "{flt.namespace}"' if flt.namespace else "any namespace"
        labels = f" with labels {flt.labels}" if flt.labels else ""
        return tag("p", {"class_": "empty"}, f"No ScheduledTasks in {where}{labels}.")
    rows = []
    for view in views:
        shown = zone.zone(view.zone)
        failures = (
            tag("span", {"class_": "failures"}, f"{view.failures} in a row")
            if view.failures > 1
            else None
        )
        rows.append(
            tag(
                "tr",
                {"data-task": view.key},
                tag("td", {}, view.namespace),
                tag(
                    "td",
                    {},
                    tag("a", {"href": task_path(view.namespace, view.name)}, view.name),
                    " ",
                    badges(view),
                ),
                tag("td", {"class_": "schedule"}, view.schedule),
                tag("td", {}, time_of(view.next_fire, shown, short=True)),
                tag("td", {}, result_of(view.last_result), " ", failures),
                tag("td", {}, _streak(view, shown)),
            )
        )
    head = tag(
        "tr",
        {},
        [
            tag("th", {"scope": "col"}, h)
            for h in ("Namespace", "Task", "Schedule", "Next fire", "Last result", "Recent runs")
        ],
    )
    return tag(
        "table",
        {"class_": "tasks"},
        tag("thead", {}, head),
        tag("tbody", {}, rows),
    )


def overview_controls(flt: Filter, zone: ZoneChoice) -> Html:
    """The overview's form: the namespace and label filter."""
    return filter_form("/", flt, keep=hidden(zone.params()))


# --- timeline -------------------------------------------------------------------------------------


def timeline_content(
    entries: Sequence[TimelineEntry],
    problem: Problem | None,
    window: Window,
    now: datetime,
    zone: ZoneInfo,
) -> Html:
    """The timeline page's content: the window's heading, the rows and the legend."""
    if problem is not None:
        return problem_of(problem)
    heading = tag(
        "p",
        {"class_": "window"},
        time_of(window.start, zone),
        " → ",
        time_of(window.end, zone),
    )
    if not entries:
        return join(heading, tag("p", {"class_": "empty"}, "No ScheduledTasks to show."))
    return join(heading, timeline_rows(entries, window, now, zone), legend())


def timeline_controls(flt: Filter, span: Span, zone: ZoneChoice, zones: Sequence[str]) -> Html:
    """The timeline's form: the filter, the window and the zone."""

    def choice(name: str, values: Sequence[str], current: str) -> Html:
        options = list(values) if current in values else [*values, current]
        return tag(
            "select",
            {"name": name, "class_": "autosubmit"},
            [tag("option", {"value": v, "selected": v == current}, v) for v in options],
        )

    extra = join(
        tag("label", {}, "Back ", choice("back", _BACK_CHOICES, format_duration(span.back))),
        tag("label", {}, "Ahead ", choice("ahead", _AHEAD_CHOICES, format_duration(span.ahead))),
        zone_select(zone, zones, task=False),
    )
    return filter_form("/timeline", flt, extra)


# --- a task ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogView:
    """The last run's log, or why there is none."""

    source: str | None  # which pod, Job, run and attempt
    text: str | None
    problem: Problem | None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """Everything the task page shows; the parts that failed to load carry a Problem."""

    view: TaskView
    events: Sequence[EventRow] | Problem
    log: LogView
    may_patch: bool | None  # None: the server could not say
    patch_reason: str
    window: Window
    fires: tuple[datetime, ...]  # enough for the timeline's window


def _action(label: str, action: str, view: TaskView, confirm: str, page_: TaskPage) -> Html:
    denied = page_.may_patch is False
    title = (
        f"You may not patch scheduledtasks in namespace {view.namespace}"
        + (f" ({page_.patch_reason})" if page_.patch_reason else "")
        if denied
        else None
    )
    return tag(
        "button",
        {
            "type": "button",
            "class_": "action" + (" primary" if action == "run" else ""),
            "data-action": action,
            "data-url": f"{task_path(view.namespace, view.name)}/{action}",
            "data-confirm": confirm,
            "disabled": denied,
            "title": title,
        },
        label,
    )


def _condition_class(condition: Mapping[str, Any]) -> str:
    """``good`` or ``bad`` where a condition's status says so (Failing=True is bad)."""
    kind, status = condition.get("type"), condition.get("status")
    if kind == "Ready":
        return "good" if status == "True" else "bad"
    if kind == "Failing" and status == "True":
        return "bad"
    return ""


def task_content(task: TaskPage, now: datetime, zone: ZoneChoice) -> Html:
    """The task page's content: head and actions, spec, conditions, timeline, fire times, runs,
    Events and the last run's log."""
    view = task.view
    shown = zone.zone(view.zone)
    key = f"{view.namespace}/{view.name}"
    actions = [
        _action("Run now", "run", view, f"Run {key} now, once?", task),
        _action("Resume", "resume", view, f"Resume scheduling {key}?", task)
        if view.suspended
        else _action("Suspend", "suspend", view, f"Suspend {key}? Active runs continue.", task),
    ]
    denied = None
    if task.may_patch is False:
        denied = tag(
            "p",
            {"class_": "denied"},
            f"You may look at this task but not change it: RBAC does not allow you to patch "
            f"scheduledtasks in namespace {view.namespace}.",
        )
    head = tag(
        "div",
        {"class_": "task-head"},
        tag("h1", {}, tag("small", {}, view.namespace, " / "), view.name, " ", badges(view)),
        tag("div", {"class_": "actions"}, actions),
        denied,
    )
    if view.suspend_reason:
        head = join(head, tag("p", {"class_": "reason"}, f"Suspended: {view.suspend_reason}"))
    if view.problem:
        head = join(head, tag("p", {"class_": "error"}, view.problem))

    summary = (
        tag(
            "dl",
            {"class_": "spec"},
            [
                join(tag("dt", {}, k), tag("dd", {}, v))
                for k, v in spec_summary(view.spec, view.status)
            ],
        )
        if view.spec is not None
        else tag("p", {"class_": "error"}, view.problem or "the spec cannot be read")
    )

    conditions = view.conditions()
    condition_table = (
        table(
            ("Type", "Status", "Reason", "Message", "Since"),
            [
                (
                    c.get("type"),
                    tag("span", {"class_": f"cond {_condition_class(c)}"}, c.get("status")),
                    c.get("reason") or "",
                    c.get("message") or "",
                    time_of(read_time(c.get("lastTransitionTime")), shown),
                )
                for c in conditions
            ],
            "conditions",
        )
        if conditions
        else tag("p", {"class_": "empty"}, "No conditions yet (has the operator seen it?).")
    )

    task_zone = view.zone or UTC_ZONE
    zones = [task_zone] + ([shown] if shown.key != task_zone.key else [])
    fire_rows = [
        [tag("time", {"datetime": utc_text(t)}, format_fire_time(t, z)) for z in zones]
        + [tag("span", {"class_": "utc"}, format_fire_time(t, UTC).replace("+00:00", "Z"))]
        for t in view.fires
    ]
    fire_headers = [f"Task's zone ({task_zone.key})"]
    if len(zones) > 1:
        fire_headers.append(f"Shown in ({shown.key})")
    fire_headers.append("UTC")
    fires = (
        table(fire_headers, fire_rows, "fires")
        if fire_rows
        else tag("p", {"class_": "empty"}, "No upcoming fire times.")
    )
    if view.suspended and fire_rows:
        fires = join(tag("p", {"class_": "note"}, "Suspended: these apply once resumed."), fires)

    run_rows: list[list[Child]] = []
    for row in history_rows(view.status, now, width=None):
        run, attempt, result, exit_code, started, duration, message = row
        run_rows.append(
            [
                run,
                attempt,
                result_of(result),
                exit_code,
                time_of(read_time(started), shown),
                duration,
                tag("span", {"class_": "message"}, message),
            ]
        )
    runs = (
        table([h.capitalize() for h in HISTORY_HEADERS], run_rows, "runs")
        if run_rows
        else tag("p", {"class_": "empty"}, "No runs yet.")
    )

    if isinstance(task.events, Problem):
        events = problem_of(task.events)
    elif task.events:
        events = table(
            ("Type", "Reason", "Message", "Count", "Last seen"),
            [
                (
                    tag("span", {"class_": f"event-{e.type}"}, e.type),
                    e.reason,
                    e.message,
                    str(e.count),
                    time_of(e.last, shown),
                )
                for e in task.events
            ],
            "events",
        )
    else:
        events = tag("p", {"class_": "empty"}, "No Events (they expire after an hour by default).")

    log = task.log
    log_parts: list[Child] = []
    if log.source:
        log_parts.append(tag("p", {"class_": "source"}, log.source))
    if log.problem is not None:
        log_parts.append(problem_of(log.problem))
    elif log.text is not None:
        log_parts.append(
            tag("pre", {"class_": "log"}, log.text) if log.text else tag("p", {}, "(empty log)")
        )

    the_timeline = timeline_rows([TimelineEntry(view, task.fires)], task.window, now, shown)
    return join(
        head,
        tag(
            "div",
            {"class_": "grid"},
            section("Spec", summary, section_id="spec"),
            section("Conditions", condition_table, section_id="conditions"),
        ),
        section("Timeline", the_timeline, section_id="timeline"),
        section(f"Next {len(view.fires) or 10} fire times", fires, section_id="fires"),
        section("Runs", runs, section_id="runs"),
        section("Events", events, section_id="events"),
        section("Last run's log", log_parts, section_id="log"),
    )


def task_controls(flt: Filter, zone: ZoneChoice, view: TaskView | None) -> Html:
    """The task page's form: the zone times are shown in."""
    zones = [view.zone.key] if view is not None and view.zone is not None else []
    return tag(
        "form",
        {"class_": "filters", "method": "get"},
        hidden(flt.params()),
        zone_select(zone, zones, task=True),
        tag("button", {"type": "submit"}, "Show"),
    )

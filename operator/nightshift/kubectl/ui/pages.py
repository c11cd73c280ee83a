"""The UI's pages as HTML: the overview, the timeline, a task, and the frame around them.

Each page is a frame (head, navigation, its filter form, the confirmation dialog) around a
*content* part, ``<main id="content">``. Live updates fetch the content part again and swap it in,
so the forms outside it keep what the user is typing. Everything here is pure: it takes what the
server read from the API (or the error it got) and returns :class:`~.html.Html`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from nightshift.durations import format_duration
from nightshift.kubectl.render import HISTORY_HEADERS, history_rows
from nightshift.kubectl.ui.clock import UTC_ZONE, local_text, short_text, utc_text
from nightshift.kubectl.ui.html import Child, Html, join, tag
from nightshift.kubectl.ui.query import Filter, Span, ZoneChoice, link
from nightshift.kubectl.ui.timeline import LANES, Axis, Row, Window, axis, lay_out
from nightshift.kubectl.ui.views import EventRow, TaskView, spec_summary
from nightshift.models import read_time
from nightshift.schedule import format_fire_time

__all__ = [
    "RESULTS",
    "Frame",
    "LogView",
    "Problem",
    "TaskPage",
    "TimelineEntry",
    "error_content",
    "filter_form",
    "overview_content",
    "overview_controls",
    "page",
    "task_content",
    "task_controls",
    "task_path",
    "timeline_content",
    "timeline_controls",
    "timeline_rows",
]

# Every result a run record can have, plus the states of attempts not finished; the stylesheet
# gives each a colour (class ``result-<name>``) and the legend lists them in this order.
RESULTS = (
    "Succeeded",
    "Failed",
    "TimedOut",
    "Running",
    "Skipped",
    "Missed",
    "Replaced",
    "Cancelled",
)
_LANE_HEIGHT = 12
_ROW_HEIGHT = LANES * _LANE_HEIGHT + 10
_DENSE_FIRES = 60
_BACK_CHOICES = ("1h", "6h", "24h", "3d", "7d")
_AHEAD_CHOICES = ("0s", "1h", "6h", "24h", "3d", "7d")


@dataclass(frozen=True, slots=True)
class Problem:
    """An error to show in place of what could not be read, with the HTTP status it had."""

    message: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """What every page's frame needs."""

    title: str
    csrf: str
    events: str  # the URL of the page's live-update stream
    zone: ZoneChoice
    user: str | None
    nav: str  # "overview", "timeline" or "task"
    filter: Filter


def task_path(namespace: str, name: str) -> str:
    """The URL path of a task's page."""
    return f"/tasks/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _time(moment: datetime | None, zone: ZoneInfo, *, short: bool = False) -> Html:
    if moment is None:
        return tag("span", {"class_": "none"}, "-")
    text = short_text(moment, zone) if short else local_text(moment, zone)
    return tag("time", {"datetime": utc_text(moment), "title": utc_text(moment)}, text)


def _result(result: str | None) -> Html:
    if not result:
        return tag("span", {"class_": "none"}, "-")
    return tag("span", {"class_": f"result result-{result}"}, result)


def _problem(problem: Problem) -> Html:
    return tag("p", {"class_": "error", "role": "alert"}, problem.message)


# --- the frame ------------------------------------------------------------------------------------


def page(frame: Frame, controls: Child, content: Html) -> Html:
    """A whole page: the frame, the page's controls (outside the live part) and its content."""
    nav_links = [
        ("overview", "/", "Overview"),
        ("timeline", "/timeline", "Timeline"),
    ]
    nav = [
        tag(
            "a",
            {
                "href": link(path, frame.filter.params(), frame.zone.params()),
                "aria-current": "page" if frame.nav == key else None,
            },
            text,
        )
        for key, path, text in nav_links
    ]
    who = tag("span", {"class_": "who"}, f"as {frame.user}") if frame.user else None
    body = tag(
        "body",
        {
            "data-events": frame.events,
            "data-browser-zone": frame.zone.browser.key if frame.zone.browser else "",
        },
        tag(
            "header",
            {"class_": "top"},
            tag("a", {"class_": "brand", "href": "/"}, "Nightshift"),
            tag("nav", {}, nav),
            tag(
                "span",
                {"class_": "live", "id": "live", "data-state": "connecting"},
                "connecting",
            ),
            who,
        ),
        tag("div", {"id": "notice", "role": "status", "hidden": True}),
        tag("div", {"id": "problem", "role": "alert", "hidden": True}),
        tag("div", {"class_": "controls"}, controls) if controls else None,
        tag("main", {"id": "content"}, content),
        _dialog(),
    )
    head = tag(
        "head",
        {},
        tag("meta", {"charset": "utf-8"}),
        tag("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        tag("meta", {"name": "csrf-token", "content": frame.csrf}),
        tag("title", {}, f"{frame.title} · Nightshift"),
        tag("link", {"rel": "icon", "href": "/static/icon.svg", "type": "image/svg+xml"}),
        tag("link", {"rel": "stylesheet", "href": "/static/ui.css"}),
        tag("script", {"src": "/static/ui.js", "defer": True}),
    )
    return Html("<!doctype html>\n" + tag("html", {"lang": "en"}, head, body))


def _dialog() -> Html:
    return tag(
        "dialog",
        {"id": "confirm", "aria-labelledby": "confirm-text"},
        tag(
            "form",
            {"method": "dialog"},
            tag("p", {"id": "confirm-text"}),
            tag(
                "label",
                {"id": "confirm-reason-label", "hidden": True},
                "Reason (optional) ",
                tag("input", {"id": "confirm-reason", "name": "reason", "maxlength": "1000"}),
            ),
            tag(
                "div",
                {"class_": "buttons"},
                tag("button", {"value": "cancel", "id": "confirm-cancel"}, "Cancel"),
                tag("button", {"value": "ok", "id": "confirm-ok", "class_": "primary"}, "Confirm"),
            ),
        ),
    )


def _zone_select(zone: ZoneChoice, extra: Sequence[str], *, task: bool) -> Html:
    browser = zone.browser.key if zone.browser else "not known yet"
    options: list[tuple[str, str]] = [("browser", f"Your browser's ({browser})")]
    if task:
        options.append(("task", "The task's"))
    options.append(("UTC", "UTC"))
    options += [(name, name) for name in sorted(set(extra) - {"UTC"})]
    return tag(
        "label",
        {},
        "Time zone ",
        tag(
            "select",
            {"name": "zone", "class_": "autosubmit"},
            [
                tag("option", {"value": value, "selected": value == zone.choice}, text)
                for value, text in options
            ],
        ),
    )


def filter_form(path: str, flt: Filter, zone: ZoneChoice, extra: Child = None) -> Html:
    """The namespace and label filter (a GET form), with any extra fields of the page."""
    return tag(
        "form",
        {"class_": "filters", "method": "get", "action": path},
        tag(
            "label",
            {},
            "Namespace ",
            tag(
                "input",
                {"name": "ns", "value": flt.namespace or "", "placeholder": "all namespaces"},
            ),
        ),
        tag(
            "label",
            {},
            "Labels ",
            tag(
                "input",
                {"name": "labels", "value": flt.labels, "placeholder": "e.g. team=data,tier!=web"},
            ),
        ),
        extra,
        [tag("input", {"type": "hidden", "name": k, "value": v}) for k, v in zone.params().items()]
        if path == "/"
        else None,
        tag("button", {"type": "submit"}, "Show"),
    )


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


def _badges(view: TaskView) -> list[Html]:
    badges = []
    if view.suspended:
        title = f"suspended: {view.suspend_reason}" if view.suspend_reason else "suspended"
        badges.append(tag("span", {"class_": "badge suspended", "title": title}, "Suspended"))
    if view.active:
        badges.append(tag("span", {"class_": "badge running"}, f"{view.active} running"))
    if view.problem:
        badges.append(tag("span", {"class_": "badge invalid", "title": view.problem}, "Not ready"))
    return badges


def overview_content(
    views: Sequence[TaskView], problem: Problem | None, flt: Filter, zone: ZoneChoice
) -> Html:
    """The task table: schedule, next fire, last result and the streak of recent runs."""
    if problem is not None:
        return _problem(problem)
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
                    _badges(view),
                ),
                tag("td", {"class_": "schedule"}, view.schedule),
                tag("td", {}, _time(view.next_fire, shown, short=True)),
                tag("td", {}, _result(view.last_result), " ", failures),
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


# --- timeline -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """A task and its upcoming fires (enough to fill the window)."""

    view: TaskView
    fires: tuple[datetime, ...]


def _pct(value: float) -> str:
    return f"{value:.4f}%"


def _grid(the_axis: Axis, height: int) -> list[Html]:
    parts = []
    for i, day in enumerate(the_axis.days):
        parts.append(
            tag(
                "rect",
                {
                    "class_": "day " + ("even" if i % 2 == 0 else "odd"),
                    "x": _pct(day.x0),
                    "width": _pct(day.x1 - day.x0),
                    "y": "0",
                    "height": str(height),
                },
            )
        )
    for tick in the_axis.ticks:
        parts.append(
            tag(
                "line",
                {
                    "class_": "tick",
                    "x1": _pct(tick.x),
                    "x2": _pct(tick.x),
                    "y1": "0",
                    "y2": str(height),
                },
            )
        )
    return parts


def _now_line(the_axis: Axis, height: int) -> Html | None:
    if the_axis.now is None:
        return None
    x = _pct(the_axis.now)
    return tag("line", {"class_": "now", "x1": x, "x2": x, "y1": "0", "y2": str(height)})


def _axis_svg(the_axis: Axis) -> Html:
    height = 40
    labels = []
    for day in the_axis.days:
        if day.label:
            labels.append(
                tag(
                    "text",
                    {
                        "class_": "day-label" + (" dst" if abs(day.hours - 24) > 0.01 else ""),
                        "x": _pct(day.x0),
                        "dx": "4",
                        "y": "14",
                    },
                    day.label,
                )
            )
    for tick in the_axis.ticks:
        labels.append(
            tag(
                "text",
                {"class_": "tick-label", "x": _pct(tick.x), "dx": "2", "y": "34"},
                tick.label,
            )
        )
    return tag(
        "svg",
        {
            "class_": "axis",
            "width": "100%",
            "height": str(height),
            "role": "img",
            "aria-label": f"time axis in {the_axis.zone.key}",
        },
        _grid(the_axis, height),
        labels,
        _now_line(the_axis, height),
    )


def _lane_y(lane: int) -> int:
    return 5 + lane * _LANE_HEIGHT


def _row_svg(row: Row, the_axis: Axis, *, suspended: bool) -> Html:
    height = _ROW_HEIGHT
    shapes: list[Html] = []
    for connector in row.links:
        shapes.append(
            tag(
                "line",
                {
                    "class_": "retry-link",
                    "x1": _pct(connector.x0),
                    "x2": _pct(connector.x1),
                    "y1": str(_lane_y(connector.lane0) + 4),
                    "y2": str(_lane_y(connector.lane1) + 4),
                },
            )
        )
    for bar in row.bars:
        shapes.append(
            tag(
                "rect",
                {
                    "class_": f"bar result-{bar.result}" + (" retry" if bar.attempt > 1 else ""),
                    "data-result": bar.result,
                    "data-run": bar.run,
                    "data-attempt": str(bar.attempt),
                    "x": _pct(bar.x),
                    "width": _pct(bar.width),
                    "y": str(_lane_y(bar.lane)),
                    "height": str(_LANE_HEIGHT - 3),
                    "rx": "2",
                },
                tag("title", {}, bar.title),
            )
        )
    # Many fires (an every-few-minutes schedule) are drawn small, so they read as a rhythm.
    dense = sum(1 for m in row.marks if m.kind == "fire") > _DENSE_FIRES
    for mark in row.marks:
        kind = mark.kind if mark.kind in ("fire", "retry") else f"slot result-{mark.kind}"
        small = dense and mark.kind == "fire"
        shapes.append(
            tag(
                "circle",
                {
                    "class_": f"mark {kind}" + (" dense" if small else ""),
                    "data-kind": mark.kind,
                    "cx": _pct(mark.x),
                    "cy": str(height // 2),
                    "r": "1.5" if small else "4",
                },
                tag("title", {}, mark.title),
            )
        )
    return tag(
        "svg",
        {
            "class_": "lane" + (" suspended" if suspended else ""),
            "width": "100%",
            "height": str(height),
        },
        _grid(the_axis, height),
        shapes,
        _now_line(the_axis, height),
    )


def _legend() -> Html:
    items = [
        tag(
            "span",
            {"class_": "legend-item"},
            tag("span", {"class_": f"swatch result-{result}"}),
            result,
        )
        for result in RESULTS
    ]
    items.append(
        tag("span", {"class_": "legend-item"}, tag("span", {"class_": "swatch fire"}), "next fire")
    )
    items.append(
        tag("span", {"class_": "legend-item"}, tag("span", {"class_": "swatch retry"}), "retry due")
    )
    return tag(
        "p",
        {"class_": "legend"},
        items,
        tag("span", {"class_": "legend-note"}, "Retries sit on the lanes below the first attempt."),
    )


def timeline_rows(
    entries: Sequence[TimelineEntry], window: Window, now: datetime, zone: ZoneInfo
) -> Html:
    """The axis and one row per task, all in ``zone``."""
    the_axis = axis(window, zone, now)
    rows = []
    for entry in entries:
        view = entry.view
        row = lay_out(view.status, entry.fires, window, now, zone, suspended=view.suspended)
        more = tag("small", {"class_": "more"}, "more fires than drawn") if row.hidden else None
        rows.append(
            tag(
                "div",
                {"class_": "tl-row", "data-task": view.key},
                tag(
                    "div",
                    {"class_": "tl-label"},
                    tag("a", {"href": task_path(view.namespace, view.name)}, view.name),
                    tag("small", {}, view.namespace),
                    _badges(view),
                    more,
                ),
                _row_svg(row, the_axis, suspended=view.suspended),
            )
        )
    return tag(
        "div",
        {"class_": "timeline", "data-zone": zone.key},
        tag(
            "div",
            {"class_": "tl-row tl-head"},
            tag("div", {"class_": "tl-label"}, tag("small", {}, zone.key)),
            _axis_svg(the_axis),
        ),
        rows,
    )


def timeline_content(
    entries: Sequence[TimelineEntry],
    problem: Problem | None,
    window: Window,
    now: datetime,
    zone: ZoneInfo,
) -> Html:
    """The timeline page's content: the window's heading, the rows and the legend."""
    if problem is not None:
        return _problem(problem)
    heading = tag(
        "p",
        {"class_": "window"},
        _time(window.start, zone),
        " → ",
        _time(window.end, zone),
    )
    if not entries:
        return join(heading, tag("p", {"class_": "empty"}, "No ScheduledTasks to show."))
    return join(heading, timeline_rows(entries, window, now, zone), _legend())


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
        _zone_select(zone, zones, task=False),
    )
    return filter_form("/timeline", flt, zone, extra)


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


def _table(headers: Sequence[str], rows: Sequence[Sequence[Child]], cls: str) -> Html:
    return tag(
        "table",
        {"class_": cls},
        tag("thead", {}, tag("tr", {}, [tag("th", {"scope": "col"}, h) for h in headers])),
        tag("tbody", {}, [tag("tr", {}, [tag("td", {}, cell) for cell in row]) for row in rows]),
    )


def _section(title: str, *children: Child, section_id: str) -> Html:
    return tag("section", {"id": section_id}, tag("h2", {}, title), *children)


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
        tag("h1", {}, tag("small", {}, view.namespace, " / "), view.name, " ", _badges(view)),
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
        _table(
            ("Type", "Status", "Reason", "Message", "Since"),
            [
                (
                    c.get("type"),
                    tag("span", {"class_": f"cond {_condition_class(c)}"}, c.get("status")),
                    c.get("reason") or "",
                    c.get("message") or "",
                    _time(read_time(c.get("lastTransitionTime")), shown),
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
        _table(fire_headers, fire_rows, "fires")
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
                _result(result),
                exit_code,
                _time(read_time(started), shown),
                duration,
                tag("span", {"class_": "message"}, message),
            ]
        )
    runs = (
        _table([h.capitalize() for h in HISTORY_HEADERS], run_rows, "runs")
        if run_rows
        else tag("p", {"class_": "empty"}, "No runs yet.")
    )

    if isinstance(task.events, Problem):
        events = _problem(task.events)
    elif task.events:
        events = _table(
            ("Type", "Reason", "Message", "Count", "Last seen"),
            [
                (
                    tag("span", {"class_": f"event-{e.type}"}, e.type),
                    e.reason,
                    e.message,
                    str(e.count),
                    _time(e.last, shown),
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
        log_parts.append(_problem(log.problem))
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
            _section("Spec", summary, section_id="spec"),
            _section("Conditions", condition_table, section_id="conditions"),
        ),
        _section("Timeline", the_timeline, section_id="timeline"),
        _section(f"Next {len(view.fires) or 10} fire times", fires, section_id="fires"),
        _section("Runs", runs, section_id="runs"),
        _section("Events", events, section_id="events"),
        _section("Last run's log", log_parts, section_id="log"),
    )


def task_controls(flt: Filter, zone: ZoneChoice, view: TaskView | None) -> Html:
    """The task page's form: the zone times are shown in."""
    zones = [view.zone.key] if view is not None and view.zone is not None else []
    return tag(
        "form",
        {"class_": "filters", "method": "get"},
        [tag("input", {"type": "hidden", "name": k, "value": v}) for k, v in flt.params().items()],
        _zone_select(zone, zones, task=True),
        tag("button", {"type": "submit"}, "Show"),
    )


def error_content(problem: Problem) -> Html:
    """A page's content when its main read failed."""
    return join(tag("h1", {}, "Cannot show this page"), _problem(problem))


def overview_controls(flt: Filter, zone: ZoneChoice) -> Html:
    """The overview's form: the namespace and label filter."""
    return filter_form("/", flt, zone)

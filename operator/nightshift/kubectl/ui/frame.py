"""The frame every page shares, and the small pieces pages are made of.

A page is this frame (head, navigation, the page's controls, the confirmation dialog) around a
*content* part, ``<main id="content">``. Live updates fetch the content part again and swap it in,
so the forms outside it keep what the user is typing. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from nightshift.kubectl.ui.clock import local_text, short_text, utc_text
from nightshift.kubectl.ui.html import Child, Html, join, tag
from nightshift.kubectl.ui.query import Filter, ZoneChoice, link
from nightshift.kubectl.ui.views import TaskView

__all__ = [
    "Frame",
    "Problem",
    "badges",
    "error_content",
    "filter_form",
    "hidden",
    "page",
    "problem_of",
    "result_of",
    "section",
    "table",
    "task_path",
    "time_of",
    "zone_select",
]


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


def time_of(moment: datetime | None, zone: ZoneInfo, *, short: bool = False) -> Html:
    """A ``<time>`` in ``zone`` (UTC on hover), or a dash for None."""
    if moment is None:
        return tag("span", {"class_": "none"}, "-")
    text = short_text(moment, zone) if short else local_text(moment, zone)
    return tag("time", {"datetime": utc_text(moment), "title": utc_text(moment)}, text)


def result_of(result: str | None) -> Html:
    """A run result, coloured by the stylesheet, or a dash."""
    if not result:
        return tag("span", {"class_": "none"}, "-")
    return tag("span", {"class_": f"result result-{result}"}, result)


def problem_of(problem: Problem) -> Html:
    """An error, shown where what failed would have been."""
    return tag("p", {"class_": "error", "role": "alert"}, problem.message)


def badges(view: TaskView) -> list[Html]:
    """Suspended, running and not-ready badges for a task."""
    badges = []
    if view.suspended:
        title = f"suspended: {view.suspend_reason}" if view.suspend_reason else "suspended"
        badges.append(tag("span", {"class_": "badge suspended", "title": title}, "Suspended"))
    if view.active:
        badges.append(tag("span", {"class_": "badge running"}, f"{view.active} running"))
    if view.problem:
        badges.append(tag("span", {"class_": "badge invalid", "title": view.problem}, "Not ready"))
    return badges


def table(headers: Sequence[str], rows: Sequence[Sequence[Child]], cls: str) -> Html:
    """A table with a header row."""
    return tag(
        "table",
        {"class_": cls},
        tag("thead", {}, tag("tr", {}, [tag("th", {"scope": "col"}, h) for h in headers])),
        tag("tbody", {}, [tag("tr", {}, [tag("td", {}, cell) for cell in row]) for row in rows]),
    )


def section(title: str, *children: Child, section_id: str) -> Html:
    """A titled section of the task page."""
    return tag("section", {"id": section_id}, tag("h2", {}, title), *children)


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


def zone_select(zone: ZoneChoice, extra: Sequence[str], *, task: bool) -> Html:
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


def filter_form(path: str, flt: Filter, extra: Child = None, keep: Child = None) -> Html:
    """The namespace and label filter (a GET form), with the page's ``extra`` fields and the
    hidden ones that ``keep`` its other parameters."""
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
        keep,
        tag("button", {"type": "submit"}, "Show"),
    )


def hidden(params: dict[str, str]) -> list[Html]:
    """Hidden form fields that carry ``params`` along."""
    return [tag("input", {"type": "hidden", "name": k, "value": v}) for k, v in params.items()]


def error_content(problem: Problem) -> Html:
    """A page's content when its main read failed."""
    return join(tag("h1", {}, "Cannot show this page"), problem_of(problem))

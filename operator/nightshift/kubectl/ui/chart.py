"""The timeline drawn: an SVG per row whose x positions are percentages, so it fits any width.

Where things go is ``timeline``'s business (and tested there, DST days included); this module only
turns its axis and rows into SVG elements, with a ``<title>`` on each for the details on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from nightshift.kubectl.ui.frame import badges, task_path
from nightshift.kubectl.ui.html import Html, tag
from nightshift.kubectl.ui.timeline import LANES, Axis, Row, Window, axis, lay_out
from nightshift.kubectl.ui.views import TaskView

__all__ = ["RESULTS", "TimelineEntry", "legend", "timeline_rows"]

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


def legend() -> Html:
    """What each colour and shape means."""
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
                    badges(view),
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

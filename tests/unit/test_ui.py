"""The web UI's pure parts: timeline geometry (DST days included), filters, views, the guard's
tokens and the escaping of everything a page shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nightshift.kubectl.ui.chart import TimelineEntry, timeline_rows
from nightshift.kubectl.ui.clock import UTC_ZONE, local_text
from nightshift.kubectl.ui.frame import Frame, page
from nightshift.kubectl.ui.guard import Guard, address_warning, is_loopback, url_host
from nightshift.kubectl.ui.html import Html, escape, tag
from nightshift.kubectl.ui.pages import (
    LogView,
    TaskPage,
    overview_content,
    task_content,
    timeline_controls,
)
from nightshift.kubectl.ui.query import (
    Filter,
    QueryError,
    Span,
    read_filter,
    read_span,
    read_zone,
)
from nightshift.kubectl.ui.timeline import LANES, MAX_MARKS, MIN_WIDTH, Window, axis, lay_out
from nightshift.kubectl.ui.views import event_rows, spec_summary, streak, task_view
from nightshift.models import parse_spec
from nightshift.schedule import next_fire_times, plan_for
from nightshift.timezones import load_zone

NEW_YORK = load_zone("America/New_York")
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CONTAINERS = [{"name": "main", "image": "registry.example/job:1"}]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**fields: Any) -> dict[str, Any]:
    return {**fields, "jobTemplate": {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}}


def task(name: str = "backup", status: dict[str, Any] | None = None, **fields: Any) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "namespace": "team", "labels": {"tier": "batch"}},
        "spec": spec(**fields),
        "status": status or {},
    }


def record(
    run: str, attempt: int, result: str, start: datetime, seconds: int, **extra: Any
) -> dict:  # type: ignore[type-arg]
    return {
        "run": run,
        "attempt": attempt,
        "job": f"backup-{run}-{attempt}",
        "result": result,
        "startedAt": z(start),
        "finishedAt": z(start + timedelta(seconds=seconds)),
        **extra,
    }


# --- the axis: DST days drawn as long as they are ------------------------------------------------


def test_spring_forward_has_no_two_oclock_and_a_23_hour_day() -> None:
    midnight = utc(2026, 3, 8, 5)  # 00:00 EST on the day New York springs forward
    the_axis = axis(Window(midnight, midnight + timedelta(hours=12)), NEW_YORK, NOW)
    labels = [t.label for t in the_axis.ticks]
    assert labels[:4] == ["00:00 EST", "01:00", "03:00 EDT", "04:00"]
    assert not any(label.startswith("02:00") for label in labels)
    # Elapsed time is the axis: 01:00 and 03:00 are one hour (1/12 of the width) apart.
    x = {t.label: t.x for t in the_axis.ticks}
    assert x["03:00 EDT"] - x["01:00"] == pytest.approx(100 / 12, abs=0.001)
    day = axis(Window(midnight - timedelta(days=1), midnight + timedelta(days=2)), NEW_YORK, NOW)
    spring = next(d for d in day.days if d.day.day == 8)
    assert spring.hours == 23
    assert spring.label == "Sun 8 Mar · 23 h"
    assert spring.x1 - spring.x0 == pytest.approx(100 * 23 / 72, abs=0.001)


def test_fall_back_shows_one_oclock_twice_and_a_25_hour_day() -> None:
    the_axis = axis(Window(utc(2026, 11, 1, 4), utc(2026, 11, 1, 10)), NEW_YORK, NOW)
    assert [t.label for t in the_axis.ticks] == [
        "00:00 EDT", "01:00", "01:00 EST", "02:00", "03:00", "04:00", "05:00",
    ]  # fmt: skip
    fall = axis(Window(utc(2026, 10, 31), utc(2026, 11, 3)), NEW_YORK, NOW).days
    assert [(d.day.day, d.hours) for d in fall] == [(30, 24), (31, 24), (1, 25), (2, 24)]


def test_hourly_fires_on_dst_days_are_23_and_25_marks() -> None:
    hourly = parse_spec(spec(schedule="0 * * * *", timeZone="America/New_York"))
    plan = plan_for(hourly, "team", "hourly")
    for start, end, count in (
        (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23),  # the local day of the spring-forward
        (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25),  # the local day of the fall-back
    ):
        window = Window(start, end)
        fires = next_fire_times(plan, start - timedelta(seconds=1), 1000, until=end)
        row = lay_out({}, fires, window, start, NEW_YORK)
        marks = [m for m in row.marks if m.kind == "fire" and m.x < 100]
        assert len(marks) == count


def test_a_day_whose_midnight_is_skipped_starts_when_the_clock_jumps() -> None:
    santiago = load_zone("America/Santiago")  # 2026-09-06: 00:00 -04 becomes 01:00 -03
    days = axis(Window(utc(2026, 9, 5, 12), utc(2026, 9, 7, 12)), santiago, NOW).days
    sunday = days[1]
    assert sunday.hours == 23
    assert sunday.start.astimezone(santiago).strftime("%d %H:%M") == "06 01:00"
    assert sunday.start == utc(2026, 9, 6, 4)


def test_half_hour_zones_tick_on_their_own_hours_and_long_windows_label_days() -> None:
    kolkata = load_zone("Asia/Kolkata")
    the_axis = axis(Window(utc(2026, 5, 1), utc(2026, 5, 1, 6)), kolkata, NOW)
    assert all(t.at.minute == 30 for t in the_axis.ticks)  # IST is UTC+05:30
    month = axis(Window(utc(2026, 5, 1), utc(2026, 5, 31)), UTC_ZONE, NOW)
    assert month.ticks == ()  # only days; at most ~16 of them labelled
    assert 0 < sum(1 for d in month.days if d.label) <= 16


def test_window_and_now() -> None:
    window = Window.around(NOW, timedelta(hours=24), timedelta(hours=24))
    assert window.x(NOW) == 50
    assert axis(window, UTC_ZONE, NOW).now == 50
    assert axis(window, UTC_ZONE, NOW + timedelta(days=2)).now is None
    with pytest.raises(ValueError, match="end after"):
        Window(NOW, NOW)


# --- a task's row ---------------------------------------------------------------------------------


def test_attempts_are_bars_coloured_by_result_with_retries_on_lower_lanes() -> None:
    window = Window.around(NOW, timedelta(hours=24), timedelta(hours=24))
    started = NOW - timedelta(hours=2)
    status = {
        "runs": [
            record("r1", 2, "Succeeded", started + timedelta(minutes=1), 30),
            record("r1", 1, "Failed", started, 20, exitCode=3, message="disk full"),
            {"run": "r0", "attempt": 1, "result": "Missed", "scheduledAt": z(started)},
            record("old", 1, "Failed", NOW - timedelta(days=3), 5),
        ],
        "active": [
            {"run": "r2", "attempt": 1, "job": "j", "startedAt": z(NOW - timedelta(hours=1))}
        ],
        "pendingRetries": [{"run": "r3", "attempt": 2, "notBefore": z(NOW + timedelta(minutes=5))}],
    }
    row = lay_out(status, [NOW + timedelta(hours=1)], window, NOW, NEW_YORK)
    by_key = {(b.run, b.attempt): b for b in row.bars}
    assert set(by_key) == {("r1", 1), ("r1", 2), ("r2", 1)}  # "old" is outside the window
    failed, retried = by_key["r1", 1], by_key["r1", 2]
    assert (failed.result, failed.lane, retried.result, retried.lane) == (
        "Failed",
        0,
        "Succeeded",
        1,
    )
    assert failed.width == MIN_WIDTH  # 20 s of 48 h is too thin to see
    assert "Failed (exit 3)" in failed.title
    assert "disk full" in failed.title
    assert "EST" in failed.title  # times in the chosen zone
    running = by_key["r2", 1]
    assert running.result == "Running"
    assert running.x + running.width == pytest.approx(50)  # up to now
    (link,) = row.links
    assert (link.lane0, link.lane1) == (0, 1)
    kinds = sorted(m.kind for m in row.marks)
    assert kinds == ["Missed", "fire", "retry"]
    assert row.hidden == 0
    assert LANES == 3
    deep = lay_out(
        {"runs": [record("r", 7, "Failed", NOW - timedelta(hours=1), 5)]}, [], window, NOW, UTC_ZONE
    )
    assert deep.bars[0].lane == LANES - 1


def test_fires_beyond_the_cap_are_counted_not_drawn() -> None:
    window = Window.around(NOW, timedelta(0), timedelta(days=1))
    fires = [NOW + timedelta(minutes=i) for i in range(1, MAX_MARKS + 50)]
    row = lay_out({}, fires, window, NOW, UTC_ZONE)
    assert len(row.marks) == MAX_MARKS
    assert row.hidden == 49


# --- filters and the other query parameters -------------------------------------------------------


def test_filters() -> None:
    assert read_filter({}, "team") == Filter("team", "")
    assert read_filter({}, None) == Filter(None, "")
    assert read_filter({"ns": [""]}, "team") == Filter(None, "")  # empty: every namespace
    assert read_filter({"ns": ["prod"], "labels": [" tier=batch "]}, "team") == Filter(
        "prod", "tier=batch"
    )
    assert Filter(None, "a=b").params() == {"ns": "", "labels": "a=b"}
    with pytest.raises(QueryError, match="not a valid namespace"):
        read_filter({"ns": ["Prod/../x"]}, None)
    with pytest.raises(QueryError, match="longer than"):
        read_filter({"labels": ["a" * 2000]}, None)


def test_window_and_zone_parameters() -> None:
    assert read_span({}) == Span(timedelta(hours=24), timedelta(hours=24))
    assert read_span({"back": ["90m"], "ahead": ["0s"]}) == Span(
        timedelta(minutes=90), timedelta(0)
    )
    assert Span(timedelta(hours=6)).params() == {"back": "6h"}
    for bad, message in (
        (["60d"], "at most"),
        (["soon"], "back"),
    ):
        with pytest.raises(QueryError, match=message):
            read_span({"back": bad})
    with pytest.raises(QueryError, match="empty"):
        read_span({"back": ["0s"], "ahead": ["0s"]})
    zone = read_zone({}, "Europe/Zurich")
    assert zone.zone().key == "Europe/Zurich"
    assert read_zone({}, None).zone().key == "UTC"  # the browser has not said yet
    assert read_zone({"zone": ["task"]}, None).zone(NEW_YORK) is NEW_YORK
    assert read_zone({}, "Not/AZone").zone().key == "UTC"
    with pytest.raises(QueryError, match="unknown time zone"):
        read_zone({"zone": ["Mars/Olympus"]}, None)


# --- views ----------------------------------------------------------------------------------------


def test_a_streak_is_one_dot_per_finished_run_oldest_first() -> None:
    t0 = NOW - timedelta(hours=5)
    status = {
        "runs": [
            record("c", 1, "Failed", t0 + timedelta(hours=3), 5),
            record("b", 2, "Succeeded", t0 + timedelta(hours=2, seconds=30), 5),
            record("b", 1, "Failed", t0 + timedelta(hours=2), 5),
            record("a", 1, "Succeeded", t0, 5),
        ],
        "pendingRetries": [{"run": "c", "attempt": 2, "notBefore": z(NOW)}],
    }
    assert [(s.run, s.result, s.attempts) for s in streak(status)] == [
        ("a", "Succeeded", 1),
        ("b", "Succeeded", 2),  # retried into a success
    ]  # "c" waits for its retry
    assert len(streak({"runs": [record(f"r{i}", 1, "Failed", t0, 1) for i in range(15)]})) == 10


def test_task_view_uses_the_cores_fire_times_and_reports_a_bad_spec() -> None:
    obj = task(schedule="30 2 * * *", timeZone="America/New_York", status={"runCount": 0})
    view = task_view(obj, NOW, fires=10)
    plan = plan_for(parse_spec(obj["spec"]), "team", "backup")
    assert list(view.fires) == next_fire_times(plan, NOW, 10)
    assert view.schedule == "30 2 * * * (America/New_York)"
    bad = task_view(
        {"metadata": {"name": "x", "namespace": "n"}, "spec": {"schedule": "nope"}}, NOW
    )
    assert bad.spec is None
    assert bad.fires == ()
    assert bad.problem is not None
    assert bad.problem.startswith("invalid spec")


def test_spec_summary_and_events() -> None:
    parsed = parse_spec(
        spec(
            interval="6h",
            jitter="30s",
            retry={"maxRetries": 2, "onExitCodes": [75], "backoff": {"initial": "10s"}},
            maxRuns=5,
        )
    )
    rows = dict(spec_summary(parsed, {"runCount": 2}))
    assert rows["Schedule"] == "every 6h"
    assert rows["Runs"] == "2 of at most 5"
    assert rows["Retries"].startswith("up to 2, back-off 10s")
    assert "only on exit codes 75" in rows["Retries"]
    assert rows["Container main"] == "registry.example/job:1"
    events = event_rows(
        [
            {"type": "Normal", "reason": "RunStarted", "lastTimestamp": "2026-11-23T09:00:00Z"},
            {
                "type": "Warning",
                "reason": "RunFailed",
                "count": 2,
                "lastTimestamp": "2026-11-23T09:05:00Z",
            },
            {"reason": "Odd", "eventTime": "2026-11-23T08:00:00.000000Z"},
        ]
    )
    assert [(e.reason, e.count) for e in events] == [
        ("RunFailed", 2),
        ("RunStarted", 1),
        ("Odd", 1),
    ]


# --- the guard ------------------------------------------------------------------------------------


def test_only_our_host_names_and_tokens_are_admitted() -> None:
    guard = Guard.create("127.0.0.1", 8765)
    assert guard.host_allowed("127.0.0.1:8765")
    assert guard.host_allowed("localhost:8765")
    assert not guard.host_allowed("evil.example:8765")  # DNS rebinding
    assert not guard.host_allowed("127.0.0.1:9999")
    assert not guard.host_allowed(None)
    assert guard.token_valid(guard.access_token)
    assert not guard.token_valid("x" + guard.access_token)
    assert not guard.token_valid(None)
    cookie = f"other=1; {guard.cookie_name}={guard.access_token}"
    assert guard.cookie_valid(cookie)
    assert not guard.cookie_valid(f"nightshift-ui-1={guard.access_token}")  # another port's
    assert not guard.cookie_valid("garbage;;=")
    assert "HttpOnly" in guard.set_cookie()
    assert "SameSite=Strict" in guard.set_cookie()
    assert guard.csrf_valid(guard.csrf_token)
    assert not guard.csrf_valid(guard.access_token)
    assert not guard.csrf_valid(None)
    assert guard.origin_allowed(None, "127.0.0.1:8765")
    assert guard.origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not guard.origin_allowed("http://evil.example", "127.0.0.1:8765")
    other = Guard.create("127.0.0.1", 8765)
    assert other.access_token != guard.access_token  # fresh per process
    assert other.csrf_token != guard.csrf_token


def test_loopback_and_the_warning_for_anything_else() -> None:
    for address in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(address)
        assert address_warning(address) is None
    for address in ("0.0.0.0", "192.168.1.20", "::", "example.com"):
        assert not is_loopback(address)
        warning = address_warning(address)
        assert warning is not None
        assert "credentials" in warning
    assert url_host("0.0.0.0", 80) == "127.0.0.1:80"
    assert url_host("::1", 80) == "[::1]:80"


# --- escaping and the pages -----------------------------------------------------------------------


def test_html_escapes_text_and_attributes_but_not_markup() -> None:
    assert escape("<b>&'\"") == "&lt;b&gt;&amp;&#x27;&quot;"
    built = tag(
        "a", {"href": 'x" onclick="y', "class_": "c", "disabled": True, "hidden": False}, "<i>"
    )
    assert built == '<a href="x&quot; onclick=&quot;y" class="c" disabled>&lt;i&gt;</a>'
    assert tag("p", {}, Html("<b>ok</b>"), None, ["a", 1]) == "<p><b>ok</b>a1</p>"
    assert tag("input", {"value": "v"}) == '<input value="v">'


def _task_page(obj: dict[str, Any], *, may_patch: bool | None = True) -> TaskPage:
    view = task_view(obj, NOW, fires=10)
    window = Window.around(NOW, timedelta(hours=24), timedelta(hours=24))
    return TaskPage(
        view=view,
        events=[],
        log=LogView("pod p", "<log line>", None),
        may_patch=may_patch,
        patch_reason="",
        window=window,
        fires=view.fire_times(NOW, MAX_MARKS + 1, window.end),
    )


def test_a_task_page_escapes_what_the_job_wrote_and_disables_what_rbac_forbids() -> None:
    hostile = "<script>alert(1)</script>"
    status = {"runs": [record("r", 1, "Failed", NOW - timedelta(hours=1), 3, message=hostile)]}
    obj = task(schedule="0 3 * * *", status=status)
    zone = read_zone({}, "UTC")
    html = task_content(_task_page(obj), NOW, zone)
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;log line&gt;" in html
    assert " disabled" not in html
    denied = task_content(_task_page(obj, may_patch=False), NOW, zone)
    assert denied.count(" disabled") == 2  # Run now and Suspend
    assert "You may look at this task but not change it" in denied
    # Ten fire times, the same instants the core computes.
    expected = next_fire_times(plan_for(parse_spec(obj["spec"]), "team", "backup"), NOW, 10)
    for moment in expected:
        assert moment.strftime("%Y-%m-%dT%H:%M:%SZ") in html


def test_overview_rows_and_the_frame() -> None:
    failed = record("r", 1, "Failed", NOW - timedelta(hours=1), 3)
    objs = [
        task("a", schedule="0 3 * * *", status={"lastResult": "Failed", "runs": [failed]}),
        task("b", interval="1h", suspend=True),
    ]
    zone = read_zone({}, "America/New_York")
    views = [task_view(o, NOW) for o in objs]
    html = overview_content(views, None, Filter(None), zone)
    assert 'data-task="team/a"' in html
    assert "result-Failed" in html
    assert "Suspended" in html
    assert local_text(views[0].next_fire, NEW_YORK)[:10] in html  # type: ignore[arg-type]
    frame = Frame("Tasks", "csrf-value", "/events?ns=", zone, "jane", "overview", Filter(None))
    whole = page(frame, None, html)
    assert whole.startswith("<!doctype html>")
    assert 'content="csrf-value"' in whole
    assert '<script src="/static/ui.js" defer></script>' in whole
    assert "http" not in whole.replace("http-equiv", "")  # nothing fetched from elsewhere
    rows = timeline_rows(
        [TimelineEntry(views[0], ())],
        Window.around(NOW, timedelta(hours=2), timedelta(hours=2)),
        NOW,
        NEW_YORK,
    )
    assert 'data-result="Failed"' in rows


def test_the_timeline_form_shows_the_window_it_draws() -> None:
    form = timeline_controls(Filter("team"), Span(), read_zone({}, None), ["Europe/Zurich"])
    back = form[form.index('name="back"') :].split("</select>")[0]
    assert back.count("<option") == 5  # the default (1d) is one of the choices, not added twice
    assert '<option value="1d" selected>1d</option>' in back
    assert '<option value="Europe/Zurich">Europe/Zurich</option>' in form

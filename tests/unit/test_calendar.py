"""Calendars and ``spec.exclude``: which slots a rule skips, where an excluded block ends, and what
the reconciler records (Excluded: neither Missed nor Failed).

Every expectation is a literal UTC instant worked out by hand. Transitions used: America/New_York
springs forward at 2026-03-08T07:00Z (02:00 EST -> 03:00 EDT) and falls back at 2026-11-01T06:00Z
(02:00 EDT -> 01:00 EST); Europe/Zurich springs forward at 2026-03-29T01:00Z; Pacific/Chatham
springs forward at 2026-09-26T14:00Z (02:45 +12:45 -> 03:45 +13:45); Pacific/Auckland is +13 in
December. 2026-03-06 is a Friday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nightshift.exclusions import exclusions_for
from nightshift.models import (
    CalendarSpec,
    Exclusion,
    SpecError,
    TaskStatus,
    parse_calendar,
    parse_spec,
)
from nightshift.reconcile import Decision, TaskView, decide
from nightshift.schedule import next_fire_times, next_slot, plan_for
from nightshift.store import RESYNC, Calendars, Store

CONTAINERS = [{"name": "main", "image": "busybox"}]
TEMPLATE = {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}
NY = "America/New_York"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def z(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rules(*raw: dict[str, Any], zone: str = "UTC") -> Any:
    found = exclusions_for(
        calendar=[Exclusion.model_validate(r) for r in raw], calendar_zone=zone, calendar_name="c"
    )
    assert found is not None
    return found


# --- which slots a rule excludes ------------------------------------------------------------------

MATCHES = [
    # A whole local day, in the rule's zone (Auckland is +13: Dec 25 starts at Dec 24 11:00Z).
    ({"date": "2026-12-25", "timeZone": "Pacific/Auckland"}, "2026-12-24T10:59:59Z", False),
    ({"date": "2026-12-25", "timeZone": "Pacific/Auckland"}, "2026-12-24T11:00:00Z", True),
    ({"date": "2026-12-25", "timeZone": "Pacific/Auckland"}, "2026-12-25T10:59:59Z", True),
    ({"date": "2026-12-25", "timeZone": "Pacific/Auckland"}, "2026-12-25T11:00:00Z", False),
    # A range of days, both ends included.
    ({"start": "2026-12-24", "end": "2026-12-26"}, "2026-12-23T23:59:59Z", False),
    ({"start": "2026-12-24", "end": "2026-12-26"}, "2026-12-24T00:00:00Z", True),
    ({"start": "2026-12-24", "end": "2026-12-26"}, "2026-12-26T23:59:59Z", True),
    ({"start": "2026-12-24", "end": "2026-12-27"}, "2026-12-28T00:00:00Z", False),
    # Cron: the local wall time to the minute. 02:xx does not exist on 2026-03-08 in New York.
    ({"cron": "* 2 * * *", "timeZone": NY}, "2026-03-08T06:59:00Z", False),  # 01:59 EST
    ({"cron": "* 2 * * *", "timeZone": NY}, "2026-03-08T07:00:00Z", False),  # 03:00 EDT
    ({"cron": "* 2 * * *", "timeZone": NY}, "2026-03-09T06:30:00Z", True),  # 02:30 EDT
    # 01:xx happens twice on 2026-11-01: both are excluded.
    ({"cron": "* 1 * * *", "timeZone": NY}, "2026-11-01T05:30:00Z", True),  # 01:30 EDT
    ({"cron": "* 1 * * *", "timeZone": NY}, "2026-11-01T06:30:00Z", True),  # 01:30 EST
    ({"cron": "* 1 * * *", "timeZone": NY}, "2026-11-01T07:00:00Z", False),  # 02:00 EST
    # Weekends in Zurich (CET, +1): Saturday starts at Friday 23:00Z.
    ({"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}, "2026-03-06T22:59:00Z", False),
    ({"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}, "2026-03-06T23:00:00Z", True),
    ({"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}, "2026-03-08T22:59:00Z", True),
    ({"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}, "2026-03-08T23:00:00Z", False),
    # Seconds do not count: a slot at 09:30:45 is in the minute 09:30.
    ({"cron": "30 9 * * *"}, "2026-03-06T09:30:45Z", True),
    ({"cron": "30 9 * * *"}, "2026-03-06T09:31:00Z", False),
]


@pytest.mark.parametrize(("rule", "slot", "excluded"), MATCHES)
def test_a_rule_excludes_by_local_wall_time(
    rule: dict[str, Any], slot: str, excluded: bool
) -> None:
    assert (rules(rule).match(utc(slot)) is not None) is excluded


def test_rules_without_a_zone_take_the_calendar_zone() -> None:
    found = rules({"date": "2026-12-25"}, zone="Pacific/Auckland")
    assert found.match(utc("2026-12-24T11:00:00Z")) is not None
    assert found.match(utc("2026-12-25T11:00:00Z")) is None


# --- where an excluded block ends -----------------------------------------------------------------

BLOCKS = [
    pytest.param(
        [{"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}],
        "2026-03-07T10:00:00Z",
        "2026-03-08T23:00:00Z",  # Monday 00:00 CET
        id="weekend",
    ),
    pytest.param(
        [{"cron": "* * * * SAT,SUN", "timeZone": "Europe/Zurich"}],
        "2026-03-28T12:00:00Z",
        "2026-03-29T22:00:00Z",  # Monday 00:00 CEST: the clocks moved during the weekend
        id="weekend-across-spring-forward",
    ),
    pytest.param(
        [{"start": "2026-10-31", "end": "2026-11-01", "timeZone": NY}],
        "2026-10-31T12:00:00Z",
        "2026-11-02T05:00:00Z",  # 2026-11-02 00:00 EST: a 25-hour day was in the range
        id="range-across-fall-back",
    ),
    pytest.param(
        [{"cron": "0-29 * * * *"}], "2026-03-06T10:05:00Z", "2026-03-06T10:30:00Z", id="minutes"
    ),
    pytest.param(
        [{"cron": "* 0-6 * * *"}], "2026-03-06T03:10:20Z", "2026-03-06T07:00:00Z", id="hours"
    ),
    pytest.param(
        [{"date": "2026-03-07"}, {"date": "2026-03-08"}, {"cron": "* 0-5 * * MON"}],
        "2026-03-07T08:00:00Z",
        "2026-03-09T06:00:00Z",
        id="adjacent-rules-make-one-block",
    ),
    pytest.param(
        [{"cron": "* 2 * * *", "timeZone": "Pacific/Chatham"}],
        "2026-09-26T13:35:00Z",  # 02:20 +12:45
        "2026-09-26T14:00:00Z",  # 02:45 +12:45 becomes 03:45 +13:45: hour 2 is over
        id="a-45-minute-zone-jumps-out-of-the-hour",
    ),
]


@pytest.mark.parametrize(("raw", "slot", "end"), BLOCKS)
def test_an_excluded_block_ends_at_the_first_instant_no_rule_matches(
    raw: list[dict[str, Any]], slot: str, end: str
) -> None:
    found = rules(*raw)
    assert z(found.skip(utc(slot))) == end
    assert found.match(utc(end)) is None
    assert found.match(utc(end) - timedelta(seconds=1)) is not None


def test_a_slot_that_runs_has_no_block() -> None:
    assert rules({"cron": "* 0-6 * * *"}).skip(utc("2026-03-06T07:00:00Z")) is None


# --- fire times skip excluded slots ---------------------------------------------------------------


def task(**fields: Any) -> Any:
    return parse_spec({"schedule": "0 * * * *", **fields, "jobTemplate": TEMPLATE})


def test_next_fire_times_pass_over_a_calendar_weekend() -> None:
    calendar = CalendarSpec.model_validate(
        {"timeZone": "Europe/Zurich", "exclude": [{"cron": "* * * * SAT,SUN"}]}
    )
    plan = plan_for(task(calendarRef={"name": "office"}), "ns", "t", calendar=calendar)
    assert [z(t) for t in next_fire_times(plan, utc("2026-03-06T20:30:00Z"), 4)] == [
        "2026-03-06T21:00:00Z",
        "2026-03-06T22:00:00Z",
        "2026-03-08T23:00:00Z",  # Monday 00:00 in Zurich
        "2026-03-09T00:00:00Z",
    ]


def test_inline_rules_are_read_in_the_task_zone_and_join_the_calendar() -> None:
    calendar = CalendarSpec.model_validate({"exclude": [{"date": "2026-03-07"}]})
    spec = task(timeZone=NY, calendarRef={"name": "c"}, exclude=[{"cron": "* 0-12 * * *"}])
    plan = plan_for(spec, "ns", "t", calendar=calendar)
    # The calendar (no zone: UTC) excludes 2026-03-07T00:00Z-24:00Z; the task's own rule is read
    # in New York: 00:00-12:59 local. 22:00Z and 23:00Z are 17:00 and 18:00 EST.
    assert [z(t) for t in next_fire_times(plan, utc("2026-03-06T21:30:00Z"), 3)] == [
        "2026-03-06T22:00:00Z",
        "2026-03-06T23:00:00Z",
        "2026-03-08T00:00:00Z",  # 2026-03-07 19:00 EST: the calendar's UTC day is over
    ]


def test_a_calendar_that_excludes_everything_is_searched_a_bounded_while() -> None:
    plan = plan_for(task(schedule="* * * * *", exclude=[{"cron": "* * * * *"}]), "ns", "t")
    assert next_slot(plan, utc("2026-03-06T00:00:00Z")) is None  # gives up instead of looping


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"exclude": [{"date": "2026-12-25", "cron": "* * * * *"}]},
            "spec.exclude[0]: set exactly one",
        ),
        ({"exclude": [{"start": "2026-12-24"}]}, "spec.exclude[0]: start and end go together"),
        (
            {"exclude": [{"start": "2026-12-26", "end": "2026-12-24"}]},
            "spec.exclude[0]: start must not be after end",
        ),
        ({"exclude": [{"date": "25.12.2026"}]}, "spec.exclude[0].date: invalid date '25.12.2026'"),
        ({"exclude": [{"date": "2026-02-30"}]}, "spec.exclude[0].date: "),
        ({"exclude": [{"cron": "* 25 * * *"}]}, "spec.exclude[0].cron: hour field '25'"),
        (
            {
                "timeZone": "Europe/Zurich",
                "exclude": [{"date": "2026-01-01", "timeZone": "Nowhere"}],
            },
            'spec.exclude[0].timeZone: unknown time zone "Nowhere"',
        ),
        ({"timeZone": "Mars/Base"}, 'spec.timeZone: unknown time zone "Mars/Base"'),
        (
            {"exclude": [{"date": "2026-01-01", "note": "x"}]},
            "spec.exclude[0].note: is not a known",
        ),
    ],
)
def test_a_bad_calendar_is_rejected_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_calendar(spec)
    assert message in str(raised.value)


def test_a_task_exclude_is_checked_like_a_calendar() -> None:
    with pytest.raises(SpecError, match=r"spec\.exclude\[1\]\.cron: minute field '60'"):
        task(exclude=[{"date": "2026-01-01"}, {"cron": "60 * * * *"}])
    with pytest.raises(SpecError, match=r"spec\.calendarRef\.name: is required"):
        task(calendarRef={})


# --- what the reconciler records ------------------------------------------------------------------

NS, NAME = "school", "sync-ics"


def at(hms: str) -> datetime:
    return utc(f"2026-03-06T{hms}Z")


def view(
    spec: Any,
    *,
    status: dict[str, Any],
    calendar: CalendarSpec | None = None,
    problem: tuple[str, str] | None = None,
    run_now: str | None = None,
) -> TaskView:
    return TaskView(
        namespace=NS,
        name=NAME,
        uid="uid-1",
        generation=1,
        created=utc("2026-03-01T00:00:00Z"),
        spec=spec,
        spec_error=None,
        status=TaskStatus.model_validate(status),
        run_now=run_now,
        calendar=calendar,
        calendar_problem=problem,
    )


def ran(hms: str, **more: Any) -> dict[str, Any]:
    slot = f"2026-03-06T{hms}Z"
    return {"observedGeneration": 1, "lastSlotTime": slot, "lastScheduleTime": slot, **more}


def runs(decision: Decision) -> list[tuple[str, str]]:
    return [(r.run, r.result.value) for r in decision.status.runs]


def ready(decision: Decision) -> tuple[str, str]:
    (cond,) = [c for c in decision.status.conditions if c.type == "Ready"]
    return cond.status, cond.reason


def test_an_excluded_slot_is_recorded_excluded_and_runs_no_job() -> None:
    spec = task(exclude=[{"cron": "* 4 * * *", "reason": "backups"}])
    decision = decide(view(spec, status=ran("03:00:00")), at("04:00:05"))
    assert decision.create == []
    assert runs(decision) == [("2026-03-06T04:00:00Z", "Excluded")]
    assert (
        decision.status.runs[0].message
        == "excluded by spec.exclude[0]: backups (cron * 4 * * *, UTC)"
    )
    assert [e.reason for e in decision.events] == ["RunExcluded"]
    assert z(decision.status.lastSlotTime) == "2026-03-06T04:00:00Z"
    assert z(decision.status.lastScheduleTime) == "2026-03-06T03:00:00Z"  # nothing started
    assert z(decision.status.nextScheduleTime) == "2026-03-06T05:00:00Z"
    assert z(decision.wake_at) == "2026-03-06T05:00:00Z"
    assert decision.status.consecutiveFailures == 0
    assert decision.status.lastResult is None


def test_before_an_excluded_slot_the_task_wakes_for_it_but_shows_the_next_run() -> None:
    spec = task(exclude=[{"cron": "* 4 * * *"}])
    decision = decide(view(spec, status=ran("03:00:00")), at("03:30:00"))
    assert z(decision.status.nextScheduleTime) == "2026-03-06T05:00:00Z"
    assert z(decision.wake_at) == "2026-03-06T04:00:00Z"  # to record it when it passes


def test_after_downtime_excluded_slots_are_excluded_not_missed() -> None:
    spec = task(exclude=[{"cron": "* 5,6 * * *"}])
    decision = decide(view(spec, status=ran("03:00:00")), at("07:10:00"))
    assert [c.name for c in decision.create] == ["sync-ics-20260306070000-1"]
    assert runs(decision) == [
        ("2026-03-06T04:00:00Z", "Missed"),  # catchUp Latest ran 07:00
        ("2026-03-06T06:00:00Z", "Excluded"),
        ("2026-03-06T05:00:00Z", "Excluded"),
    ]
    assert [e.reason for e in decision.events] == ["RunExcluded", "MissedSlots", "RunStarted"]
    assert z(decision.status.lastSlotTime) == "2026-03-06T07:00:00Z"


def test_an_excluded_newest_slot_leaves_catch_up_the_newest_that_may_run() -> None:
    spec = task(exclude=[{"cron": "* 5 * * *"}])
    decision = decide(view(spec, status=ran("03:00:00")), at("05:30:00"))
    assert [c.name for c in decision.create] == ["sync-ics-20260306040000-1"]
    assert runs(decision) == [("2026-03-06T05:00:00Z", "Excluded")]
    assert z(decision.status.lastSlotTime) == "2026-03-06T05:00:00Z"


def test_a_missing_calendar_holds_the_schedule_with_one_warning_then_resumes() -> None:
    spec = task(calendarRef={"name": "holidays"})
    problem = ("CalendarNotFound", 'calendar "holidays" not found in namespace school')
    first = decide(view(spec, status=ran("03:00:00"), problem=problem), at("04:00:05"))
    assert first.create == []
    assert ready(first) == ("False", "CalendarNotFound")
    assert [e.reason for e in first.events] == ["CalendarNotFound"]
    assert z(first.status.lastSlotTime) == "2026-03-06T03:00:00Z"  # held, not handled
    assert first.status.nextScheduleTime is None
    assert first.wake_at is None  # the calendar's arrival queues the task
    held = first.status.model_dump(mode="json")
    second = decide(view(spec, status=held, problem=problem), at("04:00:30"))
    assert second.events == []  # one Event, not one per sync
    # Run-now still runs without the calendar.
    manual = decide(view(spec, status=held, problem=problem, run_now="tok"), at("04:00:40"))
    assert len(manual.create) == 1
    found = CalendarSpec()
    back = decide(view(spec, status=held, calendar=found), at("04:00:50"))
    assert [c.name for c in back.create] == ["sync-ics-20260306040000-1"]  # still on time
    assert ready(back) == ("True", "Scheduled")
    assert [e.reason for e in back.events] == ["RunStarted", "CalendarFound"]


def test_excluded_records_are_kept_apart_from_failures() -> None:
    spec = task(exclude=[{"cron": "* 4-7 * * *"}])
    failures = [
        {"run": f"2026-03-05T0{h}:00:00Z", "attempt": 1, "result": "Failed"} for h in range(5)
    ]
    decision = decide(view(spec, status=ran("03:00:00", runs=failures)), at("07:30:00"))
    assert [r for _, r in runs(decision)] == ["Excluded"] * 3 + ["Failed"] * 5
    assert [r for r, _ in runs(decision)][:3] == [
        "2026-03-06T07:00:00Z",
        "2026-03-06T06:00:00Z",
        "2026-03-06T05:00:00Z",
    ]


def test_a_schedule_excluded_as_far_as_the_search_goes_is_not_completed() -> None:
    spec = task(exclude=[{"cron": "* * * * *"}])
    decision = decide(view(spec, status=ran("03:00:00")), at("04:00:10"))
    assert runs(decision) == [("2026-03-06T04:00:00Z", "Excluded")]
    (completed,) = [c for c in decision.status.conditions if c.type == "Completed"]
    assert completed.status == "False"
    assert decision.status.nextScheduleTime is None
    assert z(decision.wake_at) == "2026-03-06T05:00:00Z"  # to record the next one


# --- the operator's index of calendars and the tasks that reference them -------------------------


def obj(name: str, rv: int, **spec: Any) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": name, "uid": f"uid-{name}", "resourceVersion": str(rv)}
    return {"metadata": meta, "spec": spec}


def test_a_calendar_event_names_every_task_that_references_it() -> None:
    store = Store()
    calendars = Calendars(store.tick)
    calendars.task_event(("ns", "a"), obj("a", 1, calendarRef={"name": "office"}))
    calendars.task_event(("ns", "b"), obj("b", 1, calendarRef={"name": "office"}))
    calendars.task_event(("ns", "c"), obj("c", 1, calendarRef={"name": "other"}))
    calendars.task_event(
        ("other", "d"), {"metadata": {}, "spec": {"calendarRef": {"name": "office"}}}
    )
    assert calendars.event("ADDED", obj("office", 5)) == (("ns", "a"), ("ns", "b"))
    assert calendars.event(RESYNC, obj("office", 5)) == ()  # nothing new
    assert calendars.get(("ns", "office")) == obj("office", 5)
    # A task that moves to another calendar (or is deleted) is no longer named.
    calendars.task_event(("ns", "b"), obj("b", 2, calendarRef={"name": "other"}))
    calendars.task_event(("ns", "a"), None)
    assert calendars.event("MODIFIED", obj("office", 6)) == ()
    calendars.task_event(("ns", "e"), obj("e", 1, calendarRef={"name": "office"}))
    assert calendars.event("DELETED", obj("office", 7)) == (("ns", "e"),)
    assert calendars.get(("ns", "office")) is None
    # A calendar a full list no longer shows is forgotten, and its tasks are named.
    assert not calendars.listed_in("ns")
    calendars.event("ADDED", obj("office", 8))
    mark = store.tick()
    assert calendars.resync_done(mark, set()) == (("ns", "e"),)
    assert calendars.listed_in("ns")

"""``spec.schedules``: several cron entries, each in its own zone; the slots are their union.

Every expectation is a literal UTC instant worked out by hand (transitions as in test_cron_dst.py:
America/New_York springs forward at 2026-03-08T07:00Z and falls back at 2026-11-01T06:00Z;
Australia/Lord_Howe moves from +11 to +10:30 at 2026-04-04T15:00Z). A slot that two entries share
is listed once, and the DST rule applies to each entry in its own zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nightshift.models import SpecError, TaskStatus, parse_spec
from nightshift.reconcile import TaskView, decide
from nightshift.schedule import describe, next_fire_times, plan_for, slots_between, sources

CONTAINERS = [{"name": "main", "image": "busybox"}]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(entries: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    template = {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}
    return {"schedules": entries, **more, "jobTemplate": template}


def between(entries: list[dict[str, Any]], start: str, end: str, **more: Any) -> list[str]:
    """Every slot in [start, end)."""
    plan = plan_for(parse_spec(spec(entries, **more)), "ns", "t")
    found = slots_between(plan, utc(start) - timedelta(seconds=1), utc(end), limit=500)
    return [z(s) for s in found if s < utc(end)]


NY = "America/New_York"

UNION = [
    pytest.param(
        [{"cron": "0 9 * * MON-FRI"}, {"cron": "0 12 * * SAT,SUN"}],
        "2026-03-06T00:00:00Z",  # Friday
        "2026-03-10T00:00:00Z",
        [
            "2026-03-06T09:00:00Z",
            "2026-03-07T12:00:00Z",
            "2026-03-08T12:00:00Z",
            "2026-03-09T09:00:00Z",
        ],
        id="weekdays-and-weekends",
    ),
    pytest.param(
        [{"cron": "0 */6 * * *"}, {"cron": "0 */4 * * *"}],
        "2026-03-01T00:00:00Z",
        "2026-03-01T13:00:00Z",
        [
            "2026-03-01T00:00:00Z",  # both: once
            "2026-03-01T04:00:00Z",
            "2026-03-01T06:00:00Z",
            "2026-03-01T08:00:00Z",
            "2026-03-01T12:00:00Z",  # both: once
        ],
        id="a-shared-slot-is-one-slot",
    ),
    pytest.param(
        [{"cron": "0 14 * * *"}, {"cron": "0 9 * * *", "timeZone": NY}],
        "2026-03-07T00:00:00Z",
        "2026-03-09T00:00:00Z",
        [
            "2026-03-07T14:00:00Z",  # 09:00 EST is 14:00Z: shared, once
            "2026-03-08T13:00:00Z",  # 09:00 EDT
            "2026-03-08T14:00:00Z",
        ],
        id="zones-that-coincide-until-spring-forward",
    ),
    pytest.param(
        [{"cron": "30 2 * * *", "timeZone": NY}, {"cron": "30 7 * * *"}],
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        [
            "2026-03-07T07:30:00Z",  # 02:30 EST = 07:30Z: shared, once
            "2026-03-08T07:00:00Z",  # 02:30 does not exist: the jump to 03:00 EDT
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:30:00Z",  # 02:30 EDT
            "2026-03-09T07:30:00Z",
        ],
        id="spring-forward-fixed-hour-fires-at-the-jump",
    ),
    pytest.param(
        [{"cron": "30 1 * * *", "timeZone": NY}, {"cron": "30 6 * * *"}],
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        [
            "2026-11-01T05:30:00Z",  # 01:30 EDT, the first occurrence only
            "2026-11-01T06:30:00Z",  # the UTC entry (01:30 EST is not fired by the NY entry)
        ],
        id="fall-back-fixed-hour-fires-once-per-entry",
    ),
    pytest.param(
        [{"cron": "0 * * * *", "timeZone": NY}, {"cron": "0 * * * *"}],
        "2026-11-01T04:00:00Z",  # local midnight (EDT)
        "2026-11-02T05:00:00Z",  # the next local midnight (EST): 25 hours
        [z(utc("2026-11-01T04:00:00Z") + timedelta(hours=h)) for h in range(25)],
        id="fall-back-hourly-in-two-zones-25-slots-not-50",
    ),
    pytest.param(
        [{"cron": "0 * * * *", "timeZone": "Australia/Lord_Howe"}, {"cron": "0 * * * *"}],
        "2026-04-04T13:00:00Z",
        "2026-04-04T17:00:00Z",
        [
            "2026-04-04T13:00:00Z",  # +11: local hours are UTC hours, shared
            "2026-04-04T14:00:00Z",
            "2026-04-04T15:00:00Z",
            "2026-04-04T15:30:00Z",  # +10:30 from 15:00Z: local hours fall on :30 UTC
            "2026-04-04T16:00:00Z",
            "2026-04-04T16:30:00Z",
        ],
        id="half-hour-shift-splits-the-shared-slots",
    ),
]


@pytest.mark.parametrize(("entries", "start", "end", "expected"), UNION)
def test_slots_are_the_union(
    entries: list[dict[str, Any]], start: str, end: str, expected: list[str]
) -> None:
    assert between(entries, start, end) == expected


def test_entries_without_a_zone_use_the_task_zone() -> None:
    entries = [{"cron": "0 9 * * *"}, {"cron": "0 9 * * *", "timeZone": "UTC"}]
    assert between(entries, "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z", timeZone=NY) == [
        "2026-01-05T09:00:00Z",
        "2026-01-05T14:00:00Z",
    ]


def test_sources_name_every_entry_that_shares_a_slot() -> None:
    plan = plan_for(parse_spec(spec([{"cron": "0 */6 * * *"}, {"cron": "0 */4 * * *"}])), "n", "t")
    assert sources(plan, utc("2026-03-01T12:00:00Z")) == (0, 1)
    assert sources(plan, utc("2026-03-01T06:00:00Z")) == (0,)
    assert sources(plan, utc("2026-03-01T08:00:00Z")) == (1,)
    assert sources(plan, utc("2026-03-01T07:00:00Z")) == ()


def test_h_is_hashed_per_task_in_every_entry() -> None:
    plan = plan_for(parse_spec(spec([{"cron": "H 3 * * *"}, {"cron": "H 15 * * *"}])), "a", "b")
    first, second = next_fire_times(plan, utc("2026-01-01T00:00:00Z"), 2)
    assert first.minute == second.minute  # the same task: the same hashed minute
    assert (first.hour, second.hour) == (3, 15)


def test_an_entry_that_never_fires_is_rejected_naming_it() -> None:
    entries = [{"cron": "0 6 * * *"}, {"cron": "0 0 30 2 *"}]
    with pytest.raises(SpecError, match=r"spec\.schedules\[1\]\.cron: .*never fires"):
        parse_spec(spec(entries))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedules": [{"cron": "61 * * * *"}]}, "spec.schedules[0].cron: minute field '61'"),
        (
            {"schedules": [{"cron": "@daily"}, {"cron": "* * * * *", "timeZone": "Mars/Base"}]},
            'spec.schedules[1].timeZone: unknown time zone "Mars/Base"',
        ),
        ({"schedules": []}, "spec.schedules: List should have at least 1 item"),
        (
            {"schedules": [{"cron": "@daily"}], "schedule": "@daily"},
            "spec: set exactly one of schedule, interval, at and schedules "
            "(given: schedule, schedules)",
        ),
        ({"schedules": [{"cron": "@daily", "zone": "UTC"}]}, "spec.schedules[0].zone: is not"),
    ],
)
def test_invalid_schedules_name_the_field(fields: dict[str, Any], message: str) -> None:
    template = {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}
    with pytest.raises(SpecError) as raised:
        parse_spec({**fields, "jobTemplate": template})
    assert message in str(raised.value)


def test_describe_lists_the_entries_and_stays_within_the_status_bound() -> None:
    two = parse_spec(spec([{"cron": "0 9 * * MON-FRI", "timeZone": NY}, {"cron": "0 12 * * SAT"}]))
    assert describe(two) == "0 9 * * MON-FRI (America/New_York); 0 12 * * SAT"
    many = parse_spec(
        spec([{"cron": f"{i} {i} * * *", "timeZone": "Pacific/Chatham"} for i in range(16)])
    )
    text = describe(many)
    assert len(text) <= 300
    assert text.endswith("… (16 schedules)")
    TaskStatus(schedule=text)  # the status accepts it


def test_the_operator_runs_a_shared_slot_once() -> None:
    task = parse_spec(spec([{"cron": "0 */6 * * *"}, {"cron": "0 */4 * * *"}]))
    view = TaskView(
        namespace="ns",
        name="t",
        uid="u",
        generation=1,
        created=utc("2026-03-01T00:00:00Z"),
        spec=task,
        spec_error=None,
        status=TaskStatus(observedGeneration=1, lastSlotTime=utc("2026-03-01T08:00:00Z")),
    )
    decision = decide(view, utc("2026-03-01T12:00:05Z"))
    assert [c.name for c in decision.create] == ["t-20260301120000-1"]
    assert decision.wake_at == utc("2026-03-01T16:00:00Z")
    assert decision.status.schedule == "0 */6 * * *; 0 */4 * * *"

"""``next_fire_times``: the upcoming fire times `kubectl nightshift next` and `nightshift preview`
print, which must be the instants the operator really starts runs at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nightshift.models import TaskSpec, parse_spec
from nightshift.schedule import next_fire_times, plan_for

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CONTAINERS = [{"name": "main", "image": "busybox"}]


def spec(**fields: Any) -> dict[str, Any]:
    return {**fields, "jobTemplate": {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}}


def upcoming(task: TaskSpec, now: datetime, count: int, *, runs_so_far: int = 0) -> list[datetime]:
    plan = plan_for(task, "ns", "t")
    return next_fire_times(plan, now, count, max_runs=task.maxRuns, runs_so_far=runs_so_far)


def test_upcoming_in_the_task_zone_across_dst() -> None:
    task = parse_spec(spec(schedule="30 2 * * *", timeZone="America/New_York"))
    start = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    times = upcoming(task, start, 3)
    assert [t.astimezone(UTC).isoformat() for t in times] == [
        "2026-03-07T07:30:00+00:00",
        "2026-03-08T07:00:00+00:00",  # 02:30 does not exist: fires at the jump to 03:00 EDT
        "2026-03-09T06:30:00+00:00",
    ]


def test_upcoming_honours_max_runs_window_and_one_shots() -> None:
    limited = parse_spec(spec(interval="1h", maxRuns=5))
    assert len(upcoming(limited, NOW, 10, runs_so_far=3)) == 2
    assert upcoming(limited, NOW, 10, runs_so_far=5) == []
    window = parse_spec(spec(interval="1h", endAt="2026-11-23T13:00:00Z"))
    assert len(upcoming(window, NOW, 10)) == 2  # 11:00, 12:00 (13:00 is excluded)
    past = parse_spec(spec(at="2026-11-01T00:00:00Z"))
    assert upcoming(past, NOW, 5) == []
    future = parse_spec(spec(at="2026-12-01T00:00:00Z"))
    assert upcoming(future, NOW, 5) == [datetime(2026, 12, 1, tzinfo=UTC)]


def test_upcoming_includes_jitter_and_a_slot_whose_jitter_has_not_passed() -> None:
    task = parse_spec(spec(interval="1h", jitter="30m"))
    times = upcoming(task, NOW, 4)
    assert len(times) == 4
    assert all(t > NOW for t in times)
    assert times == sorted(times)
    just_after_slot = NOW + timedelta(seconds=1)  # slot 10:00 + jitter may still be ahead
    later = upcoming(task, just_after_slot, 4)
    assert all(t > just_after_slot for t in later)
    assert later[0] == times[0] or later[0] == times[1]


def test_a_start_at_the_first_instant_of_the_calendar_does_not_underflow() -> None:
    task = parse_spec(spec(at="0001-01-01T01:00:00Z", jitter="1h"))
    first = datetime.min.replace(tzinfo=UTC)
    assert len(upcoming(task, first, 1)) == 1


def test_until_stops_at_the_window_end_without_changing_what_comes_before() -> None:
    hourly = parse_spec(spec(schedule="0 * * * *", timeZone="America/New_York"))
    plan = plan_for(hourly, "ns", "t")
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # local midnight of the spring-forward day
    midnight = datetime(2026, 3, 9, 4, 0, tzinfo=UTC)  # the next one, 23 hours later
    day = next_fire_times(plan, start - timedelta(seconds=1), 1000, until=midnight)
    assert len(day) == 24  # the day's 23 hours, and ``until`` itself
    assert day == next_fire_times(plan, start - timedelta(seconds=1), 24)
    jittered = parse_spec(spec(interval="1h", jitter="50m"))
    plan = plan_for(jittered, "ns", "t")
    until = NOW + timedelta(hours=5)
    capped = next_fire_times(plan, NOW, 100, until=until)
    assert capped == [t for t in next_fire_times(plan, NOW, 10) if t <= until]

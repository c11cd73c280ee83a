"""`kubectl nightshift` and `nightshift preview` for several schedules, calendars and backfills,
against the fake session of test_plugin."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_plugin import FakeSession, fake, run_main, spec

from nightshift.cli import main as nightshift_main
from nightshift.kubectl import commands as kubectl_commands

__all__ = ["fake"]  # the fixture, imported for the tests below

NY = "America/New_York"
SEVERAL = spec(
    timeZone=NY,
    schedules=[{"cron": "0 9 * * MON-FRI"}, {"cron": "0 14 * * *", "timeZone": "UTC"}],
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_next_names_the_schedules_each_time_comes_from(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.tasks["t"]["spec"] = SEVERAL
    monkeypatch.setattr(kubectl_commands, "utc_now", lambda: at("2026-03-06T00:00:00Z"))
    code, out, _ = run_main(capsys, "next", "t", "-n", "3")
    assert code == 0
    assert out.splitlines() == [
        "LOCAL (America/New_York)    UTC                    SCHEDULES",
        "2026-03-06T09:00:00-05:00   2026-03-06T14:00:00Z   "
        "[0] 0 9 * * MON-FRI (America/New_York) + [1] 0 14 * * * (UTC)",
        "2026-03-07T09:00:00-05:00   2026-03-07T14:00:00Z   [1] 0 14 * * * (UTC)",
        "2026-03-08T10:00:00-04:00   2026-03-08T14:00:00Z   [1] 0 14 * * * (UTC)",
    ]
    data = json.loads(run_main(capsys, "next", "t", "-n", "1", "-o", "json")[1])
    assert data["times"][0]["schedules"] == [
        "0 9 * * MON-FRI (America/New_York)",
        "0 14 * * * (UTC)",
    ]


def test_preview_of_several_schedules_notes_the_union_and_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "t.yaml"
    obj = {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": "t"},
        "spec": SEVERAL,
    }
    manifest.write_text(yaml.safe_dump(obj))
    args = ["preview", str(manifest), "--from", "2026-03-09T00:00:00Z", "-n", "2"]
    assert nightshift_main(args) == 0
    out, err = capsys.readouterr()
    # Standard output stays one timestamp per line (scripts read it); the note goes to stderr.
    assert out.splitlines() == ["2026-03-09T09:00:00-04:00", "2026-03-09T10:00:00-04:00"]
    assert "the union of 2 schedules" in err
    assert nightshift_main([*args, "--explain"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "2026-03-09T09:00:00-04:00  schedules[0] 0 9 * * MON-FRI (America/New_York)",
        "2026-03-09T10:00:00-04:00  schedules[1] 0 14 * * * (UTC)",
    ]
    assert err == ""


def test_next_and_preview_agree_on_several_schedules(
    fake: FakeSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    task: dict[str, Any] = {**SEVERAL, "jitter": "2m"}
    fake.tasks["t"]["spec"] = task
    now = "2026-03-07T14:00:30Z"  # a slot just passed whose jitter may not have
    monkeypatch.setattr(kubectl_commands, "utc_now", lambda: at(now))
    listed = [
        r["local"] for r in json.loads(run_main(capsys, "next", "t", "-o", "json")[1])["times"]
    ]
    manifest = tmp_path / "t.yaml"
    obj = {"apiVersion": "nightshift.dev/v1alpha1", "kind": "ScheduledTask", **fake.tasks["t"]}
    manifest.write_text(yaml.safe_dump(obj))
    assert nightshift_main(["preview", str(manifest), "--from", now, "--count", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == listed


# --- calendars ------------------------------------------------------------------------------------

WEEKENDS = {"timeZone": "Europe/Zurich", "exclude": [{"cron": "* * * * SAT,SUN", "reason": "w/e"}]}


def test_next_skips_the_calendar_and_notes_a_missing_one(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.tasks["t"]["spec"] = spec(schedule="0 * * * *", calendarRef={"name": "office"})
    calendars: dict[str, dict[str, Any]] = {"office": {"spec": WEEKENDS}}
    monkeypatch.setattr(fake, "get_calendar", calendars.get, raising=False)
    monkeypatch.setattr(kubectl_commands, "utc_now", lambda: at("2026-03-06T21:30:00Z"))
    data = json.loads(run_main(capsys, "next", "t", "-n", "3", "-o", "json")[1])
    assert [t["utc"] for t in data["times"]] == [
        "2026-03-06T22:00:00Z",
        "2026-03-08T23:00:00Z",  # Monday 00:00 in Zurich: the weekend is excluded
        "2026-03-09T00:00:00Z",
    ]
    del calendars["office"]
    code, out, err = run_main(capsys, "next", "t", "-n", "2")
    assert code == 0
    assert 'calendar "office" not found in namespace ns' in err
    assert "2026-03-06T23:00:00Z" in out  # the bare schedule (Saturday in Zurich), noted


def test_preview_applies_a_calendar_from_the_same_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": "t"},
        "spec": spec(schedule="0 * * * *", calendarRef={"name": "office"}),
    }
    calendar = {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "Calendar",
        "metadata": {"name": "office"},
        "spec": WEEKENDS,
    }
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump_all([task, calendar]))
    args = ["--from", "2026-03-06T21:30:00Z", "-n", "2"]
    assert nightshift_main(["preview", str(both), *args]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["2026-03-06T22:00:00+00:00", "2026-03-08T23:00:00+00:00"]
    assert err == ""
    alone = tmp_path / "task.yaml"
    alone.write_text(yaml.safe_dump(task))
    assert nightshift_main(["preview", str(alone), *args]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1] == "2026-03-06T23:00:00+00:00"
    assert "calendar 'office' is not in" in err

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


# --- backfill -------------------------------------------------------------------------------------


def slot(hm: str, state: str, **more: Any) -> dict[str, Any]:
    return {"run": f"2026-11-01T{hm}:00Z", "state": state, "attempt": 1, "firstAttempt": 1, **more}


class Backfills:
    """Created Backfills, and the statuses successive reads of each see."""

    def __init__(self, fake: FakeSession, statuses: list[dict[str, Any]]) -> None:
        self.fake = fake
        self.created: list[dict[str, Any]] = []
        self.statuses = iter(statuses)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        obj = {**body, "metadata": {"name": "b1", **body["metadata"]}}
        self.created.append(obj)
        return obj

    def get(self, name: str) -> dict[str, Any]:
        return {**self.created[-1], "status": next(self.statuses)}


def install(
    fake: FakeSession, monkeypatch: pytest.MonkeyPatch, statuses: list[dict[str, Any]]
) -> Backfills:
    backfills = Backfills(fake, statuses)
    monkeypatch.setattr(fake, "create_backfill", backfills.create, raising=False)
    monkeypatch.setattr(fake, "get_backfill", backfills.get, raising=False)
    return backfills


RANGE = ["--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00+01:00"]


def test_backfill_creates_the_resource_and_follows_it_with_a_progress_bar(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"total": 2, "pending": 0, "skipped": 0}
    backfills = install(
        fake,
        monkeypatch,
        [
            {},  # not planned yet: no bar
            {"plannedAt": "x", "phase": "Running", **counts, "running": 1, "succeeded": 1},
            {"plannedAt": "x", "phase": "Succeeded", **counts, "succeeded": 2},
        ],
    )
    code, out, err = run_main(capsys, "backfill", "t", *RANGE, "--parallelism", "2", "--wait")
    assert code == 0
    (body,) = backfills.created
    assert body["kind"] == "Backfill"
    assert body["metadata"]["generateName"] == "t-"
    assert body["spec"] == {
        "taskRef": {"name": "t"},
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-01T23:00:00Z",  # written in UTC
        "reprocess": "Missing",
        "parallelism": 2,
        "overlapPolicy": "Wait",
        "dryRun": False,
    }
    assert out.splitlines() == [
        "backfill.nightshift.dev/b1 created: t from 2026-11-01T00:00:00Z to 2026-11-01T23:00:00Z "
        "(reprocess Missing)",
        "backfill b1: Succeeded, 2/2 slots: 2 succeeded, 0 failed, 0 skipped, 0 running",
    ]
    assert err.splitlines() == [
        "[###############>>>>>>>>>>>>>>>] 1/2 slots: 1 succeeded, 0 failed, 0 skipped, 1 running",
        "[##############################] 2/2 slots: 2 succeeded, 0 failed, 0 skipped, 0 running",
    ]


def test_backfill_wait_exits_1_when_a_run_failed(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install(fake, monkeypatch, [{"plannedAt": "x", "phase": "Failed", "total": 1, "failed": 1}])
    code, out, _ = run_main(capsys, "backfill", "t", *RANGE, "--wait", "--reprocess", "Failed")
    assert code == 1
    assert out.splitlines()[-1].startswith("backfill b1: Failed, 1/1 slots")


def test_backfill_dry_run_prints_the_plan(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {
        "plannedAt": "x",
        "phase": "DryRun",
        "leftToSchedule": 3,
        "slots": [
            slot("03:00", "Pending", firstAttempt=2),
            slot("04:00", "Skipped", reason="already ran: Succeeded (attempt 1)"),
        ],
    }
    backfills = install(fake, monkeypatch, [plan])
    code, out, _ = run_main(capsys, "backfill", "t", *RANGE, "--dry-run", "--name", "look")
    assert code == 0
    assert backfills.created[0]["metadata"]["name"] == "look"
    assert backfills.created[0]["spec"]["dryRun"] is True
    assert out.splitlines()[1:] == [
        "SLOT                   ACTION   ATTEMPT   REASON",
        "2026-11-01T03:00:00Z   run      2",
        "2026-11-01T04:00:00Z   skip     -         already ran: Succeeded (attempt 1)",
        "3 later slot(s) in the range are the schedule's own",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "argument --from: invalid time 'yesterday'"),
        (["--from", "2026-11-01T00:00:00"], "needs a UTC offset"),
        (["--reprocess", "Some"], "invalid choice: 'Some'"),
    ],
)
def test_backfill_usage_errors(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    main_args = ["backfill", "t", "--to", "2026-11-02T00:00:00Z", *args]
    if "--from" not in args:
        main_args += ["--from", "2026-11-01T00:00:00Z"]
    with pytest.raises(SystemExit) as exited:
        run_main(capsys, *main_args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_backfill_range_backwards_is_one_error_line(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install(fake, monkeypatch, [])
    args = ["--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z"]
    assert run_main(capsys, "backfill", "t", *args) == (
        1,
        "",
        "Error: --from must be before --to\n",
    )


def test_history_lists_backfill_runs_under_their_backfill(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["status"] = {
        "queued": {"run": "2026-11-02T05:00:00Z", "queuedAt": "2026-11-02T05:00:01Z"},
        "runs": [{"run": "2026-11-02T04:00:00Z", "attempt": 1, "result": "Succeeded"}],
    }
    fake.backfills = [
        {
            "metadata": {"name": "nov", "creationTimestamp": "2026-11-02T06:00:00Z"},
            "spec": {
                "taskRef": {"name": "t"},
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-11-02T00:00:00Z",
                "reprocess": "Failed",
            },
            "status": {
                "phase": "Running",
                "progress": "1/3",
                "slots": [
                    slot(
                        "01:00",
                        "Failed",
                        attempt=3,
                        firstAttempt=2,
                        result="Failed",
                        exitCode=4,
                        message="boom",
                        startedAt="2026-11-02T06:00:00Z",
                        finishedAt="2026-11-02T06:00:05Z",
                    ),
                    slot("02:00", "Skipped", reason="already succeeded"),
                    slot("03:00", "Pending"),
                ],
            },
        },
        {"metadata": {"name": "other-task"}, "spec": {"taskRef": {"name": "u"}}},
    ]
    code, out, _ = run_main(capsys, "history", "t")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["2026-11-02T05:00:00Z", "1", "Queued"]
    assert lines[2].split()[:3] == ["2026-11-02T04:00:00Z", "1", "Succeeded"]
    assert lines[4] == (
        "backfill nov (2026-11-01T00:00:00Z to 2026-11-02T00:00:00Z, reprocess Failed): "
        "Running, 1/3 slots"
    )
    assert lines[6].split() == [
        "2026-11-01T01:00:00Z", "3", "Failed", "4", "2026-11-02T06:00:00Z", "5s", "boom"
    ]  # fmt: skip
    assert len(lines) == 7  # the skipped and pending slots are not runs
    data = json.loads(run_main(capsys, "history", "t", "-o", "json")[1])
    assert [b["name"] for b in data["backfills"]] == ["nov"]
    assert [r["run"] for r in data["backfills"][0]["runs"]] == ["2026-11-01T01:00:00Z"]

"""`nightshift preview`: the offline fire-time listing a user runs first."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightshift.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

TASK = """\
apiVersion: nightshift.dev/v1alpha1
kind: ScheduledTask
metadata: {{name: t, namespace: ns}}
spec:
{spec}
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{{name: main, image: busybox}}]
"""


def write(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(TASK.format(spec=spec))
    return path


def preview(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["preview", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.mark.parametrize(
    ("spec", "start", "expected"),
    [
        pytest.param(
            '  schedule: "30 2 * * *"\n  timeZone: America/New_York',
            "2026-03-07T00:00:00Z",
            ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
            id="spring-forward-skipped-time-fires-at-the-jump",
        ),
        pytest.param(
            '  schedule: "30 1 * * *"\n  timeZone: America/New_York',
            "2026-10-31T12:00:00Z",
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"],
            id="fall-back-repeated-time-fires-once",
        ),
        pytest.param(
            '  schedule: "30 * * * *"\n  timeZone: America/New_York',
            "2026-11-01T04:00:00Z",
            ["2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00"],
            id="hourly-follows-elapsed-time",
        ),
        pytest.param(
            "  interval: 6h",
            "2026-01-01T01:00:00Z",
            ["2026-01-01T06:00:00+00:00", "2026-01-01T12:00:00+00:00", "2026-01-01T18:00:00+00:00"],
            id="interval-aligned-to-epoch",
        ),
        pytest.param(
            '  at: "2026-12-01T03:00:00+01:00"\n  timeZone: Europe/Zurich',
            "2026-01-01T00:00:00Z",
            ["2026-12-01T03:00:00+01:00"],
            id="one-shot",
        ),
    ],
)
def test_preview_lists_fire_times(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    start: str,
    expected: list[str],
) -> None:
    code, lines, _ = preview(capsys, str(write(tmp_path, spec)), "--from", start, "--count", "3")
    assert code == 0
    assert lines == expected


def test_invalid_zone_is_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '  schedule: "@daily"\n  timeZone: Mars/Olympus')
    code, lines, err = preview(capsys, str(path))
    assert code == 2
    assert lines == []
    assert err == 'spec.timeZone: unknown time zone "Mars/Olympus"\n'


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('  schedule: "0 0 31 2 *"', "spec.schedule: cron expression '0 0 31 2 *' never fires"),
        ('  schedule: "* * *"', "spec.schedule: cron expression '* * *' has 3 fields"),
        ("  interval: soon", "spec.interval: invalid duration 'soon'"),
        ('  schedule: "@daily"\n  interval: 1h', "spec: set exactly one of schedule"),
        ('  schedule: "@daily"\n  concurrencyPolicy: Sometimes', "spec.concurrencyPolicy: "),
        ('  schedule: "@daily"\n  colour: blue', "spec.colour: is not a known field"),
    ],
)
def test_invalid_specs_exit_2_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    code, lines, err = preview(capsys, str(write(tmp_path, spec)))
    assert code == 2
    assert lines == []
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_reads_stdin_and_defaults_to_now(monkeypatch: pytest.MonkeyPatch) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nightshift", "preview", "-", "-n", "2"],
        input=TASK.format(spec="  interval: 1m"),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(":00+00:00")


def test_max_runs_limits_the_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "  interval: 1h\n  maxRuns: 2")
    _, lines, _ = preview(capsys, str(path), "--from", "2026-01-01T00:00:00Z", "-n", "5")
    assert len(lines) == 2


def test_runs_already_made_count_against_max_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A manifest saved with `kubectl get stask -o yaml` carries status.runCount.
    path = tmp_path / "task.yaml"
    path.write_text(TASK.format(spec="  interval: 1h\n  maxRuns: 5") + "status: {runCount: 3}\n")
    _, lines, _ = preview(capsys, str(path), "--from", "2026-01-01T00:00:00Z", "-n", "5")
    assert lines == ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]


def test_a_slot_before_from_whose_jitter_has_not_passed_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "  interval: 1h\n  jitter: 59m")
    _, hourly, _ = preview(capsys, str(path), "--from", "2026-01-01T00:00:00Z", "-n", "2")
    assert hourly[0].startswith("2026-01-01T00:")  # the 00:00 slot fires after 00:00
    # One second after that slot, its fire time is still ahead, so it is still listed.
    _, later, _ = preview(capsys, str(path), "--from", "2026-01-01T00:00:01Z", "-n", "2")
    assert later == hourly


def test_suspended_task_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "  interval: 1h\n  suspend: true")
    code, lines, err = preview(capsys, str(path), "--from", "2026-01-01T00:00:00Z", "-n", "1")
    assert code == 0
    assert lines == ["2026-01-01T01:00:00+00:00"]
    assert "suspend" in err


def test_several_tasks_need_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = TASK.format(spec="  interval: 1h")
    path = tmp_path / "two.yaml"
    path.write_text(one + "---\n" + one.replace("name: t,", "name: u,"))
    code, _, err = preview(capsys, str(path))
    assert code == 2
    assert "--name" in err
    code, lines, _ = preview(capsys, str(path), "--name", "u", "-n", "1")
    assert code == 0
    assert len(lines) == 1


def test_missing_file_and_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = preview(capsys, str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    code, _, err = preview(capsys, str(bad))
    assert code == 2
    assert "not valid YAML" in err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_previews(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = preview(capsys, str(example), "--from", "2026-01-01T00:00:00Z", "-n", "3")
    assert code == 0
    assert lines


def test_ten_thousand_fire_times_is_a_cli_call_not_a_wait(tmp_path: Path) -> None:
    # Not a timing assertion: it proves 10,000 fire times come out, in order; the time is
    # reported by `make bench`-style measurement in the closing notes.
    path = write(tmp_path, '  schedule: "* * * * *"\n  timeZone: Europe/Berlin')
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "nightshift", "preview", str(path), "--from",
         "2026-01-01T00:00:00Z", "-n", "10000"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 10000
    assert lines == sorted(lines)
    print(f"10,000 fire times in {time.perf_counter() - started:.2f} s (whole CLI)")

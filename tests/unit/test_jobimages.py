"""The example job programs keep the contract in jobimages/README.md (run as plain programs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "jobimages"


def run(name: str, tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    message = tmp_path / "termination-log"
    result = subprocess.run(
        [sys.executable, str(IMAGES / name / "main.py"), *args],
        env={"TERMINATION_MESSAGE_PATH": str(message), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, message.read_text() if message.exists() else ""


def test_hello_succeeds_with_a_summary(tmp_path: Path) -> None:
    code, message = run("hello", tmp_path, NIGHTSHIFT_SCHEDULED_AT="2026-11-23T03:00:00Z")
    assert code == 0
    assert message == "greeted world for 2026-11-23T03:00:00Z"


@pytest.mark.parametrize(("attempt", "code"), [("1", 75), ("2", 75), ("3", 0)])
def test_flaky_fails_n_times_then_succeeds(tmp_path: Path, attempt: str, code: int) -> None:
    got, message = run("flaky", tmp_path, "--fail-times", "2", NIGHTSHIFT_ATTEMPT=attempt)
    assert got == code
    assert message.startswith(f"attempt {attempt}:")


def test_flaky_says_the_chosen_message(tmp_path: Path) -> None:
    got, message = run(
        "flaky", tmp_path, "--fail-times", "9", "--exit-code", "1", "--message", "401 from the API",
        NIGHTSHIFT_ATTEMPT="4",
    )  # fmt: skip
    assert (got, message) == (1, "attempt 4: 401 from the API")


def test_every_example_names_an_image_built_here() -> None:
    """The examples run on the real node, which has only the images `make images` builds."""
    import yaml

    built = {
        f"localhost/nightshift/jobs-{d.name}:dev"
        for d in IMAGES.iterdir()
        if (d / "Dockerfile").exists()
    }
    for example in sorted((IMAGES.parent / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            if not doc or doc.get("kind") != "ScheduledTask":
                continue
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                assert container["image"] in built, (example.name, container["image"])


def test_sleeper_honours_sigterm(tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    proc = subprocess.Popen(
        [sys.executable, str(IMAGES / "sleeper" / "main.py"), "--seconds", "60"],
        env={"TERMINATION_MESSAGE_PATH": str(message)},
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert message.read_text().startswith("stopped by SIGTERM after")


def test_sleeper_finishes(tmp_path: Path) -> None:
    assert run("sleeper", tmp_path, "--seconds", "0.1") == (0, "worked 0 s")


def test_report_writes_an_idempotent_result(tmp_path: Path) -> None:
    data = tmp_path / "minutes.csv"
    data.write_text("team,minutes\nops,30\ndata,45\nops,20\n")
    out = tmp_path / "out"
    env = {"NIGHTSHIFT_SCHEDULED_AT": "2026-11-23T03:00:00Z"}
    for _ in range(2):  # a retry of the same slot overwrites, it does not add a second report
        code, message = run(
            "report", tmp_path, "--input", str(data), "--output-dir", str(out), **env
        )
        assert code == 0
    assert message == "2 teams, 95 minutes; busiest: ops"
    files = list(out.iterdir())
    assert [f.name for f in files] == ["report-2026-11-23T030000Z.json"]
    assert json.loads(files[0].read_text()) == {"data": 45, "ops": 50}


def test_report_exit_codes_separate_transient_from_bad_input(tmp_path: Path) -> None:
    missing = run("report", tmp_path, "--input", str(tmp_path / "nope.csv"), "--output-dir", "o")
    assert missing[0] == 75
    bad = tmp_path / "bad.csv"
    bad.write_text("team,minutes\nops,many\n")
    code, message = run("report", tmp_path, "--input", str(bad), "--output-dir", str(tmp_path))
    assert code == 2
    assert message.startswith("bad input")

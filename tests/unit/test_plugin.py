"""`kubectl nightshift` without a cluster: the pure helpers, the command line and the commands
against a fake API session (the real API is covered by tests/integration/test_kubectl_plugin.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from nightshift.cli import main as nightshift_main
from nightshift.jobs import ANNOTATION_RUN_NOW, job_name, manual_run_id
from nightshift.kubectl import commands as kubectl_commands
from nightshift.kubectl import main
from nightshift.kubectl import session as kubectl_session
from nightshift.kubectl.commands import (
    ANNOTATION_SUSPEND_REASON,
    choose_container,
    newest_pod,
    select_attempt,
)
from nightshift.kubectl.parser import help_texts, parse_args
from nightshift.kubectl.render import (
    HISTORY_HEADERS,
    RunProgress,
    format_run_duration,
    history_rows,
    list_table,
    one_line,
    render_table,
    result_line,
    run_progress,
    task_row,
)
from nightshift.kubectl.session import (
    PluginError,
    Session,
    api_error_message,
    namespace_from_contexts,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CONTAINERS = [{"name": "main", "image": "busybox"}]


def spec(**fields: Any) -> dict[str, Any]:
    return {**fields, "jobTemplate": {"spec": {"template": {"spec": {"containers": CONTAINERS}}}}}


def record(run: str, attempt: int = 1, result: str = "Succeeded", **extra: Any) -> dict[str, Any]:
    return {"run": run, "attempt": attempt, "result": result, **extra}


# --- small helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started", "finished", "expected"),
    [
        (None, "2026-11-23T10:00:00Z", "-"),
        ("2026-11-23T10:00:00Z", None, "-"),
        ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", "0s"),
        ("2026-11-23T10:00:00Z", "2026-11-23T10:01:05Z", "1m5s"),
        ("2026-11-22T08:00:00Z", "2026-11-23T10:00:01Z", "1d2h1s"),
        ("2026-11-23T10:00:05Z", "2026-11-23T10:00:00Z", "0s"),  # clock skew: never negative
        ("garbage", "2026-11-23T10:00:00Z", "-"),
    ],
)
def test_format_run_duration(started: str | None, finished: str | None, expected: str) -> None:
    assert format_run_duration(started, finished) == expected


def test_one_line_collapses_whitespace_and_cuts() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line(None) == ""
    assert one_line("x" * 60, 60) == "x" * 60
    cut = one_line("y" * 61, 60)
    assert len(cut) == 60
    assert cut.endswith("...")


def test_render_table_aligns_columns_without_trailing_blanks() -> None:
    text = render_table(["A", "LONGER"], [["wide-cell", "1"], ["b", ""]])
    assert text.splitlines() == ["A           LONGER", "wide-cell   1", "b"]


@pytest.mark.parametrize(
    ("context", "expected"),
    [(None, "team-a"), ("other", "team-b"), ("bare", "default"), ("missing", "default")],
)
def test_namespace_from_contexts(context: str | None, expected: str) -> None:
    contexts = [
        {"name": "main", "context": {"cluster": "c", "namespace": "team-a"}},
        {"name": "other", "context": {"cluster": "c", "namespace": "team-b"}},
        {"name": "bare", "context": {"cluster": "c"}},
    ]
    assert namespace_from_contexts(contexts, contexts[0], context) == expected
    assert namespace_from_contexts([], None, None) == "default"


# --- API errors -----------------------------------------------------------------------------------


def status_body(code: int, message: str, details: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"kind": "Status", "code": code, "message": message}
    if details is not None:
        body["details"] = details
    return json.dumps(body)


def test_not_found_names_the_task_and_namespace() -> None:
    body = status_body(404, 'scheduledtasks "x" not found', {"name": "x", "kind": "scheduledtasks"})
    assert (
        api_error_message(404, "Not Found", body, task="x", namespace="y")
        == 'scheduledtask "x" not found in namespace "y"'
    )


def test_missing_resource_type_points_at_the_crd() -> None:
    message = api_error_message(404, "Not Found", "404 page not found", task="x", namespace="y")
    assert "scheduledtasks.nightshift.dev" in message
    assert "CRD" in message


def test_forbidden_and_unauthorized_and_others() -> None:
    text = 'User "system:serviceaccount:ns:sa" cannot get resource "scheduledtasks"'
    assert api_error_message(403, "Forbidden", status_body(403, text)) == f"forbidden: {text}"
    assert api_error_message(403, "Forbidden", None) == "forbidden: Forbidden"
    assert api_error_message(401, "Unauthorized", None).startswith("unauthorized: ")
    assert api_error_message(500, "Internal", status_body(500, "boom")) == (
        "the server answered 500: boom"
    )


# --- list -----------------------------------------------------------------------------------------


def test_task_row_prefers_status_and_falls_back_to_the_spec() -> None:
    obj = {
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": spec(interval="6h", suspend=True),
        "status": {"activeCount": 2, "nextScheduleTime": "2026-11-23T12:00:00Z"},
    }
    row = task_row(obj)
    assert row == {
        "namespace": "ns",
        "name": "t",
        "schedule": "every 6h",
        "suspend": True,
        "suspendedByPolicy": False,
        "active": 2,
        "next": "2026-11-23T12:00:00Z",
        "lastResult": None,
    }
    obj["status"] = {"schedule": "0 3 * * * (Europe/Zurich)", "lastResult": "Failed"}
    assert task_row(obj)["schedule"] == "0 3 * * * (Europe/Zurich)"
    assert task_row({"metadata": {"name": "b"}, "spec": {"schedule": "nope"}})["schedule"] == (
        "<invalid spec>"
    )


def test_list_table_shows_namespace_only_across_namespaces() -> None:
    rows = [
        task_row({"metadata": {"name": "t", "namespace": "ns"}, "spec": spec(interval="1h")}),
    ]
    one = list_table(rows, all_namespaces=False).splitlines()
    every = list_table(rows, all_namespaces=True).splitlines()
    assert one[0].split() == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "NEXT", "LAST", "RESULT"]
    assert every[0].startswith("NAMESPACE   NAME")
    assert every[1].split() == ["ns", "t", "every", "1h", "false", "0", "-", "-"]


def test_list_shows_a_suspension_by_the_failure_policy() -> None:
    obj = {
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": spec(interval="1h"),
        "status": {"suspendedByPolicy": {"since": "2026-03-01T03:06:00Z", "failures": 3}},
    }
    row = task_row(obj)
    assert row["suspend"] is False  # spec.suspend, the user's switch
    assert row["suspendedByPolicy"] is True
    assert list_table([row], all_namespaces=False).splitlines()[1].split()[3] == "policy"


def test_history_tells_a_run_held_by_kueue_from_one_queued_by_the_policy() -> None:
    # status.active[].queued: the Job exists, suspended by a queue such as Kueue (Held);
    # status.queued: concurrencyPolicy Queue holds the run back before any Job (Queued).
    status = {
        "active": [
            {"run": "2026-03-01T03:00:00Z", "attempt": 1, "job": "t-1", "queued": True},
            {"run": "2026-03-01T04:00:00Z", "attempt": 1, "job": "t-2"},
        ],
        "queued": {"run": "2026-03-01T05:00:00Z", "queuedAt": "2026-03-01T05:00:01Z"},
    }
    rows = history_rows(status, datetime(2026, 3, 1, 5, 30, tzinfo=UTC), width=None)
    assert [r[2] for r in rows] == ["Queued", "Held", "Running"]
    assert "concurrencyPolicy Queue" in rows[0][6]
    assert rows[1][6] == "Job t-1 (suspended until its queue admits it)"
    assert rows[2][6] == "Job t-2"


# --- history --------------------------------------------------------------------------------------


def test_history_rows_show_running_pending_then_records() -> None:
    long_message = "disk full: " + "x" * 200
    status = {
        "active": [
            {
                "run": "2026-11-23T09:59:00Z",
                "attempt": 1,
                "job": "t-1",
                "startedAt": "2026-11-23T09:59:30Z",
            }
        ],
        "pendingRetries": [
            {"run": "manual-abc", "attempt": 3, "notBefore": "2026-11-23T10:05:00Z"}
        ],
        "runs": [
            record(
                "manual-abc",
                2,
                "Failed",
                exitCode=3,
                startedAt="2026-11-23T09:50:00Z",
                finishedAt="2026-11-23T09:51:05Z",
                message=long_message,
                reason="BackoffLimitExceeded",
            ),
            record("manual-abc", 1, "TimedOut", reason="DeadlineExceeded"),
            record("2026-11-23T09:00:00Z", 1, "Succeeded", exitCode=0, reason="CompletionsReached"),
            record("2026-11-23T08:00:00Z", 1, "Missed"),
        ],
    }
    rows = history_rows(status, NOW)
    assert all(len(row) == len(HISTORY_HEADERS) for row in rows)
    assert rows[0][:6] == [
        "2026-11-23T09:59:00Z",
        "1",
        "Running",
        "-",
        "2026-11-23T09:59:30Z",
        "30s+",
    ]
    assert rows[1][:3] == ["manual-abc", "3", "RetryPending"]
    assert "2026-11-23T10:05:00Z" in rows[1][6]
    assert rows[2][:6] == ["manual-abc", "2", "Failed", "3", "2026-11-23T09:50:00Z", "1m5s"]
    assert len(rows[2][6]) == 60
    assert rows[2][6].startswith("disk full: xxx")
    assert rows[3][2:4] == ["TimedOut", "-"]
    assert rows[3][6] == "DeadlineExceeded"  # no message: the Job's reason
    assert rows[4][6] == ""  # "CompletionsReached" says nothing a Succeeded row does not
    assert rows[5][2:] == ["Missed", "-", "-", "-", ""]
    whole = history_rows(status, NOW, width=None)
    assert whole[2][6] == long_message
    assert history_rows({}, NOW) == []


# --- run --wait: when a run is over ---------------------------------------------------------------


def test_run_progress_through_retries() -> None:
    run, token = "manual-abc", "tok"
    assert not run_progress({}, run, token).acknowledged
    taken = run_progress({"runNowToken": token}, run, token)
    assert taken.acknowledged
    assert taken.done  # acknowledged, nothing left: its record was trimmed away
    active = {"active": [{"run": run, "attempt": 1, "job": "j"}], "runNowToken": token}
    assert not run_progress(active, run, token).done
    retrying = {
        "runs": [record(run, 1, "Failed", exitCode=3)],
        "pendingRetries": [{"run": run, "attempt": 2, "notBefore": "2026-11-23T10:00:10Z"}],
    }
    progress = run_progress(retrying, run, token)
    assert progress.acknowledged
    assert not progress.done
    assert not progress.succeeded
    finished = {
        "runs": [
            record("other", 1, "Failed"),
            record(run, 2, "Succeeded", exitCode=0),
            record(run, 1, "Failed", exitCode=3),
        ],
        "active": [{"run": "other-run", "attempt": 1, "job": "k"}],
    }
    progress = run_progress(finished, run, token)
    assert progress.done
    assert progress.succeeded
    assert [r["attempt"] for r in progress.records] == [1, 2]
    failed = run_progress({"runs": [record(run, 1, "Skipped")]}, run, token)
    assert failed.done
    assert not failed.succeeded


def test_run_progress_reports_an_invalid_spec() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.x: bad"}
        ]
    }
    progress = run_progress(status, "manual-abc", "tok")
    assert progress.blocked is not None
    assert "spec.x: bad" in progress.blocked


def test_result_lines() -> None:
    ok = RunProgress(
        "manual-a",
        True,
        (
            record(
                "manual-a",
                1,
                exitCode=0,
                startedAt="2026-11-23T10:00:00Z",
                finishedAt="2026-11-23T10:00:03Z",
                reason="CompletionsReached",
            ),
        ),
    )
    assert result_line(ok) == "run manual-a: Succeeded (attempt 1, exit 0, 3s)"
    bad = RunProgress(
        "manual-a",
        True,
        (
            record("manual-a", 1, "Failed"),
            record("manual-a", 2, "Failed", exitCode=3, message="no\nspace"),
        ),
    )
    assert result_line(bad) == "run manual-a: Failed (after 2 attempts, exit 3): no space"
    assert "no longer in status" in result_line(RunProgress("manual-a", True))


# --- logs: which attempt, which pod, which container ----------------------------------------------


STATUS = {
    "active": [
        {
            "run": "2026-11-23T10:00:00Z",
            "attempt": 1,
            "job": "t-20261123100000-1",
            "startedAt": "2026-11-23T10:00:00Z",
        }
    ],
    "runs": [
        record("manual-abc", 2, "Failed", job="t-mabc-2", startedAt="2026-11-23T09:40:00Z"),
        record("manual-abc", 1, "Failed", job="t-mabc-1", startedAt="2026-11-23T09:30:00Z"),
        record(
            "2026-11-23T09:00:00Z", 1, "Skipped", startedAt=None, finishedAt="2026-11-23T09:00:00Z"
        ),
    ],
}


def test_select_attempt_defaults_to_the_newest_and_prefers_running() -> None:
    assert select_attempt(STATUS, "t").job == "t-20261123100000-1"
    finished_only = {"runs": STATUS["runs"]}
    assert select_attempt(finished_only, "t").job == "t-mabc-2"


def test_select_attempt_by_run_attempt_or_job_name() -> None:
    assert select_attempt(STATUS, "t", "manual-abc").job == "t-mabc-2"
    assert select_attempt(STATUS, "t", "manual-abc", 1).job == "t-mabc-1"
    chosen = select_attempt(STATUS, "t", "t-mabc-1")
    assert (chosen.run, chosen.attempt) == ("manual-abc", 1)
    with pytest.raises(PluginError, match="no attempt 5"):
        select_attempt(STATUS, "t", "manual-abc", 5)
    with pytest.raises(PluginError, match="is attempt 1, not 2"):
        select_attempt(STATUS, "t", "t-mabc-1", 2)


def test_select_attempt_errors_and_runs_no_longer_in_status() -> None:
    with pytest.raises(PluginError, match="Skipped: no Job was created"):
        select_attempt(STATUS, "t", "2026-11-23T09:00:00Z")
    with pytest.raises(PluginError, match="has no runs yet"):
        select_attempt({}, "t")
    # Pruned from status: the deterministic Job name still finds the pod if it is there.
    gone = select_attempt(STATUS, "t", "2026-11-20T03:00:00Z", 2)
    assert gone.job == "t-20261120030000-2"
    assert select_attempt(STATUS, "t", "t-20261120030000-1").job == "t-20261120030000-1"


def test_choose_container_like_kubectl() -> None:
    assert choose_container(["main"], {}, None) == ("main", None)
    name, note = choose_container(["a", "b"], {}, None)
    assert name == "a"
    assert note == 'Defaulted container "a" out of: a, b'
    annotated = {"kubectl.kubernetes.io/default-container": "b"}
    assert choose_container(["a", "b"], annotated, None)[0] == "b"
    assert choose_container(["a"], {}, "init", ["init"]) == ("init", None)
    with pytest.raises(PluginError, match="'c' is not in the pod"):
        choose_container(["a", "b"], {}, "c")


def test_newest_pod() -> None:
    pods = [
        {"metadata": {"name": "old", "creationTimestamp": "2026-11-23T09:00:00Z"}},
        {"metadata": {"name": "new", "creationTimestamp": "2026-11-23T10:00:00Z"}},
    ]
    assert newest_pod(pods) == pods[1]
    assert newest_pod([]) is None


# --- the command line -----------------------------------------------------------------------------


def test_global_flags_before_or_after_the_command() -> None:
    before = parse_args(["-n", "prod", "--context", "c", "history", "t", "-o", "json"])
    after = parse_args(["history", "t", "-n", "prod", "--context", "c", "--output", "json"])
    for args in (before, after):
        assert (args.namespace, args.context, args.output, args.task) == ("prod", "c", "json", "t")
    plain = parse_args(["history", "t"])
    assert (plain.namespace, plain.context, plain.kubeconfig, plain.output) == (
        None,
        None,
        None,
        "table",
    )
    assert parse_args(["list", "-A"]).all_namespaces
    assert parse_args(["-A", "list"]).all_namespaces


def test_next_dash_n_is_a_count_when_numeric_else_a_namespace() -> None:
    assert parse_args(["next", "t"]).count == 5
    args = parse_args(["next", "t", "-n", "3"])
    assert (args.count, args.namespace) == (3, None)
    args = parse_args(["next", "t", "-n", "prod"])
    assert (args.count, args.namespace) == (5, "prod")
    args = parse_args(["-n", "prod", "next", "t", "-n", "2"])
    assert (args.count, args.namespace) == (2, "prod")
    args = parse_args(["next", "t", "--namespace", "7", "--count", "4"])
    assert (args.count, args.namespace) == (4, "7")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["history"],
        ["history", "t", "-A"],
        ["-A", "history", "t"],
        ["-o", "json", "suspend", "t"],
        ["run", "t", "--timeout", "soon"],
        ["next", "t", "-n", "0"],
        ["next", "t", "--count", "0"],
        ["next", "t", "-n", "3", "--count", "4"],
        ["list", "-o", "xml"],
        ["logs", "t", "--attempt", "zero"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: kubectl nightshift" in capsys.readouterr().err


def test_every_command_has_a_description_and_examples() -> None:
    texts = help_texts()
    assert set(texts) == {
        "kubectl nightshift",
        "run",
        "suspend",
        "resume",
        "next",
        "history",
        "logs",
        "list",
        "backfill",
        "ui",
        "status",
    }
    for name, text in texts.items():
        assert "examples:\n  kubectl nightshift" in text, name
        if name != "kubectl nightshift":
            assert f"usage: kubectl nightshift {name}" in text


# --- docs/cli.md ----------------------------------------------------------------------------------


def load_gen_cli_docs() -> ModuleType:
    path = REPO / "hack" / "gen_cli_docs.py"
    module_spec = importlib.util.spec_from_file_location("gen_cli_docs", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_gen_cli_docs_rewrites_blocks_and_rejects_bad_markers() -> None:
    gen = load_gen_cli_docs()
    helps = {"run": "usage: run\n", "list": "usage: list\n"}
    text = (
        "intro\n<!-- BEGIN HELP: run -->\nstale\n<!-- END HELP -->\nmiddle\n"
        "<!-- BEGIN HELP: list -->\n<!-- END HELP -->\n"
    )
    fresh = gen.render(text, helps)
    assert fresh == (
        "intro\n<!-- BEGIN HELP: run -->\n```text\nusage: run\n```\n<!-- END HELP -->\nmiddle\n"
        "<!-- BEGIN HELP: list -->\n```text\nusage: list\n```\n<!-- END HELP -->\n"
    )
    assert gen.render(fresh, helps) == fresh
    with pytest.raises(gen.DocsError, match="no help block for: list"):
        gen.render("<!-- BEGIN HELP: run -->\n<!-- END HELP -->\n", helps)
    with pytest.raises(gen.DocsError, match="unknown command 'walk'"):
        gen.render(text + "<!-- BEGIN HELP: walk -->\n<!-- END HELP -->\n", helps)
    with pytest.raises(gen.DocsError, match="no matching"):
        gen.render(text + "<!-- BEGIN HELP: run -->\n", helps)


def test_docs_cli_md_is_current(tmp_path: Path) -> None:
    script = str(REPO / "hack" / "gen_cli_docs.py")
    ok = subprocess.run(
        [sys.executable, script, "--check"], check=False, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = tmp_path / "cli.md"
    stale.write_text(
        (REPO / "docs" / "cli.md").read_text().replace("usage: kubectl", "usage: kc", 1)
    )
    res = subprocess.run(
        [sys.executable, script, "--check", "--file", str(stale)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    assert "out of date" in res.stdout


# --- the commands, against a fake session ---------------------------------------------------------


class FakeSession(Session):
    """Tasks in memory; ``statuses`` (if given) is what successive get_task calls see."""

    def __init__(self, tasks: dict[str, dict[str, Any]], namespace: str = "ns") -> None:
        self.namespace = namespace
        self.host = "https://fake"
        self.tasks = tasks
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.statuses: Iterator[dict[str, Any]] | None = None
        self.pods: list[dict[str, Any]] = []
        self.jobs: dict[str, str] = {}  # Job name -> uid
        self.log: str | None = None
        self.log_error: str | None = None
        self.backfills: list[dict[str, Any]] = []

    def get_task(self, name: str) -> dict[str, Any]:
        if name not in self.tasks:
            raise PluginError(f'scheduledtask "{name}" not found in namespace "{self.namespace}"')
        obj = self.tasks[name]
        if self.statuses is not None:
            obj["status"] = next(self.statuses)
        return obj

    def patch_task(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((name, patch))
        obj = self.tasks[name]
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        for key, value in (patch.get("metadata", {}).get("annotations") or {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        obj["spec"].update(patch.get("spec") or {})
        return obj

    def list_tasks(self, *, all_namespaces: bool) -> list[dict[str, Any]]:
        return list(self.tasks.values())

    def list_backfills(self) -> list[dict[str, Any]]:
        return list(self.backfills)

    def whoami(self) -> str | None:
        return "alice@example.com"

    def job_uid(self, job: str) -> str | None:
        return self.jobs.get(job)

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        return [p for p in self.pods if p["metadata"]["labels"]["job"] == job]

    def pod_log(self, pod: str, container: str) -> str:
        if self.log_error:
            raise PluginError(
                f"cannot read the log of pod {self.namespace}/{pod}: {self.log_error}"
            )
        return self.log if self.log is not None else f"log of {pod}/{container}\n"


def job_pod(name: str, job: str, uid: str | None, created: str = "2026-11-23T10:00:00Z") -> Any:
    """A pod with the Job's name label; controlled by the Job with ``uid`` (None: by nobody)."""
    refs = [{"kind": "Job", "name": job, "uid": uid, "controller": True}] if uid else []
    return {
        "metadata": {
            "name": name,
            "labels": {"job": job},
            "ownerReferences": refs,
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": "main"}]},
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSession:
    session = FakeSession(
        {"t": {"metadata": {"name": "t", "namespace": "ns"}, "spec": spec(interval="1h")}}
    )
    monkeypatch.setattr(kubectl_session, "connect", lambda args: session)
    monkeypatch.setattr(kubectl_commands, "POLL_SECONDS", 0)
    return session


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_task_is_one_error_line(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, "history", "nope")
    assert code == 1
    assert out == ""
    assert err == 'Error: scheduledtask "nope" not found in namespace "ns"\n'


def test_history_empty_table_and_json(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(capsys, "history", "t") == (0, "no runs yet\n", "")
    fake.tasks["t"]["status"] = {"runs": [record("manual-a", 1, "Failed", exitCode=3, message="m")]}
    code, out, _ = run_main(capsys, "history", "t")
    assert code == 0
    assert out.splitlines()[0].split() == list(HISTORY_HEADERS)
    code, out, _ = run_main(capsys, "history", "t", "-o", "json")
    assert json.loads(out)["runs"][0]["exitCode"] == 3
    code, out, _ = run_main(capsys, "history", "t", "-o", "yaml")
    assert yaml.safe_load(out)["runs"][0]["message"] == "m"


def test_run_without_wait_sets_a_fresh_token(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(capsys, "run", "t")
    assert code == 0
    ((name, patch),) = fake.patches
    token = patch["metadata"]["annotations"][ANNOTATION_RUN_NOW]
    assert name == "t"
    assert token in out
    assert job_name("t", manual_run_id(token), 1) in out
    code, out, _ = run_main(capsys, "run", "t", "-o", "json")
    data = json.loads(out)
    assert data["token"] != token
    assert data["job"] == job_name("t", data["run"], 1)


def test_run_notes_a_request_the_operator_has_not_taken(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["metadata"]["annotations"] = {ANNOTATION_RUN_NOW: "old"}
    fake.tasks["t"]["status"] = {"runNowToken": "older"}
    code, _, err = run_main(capsys, "run", "t")
    assert code == 0
    assert "previous run-now request (old) has not been picked up yet" in err
    fake.tasks["t"]["status"] = {
        "runNowToken": fake.tasks["t"]["metadata"]["annotations"][ANNOTATION_RUN_NOW]
    }
    assert "previous" not in run_main(capsys, "run", "t")[2]


def scripted(fake: FakeSession, *results: str) -> None:
    """get_task sees: before the operator acts, then attempt 1 running, then the results."""

    def statuses() -> Iterator[dict[str, Any]]:
        yield {}  # run's pre-check
        token = fake.tasks["t"]["metadata"]["annotations"][ANNOTATION_RUN_NOW]
        run = manual_run_id(token)
        yield {}
        yield {"runNowToken": token, "active": [{"run": run, "attempt": 1, "job": "j"}]}
        runs: list[dict[str, Any]] = []
        for attempt, result in enumerate(results, start=1):
            runs.insert(0, record(run, attempt, result, exitCode=0 if result == "Succeeded" else 3))
            pending = []
            if attempt < len(results):
                pending = [
                    {"run": run, "attempt": attempt + 1, "notBefore": "2026-11-23T10:00:00Z"}
                ]
            yield {"runNowToken": token, "runs": list(runs), "pendingRetries": pending}
        while True:
            yield {"runNowToken": token, "runs": list(runs)}

    fake.statuses = statuses()


def test_run_wait_succeeds(fake: FakeSession, capsys: pytest.CaptureFixture[str]) -> None:
    scripted(fake, "Succeeded")
    code, out, err = run_main(capsys, "run", "t", "--wait")
    assert code == 0
    assert re.search(r"run manual-[0-9a-f]{10}: Succeeded \(attempt 1, exit 0\)\n$", out)
    assert "attempt 1: Succeeded (exit 0)" in err


def test_run_wait_follows_retries_to_failure(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(fake, "Failed", "Failed", "Failed")
    code, out, err = run_main(capsys, "run", "t", "--wait", "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert data["result"] == "Failed"
    assert [a["attempt"] for a in data["attempts"]] == [1, 2, 3]
    assert "attempt 2: retry not before" in err


def test_run_wait_times_out_when_nobody_acts(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(capsys, "run", "t", "--wait", "--timeout", "1ms")
    assert code == 1
    assert "timed out after 1ms: the operator has not picked up run manual-" in err
    assert "is the operator running" in err


def test_suspend_and_resume_patch_spec_and_reason(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(capsys, "suspend", "t", "--reason", "migration")
    assert code == 0
    assert out == "scheduledtask.nightshift.dev/t suspended\n"
    assert fake.patches[-1][1] == {
        "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: "migration"}},
        "spec": {"suspend": True},
    }
    assert run_main(capsys, "suspend", "t")[1].endswith("(was already suspended)\n")
    assert fake.patches[-1][1]["metadata"]["annotations"] == {ANNOTATION_SUSPEND_REASON: None}
    code, out, _ = run_main(capsys, "resume", "t")
    assert out == "scheduledtask.nightshift.dev/t resumed\n"
    assert fake.patches[-1][1] == {
        "metadata": {"annotations": {ANNOTATION_SUSPEND_REASON: None}},
        "spec": {"suspend": False},
    }


PAUSED = {
    "since": "2026-03-01T03:06:00Z",
    "failures": 3,
    "run": "2026-03-01T03:00:00Z",
    "message": "3 runs failed in a row (failurePolicy.suspendAfter 3); the last: run ... Failed",
}


def test_resume_of_a_task_its_failure_policy_suspended(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubectl_commands, "utc_now", lambda: datetime(2026, 3, 1, 4, tzinfo=UTC))
    fake.tasks["t"]["status"] = {"suspendedByPolicy": PAUSED}
    code, out, _ = run_main(capsys, "resume", "t", "--note", "rotated the token")
    assert code == 0
    assert out.startswith("scheduledtask.nightshift.dev/t resumed (its failure policy had")
    annotations = fake.patches[-1][1]["metadata"]["annotations"]
    assert fake.patches[-1][1]["spec"] == {"suspend": False}  # the user's switch, off as asked
    request = json.loads(annotations["nightshift.dev/resume"])
    assert request["by"] == "alice@example.com"
    assert request["note"] == "rotated the token"
    assert request["token"].startswith("20260301T040000Z-")
    # A second resume is a new request (a fresh token), so the operator acts on it too.
    run_main(capsys, "resume", "t")
    again = json.loads(fake.patches[-1][1]["metadata"]["annotations"]["nightshift.dev/resume"])
    assert again["token"] != request["token"]
    assert again["note"] is None


def test_resume_with_a_note_records_it_even_for_the_users_own_suspend(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    run_main(capsys, "resume", "t", "--note", "after the migration")
    request = json.loads(fake.patches[-1][1]["metadata"]["annotations"]["nightshift.dev/resume"])
    assert request["note"] == "after the migration"


def test_next_notes_a_suspension_by_the_failure_policy(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["status"] = {"suspendedByPolicy": PAUSED}
    code, out, err = run_main(capsys, "next", "t", "-n", "2")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert "its failure policy suspended the task at 2026-03-01T03:06:00Z" in err
    assert "kubectl nightshift resume t" in err
    data = json.loads(run_main(capsys, "next", "t", "-o", "json")[1])
    assert data["suspended"] is True
    assert data["suspendedByPolicy"] == PAUSED


def test_next_notes_when_the_operators_times_differ(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubectl_commands, "utc_now", lambda: datetime(2026, 3, 1, 4, tzinfo=UTC))
    fake.tasks["t"]["metadata"]["generation"] = 2
    fake.tasks["t"]["status"] = {
        "observedGeneration": 2,
        "nextScheduleTimes": ["2026-03-01T05:00:00Z", "2026-03-01T06:00:00Z"],
    }
    _, out, err = run_main(capsys, "next", "t", "-n", "2")
    assert "2026-03-01T05:00:00Z" in out  # interval 1h: the same as the operator's
    assert "differ" not in err
    fake.tasks["t"]["status"]["nextScheduleTimes"] = ["2026-03-01T05:30:00Z"]
    _, _, err = run_main(capsys, "next", "t", "-n", "2")
    assert "status.nextScheduleTimes differ (2026-03-01T05:30:00Z)" in err


@pytest.mark.parametrize(
    ("context", "user"),
    [(None, "admin"), ("dev", "dev-user"), ("missing", None)],
)
def test_user_from_contexts(context: str | None, user: str | None) -> None:
    contexts = [
        {"name": "main", "context": {"user": "admin"}},
        {"name": "dev", "context": {"user": "dev-user", "namespace": "dev"}},
    ]
    assert kubectl_session.user_from_contexts(contexts, contexts[0], context) == user


def test_next_notes_a_suspended_task(fake: FakeSession, capsys: pytest.CaptureFixture[str]) -> None:
    fake.tasks["t"]["spec"] = spec(schedule="0 3 * * *", timeZone="Europe/Zurich", suspend=True)
    code, out, err = run_main(capsys, "next", "t", "-n", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["LOCAL", "(Europe/Zurich)", "UTC"]
    assert len(lines) == 4
    for line in lines[1:]:
        local, utc = line.split()
        assert local.endswith(("+01:00", "+02:00"))
        assert datetime.fromisoformat(local) == datetime.fromisoformat(utc.replace("Z", "+00:00"))
    assert "suspended" in err
    data = json.loads(run_main(capsys, "next", "t", "--count", "2", "-o", "json")[1])
    assert data["suspended"] is True
    assert len(data["times"]) == 2


@pytest.mark.parametrize(
    ("task_spec", "status", "now"),
    [
        pytest.param(
            spec(schedule="30 2 * * *", timeZone="America/New_York"),
            {},
            "2026-03-06T12:00:00Z",
            id="dst-spring-forward",
        ),
        pytest.param(
            spec(interval="1h", jitter="30m"),
            {},
            "2026-11-23T10:00:01Z",
            id="jitter-of-a-slot-just-passed-still-ahead",
        ),
        pytest.param(
            spec(schedule="H 3 * * *", timeZone="Europe/Zurich", jitter="90s"),
            {},
            "2026-10-24T00:00:00Z",
            id="hash-jitter-and-fall-back",
        ),
        pytest.param(
            spec(interval="1h", maxRuns=5), {"runCount": 3}, NOW.isoformat(), id="maxRuns-left"
        ),
        pytest.param(
            spec(interval="1h", endAt="2026-11-23T13:00:00Z"), {}, NOW.isoformat(), id="endAt"
        ),
    ],
)
def test_next_and_preview_agree_on_the_same_task(
    fake: FakeSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    task_spec: dict[str, Any],
    status: dict[str, Any],
    now: str,
) -> None:
    fake.tasks["t"]["spec"] = task_spec
    fake.tasks["t"]["status"] = status
    monkeypatch.setattr(
        kubectl_commands, "utc_now", lambda: datetime.fromisoformat(now.replace("Z", "+00:00"))
    )
    code, out, _ = run_main(capsys, "next", "t", "--count", "5", "-o", "json")
    assert code == 0
    listed = [row["local"] for row in json.loads(out)["times"]]

    # The same object as `kubectl get stask t -o yaml` would give it, previewed from the same time.
    manifest = tmp_path / "t.yaml"
    obj = {"apiVersion": "nightshift.dev/v1alpha1", "kind": "ScheduledTask", **fake.tasks["t"]}
    manifest.write_text(yaml.safe_dump(obj))
    assert nightshift_main(["preview", str(manifest), "--from", now, "--count", "5"]) == 0
    previewed = capsys.readouterr().out.splitlines()

    assert listed
    assert listed == previewed


def test_list_and_logs(fake: FakeSession, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "list", "-A")
    assert code == 0
    assert out.splitlines()[1].split()[:2] == ["ns", "t"]
    assert json.loads(run_main(capsys, "list", "-o", "json")[1])[0]["name"] == "t"

    code, _, err = run_main(capsys, "logs", "t")
    assert (code, err) == (1, 'Error: scheduledtask "t" has no runs yet\n')
    fake.tasks["t"]["status"] = {"runs": [record("manual-a", 1, "Failed", job="t-ma-1")]}
    code, _, err = run_main(capsys, "logs", "t")
    assert code == 1
    assert "no pod found for Job t-ma-1" in err
    fake.jobs["t-ma-1"] = "uid-1"
    fake.pods = [job_pod("t-ma-1-xyz", "t-ma-1", "uid-1")]
    code, out, err = run_main(capsys, "logs", "t")
    assert (code, out) == (0, "log of t-ma-1-xyz/main\n")
    assert "pod t-ma-1-xyz (Job t-ma-1, run manual-a, attempt 1)" in err
    fake.log_error = "no preferred addresses found"
    code, out, err = run_main(capsys, "logs", "t")
    assert code == 1
    assert "Error: cannot read the log of pod ns/t-ma-1-xyz" in err


def test_status_shows_conditions_suspension_resume_and_owed_notifications(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["status"] = {
        "schedule": "every 1h",
        "nextScheduleTimes": ["2026-03-01T05:00:00Z", "2026-03-01T06:00:00Z"],
        "conditions": [
            {"type": "Suspended", "status": "True", "reason": "FailureThreshold", "message": "m"},
            {"type": "Late", "status": "True", "reason": "DeadlineExceeded", "message": "late"},
            {"type": "Notified", "status": "False", "reason": "DeliveryFailed", "message": "500"},
        ],
        "suspendedByPolicy": PAUSED,
        "lastResume": {"token": "x", "at": "2026-03-01T02:00:00Z", "by": "bob", "note": "ok"},
        "notifications": [
            {
                "id": "u/r/1/Failing",
                "change": "Failing",
                "run": "2026-03-01T03:00:00Z",
                "sinks": ["ops", "chat"],
                "failures": 2,
                "notBefore": "2026-03-01T03:07:10Z",
                "lastError": "ops: HTTP 500",
            }
        ],
    }
    code, out, _ = run_main(capsys, "status", "t")
    assert code == 0
    assert "Next:          2026-03-01T05:00:00Z, 2026-03-01T06:00:00Z" in out
    assert "Suspended by its failure policy since 2026-03-01T03:06:00Z" in out
    assert "kubectl nightshift resume t --note TEXT" in out
    assert "Last resumed:  2026-03-01T02:00:00Z by bob: ok" in out
    assert re.search(r"^Late\s+True\s+DeadlineExceeded\s+late$", out, re.M)
    assert re.search(
        r"^Failing\s+2026-03-01T03:00:00Z\s+ops,chat\s+2\s+2026-03-01T03:07:10Z", out, re.M
    )
    data = json.loads(run_main(capsys, "status", "t", "-o", "json")[1])
    assert data["suspendedByPolicy"] == PAUSED
    assert [c["type"] for c in data["conditions"]] == ["Suspended", "Late", "Notified"]


# --- server text never reaches the terminal as control sequences ----------------------------------

# Escape sequences a terminal obeys: colours, clear screen and home, a window title (OSC, ended by
# BEL), a clipboard write (OSC 52, ended by ST), a C1 CSI (U+009B), a C1 NEL, a carriage return
# that would let the rest overwrite the line, a bell, DEL and NUL.
HOSTILE = (
    "\x1b[31mred\x1b[0m \x1b[2J\x1b[H\x1b]0;pwned\x07title \x1b]52;c;ZXZpbA==\x1b\\clip "
    "\x9b6n\x85nel \x1b7saved\x1b8 cr\rover bell\x07 del\x7f nul\x00 tab\tok"
)


def controls(text: str) -> list[str]:
    """The terminal control characters in ``text`` (C0 but tab and newline, DEL, C1)."""
    return [c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, ünïcödé, 日本", "plain text, ünïcödé, 日本"),
        ("\x1b[1;31mFAILED\x1b[0m: disk full", "FAILED: disk full"),
        ("a\x1b]0;title\x07b", "ab"),
        ("a\x1b]52;c;ZXZpbA==\x1b\\b", "ab"),  # clipboard write, ended by ST
        ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # a hyperlink
        ("a\x9b2Jb", "ab"),  # C1 CSI
        ("a\x9d0;t\x9cb", "ab"),  # C1 OSC ended by C1 ST
        ("a\x85b\x80c", "abc"),
        ("line 1\r\nline 2\rover", "line 1\nline 2\nover"),
        ("tab\tnew\nline", "tab\tnew\nline"),
        ("bell\x07 del\x7f nul\x00 esc\x1b", "bell del nul esc"),
        ("a\x1b]0;unterminated\nnext line", "a\nnext line"),  # swallows no further than the line
    ],
)
def test_terminal_safe(text: str, expected: str) -> None:
    from nightshift.kubectl.render import terminal_safe

    assert terminal_safe(text) == expected


def test_one_line_and_tables_strip_control_characters() -> None:
    assert one_line(HOSTILE) == ("red title clip nel saved cr over bell del nul tab ok")
    table = render_table(["A", "B"], [[HOSTILE, "x"], ["y", "\x1b[2Jz"]])
    assert not controls(table)
    assert table.splitlines()[2] == "y" + " " * (len(one_line(HOSTILE)) + 2) + "z"


def hostile_status() -> dict[str, Any]:
    return {
        "schedule": f"every 1h {HOSTILE}",
        "nextScheduleTime": HOSTILE,
        "nextScheduleTimes": [HOSTILE],
        "lastResult": HOSTILE,
        "active": [{"run": HOSTILE, "attempt": 2, "job": HOSTILE, "startedAt": HOSTILE}],
        "pendingRetries": [{"run": HOSTILE, "attempt": 3, "notBefore": HOSTILE}],
        "runs": [
            record(HOSTILE, 1, "Failed", exitCode=3, message=HOSTILE, job=HOSTILE),
            record("r", 1, HOSTILE, reason=HOSTILE, startedAt=HOSTILE, finishedAt=HOSTILE),
        ],
        "conditions": [{"type": "Ready", "status": "False", "reason": HOSTILE, "message": HOSTILE}],
        "suspendedByPolicy": {**PAUSED, "since": HOSTILE, "message": HOSTILE},
        "lastResume": {"token": "x", "at": HOSTILE, "by": HOSTILE, "note": HOSTILE},
        "notifications": [
            {"change": HOSTILE, "run": HOSTILE, "sinks": [HOSTILE], "lastError": HOSTILE}
        ],
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "t"],
        ["status", "t"],
        ["list"],
        ["list", "-A"],
        ["next", "t"],
        ["resume", "t"],
        ["logs", "t"],
    ],
)
def test_commands_print_no_control_characters_from_server_text(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    fake.tasks["t"]["status"] = hostile_status()
    fake.tasks["t"]["metadata"]["annotations"] = {ANNOTATION_RUN_NOW: HOSTILE}
    fake.jobs[HOSTILE] = "uid-h"
    fake.pods = [job_pod("p", HOSTILE, "uid-h")]
    fake.log = HOSTILE
    code, out, err = run_main(capsys, *argv)
    assert code == 0, err
    assert "red" in out + err  # the text is shown, only its control sequences are gone
    assert not controls(out), out
    assert not controls(err), err


def test_run_wait_prints_no_control_characters_from_termination_messages(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["metadata"]["annotations"] = {ANNOTATION_RUN_NOW: HOSTILE}
    fake.tasks["t"]["status"] = {"runNowToken": "other"}
    scripted(fake, "Failed", "Failed")
    hostile = fake.statuses
    assert hostile is not None

    def with_messages() -> Iterator[dict[str, Any]]:
        for status in hostile:
            for run in status.get("runs") or []:
                run["message"] = HOSTILE
            yield status

    fake.statuses = with_messages()
    code, out, err = run_main(capsys, "run", "t", "--wait")
    assert code == 1
    assert "Failed (after 2 attempts, exit 3): red title clip" in out
    assert "previous run-now request (red title" in err
    assert not controls(out), out
    assert not controls(err), err


def test_errors_print_no_control_characters(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(name: str) -> dict[str, Any]:
        # An admission webhook's message quotes the spec it refused.
        raise PluginError(f'admission webhook denied the request: spec.schedule: "{HOSTILE}"')

    fake.get_task = refuse  # type: ignore[method-assign]
    code, _, err = run_main(capsys, "suspend", "t")
    assert code == 1
    assert err.startswith('Error: admission webhook denied the request: spec.schedule: "red')
    assert not controls(err), err


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_stay_exact_and_carry_controls_only_as_escapes(
    fake: FakeSession, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    fake.tasks["t"]["status"] = hostile_status()
    for argv in (["history", "t"], ["status", "t"], ["list"]):
        code, out, _ = run_main(capsys, *argv, "-o", output)
        assert code == 0
        assert not controls(out), out
        data = json.loads(out) if output == "json" else yaml.safe_load(out)
        assert HOSTILE in strings(data)  # nothing lost or changed


def strings(data: Any) -> list[str]:
    """Every string value in ``data`` (nested lists and mappings)."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, list):
        return [s for item in data for s in strings(item)]
    return []


def test_logs_strips_control_sequences_unless_raw(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["status"] = {"runs": [record("manual-a", 1, "Failed", job="t-ma-1")]}
    fake.jobs["t-ma-1"] = "uid-1"
    fake.pods = [job_pod("t-ma-1-xyz", "t-ma-1", "uid-1")]
    fake.log = "\x1b[32mok\x1b[0m\nstep 1\rstep 2\n"
    assert run_main(capsys, "logs", "t")[1] == "ok\nstep 1\nstep 2\n"
    assert run_main(capsys, "logs", "t", "--raw")[1] == fake.log


def test_logs_ignores_a_pod_with_the_jobs_label_that_the_job_does_not_control(
    fake: FakeSession, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.tasks["t"]["status"] = {"runs": [record("manual-a", 1, "Failed", job="t-ma-1")]}
    fake.jobs["t-ma-1"] = "uid-1"
    # Newer than the Job's own pod, with its label: anyone who may create pods can make one.
    fake.pods = [
        job_pod("t-ma-1-real", "t-ma-1", "uid-1", "2026-11-23T10:00:00Z"),
        job_pod("t-ma-1-fake", "t-ma-1", None, "2026-11-23T10:05:00Z"),
        job_pod("t-ma-1-other", "t-ma-1", "uid-of-another-job", "2026-11-23T10:06:00Z"),
    ]
    code, out, err = run_main(capsys, "logs", "t")
    assert (code, out) == (0, "log of t-ma-1-real/main\n")
    assert "pod t-ma-1-real (Job t-ma-1" in err
    # The Job is gone: its name label alone finds nothing.
    del fake.jobs["t-ma-1"]
    code, _, err = run_main(capsys, "logs", "t")
    assert code == 1
    assert "no pod found for Job t-ma-1" in err

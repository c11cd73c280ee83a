"""`kubectl nightshift ui` in a real headless Chromium against the real control plane.

One namespace holds a handful of tasks whose runs the operator really made (KWOK plays the pods:
they succeed after a second, fail with an exit code and message, or keep running). The UI runs as
the user runs it, a `kubectl-nightshift ui` process, once with the admin's kubeconfig and once with
a ServiceAccount bound to the built-in `view` role. Every page a test opens must leave no console
error (the `page` fixture checks). With $NIGHTSHIFT_SCREENSHOTS set (`make screenshots`), the
screenshots are written there (docs/ui/); otherwise to a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import Chromium, Page, find_chromium

from support.operator import Operator
from support.tasks import status
from support.wait import poll

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "kubectl-nightshift"
YEARLY = "0 3 1 1 *"
MESSAGE = "disk full: /var/backup has 0 bytes free"
FAILURE_COLOUR = "rgb(198, 40, 40)"  # --Failed in ui.css


def template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/job:1"}]}
    }
    if annotations:
        pod["metadata"] = {"annotations": annotations}
    return {"spec": {"template": pod}}


def stask(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("pod_annotations", None)
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {**spec, "jobTemplate": template(annotations)},
    }


TASKS = [
    stask("nightly-backup", {"team": "data"}, schedule="30 2 * * *", timeZone="America/New_York"),
    stask(
        "report",
        {"team": "data"},
        schedule="0 */6 * * *",
        retry={"maxRetries": 1, "backoff": {"initial": "1s", "jitter": False}},
        pod_annotations={
            "test.nightshift.dev/exit-code": "3",
            "test.nightshift.dev/message": MESSAGE,
        },
    ),
    stask("cleanup", {"team": "web"}, schedule="*/15 * * * *"),
    stask(
        "warehouse-load",
        {"team": "data"},
        schedule="0 1 * * *",
        timeZone="Europe/Zurich",
        pod_annotations={"test.nightshift.dev/run-for": "30m"},
    ),
    stask("paused", interval="3h", suspend=True),
    stask("run-me", schedule=YEARLY),
    stask("look-only", schedule=YEARLY),
]


def shots() -> Path:
    """Where screenshots go: $NIGHTSHIFT_SCREENSHOTS (docs/ui via `make screenshots`) or a
    temporary directory."""
    chosen = os.environ.get("NIGHTSHIFT_SCREENSHOTS")
    path = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "nightshift-ui-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Ui:
    """A `kubectl-nightshift ui` process; stop() ends it (SIGTERM, like a service manager)."""

    def __init__(self, kubeconfig: Path, log_dir: Path, *args: str, env: dict[str, str]) -> None:
        self.out = log_dir / f"ui-{secrets.token_hex(3)}.out"
        self.err = self.out.with_suffix(".err")
        environment = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        environment.update(env)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(PLUGIN), "--kubeconfig", str(kubeconfig), "ui", "--port", "0", *args],
                stdout=out,
                stderr=err,
                env=environment,
                start_new_session=True,
            )
        found = poll(self._url, timeout=30, what="the UI to print its URL")
        self.url: str = found[0]
        self.port: int = int(found[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def _url(self) -> tuple[str, str] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the UI exited: {self.err.read_text()}")
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=\S+)", self.out.read_text())
        return (match[1], match[2]) if match else None

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.proc.returncode


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A namespace with the tasks, an operator, and runs: report failed twice (a retry),
    nightly-backup succeeded, warehouse-load is running."""
    namespace = f"t-ui-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "test.nightshift.dev/owner=pytest")
    poll(
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        timeout=30,
        what="the default ServiceAccount",
    )
    operator = Operator(
        cluster.kubeconfig, tmp_path_factory.mktemp("operator"), namespaces=[namespace]
    )
    operator.start()
    try:
        for manifest in TASKS:
            cluster.apply(manifest, namespace)
        plugin = [str(PLUGIN), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
        for name in ("report", "nightly-backup", "warehouse-load"):
            subprocess.run([*plugin, "run", name], check=True, capture_output=True, timeout=60)

        def settled() -> bool:
            report = status(cluster, namespace, "report")
            backup = status(cluster, namespace, "nightly-backup")
            load = status(cluster, namespace, "warehouse-load")
            failed = [r for r in report.get("runs") or [] if r["result"] == "Failed"]
            return len(failed) == 2 and bool(backup.get("runs")) and bool(load.get("active"))

        poll(settled, timeout=120, what="the first runs")
        yield namespace
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def secret_kubeconfig(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The admin kubeconfig under names found nowhere else, to see that none reaches a page."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    tag = secrets.token_hex(4)
    config["clusters"][0]["name"] = f"cluster-{tag}"
    config["users"][0]["name"] = f"user-{tag}"
    config["contexts"] = [
        {"name": f"context-{tag}", "context": {"cluster": f"cluster-{tag}", "user": f"user-{tag}"}}
    ]
    config["current-context"] = f"context-{tag}"
    path = tmp_path_factory.mktemp("kubeconfig") / "admin.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The UI's $TMPDIR: it must stay empty (no certificate or key written there)."""
    return tmp_path_factory.mktemp("ui-tmpdir")


@pytest.fixture(scope="module")
def ui(
    scene: str, secret_kubeconfig: Path, private_tmp: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ui]:
    """The UI as the admin, showing the scene's namespace first."""
    before = memory_directories()
    server = Ui(
        secret_kubeconfig,
        tmp_path_factory.mktemp("ui"),
        "-n",
        scene,
        env={"TMPDIR": str(private_tmp)},
    )
    try:
        yield server
    finally:
        assert server.stop() == 0, server.err.read_text()
    # The certificates it kept in memory are gone with it.
    assert memory_directories() - before == set()


def memory_directories() -> set[Path]:
    """The private directories UIs keep certificates in (tmpfs)."""
    bases = [Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent")]
    return {p for base in bases if base.is_dir() for p in base.glob("nightshift-ui-*")}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        pytest.fail("no Chromium: `make browser` installs Debian's package", pytrace=False)
    browser = Chromium(binary, zone="Europe/Zurich")
    try:
        yield browser
    finally:
        browser.stop()


@pytest.fixture
def page(chromium: Chromium) -> Iterator[Page]:
    """A tab; the test fails if it logged a console error the test did not expect."""
    tab = chromium.new_page()
    try:
        yield tab
        tab.drain()
        assert tab.unexpected_errors() == [], "the page logged console errors"
    finally:
        tab.close()


def open_ui(page: Page, ui: Ui, path: str = "/") -> None:
    """Log in with the printed link (token → cookie), then open ``path``."""
    page.navigate(ui.url)
    page.wait_for("document.body.dataset.browserZone !== undefined", what="the overview")
    if path != "/":
        page.navigate(ui.base + path)
    # The first visit renders before the browser has told its zone (a cookie the script sets),
    # then fetches the content again: wait for that, and for live updates.
    page.wait_for("document.body.dataset.zoneReady === 'true'", what="the browser's zone")
    page.wait_for("document.getElementById('live').dataset.state === 'live'", what="live updates")


def texts(page: Page, selector: str) -> list[str]:
    found: list[str] = page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent.trim())"
    )
    return found


# --- the overview ---------------------------------------------------------------------------------


def test_overview_lists_the_tasks_with_their_results(page: Page, ui: Ui, scene: str) -> None:
    open_ui(page, ui)
    rows = page.wait_for(
        "[...document.querySelectorAll('tr[data-task]')].map(r => r.dataset.task)", what="rows"
    )
    assert sorted(rows) == sorted(f"{scene}/{t['metadata']['name']}" for t in TASKS)
    report = f"tr[data-task='{scene}/report']"
    assert texts(page, f"{report} .result") == ["Failed"]
    assert texts(page, f"{report} td.schedule") == ["0 */6 * * *"]
    # The run-now request failed after its retry: a red dot marked as retried.
    dots = page.evaluate(f'[...document.querySelectorAll("{report} .dot")].map(d => d.className)')
    assert "dot result-Failed retried" in dots
    assert texts(page, f"tr[data-task='{scene}/nightly-backup'] .result") == ["Succeeded"]
    assert "Suspended" in texts(page, f"tr[data-task='{scene}/paused'] td")[1]
    # Next fire in the browser's zone (Europe/Zurich).
    assert re.search(r"\d\d:\d\d CES?T", texts(page, f"{report} td")[3])
    page.screenshot(shots() / "overview.png")

    page.navigate(f"{ui.base}/?ns={scene}&labels=team%3Ddata")
    rows = page.wait_for(
        "[...document.querySelectorAll('tr[data-task]')].map(r => r.dataset.task)", what="rows"
    )
    assert sorted(rows) == [f"{scene}/{n}" for n in ("nightly-backup", "report", "warehouse-load")]


# --- the timeline ---------------------------------------------------------------------------------


def test_timeline_draws_a_failed_run_in_the_failure_colour(page: Page, ui: Ui, scene: str) -> None:
    open_ui(page, ui, f"/timeline?ns={scene}")
    row = f".tl-row[data-task='{scene}/report']"
    fill = page.wait_for(
        f"(() => {{ const b = document.querySelector(\"{row} rect.bar[data-result='Failed']\");"
        " return b && getComputedStyle(b).fill; })()",
        what="the failed run's bar",
    )
    assert fill == FAILURE_COLOUR
    legend = page.evaluate(
        "getComputedStyle(document.querySelector('.legend .swatch.result-Failed')).backgroundColor"
    )
    assert legend == FAILURE_COLOUR
    # The retry is its own bar, on the lane below the first attempt, joined to it.
    lanes = page.evaluate(
        f'[...document.querySelectorAll("{row} rect.bar[data-run^=manual-]")]'
        ".map(b => [b.dataset.attempt, Number(b.getAttribute('y'))])"
    )
    assert sorted(lanes) == [["1", 5], ["2", 17]]
    assert page.evaluate(f'document.querySelectorAll("{row} line.retry-link").length') >= 1
    # Future fires: every 15 minutes for 24 h, and a running attempt drawn up to now.
    fires = page.evaluate(
        f"document.querySelectorAll(\".tl-row[data-task='{scene}/cleanup'] .mark.fire\").length"
    )
    assert 95 <= fires <= 97
    running = f".tl-row[data-task='{scene}/warehouse-load'] rect.bar[data-result='Running']"
    assert page.evaluate(f'document.querySelectorAll("{running}").length') == 1
    assert page.evaluate("document.querySelector('.timeline').dataset.zone") == "Europe/Zurich"
    page.screenshot(shots() / "timeline.png")
    page.navigate(f"{ui.base}/timeline?ns={scene}&back=1h&ahead=6h")
    page.wait_for(f'!!document.querySelector("{row} rect.bar")', what="the zoomed timeline")
    page.screenshot(shots() / "timeline-zoomed.png")


def test_timeline_follows_the_browsers_zone(chromium: Chromium, ui: Ui, scene: str) -> None:
    tab = chromium.new_page()
    try:
        tab.set_zone("Australia/Adelaide")  # half an hour off UTC's hours
        open_ui(tab, ui, f"/timeline?ns={scene}")
        tab.wait_for(
            "document.querySelector('.timeline') &&"
            " document.querySelector('.timeline').dataset.zone === 'Australia/Adelaide'",
            what="the timeline in the browser's zone",
        )
        labels = texts(tab, ".tick-label")
        assert labels[0].split()[1] in ("ACST", "ACDT")  # the first label names the zone
        assert all(label[2:5] == ":00" for label in labels)  # its own whole hours
        tab.drain()
        assert tab.errors == []
    finally:
        tab.close()


# --- a task ---------------------------------------------------------------------------------------


def test_task_page_shows_spec_runs_events_log_and_the_next_fire_times(
    page: Page, ui: Ui, scene: str, cluster: Any
) -> None:
    open_ui(page, ui, f"/tasks/{scene}/report")
    runs = page.wait_for(
        "[...document.querySelectorAll('#runs tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent.trim()))",
        what="the runs",
    )
    assert [(r[1], r[2], r[3], r[6]) for r in runs] == [
        ("2", "Failed", "3", MESSAGE),
        ("1", "Failed", "3", MESSAGE),
    ]
    assert "RunFailed" in texts(page, "#events td")
    assert "RetryScheduled" in texts(page, "#events td")
    assert "Failing" in texts(page, "#conditions td")
    spec = dict(zip(texts(page, "#spec dt"), texts(page, "#spec dd"), strict=True))
    assert spec["Schedule"] == "0 */6 * * *"
    assert spec["Retries"].startswith("up to 1, back-off 1s")
    # KWOK pods have no kubelet, so no log: the page says which pod and what the server said.
    log = " ".join(texts(page, "#log p"))
    assert "Job report-" in log
    assert "cannot read the log of pod" in log
    # The next 10 fire times are the plugin's `next` (the core's next_fire_times).
    shown = texts(page, "#fires td.utc, #fires span.utc")
    plugin = subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(cluster.kubeconfig), "-n", scene, "next", "report",
         "--count", "10", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert shown == [t["utc"] for t in json.loads(plugin.stdout)["times"]]
    page.screenshot(shots() / "task.png")


def test_run_now_from_the_page_creates_exactly_one_job(
    page: Page, ui: Ui, scene: str, cluster: Any
) -> None:
    open_ui(page, ui, f"/tasks/{scene}/run-me")
    page.evaluate("window.stayed = true")  # gone if the page reloads

    def jobs() -> list[str]:
        found = cluster.get("jobs", "-n", scene, "-l", "nightshift.dev/task=run-me")["items"]
        return [j["metadata"]["name"] for j in found]

    # Cancel asks nothing of the server.
    page.click("button[data-action='run']")
    page.wait_for("document.getElementById('confirm').open", what="the confirmation")
    assert "Run" in page.evaluate("document.getElementById('confirm-text').textContent")
    page.click("#confirm-cancel")
    time.sleep(2)
    assert jobs() == []

    page.click("button[data-action='run']")
    page.wait_for("document.getElementById('confirm').open", what="the confirmation")
    page.screenshot(shots() / "confirm.png", full_page=False)
    page.click("#confirm-ok")
    notice = page.wait_for(
        "!document.getElementById('notice').hidden && "
        "document.getElementById('notice').textContent",
        what="the answer",
    )
    assert notice.startswith(f"Run requested for {scene}/run-me: run manual-")
    # The run appears and finishes on the page without a reload (live updates from the watch).
    page.wait_for(
        "[...document.querySelectorAll('#runs td')].some(c => c.textContent === 'Succeeded')",
        timeout=90,
        what="the run's success on the page",
    )
    assert page.evaluate("window.stayed") is True
    assert len(jobs()) == 1
    time.sleep(3)  # nothing else follows
    assert len(jobs()) == 1
    assert jobs()[0] in notice


def test_suspend_and_resume_from_the_page(page: Page, ui: Ui, scene: str, cluster: Any) -> None:
    open_ui(page, ui, f"/tasks/{scene}/nightly-backup")
    page.click("button[data-action='suspend']")
    page.wait_for("document.getElementById('confirm').open", what="the confirmation")
    page.evaluate("document.getElementById('confirm-reason').value = 'storage migration'")
    page.click("#confirm-ok")
    page.wait_for("!!document.querySelector(\"button[data-action='resume']\")", what="Resume")
    task = cluster.get("stask", "nightly-backup", "-n", scene)
    assert task["spec"]["suspend"] is True
    assert task["metadata"]["annotations"]["nightshift.dev/suspend-reason"] == "storage migration"
    assert "Suspended: storage migration" in texts(page, ".reason")
    page.click("button[data-action='resume']")
    page.wait_for("document.getElementById('confirm').open", what="the confirmation")
    page.click("#confirm-ok")
    page.wait_for("!!document.querySelector(\"button[data-action='suspend']\")", what="Suspend")
    assert cluster.get("stask", "nightly-backup", "-n", scene)["spec"]["suspend"] is False


# --- RBAC: a user bound to the view role ----------------------------------------------------------


@pytest.fixture(scope="module")
def viewer_ui(cluster: Any, scene: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """The UI as a ServiceAccount bound to `view`, with the chart's aggregated view role."""
    tmp = tmp_path_factory.mktemp("viewer")
    release = f"ui{secrets.token_hex(3)}"
    rendered = subprocess.run(
        [str(cluster.bin_dir / "helm"), "template", release, str(REPO / "charts" / "nightshift"),
         "--show-only", "templates/aggregate-view-clusterrole.yaml"],
        capture_output=True, text=True, check=True, timeout=60, env=cluster.env,
    ).stdout  # fmt: skip
    role = yaml.safe_load(rendered)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(role))
    try:
        cluster.kubectl("create", "serviceaccount", "viewer", "-n", scene)
        cluster.kubectl(
            "create", "rolebinding", "viewer", "--clusterrole=view",
            f"--serviceaccount={scene}:viewer", "-n", scene,
        )  # fmt: skip
        user = f"system:serviceaccount:{scene}:viewer"

        def can(verb: str) -> bool:
            answer = cluster.kubectl(
                "auth", "can-i", verb, "scheduledtasks.nightshift.dev", f"--as={user}", "-n", scene,
                check=False,
            )  # fmt: skip
            return answer.stdout.strip() == "yes"

        poll(lambda: can("watch"), timeout=30, what="the view role to aggregate")
        assert not can("patch")
        kubeconfig = token_kubeconfig(cluster, scene, "viewer", tmp / "viewer.kubeconfig")
        server = Ui(kubeconfig, tmp, env={})
        try:
            yield server
        finally:
            assert server.stop() == 0, server.err.read_text()
    finally:
        cluster.kubectl("delete", "clusterrole", role["metadata"]["name"], check=False)


def token_kubeconfig(cluster: Any, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as SERVICE_ACCOUNT with a bound token."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": "local", "user": service_account,
                                       "namespace": namespace}}
        ],
        "current-context": "sa",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_view_only_user_sees_the_task_but_cannot_suspend_it(
    page: Page, viewer_ui: Ui, scene: str, cluster: Any
) -> None:
    # The viewer may not list tasks cluster-wide: the UI starts in the context's namespace.
    open_ui(page, viewer_ui)
    assert f"{scene}/look-only" in page.wait_for(
        "[...document.querySelectorAll('tr[data-task]')].map(r => r.dataset.task)", what="rows"
    )
    page.navigate(f"{viewer_ui.base}/tasks/{scene}/look-only")
    page.wait_for("!!document.querySelector(\"button[data-action='suspend']\")", what="the page")
    disabled = page.evaluate(
        "[...document.querySelectorAll('button.action')].map(b => [b.dataset.action, b.disabled])"
    )
    assert disabled == [["run", True], ["suspend", True]]
    assert "may look at this task but not change it" in " ".join(texts(page, ".denied"))
    page.screenshot(shots() / "view-only.png", full_page=False)
    # Forced anyway, the API server's 403 is shown, not swallowed.
    page.expected.append("status of 403")  # the browser logs the refused request
    page.evaluate("document.querySelector(\"button[data-action='suspend']\").disabled = false")
    page.click("button[data-action='suspend']")
    page.wait_for("document.getElementById('confirm').open", what="the confirmation")
    page.click("#confirm-ok")
    problem = page.wait_for(
        "!document.getElementById('problem').hidden && "
        "document.getElementById('problem').textContent",
        what="the refusal",
    )
    assert problem.startswith("forbidden: ")
    assert "cannot patch resource" in problem
    assert cluster.get("stask", "look-only", "-n", scene)["spec"].get("suspend") is not True


# --- safety ---------------------------------------------------------------------------------------


def test_nothing_of_the_kubeconfig_reaches_the_page_nor_the_disk(
    page: Page, ui: Ui, scene: str, secret_kubeconfig: Path, private_tmp: Path, cluster: Any
) -> None:
    config = yaml.safe_load(secret_kubeconfig.read_text())
    user = config["users"][0]["user"]
    secrets_ = [
        config["clusters"][0]["cluster"]["server"],
        config["clusters"][0]["name"],
        config["contexts"][0]["name"],
        config["users"][0]["name"],
        user["client-key-data"][10:60],
        user["client-certificate-data"][10:60],
        config["clusters"][0]["cluster"]["certificate-authority-data"][10:60],
    ]
    open_ui(page, ui)
    for path in ("/", f"/timeline?ns={scene}", f"/tasks/{scene}/report"):
        page.navigate(ui.base + path)
        page.wait_for("document.getElementById('live').dataset.state === 'live'", what=path)
        html = page.evaluate("document.documentElement.outerHTML")
        leaked = [s for s in secrets_ if s in html]
        assert leaked == [], path
    assert sorted(p.name for p in private_tmp.iterdir()) == []  # no certificate or key files
    # Listening on loopback only.
    assert listening_addresses(ui.port) == {"127.0.0.1"}


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            octets = [str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)]
            found.add(".".join(octets))
    return found


def test_open_and_another_address_with_a_warning(cluster: Any, tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser.sh"  # what $BROWSER names, webbrowser (--open) runs
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    server = Ui(
        cluster.kubeconfig, tmp_path, "--address", "0.0.0.0", "--open",
        env={"BROWSER": f"{browser} %s"},
    )  # fmt: skip
    try:
        assert "warning: serving on 0.0.0.0, not only on this machine" in server.err.read_text()
        poll(opened.exists, timeout=10, what="--open to start the browser")
        assert opened.read_text().strip() == server.url
    finally:
        assert server.stop() == 0


def test_a_console_error_is_caught(chromium: Chromium, ui: Ui) -> None:
    # The check every page fixture makes can fail: a page that logs an error is seen.
    tab = chromium.new_page()
    try:
        open_ui(tab, ui)
        tab.evaluate("console.error('something broke')")
        tab.evaluate("setTimeout(() => { throw new Error('thrown later'); }, 0)")
        time.sleep(0.3)
        tab.drain()
        assert any("something broke" in e for e in tab.errors)
        assert any("thrown later" in e for e in tab.errors)
    finally:
        tab.close()

"""The web UI's server over real HTTP on loopback, against a fake API session: who gets in, what
a POST needs, how the API server's refusals reach the page, and the live-update stream.
(tests/integration/test_ui.py drives it from a real browser against the real control plane.)"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from nightshift.jobs import ANNOTATION_RUN_NOW
from nightshift.kubectl.session import Access, PluginError
from nightshift.kubectl.ui.server import UiServer

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CONTAINERS = [{"name": "main", "image": "registry.example/job:1"}]


def task(name: str, namespace: str = "team") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": CONTAINERS}}}},
        },
        "status": {"lastResult": "Failed"},
    }


@dataclass
class FakeApi:
    """The calls the UI makes, answered from memory; ``refuse`` makes a call fail like the API."""

    tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    refuse: dict[str, PluginError] = field(default_factory=dict)
    allowed: bool = True
    changes_seen: list[str] = field(default_factory=lambda: ["MODIFIED"])


class FakeSession:
    def __init__(self, api: FakeApi, namespace: str = "team") -> None:
        self.api = api
        self.namespace = namespace

    def _check(self, call: str) -> None:
        if call in self.api.refuse:
            raise self.api.refuse[call]

    def in_namespace(self, namespace: str) -> FakeSession:
        return FakeSession(self.api, namespace)

    def list_tasks(self, *, all_namespaces: bool, label_selector: str | None = None) -> list[Any]:
        self._check("list")
        return [
            t for (ns, _), t in self.api.tasks.items() if all_namespaces or ns == self.namespace
        ]

    def get_task(self, name: str) -> dict[str, Any]:
        self._check("get")
        try:
            return self.api.tasks[self.namespace, name]
        except KeyError:
            raise PluginError(f'scheduledtask "{name}" not found', 404) from None

    def patch_task(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._check("patch")
        self.api.patches.append((self.namespace, name, patch))
        return self.api.tasks[self.namespace, name]

    def task_events(self, name: str) -> list[Any]:
        self._check("events")
        return [{"type": "Warning", "reason": "RunFailed", "message": "<b>exit 3</b>"}]

    def access(self, verb: str, name: str | None = None) -> Access:
        return Access(self.api.allowed, "" if self.api.allowed else "no RBAC rule")

    def pods_of_job(self, job: str) -> list[Any]:
        return []

    def pod_log(self, pod: str, container: str, *, tail_lines: int | None = None) -> str:
        return ""

    def changes(self, kind: str, stop: threading.Event, **_: Any) -> Iterator[str]:
        self._check("watch")
        yield from self.api.changes_seen
        stop.wait(5)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi(
        tasks={("team", "backup"): task("backup"), ("prod", "report"): task("report", "prod")}
    )


@pytest.fixture
def server(api: FakeApi) -> Iterator[UiServer]:
    ui = UiServer("127.0.0.1", 0, FakeSession(api), default_namespace=None, now=lambda: NOW)  # type: ignore[arg-type]
    thread = threading.Thread(target=ui.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ui
    finally:
        ui.shutdown()
        ui.server_close()
        thread.join(timeout=10)


def request(
    ui: UiServer,
    method: str,
    path: str,
    *,
    cookie: bool = True,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    sent = dict(headers or {})
    if cookie:
        sent.setdefault("Cookie", f"{ui.guard.cookie_name}={ui.guard.access_token}")
    if body is not None:
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, text


def post(ui: UiServer, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
    sent = {"X-CSRF-Token": ui.guard.csrf_token, **headers}
    status, _, text = request(ui, "POST", path, headers=sent, body="")
    return status, json.loads(text)


def test_the_printed_link_trades_its_token_for_a_cookie(server: UiServer) -> None:
    assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    status, _, text = request(server, "GET", "/", cookie=False)
    assert status == 401
    assert "Open the link that kubectl nightshift ui printed" in text
    path = server.url.split(f":{server.port}", 1)[1]
    status, headers, _ = request(server, "GET", path, cookie=False)
    assert status == 303
    assert headers["location"] == "/"  # the token leaves the address bar
    assert f"{server.guard.cookie_name}={server.guard.access_token}" in headers["set-cookie"]
    assert "HttpOnly" in headers["set-cookie"]
    status, _, _ = request(server, "GET", "/?token=wrong", cookie=False)
    assert status == 403
    status, headers, text = request(server, "GET", "/")
    assert status == 200
    assert 'data-task="team/backup"' in text
    assert 'data-task="prod/report"' in text
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


def test_another_host_name_is_refused_even_with_the_cookie(server: UiServer) -> None:
    status, _, text = request(server, "GET", "/", headers={"Host": f"evil.example:{server.port}"})
    assert status == 403
    assert "backup" not in text


def test_a_post_needs_the_csrf_token_and_our_origin(server: UiServer, api: FakeApi) -> None:
    status, _, text = request(server, "POST", "/tasks/team/backup/run", body="")
    assert status == 403
    assert "CSRF" in text
    status, answer = post(server, "/tasks/team/backup/run", Origin="http://evil.example")
    assert status == 403
    assert api.patches == []
    status, answer = post(
        server, "/tasks/team/backup/run", Origin=f"http://127.0.0.1:{server.port}"
    )
    assert status == 200, answer
    assert "Run requested for team/backup" in answer["message"]
    ((namespace, name, patch),) = api.patches
    assert (namespace, name) == ("team", "backup")
    assert patch["metadata"]["annotations"][ANNOTATION_RUN_NOW].startswith("20261123T100000Z-")


def test_suspend_and_resume_patch_spec_suspend(server: UiServer, api: FakeApi) -> None:
    status, answer = post(server, "/tasks/team/backup/suspend")
    assert status == 200
    assert answer["message"] == "Suspended team/backup."
    status, answer = post(server, "/tasks/team/backup/resume")
    assert status == 200
    assert [p[2]["spec"]["suspend"] for p in api.patches] == [True, False]
    status, answer = post(server, "/tasks/team/backup/delete")
    assert status == 404


def test_the_api_servers_refusal_is_passed_on_not_swallowed(server: UiServer, api: FakeApi) -> None:
    api.refuse["patch"] = PluginError("forbidden: you cannot patch", 403)
    status, answer = post(server, "/tasks/team/backup/suspend")
    assert (status, answer) == (403, {"error": "forbidden: you cannot patch"})
    api.refuse["list"] = PluginError("forbidden: cannot list at the cluster scope", 403)
    status, _, text = request(server, "GET", "/")
    assert status == 403
    assert "forbidden: cannot list at the cluster scope" in text
    status, _, text = request(server, "GET", "/tasks/team/nope")
    assert status == 404
    assert "not found" in text
    api.refuse["events"] = PluginError("forbidden: events", 403)
    status, _, text = request(server, "GET", "/tasks/team/backup")
    assert status == 200
    assert "forbidden: events" in text  # the part that failed says why; the rest is shown


def test_a_task_page_disables_actions_rbac_forbids(server: UiServer, api: FakeApi) -> None:
    status, _, text = request(server, "GET", "/tasks/team/backup")
    assert status == 200
    assert "&lt;b&gt;exit 3&lt;/b&gt;" in text  # an Event's text, escaped
    assert 'data-action="run"' in text
    assert "disabled" not in text
    api.allowed = False
    _, _, text = request(server, "GET", "/tasks/team/backup")
    assert text.count(" disabled ") + text.count(" disabled>") == 2
    assert "no RBAC rule" in text


def test_content_part_static_files_and_bad_queries(server: UiServer) -> None:
    status, _, text = request(server, "GET", "/timeline", headers={"X-Nightshift-Part": "content"})
    assert status == 200
    assert not text.startswith("<!doctype")
    assert 'class="timeline"' in text
    status, headers, text = request(server, "GET", "/static/ui.js")
    assert status == 200
    assert headers["content-type"].startswith("text/javascript")
    assert "EventSource" in text
    assert request(server, "GET", "/static/../pyproject.toml")[0] == 404
    assert request(server, "GET", "/static/nope.js")[0] == 404
    status, _, text = request(server, "GET", "/timeline?back=1000d")
    assert status == 400
    assert "at most" in text


def test_live_updates_stream_changes_and_a_refusal(server: UiServer, api: FakeApi) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    cookie = f"{server.guard.cookie_name}={server.guard.access_token}"
    connection.request("GET", "/events?ns=team", headers={"Cookie": cookie})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    seen = b""
    while b"event: change" not in seen:
        seen += response.fp.readline()
    assert b"data: MODIFIED" in seen + response.fp.readline()
    connection.close()

    api.refuse["watch"] = PluginError("forbidden: cannot watch", 403)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/events?task=team/backup", headers={"Cookie": cookie})
    body = connection.getresponse().read().decode()  # the stream ends after a problem
    assert "event: problem\ndata: forbidden: cannot watch" in body
    connection.close()

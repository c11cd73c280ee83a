"""What a notification sink receives (``nightshift.notify``'s pure parts): bodies, headers, URLs.

CloudEvents are read back with the ``cloudevents`` SDK's own HTTP binding, as a receiver would.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import http as ce_http

from nightshift.care import Delivery
from nightshift.controller import Controller
from nightshift.models import NotifySink, PendingNotification, TaskStatus, parse_spec
from nightshift.notify import DeliveryError, TaskRef, _forbidden, build_request, target
from nightshift.reconcile import TaskView

TASK = TaskRef("school", "sync-ics", "6f1c2a9e-0000-4000-8000-000000000001")
ID = f"{TASK.uid}/2026-03-01T03:00:00Z/2/Failing"
ITEM = PendingNotification(
    id=ID,
    change="Failing",
    run="2026-03-01T03:00:00Z",
    attempt=2,
    at=datetime(2026, 3, 1, 3, 6, tzinfo=UTC),
    message="run 2026-03-01T03:00:00Z attempt 2 Failed (exit code 1): no route to host",
    sinks=["ops"],
)
URL = "http://127.0.0.1:8080/hook"


def sink(**fields: Any) -> NotifySink:
    return NotifySink.model_validate({"name": "ops", "url": URL, **fields})


def test_webhook_body_and_headers() -> None:
    request = build_request(sink(), TASK, ITEM, URL, {"Authorization": "Bearer s3cret"})
    assert request.url == URL
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == ID
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert json.loads(request.body) == {
        "id": ID,
        "change": "Failing",
        "time": "2026-03-01T03:06:00Z",
        "task": {"namespace": "school", "name": "sync-ics", "uid": TASK.uid},
        "run": "2026-03-01T03:00:00Z",
        "attempt": 2,
        "message": ITEM.message,
    }


@pytest.mark.parametrize("mode", [None, "Binary", "Structured"])
def test_cloud_events_read_back_with_the_sdk(mode: str | None) -> None:
    fields: dict[str, Any] = {"type": "CloudEvents"} | ({"mode": mode} if mode else {})
    request = build_request(sink(**fields), TASK, ITEM, URL, {})
    if mode == "Structured":
        assert request.headers["content-type"].startswith("application/cloudevents+json")
    else:
        assert request.headers["ce-id"]  # binary mode: the attributes are headers
    event = ce_http.from_http_event(ce_http.HTTPMessage(request.headers, request.body))
    assert event.get_specversion() == "1.0"
    assert event.get_id() == ID  # task uid + run + attempt + change: the idempotency key
    assert event.get_type() == "dev.nightshift.task.failing"
    assert (
        event.get_source()
        == "/apis/nightshift.dev/v1alpha1/namespaces/school/scheduledtasks/sync-ics"
    )
    assert event.get_subject() == "2026-03-01T03:00:00Z"
    assert event.get_time() == datetime(2026, 3, 1, 3, 6, tzinfo=UTC)
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["message"] == ITEM.message


def test_slack_is_one_line_of_text() -> None:
    request = build_request(sink(type="Slack"), TASK, ITEM, URL, {})
    assert json.loads(request.body) == {
        "text": ":red_circle: ScheduledTask school/sync-ics is failing: " + ITEM.message
    }


def test_the_url_and_headers_come_from_the_secret() -> None:
    secret = {
        "url": "https://hooks.example/T000/B000/XXXX\n",
        "header.Authorization": "Bearer s3cret",
        "header.X-Team": "data",
        "unrelated": "ignored",
    }
    url, headers = target(sink(url=None, secretRef={"name": "ops-hook"}), secret)
    assert url == "https://hooks.example/T000/B000/XXXX"
    assert headers == {"Authorization": "Bearer s3cret", "X-Team": "data"}


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ({}, "Secret ops-hook has no key url"),
        ({"url": "file:///etc/passwd"}, "not http:// or https://"),
        ({"url": URL, "header.Bad Name": "x"}, "header.Bad Name is not a valid HTTP header"),
        ({"url": URL, "header.X": "a\r\nInjected: 1"}, "header.X is not a valid HTTP header"),
    ],
)
def test_bad_secrets_are_a_delivery_error(secret: dict[str, str], problem: str) -> None:
    with pytest.raises(DeliveryError, match=problem):
        target(sink(url=None, secretRef={"name": "ops-hook"}), secret)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),  # cloud metadata
        ("fe80::1", True),
        ("0.0.0.0", True),
        ("127.0.0.1", False),
        ("10.0.0.7", False),
        ("receiver.example", False),  # a name: checked after resolving
    ],
)
def test_link_local_targets_are_refused(address: str, refused: bool) -> None:
    assert _forbidden(address) is refused


# --- which deliveries the controller offers -------------------------------------------------------


class _Api:
    """Just enough of KubeApi for a Controller that makes no call."""

    on_unreachable: Any = None


def _offered(status: dict[str, Any], outcomes: list[Any] | None = None) -> list[tuple[str, str]]:
    async def run() -> list[tuple[str, str]]:
        controller = Controller(_Api(), clock=lambda: datetime(2026, 3, 1, 3, 7, tzinfo=UTC))
        key = (TASK.namespace, TASK.name)
        controller._deliveries[key] = list(outcomes or [])
        spec = parse_spec(
            {
                "interval": "1h",
                "notify": [{"name": "ops", "url": URL}, {"name": "chat", "url": URL}],
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}},
            }
        )
        view = TaskView(
            namespace=TASK.namespace, name=TASK.name, uid=TASK.uid, generation=1,
            created=datetime(2026, 3, 1, tzinfo=UTC), spec=spec, spec_error=None,
            status=TaskStatus(),
        )  # fmt: skip
        controller._offer(key, view, TaskStatus.model_validate(status), spec)
        queue = controller.notifier._queue
        return [(job.item.change.value, job.sink.name) for job in queue._queue]

    return asyncio.run(run())


def _owed(change: str, *sinks: str, **more: Any) -> dict[str, Any]:
    return {
        "id": f"{TASK.uid}/r/1/{change}",
        "change": change,
        "run": "r",
        "at": "2026-03-01T03:06:00Z",
        "sinks": list(sinks),
        **more,
    }


def test_each_sink_is_offered_only_its_oldest_notification() -> None:
    status = {"notifications": [_owed("Failing", "ops"), _owed("Suspended", "ops", "chat")]}
    # ops gets Failing first (Suspended waits for it); chat owes nothing older, so it is offered.
    assert _offered(status) == [("Failing", "ops"), ("Suspended", "chat")]


def test_a_notification_waits_for_its_back_off_and_for_its_outcome_to_be_folded() -> None:
    later = _owed("Failing", "ops", notBefore="2026-03-01T03:08:00Z")
    assert _offered({"notifications": [later, _owed("Recovered", "ops")]}) == []
    pending = Delivery(f"{TASK.uid}/r/1/Failing", "ops", True, datetime(2026, 3, 1, tzinfo=UTC))
    assert _offered({"notifications": [_owed("Failing", "ops")]}, [pending]) == []

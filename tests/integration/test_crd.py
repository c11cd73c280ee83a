"""The generated CRD on the real API server: it installs, accepts the examples, and its schema and
CEL rules reject what they can with a message naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "scheduledtasks.nightshift.dev.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def installed(cluster: Any) -> None:
    cluster.kubectl("apply", "-f", str(CRD.parent))
    for path in sorted(CRD.parent.glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{path.stem}")


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jobTemplate": {
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}
        }
    }
    base.update(spec)
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": "t"},
        "spec": base,
    }


def dry_run(cluster: Any, namespace: str, obj: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(obj), check=False,
    )  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted(
    cluster: Any, installed: None, namespace: str, example: Path
) -> None:
    result = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", str(example))
    assert "created (server dry run)" in result.stdout


def test_defaults_are_applied_by_the_api_server(
    cluster: Any, installed: None, namespace: str
) -> None:
    cluster.apply(manifest(schedule="@daily"), namespace)
    spec = cluster.get("stask", "t", "-n", namespace)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "UTC"
    assert spec["catchUp"] == "Latest"
    assert spec["retry"]["maxRetries"] == 0
    assert spec["retry"]["backoff"] == {
        "initial": "10s",
        "factor": 2.0,
        "max": "10m",
        "jitter": True,
    }
    assert spec["history"] == {"succeeded": 3, "failed": 5, "excluded": 3}


def test_short_name_category_and_columns(cluster: Any, installed: None, namespace: str) -> None:
    cluster.apply(manifest(interval="6h"), namespace)
    header = cluster.kubectl("get", "stask", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "RESULT", "AGE"]
    assert "t" in cluster.kubectl("get", "nightshift", "-n", namespace, "-o", "name").stdout


REJECTED = [
    (
        "schedule-and-interval",
        {"schedule": "* * * * *", "interval": "5m"},
        "set exactly one of schedule, interval, at and schedules",
    ),
    ("no-schedule", {}, "set exactly one of schedule, interval, at and schedules"),
    ("oversize-schedule", {"schedule": "1," * 200 + "1 * * * *"}, "spec.schedule: Too long"),
    ("negative-duration", {"interval": "-5s"}, "spec.interval"),
    ("nonsense-duration", {"schedule": "@daily", "timeout": "soon"}, "spec.timeout"),
    (
        "unknown-policy",
        {"schedule": "@daily", "concurrencyPolicy": "Sometimes"},
        "spec.concurrencyPolicy",
    ),
    (
        "window-order",
        {"schedule": "@daily", "startAt": "2026-12-01T00:00:00Z", "endAt": "2026-11-01T00:00:00Z"},
        "startAt must be before endAt",
    ),
    (
        "anchor-without-interval",
        {"schedule": "@daily", "anchor": "2026-01-01T00:00:00Z"},
        "anchor is only meaningful with interval",
    ),
    (
        "both-exit-code-filters",
        {"schedule": "@daily", "retry": {"onExitCodes": [1], "notOnExitCodes": [2]}},
        "set at most one of onExitCodes and notOnExitCodes",
    ),
    (
        "too-many-retries",
        {"schedule": "@daily", "retry": {"maxRetries": 1000}},
        "spec.retry.maxRetries",
    ),
    (
        "exit-code-range",
        {"schedule": "@daily", "retry": {"onExitCodes": [256]}},
        "spec.retry.onExitCodes[0]",
    ),
    (
        "suspend-after-zero",
        {"schedule": "@daily", "failurePolicy": {"suspendAfter": 0}},
        "spec.failurePolicy.suspendAfter",
    ),
    ("nonsense-deadline", {"schedule": "@daily", "deadline": "by nine"}, "spec.deadline"),
    (
        "sink-without-target",
        {"schedule": "@daily", "notify": [{"name": "ops"}]},
        "set url or secretRef (whose key url holds the URL)",
    ),
    (
        "sink-with-two-targets",
        {
            "schedule": "@daily",
            "notify": [{"name": "ops", "url": "http://x/", "secretRef": {"name": "s"}}],
        },
        "set at most one of url and secretRef",
    ),
    (
        "sink-not-http",
        {"schedule": "@daily", "notify": [{"name": "ops", "url": "file:///etc/passwd"}]},
        "spec.notify[0].url",
    ),
    (
        "sink-mode-without-cloudevents",
        {"schedule": "@daily", "notify": [{"name": "ops", "url": "http://x/", "mode": "Binary"}]},
        "mode is only meaningful with type CloudEvents",
    ),
    (
        "sink-names-repeated",
        {
            "schedule": "@daily",
            "notify": [{"name": "ops", "url": "http://x/"}, {"name": "ops", "url": "http://y/"}],
        },
        "sink names must be unique",
    ),
    (
        "sink-unknown-change",
        {
            "schedule": "@daily",
            "notify": [{"name": "ops", "url": "http://x/", "changes": ["Bored"]}],
        },
        "spec.notify[0].changes[0]",
    ),
    (
        "template-namespace",
        {
            "schedule": "@daily",
            "jobTemplate": {"metadata": {"namespace": "kube-system"}, "spec": {"template": {}}},
        },
        "spec.jobTemplate.metadata",
    ),
]


@pytest.mark.parametrize(
    ("spec", "message"), [(s, m) for _, s, m in REJECTED], ids=[i for i, _, _ in REJECTED]
)
def test_schema_and_cel_reject_with_the_field_named(
    cluster: Any, installed: None, namespace: str, spec: dict[str, Any], message: str
) -> None:
    obj = manifest(**spec)
    if not spec:
        obj["spec"] = {"jobTemplate": obj["spec"]["jobTemplate"]}
    result = dry_run(cluster, namespace, obj)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_checked_in_crd_is_the_generated_one() -> None:
    from nightshift.crd import crd_yaml

    assert CRD.read_text() == crd_yaml()
    assert yaml.safe_load_all(CRD.read_text())

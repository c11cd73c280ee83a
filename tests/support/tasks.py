"""ScheduledTask manifests, and what the tests read back: its Jobs, status, Events, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def task(name: str, **spec: Any) -> dict[str, Any]:
    """A ScheduledTask NAME with SPEC and a one-container Job (its pods annotated with
    ``pod_annotations``, or ``job_template`` in place of it all)."""
    annotations = spec.pop("pod_annotations", None)
    template: dict[str, Any] = {
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/job:1"}]}
    }
    if annotations:
        template["metadata"] = {"annotations": annotations}
    job_template = spec.pop("job_template", {"spec": {"template": template}})
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": name},
        "spec": {**spec, "jobTemplate": job_template},
    }


def jobs(cluster: Any, namespace: str, task_name: str | None = None) -> list[dict[str, Any]]:
    """The Jobs in NAMESPACE (of one task, by its label), sorted by name."""
    selector = ["-l", f"nightshift.dev/task={task_name}"] if task_name else []
    items: list[dict[str, Any]] = cluster.get("jobs", "-n", namespace, *selector)["items"]
    return sorted(items, key=lambda j: j["metadata"]["name"])


def status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.get("stask", name, "-n", namespace)
    result: dict[str, Any] = obj.get("status") or {}
    return result


def events(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events about ScheduledTask NAME."""
    items = cluster.get(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [e for e in items if e["involvedObject"].get("kind") == "ScheduledTask"]


def reasons(cluster: Any, namespace: str, name: str) -> list[str]:
    """Each Event's reason as many times as it happened: the same Event again within 10 minutes
    is a count on the first Event object, as client-go's recorder does."""
    return [
        e["reason"] for e in events(cluster, namespace, name) for _ in range(e.get("count") or 1)
    ]


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type KIND in a status ({} when there is none)."""
    for cond in st.get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def finished(job: dict[str, Any]) -> str | None:
    """How the Job ended, "Complete" or "Failed"; None while it has not."""
    for cond in job.get("status", {}).get("conditions") or []:
        if cond["status"] == "True" and cond["type"] in ("Complete", "Failed"):
            return str(cond["type"])
    return None


def ts(text: str) -> datetime:
    """An RFC 3339 time of the API (``Z`` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

"""What the phases create: ScheduledTasks, the equivalent CronJobs, and the pool of threads that
creates them."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench.constants import CRONJOB_DEADLINE, THREADS
from bench.host import say
from bench.slots import daily_cron
from nightshift.jobs import ANNOTATION_TASK_UID, build_job, run_id_for_slot
from nightshift.models import GROUP, KIND, PLURAL, VERSION, parse_spec


def task_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    base = {
        "history": {"succeeded": 1, "failed": 1},
        "jobTemplate": {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "main", "image": "registry.invalid/job:1"}]}
                }
            }
        },
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": base | spec,
    }


def create_all(
    bodies: list[dict[str, Any]], create: Callable[[dict[str, Any]], Any], what: str
) -> dict[str, Any]:
    """Create objects with a pool of threads (retrying overload errors); returns what ``create``
    returned for each and the time it took."""

    def one(body: dict[str, Any]) -> Any:
        for attempt in range(8):
            try:
                return create(body)
            except ApiException as error:
                if error.status not in (429, 500, 503, 504) or attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        created = list(pool.map(one, bodies))
    seconds = time.monotonic() - start
    say(f"created {len(created)} {what} in {seconds:.1f} s ({len(created) / seconds:.0f}/s)")
    return {"objects": created, "seconds": round(seconds, 2)}


def create_tasks(admin: Any, namespace: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Create the tasks with a pool of threads; returns the created objects and the rate."""
    custom = client.CustomObjectsApi(admin)

    def one(body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return created

    return create_all(bodies, one, "ScheduledTasks")


def cronjob_body(name: str, slot: float) -> dict[str, Any]:
    """A batch/v1 CronJob equivalent to the task ``name`` due daily at ``slot``: its jobTemplate is
    the Job Nightshift builds for that task and slot (``build_job``), less what the CronJob
    controller sets itself (the name, the owner reference) and the task-uid annotation (there is
    no task). The labels keep ``nightshift.dev/managed=true`` (the watcher's selector) and the
    annotations the run id and attempt "1" (the keys of the skew report)."""
    when = datetime.fromtimestamp(slot, UTC)
    schedule = daily_cron(slot)
    spec = parse_spec(task_body(name, {"schedule": schedule, "timeZone": "UTC"})["spec"])
    job = build_job(
        task_name=name,
        task_uid="",
        spec=spec,
        run=run_id_for_slot(when),
        attempt=1,
        slot=when,
    )
    meta = job["metadata"]
    annotations = {k: v for k, v in meta["annotations"].items() if k != ANNOTATION_TASK_UID}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": CRONJOB_DEADLINE,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": meta["labels"], "annotations": annotations},
                "spec": job["spec"],
            },
        },
    }


def create_cronjobs(admin: Any, namespace: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    batch = client.BatchV1Api(admin)

    def one(body: dict[str, Any]) -> str:
        name: str = batch.create_namespaced_cron_job(namespace, body).metadata.name
        return name

    return create_all(bodies, one, "CronJobs")

"""Job naming and manifests: a deterministic name per (task, run, attempt) and the Job for each.

The name is the last line of defence against double runs: every replica and every restart computes
the same name for the same attempt, so a second create fails with AlreadyExists. Run-now tokens
live here too, because a token names its run (``manual_run_id``) and so its Jobs.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nightshift.models import API_VERSION, KIND, TaskSpec, format_time
from nightshift.sharding import LABEL_BUCKET, bucket

__all__ = [
    "ANNOTATION_ATTEMPT",
    "ANNOTATION_BACKFILL",
    "ANNOTATION_BACKFILL_UID",
    "ANNOTATION_RUN",
    "ANNOTATION_RUN_NOW",
    "ANNOTATION_SLOT",
    "CRONJOB_SCHEDULED_TIMESTAMP",
    "KUEUE_LABELS",
    "LABEL_BACKFILL",
    "LABEL_BUCKET",
    "LABEL_MANAGED",
    "LABEL_TASK",
    "PREFIX",
    "TOKEN_LIMIT",
    "build_job",
    "job_identity",
    "job_name",
    "manual_run_id",
    "new_token",
    "run_id_for_slot",
    "token_key",
]

PREFIX = "nightshift.dev/"
LABEL_TASK = PREFIX + "task"
LABEL_MANAGED = PREFIX + "managed"  # the server-side selector of the operator's Job watch
ANNOTATION_SLOT = PREFIX + "scheduled-at"
ANNOTATION_ATTEMPT = PREFIX + "attempt"
ANNOTATION_RUN = PREFIX + "run"
ANNOTATION_RUN_NOW = PREFIX + "run-now"
ANNOTATION_TASK_UID = PREFIX + "task-uid"
# A Backfill's Jobs: its name (also a label, for kubectl get jobs -l) and its uid (its identity).
ANNOTATION_BACKFILL = PREFIX + "backfill"
ANNOTATION_BACKFILL_UID = PREFIX + "backfill-uid"
LABEL_BACKFILL = PREFIX + "backfill"

# KEP-4026: the CronJob controller stamps each Job with its scheduled time (RFC 3339, in the
# CronJob's zone); tools that read CronJob-made Jobs (dashboards, Kueue, kube-state-metrics)
# understand ours when we write it too.
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# Kueue admits a Job to the queue its label names, at the priority its label names. Set on the
# task itself they are passed to every Job; the jobTemplate's own labels win
# (docs/guide.md#queues-kueue).
KUEUE_LABELS = ("kueue.x-k8s.io/queue-name", "kueue.x-k8s.io/priority-class")

TOKEN_LIMIT = 128  # characters; status.runNowToken's bound

_MAX_NAME = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def run_id_for_slot(slot: datetime) -> str:
    """The run identity of a scheduled slot: its UTC time in RFC 3339 (``2026-11-23T03:00:00Z``)."""
    return format_time(slot)


def manual_run_id(token: str) -> str:
    """The run identity of a run-now request: stable per token, safe in names."""
    return "manual-" + hashlib.sha256(token.encode()).hexdigest()[:10]


def new_token(now: datetime, suffix: str | None = None) -> str:
    """A fresh run-now token: the UTC time and a random suffix (``20261124T073000Z-1a2b3c``)."""
    tail = suffix if suffix is not None else secrets.token_hex(3)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{tail}"


def token_key(token: str) -> str:
    """What status.runNowToken records for a run-now token: the token, or a digest of a long one
    (annotations are unbounded; the status field is not). The operator writes it, and
    ``kubectl nightshift run`` compares against it to tell whether a request was taken."""
    if len(token) <= TOKEN_LIMIT:
        return token
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _run_slug(run: str) -> str:
    if run.startswith("manual-"):
        return "m" + run.removeprefix("manual-")
    # 2026-11-23T03:00:00Z -> 20261123030000 (14 digits, sortable by eye)
    return re.sub(r"[^0-9]", "", run)


def job_name(task: str, run: str, attempt: int) -> str:
    """Deterministic Job name for (task, run, attempt), at most 63 characters.

    ``nightly-20261123030000-1``; a long task name is cut and a hash of the full name keeps it
    unique: ``very-long-task-na-8c1f2a9b-20261123030000-1``.
    """
    suffix = f"-{_run_slug(run)}-{attempt}"
    name = task + suffix
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(suffix) - len(digest) - 1
    head = task[:keep].rstrip("-.")
    return f"{head}-{digest}{suffix}"


def job_identity(job: dict[str, Any]) -> tuple[str, int] | None:
    """(run, attempt) recorded on a Job we created, or None for a Job that is not ours."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    run = annotations.get(ANNOTATION_RUN)
    attempt = annotations.get(ANNOTATION_ATTEMPT)
    if not run or not attempt or not str(attempt).isdigit():
        return None
    return str(run), int(attempt)


def _task_label(name: str) -> str:
    # Task names are DNS subdomains (up to 253 characters); label values stop at 63.
    if len(name) <= _MAX_NAME and _LABEL_VALUE.match(name):
        return name
    return name[:54].rstrip("-._") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def task_label_value(name: str) -> str:
    """The value of the ``nightshift.dev/task`` label for a task name."""
    return _task_label(name)


def build_job(
    *,
    task_name: str,
    task_uid: str,
    spec: TaskSpec,
    run: str,
    attempt: int,
    slot: datetime | None,
    tz_offset_slot: datetime | None = None,
    run_now_token: str | None = None,
    backfill: tuple[str, str] | None = None,
    task_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job for one attempt: the template plus our name, owner, labels and limits.

    ``backfill`` is (name, uid) of the Backfill that runs the attempt: the Job is still the
    task's (its name, its owner), marked as the Backfill's.

    The namespace is not set here: the caller creates the Job in the task's own namespace, and the
    template cannot name another one (validation rejects it).
    """
    template = spec.jobTemplate
    job_spec: dict[str, Any] = copy.deepcopy(template.spec.model_dump(exclude_none=True))
    pod_template = job_spec.setdefault("template", {})
    pod_spec = pod_template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    # Retries are ours, one Job per attempt (docs/architecture.md#retries-are-the-operators).
    job_spec.setdefault("backoffLimit", 0)
    if spec.timeout is not None:
        job_spec["activeDeadlineSeconds"] = max(1, math.ceil(spec.timeout.total_seconds()))

    labels = {k: v for k, v in (task_labels or {}).items() if k in KUEUE_LABELS}
    labels.update(template.metadata.labels or {})
    labels[LABEL_TASK] = _task_label(task_name)
    labels[LABEL_MANAGED] = "true"
    # The shard that owns the task selects its Jobs by this label: a Job's own uid is not its
    # task's, so the API server's shardSelector cannot pick them (docs/operator.md#scale-out).
    labels[LABEL_BUCKET] = str(bucket(task_uid))
    annotations = dict(template.metadata.annotations or {})
    annotations[ANNOTATION_RUN] = run
    annotations[ANNOTATION_ATTEMPT] = str(attempt)
    annotations[ANNOTATION_TASK_UID] = task_uid
    if slot is not None:
        shown = tz_offset_slot or slot
        annotations[ANNOTATION_SLOT] = shown.isoformat(timespec="seconds")
        # Go's RFC 3339 writes a zero offset as "Z".
        annotations[CRONJOB_SCHEDULED_TIMESTAMP] = annotations[ANNOTATION_SLOT].replace(
            "+00:00", "Z"
        )
    if run_now_token is not None:
        annotations[ANNOTATION_RUN_NOW] = run_now_token
    if backfill is not None:
        annotations[ANNOTATION_BACKFILL], annotations[ANNOTATION_BACKFILL_UID] = backfill
        labels[LABEL_BACKFILL] = _task_label(backfill[0])

    # Pods carry the task label too, so `kubectl logs -l nightshift.dev/task=...` works.
    pod_metadata = pod_template.setdefault("metadata", {})
    pod_labels = dict(pod_metadata.get("labels") or {})
    pod_labels[LABEL_TASK] = labels[LABEL_TASK]
    pod_metadata["labels"] = pod_labels
    # ... and the run, attempt and slot, which a container can only read from its own pod (the
    # downward API: env valueFrom fieldRef metadata.annotations['nightshift.dev/attempt']).
    pod_annotations = dict(pod_metadata.get("annotations") or {})
    for key in (ANNOTATION_RUN, ANNOTATION_ATTEMPT, ANNOTATION_SLOT):
        if key in annotations:
            pod_annotations[key] = annotations[key]
    pod_metadata["annotations"] = pod_annotations

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(task_name, run, attempt),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": task_name,
                    "uid": task_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }

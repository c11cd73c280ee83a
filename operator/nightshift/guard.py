"""What a task may ask of the cluster, judged the same at admission and before every Job.

A ScheduledTask is a workload: whoever may write one gets pods. The webhook judges a task when it
is written, but its failurePolicy is Ignore, so the operator judges it again on every sync and
creates no Job for a task that fails: Pod Security (the namespace's level, see
:mod:`nightshift.podsecurity`, plus node placement and ``manualSelector``), the namespace's
ServiceAccount allowlist, the minimum interval and the template's size. Which namespace allows
what comes from its labels and annotations (:func:`namespace_policy`); the limits are the
operator's flags. Everything here is pure: the caller passes the namespace's policy in.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nightshift.durations import format_duration
from nightshift.models import TaskSpec
from nightshift.podsecurity import LEVELS, Level, check_pod
from nightshift.schedule import iter_slots, plan_for

__all__ = [
    "ANNOTATION_SERVICE_ACCOUNTS",
    "CONTROL_PLANE_TAINTS",
    "LABEL_ENFORCE",
    "REASONS",
    "Limits",
    "NamespacePolicy",
    "Refusal",
    "judge",
    "namespace_policy",
    "template_size",
]

# The namespace label Pod Security admission enforces; the operator holds Jobs to the same level.
LABEL_ENFORCE = "pod-security.kubernetes.io/enforce"
# The ServiceAccounts a namespace's tasks may run their pods as (besides `default`), comma or
# space separated; `*` allows any. Absent: any. Only who may update namespaces can set it.
ANNOTATION_SERVICE_ACCOUNTS = "nightshift.dev/allowed-service-accounts"
# Tolerating these lands pods on the control plane, next to etcd and the API server's secrets.
CONTROL_PLANE_TAINTS = frozenset(
    {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}
)
TEMPLATE = "spec.jobTemplate.spec.template"  # the pod template's path in a task
# A cron schedule's shortest gap is judged over this many fire times after a fixed instant.
CRON_SAMPLE = 128
_REFERENCE = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, far from any DST change
_PLACEHOLDER = {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}
REASONS = (
    "NamespaceExcluded",
    "PodSecurity",
    "ServiceAccountNotAllowed",
    "IntervalTooShort",
    "TemplateTooLarge",
)
Reason = Literal[
    "NamespaceExcluded",
    "PodSecurity",
    "ServiceAccountNotAllowed",
    "IntervalTooShort",
    "TemplateTooLarge",
]


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """What a namespace allows its tasks' pods."""

    level: Level
    source: str  # where the level comes from, for messages: "label" or "default"
    service_accounts: frozenset[str] | None = None  # None: any

    def describe(self) -> str:
        where = "the namespace's label" if self.source == "label" else "the operator's default"
        return f'Pod Security "{self.level}" ({where})'


@dataclass(frozen=True, slots=True)
class Limits:
    """The operator's limits on every task (``nightshift run`` flags, chart values)."""

    min_interval: timedelta = timedelta(minutes=1)
    max_template_bytes: int = 64 * 1024
    # Namespaces whose tasks get no Jobs at all (the chart: kube-system and its own namespace).
    excluded_namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no Job may be created for a task: a condition reason and a message naming fields."""

    reason: Reason
    message: str


def namespace_policy(
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    default: Level = "baseline",
) -> NamespacePolicy:
    """The policy of a namespace with these labels and annotations.

    The level is its ``pod-security.kubernetes.io/enforce`` label, ``default`` without one, and
    ``restricted`` for a label that names no level (Pod Security admission fails closed the same
    way).
    """
    labels = labels or {}
    annotations = annotations or {}
    value = labels.get(LABEL_ENFORCE)
    if value is None:
        level, source = default, "default"
    else:
        level = next((lvl for lvl in LEVELS if lvl == value), "restricted")
        source = "label"
    allowed = annotations.get(ANNOTATION_SERVICE_ACCOUNTS)
    accounts: frozenset[str] | None = None
    if allowed is not None:
        names = frozenset(n for n in re.split(r"[\s,]+", allowed) if n)
        accounts = None if "*" in names else names | {"default"}
    return NamespacePolicy(level, source, accounts)


def template_size(job_template: Any) -> int:
    """Bytes of the job template as compact JSON (what every Job made from it carries)."""
    return len(json.dumps(job_template, separators=(",", ":"), ensure_ascii=False).encode())


def _shortest_gap(spec: TaskSpec, namespace: str, name: str) -> timedelta | None:
    """The shortest time between two slots of the task; None for a one-shot."""
    if spec.interval is not None:
        return spec.interval
    if spec.schedule is not None:
        entries: tuple[tuple[str, str | None], ...] = ((spec.schedule, None),)
    elif spec.schedules:
        entries = tuple((entry.cron, entry.timeZone) for entry in spec.schedules)
    else:
        return None
    return _cron_gap(entries, spec.timeZone, namespace, name)


@functools.lru_cache(maxsize=4096)
def _cron_gap(
    entries: tuple[tuple[str, str | None], ...], zone: str, namespace: str, name: str
) -> timedelta | None:
    # Five cron fields cannot fire more than once a minute: only a floor above that needs the
    # fire times. (Were cron ever to take a seconds field, this sample would judge it as well.)
    # Several schedules are judged by their union, the slots the task actually has.
    fields: dict[str, Any] = (
        {"schedule": entries[0][0]}
        if len(entries) == 1 and entries[0][1] is None
        else {"schedules": [{"cron": cron, "timeZone": tz} for cron, tz in entries]}
    )
    spec = TaskSpec.model_validate({**fields, "timeZone": zone, "jobTemplate": _PLACEHOLDER})
    plan = plan_for(spec, namespace, name)
    slots = list(itertools.islice(iter_slots(plan, _REFERENCE), CRON_SAMPLE))
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    return min(gaps) if gaps else None


def _interval(spec: TaskSpec, namespace: str, name: str, limits: Limits) -> Refusal | None:
    if limits.min_interval <= timedelta(minutes=1) and spec.interval is None:
        return None  # cron (one or several): once a minute at most; at: once
    gap = _shortest_gap(spec, namespace, name)
    if gap is None or gap >= limits.min_interval:
        return None
    floor = format_duration(limits.min_interval)
    if spec.interval is not None:
        field = f"spec.interval: {format_duration(spec.interval)} is"
    elif spec.schedule is not None:
        field = f"spec.schedule: {spec.schedule!r} fires {format_duration(gap)} apart,"
    else:
        field = f"spec.schedules: together they fire {format_duration(gap)} apart,"
    return Refusal(
        "IntervalTooShort", f"{field} below the minimum interval {floor} (the operator's limit)"
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _placement(template: Mapping[str, Any], job_spec: Mapping[str, Any]) -> list[str]:
    """Nightshift's own rules at baseline and above: what the Pod Security Standards leave to
    RBAC on pods, which a task's author may not have."""
    pod = _mapping(template.get("spec"))
    out = []
    if pod.get("nodeName"):
        # Bypasses the scheduler, so taints, affinity and the node's own admission do not apply.
        out.append(f"{TEMPLATE}.spec.nodeName: must not be set (it bypasses the scheduler)")
    tolerations = pod.get("tolerations")
    for i, toleration in enumerate(tolerations if isinstance(tolerations, list) else []):
        if not isinstance(toleration, Mapping):
            continue
        key = toleration.get("key") or ""
        if not key and toleration.get("operator") == "Exists":
            out.append(
                f"{TEMPLATE}.spec.tolerations[{i}]: must not tolerate every taint (name a key)"
            )
        elif key in CONTROL_PLANE_TAINTS:
            out.append(f"{TEMPLATE}.spec.tolerations[{i}].key: must not tolerate {key}")
    if job_spec.get("manualSelector") is True:
        # The Job would own (and delete) whatever pods its selector matches, not only its own.
        out.append("spec.jobTemplate.spec.manualSelector: must not be true")
    return out


def _service_account(template: Mapping[str, Any], policy: NamespacePolicy) -> Refusal | None:
    if policy.service_accounts is None:
        return None
    pod = _mapping(template.get("spec"))
    field = "serviceAccountName" if pod.get("serviceAccountName") else "serviceAccount"
    account = str(pod.get(field) or "default")
    if account in policy.service_accounts:
        return None
    allowed = ", ".join(sorted(policy.service_accounts))
    return Refusal(
        "ServiceAccountNotAllowed",
        f"{TEMPLATE}.spec.{field}: {account!r} is not in the namespace's allowlist "
        f"({ANNOTATION_SERVICE_ACCOUNTS}: {allowed})",
    )


def judge(
    spec: TaskSpec,
    job_template: Any,
    *,
    namespace: str,
    name: str,
    policy: NamespacePolicy,
    limits: Limits,
) -> Refusal | None:
    """Whether the task may have Jobs: None, or the first kind of problem with every field of
    that kind. ``job_template`` is ``spec.jobTemplate`` as stored (raw JSON)."""
    if namespace in limits.excluded_namespaces:
        return Refusal(
            "NamespaceExcluded",
            f"metadata.namespace: {namespace} is excluded from Nightshift (the operator's "
            "--exclude-namespace): its tasks get no Jobs; use another namespace",
        )
    size = template_size(job_template)
    if size > limits.max_template_bytes:
        return Refusal(
            "TemplateTooLarge",
            f"spec.jobTemplate: {size} bytes, more than the limit of "
            f"{limits.max_template_bytes} (the operator's limit); keep scripts and data in a "
            "ConfigMap",
        )
    refused = _interval(spec, namespace, name, limits)
    if refused is not None:
        return refused
    job_spec = _mapping(_mapping(job_template).get("spec"))
    template = _mapping(job_spec.get("template"))
    problems = [v.at(TEMPLATE) for v in check_pod(template, policy.level)]
    if policy.level != "privileged":
        problems += _placement(template, job_spec)
    if problems:
        return Refusal("PodSecurity", f"{policy.describe()}: " + "; ".join(problems))
    return _service_account(template, policy)

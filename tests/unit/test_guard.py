"""What a task may ask of the cluster: one row per situation, the refusal's reason and the fields
its message names (or no refusal)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from nightshift.guard import (
    Limits,
    NamespacePolicy,
    Refusal,
    judge,
    namespace_policy,
    template_size,
)
from nightshift.models import parse_spec

T = "spec.jobTemplate.spec.template.spec"
BASELINE = NamespacePolicy("baseline", "default")


def task(pod: dict[str, Any] | None = None, job: dict[str, Any] | None = None, **more: Any) -> Any:
    pod_spec = {"containers": [{"name": "main", "image": "busybox"}], **(pod or {})}
    return {
        "interval": "5m",
        "jobTemplate": {"spec": {"template": {"spec": pod_spec}, **(job or {})}},
        **more,
    }


def verdict(
    raw: dict[str, Any],
    policy: NamespacePolicy = BASELINE,
    limits: Limits | None = None,
) -> Refusal | None:
    return judge(
        parse_spec(raw),
        raw["jobTemplate"],
        namespace="ns",
        name="t",
        policy=policy,
        limits=limits or Limits(),
    )


ROWS: list[tuple[str, dict[str, Any], NamespacePolicy, str | None, list[str]]] = [
    ("plain", task(), BASELINE, None, []),
    (
        "privileged",
        task({"containers": [{"name": "m", "securityContext": {"privileged": True}}]}),
        BASELINE,
        "PodSecurity",
        [f"{T}.containers[0].securityContext.privileged"],
    ),
    (
        "privileged in a privileged namespace",
        task({"containers": [{"name": "m", "securityContext": {"privileged": True}}]}),
        NamespacePolicy("privileged", "label"),
        None,
        [],
    ),
    (
        "hostPath / and hostPID",
        task({"hostPID": True, "volumes": [{"name": "r", "hostPath": {"path": "/"}}]}),
        BASELINE,
        "PodSecurity",
        [f"{T}.hostPID", f"{T}.volumes[0].hostPath"],
    ),
    ("nodeName", task({"nodeName": "cp-1"}), BASELINE, "PodSecurity", [f"{T}.nodeName"]),
    (
        "nodeName when privileged",
        task({"nodeName": "n"}),
        NamespacePolicy("privileged", "label"),
        None,
        [],
    ),
    (
        "tolerating every taint",
        task({"tolerations": [{"operator": "Exists"}]}),
        BASELINE,
        "PodSecurity",
        [f"{T}.tolerations[0]"],
    ),
    (
        "tolerating the control plane",
        task(
            {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
                ]
            }
        ),
        BASELINE,
        "PodSecurity",
        [f"{T}.tolerations[0].key"],
    ),
    (
        "tolerating a dedicated pool",
        task({"tolerations": [{"key": "pool", "operator": "Equal", "value": "gpu"}]}),
        BASELINE,
        None,
        [],
    ),
    (
        "manualSelector",
        task(job={"manualSelector": True, "selector": {"matchLabels": {"app": "db"}}}),
        BASELINE,
        "PodSecurity",
        ["spec.jobTemplate.spec.manualSelector"],
    ),
    (
        "a ServiceAccount not allowed",
        task({"serviceAccountName": "deployer"}),
        NamespacePolicy("baseline", "default", frozenset({"default", "builder"})),
        "ServiceAccountNotAllowed",
        [f"{T}.serviceAccountName"],
    ),
    (
        "an allowed ServiceAccount",
        task({"serviceAccountName": "builder"}),
        NamespacePolicy("baseline", "default", frozenset({"default", "builder"})),
        None,
        [],
    ),
    (
        "no ServiceAccount is default",
        task(),
        NamespacePolicy("baseline", "default", frozenset({"default"})),
        None,
        [],
    ),
    (
        "restricted wants hardening",
        task(),
        NamespacePolicy("restricted", "label"),
        "PodSecurity",
        [f"{T}.containers[0].securityContext.allowPrivilegeEscalation"],
    ),
]


@pytest.mark.parametrize(
    ("raw", "policy", "reason", "named"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_judge(
    raw: dict[str, Any], policy: NamespacePolicy, reason: str | None, named: list[str]
) -> None:
    refused = verdict(raw, policy)
    assert (refused.reason if refused else None) == reason
    for field in named:
        assert refused is not None
        assert f"{field}: " in refused.message, refused.message


def test_a_refusal_says_which_level_and_where_it_comes_from() -> None:
    raw = task({"hostNetwork": True})
    refused = verdict(raw)
    assert refused == Refusal(
        "PodSecurity",
        f'Pod Security "baseline" (the operator\'s default): {T}.hostNetwork: must not be true',
    )
    labelled = verdict(raw, NamespacePolicy("baseline", "label"))
    assert labelled is not None
    assert labelled.message.startswith('Pod Security "baseline" (the namespace\'s label): ')


@pytest.mark.parametrize(
    ("raw", "floor", "message"),
    [
        (task(interval="1s"), "1m", "spec.interval: 1s is below the minimum interval 1m"),
        (task(interval="59s"), "1m", "spec.interval: 59s is below the minimum interval 1m"),
        (task(interval="1m"), "1m", None),
        (task(interval="1s"), "1s", None),
        ({**task(), "interval": None, "schedule": "* * * * *"}, "1m", None),
        (
            {**task(), "interval": None, "schedule": "*/5 * * * *"},
            "10m",
            "spec.schedule: '*/5 * * * *' fires 5m apart, below the minimum interval 10m",
        ),
        ({**task(), "interval": None, "schedule": "0 3 * * *"}, "10m", None),
        ({**task(), "interval": None, "at": "2030-01-01T00:00:00Z"}, "1h", None),
    ],
)
def test_minimum_interval(raw: dict[str, Any], floor: str, message: str | None) -> None:
    raw = {k: v for k, v in raw.items() if v is not None}
    limits = Limits(min_interval=parse_spec(task(interval=floor)).interval or timedelta(0))
    refused = verdict(raw, limits=limits)
    if message is None:
        assert refused is None
    else:
        assert refused is not None
        assert refused.reason == "IntervalTooShort"
        assert refused.message.startswith(message)


def test_template_size_cap() -> None:
    raw = task({"containers": [{"name": "m", "image": "b", "args": ["x" * 2000]}]})
    size = template_size(raw["jobTemplate"])
    assert verdict(raw, limits=Limits(max_template_bytes=size)) is None
    refused = verdict(raw, limits=Limits(max_template_bytes=size - 1))
    assert refused == Refusal(
        "TemplateTooLarge",
        f"spec.jobTemplate: {size} bytes, more than the limit of {size - 1} (the operator's "
        "limit); keep scripts and data in a ConfigMap",
    )


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({}, {}, NamespacePolicy("baseline", "default")),
        (
            {"pod-security.kubernetes.io/enforce": "restricted"},
            None,
            NamespacePolicy("restricted", "label"),
        ),
        (
            {"pod-security.kubernetes.io/enforce": "privileged"},
            None,
            NamespacePolicy("privileged", "label"),
        ),
        # A label that names no level fails closed, as in Pod Security admission.
        (
            {"pod-security.kubernetes.io/enforce": "Baseline"},
            None,
            NamespacePolicy("restricted", "label"),
        ),
        # Only enforce counts: warn and audit allow the pod.
        (
            {"pod-security.kubernetes.io/warn": "restricted"},
            None,
            NamespacePolicy("baseline", "default"),
        ),
        (
            None,
            {"nightshift.dev/allowed-service-accounts": "builder, reporter"},
            NamespacePolicy("baseline", "default", frozenset({"builder", "reporter", "default"})),
        ),
        (
            None,
            {"nightshift.dev/allowed-service-accounts": ""},
            NamespacePolicy("baseline", "default", frozenset({"default"})),
        ),
        (
            None,
            {"nightshift.dev/allowed-service-accounts": "*"},
            NamespacePolicy("baseline", "default"),
        ),
    ],
)
def test_namespace_policy(
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    expected: NamespacePolicy,
) -> None:
    assert namespace_policy(labels, annotations) == expected


def test_the_default_level_is_the_operators_choice() -> None:
    assert namespace_policy({}, {}, "restricted") == NamespacePolicy("restricted", "default")


def test_several_schedules_are_judged_by_their_union() -> None:
    """Two hourly schedules 5 minutes apart fire 5 minutes apart, though each alone is hourly."""
    raw = {k: v for k, v in task().items() if k != "interval"}
    raw["schedules"] = [{"cron": "0 * * * *"}, {"cron": "5 * * * *"}]
    refused = verdict(raw, limits=Limits(min_interval=timedelta(minutes=10)))
    assert refused == Refusal(
        "IntervalTooShort",
        "spec.schedules: together they fire 5m apart, below the minimum interval 10m (the "
        "operator's limit)",
    )
    raw["schedules"] = [{"cron": "0 * * * *"}, {"cron": "30 * * * *", "timeZone": "Asia/Kolkata"}]
    # 30 past in Kolkata (UTC+05:30) is on the hour in UTC: one slot, an hour apart.
    assert verdict(raw, limits=Limits(min_interval=timedelta(minutes=10))) is None


def test_an_excluded_namespace_refuses_every_task_first() -> None:
    """Even a perfect task gets no Jobs in an excluded namespace, and that is said before any
    other problem (it is the one a user cannot fix by editing the task)."""
    excluded = Limits(excluded_namespaces=frozenset({"ns", "kube-system"}))
    refused = verdict(task(), limits=excluded)
    assert refused == Refusal(
        "NamespaceExcluded",
        "metadata.namespace: ns is excluded from Nightshift (the operator's --exclude-namespace): "
        "its tasks get no Jobs; use another namespace",
    )
    assert verdict(task(interval="1s"), limits=excluded) == refused
    assert verdict(task(), limits=Limits(excluded_namespaces=frozenset({"kube-system"}))) is None

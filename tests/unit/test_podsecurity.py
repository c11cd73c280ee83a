"""The Pod Security Standards checks, one table row per situation: which fields break which
level. A row's expected fields are the paths the user reads in the refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nightshift.podsecurity import Level, check_pod

C = "spec.containers[0]"
SC = f"{C}.securityContext"


def pod(**spec: Any) -> dict[str, Any]:
    """A pod template with one container ``main``; ``spec`` merges into the pod spec and
    ``container`` (a dict) into the container."""
    container = {"name": "main", "image": "busybox", **spec.pop("container", {})}
    metadata = spec.pop("metadata", {})
    return {"metadata": metadata, "spec": {"containers": [container], **spec}}


# A container that meets restricted: every restricted row starts from it.
HARDENED = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


def hardened(**spec: Any) -> dict[str, Any]:
    container = copy.deepcopy(HARDENED)
    extra = spec.pop("container", {})
    container["securityContext"].update(extra.pop("securityContext", {}))
    container.update(extra)
    return pod(container=container, **spec)


def fields(template: Any, level: Level) -> list[str]:
    return [v.field for v in check_pod(template, level)]


BASELINE_ROWS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("a plain pod", pod(), []),
    ("hostNetwork", pod(hostNetwork=True), ["spec.hostNetwork"]),
    ("hostPID and hostIPC", pod(hostPID=True, hostIPC=True), ["spec.hostPID", "spec.hostIPC"]),
    ("hostNetwork false", pod(hostNetwork=False), []),
    ("privileged", pod(container={"securityContext": {"privileged": True}}), [f"{SC}.privileged"]),
    ("privileged false", pod(container={"securityContext": {"privileged": False}}), []),
    (
        "privileged init container",
        {
            "spec": {
                "initContainers": [{"name": "i", "securityContext": {"privileged": True}}],
                "containers": [{"name": "m"}],
            }
        },
        ["spec.initContainers[0].securityContext.privileged"],
    ),
    (
        "capabilities beyond the default set",
        pod(container={"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}}}),
        [f"{SC}.capabilities.add"],
    ),
    (
        "capabilities of the default set",
        pod(container={"securityContext": {"capabilities": {"add": ["CHOWN", "KILL"]}}}),
        [],
    ),
    (
        "hostPath",
        pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        ["spec.volumes[0].hostPath"],
    ),
    ("nfs is baseline", pod(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]), []),
    (
        "hostPort",
        pod(container={"ports": [{"containerPort": 80, "hostPort": 8080}]}),
        [f"{C}.ports[0].hostPort"],
    ),
    ("hostPort 0", pod(container={"ports": [{"containerPort": 80, "hostPort": 0}]}), []),
    (
        "AppArmor Unconfined",
        pod(securityContext={"appArmorProfile": {"type": "Unconfined"}}),
        ["spec.securityContext.appArmorProfile.type"],
    ),
    (
        "AppArmor RuntimeDefault",
        pod(container={"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}),
        [],
    ),
    (
        "AppArmor annotation unconfined",
        pod(
            metadata={
                "annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
            }
        ),
        ["metadata.annotations[container.apparmor.security.beta.kubernetes.io/main]"],
    ),
    (
        "AppArmor annotation localhost",
        pod(
            metadata={
                "annotations": {
                    "container.apparmor.security.beta.kubernetes.io/main": "localhost/p"
                }
            }
        ),
        [],
    ),
    (
        "SELinux type spc_t",
        pod(securityContext={"seLinuxOptions": {"type": "spc_t"}}),
        ["spec.securityContext.seLinuxOptions.type"],
    ),
    (
        "SELinux user and role",
        pod(container={"securityContext": {"seLinuxOptions": {"user": "u", "role": "r"}}}),
        [f"{SC}.seLinuxOptions.user", f"{SC}.seLinuxOptions.role"],
    ),
    (
        "SELinux level only",
        pod(container={"securityContext": {"seLinuxOptions": {"level": "s0:c1"}}}),
        [],
    ),
    (
        "procMount Unmasked",
        pod(container={"securityContext": {"procMount": "Unmasked"}}),
        [f"{SC}.procMount"],
    ),
    (
        "procMount Unmasked in a user namespace",
        pod(hostUsers=False, container={"securityContext": {"procMount": "Unmasked"}}),
        [],
    ),
    (
        "seccomp Unconfined",
        pod(container={"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
        [f"{SC}.seccompProfile.type"],
    ),
    ("seccomp unset", pod(), []),
    (
        "sysctls",
        pod(
            securityContext={
                "sysctls": [
                    {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                    {"name": "kernel.msgmax", "value": "1"},
                ]
            }
        ),
        ["spec.securityContext.sysctls[1].name"],
    ),
    (
        "probe host",
        pod(container={"livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}}),
        [f"{C}.livenessProbe.httpGet.host"],
    ),
    (
        "lifecycle host",
        pod(container={"lifecycle": {"preStop": {"tcpSocket": {"host": "x", "port": 1}}}}),
        [f"{C}.lifecycle.preStop.tcpSocket.host"],
    ),
    (
        "Windows hostProcess",
        pod(securityContext={"windowsOptions": {"hostProcess": True}}),
        ["spec.securityContext.windowsOptions.hostProcess"],
    ),
]


@pytest.mark.parametrize(
    ("template", "expected"),
    [(t, e) for _, t, e in BASELINE_ROWS],
    ids=[name for name, _, _ in BASELINE_ROWS],
)
def test_baseline(template: dict[str, Any], expected: list[str]) -> None:
    assert fields(template, "baseline") == expected
    # Privileged allows everything; restricted forbids at least what baseline does (the same
    # field, or for hostPath the volume's type).
    assert fields(template, "privileged") == []
    strict = fields(template, "restricted")
    assert all(f in strict for f in expected if "volumes" not in f)


RESTRICTED_ROWS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("hardened", hardened(), []),
    (
        "a plain pod",
        pod(),
        [
            f"{SC}.allowPrivilegeEscalation",
            f"{SC}.runAsNonRoot",
            f"{SC}.seccompProfile.type",
            f"{SC}.capabilities.drop",
        ],
    ),
    (
        "allowPrivilegeEscalation true",
        hardened(container={"securityContext": {"allowPrivilegeEscalation": True}}),
        [f"{SC}.allowPrivilegeEscalation"],
    ),
    (
        "runAsNonRoot on the pod only",
        hardened(
            securityContext={"runAsNonRoot": True},
            container={"securityContext": {"runAsNonRoot": None}},
        ),
        [],
    ),
    (
        "runAsNonRoot false on the pod",
        hardened(securityContext={"runAsNonRoot": False}),
        ["spec.securityContext.runAsNonRoot"],
    ),
    (
        "runAsUser 0",
        hardened(container={"securityContext": {"runAsUser": 0}}),
        [f"{SC}.runAsUser"],
    ),
    (
        "runAsUser 0 in a user namespace",
        hardened(hostUsers=False, container={"securityContext": {"runAsUser": 0}}),
        [],
    ),
    (
        "seccomp on the pod only",
        hardened(
            securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}},
            container={"securityContext": {"seccompProfile": None}},
        ),
        [],
    ),
    (
        "seccomp Unconfined on the pod",
        hardened(securityContext={"seccompProfile": {"type": "Unconfined"}}),
        ["spec.securityContext.seccompProfile.type"],
    ),
    (
        "capabilities add NET_BIND_SERVICE",
        hardened(
            container={
                "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
            }
        ),
        [],
    ),
    (
        "capabilities add CHOWN",
        hardened(
            container={"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}
        ),
        [f"{SC}.capabilities.add"],
    ),
    (
        "volume types",
        hardened(
            volumes=[
                {"name": "a", "emptyDir": {}},
                {"name": "b", "configMap": {"name": "c"}},
                {"name": "c", "nfs": {"server": "s", "path": "/"}},
                {"name": "d", "hostPath": {"path": "/"}},
                {"name": "e"},
            ]
        ),
        ["spec.volumes[2].nfs", "spec.volumes[3].hostPath", "spec.volumes[4]"],
    ),
    (
        "procMount Unmasked in a user namespace",
        hardened(hostUsers=False, container={"securityContext": {"procMount": "Unmasked"}}),
        [f"{SC}.procMount"],
    ),
    (
        "a Windows pod needs no Linux hardening",
        pod(os={"name": "windows"}, securityContext={"runAsNonRoot": True}),
        [],
    ),
]


@pytest.mark.parametrize(
    ("template", "expected"),
    [(t, e) for _, t, e in RESTRICTED_ROWS],
    ids=[name for name, _, _ in RESTRICTED_ROWS],
)
def test_restricted(template: dict[str, Any], expected: list[str]) -> None:
    assert sorted(fields(template, "restricted")) == sorted(expected)


@pytest.mark.parametrize(
    "template",
    [
        None,
        "privileged",
        {"spec": "x"},
        {"spec": {"containers": "x", "volumes": [1, None], "securityContext": []}},
        {"spec": {"containers": [None, 3, {"securityContext": "x", "ports": [None]}]}},
        {"metadata": {"annotations": ["x"]}, "spec": {"containers": [{"capabilities": 1}]}},
    ],
)
def test_any_shape_is_judged_without_raising(template: Any) -> None:
    for level in ("baseline", "restricted"):
        check_pod(template, level)  # type: ignore[arg-type]


def test_a_violation_reads_as_the_field_under_the_task() -> None:
    (violation,) = check_pod(pod(container={"securityContext": {"privileged": True}}), "baseline")
    assert violation.check == "privileged"
    assert violation.at("spec.jobTemplate.spec.template") == (
        "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged: "
        "must not be true"
    )

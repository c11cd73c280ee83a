"""The Pod Security Standards (baseline and restricted) as checks of a raw pod template.

The checks are those of the upstream Pod Security admission (``k8s.io/pod-security-admission``,
policy version "latest" as of Kubernetes 1.36), one function per check with the upstream check's
name: the operator runs them before it creates a Job and the webhook at admission, because a
task's pod template reaches the cluster through the operator, whose own pods are not what a
namespace's Pod Security labels were meant to trust. Each violation names the field, so a user
reads where to look. Templates come from users as they wrote them: nothing here trusts a type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LEVELS", "Level", "Violation", "check_pod"]

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")

# Capabilities a baseline container may add: the container runtimes' default set, less NET_RAW.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
# Sysctls namespaced to the pod and isolated from other pods (the 1.32 list).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
    }
)  # fmt: skip
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
# Restricted: inline volume sources other than these reach the node or the network directly.
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
        "persistentVolumeClaim", "projected", "secret",
    }
)  # fmt: skip
PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # seccomp and AppArmor
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True, slots=True)
class Violation:
    """One field that breaks a check: ``field`` is its path under the pod template."""

    check: str  # the upstream check's name, e.g. "privileged"
    field: str  # e.g. "spec.containers[0].securityContext.privileged"
    message: str  # what is wrong with it, e.g. "must not be true"

    def at(self, prefix: str) -> str:
        """The violation as one line, its field under ``prefix`` (the pod template's path)."""
        return f"{prefix}.{self.field}: {self.message}"


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Pod:
    """The parts of a pod template the checks read, tolerant of any shape."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.annotations = _map(_map(template.get("metadata")).get("annotations"))
        self.spec = _map(template.get("spec"))
        self.context = _map(self.spec.get("securityContext"))
        self.windows = _map(self.spec.get("os")).get("name") == "windows"
        # hostUsers: false puts the pod in a user namespace: root in it is not root on the node.
        self.user_namespace = self.spec.get("hostUsers") is False

    def containers(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(path, container) of every container, init and ephemeral ones included."""
        for kind in CONTAINER_LISTS:
            for i, container in enumerate(_list(self.spec.get(kind))):
                yield f"spec.{kind}[{i}]", _map(container)

    def contexts(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(path, securityContext) of the pod, then of every container."""
        yield "spec.securityContext", self.context
        for path, container in self.containers():
            yield f"{path}.securityContext", _map(container.get("securityContext"))


Check = Callable[[_Pod], Iterator[Violation]]


# --- baseline --------------------------------------------------------------------------------


def _windows_host_process(pod: _Pod) -> Iterator[Violation]:
    for path, context in pod.contexts():
        if _map(context.get("windowsOptions")).get("hostProcess") is True:
            yield Violation(
                "windowsHostProcess", f"{path}.windowsOptions.hostProcess", "must not be true"
            )


def _host_namespaces(pod: _Pod) -> Iterator[Violation]:
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.spec.get(name) is True:
            yield Violation("hostNamespaces", f"spec.{name}", "must not be true")


def _privileged(pod: _Pod) -> Iterator[Violation]:
    for path, container in pod.containers():
        if _map(container.get("securityContext")).get("privileged") is True:
            yield Violation("privileged", f"{path}.securityContext.privileged", "must not be true")


def _capabilities_baseline(pod: _Pod) -> Iterator[Violation]:
    for path, container in pod.containers():
        added = _map(_map(container.get("securityContext")).get("capabilities")).get("add")
        extra = sorted({str(c) for c in _list(added)} - BASELINE_CAPABILITIES)
        if extra:
            yield Violation(
                "capabilities_baseline",
                f"{path}.securityContext.capabilities.add",
                f"must not add {', '.join(extra)} (only the runtime's default set)",
            )


def _host_path_volumes(pod: _Pod) -> Iterator[Violation]:
    for i, volume in enumerate(_list(pod.spec.get("volumes"))):
        if _map(volume).get("hostPath") is not None:
            yield Violation("hostPathVolumes", f"spec.volumes[{i}].hostPath", "must not be set")


def _host_ports(pod: _Pod) -> Iterator[Violation]:
    for path, container in pod.containers():
        for j, port in enumerate(_list(container.get("ports"))):
            if _map(port).get("hostPort") not in (None, 0):
                yield Violation("hostPorts", f"{path}.ports[{j}].hostPort", "must not be set")


def _app_armor(pod: _Pod) -> Iterator[Violation]:
    for path, context in pod.contexts():
        profile = _map(context.get("appArmorProfile"))
        if profile and profile.get("type") not in PROFILE_TYPES:
            yield Violation(
                "appArmorProfile",
                f"{path}.appArmorProfile.type",
                f"must be RuntimeDefault or Localhost, not {profile.get('type')!r}",
            )
    for key, value in sorted(pod.annotations.items()):
        if not str(key).startswith(APPARMOR_ANNOTATION):
            continue
        text = str(value)
        if text and text != "runtime/default" and not text.startswith("localhost/"):
            yield Violation(
                "appArmorProfile",
                f"metadata.annotations[{key}]",
                f"must be runtime/default or localhost/*, not {text!r}",
            )


def _se_linux(pod: _Pod) -> Iterator[Violation]:
    for path, context in pod.contexts():
        options = _map(context.get("seLinuxOptions"))
        kind = options.get("type") or ""
        if kind not in SELINUX_TYPES:
            yield Violation(
                "seLinuxOptions",
                f"{path}.seLinuxOptions.type",
                f"must be one of container_t, container_init_t, container_kvm_t, "
                f"container_engine_t, not {kind!r}",
            )
        for name in ("user", "role"):
            if options.get(name):
                yield Violation(
                    "seLinuxOptions", f"{path}.seLinuxOptions.{name}", "must not be set"
                )


def _proc_mount(pod: _Pod, *, check: str = "procMount") -> Iterator[Violation]:
    for path, container in pod.containers():
        mount = _map(container.get("securityContext")).get("procMount")
        if mount is not None and mount != "Default":
            yield Violation(check, f"{path}.securityContext.procMount", "must be Default")


def _proc_mount_baseline(pod: _Pod) -> Iterator[Violation]:
    if not pod.user_namespace:
        yield from _proc_mount(pod)


def _seccomp_baseline(pod: _Pod) -> Iterator[Violation]:
    for path, context in pod.contexts():
        profile = context.get("seccompProfile")
        if profile is not None and _map(profile).get("type") not in PROFILE_TYPES:
            yield Violation(
                "seccompProfile_baseline",
                f"{path}.seccompProfile.type",
                f"must be RuntimeDefault or Localhost, not {_map(profile).get('type')!r}",
            )


def _sysctls(pod: _Pod) -> Iterator[Violation]:
    for i, sysctl in enumerate(_list(pod.context.get("sysctls"))):
        name = _map(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            yield Violation(
                "sysctls",
                f"spec.securityContext.sysctls[{i}].name",
                f"{name!r} is not a safe (namespaced) sysctl",
            )


def _host_probes(pod: _Pod) -> Iterator[Violation]:
    for path, container in pod.containers():
        handlers = [
            (f"{path}.{probe}", _map(container.get(probe)))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe")
        ]
        lifecycle = _map(container.get("lifecycle"))
        handlers += [
            (f"{path}.lifecycle.{h}", _map(lifecycle.get(h))) for h in ("postStart", "preStop")
        ]
        for where, handler in handlers:
            for kind in ("httpGet", "tcpSocket"):
                if _map(handler.get(kind)).get("host"):
                    yield Violation(
                        "hostProbesAndHostLifecycle", f"{where}.{kind}.host", "must not be set"
                    )


# --- restricted ------------------------------------------------------------------------------


def _restricted_volumes(pod: _Pod) -> Iterator[Violation]:
    for i, volume in enumerate(_list(pod.spec.get("volumes"))):
        sources = [k for k in _map(volume) if k != "name"]
        if any(k in RESTRICTED_VOLUMES for k in sources):
            continue
        kind = next(iter(sources), "unknown")
        yield Violation(
            "restrictedVolumes",
            f"spec.volumes[{i}].{kind}" if sources else f"spec.volumes[{i}]",
            f"volume type {kind} is not allowed (only {', '.join(sorted(RESTRICTED_VOLUMES))})",
        )


def _allow_privilege_escalation(pod: _Pod) -> Iterator[Violation]:
    if pod.windows:
        return
    for path, container in pod.containers():
        if _map(container.get("securityContext")).get("allowPrivilegeEscalation") is not False:
            yield Violation(
                "allowPrivilegeEscalation",
                f"{path}.securityContext.allowPrivilegeEscalation",
                "must be false",
            )


def _run_as_non_root(pod: _Pod) -> Iterator[Violation]:
    if pod.user_namespace:
        return
    pod_level = pod.context.get("runAsNonRoot")
    if pod_level is False:
        yield Violation("runAsNonRoot", "spec.securityContext.runAsNonRoot", "must be true")
    for path, container in pod.containers():
        value = _map(container.get("securityContext")).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            yield Violation(
                "runAsNonRoot",
                f"{path}.securityContext.runAsNonRoot",
                "must be true (here or in spec.securityContext)",
            )


def _run_as_user(pod: _Pod) -> Iterator[Violation]:
    if pod.user_namespace:
        return
    for path, context in pod.contexts():
        value = context.get("runAsUser")
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            yield Violation("runAsUser", f"{path}.runAsUser", "must not be 0 (root)")


def _seccomp_restricted(pod: _Pod) -> Iterator[Violation]:
    if pod.windows:
        return
    pod_profile = pod.context.get("seccompProfile")
    pod_set = pod_profile is not None and _map(pod_profile).get("type") in PROFILE_TYPES
    for path, context in pod.contexts():
        profile = context.get("seccompProfile")
        if profile is not None and _map(profile).get("type") not in PROFILE_TYPES:
            yield Violation(
                "seccompProfile_restricted",
                f"{path}.seccompProfile.type",
                f"must be RuntimeDefault or Localhost, not {_map(profile).get('type')!r}",
            )
        elif profile is None and not pod_set and path != "spec.securityContext":
            yield Violation(
                "seccompProfile_restricted",
                f"{path}.seccompProfile.type",
                "must be RuntimeDefault or Localhost (here or in spec.securityContext)",
            )


def _capabilities_restricted(pod: _Pod) -> Iterator[Violation]:
    if pod.windows:
        return
    for path, container in pod.containers():
        capabilities = _map(_map(container.get("securityContext")).get("capabilities"))
        if "ALL" not in [str(c) for c in _list(capabilities.get("drop"))]:
            yield Violation(
                "capabilities_restricted",
                f"{path}.securityContext.capabilities.drop",
                'must include "ALL"',
            )
        extra = sorted({str(c) for c in _list(capabilities.get("add"))} - {"NET_BIND_SERVICE"})
        if extra:
            yield Violation(
                "capabilities_restricted",
                f"{path}.securityContext.capabilities.add",
                f"must not add {', '.join(extra)} (only NET_BIND_SERVICE)",
            )


def _proc_mount_restricted(pod: _Pod) -> Iterator[Violation]:
    yield from _proc_mount(pod, check="procMount_restricted")


BASELINE: tuple[Check, ...] = (
    _windows_host_process,
    _host_namespaces,
    _privileged,
    _capabilities_baseline,
    _host_path_volumes,
    _host_ports,
    _app_armor,
    _se_linux,
    _proc_mount_baseline,
    _seccomp_baseline,
    _sysctls,
    _host_probes,
)
# Restricted runs every baseline check but those a stricter one of its own replaces (as
# upstream's OverrideCheckIDs do): volumes, capabilities, seccomp and procMount.
RESTRICTED: tuple[Check, ...] = (
    *(
        c
        for c in BASELINE
        if c
        not in (_host_path_volumes, _capabilities_baseline, _seccomp_baseline, _proc_mount_baseline)
    ),
    _restricted_volumes,
    _allow_privilege_escalation,
    _run_as_non_root,
    _run_as_user,
    _seccomp_restricted,
    _capabilities_restricted,
    _proc_mount_restricted,
)


def check_pod(template: Any, level: Level) -> list[Violation]:
    """Every violation of ``level`` in a pod template (``{metadata, spec}``); empty: allowed."""
    if level == "privileged":
        return []
    pod = _Pod(_map(template))
    checks = RESTRICTED if level == "restricted" else BASELINE
    return [violation for check in checks for violation in check(pod)]

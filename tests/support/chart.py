"""The Helm chart in tests: helm against the local cluster, renderings, their RBAC applied alone,
a ServiceAccount's token kubeconfig, and the release of the real-node tests."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REAL_NODE, REAL_NODE_TOLERATIONS, REPO

CHART = REPO / "charts" / "nightshift"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
OPERATOR_IMAGE = "localhost/nightshift/operator"
METRICS_SCRAPER = "scraper"  # a ServiceAccount in the release namespace, bound to metrics-reader


def helm(cluster: Any, *args: str, timeout: float = 240) -> str:
    """The built helm against the cluster; its stdout, or the test fails with its output."""
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=cluster.env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    cluster: Any,
    tmp_path: Path,
    values: dict[str, Any],
    *,
    release: str,
    namespace: str,
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """`helm template` of the chart with these values: its documents."""
    text = helm(
        cluster, "template", release, str(chart), "--namespace", namespace,
        "--values", str(values_file(tmp_path, values)),
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def release_name() -> str:
    return f"t{secrets.token_hex(4)}"


def apply_rbac_only(cluster: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply the ServiceAccount and RBAC objects of a rendering (no Deployment, no webhook)."""
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": rbac})
    )
    return rbac


def delete_objects(cluster: Any, objects: list[dict[str, Any]]) -> None:
    cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects}), check=False,
    )  # fmt: skip


def token_kubeconfig(cluster: Any, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as SERVICE_ACCOUNT with a bound token (like a pod)."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def assert_not_refused(log: str) -> None:
    """No request of the operator (kopf's included) was refused by RBAC."""
    denied = [line for line in log.splitlines() if re.search(r"\b403\b|forbidden", line, re.I)]
    hint = ""
    if any("customresourcedefinitions" in line or "/namespaces " in line for line in denied):
        hint = (
            "\nkopf scans CRDs and namespaces unless the operator sets "
            "settings.scanning.disabled = True; the chart does not grant that scan "
            "(charts/nightshift/README.md, Permissions)."
        )
    assert not denied, "the operator was refused:\n" + "\n".join(denied[:6]) + hint


@dataclass(frozen=True)
class RealRelease:
    """The chart installed with the operator image built here, its pods on the real node."""

    name: str  # release name; the chart's full name is f"{name}-nightshift"
    system: str  # release namespace (Pod Security "restricted")
    tasks: str  # watched namespaces, one for test_realnode, one for the examples
    examples: str
    install_seconds: float

    @property
    def fullname(self) -> str:
        return f"{self.name}-nightshift"


def real_release_values(release: RealRelease, tag: str = "dev") -> list[str]:
    """`helm install` flags of the real-node release (the operator image built here, tag TAG)."""
    values = {
        "image": {"repository": OPERATOR_IMAGE, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [release.tasks, release.examples],
        # The notification example names a Secret in its own namespace.
        "notifications": {"secretNamespaces": [release.examples]},
        "nodeSelector": REAL_NODE,
        "tolerations": REAL_NODE_TOLERATIONS,
        "logFormat": "plain",
        # The tests' and examples' schedules are seconds apart (the default floor is 1m).
        "minInterval": "1s",
        # Secure metrics (the default): this ServiceAccount may scrape, as Prometheus' would.
        "metrics": {"readers": [{"kind": "ServiceAccount", "name": METRICS_SCRAPER,
                                 "namespace": release.system}]},
    }  # fmt: skip
    return [f"--set-json={key}={json.dumps(value)}" for key, value in values.items()]

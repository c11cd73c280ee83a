"""The Helm chart against the real control plane: it lints, renders, is accepted by the API server,
installs under Pod Security "restricted", upgrades its CRD, and grants exactly what the operator
uses (and enough for it: the operator runs a scenario with the chart ServiceAccount's token).

Installed releases scope their webhook to the test's namespace (`watchNamespaces`), so a webhook
backed by KWOK's fake pods never sits in the path of other tests' writes.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.certs import self_signed
from support.chart import (
    CHART,
    apply_rbac_only,
    assert_not_refused,
    delete_objects,
    helm,
    of_kind,
    release_name,
    render,
    token_kubeconfig,
    values_file,
)
from support.operator import Operator
from support.ports import free_port
from support.tasks import condition, jobs, reasons, status, task
from support.wait import poll

REPO = Path(__file__).resolve().parents[2]
CRD_SOURCE = REPO / "crds" / "scheduledtasks.nightshift.dev.yaml"
CRD_NAME = "scheduledtasks.nightshift.dev"
CRD_NAMES = [path.stem for path in sorted((REPO / "crds").glob("*.yaml"))]
METRICS = (
    "nightshift_runs_total",
    "nightshift_fire_skew_seconds_bucket",
    "nightshift_retries_total",
    "nightshift_active_runs",
    "nightshift_scheduler_queue_depth",
    "nightshift_tasks",
    "nightshift_sync_errors_total",
    "nightshift_api_requests_total",
    "nightshift_api_errors_total",
)

# One line of `kubectl auth can-i --list`: resource (as printed), resource names, verbs.
Rule = tuple[str, tuple[str, ...], frozenset[str]]

# What the operator's ServiceAccount may do in a watched namespace, beyond what every
# authenticated identity may do.
OPERATOR_RULES: set[Rule] = {
    ("scheduledtasks.nightshift.dev", (), frozenset({"get", "list", "watch"})),
    ("scheduledtasks.nightshift.dev/status", (), frozenset({"patch"})),
    ("calendars.nightshift.dev", (), frozenset({"get", "list", "watch"})),
    ("backfills.nightshift.dev", (), frozenset({"get", "list", "watch"})),
    ("backfills.nightshift.dev/status", (), frozenset({"patch"})),
    ("scheduledtasks.nightshift.dev/finalizers", (), frozenset({"update"})),
    ("jobs.batch", (), frozenset({"create", "get", "list", "watch", "delete"})),
    ("pods", (), frozenset({"list"})),
    ("events", (), frozenset({"create", "patch"})),
}
# The guard on the workload (cluster-scoped, so listed in every namespace): each namespace's Pod
# Security label and ServiceAccount allowlist, and the webhook's SubjectAccessReviews.
SAR_RULE: Rule = ("subjectaccessreviews.authorization.k8s.io", (), frozenset({"create"}))


def guard_rules(*names: str) -> set[Rule]:
    """The guard's grants: namespaces (only ``names``, if given) and SubjectAccessReviews."""
    return {("namespaces", tuple(names), frozenset({"list", "watch"})), SAR_RULE}


# With metrics.secure (the default): who a scraper's token is and whether it may get /metrics.
# Cluster-scoped, so they show in every namespace.
METRICS_AUTH_RULES: set[Rule] = {
    ("tokenreviews.authentication.k8s.io", (), frozenset({"create"})),
    ("subjectaccessreviews.authorization.k8s.io", (), frozenset({"create"})),
}


def lease_rules(lease: str) -> set[Rule]:
    return {
        ("leases.coordination.k8s.io", (), frozenset({"create"})),
        ("leases.coordination.k8s.io", (lease,), frozenset({"get", "update"})),
    }


# --- helpers ---------------------------------------------------------------------------------


def can_i_list(cluster: Any, user: str, namespace: str) -> set[Rule]:
    """`kubectl auth can-i --list` as a set of (resource, names, verbs), resource rules only."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    lines = out.splitlines()
    header = lines[0]
    starts = [header.index(c) for c in ("Non-Resource URLs", "Resource Names", "Verbs")]
    rules = set()
    for line in lines[1:]:
        resource = line[: starts[0]].strip()
        if not resource:
            continue  # a non-resource URL
        names = line[starts[1] : starts[2]].strip().strip("[]").split()
        verbs = line[starts[2] :].strip().strip("[]").split()
        rules.add((resource, tuple(sorted(names)), frozenset(verbs)))
    return rules


def service_account_rules(
    cluster: Any, namespace: str, service_account: str, baseline_sa: str = "default"
) -> set[Rule]:
    """What SERVICE_ACCOUNT may do in NAMESPACE beyond what an unbound ServiceAccount may."""
    mine = can_i_list(cluster, f"system:serviceaccount:{namespace}:{service_account}", namespace)
    base = can_i_list(cluster, f"system:serviceaccount:{namespace}:{baseline_sa}", namespace)
    return mine - base


def eventually(fn: Callable[[], Any], expected: Any, timeout: float = 20) -> Any:
    """FN's result once it equals EXPECTED, or its last result after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def show(rules: set[Rule]) -> str:
    return "\n".join(
        f"  {resource:40} {list(names)!s:22} {sorted(verbs)}"
        for resource, names, verbs in sorted(rules, key=lambda r: (r[0], r[1]))
    )


def adopt_crd(cluster: Any, release: str, namespace: str) -> None:
    """Let RELEASE take over the CRDs that kubectl or an earlier release installed (Helm's
    import): the ScheduledTask, Calendar and Backfill CRDs."""
    for name in CRD_NAMES:
        if cluster.kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        cluster.kubectl(
            "annotate", "crd", name, "--overwrite",
            f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
        cluster.kubectl("label", "crd", name, "--overwrite", "app.kubernetes.io/managed-by=Helm")


@pytest.fixture
def make_namespace(cluster: Any) -> Iterator[Callable[[str], str]]:
    """Creates further namespaces (deleted after the test)."""
    created: list[str] = []

    def make(name: str) -> str:
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, "test.nightshift.dev/owner=pytest")
        created.append(name)
        poll(
            lambda: (
                cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
            ),
            timeout=30,
            what=f"ServiceAccount {name}/default",
        )
        return name

    yield make
    for name in created:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


STAND_IN_CRDS = [
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ("cert-manager.io", "Issuer", "issuers"),
    ("cert-manager.io", "Certificate", "certificates"),
]


@pytest.fixture(scope="module")
def stand_in_crds(cluster: Any) -> Iterator[None]:
    """Minimal CRDs (any content) for the ServiceMonitor and cert-manager kinds the chart renders.

    The API server then checks these objects' metadata, names and namespaces, not their spec:
    the real CRDs are not installed here.
    """
    created = []
    for group, kind, plural in STAND_IN_CRDS:
        name = f"{plural}.{group}"
        if cluster.kubectl("get", "crd", name, check=False).returncode == 0:
            continue
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name, "labels": {"test.nightshift.dev/owner": "pytest"}},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
        created.append(name)
    for name in created:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", timeout=60)
    yield
    for name in created:
        cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


# --- lint, render, server-side validation ---------------------------------------------------

VALUE_SETS: dict[str, Callable[[str], dict[str, Any]]] = {
    "defaults": lambda ns: {},
    "watch-namespaces": lambda ns: {"watchNamespaces": [ns, f"{ns}-b"]},
    "no-crds": lambda ns: {"crds": {"enabled": False}},
    "cert-manager": lambda ns: {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": lambda ns: {
        "webhook": {
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"},
            }
        }
    },
    "monitoring": lambda ns: {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "grafana": {"dashboard": {"enabled": True}},
    },
    "fail-closed": lambda ns: {"webhook": {"failurePolicy": "Fail"}},
    "minimal": lambda ns: {
        "replicaCount": 1,
        "podDisruptionBudget": {"enabled": False},
        "webhook": {"enabled": False},
        "metrics": {"service": {"enabled": False}, "secure": False},
        "networkPolicy": {"enabled": False},
        "rbac": {"aggregateToDefaultRoles": False},
        "topologySpread": {"enabled": False},
        "crds": {"keep": False},
        "image": {"digest": "sha256:" + "0" * 64},
    },
}


def test_chart_lints_strictly_with_every_value_set(cluster: Any, tmp_path: Path) -> None:
    for name, make in VALUE_SETS.items():
        out = helm(
            cluster,
            "lint",
            "--strict",
            str(CHART),
            "--values",
            str(values_file(tmp_path, make("ns"))),
        )
        assert "1 chart(s) linted, 0 chart(s) failed" in out, (name, out)


def test_schema_rejects_unknown_keys_and_wrong_types(cluster: Any, tmp_path: Path) -> None:
    cases = [
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"image": {"tagg": "x"}}, "additional properties 'tagg' not allowed"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"watchNamespaces": "default"}, "watchNamespaces"),
    ]
    for values, expected in cases:
        cmd = [
            str(cluster.bin_dir / "helm"), "template", "r", str(CHART),
            "--values", str(values_file(tmp_path, values)),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode != 0, values
        assert expected in result.stderr, result.stderr


def _check_common(docs: list[dict[str, Any]], release: str) -> None:
    """Properties every rendering must have, whatever the values."""
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/instance") == release, doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm"
    for role in of_kind(docs, "Role") + of_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get(
                "apiGroups", []
            ) + rule.get("nonResourceURLs", [])
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "secrets" not in rule.get("resources", [])
            if "namespaces" in rule.get("resources", []):
                # Only the guard reads namespaces: their labels, never more.
                assert role["metadata"]["name"].endswith("-guard"), role["metadata"]["name"]
                assert set(rule["verbs"]) == {"list", "watch"}
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e.get("valueFrom") for e in container["env"]}
        assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        args = container["args"]
        assert args[0] == "run"
        assert "--leader-elect" in args
        assert "--leader-election-namespace=$(POD_NAMESPACE)" in args
        assert f"--leader-election-name={release}-nightshift" in args


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_rendered_chart_is_accepted_by_the_api_server(
    cluster: Any,
    stand_in_crds: None,
    namespace: str,
    make_namespace: Callable[[str], str],
    tmp_path: Path,
    value_set: str,
) -> None:
    values = VALUE_SETS[value_set](namespace)
    for extra in values.get("watchNamespaces", []):
        if extra != namespace:
            make_namespace(extra)
    release = release_name()
    docs = render(cluster, tmp_path, values, release=release, namespace=namespace)
    _check_common(docs, release)
    kinds = {d["kind"] for d in docs}

    # What each value set is for.
    webhooks = of_kind(docs, "ValidatingWebhookConfiguration")
    if value_set == "defaults":
        crds = of_kind(docs, "CustomResourceDefinition")
        assert sorted(c["metadata"]["name"] for c in crds) == sorted(CRD_NAMES)
        for crd in crds:
            assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
            source = CRD_SOURCE.parent / f"{crd['metadata']['name']}.yaml"
            assert crd["spec"] == yaml.safe_load(source.read_text())["spec"]
        assert of_kind(docs, "Deployment")[0]["spec"]["replicas"] == 2
        assert of_kind(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
        (hook,) = webhooks[0]["webhooks"]
        assert hook["failurePolicy"] == "Ignore"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["timeoutSeconds"] == 5
        assert hook["clientConfig"]["service"]["path"] == "/validate"
        assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        (secret,) = of_kind(docs, "Secret")
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        _check_serving_certificate(
            secret, service=f"{release}-nightshift-webhook", namespace=namespace, tmp_path=tmp_path
        )
        # A year, renewed by the first upgrade within 30 days of its end.
        not_after = subprocess.run(
            ["openssl", "x509", "-noout", "-enddate", "-in", str(tmp_path / "tls.crt")],
            capture_output=True, text=True, check=True,
        ).stdout.strip().removeprefix("notAfter=")  # fmt: skip
        end = datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
        assert abs(end - datetime.now(UTC) - timedelta(days=365)) < timedelta(hours=1)
        renew = datetime.fromisoformat(
            secret["metadata"]["annotations"]["nightshift.dev/renew-after"]
        )
        assert abs(end - renew - timedelta(days=30)) < timedelta(hours=1)
        assert {"ClusterRole", "ClusterRoleBinding"} <= kinds
        # Its own PriorityClass, above the Jobs it creates; no Jobs in kube-system or at home.
        (priority,) = of_kind(docs, "PriorityClass")
        assert priority["value"] == 1_000_000
        assert priority["globalDefault"] is False
        pod = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == priority["metadata"]["name"]
        args = pod["containers"][0]["args"]
        assert [a for a in args if a.startswith("--exclude-namespace=")] == [
            "--exclude-namespace=kube-system",
            f"--exclude-namespace={namespace}",
        ]
    elif value_set == "watch-namespaces":
        roles = of_kind(docs, "Role")
        watched = sorted(
            r["metadata"]["namespace"]
            for r in roles
            if not r["metadata"]["name"].endswith("-leader-election")
        )
        assert watched == sorted([namespace, f"{namespace}-b"])
        operator_cluster_roles = [
            r
            for r in of_kind(docs, "ClusterRole")
            if r["metadata"]["name"] == f"{release}-nightshift"
        ]
        assert operator_cluster_roles == []
        (guard,) = [
            r
            for r in of_kind(docs, "ClusterRole")
            if r["metadata"]["name"] == f"{release}-nightshift-guard"
        ]
        assert guard["rules"][0]["resourceNames"] == [namespace, f"{namespace}-b"]
        # The only cluster-wide bindings: the guard's (namespaces by name, access reviews) and
        # the token and access reviews of secure metrics.
        assert sorted(b["metadata"]["name"] for b in of_kind(docs, "ClusterRoleBinding")) == [
            f"{release}-nightshift-guard",
            f"{release}-nightshift-metrics-auth",
        ]
        binding = of_kind(docs, "ValidatingAdmissionPolicyBinding")[0]["spec"]
        selector = binding["matchResources"]["namespaceSelector"]["matchExpressions"][0]
        assert selector["values"] == [namespace, f"{namespace}-b"]
        args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert [a for a in args if a.startswith("--namespace=")] == [
            f"--namespace={namespace}",
            f"--namespace={namespace}-b",
        ]
        selector = webhooks[0]["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
        assert selector["values"] == [namespace, f"{namespace}-b"]
    elif value_set == "no-crds":
        assert "CustomResourceDefinition" not in kinds
    elif value_set.startswith("cert-manager"):
        assert "Secret" not in kinds
        (hook,) = webhooks[0]["webhooks"]
        assert "caBundle" not in hook["clientConfig"]
        annotation = webhooks[0]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert annotation == f"{namespace}/{release}-nightshift-webhook"
        (serving,) = [c for c in of_kind(docs, "Certificate") if not c["spec"].get("isCA")]
        assert serving["spec"]["secretName"] == f"{release}-nightshift-webhook-tls"
        if value_set == "cert-manager":
            assert len(of_kind(docs, "Issuer")) == 2  # self-signed root and the CA issuer
            assert serving["spec"]["issuerRef"]["name"] == f"{release}-nightshift-webhook-ca"
        else:
            assert "Issuer" not in kinds
            assert serving["spec"]["issuerRef"] == {
                "group": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"
            }  # fmt: skip
    elif value_set == "monitoring":
        (monitor,) = of_kind(docs, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (service,) = [
            s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")
        ]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "https-metrics"
        # Over TLS, verified against the webhook certificate's CA and name, with Prometheus' token.
        assert endpoint["scheme"] == "https"
        assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
        assert endpoint["tlsConfig"] == {
            "ca": {"secret": {"name": f"{release}-nightshift-webhook-tls", "key": "ca.crt"}},
            "serverName": f"{release}-nightshift-webhook.{namespace}.svc",
        }
        (dashboard,) = of_kind(docs, "ConfigMap")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        text = dashboard["data"]["nightshift.json"]
        json.loads(text)
        for metric in METRICS:
            assert metric in text, metric
    elif value_set == "fail-closed":
        assert webhooks[0]["webhooks"][0]["failurePolicy"] == "Fail"
    elif value_set == "minimal":
        assert (
            not {"PodDisruptionBudget", "ValidatingWebhookConfiguration", "Service", "Secret"}
            & kinds
        )
        # No webhook: no SubjectAccessReviews; the guard still reads namespaces.
        assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == [
            f"{release}-nightshift",
            f"{release}-nightshift-guard",
        ]
        guard = of_kind(docs, "ClusterRole")[1]
        assert [r["resources"] for r in guard["rules"]] == [["namespaces"]]
        crd = of_kind(docs, "CustomResourceDefinition")[0]
        assert "annotations" not in crd["metadata"]
        container = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "localhost/nightshift/operator@sha256:" + "0" * 64
        assert not any(a.startswith("--webhook") for a in container["args"])

    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
    )  # fmt: skip
    assert result.stdout.count("(server dry run)") == len(docs), result.stdout


def _check_serving_certificate(
    secret: dict[str, Any], *, service: str, namespace: str, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    crt = tmp_path / "tls.crt"
    ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    crt.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(crt)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    sans = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(crt)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"DNS:{service}.{namespace}.svc" in sans
    assert f"DNS:{service}.{namespace}.svc.cluster.local" in sans


# --- install, Pod Security, upgrade, uninstall ------------------------------------------------


def test_operator_pods_are_admitted_under_restricted_pod_security(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    # The namespace really enforces: a pod that runs as root with default capabilities is refused.
    rogue = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rogue"},
        "spec": {"containers": [{"name": "a", "image": "b"}]},
    }
    refused = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(rogue),
        check=False,
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr

    release = release_name()
    values = {"crds": {"enabled": False}, "watchNamespaces": [namespace]}
    try:
        helm(
            cluster, "install", release, str(CHART), "--namespace", namespace,
            "--values", str(values_file(tmp_path, values)), "--wait", "--timeout", "180s",
        )  # fmt: skip
        pods = cluster.get("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")[
            "items"
        ]
        assert len(pods) == 2
        assert all(p["status"]["phase"] == "Running" for p in pods)
        # Spread over the two nodes.
        assert len({p["spec"]["nodeName"] for p in pods}) == 2
        events = cluster.get("events", "-n", namespace)["items"]
        assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")


def test_install_upgrade_with_a_crd_change_then_uninstall_keeps_the_crd(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    values = values_file(tmp_path, {"watchNamespaces": [namespace], "replicaCount": 1})
    common = ["--namespace", namespace, "--values", str(values), "--wait", "--timeout", "180s"]

    # A copy of the chart whose CRD (synced from a modified crds/ file) has a new description.
    changed = tmp_path / "chart"
    subprocess.run(["cp", "-r", str(CHART), str(changed)], check=True)
    marker = f"Upgraded by test_chart {secrets.token_hex(3)}."
    source = yaml.safe_load(CRD_SOURCE.read_text())
    schema = source["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    original = schema["description"]
    schema["description"] = f"{original} {marker}"
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(source))  # keys sorted: `spec` comes last
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "chart" / "sync_crd.py"),
         "--source", str(tmp_path / "crd.yaml"), "--chart", str(changed)],
        check=True, capture_output=True,
    )  # fmt: skip

    def description() -> str:
        crd = cluster.get("crd", CRD_NAME)
        return str(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"])

    adopt_crd(cluster, release, namespace)
    try:
        helm(cluster, "install", release, str(CHART), *common)
        crd = cluster.get("crd", CRD_NAME)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert description() == original
        secret = f"{release}-nightshift-webhook-tls"
        tls = cluster.get("secret", secret, "-n", namespace)["data"]
        ca_bundle = cluster.get("validatingwebhookconfiguration", f"{release}-nightshift")[
            "webhooks"
        ][0]["clientConfig"]["caBundle"]
        assert ca_bundle == tls["ca.crt"]

        helm(cluster, "upgrade", release, str(changed), *common)
        poll(lambda: marker in description(), timeout=30, what="the upgraded CRD description")
        # The webhook certificate and its CA survive the upgrade (looked up, not regenerated).
        assert cluster.get("secret", secret, "-n", namespace)["data"] == tls
        hook = cluster.get("validatingwebhookconfiguration", f"{release}-nightshift")["webhooks"][0]
        assert hook["clientConfig"]["caBundle"] == ca_bundle

        # Within 30 days of its end (its renew-after annotation passed), the next upgrade
        # renews the certificate, the caBundle with it, and restarts the pods to read it.
        pods_before = pod_checksum(cluster, release, namespace)
        cluster.kubectl(
            "annotate", "secret", secret, "-n", namespace, "--overwrite",
            "nightshift.dev/renew-after=2000-01-01T00:00:00Z",
        )  # fmt: skip

        # And back, so that the shared CRD is as the other tests expect it.
        helm(cluster, "upgrade", release, str(CHART), *common)
        renewed = cluster.get("secret", secret, "-n", namespace)
        assert renewed["data"]["tls.crt"] != tls["tls.crt"]
        assert renewed["data"]["ca.crt"] != tls["ca.crt"]
        assert renewed["metadata"]["annotations"]["nightshift.dev/renew-after"] > "2027"
        hook = cluster.get("validatingwebhookconfiguration", f"{release}-nightshift")["webhooks"][0]
        assert hook["clientConfig"]["caBundle"] == renewed["data"]["ca.crt"]
        assert pod_checksum(cluster, release, namespace) != pods_before
        poll(lambda: marker not in description(), timeout=30, what="the CRD description restored")
    finally:
        out = helm(
            cluster, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s"
        )
    assert "kept due to the resource policy" in out
    crd = cluster.get("crd", CRD_NAME)
    assert crd["metadata"].get("deletionTimestamp") is None
    assert description() == original
    gone = cluster.kubectl(
        "get", "deployment", f"{release}-nightshift", "-n", namespace, check=False
    )
    assert gone.returncode != 0


def pod_checksum(cluster: Any, release: str, namespace: str) -> str:
    """The Deployment's pod-template annotation that follows the webhook certificate."""
    deployment = cluster.get("deployment", f"{release}-nightshift", "-n", namespace)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/webhook-tls"])


# --- RBAC --------------------------------------------------------------------------------------


def test_service_account_may_do_exactly_what_the_operator_uses(
    cluster: Any, namespace: str, make_namespace: Callable[[str], str], tmp_path: Path
) -> None:
    release = release_name()
    sa = f"{release}-nightshift"
    other = make_namespace(f"{namespace}-x")
    docs = render(cluster, tmp_path, {}, release=release, namespace=namespace)
    applied = apply_rbac_only(cluster, docs)
    try:
        # Cluster-wide (the default): the operator's rules everywhere, the Lease only at home.
        expected = OPERATOR_RULES | guard_rules() | METRICS_AUTH_RULES | lease_rules(sa)
        got = eventually(lambda: service_account_rules(cluster, namespace, sa), expected)
        assert got == expected, f"got:\n{show(got)}\nexpected:\n{show(expected)}"
        print("\ncan-i --list minus an unbound ServiceAccount's, release namespace:")
        print(show(got))
        user = f"system:serviceaccount:{namespace}:{sa}"
        elsewhere = can_i_list(cluster, user, other) - can_i_list(
            cluster, f"system:serviceaccount:{other}:default", other
        )
        assert elsewhere == OPERATOR_RULES | guard_rules() | METRICS_AUTH_RULES, show(elsewhere)
        for forbidden in (
            ("get", "secrets"), ("list", "secrets"), ("get", "namespaces"),
            ("patch", "namespaces"), ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("create", "pods"), ("update", "scheduledtasks.nightshift.dev"),
            ("delete", "scheduledtasks.nightshift.dev"),
            ("update", "events"), ("update", "leases.coordination.k8s.io"),
        ):  # fmt: skip
            answer = cluster.kubectl(
                "auth", "can-i", *forbidden, f"--as={user}", "-n", other, check=False
            )
            assert answer.stdout.strip() == "no", forbidden
        assert (
            cluster.kubectl(
                "auth",
                "can-i",
                "list",
                "scheduledtasks.nightshift.dev",
                "--all-namespaces",
                f"--as={user}",
            ).stdout.strip()
            == "yes"
        )
    finally:
        delete_objects(cluster, applied)


@pytest.mark.parametrize("shard_filter", ["auto", "shardSelector"])
def test_shards_add_lease_listing_and_the_labeller_patches_only(
    cluster: Any, namespace: str, tmp_path: Path, shard_filter: str
) -> None:
    release = release_name()
    sa = f"{release}-nightshift"
    values = {"sharding": {"shards": 4, "filter": shard_filter}, "replicaCount": 2}
    docs = render(cluster, tmp_path, values, release=release, namespace=namespace)
    args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shards=4" in args
    assert f"--shard-filter={shard_filter}" in args
    applied = apply_rbac_only(cluster, docs)
    try:
        tasks = frozenset(
            {"get", "list", "watch"} | ({"patch"} if shard_filter == "auto" else set())
        )
        expected = (
            (
                OPERATOR_RULES
                - {
                    ("scheduledtasks.nightshift.dev", (), frozenset({"get", "list", "watch"})),
                    ("jobs.batch", (), frozenset({"create", "get", "list", "watch", "delete"})),
                }
            )
            | guard_rules()
            | METRICS_AUTH_RULES
            | {
                ("scheduledtasks.nightshift.dev", (), tasks),
                (
                    "jobs.batch",
                    (),
                    frozenset({"create", "get", "list", "watch", "delete", "patch"}),
                ),
                (
                    "leases.coordination.k8s.io",
                    (),
                    frozenset({"create", "get", "list", "update", "delete"}),
                ),
            }
        )
        got = eventually(lambda: service_account_rules(cluster, namespace, sa), expected)
        assert got == expected, f"got:\n{show(got)}\nexpected:\n{show(expected)}"
    finally:
        delete_objects(cluster, applied)


def test_watch_namespaces_grants_nothing_outside_them(
    cluster: Any, namespace: str, make_namespace: Callable[[str], str], tmp_path: Path
) -> None:
    release = release_name()
    sa = f"{release}-nightshift"
    home = make_namespace(f"{namespace}-h")
    other = make_namespace(f"{namespace}-x")
    docs = render(
        cluster, tmp_path, {"watchNamespaces": [namespace]}, release=release, namespace=home
    )
    applied = apply_rbac_only(cluster, docs)
    user = f"system:serviceaccount:{home}:{sa}"

    def extra(ns: str) -> set[Rule]:
        return can_i_list(cluster, user, ns) - can_i_list(
            cluster, f"system:serviceaccount:{ns}:default", ns
        )

    # Cluster-scoped, so listed everywhere: the watched namespace itself, by name, and reviews.
    guard = guard_rules(namespace)
    try:
        expected = OPERATOR_RULES | guard | METRICS_AUTH_RULES
        watched = eventually(lambda: extra(namespace), expected)
        assert watched == expected, show(watched)
        got = extra(home)
        print(f"\nwatchNamespaces, release namespace:\n{show(got)}")
        print(f"watchNamespaces, watched namespace:\n{show(watched)}")
        assert got == lease_rules(sa) | guard | METRICS_AUTH_RULES
        # Nothing but what is cluster-scoped (no namespace to limit it to): the watched
        # namespace itself, by name, and the reviews.
        assert extra(other) == guard | METRICS_AUTH_RULES
        everywhere = cluster.kubectl(
            "auth",
            "can-i",
            "list",
            "scheduledtasks.nightshift.dev",
            "--all-namespaces",
            f"--as={user}",
            check=False,
        )
        assert everywhere.stdout.strip() == "no"
    finally:
        delete_objects(cluster, applied)


def test_edit_may_manage_tasks_and_view_may_only_read_them(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    docs = render(cluster, tmp_path, {}, release=release, namespace=namespace)
    aggregated = [
        d
        for d in of_kind(docs, "ClusterRole")
        if d["metadata"]["name"].endswith(("-edit", "-view"))
    ]
    assert sorted(d["metadata"]["name"] for d in aggregated) == [
        f"{release}-nightshift-edit",
        f"{release}-nightshift-view",
    ]
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": aggregated}),
    )
    editor, viewer = f"editor-{release}", f"viewer-{release}"
    cluster.kubectl(
        "create",
        "rolebinding",
        "editors",
        "--clusterrole=edit",
        f"--user={editor}",
        "-n",
        namespace,
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "viewers",
        "--clusterrole=view",
        f"--user={viewer}",
        "-n",
        namespace,
    )

    def can(
        user: str, verb: str, resource: str = "scheduledtasks.nightshift.dev", *extra: str
    ) -> bool:
        out = cluster.kubectl(
            "auth", "can-i", verb, resource, *extra, f"--as={user}", "-n", namespace, check=False
        )
        return out.stdout.strip() == "yes"

    try:
        # The controller manager folds the new rules into edit/admin/view asynchronously.
        poll(lambda: can(editor, "create") and can(viewer, "list"), timeout=30, what="aggregation")
        for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
            assert can(editor, verb), verb
        for verb in ("get", "list", "watch"):
            assert can(viewer, verb), verb
        for verb in ("create", "update", "patch", "delete", "deletecollection"):
            assert not can(viewer, verb), verb
        # Status is the operator's: users write spec and metadata only.
        assert not can(editor, "patch", "scheduledtasks.nightshift.dev", "--subresource=status")
        assert can(editor, "patch", "scheduledtasks.nightshift.dev")
        assert not can(viewer, "get", "secrets")
    finally:
        delete_objects(cluster, aggregated)


# --- RBAC sufficiency: the operator with nothing but the chart's grants ----------------------


def test_operator_runs_a_scenario_with_only_the_chart_service_account(
    cluster: Any, crd: None, namespace: str, make_namespace: Callable[[str], str], tmp_path: Path
) -> None:
    release = release_name()
    sa = f"{release}-nightshift"
    home = make_namespace(f"{namespace}-h")
    docs = render(
        cluster, tmp_path, {"watchNamespaces": [namespace]}, release=release, namespace=home
    )
    applied = apply_rbac_only(cluster, docs)
    kubeconfig = token_kubeconfig(cluster, home, sa, tmp_path / "sa.kubeconfig")
    whoami = cluster.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami").stdout
    assert f"system:serviceaccount:{home}:{sa}" in whoami

    # The chart Deployment's flags: the webhook is served (the chart, not kopf, registers it).
    container = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert f"--namespace={namespace}" in container["args"]
    cert, key = self_signed(tmp_path, name="tls", days=1)
    extra_args = [
        "--leader-elect", f"--leader-election-namespace={home}", f"--leader-election-name={sa}",
        f"--webhook-port={free_port()}", "--webhook-addr=127.0.0.1",
        f"--webhook-cert={cert}", f"--webhook-key={key}",
    ]  # fmt: skip
    operator = Operator(
        kubeconfig, tmp_path, namespaces=[namespace], extra_args=extra_args,
        env={"POD_NAME": f"{sa}-test", "POD_NAMESPACE": home},
    )  # fmt: skip

    try:
        operator.start()
        time.sleep(2)  # kopf's first requests (and refusals) happen right after start-up
        assert_not_refused(operator.logs())
        _scenario(cluster, namespace)
        # The Lease, in the release namespace, held under the pod's name.
        lease = cluster.get("lease", sa, "-n", home)
        assert lease["spec"]["holderIdentity"] == f"{sa}-test"
    finally:
        operator.stop()
        delete_objects(cluster, applied)
    assert_not_refused(operator.logs())


def _scenario(cluster: Any, namespace: str) -> None:
    """Fire, succeed, prune history, fail with an exit code, retry, reject bad input, clash."""
    # A foreign Job with the name the one-shot task will want: exercises `get` on Jobs.
    slot = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"clash-{slot:%Y%m%d%H%M%S}-1"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"test.nightshift.dev/run-for": "forever"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "b"}]},
            }
        },
    }
    anchor = (datetime.now(UTC) + timedelta(seconds=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.apply(foreign, namespace)
    cluster.apply(task("tick", interval="2s", history={"succeeded": 1, "failed": 1}), namespace)
    cluster.apply(
        task(
            "flaky", interval="1h", anchor=anchor,
            retry={"maxRetries": 1, "backoff": {"initial": "2s", "jitter": False}},
            pod_annotations={
                "test.nightshift.dev/exit-code": "3", "test.nightshift.dev/message": "boom"
            },
        ),
        namespace,
    )  # fmt: skip
    cluster.apply(task("broken", interval="2s", timeZone="Mars/Olympus"), namespace)
    cluster.apply(
        task("clash", at=slot.strftime("%Y-%m-%dT%H:%M:%SZ"), startingDeadlineSeconds=60), namespace
    )
    cluster.apply(task("manual", schedule="@yearly", suspend=True), namespace)
    cluster.kubectl("annotate", "stask", "manual", "-n", namespace, "nightshift.dev/run-now=go")

    # Fired, succeeded, and history cleanup deleted the older Jobs.
    poll(
        lambda: status(cluster, namespace, "tick").get("runCount", 0) >= 4,
        timeout=60,
        what="4 ticks",
    )
    poll(
        lambda: len(jobs(cluster, namespace, "tick")) <= 2,
        timeout=20,
        what="history cleanup of tick's Jobs",
    )
    # Failed with an exit code, retried once, gave up.
    st = poll(
        lambda: (
            (s := status(cluster, namespace, "flaky")).get("consecutiveFailures") == 1
            and not s.get("pendingRetries")
            and len(s.get("runs") or []) == 2
            and s
        ),
        timeout=60,
        what="flaky to fail twice",
    )
    assert [r["exitCode"] for r in st["runs"]] == [3, 3]
    assert {r["message"] for r in st["runs"]} == {"boom"}
    assert len(jobs(cluster, namespace, "flaky")) <= 2
    # Bad input, a name clash (read back with `get`), a manual run.
    poll(
        lambda: (
            condition(status(cluster, namespace, "broken"), "Ready").get("reason") == "InvalidSpec"
        ),
        timeout=30,
        what="broken: InvalidSpec",
    )
    poll(
        lambda: (
            condition(status(cluster, namespace, "clash"), "Ready").get("reason")
            == "JobNameConflict"
        ),
        timeout=30,
        what="clash: JobNameConflict",
    )
    poll(lambda: jobs(cluster, namespace, "manual"), timeout=30, what="the manual run's Job")
    # Events, as the ServiceAccount posted them.
    assert {"RunStarted", "RunSucceeded"} <= set(reasons(cluster, namespace, "tick"))
    assert {"RetryScheduled", "RunFailed"} <= set(reasons(cluster, namespace, "flaky"))
    assert "InvalidSpec" in reasons(cluster, namespace, "broken")
    assert "JobNameConflict" in reasons(cluster, namespace, "clash")


def test_notification_secrets_are_readable_only_where_opted_in(
    cluster: Any, namespace: str, make_namespace: Callable[[str], str], tmp_path: Path
) -> None:
    release = release_name()
    home = make_namespace(f"{namespace}-h")
    other = make_namespace(f"{namespace}-x")
    values = {"notifications": {"secretNamespaces": [namespace]}}
    docs = render(cluster, tmp_path, values, release=release, namespace=home)
    applied = apply_rbac_only(cluster, docs)
    user = f"system:serviceaccount:{home}:{release}-nightshift"

    def can(verb: str, where: str) -> str:
        answer = cluster.kubectl("auth", "can-i", verb, "secrets", f"--as={user}", "-n", where,
                                 check=False)  # fmt: skip
        return str(answer.stdout.strip())

    try:
        assert eventually(lambda: can("get", namespace), "yes") == "yes"
        # get only: the operator reads a Secret a task names, never lists or watches them.
        assert can("list", namespace) == "no"
        assert can("watch", namespace) == "no"
        assert can("get", other) == "no"
        assert can("get", home) == "no"
    finally:
        delete_objects(cluster, applied)


# --- OwnerReferencesPermissionEnforcement: Jobs set blockOwnerDeletion on their task -----------


def test_jobs_are_created_under_owner_references_permission_enforcement_only_with_the_grant(
    cluster: Any, crd: None, namespace: str, make_namespace: Callable[[str], str], tmp_path: Path
) -> None:
    """The local API server runs the OwnerReferencesPermissionEnforcement admission plugin (as
    OpenShift does): a Job whose ownerReference sets blockOwnerDeletion may only be created by
    someone who may update the owner's finalizers. The operator, with nothing but the chart's
    grants, creates its Jobs; without `update` on `scheduledtasks/finalizers` every create is
    forbidden, and the operator keeps retrying until the grant is there."""
    release = release_name()
    sa = f"{release}-nightshift"
    home = make_namespace(f"{namespace}-h")
    docs = render(
        cluster, tmp_path, {"watchNamespaces": [namespace]}, release=release, namespace=home
    )
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] == namespace]
    finalizers = {"apiGroups": ["nightshift.dev"], "resources": ["scheduledtasks/finalizers"],
                  "verbs": ["update"]}  # fmt: skip
    assert finalizers in role["rules"]
    without = json.loads(json.dumps(role))
    without["rules"] = [r for r in role["rules"] if r != finalizers]
    applied = apply_rbac_only(cluster, [d for d in docs if d is not role] + [without])
    kubeconfig = token_kubeconfig(cluster, home, sa, tmp_path / "sa.kubeconfig")
    operator = Operator(kubeconfig, tmp_path, namespaces=[namespace])
    try:
        operator.start()
        cluster.apply(task("owned", schedule="@yearly"), namespace)
        cluster.kubectl("annotate", "stask", "owned", "-n", namespace, "nightshift.dev/run-now=a")
        refusal = "cannot set blockOwnerDeletion"
        poll(lambda: refusal in operator.logs(), timeout=30, what="the refused Job create")
        assert jobs(cluster, namespace, "owned") == []

        cluster.kubectl("apply", "-f", "-", input=json.dumps(role))  # the chart's Role
        (job,) = poll(lambda: jobs(cluster, namespace, "owned"), timeout=40, what="the Job")
        (owner,) = job["metadata"]["ownerReferences"]
        assert owner["kind"] == "ScheduledTask"
        assert owner["controller"] is True
        assert owner["blockOwnerDeletion"] is True
    finally:
        operator.stop()
        delete_objects(cluster, applied)


# --- NetworkPolicy ------------------------------------------------------------------------------


def test_network_policy_admits_only_the_webhook_and_the_monitoring_namespace(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    """What the policy says; the local cluster cannot show it enforced (no network plugin here
    enforces NetworkPolicies: KWOK's pods have no network, and the real node's CNI is `bridge`)."""
    release = release_name()
    docs = render(cluster, tmp_path, {}, release=release, namespace=namespace)
    (policy,) = of_kind(docs, "NetworkPolicy")
    (deployment,) = of_kind(docs, "Deployment")
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    webhook, metrics = policy["spec"]["ingress"]
    # The webhook port, from anywhere: the API server is not a pod, no selector matches it.
    assert webhook == {"ports": [{"port": 9443, "protocol": "TCP"}]}
    assert metrics == {
        "ports": [{"port": 9090, "protocol": "TCP"}],
        "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
    }  # fmt: skip
    # The health port is in no rule: only the pods' own node (the kubelet's probes) reaches it.
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    health = next(p for p in container["ports"] if p["name"] == "http-healthz")
    assert all(health["containerPort"] != p["port"] for r in (webhook, metrics) for p in r["ports"])

    # Tightened: the webhook only from the control plane's addresses, metrics only from
    # Prometheus' pods.
    values = {
        "networkPolicy": {
            "webhook": {"from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
            "metrics": {"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }]},
        }
    }  # fmt: skip
    docs = render(cluster, tmp_path, values, release=release, namespace=namespace)
    (policy,) = of_kind(docs, "NetworkPolicy")
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    assert metrics["from"] == values["networkPolicy"]["metrics"]["from"]
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(policy)
    )  # fmt: skip
    assert "(server dry run)" in result.stdout
    off = render(cluster, tmp_path, {"networkPolicy": {"enabled": False}}, release=release,
                 namespace=namespace)  # fmt: skip
    assert of_kind(off, "NetworkPolicy") == []


def test_secure_metrics_need_the_webhook_certificate(cluster: Any, tmp_path: Path) -> None:
    cmd = [
        str(cluster.bin_dir / "helm"), "template", "r", str(CHART),
        "--values", str(values_file(tmp_path, {"webhook": {"enabled": False}})),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode != 0
    assert "metrics.secure serves /metrics with the webhook's certificate" in result.stderr

"""The local control plane the bench runs on: its handle (audit log, pids, the controller
manager's flags), API clients, the operator's identity, namespaces, and what the API server
counted."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bench.constants import (
    CRONJOB_SYNCS_DEFAULT,
    CRONJOB_USER,
    FLOW_SCHEMA,
    OPERATOR_NS,
    OPERATOR_SA,
    OPERATOR_USER,
    THREADS,
    WRITE_VERBS,
)
from bench.host import say
from support.cluster import CLUSTER_PY
from support.cluster import Cluster as ClusterHandle
from support.metrics import Samples, parse_metrics, total
from support.wait import poll


class Cluster:
    """A local control plane: reused when --cluster-dir is healthy, else started (with an
    audit log of the operator's requests) and stopped at the end."""

    def __init__(self, cluster_dir: str | None, workdir: Path) -> None:
        self.workdir = workdir
        self.dir = Path(cluster_dir).resolve() if cluster_dir else workdir / "cluster"
        self.started = False
        self.audit_log: Path | None = None

    def _cluster_py(self, *args: str, env: dict[str, str] | None = None) -> int:
        full = dict(os.environ, NIGHTSHIFT_CLUSTER_DIR=str(self.dir), **(env or {}))
        return subprocess.run(
            [sys.executable, str(CLUSTER_PY), *args],
            env=full,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if args[0] == "status" else None,
        ).returncode

    def up(self) -> None:
        if self._cluster_py("status") == 0:
            say(f"reusing the healthy cluster in {self.dir} (no audit log)")
        else:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                f'rules:\n- level: Metadata\n  users: ["{OPERATOR_USER}", "{CRONJOB_USER}"]\n'
                "- level: None\n"
            )
            self.audit_log = self.workdir / "audit.log"
            extra = f"--audit-policy-file={policy} --audit-log-path={self.audit_log}"
            say(f"starting a cluster in {self.dir}")
            start = time.monotonic()
            if self._cluster_py("up", env={"NIGHTSHIFT_EXTRA_ARGS_KUBE_APISERVER": extra}):
                raise SystemExit("cluster.py up failed")
            self.started = True
            say(f"cluster up in {time.monotonic() - start:.1f} s")
        self.handle = ClusterHandle.from_state(self.dir, owned=self.started)
        self.bin_dir = self.handle.bin_dir
        self.kubeconfig = self.handle.kubeconfig

    def pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path in sorted((self.dir / "pids").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[path.stem] = int(path.read_text().split()[0])
        return out

    def controller_manager(self) -> dict[str, Any]:
        """The kube-controller-manager configuration the CronJob phase measures: its flags that
        matter for it (from /proc/<pid>/cmdline) and the server version."""
        out: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            out["version"] = json.loads(self.kubectl("version", "-o", "json"))["serverVersion"][
                "gitVersion"
            ]
        pid = self.pids().get("kube-controller-manager")
        argv: list[str] = []
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        flags = dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))
        for flag, default in (
            ("kube-api-qps", "20"),
            ("kube-api-burst", "30"),
            ("concurrent-cron-job-syncs", str(CRONJOB_SYNCS_DEFAULT)),
            ("concurrent-job-syncs", "5"),
            ("use-service-account-credentials", "false"),
            ("controllers", "*"),
        ):
            out[flag] = flags.get(flag, f"{default} (default)")
        return out

    def down(self) -> None:
        if self.started:
            self._cluster_py("down")

    def kubectl(self, *args: str, input: str | None = None) -> str:
        res = self.handle.kubectl(*args, check=False, input=input, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def metrics(self) -> Samples:
        return parse_metrics(
            self.kubectl("get", "--raw", "/metrics"),
            ("apiserver_request_total", "apiserver_flowcontrol_dispatched_requests_total"),
        )

    def audit_offset(self) -> int:
        if self.audit_log is None or not self.audit_log.exists():
            return 0
        return self.audit_log.stat().st_size

    def audit_between(
        self, start: int, end: int, user: str = OPERATOR_USER
    ) -> dict[str, int] | None:
        """Requests of one user (the operator's by default) in the audit log between two offsets,
        by verb and resource; a watch counts once (ResponseStarted)."""
        if self.audit_log is None:
            return None
        seen: dict[str, set[str]] = {}
        with open(self.audit_log, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != user:
                continue
            verb = event.get("verb", "")
            if event.get("stage") != ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            seen.setdefault(f"{verb} {resource}", set()).add(event.get("auditID", ""))
        return {key: len(ids) for key, ids in sorted(seen.items())}


def api_client(kubeconfig: Path, pool: int = THREADS, retries: int | None = None) -> Any:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    if retries is not None:
        cfg.retries = retries
    return client.ApiClient(cfg)


def setup_operator_identity(cluster: Cluster, admin: Any, workdir: Path) -> Path:
    """A ServiceAccount bound to cluster-admin, its own FlowSchema, and a kubeconfig with its
    token: the operator's requests are then countable on the server side."""
    core = client.CoreV1Api(admin)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": OPERATOR_NS}})
    with contextlib.suppress(ApiException):
        core.create_namespaced_service_account(OPERATOR_NS, {"metadata": {"name": OPERATOR_SA}})
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "nightshift-bench-operator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}
                ],
            },
            {
                # The priority level an operator's ServiceAccount gets by default
                # (FlowSchema service-accounts); only the name is ours, for counting.
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": FLOW_SCHEMA},
                "spec": {
                    "matchingPrecedence": 850,
                    "priorityLevelConfiguration": {"name": "workload-low"},
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [
                        {
                            "subjects": [
                                {
                                    "kind": "ServiceAccount",
                                    "serviceAccount": {
                                        "name": OPERATOR_SA,
                                        "namespace": OPERATOR_NS,
                                    },
                                }
                            ],
                            "resourceRules": [
                                {
                                    "verbs": ["*"],
                                    "apiGroups": ["*"],
                                    "resources": ["*"],
                                    "clusterScope": True,
                                    "namespaces": ["*"],
                                }
                            ],
                            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                        }
                    ],
                },
            },
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    token = core.create_namespaced_service_account_token(
        OPERATOR_SA,
        OPERATOR_NS,
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 86400},
        },
    ).status.token
    admin_cfg = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json"))
    cluster_entry = admin_cfg["clusters"][0]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": cluster_entry["cluster"]}],
        "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": OPERATOR_SA}}],
        "current-context": "bench",
    }
    path = workdir / "operator.kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    path.chmod(0o600)
    return path


def fresh_namespace(admin: Any, prefix: str) -> str:
    core = client.CoreV1Api(admin)
    name = f"{prefix}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"nightshift.dev/bench": "true"}}})

    def has_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException:
            return False
        return True

    poll(has_sa, timeout=60, what=f"ServiceAccount {name}/default")
    return name


def delete_namespace(admin: Any, name: str, *, wait: float = 300) -> float | None:
    """Delete a namespace and wait until it is gone; returns the seconds it took."""
    core = client.CoreV1Api(admin)
    start = time.monotonic()
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            return error.status == 404
        return False

    try:
        poll(gone, timeout=wait, what=f"namespace {name} to go", interval=0.5)
    except TimeoutError:
        say(f"namespace {name} still terminating after {wait:.0f} s; going on")
        return None
    return round(time.monotonic() - start, 1)


# apiserver_request_total by what the phases write (the metric has no user or namespace label).
REQUESTS: dict[str, dict[str, str]] = {
    "POST jobs": {"resource": "jobs", "verb": "POST"},
    "DELETE jobs": {"resource": "jobs", "verb": "DELETE"},
    "PATCH scheduledtasks/status": {
        "resource": "scheduledtasks",
        "subresource": "status",
        "verb": "PATCH",
    },
    "PUT cronjobs/status": {"resource": "cronjobs", "subresource": "status", "verb": "PUT"},
    "PATCH cronjobs/status": {"resource": "cronjobs", "subresource": "status", "verb": "PATCH"},
    "POST events (cluster-wide: also the Job controller's)": {
        "resource": "events",
        "verb": "POST",
        "group": "",
    },
    "LIST pods": {"resource": "pods", "verb": "LIST"},
}


def request_deltas(before: Samples, after: Samples) -> dict[str, float]:
    name = "apiserver_request_total"
    return {
        key: total(after, name, **labels) - total(before, name, **labels)
        for key, labels in REQUESTS.items()
    }


def audit_per_run(audit: dict[str, int] | None, runs: float) -> dict[str, Any]:
    """One user's audit-log requests ("verb resource" -> count) per successful run."""
    if audit is None or not runs:
        return {}
    writes = sum(v for k, v in audit.items() if k.split()[0] in WRITE_VERBS)
    return {
        "audit_writes_per_run": round(writes / runs, 2),
        "audit_total_per_run": round(sum(audit.values()) / runs, 2),
        "audit_per_run": {k: round(v / runs, 2) for k, v in audit.items()},
    }

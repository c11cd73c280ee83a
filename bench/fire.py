#!/usr/bin/env python3
"""Firing benchmarks on a local control plane: print a table, write the numbers as JSON.

    .venv/bin/python bench/fire.py [--tasks 1000] [--big 1000] [--huge 10000] [--repeat 1]

Phases (each run ``--repeat`` times, one after another, each in a fresh namespace that is deleted
afterwards; in this order):

``floor``   N Jobs (built by ``nightshift.jobs.build_job``), created at T by a bare client (a
            pool of 16 threads, warm connections, the operator's credentials), watched the same
            way as below: what the API server and this machine allow at best.
``fire``    N ScheduledTasks (``schedule: "M H * * *"``, UTC) all due at the same minute T; a
            fresh operator is started before T. A watcher thread in this process (a batch/v1 Job
            watch with the operator's label selector) stamps each ADDED event with
            ``time.time()``; skew = that time - T. Then it waits until every task's status says
            Succeeded and counts the API calls per run: the operator's own
            ``nightshift_api_requests_total`` and, independently, what the API server saw from
            the operator's user (audit log, flow-control and request metrics).
``cronjob`` The built-in CronJob controller (kube-controller-manager) with N equivalent batch/v1
            CronJobs due at the same kind of minute T, the same Job template, watched the same
            way; API requests per run from the API server's metrics and the audit log (user
            ``system:serviceaccount:kube-system:cronjob-controller``).
``big``     --big idle tasks (``@yearly``) plus one task due every 10 s: operator RSS (VmRSS,
            VmHWM) once every task is loaded and scheduled; then kill -9 one second before a
            slot of the 10 s task and restart: time until that task's Job appears and until all
            tasks are loaded again. ``--huge N`` does the same once at N tasks.

The table compares Nightshift's p99 with the floor's and the CronJob controller's; a PNG next to
the JSON shows the skew distributions (needs matplotlib: ``pip install -e ".[bench]"``).

The operator runs as ``nightshift run --namespace NS`` under a ServiceAccount bound to
cluster-admin, so its requests can be told apart from everything else on the server: a
FlowSchema of its own (``apiserver_flowcontrol_dispatched_requests_total``) and, when this script
started the cluster, an audit log that records only that user's requests.

Nothing here asserts on time: the numbers are printed and written to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from nightshift.jobs import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_RUN,
    ANNOTATION_TASK_UID,
    LABEL_MANAGED,
    build_job,
    run_id_for_slot,
)
from nightshift.models import GROUP, KIND, PLURAL, VERSION, parse_spec
from nightshift.sharding import bucket, shard_of

REPO = Path(__file__).resolve().parent.parent
# tests/support is the local-cluster kit the test suites use too (free_port, poll, the metrics
# parser, the percentile, the cluster handle). It is no installed package: pytest finds it through
# its pythonpath setting (pyproject.toml), this script by the same path.
sys.path.insert(0, str(REPO / "tests"))

from support.cluster import CLUSTER_PY  # noqa: E402
from support.cluster import Cluster as ClusterHandle  # noqa: E402
from support.metrics import Samples, by_label, delta, parse_metrics, total  # noqa: E402
from support.percentiles import percentile  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.wait import poll, sleep_until  # noqa: E402

CRD = REPO / "crds" / "scheduledtasks.nightshift.dev.yaml"
SELECTOR = f"{LABEL_MANAGED}=true"
OPERATOR_NS = "nightshift-bench"  # where the operator's ServiceAccount lives
OPERATOR_SA = "operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
FLOW_SCHEMA = "nightshift-bench-operator"
# kube-controller-manager runs with --use-service-account-credentials: one user per controller.
CRONJOB_USER = "system:serviceaccount:kube-system:cronjob-controller"
CRONJOB_DEADLINE = 600  # startingDeadlineSeconds: generous, a late fire is a skew, not a miss
CRONJOB_SYNCS_DEFAULT = 5  # kube-controller-manager --concurrent-cron-job-syncs default
WRITE_CALLS = ("create_job", "patch_status", "create_event", "delete_job")
THREADS = 16
MISS_AFTER = 60.0  # a task without a Job this long after T is a miss
TICK = "zz-tick"  # listed last (etcd lists by key): the worst case for a restart
TICK_EVERY = 10
SCALE_TICK = 4  # s: the interval of the scale phase's tick tasks

TARGETS = {
    "api_writes_per_run": 3,
    "rss_mib_at_10000": 200,
    "first_fire_after_restart_s": 30,
    "p99_vs_floor": 1.2,
    "p99_vs_cronjob": 0.5,
    "scale_rss_mib_per_replica": 200,
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


WRITE_VERBS = ("create", "patch", "update", "delete")


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def summary_ms(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    out: dict[str, Any] = {"n": len(ms)}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99)):
        value = percentile(ms, p)
        out[f"{name}_ms"] = round(value, 1) if value is not None else None
    out["min_ms"] = round(min(ms), 1) if ms else None
    out["max_ms"] = round(max(ms), 1) if ms else None
    out["mean_ms"] = round(sum(ms) / len(ms), 1) if ms else None
    return out


def minute_slot(lead: float) -> float:
    """The first minute boundary at least ``lead`` seconds from now."""
    return float(math.ceil((time.time() + lead) / 60) * 60)


def daily_cron(slot: float) -> str:
    """A cron schedule due at this minute every day (UTC)."""
    when = datetime.fromtimestamp(slot, UTC)
    return f"{when.minute} {when.hour} * * *"


def run_time(run: str) -> float:
    """The slot time of a scheduled run id (``2026-11-23T03:00:00Z``)."""
    return datetime.strptime(run, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (MiB) and Threads of a process."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            number = float(value.split()[0])
            out[key] = round(number / 1024, 1) if key != "Threads" else number
    return out


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process, plus the host's busy and total seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
    cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    out["host total"] = sum(cpu) / tick
    out["host busy"] = (sum(cpu) - cpu[3] - cpu[4]) / tick  # minus idle and iowait
    return {k: round(v, 3) for k, v in out.items()}


def cpu_window(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """Who used the CPU between two snapshots: seconds per process and the host's busy share."""
    used = {k: round(after[k] - before[k], 2) for k in after if k in before and "host" not in k}
    total = after["host total"] - before["host total"]
    busy = after["host busy"] - before["host busy"]
    return {
        "window_s": round(seconds, 2),
        "host_busy_pct": round(100 * busy / total, 1) if total else None,
        "cpu_s": dict(sorted(used.items(), key=lambda kv: -kv[1])),
    }


# --- the cluster -------------------------------------------------------------------------------


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


# --- the Job watcher ---------------------------------------------------------------------------


class JobWatcher(threading.Thread):
    """Stamps every ADDED Job (with the operator's label) in a namespace with time.time()."""

    def __init__(self, admin: Any, namespace: str) -> None:
        super().__init__(daemon=True, name=f"watch-{namespace}")
        self.batch = client.BatchV1Api(admin)
        self.namespace = namespace
        self.added: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            listed = self.batch.list_namespaced_job(self.namespace, label_selector=SELECTOR)
            rv = listed.metadata.resource_version
            for job in listed.items:  # none expected: the namespace is fresh
                self._record(time.time(), client.ApiClient().sanitize_for_serialization(job))
            self.ready.set()
            while not self.stopped.is_set():
                stream = watch.Watch().stream(
                    self.batch.list_namespaced_job,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    deserialize=False,  # stamp on arrival, not after building model objects
                )
                for event in stream:
                    now = time.time()
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event.get("type") == "ADDED":
                        self._record(now, obj)
                    if self.stopped.is_set():
                        break
        except BaseException as error:  # reported by the phase that started the watch
            self.error = error
            self.ready.set()

    def _record(self, now: float, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), {})
        annotations = meta.get("annotations") or {}
        with self.lock:
            self.added.append(
                {
                    "t": now,
                    "name": meta.get("name"),
                    "task": owner.get("name")
                    or (meta.get("labels") or {}).get("nightshift.dev/task"),
                    "owner_uid": owner.get("uid"),
                    "run": annotations.get(ANNOTATION_RUN),
                    "attempt": annotations.get(ANNOTATION_ATTEMPT),
                }
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.added)

    def stop(self) -> None:
        self.stopped.set()


def start_watcher(watcher: JobWatcher) -> None:
    watcher.start()
    if not watcher.ready.wait(30) or watcher.error is not None:
        raise RuntimeError(f"the Job watch did not start: {watcher.error}")


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


def await_every_job(watcher: JobWatcher, n: int, due: float, what: str) -> None:
    """Until the watcher has seen a Job for each of n owners, or MISS_AFTER past the slot."""
    poll(
        lambda: len({j["task"] for j in watcher.snapshot()}) >= n or time.time() > due + MISS_AFTER,
        timeout=due - time.time() + MISS_AFTER + 5,
        what=what,
        interval=0.05,
    )


def reported_skew(label: str, watcher: JobWatcher, names: list[str], due: float) -> dict[str, Any]:
    """The skew report of what the watcher saw, also said on the terminal."""
    report = skew_report(watcher.snapshot(), names, due)
    say(
        "{}: p50 {p50_ms} ms, p90 {p90_ms} ms, p99 {p99_ms} ms, max {max_ms} ms, "
        "misses {m}, duplicates {duplicates}".format(label, m=len(report["misses"]), **report)
    )
    return report


def skew_report(added: list[dict[str, Any]], tasks: list[str], due: float) -> dict[str, Any]:
    first: dict[str, float] = {}
    for job in added:
        if job["attempt"] == "1" and job["task"] in tasks and job["t"] - due <= MISS_AFTER:
            first[job["task"]] = min(first.get(job["task"], math.inf), job["t"])
    per_slot = Counter((j["owner_uid"], j["task"], j["run"], j["attempt"]) for j in added)
    skews = [first[t] - due for t in tasks if t in first]
    report = summary_ms(skews)
    report["jobs_added"] = len(added)
    report["duplicates"] = sum(n - 1 for n in per_slot.values() if n > 1)
    report["misses"] = sorted(t for t in tasks if t not in first)
    report["early"] = sum(1 for s in skews if s < 0)
    report["first_job_at"] = utc(min(first.values())) if first else None
    report["last_job_at"] = utc(max(first.values())) if first else None
    report["skews_ms"] = sorted(round(s * 1000, 1) for s in skews)  # for the plot
    return report


# --- the operator ------------------------------------------------------------------------------


class Operator:
    """``nightshift run`` as a child process, with its metrics and /proc numbers."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.extra_env = env or {}
        self.extra_args = args or []
        self.namespace = namespace
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.started_at = 0.0

    def start(self) -> None:
        exe = Path(sys.executable).parent / "nightshift"
        cmd = [
            str(exe if exe.exists() else shutil.which("nightshift") or "nightshift"),
            "run",
            f"--kubeconfig={self.kubeconfig}",
            "--health-port=0",
            f"--namespace={self.namespace}",
            # The tick tasks fire every few seconds, below the default minimum interval (1m).
            "--min-interval=1s",
        ]
        self.port = free_port()
        cmd.append(f"--metrics-port={self.port}")
        cmd += self.extra_args
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            log.write(f"# {' '.join(cmd)}\n".encode())
            log.flush()
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> Samples | None:
        if not self.alive():
            raise RuntimeError(
                f"the operator exited ({self.proc and self.proc.returncode}); see {self.log_path}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return parse_metrics(r.read().decode(), ("nightshift_",))
        except OSError:
            return None

    def scrape_cost(self) -> dict[str, float]:
        """Size and time of one /metrics scrape."""
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            size = len(r.read())
        return {"bytes": size, "ms": round((time.monotonic() - start) * 1000, 1)}

    def gauge(self, name: str) -> float | None:
        samples = self.metrics()
        return None if samples is None else total(samples, name)

    def calls(self, samples: Samples | None = None) -> dict[str, float]:
        samples = samples if samples is not None else self.metrics() or {}
        return by_label(samples, "nightshift_api_requests_total", "call")

    def wait_tasks(self, count: int, *, timeout: float, interval: float = 0.05) -> float:
        """Wait until nightshift_tasks == count; returns the time.time() it was seen."""
        poll(
            lambda: self.gauge("nightshift_tasks") == count,
            timeout=timeout,
            what=f"nightshift_tasks == {count}",
            interval=interval,
        )
        return time.time()

    def proc_status(self) -> dict[str, float]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_settled(self, *, timeout: float, quiet: float = 2.0, interval: float = 0.25) -> float:
        """Wait until the API call counters have not moved for ``quiet`` s and the process used
        under 10 % of a core meanwhile; returns when it was seen (time.time())."""
        deadline = time.monotonic() + timeout
        last = (self.calls(), self.cpu_seconds(), time.monotonic())
        while time.monotonic() < deadline:
            time.sleep(interval)
            now = (self.calls(), self.cpu_seconds(), time.monotonic())
            if now[0] != last[0]:
                last = now
                continue
            elapsed = now[2] - last[2]
            if elapsed >= quiet:
                if (now[1] - last[1]) / elapsed < 0.1:
                    return time.time()
                last = now
        raise TimeoutError(f"operator not idle after {timeout:.0f} s")

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def profile(self, py_spy: str, out: Path, seconds: float) -> subprocess.Popen[bytes]:
        """Sample this process with py-spy (collapsed stacks, idle frames and threads kept)."""
        return subprocess.Popen(
            [
                py_spy,
                "record",
                f"--pid={self.pid}",
                "--rate=200",
                "--format=raw",
                "--idle",
                "--threads",
                "--nonblocking",
                f"--duration={math.ceil(seconds)}",
                f"--output={out}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    @property
    def identity(self) -> str:
        """The identity the operator holds Leases under (no POD_NAME here: host-pid)."""
        return f"{socket.gethostname()}-{self.pid}"


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


def skew_histogram(before: Samples, after: Samples) -> dict[str, Any]:
    """The operator's own nightshift_fire_skew_seconds over the phase."""
    name = "nightshift_fire_skew_seconds"
    count = total(after, name + "_count") - total(before, name + "_count")
    seconds = total(after, name + "_sum") - total(before, name + "_sum")
    buckets = delta(
        by_label(after, name + "_bucket", "le"), by_label(before, name + "_bucket", "le")
    )
    return {
        "count": count,
        "mean_ms": round(seconds / count * 1000, 1) if count else None,
        "buckets_le": dict(sorted(buckets.items(), key=lambda kv: float(kv[0]))),
    }


# --- phases ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: Cluster, workdir: Path) -> None:
        self.args = args
        self.cluster = cluster
        self.workdir = workdir
        self.admin = api_client(cluster.kubeconfig, pool=THREADS + 4)
        self.operator_kubeconfig = setup_operator_identity(cluster, self.admin, workdir)
        self.custom = client.CustomObjectsApi(self.admin)
        self.log_count = 0

    def operator(self, namespace: str, args: list[str] | None = None) -> Operator:
        self.log_count += 1
        log = self.workdir / f"operator-{self.log_count}-{namespace}.log"
        env = dict(item.split("=", 1) for item in self.args.operator_env)
        return Operator(self.operator_kubeconfig, namespace, log, env, args)

    def server_snapshot(self) -> dict[str, Any]:
        samples = self.cluster.metrics()
        return {"samples": samples, "audit": self.cluster.audit_offset()}

    def server_delta(
        self, before: dict[str, Any], after: dict[str, Any], namespace: str
    ) -> dict[str, Any]:
        del namespace  # apiserver_request_total has no namespace label
        b, a = before["samples"], after["samples"]
        flow = "apiserver_flowcontrol_dispatched_requests_total"
        return {
            "operator_flowschema_dispatched": total(a, flow, flow_schema=FLOW_SCHEMA)
            - total(b, flow, flow_schema=FLOW_SCHEMA),
            "apiserver_request_total": request_deltas(b, a),
            "audit_operator_user": self.cluster.audit_between(before["audit"], after["audit"]),
            "audit_cronjob_controller_user": self.cluster.audit_between(
                before["audit"], after["audit"], CRONJOB_USER
            ),
        }

    # -- phase 1 and 2 ----------------------------------------------------------------------

    def _slot_phase(
        self, kind: str, run: int
    ) -> tuple[str, JobWatcher, float, str, list[str], dict[str, Any]]:
        """A fresh namespace with the Job watcher running, and the minute T that N objects (named
        t-00000...) will be due at: far enough away to create them (and, for Nightshift, for the
        operator's first pass)."""
        n = self.args.tasks
        ns = fresh_namespace(self.admin, f"bench-{kind}{run}")
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        due = minute_slot(n / 50 + 15)
        schedule = daily_cron(due)
        names = [f"t-{i:05d}" for i in range(n)]
        result: dict[str, Any] = {
            "namespace": ns,
            "tasks": n,
            "due": utc(due),
            "schedule": schedule,
            "load_before": loadavg(),
        }
        return ns, watcher, due, schedule, names, result

    def fire(self, run: int) -> dict[str, Any]:
        n = self.args.tasks
        # Time to create the tasks (~500/s) and for the operator's first pass (~5 s at 1,000, ~60 s
        # at 10,000), then the next minute boundary.
        ns, watcher, due, schedule, names, result = self._slot_phase("fire", run)
        say(f"fire #{run}: {n} tasks due at {utc(due)} ({schedule!r}, UTC), namespace {ns}")
        spec = {"schedule": schedule, "timeZone": "UTC"}
        result["create"] = {
            "seconds": create_tasks(self.admin, ns, [task_body(x, spec) for x in names])["seconds"]
        }
        op = self.operator(ns)
        op.start()
        try:
            poll(op.metrics, timeout=60, what="operator metrics endpoint")
            loaded = op.wait_tasks(n, timeout=max(30, due - time.time()))
            try:
                settled = op.wait_settled(timeout=max(1.0, due - time.time() - 1), quiet=1.0)
            except TimeoutError:
                settled = time.time()
                say("WARNING: the operator was still busy with its first syncs near T")
            before_op = op.metrics() or {}
            before_srv = self.server_snapshot()
            margin = due - time.time()
            result["operator"] = {
                "pid": op.pid,
                "log": str(op.log_path),
                "loaded_s_after_start": round(loaded - op.started_at, 2),
                "idle_s_after_start": round(settled - op.started_at, 2),
                "idle_s_before_due": round(margin, 2),
                "startup_calls": op.calls(before_op),
            }
            if margin < 0.5:
                say(f"WARNING: the operator was ready only {margin:.2f} s before T")
            say(f"operator idle {margin:.1f} s before T ({utc(due)}); waiting for the slot")
            spy = None
            if self.args.py_spy:
                sleep_until(due - 0.2)
                result["profile"] = str(self.workdir / f"profile-fire{run}.txt")
                spy = op.profile(self.args.py_spy, Path(result["profile"]), n / 50 + 1)
            pids = self.cluster.pids() | {"operator": op.pid, "bench": os.getpid()}
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            await_every_job(watcher, n, due, "a Job for every task")
            result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            if spy is not None:
                spy.wait()
            result["skew"] = reported_skew(f"fire #{run}", watcher, names, due)
            result["api"] = self.runs_succeeded(op, ns, n, before_op, before_srv)
            result["cpu_until_settled"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            after_op = op.metrics() or {}
            result["operator_fire_skew_histogram"] = skew_histogram(before_op, after_op)
            result["skew"]["duplicates_after_runs"] = skew_report(watcher.snapshot(), names, due)[
                "duplicates"
            ]
            result["operator"]["rss_mib"] = op.proc_status()
        finally:
            op.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    def runs_succeeded(
        self, op: Operator, ns: str, n: int, before_op: Samples, before_srv: dict[str, Any]
    ) -> dict[str, Any]:
        """Phase 2: once every task's run has succeeded, API calls per successful run."""
        start = time.monotonic()

        def all_succeeded() -> bool:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            ok = sum(1 for t in items if (t.get("status") or {}).get("lastResult") == "Succeeded")
            return ok >= n

        poll(all_succeeded, timeout=180, what="every run Succeeded", interval=1.0)
        succeeded_after = time.monotonic() - start
        op.wait_settled(timeout=60, quiet=2.0)
        after_op = op.metrics() or {}
        after_srv = self.server_snapshot()
        calls = delta(op.calls(after_op), op.calls(before_op))
        writes = sum(calls.get(c, 0.0) for c in WRITE_CALLS)
        runs = total(after_op, "nightshift_runs_total", result="Succeeded") - total(
            before_op, "nightshift_runs_total", result="Succeeded"
        )
        server = self.server_delta(before_srv, after_srv, ns)
        per_run = {k: round(v / runs, 2) for k, v in calls.items()} if runs else {}
        report: dict[str, Any] = {
            "all_succeeded_s_after_due": round(succeeded_after, 1),
            "successful_runs": runs,
            "operator_calls": calls,
            "operator_calls_per_run": per_run,
            "operator_total_per_run": round(sum(calls.values()) / runs, 2) if runs else None,
            "operator_writes_per_run": round(writes / runs, 2) if runs else None,
            "server": server,
        }
        report |= audit_per_run(server["audit_operator_user"], runs)
        if runs:
            report["flowschema_per_run"] = round(server["operator_flowschema_dispatched"] / runs, 2)
        say(
            f"api: {runs:.0f} successful runs; operator writes/run "
            f"{report['operator_writes_per_run']}, calls/run {report['operator_total_per_run']}: "
            f"{per_run}"
        )
        return report

    # -- the floor --------------------------------------------------------------------------

    def floor(self, run: int, *, raw: bool) -> dict[str, Any]:
        """A bare client creates the same N Jobs at T. ``raw``: the responses are not turned
        into model objects (``_preload_content=False``); otherwise the client does what it does
        by default."""
        n = self.args.tasks
        kind = "raw" if raw else "client"
        ns = fresh_namespace(self.admin, f"bench-floor{run}-{kind}")
        say(f"floor #{run} ({kind}): {THREADS} threads create {n} Jobs at T, namespace {ns}")
        due = float(math.ceil(time.time() + n / 20 + 10))
        anchor = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        names = [f"t-{i:05d}" for i in range(n)]
        bodies = [
            task_body(x, {"interval": "1h", "anchor": anchor, "suspend": True}) for x in names
        ]
        created = create_tasks(self.admin, ns, bodies)["objects"]
        slot = datetime.fromtimestamp(due, UTC)
        manifests = [
            build_job(
                task_name=t["metadata"]["name"],
                task_uid=t["metadata"]["uid"],
                spec=parse_spec(t["spec"]),
                run=run_id_for_slot(slot),
                attempt=1,
                slot=slot,
            )
            for t in created
        ]
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        bare = api_client(self.operator_kubeconfig, pool=THREADS, retries=0)
        batch = client.BatchV1Api(bare)
        errors: list[str] = []

        def warm(_: int) -> None:
            batch.list_namespaced_job(ns, limit=1)

        def create(manifest: dict[str, Any]) -> None:
            try:
                if raw:
                    response = batch.create_namespaced_job(ns, manifest, _preload_content=False)
                    response.read()  # an unread body must not go back into the pool
                    response.release_conn()
                else:
                    batch.create_namespaced_job(ns, manifest)
            except ApiException as error:
                errors.append(f"{error.status} {error.reason}")

        result: dict[str, Any] = {
            "namespace": ns,
            "variant": kind,
            "tasks": n,
            "due": utc(due),
            "load_before": loadavg(),
        }
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(warm, range(THREADS * 2)))  # open the connections before T
            pids = self.cluster.pids() | {"bench": os.getpid()}
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            start = time.time()
            list(pool.map(create, manifests))
            result["client_seconds"] = round(time.time() - start, 3)
        poll(
            lambda: len(watcher.snapshot()) >= n or time.time() > due + MISS_AFTER,
            timeout=MISS_AFTER + 5,
            what="every Job",
            interval=0.05,
        )
        result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
        watcher.stop()
        result["errors"] = errors
        result["skew"] = skew_report(watcher.snapshot(), names, due)
        say(
            "floor #{} ({}): p50 {p50_ms} ms, p90 {p90_ms} ms, p99 {p99_ms} ms, "
            "max {max_ms} ms".format(run, kind, **result["skew"])
        )
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    # -- the CronJob controller -------------------------------------------------------------

    def cronjob(self, run: int) -> dict[str, Any]:
        """N equivalent CronJobs due at the same minute T, fired by kube-controller-manager's
        CronJob controller; watched and counted like the fire phase."""
        n = self.args.tasks
        # The CronJobs must exist (creationTimestamp, 1 s resolution) before T, or the controller
        # never considers the slot; they are created at several hundred per second.
        ns, watcher, due, schedule, names, result = self._slot_phase("cronjob", run)
        say(f"cronjob #{run}: {n} CronJobs due at {utc(due)} ({schedule!r}), namespace {ns}")
        created = create_cronjobs(self.admin, ns, [cronjob_body(x, due) for x in names])
        result["create"] = {"seconds": created["seconds"]}
        margin = due - time.time()
        result["created_s_before_due"] = round(margin, 2)
        if margin < 2:
            say(f"WARNING: the CronJobs existed only {margin:.2f} s before T")
        pids = self.cluster.pids() | {"bench": os.getpid()}
        kcm = pids.get("kube-controller-manager")
        try:
            sleep_until(due - 3)  # the controller's first syncs of the new CronJobs are done
            before_srv = self.server_snapshot()
            say(f"cronjob #{run}: {n} CronJobs exist {margin:.1f} s before T; waiting for the slot")
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            await_every_job(watcher, n, due, "a Job for every CronJob")
            result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            result["skew"] = reported_skew(f"cronjob #{run}", watcher, names, due)
            result["api"] = self.cronjobs_succeeded(ns, n, due, before_srv)
            result["cpu_until_settled"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            result["skew"]["duplicates_after_runs"] = skew_report(watcher.snapshot(), names, due)[
                "duplicates"
            ]
            if kcm is not None:
                result["kube_controller_manager_status"] = proc_status(kcm)
        finally:
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    def cronjobs_succeeded(
        self, ns: str, n: int, due: float, before_srv: dict[str, Any]
    ) -> dict[str, Any]:
        """Once every CronJob has a successful Job (``status.lastSuccessfulTime``) and the API
        server's counters of the controllers' writes are still, API requests per successful
        run."""
        batch = client.BatchV1Api(self.admin)
        start = time.monotonic()

        def succeeded() -> int:
            listed = batch.list_namespaced_cron_job(ns, _preload_content=False)
            items = json.loads(listed.data)["items"]
            return sum(
                1
                for c in items
                if (last := (c.get("status") or {}).get("lastSuccessfulTime"))
                and run_time(last) >= due
                and not (c.get("status") or {}).get("active")
            )

        try:
            poll(
                lambda: succeeded() >= n,
                timeout=300,
                what="every CronJob's run Succeeded",
                interval=1.0,
            )
        except TimeoutError as error:
            say(f"WARNING: {error}; counting what succeeded")
        succeeded_after = time.monotonic() - start
        after_srv = self.server_quiet(before_srv)
        runs = succeeded()
        server = self.server_delta(before_srv, after_srv, ns)
        counts = server["apiserver_request_total"]
        writes = sum(
            counts[k]
            for k in ("POST jobs", "DELETE jobs", "PUT cronjobs/status", "PATCH cronjobs/status")
        )
        report: dict[str, Any] = {
            "all_succeeded_s_after_due": round(succeeded_after, 1),
            "successful_runs": runs,
            # Events have no user label in the metric: the Job controller's are in there too.
            "server_writes_per_run_without_events": round(writes / runs, 2) if runs else None,
            "server": server,
        }
        report |= audit_per_run(server["audit_cronjob_controller_user"], runs)
        say(
            f"api: {runs} successful CronJob runs; controller writes/run (audit) "
            f"{report.get('audit_writes_per_run')}, server writes/run without Events "
            f"{report['server_writes_per_run_without_events']}: "
            f"{server['audit_cronjob_controller_user']}"
        )
        return report

    def server_quiet(
        self, before: dict[str, Any], *, quiet: float = 3.0, timeout: float = 120
    ) -> dict[str, Any]:
        """Wait until the API server's counts of Job, CronJob status and Event writes have not
        moved for ``quiet`` s (the controllers' last status updates and Events are out)."""

        def writes(snapshot: dict[str, Any]) -> dict[str, float]:
            counts = request_deltas(before["samples"], snapshot["samples"])
            return {k: v for k, v in counts.items() if not k.startswith("LIST")}

        deadline = time.monotonic() + timeout
        last = self.server_snapshot()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.server_snapshot()
            if writes(now) != writes(last):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        say(f"WARNING: the API server's write counters still moving after {timeout:.0f} s")
        return last

    # -- phase 3 ----------------------------------------------------------------------------

    def baseline(self) -> dict[str, Any]:
        ns = fresh_namespace(self.admin, "bench-empty")
        op = self.operator(ns)
        op.start()
        try:
            poll(op.metrics, timeout=60, what="operator metrics endpoint")
            op.wait_tasks(0, timeout=30)
            op.wait_settled(timeout=60)
            status = op.proc_status()
        finally:
            op.stop()
        delete_namespace(self.admin, ns)
        say(
            f"baseline: an operator with no tasks: RSS {status['VmRSS']} MiB, "
            f"HWM {status['VmHWM']} MiB"
        )
        return status

    def big(self, count: int, run: int) -> dict[str, Any]:
        ns = fresh_namespace(self.admin, f"bench-big{count}-{run}")
        say(f"big #{run}: {count} idle tasks + 1 every {TICK_EVERY} s, namespace {ns}")
        bodies = [task_body(f"t-{i:05d}", {"schedule": "@yearly"}) for i in range(count)]
        bodies.append(task_body(TICK, {"interval": f"{TICK_EVERY}s"}))
        result: dict[str, Any] = {"namespace": ns, "tasks": count + 1, "load_before": loadavg()}
        created = create_tasks(self.admin, ns, bodies)
        result["create"] = {
            "seconds": created["seconds"],
            "per_s": round(len(bodies) / created["seconds"]),
        }
        del created
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        op = self.operator(ns)
        srv0 = self.server_snapshot()
        op.start()
        restarted: Operator | None = None
        try:
            if self.args.py_spy:
                result["profile"] = str(self.workdir / f"profile-big{count}-{run}.txt")
                op.profile(self.args.py_spy, Path(result["profile"]), 10 + count / 100)
            poll(op.metrics, timeout=120, what="operator metrics endpoint")
            loaded = op.wait_tasks(count + 1, timeout=900, interval=0.2)
            poll(
                lambda: (op.gauge("nightshift_scheduler_queue_depth") or 0) >= count + 1,
                timeout=900,
                what="every task in the heap",
                interval=0.5,
            )
            settled = op.wait_settled(timeout=900, quiet=3.0, interval=1.0)
            result["first_start"] = {
                "loaded_s": round(loaded - op.started_at, 2),
                "idle_s": round(settled - op.started_at, 2),
                "cpu_s": round(op.cpu_seconds(), 2),
                "metrics_scrape": op.scrape_cost(),
                "calls": op.calls(),
                "server": self.server_delta(srv0, self.server_snapshot(), ns),
                **op.proc_status(),
            }
            first = result["first_start"]
            say(
                f"big #{run}: loaded {count + 1} tasks {first['loaded_s']} s after start, "
                f"idle after {first['idle_s']} s; RSS {first['VmRSS']} MiB, "
                f"HWM {first['VmHWM']} MiB"
            )
            # The 10 s task must be firing before we kill the operator.
            seen = len([j for j in watcher.snapshot() if j["task"] == TICK])
            poll(
                lambda: len([j for j in watcher.snapshot() if j["task"] == TICK]) > seen,
                timeout=TICK_EVERY * 3 + 5,
                what=f"a Job of {TICK}",
            )
            # Kill one second before the next slot: the slot falls inside the restart.
            slot = math.ceil((time.time() + 1.5) / TICK_EVERY) * TICK_EVERY
            sleep_until(slot - 1.0)
            op.kill9()
            killed = time.time()
            restarted = self.operator(ns)
            restarted.start()
            start = restarted.started_at
            if self.args.py_spy:
                result["profile_restart"] = str(self.workdir / f"profile-restart{count}-{run}.txt")
                restarted.profile(
                    self.args.py_spy, Path(result["profile_restart"]), 5 + count / 500
                )

            def fired() -> dict[str, Any] | None:
                jobs = [j for j in watcher.snapshot() if j["task"] == TICK and j["t"] > killed]
                return jobs[0] if jobs else None

            loaded2: float | None = None
            deadline = time.time() + 600
            job = None
            polls = 0
            while time.time() < deadline and (job is None or loaded2 is None):
                # A scrape costs the operator CPU (one nightshift_active_runs series per task):
                # poll the gauge at 5 Hz, look at the watcher's records at 20 Hz.
                if (
                    loaded2 is None
                    and polls % 4 == 0
                    and restarted.gauge("nightshift_tasks") == count + 1
                ):
                    loaded2 = time.time()
                polls += 1
                job = job or fired()
                time.sleep(0.05)
            restarted.wait_settled(timeout=900, quiet=3.0, interval=1.0)
            result["restart"] = {
                "killed_s_before_slot": round(slot - killed, 2),
                "slot": utc(slot),
                "first_fire_s": round(job["t"] - start, 2) if job else None,
                "first_fire_run": job["run"] if job else None,
                # Late relative to the Job's own slot (a slot missed during a long restart is
                # recorded as Missed; catchUp Latest runs the newest one).
                "first_fire_late_s": round(job["t"] - run_time(job["run"]), 2) if job else None,
                "loaded_s": round(loaded2 - start, 2) if loaded2 else None,
                "calls": restarted.calls(),
                **restarted.proc_status(),
            }
            again = result["restart"]
            say(
                f"big #{run}: after kill -9 + restart: first Job of {TICK} after "
                f"{again['first_fire_s']} s (run {again['first_fire_run']}), "
                f"all loaded after {again['loaded_s']} s; RSS {again['VmRSS']} MiB"
            )
            jobs = watcher.snapshot()
            result["tick_duplicates"] = sum(
                n - 1
                for n in Counter(
                    (j["run"], j["attempt"]) for j in jobs if j["task"] == TICK
                ).values()
                if n > 1
            )
        finally:
            op.stop()
            if restarted is not None:
                restarted.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns, wait=900)
        return result

    # -- phase 5: scale-out by shards -------------------------------------------------------

    def _holders(self, ns: str) -> dict[int, str]:
        """Shard -> holder identity, from the shard Leases."""
        leases = client.CoordinationV1Api(self.admin).list_namespaced_lease(
            ns, label_selector="nightshift.dev/lease-role=shard"
        )
        return {
            int(lease.metadata.labels["nightshift.dev/shard"]): lease.spec.holder_identity
            for lease in leases.items
            if lease.spec.holder_identity
        }

    def _settle_shards(
        self, ops: dict[str, Operator], shards: int, tasks: int, *, timeout: float, what: str
    ) -> dict[str, dict[str, Any]]:
        """Wait until the replicas hold every shard, none above its fair share, and their
        nightshift_tasks add up to ``tasks``, unchanged for 3 s. Per replica: the shards it
        holds, its tasks, when its task count last grew (seconds after its start), RSS."""
        share = -(-shards // len(ops))
        last: dict[str, tuple[float, float]] = {}
        changed = {name: op.started_at for name, op in ops.items()}
        stable_since = math.inf
        deadline = time.time() + timeout
        while True:
            now = time.time()
            seen = {
                name: (op.gauge("nightshift_shards_held") or 0, op.gauge("nightshift_tasks") or 0)
                for name, op in ops.items()
            }
            for name, value in seen.items():
                if value != last.get(name):
                    changed[name] = now
            done = (
                sum(v[0] for v in seen.values()) == shards
                and all(v[0] <= share for v in seen.values())
                and sum(v[1] for v in seen.values()) == tasks
            )
            if seen != last or not done:
                stable_since = now
            last = seen
            if done and now - stable_since >= 3:
                break
            if now > deadline:
                raise TimeoutError(f"{what}: not settled after {timeout:.0f} s: {seen}")
            time.sleep(0.5)
        holders = self._holders(next(iter(ops.values())).namespace)
        out = {}
        for name, op in ops.items():
            out[name] = {
                "shards": sorted(s for s, who in holders.items() if who == op.identity),
                "tasks": int(last[name][1]),
                "loaded_s": round(changed[name] - op.started_at, 2),
                **op.proc_status(),
            }
        say(
            f"scale: {what}: "
            + "; ".join(
                f"{n} {r['shards']} {r['tasks']} tasks, loaded {r['loaded_s']} s, "
                f"RSS {r['VmRSS']} MiB"
                for n, r in out.items()
            )
        )
        return out

    def _ticks(self, ns: str, shards: int) -> dict[str, dict[str, Any]]:
        """Tasks due every SCALE_TICK s, at least one in each shard (created until every shard
        has one): a handover shows as their first Job after it, a duplicate or lost slot in
        their Jobs."""
        spec = {
            "interval": f"{SCALE_TICK}s",
            "concurrencyPolicy": "Allow",
            "startingDeadlineSeconds": 300,
            "catchUp": "All",
            "maxCatchUp": 100,  # the CRD's bound: 400 s of ticks
        }
        ticks: dict[str, dict[str, Any]] = {}
        covered: set[int] = set()
        while len(covered) < shards and len(ticks) < 8 * shards:
            name = f"tick-{len(ticks):03d}"
            body = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, task_body(name, spec)
            )
            shard = shard_of(bucket(body["metadata"]["uid"]), shards)
            covered.add(shard)
            created = datetime.fromisoformat(
                body["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            ticks[name] = {"shard": shard, "created": created}
        return ticks

    def _slots_report(
        self, watcher: JobWatcher, ticks: dict[str, dict[str, Any]], until: float
    ) -> dict[str, Any]:
        """Duplicate Jobs and slots without a Job of the tick tasks, up to ``until``."""
        jobs = [j for j in watcher.snapshot() if j["task"] in ticks]
        per_slot = Counter((j["task"], j["run"], j["attempt"]) for j in jobs)
        have = {(j["task"], j["run"]) for j in jobs if j["attempt"] == "1"}
        lost = []
        for name, tick in ticks.items():
            slot = (tick["created"] // SCALE_TICK + 1) * SCALE_TICK
            while slot <= until:
                run = run_id_for_slot(datetime.fromtimestamp(slot, UTC))
                if (name, run) not in have:
                    lost.append(f"{name} {run}")
                slot += SCALE_TICK
        return {
            "jobs": len(jobs),
            "duplicates": sum(n - 1 for n in per_slot.values() if n > 1),
            "lost_slots": len(lost),
            "lost": lost[:50],
        }

    def scale(self) -> dict[str, Any]:
        """--scale-tasks over --scale-replicas replicas with --scale-shards shards: each
        replica's RSS and load time; the skew of --tasks due together, spread over the shards;
        the first fire after one replica's kill -9; then 1 -> 3 -> 2 replicas."""
        count, replicas = self.args.scale_tasks, self.args.scale_replicas
        shards = self.args.scale_shards
        ns = fresh_namespace(self.admin, "bench-scale")
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        args = ["--shards", str(shards), "--leader-election-namespace", ns]
        ticks = self._ticks(ns, shards)
        due_n = min(self.args.tasks, count // 2)
        idle = count - due_n - len(ticks)
        result: dict[str, Any] = {
            "namespace": ns,
            "total_tasks": count,
            "tasks": due_n,  # due together: the skew's denominator (and the plot's)
            "replicas": replicas,
            "shards": shards,
            "ticks": {name: t["shard"] for name, t in ticks.items()},
            "load_before": loadavg(),
        }
        say(f"scale: {count} tasks over {replicas} replicas, {shards} shards, namespace {ns}")
        bodies = [task_body(f"t-{i:05d}", {"schedule": "@yearly"}) for i in range(idle)]
        result["create"] = {"seconds": create_tasks(self.admin, ns, bodies)["seconds"]}
        del bodies
        ops: dict[str, Operator] = {}
        every: list[Operator] = []

        def start(name: str) -> None:
            op = self.operator(ns, args)
            op.start()
            ops[name] = op
            every.append(op)
            poll(op.metrics, timeout=60, what=f"replica {name}'s metrics endpoint")

        try:
            for i in range(replicas):
                start(f"r{i}")
            loaded = count - due_n
            result["load"] = self._settle_shards(
                ops, shards, loaded, timeout=1800, what=f"{replicas} replicas loaded"
            )

            # The skew of due_n tasks due together, spread over the shards.
            due = minute_slot(due_n / 50 + 20)
            names = [f"d-{i:05d}" for i in range(due_n)]
            spec = {"schedule": daily_cron(due), "timeZone": "UTC"}
            objs = create_tasks(self.admin, ns, [task_body(n, spec) for n in names])["objects"]
            shard_of_task = {
                o["metadata"]["name"]: shard_of(bucket(o["metadata"]["uid"]), shards) for o in objs
            }
            del objs
            poll(
                lambda: sum(op.gauge("nightshift_tasks") or 0 for op in ops.values()) == count,
                timeout=max(30, due - time.time() - 2),
                what="every replica to see the due tasks",
            )
            say(f"scale: {due_n} tasks due at {utc(due)} over {shards} shards")
            sleep_until(due)
            poll(
                lambda: (
                    {j["task"] for j in watcher.snapshot()} >= set(names)
                    or time.time() > due + MISS_AFTER
                ),
                timeout=MISS_AFTER + 10,
                what="a Job for every due task",
                interval=0.1,
            )
            skew = reported_skew("scale: due together", watcher, names, due)
            per_shard: dict[int, list[float]] = {}
            first = {
                j["task"]: j["t"] - due
                for j in sorted(watcher.snapshot(), key=lambda j: -j["t"])
                if j["task"] in shard_of_task and j["attempt"] == "1"
            }
            for name, seconds in first.items():
                per_shard.setdefault(shard_of_task[name], []).append(seconds)
            skew["per_shard"] = {
                str(shard): {"n": len(v), "p99_ms": round((percentile(v, 99) or 0) * 1000, 1)}
                for shard, v in sorted(per_shard.items())
            }
            result["skew"] = skew
            result["after_fire"] = {name: op.proc_status() for name, op in ops.items()}

            # kill -9 of one replica: its shards move, and its tick tasks fire again.
            victim_name = "r0"
            victim = ops.pop(victim_name)
            lost = sorted(s for s, who in self._holders(ns).items() if who == victim.identity)
            orphan_ticks = {n for n, t in ticks.items() if t["shard"] in lost}
            time.sleep(SCALE_TICK)
            killed = time.time()
            victim.kill9()
            survivors = {op.identity for op in ops.values()}
            poll(
                lambda: all(self._holders(ns).get(s) in survivors for s in lost),
                timeout=120,
                what="the killed replica's shards to be taken",
                interval=0.2,  # shards_taken_s below is measured at this resolution
            )
            moved = time.time() - killed

            def first_fire() -> float | None:
                after = [
                    j["t"]
                    for j in watcher.snapshot()
                    if j["task"] in orphan_ticks and j["t"] > killed
                ]
                return min(after) if after else None

            fired = poll(first_fire, timeout=120, what="a Job of the killed replica's shards")
            result["kill9"] = {
                "shards": lost,
                "ticks": sorted(orphan_ticks),
                "shards_taken_s": round(moved, 2),
                "first_fire_s": round(fired - killed, 2),
            }
            say(
                f"scale: kill -9 of {victim_name}: shards {lost} taken after {moved:.1f} s, "
                f"first Job after {fired - killed:.1f} s"
            )
            result["after_kill"] = self._settle_shards(
                ops, shards, count, timeout=900, what=f"{len(ops)} replicas after the kill"
            )

            # Rescale 1 -> 3 -> 2 (SIGTERM to scale down, as a Deployment does).
            steps: dict[str, Any] = {}
            rescale_from = time.time()
            while len(ops) > 1:
                ops.pop(sorted(ops)[-1]).stop()
            steps["1"] = self._settle_shards(ops, shards, count, timeout=900, what="1 replica")
            time.sleep(2 * SCALE_TICK)
            start("r4")
            start("r5")
            steps["3"] = self._settle_shards(ops, shards, count, timeout=900, what="3 replicas")
            time.sleep(2 * SCALE_TICK)
            ops.pop(sorted(ops)[-1]).stop()
            steps["2"] = self._settle_shards(ops, shards, count, timeout=900, what="2 replicas")
            time.sleep(3 * SCALE_TICK)
            until = time.time() - 2 * SCALE_TICK
            result["rescale"] = {"steps": steps, "seconds": round(until - rescale_from, 1)}
            result["slots"] = self._slots_report(watcher, ticks, until)
            slots = result["slots"]
            say(
                f"scale: {slots['jobs']} Jobs of {len(ticks)} tick tasks through the kill and "
                f"the rescale: {slots['duplicates']} duplicates, {slots['lost_slots']} lost slots"
            )
        finally:
            for op in every:
                op.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns, wait=1800)
        return result


# --- report ------------------------------------------------------------------------------------

Row = tuple[str, str, str, str]  # metric, measured, target, met
HEADER: Row = ("metric", "measured (run 1 / run 2 / …)", "target", "met")


def values(runs: list[dict[str, Any]], *path: str) -> list[Any]:
    out = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out.append(value)
    return out


def fmt(items: list[Any], unit: str = "") -> str:
    shown = ["—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in items]
    return " / ".join(shown) + (f" {unit}" if unit and any(v is not None for v in items) else "")


def within(items: list[Any], limit: float) -> bool | None:
    """Every run at or under the limit (None: nothing measured)."""
    if all(v is None for v in items):
        return None
    return all(v is not None and v <= limit for v in items)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Nightshift's p99 (each run) over the best p99 of the floor (both variants, every run) and
    over the best p99 of the CronJob controller (every run), with the targets."""
    fire = values(results.get("fire", []), "skew", "p99_ms")
    floor = [
        v for key in ("floor", "floor_raw") for v in values(results.get(key, []), "skew", "p99_ms")
    ]
    references = {
        "p99_vs_floor": ("best floor p99 (both variants, every run)", floor),
        "p99_vs_cronjob": (
            "best CronJob controller p99 (every run)",
            values(results.get("cronjob", []), "skew", "p99_ms"),
        ),
    }
    out: dict[str, Any] = {}
    for name, (what, p99s) in references.items():
        best = min((v for v in p99s if v), default=None)
        if not fire or best is None:
            continue
        measured = [round(v / best, 2) if v is not None else None for v in fire]
        out[name] = {
            "measured": measured,
            "target_max": TARGETS[name],
            "met": within(measured, TARGETS[name]),
            "nightshift_p99_ms": fire,
            "reference_p99_ms": best,
            "reference": what,
        }
    return out


def table(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []

    def add(metric: str, measured: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((metric, measured, target, "" if ok is None else ("yes" if ok else "NO")))

    def misses_duplicates(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        misses = [len(m) if m is not None else None for m in values(runs, "skew", "misses")]
        dups = values(runs, "skew", "duplicates_after_runs")
        pairs = [f"{m}, {d}" for m, d in zip(misses, dups, strict=True)]
        return " / ".join(pairs), all(m == 0 and d == 0 for m, d in zip(misses, dups, strict=True))

    n = results["args"]["tasks"]
    for key, label in (("floor", "default client"), ("floor_raw", "raw responses")):
        runs = results.get(key, [])
        if not runs:
            continue
        for p in ("p50", "p99"):
            add(f"floor ({label}) {p}, {n} Jobs", fmt(values(runs, "skew", f"{p}_ms"), "ms"))
        add(f"floor ({label}): API server CPU", fmt(cpu_of(runs, "kube-apiserver"), "s"))

    fire = results.get("fire", [])
    if fire:
        for p in ("p50", "p90", "p99", "max"):
            add(
                f"Nightshift skew {p}, {n} tasks due together",
                fmt(values(fire, "skew", f"{p}_ms"), "ms"),
            )
        shown, ok = misses_duplicates(fire)
        add("Nightshift misses, duplicates", shown, "0, 0", ok)
        add("operator CPU in the fire window", fmt(cpu_of(fire, "operator"), "s"))
        add(
            "operator CPU until every run settled",
            fmt(cpu_of(fire, "operator", "cpu_until_settled"), "s"),
        )
        add("operator peak RSS (VmHWM)", fmt(values(fire, "operator", "rss_mib", "VmHWM"), "MiB"))
        add(
            "API server CPU in the fire window (Nightshift)",
            fmt(cpu_of(fire, "kube-apiserver"), "s"),
        )
        add(
            "kube-controller-manager CPU in the fire window (Nightshift)",
            fmt(cpu_of(fire, "kube-controller-manager"), "s"),
        )

    cron = results.get("cronjob", [])
    if cron:
        for p in ("p50", "p90", "p99", "max"):
            add(
                f"CronJob controller skew {p}, {n} CronJobs",
                fmt(values(cron, "skew", f"{p}_ms"), "ms"),
            )
        shown, _ = misses_duplicates(cron)
        add("CronJob controller misses, duplicates", shown)
        add(
            "kube-controller-manager CPU in the fire window (CronJob)",
            fmt(cpu_of(cron, "kube-controller-manager"), "s"),
        )
        add(
            "kube-controller-manager CPU until every run settled (CronJob)",
            fmt(cpu_of(cron, "kube-controller-manager", "cpu_until_settled"), "s"),
        )
        add("API server CPU in the fire window (CronJob)", fmt(cpu_of(cron, "kube-apiserver"), "s"))

    for name, label in (
        ("p99_vs_floor", "Nightshift p99 / floor p99 (best floor run)"),
        ("p99_vs_cronjob", "Nightshift p99 / CronJob controller p99 (best run)"),
    ):
        ratio = results.get("ratios", {}).get(name)
        if ratio:
            target = ratio["target_max"]
            add(label, fmt(ratio["measured"], "x"), f"≤ {target} x", ratio["met"])

    writes = TARGETS["api_writes_per_run"]
    if fire:
        measured = values(fire, "api", "operator_writes_per_run")
        add(
            "Nightshift API writes per successful run (operator)",
            fmt(measured),
            f"≤ {writes}",
            within(measured, writes),
        )
        add(
            "Nightshift API calls per successful run (operator)",
            fmt(values(fire, "api", "operator_total_per_run")),
        )
        measured = values(fire, "api", "audit_writes_per_run")
        if any(v is not None for v in measured):
            add(
                "Nightshift API writes per run (server audit log)",
                fmt(measured),
                f"≤ {writes}",
                within(measured, writes),
            )
            add(
                "Nightshift API requests per run (server audit log)",
                fmt(values(fire, "api", "audit_total_per_run")),
            )
    if cron:
        if any(v is not None for v in values(cron, "api", "audit_writes_per_run")):
            add(
                "CronJob controller API writes per run (audit log)",
                fmt(values(cron, "api", "audit_writes_per_run")),
            )
            add(
                "CronJob controller API requests per run (audit log)",
                fmt(values(cron, "api", "audit_total_per_run")),
            )
        add(
            "CronJob phase: Job and CronJob writes per run (API server, no Events)",
            fmt(values(cron, "api", "server_writes_per_run_without_events")),
        )

    if results.get("baseline"):
        add("RSS, no tasks", fmt([results["baseline"].get("VmRSS")], "MiB"))
    for key in ("big", "huge"):
        runs = results.get(key, [])
        if not runs:
            continue
        size = runs[0]["tasks"] - 1
        at_target = size >= 10000  # the targets are for 10,000 tasks
        rss_limit = TARGETS["rss_mib_at_10000"]
        rss = f"≤ {rss_limit} MiB at 10,000"
        for label, path in (
            (f"RSS at {size} tasks (VmRSS)", ("first_start", "VmRSS")),
            (f"peak RSS at {size} tasks (VmHWM)", ("first_start", "VmHWM")),
        ):
            measured = values(runs, *path)
            add(
                label, fmt(measured, "MiB"), rss, within(measured, rss_limit) if at_target else None
            )
        add(
            f"first start, {size} tasks: all loaded",
            fmt(values(runs, "first_start", "loaded_s"), "s"),
        )
        add(f"first start, {size} tasks: idle", fmt(values(runs, "first_start", "idle_s"), "s"))
        limit = TARGETS["first_fire_after_restart_s"]
        measured = values(runs, "restart", "first_fire_s")
        add(
            f"first fire after kill -9, {size} tasks",
            fmt(measured, "s"),
            f"≤ {limit} s at 10,000",
            within(measured, limit) if at_target else None,
        )
        add(f"all {size} loaded after restart", fmt(values(runs, "restart", "loaded_s"), "s"))
        add(f"RSS after restart, {size} tasks", fmt(values(runs, "restart", "VmRSS"), "MiB"))
        add(f"peak RSS after restart, {size} tasks", fmt(values(runs, "restart", "VmHWM"), "MiB"))
    for run in results.get("scale", []):
        where = f"{run['total_tasks']} tasks, {run['replicas']} replicas, {run['shards']} shards"
        limit = TARGETS["scale_rss_mib_per_replica"]
        for label, key in (("loaded", "load"), ("after the kill", "after_kill")):
            hwm = [r["VmHWM"] for r in run.get(key, {}).values()]
            add(
                f"scale ({where}): peak RSS per replica, {label}",
                fmt(hwm, "MiB"),
                f"≤ {limit} MiB",
                within(hwm, limit),
            )
        add(
            "scale: load time per replica",
            fmt([r["loaded_s"] for r in run.get("load", {}).values()], "s"),
        )
        skew = run.get("skew") or {}
        add(
            f"scale: p99 of {run['tasks']} due together (misses, duplicates)",
            f"{skew.get('p99_ms')} ms ({len(skew.get('misses') or [])}, {skew.get('duplicates')})",
        )
        kill = run.get("kill9") or {}
        add(
            "scale: kill -9: shards taken, first fire",
            f"{kill.get('shards_taken_s')} s, {kill.get('first_fire_s')} s",
            "≤ 15 s",
            within([kill.get("first_fire_s")], 15),
        )
        slots = run.get("slots") or {}
        add(
            "scale: kill -9 and 1 → 3 → 2: duplicates, lost slots",
            f"{slots.get('duplicates')}, {slots.get('lost_slots')}",
            "0, 0",
            slots.get("duplicates") == 0 and slots.get("lost_slots") == 0,
        )
    return rows


def cpu_of(runs: list[dict[str, Any]], process: str, window: str = "cpu_during_fire") -> list[Any]:
    return [(run.get(window) or {}).get("cpu_s", {}).get(process) for run in runs]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = " | ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*HEADER))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


# (phase key, label, colour) in the order the plot's legend lists them
PLOTTED = (
    ("floor", "floor (default client)", "tab:gray"),
    ("floor_raw", "floor (raw responses)", "tab:green"),
    ("fire", "Nightshift", "tab:blue"),
    ("cronjob", "CronJob controller", "tab:orange"),
    ("scale", "Nightshift, shards over replicas", "tab:purple"),
)


def plot(results: dict[str, Any], png: Path) -> bool:
    """Empirical CDFs of the fire skew (ms, log x) per phase and run, a vertical line at each p99;
    a task without a Job (a miss) keeps its curve under 1."""
    try:
        import matplotlib  # noqa: PLC0415 (optional: pip install -e ".[bench]")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        import matplotlib.ticker  # noqa: PLC0415
    except ImportError:
        say('no plot: matplotlib is not installed (pip install -c constraints.txt -e ".[bench]")')
        return False
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    styles = ("-", "--", ":", "-.")
    plotted = 0
    for key, label, colour in PLOTTED:
        for i, run in enumerate(results.get(key, []), 1):
            skew = run.get("skew") or {}
            skews = skew.get("skews_ms")
            if not skews:
                continue
            xs = [max(v, 0.1) for v in sorted(skews)]  # log axis: an early Job is drawn at 0.1 ms
            ys = [(k + 1) / run["tasks"] for k in range(len(xs))]
            style = styles[(i - 1) % len(styles)]
            name = label if len(results.get(key, [])) == 1 else f"{label}, run {i}"
            extra = f", {len(skew['misses'])} misses" if skew.get("misses") else ""
            ax.step(
                [xs[0], *xs],
                [0.0, *ys],
                where="post",
                color=colour,
                linestyle=style,
                label=f"{name}: p50 {skew['p50_ms']:g} ms, p99 {skew['p99_ms']:g} ms{extra}",
            )
            ax.axvline(skew["p99_ms"], color=colour, linestyle=style, linewidth=0.8, alpha=0.6)
            plotted += 1
    if not plotted:
        plt.close(fig)
        say("no plot: no skews in the results")
        return False
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    low, high = ax.get_xlim()
    # Under two decades there are too few powers of ten: label the minor ticks too.
    ax.xaxis.set_minor_formatter(plain if high / low < 100 else matplotlib.ticker.NullFormatter())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("fire skew: Job ADDED at the watcher - slot time (ms, log scale)")
    ax.set_ylabel("fraction of tasks with a Job")
    ax.axhline(0.99, color="black", linewidth=0.5, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    host = results.get("host", {})
    commit = (host.get("commit") or "?")[:12] + (
        "+dirty" if "dirty" in (host.get("commit") or "") else ""
    )
    ax.set_title(
        f"Fire skew, N = {results['args']['tasks']} due at the same minute; commit {commit}, "
        f"{results.get('started', '')[:10]}, {host.get('cpus')} CPUs\n"
        "(vertical lines: p99)",
        fontsize=10,
    )
    against = {"p99_vs_floor": "floor", "p99_vs_cronjob": "CronJob controller"}
    notes = [
        f"Nightshift p99 / {against.get(name, name)} p99: {fmt(r['measured'], 'x')} "
        f"(target ≤ {r['target_max']}: {'met' if r['met'] else 'not met'})"
        for name, r in results.get("ratios", {}).items()
    ]
    if notes:
        ax.text(
            0.01,
            0.97,
            "\n".join(notes),
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(out)


def git_commit() -> str | None:
    res = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "operator"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        (res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""))
        if res.returncode == 0
        else None
    )


def main(argv: list[str] | None = None) -> int:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        type=int,
        default=1000,
        help="tasks (and CronJobs, and floor Jobs) due at the same minute (default 1000)",
    )
    parser.add_argument(
        "--big",
        type=int,
        default=1000,
        help="idle tasks for the RSS and restart phase (default 1000)",
    )
    parser.add_argument(
        "--huge",
        type=int,
        default=0,
        help="also run the RSS and restart phase once at this many tasks (e.g. 10000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each phase (default 1: ~11 min in all on 2 cores; each run adds ~9 min)",
    )
    parser.add_argument(
        "--phases",
        default="floor,fire,cronjob,big",
        help="comma-separated subset of floor,fire,cronjob,big,scale (always run in this order; "
        "scale only when named)",
    )
    parser.add_argument(
        "--scale-tasks",
        type=int,
        default=50000,
        help="scale phase: tasks in all (default 50000; of them --tasks are due together)",
    )
    parser.add_argument(
        "--scale-replicas", type=int, default=4, help="scale phase: replicas (default 4)"
    )
    parser.add_argument(
        "--scale-shards", type=int, default=8, help="scale phase: shards (default 8)"
    )
    parser.add_argument(
        "--cluster-dir",
        help="reuse this cluster if healthy, else start one there (default: a temporary one)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results" / f"{today}-fire.json",
        help="the JSON; the plot goes next to it with the suffix .png "
        "(default bench/results/<UTC date>-fire.json)",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="JSON",
        help="only redraw the PNG of an earlier run's JSON (next to it) and exit",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the operator with this py-spy during each fire window and each big start "
        "(the profiler costs CPU: numbers from such a run are not comparable); implies --keep",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the operator (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (operator logs, audit log)"
    )
    args = parser.parse_args(argv)
    if args.replot:
        earlier = json.loads(args.replot.read_text())
        earlier.setdefault("ratios", ratios(earlier))
        done = plot(earlier, args.replot.with_suffix(".png"))
        print(args.replot.with_suffix(".png") if done else "no plot")
        return 0 if done else 1
    args.keep = args.keep or bool(args.py_spy)
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = phases - {"floor", "fire", "cronjob", "big", "scale"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")

    workdir = Path(tempfile.mkdtemp(prefix="nightshift-bench-"))
    cluster = Cluster(args.cluster_dir, workdir)
    results: dict[str, Any] = {
        "benchmark": "fire",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {
            "cpus": os.cpu_count(),
            "loadavg": loadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "commit": git_commit(),
        },
        "targets": TARGETS,
    }
    try:
        cluster.up()
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/scheduledtasks.nightshift.dev")
        results["cluster"] = {
            "dir": str(cluster.dir),
            "started_here": cluster.started,
            "audit_log": cluster.audit_log is not None,
            "kube_controller_manager": cluster.controller_manager(),
        }
        bench = Bench(args, cluster, workdir)
        # One phase at a time, never two together: they share the 2 cores.
        for run in range(1, args.repeat + 1):
            if "floor" in phases:
                results.setdefault("floor", []).append(bench.floor(run, raw=False))
                results.setdefault("floor_raw", []).append(bench.floor(run, raw=True))
                write(results, args.out)
            if "fire" in phases:
                results.setdefault("fire", []).append(bench.fire(run))
                write(results, args.out)
            if "cronjob" in phases:
                results.setdefault("cronjob", []).append(bench.cronjob(run))
                write(results, args.out)
        if "big" in phases:
            results["baseline"] = bench.baseline()
            for run in range(1, args.repeat + 1):
                results.setdefault("big", []).append(bench.big(args.big, run))
                write(results, args.out)
            if args.huge:
                results["huge"] = [bench.big(args.huge, 1)]
        if "scale" in phases:
            results["scale"] = [bench.scale()]
            write(results, args.out)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["ratios"] = ratios(results)
        results["table"] = table(results)
        write(results, args.out)
        png = args.out.with_suffix(".png")
        plotted = plot(results, png)
        print()
        print_table(results["table"])
        print(f"\nresults: {args.out}" + (f", plot: {png}" if plotted else ""))
        if args.keep:
            print(f"work directory (operator logs): {workdir}")
    finally:
        cluster.down()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the chaos tests: durations, a background sampler, a cuttable TCP proxy, etcd."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from support.chart import CHART, RBAC_KINDS
from support.cluster import CLUSTER_PY
from support.tasks import ts

GROUP, VERSION, PLURAL = "nightshift.dev", "v1alpha1", "scheduledtasks"


def chaos_seconds() -> float:
    """How long each fault loop runs: $NIGHTSHIFT_CHAOS_SECONDS (default 600, the full form)."""
    return float(os.environ.get("NIGHTSHIFT_CHAOS_SECONDS", "600"))


def budget(extra: float) -> int:
    """A pytest-timeout budget for a test whose fault loop lasts chaos_seconds()."""
    return int(chaos_seconds() * 1.5 + extra)


def now() -> datetime:
    return datetime.now(UTC)


JobKey = tuple[str, str, int]  # (task, run, attempt)


def job_key(job: dict[str, Any]) -> JobKey:
    meta = job["metadata"]
    return (
        meta["labels"]["nightshift.dev/task"],
        meta["annotations"]["nightshift.dev/run"],
        int(meta["annotations"]["nightshift.dev/attempt"]),
    )


def job_slot(job: dict[str, Any]) -> datetime | None:
    text = job["metadata"]["annotations"].get("nightshift.dev/scheduled-at")
    return ts(text).astimezone(UTC) if text else None


def job_finished(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return None


def interval_slots(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    """Epoch-aligned slots of an interval schedule in [first, last]."""
    seconds = step.total_seconds()
    start = datetime.fromtimestamp(-(-first.timestamp() // seconds) * seconds, UTC)
    out = []
    slot = start
    while slot <= last:
        out.append(slot)
        slot += step
    return out


def first_slot_after(created: datetime, step: timedelta) -> datetime:
    """The first slot strictly after the task's creationTimestamp (the operator's cursor)."""
    seconds = step.total_seconds()
    return datetime.fromtimestamp((created.timestamp() // seconds + 1) * seconds, UTC)


# --- the sampler -----------------------------------------------------------------------------


@dataclass
class Regression:
    task: str
    before: str | None
    after: str | None
    at: datetime


@dataclass
class Sampler:
    """Polls the API in a thread: every task's lastScheduleTime (is it monotonic?) and every Job
    ever seen (by uid), so Jobs pruned by history or garbage-collected are still counted."""

    kubeconfig: Path
    namespace: str
    interval: float = 0.5
    jobs_every: float = 1.0
    samples: int = 0
    errors: int = 0
    last_error: str = ""
    last_schedule: dict[str, str | None] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.retries = 0  # a failed sample is counted, not retried
        self._api_client = k8s.ApiClient(configuration)
        self._custom = k8s.CustomObjectsApi(self._api_client)
        self._batch = k8s.BatchV1Api(self._api_client)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._api_client.close()

    def _get(self, call: Any, *args: Any) -> dict[str, Any]:
        response = call(*args, _preload_content=False, _request_timeout=10)
        data: dict[str, Any] = json.loads(response.data)
        return data

    def _run(self) -> None:
        next_jobs = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample_tasks()
            if started >= next_jobs:
                self.sample_jobs()
                next_jobs = started + self.jobs_every
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample_tasks(self) -> None:
        try:
            items = self._get(
                self._custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL
            )["items"]
        except Exception as error:  # the API server may be down on purpose
            self.errors += 1
            self.last_error = repr(error)
            return
        with self._lock:
            self.samples += 1
            for task in items:
                name = task["metadata"]["name"]
                self.tasks[name] = task
                value = (task.get("status") or {}).get("lastScheduleTime")
                before = self.last_schedule.get(name)
                if before is not None and (value is None or ts(value) < ts(before)):
                    self.regressions.append(Regression(name, before, value, now()))
                if value is not None or before is None:
                    self.last_schedule[name] = value

    def sample_jobs(self) -> None:
        try:
            items = self._get(self._batch.list_namespaced_job, self.namespace)["items"]
        except Exception as error:
            self.errors += 1
            self.last_error = repr(error)
            return
        with self._lock:
            for job in items:
                uid = job["metadata"]["uid"]
                self.jobs[uid] = job
                self.first_seen.setdefault(uid, now())

    def all_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.jobs.values())


def duplicates(jobs: Iterable[dict[str, Any]]) -> dict[JobKey, list[str]]:
    """(task, run, attempt) -> Job names, for keys that more than one Job (uid) carried."""
    seen: dict[JobKey, list[str]] = defaultdict(list)
    for job in jobs:
        seen[job_key(job)].append(f"{job['metadata']['name']} ({job['metadata']['uid'][:8]})")
    return {k: v for k, v in seen.items() if len(v) > 1}


def missing_slots(
    jobs: Iterable[dict[str, Any]],
    tasks: dict[str, datetime],
    step: timedelta,
    until: datetime,
) -> dict[str, list[str]]:
    """task -> slots in (creation, until] that have no attempt-1 Job."""
    have: dict[str, set[datetime]] = defaultdict(set)
    for job in jobs:
        task, _, attempt = job_key(job)
        slot = job_slot(job)
        if attempt == 1 and slot is not None:
            have[task].add(slot)
    out: dict[str, list[str]] = {}
    for task, created in tasks.items():
        expected = interval_slots(first_slot_after(created, step), until, step)
        lost = [s.strftime("%H:%M:%S") for s in expected if s not in have[task]]
        if lost:
            out[task] = lost
    return out


def explain_slots(
    lost: dict[str, list[str]], tasks: dict[str, dict[str, Any]], jobs: list[dict[str, Any]]
) -> list[str]:
    """For a failure message: what the task's status and its nearest Jobs say about lost slots."""
    lines = []
    for name, slots in lost.items():
        body = tasks.get(name) or {}
        runs = (body.get("status") or {}).get("runs") or []
        created = body.get("metadata", {}).get("creationTimestamp")
        firsts = sorted(
            (job_slot(j), j["metadata"]["creationTimestamp"])
            for j in jobs
            if job_key(j)[0] == name and job_slot(j) is not None
        )[:3]
        for slot in slots[:3]:
            said = [
                (r["result"], r.get("message", "")[:60])
                for r in runs
                if (r.get("scheduledAt") or "").endswith(f"T{slot}Z")
            ]
            lines.append(
                f"{name} {slot}: status says {said or 'nothing'}; task created {created}; "
                f"first Jobs (slot, created) {[(s.strftime('%H:%M:%S'), c) for s, c in firsts]}"
            )
    return lines


# --- a TCP proxy that can cut the operator off ------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target>. ``cut()`` drops every connection and
    refuses new ones until ``restore()``: a network partition between one client and the API
    server (TLS passes through untouched; the server certificate names 127.0.0.1)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="chaos-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                _close(downstream)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                self.refused += 1
                _close(downstream)
                continue
            self.accepted += 1
            with self._lock:
                self._sockets.update((downstream, upstream))
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            doomed = list(self._sockets)
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        _close(self._listener)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def kubeconfig_via(source: Path, port: int, target: Path) -> Path:
    """A copy of ``source`` whose server is https://127.0.0.1:<port> (the cluster's kubeconfig
    is JSON, which is also valid YAML)."""
    data = json.loads(source.read_text())
    for entry in data["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    target.write_text(json.dumps(data))
    return target


# --- the control plane -------------------------------------------------------------------------


def cluster_component(state_dir: Path, command: str, name: str) -> float:
    """``cluster.py stop-component|start-component NAME``; returns how long it took."""
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, str(CLUSTER_PY), f"{command}-component", name],
        capture_output=True,
        text=True,
        env={**os.environ, "NIGHTSHIFT_CLUSTER_DIR": str(state_dir)},
        timeout=180,
        check=False,
    )
    assert res.returncode == 0, f"cluster.py {command}-component {name} failed:\n{res.stderr}"
    return time.monotonic() - started


# --- etcd (its gRPC gateway: etcdctl is not built) --------------------------------------------


def _etcd(state_dir: Path, path: str, body: dict[str, Any]) -> dict[str, Any]:
    port = json.loads((state_dir / "state.json").read_text())["ports"]["etcd"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def etcd_revision(state_dir: Path) -> int:
    header = _etcd(state_dir, "/v3/kv/range", {"key": "AA=="})["header"]
    return int(header["revision"])


def etcd_compact(state_dir: Path) -> int:
    """Compact etcd's history up to its current revision; returns that revision."""
    revision = etcd_revision(state_dir)
    _etcd(state_dir, "/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


# --- small things ------------------------------------------------------------------------------


def traceback_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if "Traceback" in line)


# --- the operator as the chart's ServiceAccount (faults aimed at its identity) -----------------


@dataclass
class Identity:
    """The chart's ServiceAccount and RBAC for one watched namespace, and a token kubeconfig.

    APF and RBAC faults need an operator that is not ``system:masters`` (which both exempt).
    """

    name: str  # the ServiceAccount
    namespace: str
    kubeconfig: Path
    objects: list[dict[str, Any]]

    @property
    def bindings(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def _kubectl(cluster: Any, *args: str, input: str | None = None, check: bool = True) -> str:
    result: subprocess.CompletedProcess[str] = cluster.kubectl(*args, input=input, check=check)
    return result.stdout


def _objects(items: list[dict[str, Any]]) -> str:
    return json.dumps({"kind": "List", "apiVersion": "v1", "items": items})


def chart_identity(cluster: Any, namespace: str, directory: Path) -> Identity:
    """Render the chart (release ``chaos`` in ``namespace``, watching it), apply its RBAC, and
    write a kubeconfig with a token of its ServiceAccount."""
    import yaml

    rendered = subprocess.run(
        [str(cluster.bin_dir / "helm"), "template", "chaos", str(CHART),
         "--namespace", namespace, "--set", f"watchNamespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True, env=cluster.env,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in RBAC_KINDS]
    _kubectl(cluster, "apply", "-f", "-", input=_objects(docs))
    sa = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    token = _kubectl(cluster, "create", "token", sa, "-n", namespace, "--duration=2h").strip()
    admin = json.loads(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": sa}}],
        "current-context": "sa",
    }
    path = directory / f"{sa}.kubeconfig"
    path.write_text(json.dumps(config))
    return Identity(sa, namespace, path, docs)


def remove_objects(cluster: Any, objects: list[dict[str, Any]]) -> None:
    _kubectl(cluster, "delete", "--ignore-not-found", "--wait=false", "-f", "-",
             input=_objects(objects), check=False)  # fmt: skip


def apply_objects(cluster: Any, objects: list[dict[str, Any]]) -> None:
    _kubectl(cluster, "apply", "-f", "-", input=_objects(objects))


# --- API Priority and Fairness that rejects the operator's requests ----------------------------


class _SlowAdmission(threading.Thread):
    """An HTTPS admission webhook on 127.0.0.1 that allows everything after ``delay`` s."""

    def __init__(self, directory: Path, delay: float) -> None:
        super().__init__(name="chaos-slow-webhook", daemon=True)
        import http.server
        import ssl

        self.cert, self.key = directory / "slow.crt", directory / "slow.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-keyout", str(self.key), "-out", str(self.cert),
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        stopping = self.stopping = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stopping.wait(delay)
                body = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": True},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def apf_rejecting(cluster: Any, identity: Identity, directory: Path) -> Iterator[dict[str, int]]:
    """While the block runs, API Priority and Fairness rejects the operator's requests (429).

    Its FlowSchema sends every request of ``identity`` to a priority level with no nominal
    concurrency whose limitResponse is Reject. Such a level still admits a request when it has
    none executing, so a blocker (a second ServiceAccount in the same FlowSchema) keeps one
    request executing all the time: dry-run ConfigMap creates held by a slow admission webhook.
    Yields counters: ``blocked`` (blocker requests admitted), ``rejected`` (filled in at the end
    from the API server's APF dump: requests the level rejected).
    """
    name = f"chaos-reject-{identity.namespace}"[:63]
    blocker = "chaos-blocker"
    _kubectl(cluster, "create", "serviceaccount", blocker, "-n", identity.namespace)
    grant = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": blocker, "namespace": identity.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": blocker,
                      "namespace": identity.namespace}],
    }  # fmt: skip
    webhook = _SlowAdmission(directory, delay=20.0)
    webhook.start()
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    subjects = [
        {"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": identity.namespace}}
        for n in (identity.name, blocker)
    ]
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "matchingPrecedence": 100,  # before every built-in schema but exempt (1)
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": subjects,
                    "resourceRules": [
                        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"],
                         "clusterScope": True, "namespaces": ["*"]}
                    ],
                    "nonResourceRules": [{"nonResourceURLs": ["*"], "verbs": ["*"]}],
                }
            ],
        },
    }  # fmt: skip
    hook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "slow.chaos.nightshift.dev",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{webhook.port}/",
                    "caBundle": base64.b64encode(webhook.cert.read_bytes()).decode(),
                },
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                           "resources": ["configmaps"], "scope": "Namespaced"}],
                "objectSelector": {"matchLabels": {"chaos.nightshift.dev/slow": "true"}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 25,
                "failurePolicy": "Ignore",
            }
        ],
    }  # fmt: skip
    made = [grant, hook]
    apply_objects(cluster, made)
    token = _kubectl(cluster, "create", "token", blocker, "-n", identity.namespace).strip()
    server = json.loads(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    ca = base64.b64decode(server["certificate-authority-data"])
    ca_file = directory / "blocker-ca.crt"
    ca_file.write_bytes(ca)
    counts = {"blocked": 0, "rejected": 0}
    stop = threading.Event()

    def block() -> None:
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
        url = (f"{server['server']}/api/v1/namespaces/{identity.namespace}/configmaps"
               "?dryRun=All")  # fmt: skip
        body = json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"generateName": "blocker-",
                          "labels": {"chaos.nightshift.dev/slow": "true"}}}
        ).encode()  # fmt: skip
        while not stop.is_set():
            request = urllib.request.Request(
                url, data=body, method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=40, context=context):
                    counts["blocked"] += 1
            except Exception:  # 429 while another blocker holds the seat: try again at once
                stop.wait(0.005)

    threads = [threading.Thread(target=block, daemon=True) for _ in range(3)]
    try:
        # The blockers first: the level must be busy before the operator is sent to it.
        apply_objects(cluster, [level])
        blocker_schema = json.loads(json.dumps(schema))
        blocker_schema["spec"]["rules"][0]["subjects"] = subjects[1:]
        apply_objects(cluster, [blocker_schema])
        for thread in threads:
            thread.start()
        time.sleep(2)
        apply_objects(cluster, [schema])
        yield counts
    finally:
        dump = _kubectl(cluster, "get", "--raw", APF_DUMP, check=False)
        for line in dump.splitlines():
            cells = [c.strip() for c in line.split(",")]
            if cells and cells[0] == name and len(cells) > 7:
                counts["rejected"] = int(cells[7])
        remove_objects(cluster, [schema, level])
        stop.set()
        webhook.close()
        for thread in threads:
            thread.join(timeout=45)
        remove_objects(cluster, made)
        _kubectl(cluster, "delete", "serviceaccount", blocker, "-n", identity.namespace,
                 "--ignore-not-found", check=False)  # fmt: skip


APF_DUMP = "/debug/api_priority_and_fairness/dump_priority_levels"


# --- processes and connections ------------------------------------------------------------------


def component_pid(state_dir: Path, component: str) -> int:
    return int((state_dir / "pids" / f"{component}.pid").read_text().split()[0])


def component_alive(state_dir: Path, component: str) -> bool:
    """Whether the process recorded for ``component`` still runs (and is not a zombie)."""
    try:
        stat = Path(f"/proc/{component_pid(state_dir, component)}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP the process for the block; SIGCONT afterwards, whatever happened."""
    import signal

    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def established(pid: int, port: int) -> list[int]:
    """Local ports of ``pid``'s established TCP connections to 127.0.0.1:``port``."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"dport = :{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    ports = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[2]  # Recv-Q Send-Q Local Peer Process (no State column)
        ports.append(int(local.rsplit(":", 1)[1]))
    return sorted(ports)


NFT_TABLE = "nightshift_chaos"


@contextlib.contextmanager
def connections_dropped(local_ports: list[int], server_port: int) -> Iterator[None]:
    """Silently drop every packet of these TCP flows (127.0.0.1:<p> <-> 127.0.0.1:<server>), as a
    NAT or load balancer that forgot them would; new connections are untouched. The nftables
    table is removed afterwards, whatever happened."""
    ports = ", ".join(str(p) for p in local_ports)
    ruleset = f"""table inet {NFT_TABLE} {{
    chain out {{
        type filter hook output priority -150; policy accept;
        tcp sport {{ {ports} }} tcp dport {server_port} drop
        tcp sport {server_port} tcp dport {{ {ports} }} drop
    }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)

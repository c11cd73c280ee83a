"""Helpers for the chaos tests: durations, a background sampler, a cuttable TCP proxy, etcd."""

from __future__ import annotations

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

GROUP, VERSION, PLURAL = "nightshift.dev", "v1alpha1", "scheduledtasks"


def chaos_seconds() -> float:
    """How long each fault loop runs: $NIGHTSHIFT_CHAOS_SECONDS (default 600, the full form)."""
    return float(os.environ.get("NIGHTSHIFT_CHAOS_SECONDS", "600"))


def budget(extra: float) -> int:
    """A pytest-timeout budget for a test whose fault loop lasts chaos_seconds()."""
    return int(chaos_seconds() * 1.5 + extra)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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

CLUSTER_PY = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "cluster.py"


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

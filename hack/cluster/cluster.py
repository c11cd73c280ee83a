#!/usr/bin/env python3
"""Local Kubernetes control plane for Nightshift: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (fake nodes and pods), run as plain processes on 127.0.0.1.

    hack/cluster/cluster.py up       start (or confirm) the cluster, create two fake nodes
    hack/cluster/cluster.py up --node=real   ... and a real node beside them (realnode.py)
    hack/cluster/cluster.py down     stop everything this state directory started
    hack/cluster/cluster.py status   show the components; exit 0 only when all are healthy
    hack/cluster/cluster.py env      print export lines: eval "$(hack/cluster/cluster.py env)"
    hack/cluster/cluster.py stop-component NAME    stop one component (e.g. kube-apiserver)
    hack/cluster/cluster.py start-component NAME   start it again, same command line and ports

State lives in $NIGHTSHIFT_CLUSTER_DIR, default <repo>/.cluster: kubeconfig (admin), pki/,
logs/<component>.log, pids/<component>.pid, state.json. Binaries come from
hack/build-binaries.sh (cached outside the repository).

Standard library only, so it runs with any Python >= 3.11 (the project venv included).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import realnode

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_SCRIPT = REPO / "hack" / "build-binaries.sh"
BUILD_NODE_SCRIPT = REPO / "hack" / "build-node.sh"
BUILD_IMAGES_SCRIPT = REPO / "hack" / "build-images.sh"
STAGES_FILE = HERE / "kwok-stages.yaml"


def config_hash() -> str:
    """What decides how the components are started (this script, the node's, KWOK's stages): a
    running cluster started from other files is restarted by ``up``."""
    digest = hashlib.sha256()
    for path in (Path(__file__).resolve(), HERE / "realnode.py", STAGES_FILE):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# Start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# With --node=real: started before etcd (containerd) and after kwok (kubelet, kube-proxy).
NODE_COMPONENTS = realnode.COMPONENTS
ALL_COMPONENTS = COMPONENTS + NODE_COMPONENTS
SERVICE_CIDR = "10.0.0.0/24"
# Pod IPs handed out by KWOK. Kept apart from the service range so a pod IP never equals a
# ClusterIP.
POD_CIDR = "10.244.0.0/16"
NODES = ("kwok-node-0", "kwok-node-1")
LOG_TAIL_LINES = 20

# component -> its key in state.json's "ports"
PORT_NAMES = {
    "etcd": "etcd",
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "controller-manager",
    "kube-scheduler": "scheduler",
    "kwok": "kwok",
    "containerd": "",
    "kubelet": "kubelet-healthz",
    "kube-proxy": "kube-proxy-healthz",
}

TIMEOUTS = {  # seconds until a component must be healthy
    "etcd": 30.0,
    "kube-apiserver": 90.0,
    "kube-controller-manager": 60.0,
    "kube-scheduler": 60.0,
    "kwok": 60.0,
    "containerd": 30.0,
    "kubelet": 90.0,
    "kube-proxy": 60.0,
}


def components(data: dict[str, Any]) -> tuple[str, ...]:
    """The components of the cluster that `data` (state.json) describes."""
    return ALL_COMPONENTS if data.get("node") == "real" else COMPONENTS


class ClusterError(Exception):
    """A component failed; `component` names it so the log can be shown."""

    def __init__(self, component: str | None, message: str) -> None:
        super().__init__(message)
        self.component = component


def log(msg: str) -> None:
    err(f"cluster: {msg}")


def err(text: str) -> None:
    # Progress must never be the reason a start is abandoned half-way (e.g. `up | head`).
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# State directory


@dataclass
class State:
    root: Path

    @classmethod
    def from_env(cls) -> State:
        root = os.environ.get("NIGHTSHIFT_CLUSTER_DIR") or str(REPO / ".cluster")
        return cls(Path(root).resolve())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def node(self) -> realnode.Paths:
        return realnode.Paths(self.root / "node")

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / "kubeconfigs" / f"{component}.kubeconfig"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.pids / f"{component}.pid"

    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialises up/down on one state directory (parallel test sessions, two shells)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Processes


def _proc_start_time(pid: int) -> str | None:
    """Start time of a live (non-zombie) process from /proc, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: the process is gone
        return None
    return fields[19]  # field 22 of stat; fields[0] is field 3


def read_pid(state: State, component: str) -> int | None:
    """The pid recorded for a component if that very process is still alive.

    Pid files hold "<pid> <start time>" so a recycled pid is never mistaken for ours.
    """
    try:
        pid_s, start = state.pid_file(component).read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if _proc_start_time(pid) == start else None


def spawn(
    state: State,
    component: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    extra_args: bool = True,
) -> subprocess.Popen[bytes]:
    extra = os.environ.get("NIGHTSHIFT_EXTRA_ARGS_" + component.upper().replace("-", "_"))
    if extra and extra_args:
        argv = argv + shlex.split(extra)
    logfile = state.log_file(component)
    with open(logfile, "wb") as out:
        out.write(("# " + shlex.join(argv) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state.root,
            env=env,
            start_new_session=True,  # own process group: `down` signals the whole group
        )
    start = _proc_start_time(proc.pid)
    state.pid_file(component).write_text(f"{proc.pid} {start}\n")
    return proc


def component_env(state: State, component: str) -> dict[str, str]:
    """The environment a component runs with: ours without KUBECONFIG (each gets a flag)."""
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    if component == "kwok":
        # Keep kwok away from ~/.kwok/kwok.yaml, which it would otherwise load as well.
        env["KWOK_WORKDIR"] = str(state.run / "kwok")
    return env


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _proc_start_time(p) is not None]
    return alive


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_components(state: State, components: tuple[str, ...] = ALL_COMPONENTS) -> None:
    """SIGTERM, then SIGKILL after a grace period, in reverse start order (etcd last).

    The real node's processes stop like any other: its containers keep running, as they would
    when a kubelet or containerd restarts. `realnode.teardown` removes them.
    """
    waves = [
        ("kube-proxy", "kubelet"),
        ("containerd",),
        ("kwok", "kube-scheduler", "kube-controller-manager"),
        ("kube-apiserver",),
        ("etcd",),
    ]
    for wave in waves:
        pids = {c: read_pid(state, c) for c in wave if c in components}
        live = {c: p for c, p in pids.items() if p is not None}
        for pid in live.values():
            _signal_group(pid, signal.SIGTERM)
        left = _wait_gone(list(live.values()), timeout=10.0)
        for pid in left:
            name = next(c for c, p in live.items() if p == pid)
            log(f"{name} (pid {pid}) ignored SIGTERM for 10 s; sending SIGKILL")
            _signal_group(pid, signal.SIGKILL)
        if _wait_gone(left, timeout=5.0):
            raise ClusterError(None, f"processes {left} survived SIGKILL")
        for c in wave:
            if c in components:
                state.pid_file(c).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Certificates (openssl CLI; EC P-256 keys are quick to generate)

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {sans}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
[kubelet]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {kubelet_sans}
"""

SERVER_SANS = [
    "IP:127.0.0.1",
    "IP:10.0.0.1",  # first address of SERVICE_CIDR: the `kubernetes` Service
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    f"IP:{realnode.GATEWAY}",  # the real node's pods reach the API server at the bridge address
]
KUBELET_SANS = [f"IP:{realnode.GATEWAY}", f"DNS:{realnode.NODE_NAME}"]

# name -> (subject, signing CA, extension section)
CERTS = {
    "apiserver": ("/CN=kube-apiserver", "ca", "server"),
    "admin": ("/O=system:masters/CN=nightshift-admin", "ca", "client"),
    "kube-controller-manager": ("/CN=system:kube-controller-manager", "ca", "client"),
    "kube-scheduler": ("/CN=system:kube-scheduler", "ca", "client"),
    "kwok": ("/O=system:masters/CN=kwok", "ca", "client"),
    # Aggregation layer: the apiserver's identity towards aggregated API servers.
    "front-proxy-client": ("/CN=front-proxy-client", "front-proxy-ca", "client"),
    # The real node (used with --node=real): the kubelet's serving and client certificates
    # (the Node authorizer knows it by the system:node: name), kube-proxy's (bound to
    # system:node-proxier by the bootstrap RBAC), and the API server's towards the kubelet
    # (logs, exec).
    "kubelet": (f"/CN={realnode.NODE_NAME}", "ca", "kubelet"),
    "node": (f"/O=system:nodes/CN=system:node:{realnode.NODE_NAME}", "ca", "client"),
    "kube-proxy": ("/CN=system:kube-proxy", "ca", "client"),
    "apiserver-kubelet-client": (
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "ca",
        "client",
    ),
}


def _openssl(*args: str | Path) -> None:
    res = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ClusterError(None, f"openssl {' '.join(map(str, args))} failed:\n{res.stderr}")


def _genkey(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    path.chmod(0o600)


def generate_pki(pki: Path) -> None:
    if (pki / ".complete").exists() and all((pki / f"{name}.crt").exists() for name in CERTS):
        return
    if shutil.which("openssl") is None:
        raise ClusterError(None, "the openssl command is needed to generate certificates")
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    cnf = pki / "openssl.cnf"
    cnf.write_text(
        OPENSSL_CNF.format(sans=", ".join(SERVER_SANS), kubelet_sans=", ".join(KUBELET_SANS))
    )
    days = "3650"
    for ca in ("ca", "front-proxy-ca"):
        _genkey(pki / f"{ca}.key")
        _openssl(
            "req", "-x509", "-new", "-config", cnf, "-extensions", "ca", "-key", pki / f"{ca}.key",
            "-subj", f"/CN=nightshift-{ca}", "-days", days, "-out", pki / f"{ca}.crt",
        )  # fmt: skip
    for name, (subject, ca, section) in CERTS.items():
        key, csr, crt = (pki / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _genkey(key)
        _openssl("req", "-new", "-config", cnf, "-key", key, "-subj", subject, "-out", csr)
        _openssl(
            "x509", "-req", "-in", csr, "-CA", pki / f"{ca}.crt", "-CAkey", pki / f"{ca}.key",
            "-set_serial", str(secrets.randbits(63)), "-days", days,
            "-extfile", cnf, "-extensions", section, "-out", crt,
        )  # fmt: skip
        csr.unlink()
    # Service-account token signing key pair.
    _genkey(pki / "sa.key")
    _openssl("pkey", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub")
    (pki / ".complete").touch()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """A self-contained kubeconfig (certificates embedded), written as JSON (valid YAML)."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "nightshift",
                "cluster": {"server": server, "certificate-authority-data": _b64(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki / f"{user}.crt"),
                    "client-key-data": _b64(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "nightshift", "context": {"cluster": "nightshift", "user": user}}],
        "current-context": "nightshift",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Talking to the components


def free_ports(names: list[str]) -> dict[str, int]:
    """Distinct free loopback ports (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in names:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return {n: s.getsockname()[1] for n, s in zip(names, socks, strict=True)}
    finally:
        for s in socks:
            s.close()


def _get(
    port: int, path: str, ctx: ssl.SSLContext | None, timeout: float = 2.0
) -> tuple[int, bytes]:
    """GET http(s)://127.0.0.1:port/path; (0, b"") when the connection fails."""
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def _insecure_ctx() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with a self-signed certificate.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Api:
    """Minimal admin client for the apiserver (JSON over HTTPS, client certificate)."""

    port: int
    pki: Path
    ctx: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self.ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=self.ctx)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return 0, str(exc)
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def ready(self) -> bool:
        return _get(self.port, "/readyz", self.ctx)[0] == 200


def node_manifest(name: str) -> dict[str, Any]:
    resources = {"cpu": "1000", "memory": "4Ti", "pods": "10000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
            },
        },
        # No taints: ordinary pods (the operator's Jobs) must schedule here.
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def nodes_ready(api: Api) -> tuple[bool, str]:
    """All our nodes Ready and free of the not-ready taint the node controller adds at create."""
    status, body = api.request("GET", "/api/v1/nodes")
    if status != 200:
        return False, f"listing nodes: HTTP {status}"
    by_name = {n["metadata"]["name"]: n for n in body.get("items", [])}
    for name in NODES:
        node = by_name.get(name)
        if node is None:
            return False, f"node {name} missing"
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        if conds.get("Ready") != "True":
            return False, f"node {name} not Ready"
        taints = [t["key"] for t in node.get("spec", {}).get("taints", []) or []]
        if "node.kubernetes.io/not-ready" in taints:
            return False, f"node {name} still tainted not-ready"
    return True, "nodes Ready"


# --------------------------------------------------------------------------------------------
# Commands


def bin_dir_from_build() -> Path:
    res = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise ClusterError(None, f"{BUILD_SCRIPT} failed (exit {res.returncode})")
    path = Path(lines[-1])
    for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        if not os.access(path / b, os.X_OK):
            raise ClusterError(None, f"{path / b} is missing; rerun {BUILD_SCRIPT}")
    return path


def _script_output(script: Path) -> list[str]:
    res = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise ClusterError(None, f"{script} failed (exit {res.returncode})")
    return lines


def node_bin_dir_from_build() -> Path:
    return Path(_script_output(BUILD_NODE_SCRIPT)[-1])


def images_from_build() -> list[tuple[str, Path]]:
    """(reference, docker-archive) of every image `make images` builds."""
    pairs = [line.split() for line in _script_output(BUILD_IMAGES_SCRIPT)]
    return [(ref, Path(archive)) for ref, archive in pairs]


def health(state: State, data: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """component -> (healthy, detail), from pid files and the health endpoints."""
    ports = data.get("ports", {})
    out: dict[str, tuple[bool, str]] = {}
    pki = state.pki
    for c in components(data):
        pid = read_pid(state, c)
        if pid is None:
            out[c] = (False, "not running")
            continue
        ok = False
        if c == "etcd":
            code, body = _get(ports["etcd"], "/health", None)
            ok = code == 200 and b'"true"' in body
        elif c == "kube-apiserver":
            ok = (pki / "admin.crt").exists() and Api(ports["apiserver"], pki).ready()
        elif c == "kube-controller-manager":
            ok = _get(ports["controller-manager"], "/healthz", _insecure_ctx())[0] == 200
        elif c == "kube-scheduler":
            ok = _get(ports["scheduler"], "/healthz", _insecure_ctx())[0] == 200
        elif c == "kwok":
            ok = _get(ports["kwok"], "/healthz", None)[0] == 200
        elif c == "containerd":
            ok = realnode.containerd_ready(Path(data["node_bin_dir"]))
            out[c] = (
                ok,
                f"pid {pid}, {realnode.CONTAINERD_SOCKET}, {'healthy' if ok else 'UNHEALTHY'}",
            )
            continue
        elif c in ("kubelet", "kube-proxy"):
            ok = _get(ports[PORT_NAMES[c]], "/healthz", None)[0] == 200
        port = ports[PORT_NAMES[c]]
        out[c] = (ok, f"pid {pid}, 127.0.0.1:{port}, {'healthy' if ok else 'UNHEALTHY'}")
    return out


def tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"  (cannot read: {exc})"
    return "\n".join("  " + line for line in lines[-n:])


def wait_for(
    component: str,
    procs: dict[str, subprocess.Popen[bytes]],
    check: Callable[[], tuple[bool, str]],
    timeout: float,
    blame: dict[str, str] | None = None,
) -> None:
    """Poll `check` until it passes; fail naming the component whose process died or timed out.

    `blame` maps the processes that must stay alive meanwhile to the component to blame.
    """
    deadline = time.monotonic() + timeout
    watch = blame or {component: component}
    detail = ""
    while True:
        for name in watch:
            rc = procs[name].poll()
            if rc is not None:
                raise ClusterError(name, f"{name} exited with status {rc}")
        ok, detail = check()
        if ok:
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                component, f"{component} not healthy after {timeout:.0f} s: {detail}"
            )
        time.sleep(0.1)


@dataclass(frozen=True)
class NodeBuild:
    """What the real node runs: its binary directory and the images loaded into containerd."""

    bin_dir: Path
    images: list[tuple[str, Path]]


def start(state: State, bin_dir: Path, node: NodeBuild | None = None) -> None:
    t0 = time.monotonic()

    def took() -> str:
        return f"{time.monotonic() - t0:.1f} s"

    for d in (state.logs, state.pids, state.run):
        d.mkdir(parents=True, exist_ok=True)
    generate_pki(state.pki)
    pki = state.pki
    names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
    if node:
        names += ["kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics"]
    ports = free_ports(names)
    server = f"https://127.0.0.1:{ports['apiserver']}"
    write_kubeconfig(state.kubeconfig, server, pki, "admin")
    for user in ("kube-controller-manager", "kube-scheduler", "kwok"):
        write_kubeconfig(state.component_kubeconfig(user), server, pki, user)
    data: dict[str, Any] = {
        "bin_dir": str(bin_dir),
        "ports": ports,
        "server": server,
        "config": config_hash(),
    }
    if node:
        data |= {"node": "real", "node_bin_dir": str(node.bin_dir)}
        write_kubeconfig(state.component_kubeconfig("kubelet"), server, pki, "node")
        write_kubeconfig(state.component_kubeconfig("kube-proxy"), server, pki, "kube-proxy")
    state.state_file.write_text(json.dumps(data, indent=2) + "\n")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = component_env(state, "kube-apiserver")  # the same for every component but kwok

    importer: threading.Thread | None = None
    import_error: list[BaseException] = []
    if node:
        # containerd first: the images load while the control plane starts.
        realnode.save_machine(state.node)
        realnode.setup_host(state.node, ports["apiserver"])
        realnode.write_configs(
            state.node,
            node_bin=node.bin_dir,
            pki=pki,
            kubeconfigs=state.component_kubeconfig("kubelet").parent,
            ports=ports,
        )
        node_env = realnode.containerd_env(node.bin_dir)
        argv = realnode.containerd_argv(state.node, node.bin_dir)
        procs["containerd"] = spawn(state, "containerd", argv, node_env)
        wait_for(
            "containerd",
            procs,
            lambda: (realnode.containerd_ready(node.bin_dir), "not answering on its socket"),
            TIMEOUTS["containerd"],
        )
        log(f"containerd ready on {realnode.CONTAINERD_SOCKET} ({took()})")

        def load_images() -> None:
            try:
                realnode.import_images(node.bin_dir, node.images)
            except BaseException as exc:  # reported by the main thread
                import_error.append(exc)

        importer = threading.Thread(target=load_images, name="import-images", daemon=True)
        importer.start()

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    shutil.rmtree(state.etcd_data, ignore_errors=True)
    argv = [
        str(bin_dir / "etcd"),
        "--name=nightshift",
        f"--data-dir={state.etcd_data}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=nightshift={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]
    procs["etcd"] = spawn(state, "etcd", argv, env)

    def etcd_ok() -> tuple[bool, str]:
        code, body = _get(ports["etcd"], "/health", None)
        return code == 200 and b'"true"' in body, f"/health HTTP {code}"

    wait_for("etcd", procs, etcd_ok, TIMEOUTS["etcd"])
    log(f"etcd ready on {etcd_url} ({took()})")

    argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={state.run / 'kube-apiserver'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--allow-privileged=true",
        # Aggregation layer, as kubeadm configures it.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--profiling=false",
        "--feature-gates=ShardedListAndWatch=true",  # shardSelector lists and watches (alpha, 1.36)
        # As OpenShift runs it (beside the default plugins): setting blockOwnerDeletion on an
        # ownerReference needs `update` on the owner's finalizers, which the operator's Jobs do.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
    ]
    if node:
        argv = [a for a in argv if not a.startswith(("--bind-address=", "--advertise-address="))]
        argv += [
            # Pods reach the API server at the bridge address through the `kubernetes` Service;
            # realnode's nftables table lets only loopback and the bridge connect.
            "--bind-address=0.0.0.0",
            f"--advertise-address={realnode.GATEWAY}",
            # Webhooks and aggregated APIs are called at their endpoints' (pod) IPs, which the
            # host routes to on the bridge; Service IPs exist only inside kube-proxy's rules.
            "--enable-aggregator-routing=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
    procs["kube-apiserver"] = spawn(state, "kube-apiserver", argv, env)
    api = Api(ports["apiserver"], pki)
    wait_for(
        "kube-apiserver",
        procs,
        lambda: (api.ready(), "/readyz not ok"),
        TIMEOUTS["kube-apiserver"],
        blame={"etcd": "etcd", "kube-apiserver": "kube-apiserver"},
    )
    log(f"kube-apiserver ready on {server} ({took()})")
    if node:
        argv = realnode.kubelet_argv(
            state.node, node.bin_dir, state.component_kubeconfig("kubelet")
        )
        procs["kubelet"] = spawn(state, "kubelet", argv, node_env)

    def kc(component: str) -> str:
        return str(state.component_kubeconfig(component))

    def serving(component: str, port: int) -> list[str]:
        return [
            f"--kubeconfig={kc(component)}",
            f"--authentication-kubeconfig={kc(component)}",
            f"--authorization-kubeconfig={kc(component)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={state.run / component}",
        ]

    argv = [
        str(bin_dir / "kube-controller-manager"),
        *serving("kube-controller-manager", ports["controller-manager"]),
        # Each controller runs as its own service account with the bootstrap RBAC roles,
        # as in kubeadm clusters.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]
    procs["kube-controller-manager"] = spawn(state, "kube-controller-manager", argv, env)
    argv = [
        str(bin_dir / "kube-scheduler"),
        *serving("kube-scheduler", ports["scheduler"]),
    ]
    procs["kube-scheduler"] = spawn(state, "kube-scheduler", argv, env)
    kwok_env = component_env(state, "kwok")
    argv = [
        str(bin_dir / "kwok"),
        f"--kubeconfig={kc('kwok')}",
        f"--config={STAGES_FILE}",
        # Only the fake nodes: a real node's pods are the kubelet's.
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={POD_CIDR}",
        f"--server-address=127.0.0.1:{ports['kwok']}",
    ]
    procs["kwok"] = spawn(state, "kwok", argv, kwok_env)

    for name in NODES:
        code, body = api.request("POST", "/api/v1/nodes", node_manifest(name))
        if code not in (201, 409):
            raise ClusterError("kube-apiserver", f"creating node {name}: HTTP {code}: {body}")

    for component, port in (
        ("kube-controller-manager", ports["controller-manager"]),
        ("kube-scheduler", ports["scheduler"]),
    ):

        def healthz(port: int = port) -> tuple[bool, str]:
            code = _get(port, "/healthz", _insecure_ctx())[0]
            return code == 200, f"/healthz HTTP {code}"

        wait_for(component, procs, healthz, TIMEOUTS[component])
        log(f"{component} healthy ({took()})")

    def kwok_ok() -> tuple[bool, str]:
        if _get(ports["kwok"], "/healthz", None)[0] != 200:
            return False, "/healthz not ok"
        return nodes_ready(api)

    # The not-ready taint is removed by the controller manager: keep it alive meanwhile too.
    wait_for(
        "kwok",
        procs,
        kwok_ok,
        TIMEOUTS["kwok"],
        blame={c: c for c in ("kwok", "kube-controller-manager", "kube-apiserver")},
    )
    log(f"kwok: nodes {', '.join(NODES)} Ready ({took()})")

    def default_sa() -> tuple[bool, str]:
        code, _ = api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return code == 200, f"ServiceAccount default/default: HTTP {code}"

    wait_for(
        "kube-controller-manager",
        procs,
        default_sa,
        TIMEOUTS["kube-controller-manager"],
        blame={"kube-controller-manager": "kube-controller-manager"},
    )
    log(f"ServiceAccount default/default exists ({took()})")
    if node:
        start_node_rest(state, node, api, ports, procs, took)
        if importer is not None:
            importer.join()
        if import_error:
            raise ClusterError("containerd", str(import_error[0]))
        record_images(state, node.images)
        log(f"{len(node.images)} images loaded into containerd ({took()})")


def record_images(state: State, images: list[tuple[str, Path]]) -> None:
    data = state.load()
    data["images"] = {ref: str(archive) for ref, archive in images}
    state.state_file.write_text(json.dumps(data, indent=2) + "\n")


def refresh_images(state: State, data: dict[str, Any]) -> None:
    """Load the images whose archive changed since the last load (e.g. after editing operator/)."""
    images = images_from_build()
    loaded = data.get("images", {})
    changed = [(ref, archive) for ref, archive in images if loaded.get(ref) != str(archive)]
    if changed:
        realnode.import_images(Path(data["node_bin_dir"]), changed)
        record_images(state, images)
        log(f"reloaded into the real node: {', '.join(ref for ref, _ in changed)}")


def node_status(api: Api, name: str) -> tuple[bool, str]:
    """A node is Ready and the node controller has removed its not-ready taint."""
    code, body = api.request("GET", f"/api/v1/nodes/{name}")
    if code != 200:
        return False, f"node {name}: HTTP {code}"
    conds = {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}
    if conds.get("Ready") != "True":
        return False, f"node {name} not Ready"
    taints = [t["key"] for t in body.get("spec", {}).get("taints", []) or []]
    if "node.kubernetes.io/not-ready" in taints:
        return False, f"node {name} still tainted not-ready"
    return True, f"node {name} Ready"


def start_node_rest(
    state: State,
    node: NodeBuild,
    api: Api,
    ports: dict[str, int],
    procs: dict[str, subprocess.Popen[bytes]],
    took: Callable[[], str],
) -> None:
    """Wait for the kubelet's Node, then start kube-proxy (it reads the node's addresses)."""
    name = realnode.NODE_NAME
    wait_for(
        "kubelet",
        procs,
        lambda: (api.request("GET", f"/api/v1/nodes/{name}")[0] == 200, f"node {name} missing"),
        TIMEOUTS["kubelet"],
        blame={"kubelet": "kubelet", "containerd": "containerd"},
    )
    argv = realnode.kube_proxy_argv(state.node, node.bin_dir)
    procs["kube-proxy"] = spawn(state, "kube-proxy", argv, realnode.containerd_env(node.bin_dir))
    wait_for(
        "kubelet",
        procs,
        lambda: node_status(api, name),
        TIMEOUTS["kubelet"],
        blame={"kubelet": "kubelet", "containerd": "containerd", "kube-proxy": "kube-proxy"},
    )
    log(f"real node {name} Ready ({took()})")

    def proxy_ok() -> tuple[bool, str]:
        code = _get(ports["kube-proxy-healthz"], "/healthz", None)[0]
        return code == 200, f"/healthz HTTP {code}"

    wait_for("kube-proxy", procs, proxy_ok, TIMEOUTS["kube-proxy"])
    log(f"kube-proxy healthy (nftables mode) ({took()})")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_all(state: State) -> None:
    """Stop every component; if this cluster has (or had) a real node, undo its changes."""
    stop_components(state)
    if state.node.root.exists() or realnode.owner() == state.root:
        realnode.teardown(state.node)


def cmd_up(state: State, node_kind: str = "kwok") -> int:
    t0 = time.monotonic()
    want_real = node_kind == "real"
    with state.lock():
        data = state.load()
        if data:
            comps = components(data)
            h = health(state, data)
            # All processes alive but a probe failed: give a busy machine a few seconds before
            # deciding to restart.
            deadline = time.monotonic() + 5
            while (
                not all(ok for ok, _ in h.values())
                and all(read_pid(state, c) for c in comps)
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
                h = health(state, data)
            healthy = all(ok for ok, _ in h.values())
            if healthy and data.get("config") != config_hash():
                # Flags or stages changed since this cluster started (a pull, a branch switch): a
                # test must not pass or fail on an API server configured by older code.
                log("this cluster was started with another configuration; restarting it")
                healthy = False
            if healthy and (not want_real or data.get("node") == "real"):
                if data.get("node") == "real":
                    try:
                        refresh_images(state, data)
                    except realnode.NodeError as exc:
                        raise ClusterError("containerd", str(exc)) from None
                log(f"already up (state {state.root}); kubeconfig {state.kubeconfig}")
                return 0
            if healthy:
                log("restarting the cluster with a real node (the API server's flags change)")
            elif any(read_pid(state, c) for c in comps):
                bad = ", ".join(f"{c}: {d}" for c, (ok, d) in h.items() if not ok)
                log(f"found an unhealthy cluster ({bad}); restarting it")
        stop_all(state)
        # SIGTERM (a CI timeout, a killed test run) also gets the clean-up below.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            bin_dir = bin_dir_from_build()
            node = None
            if want_real:
                realnode.check_machine()
                other = realnode.owner()
                alive = other is not None and any(
                    read_pid(State(other), c) for c in NODE_COMPONENTS
                )
                realnode.claim(state.root, alive=alive)
                node = NodeBuild(node_bin_dir_from_build(), images_from_build())
                log(f"real node: binaries {node.bin_dir}, {len(node.images)} images")
            start(state, bin_dir, node)
        except BaseException as exc:
            if isinstance(exc, ClusterError):
                log(f"FAILED: {exc}")
                if exc.component:
                    logfile = state.log_file(exc.component)
                    log(f"{exc.component} log: {logfile} (last {LOG_TAIL_LINES} lines):")
                    err(tail(logfile))
            elif isinstance(exc, realnode.NodeError):
                log(f"FAILED: real node: {exc}")
            log("stopping the components started so far")
            stop_all(state)
            if isinstance(exc, (ClusterError, realnode.NodeError)):
                return 1
            if isinstance(exc, KeyboardInterrupt):
                return 130
            raise
    log(f"up in {time.monotonic() - t0:.1f} s; kubeconfig: {state.kubeconfig}")
    log('use the built kubectl with: eval "$(hack/cluster/cluster.py env)"')
    return 0


def cmd_down(state: State) -> int:
    if not state.root.exists():
        log(f"nothing to stop ({state.root} does not exist)")
        return 0
    with state.lock():
        running = [c for c in ALL_COMPONENTS if read_pid(state, c) is not None]
        try:
            stop_all(state)
        except realnode.NodeError as exc:
            raise ClusterError(None, f"removing the real node: {exc}") from None
        # Logs stay for post-mortems; everything else goes (data, certificates, kubeconfigs).
        for p in (state.etcd_data, state.run, state.pids, state.pki, state.root / "kubeconfigs"):
            shutil.rmtree(p, ignore_errors=True)
        for f in (state.kubeconfig, state.state_file):
            f.unlink(missing_ok=True)
    log(f"stopped {', '.join(running)}" if running else "was not running")
    return 0


def cmd_stop_component(state: State, component: str) -> int:
    """Stop one component (fault injection: e.g. an API server outage); data and ports stay."""
    if read_pid(state, component) is None:
        log(f"{component} is not running")
        return 0
    with state.lock():
        stop_components(state, (component,))
    log(f"stopped {component}")
    return 0


def cmd_start_component(state: State, component: str) -> int:
    """Start a stopped component again with the command line it last ran with (its log's first
    line), so it comes back on the same ports; the previous log is kept as <component>.log.1."""
    t0 = time.monotonic()
    data = state.load()
    if not data:
        raise ClusterError(None, f"no cluster in {state.root}; run `up` first")
    with state.lock():
        if read_pid(state, component) is not None:
            log(f"{component} is already running")
            return 0
        logfile = state.log_file(component)
        try:
            first = logfile.read_text(errors="replace").split("\n", 1)[0]
        except OSError as exc:
            raise ClusterError(None, f"cannot read {logfile}: {exc}") from None
        argv = shlex.split(first.removeprefix("# ")) if first.startswith("# ") else []
        if not argv:
            raise ClusterError(None, f"{logfile} does not start with the command line")
        logfile.replace(logfile.with_name(logfile.name + ".1"))
        proc = spawn(state, component, argv, component_env(state, component), extra_args=False)
        try:
            wait_for(
                component,
                {component: proc},
                lambda: health(state, data)[component],
                TIMEOUTS[component],
            )
        except ClusterError:
            log(f"{component} log: {logfile} (last {LOG_TAIL_LINES} lines):")
            err(tail(logfile))
            stop_components(state, (component,))
            raise
    log(f"{component} started and healthy ({time.monotonic() - t0:.1f} s)")
    return 0


def cmd_status(state: State) -> int:
    data = state.load()
    if not data:
        print(f"cluster: not running (no state in {state.root})")
        return 1
    h = health(state, data)
    print(f"state dir:  {state.root}")
    print(f"apiserver:  {data.get('server')}")
    print(f"kubeconfig: {state.kubeconfig}")
    print(f"binaries:   {data.get('bin_dir')}")
    for c, (_ok, detail) in h.items():
        print(f"  {c:<24} {detail:<44} log: {state.log_file(c)}")
    healthy = all(ok for ok, _ in h.values())
    if healthy:
        api = Api(data["ports"]["apiserver"], state.pki)
        ok, detail = nodes_ready(api)
        if ok and data.get("node") == "real":
            ok, detail = node_status(api, realnode.NODE_NAME)
            detail = f"kwok nodes Ready, {detail}" if ok else detail
        print(f"  nodes: {detail}")
        healthy = ok
    print("cluster: " + ("healthy" if healthy else "NOT healthy"))
    return 0 if healthy else 1


def cmd_env(state: State) -> int:
    data = state.load()
    bin_dir = data.get("bin_dir") or str(bin_dir_from_build())
    print(f"export KUBECONFIG={shlex.quote(str(state.kubeconfig))}")
    if data.get("node") == "real":
        # ctr (and the kubelet, kube-proxy, containerd binaries) for the real node.
        bin_dir = f"{bin_dir}:{data['node_bin_dir']}"
        print(f"export CONTAINERD_ADDRESS={realnode.CONTAINERD_SOCKET}")
        print("export CONTAINERD_NAMESPACE=k8s.io")
    print(f'export PATH={shlex.quote(bin_dir)}:"$PATH"')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cluster.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "stop-component", "start-component"]
    )
    parser.add_argument("component", nargs="?", choices=ALL_COMPONENTS, help="for *-component")
    parser.add_argument(
        "--node",
        choices=["kwok", "real"],
        default=os.environ.get("NIGHTSHIFT_NODE") or "kwok",
        help="up: `real` adds a real node (containerd, kubelet, kube-proxy) beside the KWOK "
        "nodes (default: $NIGHTSHIFT_NODE, else kwok)",
    )
    args = parser.parse_args(argv)
    state = State.from_env()
    commands = {"down": cmd_down, "status": cmd_status, "env": cmd_env}
    try:
        if args.command == "up":
            return cmd_up(state, args.node)
        if args.command in ("stop-component", "start-component"):
            if args.component is None:
                parser.error(f"{args.command} needs a component: {', '.join(ALL_COMPONENTS)}")
            if args.command == "stop-component":
                return cmd_stop_component(state, args.component)
            return cmd_start_component(state, args.component)
        return commands[args.command](state)
    except ClusterError as exc:
        log(f"FAILED: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

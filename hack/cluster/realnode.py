"""The local cluster's real node: containerd, kubelet and kube-proxy run real pods on this machine.

`cluster.py up --node=real` adds it beside the KWOK nodes. Everything it changes on the machine has
a name of its own, so that `down` removes exactly that, and nothing else, even after a crash:

- the bridge `nightshift0` (10.245.0.1/24) that the CNI bridge plugin attaches pods to;
- the nftables table `inet nightshift-node` (ours) and the tables kube-proxy (nftables mode)
  creates, `ip kube-proxy` and `ip6 kube-proxy`;
- the cgroup `nightshift-node` in every cgroup hierarchy (pods live below it);
- mounts below the state directory and below /run/nightshift-node (container root file systems,
  shm, network namespaces, the kubelet's tmpfs volumes), which also holds containerd's socket and
  the shims' sockets (their path must be short);
- the kubelet's symlinks in /var/log/containers, and that directory if the node created it;
- the kernel settings the kubelet adjusts (vm.overcommit_memory, kernel.panic, ...), restored.

Only one real node can run on a machine (the bridge, kube-proxy's tables and the socket directory
are machine-wide); /run/nightshift-node/owner names the state directory that holds it.

Standard library only, like cluster.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "real-node"
BRIDGE = "nightshift0"
POD_SUBNET = "10.245.0.0/24"
GATEWAY = "10.245.0.1"  # the bridge's address: node IP, API server address for pods
NFT_TABLE = "nightshift-node"  # family inet
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
CGROUP_PARENT = "nightshift-node"
MACHINE_DIR = Path("/run/nightshift-node")
CONTAINERD_SOCKET = MACHINE_DIR / "containerd.sock"
# Paths outside the state directory that the kubelet, containerd and mount(8) write to whatever
# they are told: /var/log/containers (the kubelet's log symlinks), /var/lib/kubelet/device-plugins
# (a constant in the kubelet), /var/lib/cni/results (libcni's cache inside containerd), /run/mount
# (util-linux). What the node created there goes at tear-down; what existed stays.
CONTAINER_LOGS = Path("/var/log/containers")
MACHINE_PATHS = (CONTAINER_LOGS, Path("/var/lib/kubelet"), Path("/var/lib/cni"), Path("/run/mount"))
CNI_NETWORK = "nightshift"
# Pods choose the real node with this label and must tolerate the taint of the same name, so
# that nothing meant for the KWOK nodes lands here by accident.
LABEL_KEY = "test.nightshift.dev/node"
LABEL_VALUE = "real"
# Kernel settings the kubelet sets when protectKernelDefaults is false (pkg/kubelet/cm).
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
COMPONENTS = ("containerd", "kubelet", "kube-proxy")
PACKAGES = ("runc", "nftables", "iptables", "buildah", "debootstrap")
RUNC = "/usr/sbin/runc"


class NodeError(Exception):
    pass


def log(msg: str) -> None:
    with contextlib.suppress(OSError):
        print(f"cluster: {msg}", flush=True, file=sys.stderr)


def run(
    *argv: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, input=input, check=False)
    if check and res.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass(frozen=True)
class Paths:
    """Files of the real node inside the cluster's state directory."""

    root: Path  # <state>/node

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd-state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def saved(self) -> Path:
        """What the machine had before: sysctl values, whether /var/log/containers existed."""
        return self.root / "saved.json"


# --------------------------------------------------------------------------------------------
# Preconditions and the machine-wide claim


def check_machine() -> None:
    if os.geteuid() != 0:
        raise NodeError("the real node needs root (namespaces, cgroups, mounts, a bridge)")
    script = Path(__file__).resolve().parents[1] / "ensure-packages.sh"
    res = subprocess.run(["bash", str(script), *PACKAGES], check=False)
    if res.returncode != 0:
        raise NodeError(f"missing Debian packages ({', '.join(PACKAGES)})")
    for tool in (RUNC, "nft", "ip", "mount", "umount"):
        if shutil.which(tool) is None:
            raise NodeError(f"{tool} not found")


def owner() -> Path | None:
    try:
        return Path((MACHINE_DIR / "owner").read_text().strip())
    except OSError:
        return None


def claim(state_root: Path, alive: bool) -> None:
    """Take the machine for this state directory's real node.

    `alive` says whether the current owner (if another state directory) still runs its node; a
    dead owner's leftovers are removed first.
    """
    current = owner()
    if current is not None and current != state_root:
        if alive:
            raise NodeError(
                f"a real node is already running on this machine, for the cluster in {current}; "
                f"stop it first (NIGHTSHIFT_CLUSTER_DIR={current} hack/cluster/cluster.py down)"
            )
        log(f"removing what a dead real node (cluster {current}) left behind")
        teardown(Paths(current / "node"))
    MACHINE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    (MACHINE_DIR / "owner").write_text(f"{state_root}\n")


# --------------------------------------------------------------------------------------------
# Host set-up: kernel settings, bridge, nftables, cgroups


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def save_machine(paths: Paths) -> None:
    if paths.saved.exists():
        return  # a restart of the same node: keep what the machine had before the first start
    saved: dict[str, Any] = {"sysctl": {}, "existed": [str(p) for p in MACHINE_PATHS if p.exists()]}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            saved["sysctl"][name] = _sysctl_path(name).read_text().strip()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.saved.write_text(json.dumps(saved, indent=2) + "\n")


def cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return found


def setup_host(paths: Paths, apiserver_port: int) -> None:
    """The bridge with the node's address, our nftables table and the pods' parent cgroup."""
    for family, table in KUBE_PROXY_TABLES:
        if run("nft", "list", "table", family, table, check=False).returncode == 0:
            raise NodeError(
                f"nftables table {family} {table} exists: another kube-proxy runs on this machine"
            )
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # The API server listens on every address (pods reach it at the bridge address through the
    # `kubernetes` Service): only loopback and the bridge may connect. Pods reach the node and
    # each other, nothing beyond (no traffic leaves the machine), and nothing sent to a Service
    # address leaves the machine either when kube-proxy has no endpoint for it.
    rules = f"""\
table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    tcp dport {apiserver_port} iifname != "lo" iifname != "{BRIDGE}" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {POD_SUBNET} ip daddr != {POD_SUBNET} drop
    ip daddr 10.0.0.0/24 drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    ip daddr 10.0.0.0/24 drop
  }}
}}
"""
    run("nft", "delete", "table", "inet", NFT_TABLE, check=False)
    run("nft", "-f", "-", input=rules)
    for mount in cgroup_mounts():
        parent = mount / CGROUP_PARENT
        parent.mkdir(exist_ok=True)
        # A new cpuset cgroup starts with no CPUs and no memory nodes: copy the root's.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (mount / knob).exists() and not (parent / knob).read_text().strip():
                (parent / knob).write_text((mount / knob).read_text())


# --------------------------------------------------------------------------------------------
# Configuration files


def write_configs(
    paths: Paths, *, node_bin: Path, pki: Path, kubeconfigs: Path, ports: dict[str, int]
) -> None:
    for d in (
        paths.containerd_root,
        paths.containerd_state,
        paths.kubelet_root,
        paths.cni_conf_dir,
    ):
        d.mkdir(parents=True, exist_ok=True)
    containerd = f"""\
# containerd for the local cluster's real node (written by hack/cluster/realnode.py).
version = 3
root = '{paths.containerd_root}'
state = '{paths.containerd_state}'
imports = []
# Not used here, and they would create directories outside the state directory (/opt/containerd,
# /var/run/nri, /opt/containerd/image-verifier).
disabled_plugins = [
  'io.containerd.internal.v1.opt',
  'io.containerd.nri.v1.nri',
  'io.containerd.image-verifier.v1.bindir',
]

[grpc]
  address = '{CONTAINERD_SOCKET}'

[ttrpc]
  address = '{CONTAINERD_SOCKET}.ttrpc'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{sandbox_image(node_bin)}'

  [plugins.'io.containerd.cri.v1.runtime']
    disable_apparmor = true
    # The kubelet asks for oom_score_adj -998 for pod sandboxes; lowering it needs
    # CAP_SYS_RESOURCE, which root lacks on some machines (runc then fails "can't get final
    # child's PID from pipe"). Never go below containerd's own score instead.
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    # Network namespaces are pinned below the state directory, not in /var/run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{RUNC}'
        Root = '{paths.root / "runc"}'
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{node_bin / "cni"}']
      conf_dir = '{paths.cni_conf_dir}'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '{MACHINE_DIR / "s"}'
"""
    paths.containerd_config.write_text(containerd)
    cni = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge address is ours (set up before the API server starts); pods get a
                # default route to it. No masquerading: pods talk to nothing off the machine.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.245.0.10",
                                 "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
                },
            },
            {"type": "portmap", "backend": "nftables", "capabilities": {"portMappings": True}},
        ],
    }  # fmt: skip
    (paths.cni_conf_dir / "10-nightshift.conflist").write_text(json.dumps(cni, indent=2) + "\n")

    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "address": GATEWAY,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        # cgroup v1 on this machine, no systemd: cgroupfs, below a parent of our own.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "failSwapOn": False,
        # No iptables chains from the kubelet (kube-proxy runs in nftables mode).
        "makeIPTablesUtilChains": False,
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "podLogsDir": str(paths.root / "pod-logs"),
        "registerWithTaints": [{"key": LABEL_KEY, "value": LABEL_VALUE, "effect": "NoSchedule"}],
        # The images are imported, never pulled: keep them whatever the disk usage.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%"},
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        "maxPods": 50,
    }  # fmt: skip
    paths.kubelet_config.write_text(json.dumps(kubelet, indent=2) + "\n")

    kube_proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfigs / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_SUBNET,
        "healthzBindAddress": f"127.0.0.1:{ports['kube-proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube-proxy-metrics']}",
        "nodePortAddresses": [f"{GATEWAY}/32"],
        # Leave the machine's conntrack settings alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    }  # fmt: skip
    paths.kube_proxy_config.write_text(json.dumps(kube_proxy, indent=2) + "\n")


def sandbox_image(node_bin: Path) -> str:
    return f"localhost/nightshift/pause:{(node_bin / 'pause.version').read_text().strip()}"


def containerd_argv(paths: Paths, node_bin: Path) -> list[str]:
    return [str(node_bin / "containerd"), f"--config={paths.containerd_config}"]


def containerd_env(node_bin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    # containerd finds containerd-shim-runc-v2 on PATH.
    env["PATH"] = f"{node_bin}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def kubelet_argv(paths: Paths, node_bin: Path, kubeconfig: Path) -> list[str]:
    return [
        str(node_bin / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={GATEWAY}",
        f"--node-labels={LABEL_KEY}={LABEL_VALUE}",
        "--v=1",
    ]


def kube_proxy_argv(paths: Paths, node_bin: Path) -> list[str]:
    return [str(node_bin / "kube-proxy"), f"--config={paths.kube_proxy_config}", "--v=1"]


def ctr(node_bin: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(str(node_bin / "ctr"), f"--address={CONTAINERD_SOCKET}", "-n", "k8s.io", *args,
               check=check)  # fmt: skip


def containerd_ready(node_bin: Path) -> bool:
    return CONTAINERD_SOCKET.exists() and ctr(node_bin, "version", check=False).returncode == 0


def import_images(node_bin: Path, images: list[tuple[str, Path]]) -> None:
    """Load the image archives (docker-archive) into containerd's k8s.io namespace."""
    for ref, archive in images:
        res = ctr(
            node_bin, "images", "import", "--snapshotter=overlayfs", str(archive), check=False
        )
        if res.returncode != 0:
            raise NodeError(f"importing {ref} from {archive}: {res.stderr.strip()}")


# --------------------------------------------------------------------------------------------
# Tear-down


def _pids_in_cgroups() -> set[int]:
    pids: set[int] = set()
    for mount in cgroup_mounts():
        parent = mount / CGROUP_PARENT
        if not parent.is_dir():
            continue
        for procs in parent.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _shim_pids() -> set[int]:
    """containerd-shim-runc-v2 processes of this machine's real node (by containerd address)."""
    found = set()
    needle = str(CONTAINERD_SOCKET).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and needle in cmdline:
                found.add(int(entry.name))
    return found


def _kill_all(find: Any, what: str) -> None:
    deadline = time.monotonic() + 15
    while pids := find():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NodeError(f"{what} {sorted(pids)} survive SIGKILL")
        time.sleep(0.1)


def _mounts_below(prefixes: list[Path]) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            found.append(point)
    return found


def unmount_below(prefixes: list[Path]) -> None:
    """Unmount everything at or below the prefixes, deepest first, until nothing is left."""
    for _ in range(20):
        points = _mounts_below(prefixes)
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            if run("umount", point, check=False).returncode != 0:
                run("umount", "--lazy", point, check=False)
    raise NodeError(f"mounts left after unmounting: {_mounts_below(prefixes)}")


def remove_cgroups() -> None:
    for mount in cgroup_mounts():
        parent = mount / CGROUP_PARENT
        if not parent.is_dir():
            continue
        dirs = sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
        for d in [*reversed(dirs), parent]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # the kernel frees a cgroup a moment after its last task
            else:
                raise NodeError(f"cannot remove cgroup {d}")


def teardown(paths: Paths) -> None:
    """Undo every change the node made to the machine, once its kubelet, kube-proxy and
    containerd have stopped (cluster.py stops them first). Idempotent.
    """
    # Every container process (what is in the pods' cgroups), then the shims.
    _kill_all(_pids_in_cgroups, "pod processes")
    _kill_all(_shim_pids, "containerd shims")
    unmount_below([paths.root, MACHINE_DIR])
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        # Veths of pods whose network namespace is gone are gone too; any left go with this.
        for line in run(
            "ip", "-o", "link", "show", "master", BRIDGE, check=False
        ).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            run("ip", "link", "delete", name, check=False)
        run("ip", "link", "delete", BRIDGE, check=False)
    run("nft", "delete", "table", "inet", NFT_TABLE, check=False)
    for family, table in KUBE_PROXY_TABLES:
        run("nft", "delete", "table", family, table, check=False)
    remove_cgroups()
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(paths.saved.read_text())
    for name, value in saved.get("sysctl", {}).items():
        with contextlib.suppress(OSError):
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value + "\n")
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(f"{paths.root}/"):
                link.unlink()
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        for cached in results.glob(f"{CNI_NETWORK}-*"):
            cached.unlink()
    if saved:
        for path in MACHINE_PATHS:
            if str(path) not in saved.get("existed", []):
                shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(paths.root, ignore_errors=True)
    if owner() in (None, paths.root.parent):
        shutil.rmtree(MACHINE_DIR, ignore_errors=True)

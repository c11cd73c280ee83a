"""Integration-test support: a real local control plane (hack/cluster/cluster.py).

The session-scoped `cluster` fixture reuses a healthy cluster at $NIGHTSHIFT_CLUSTER_DIR (default
<repo>/.cluster, i.e. the one `make cluster-up` starts); otherwise it starts its own in a
temporary state directory and stops it when the session ends. With NIGHTSHIFT_NODE=real (what
`make integration` sets) the cluster has a real node too: a reused one must have it, an own one
is started with `--node=real`. Binaries and images must be built already (`make binaries
node-binaries images`): a cold build takes longer than the test timeout. Kueue is the exception:
the session builds it in the background while the other tests run, and runs its tests last.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PY = REPO / "hack" / "cluster" / "cluster.py"
INTEGRATION_DIR = Path(__file__).resolve().parent

T = TypeVar("T")
# The real node's label and taint (hack/cluster/realnode.py): pods that must run for real select
# the node with the label and tolerate the taint.
REAL_NODE = {"test.nightshift.dev/node": "real"}
REAL_NODE_TOLERATIONS = [
    {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
    for key, value in REAL_NODE.items()
]
# The real node's bridge address (realnode.GATEWAY): pods on it reach the machine there, where a
# test's HTTP receiver must listen to be reached from a pod (127.0.0.1 is the pod's own).
REAL_NODE_GATEWAY = "10.245.0.1"


def want_real_node() -> bool:
    return os.environ.get("NIGHTSHIFT_NODE") == "real"


KUEUE_TESTS = INTEGRATION_DIR / "test_kueue.py"
BUILD_KUEUE = REPO / "hack" / "build-kueue.sh"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an `integration` test; Kueue's run last (a cold
    session builds Kueue meanwhile: see ``kueue_build``)."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: Path(item.path).resolve() == KUEUE_TESTS)  # stable: order kept


@dataclass
class KueueBuild:
    """hack/build-kueue.sh, started when the session starts if a Kueue test is to run."""

    proc: subprocess.Popen[str] | None
    log: Path

    def directory(self, timeout: float = 2400) -> Path:
        """Where the build put Kueue, once it is done (built here and now if it never started)."""
        if self.proc is None:
            self.proc = _start_kueue_build(self.log, nice=False)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        if self.proc.returncode != 0:
            raise AssertionError(f"hack/build-kueue.sh failed; see {self.log}")
        return Path(out.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)  # the script and the go commands it started
            self.proc.wait()


def _start_kueue_build(log: Path, *, nice: bool) -> subprocess.Popen[str]:
    # Idle I/O class and nice 19: the tests running meanwhile keep the CPU and the disk.
    low = ["nice", "-n", "19", "ionice", "-c", "3"] if nice else []
    with log.open("w") as err:
        return subprocess.Popen(
            [*low, "bash", str(BUILD_KUEUE)],
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def kueue_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KueueBuild]:
    """Kueue's cold build takes 10-15 minutes on 2 cores: when a Kueue test is to run, build it
    in the background from the session's start (a warm cache answers at once), killed at the
    session's end if still going."""
    log = tmp_path_factory.mktemp("kueue-build") / "build.log"
    wanted = any(Path(i.path).resolve() == KUEUE_TESTS for i in request.session.items)
    build = KueueBuild(_start_kueue_build(log, nice=True) if wanted else None, log)
    try:
        yield build
    finally:
        build.stop()


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cluster_py(
    command: str,
    state_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Runs hack/cluster/cluster.py COMMAND against STATE_DIR with the current Python."""
    env = {**os.environ, "NIGHTSHIFT_CLUSTER_DIR": str(state_dir), **(extra_env or {})}
    env.pop("NIGHTSHIFT_NODE", None)  # `up` gets --node explicitly
    return subprocess.run(
        [sys.executable, str(CLUSTER_PY), command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def wait_for(
    fn: Callable[[], T | bool | None], *, timeout: float, what: str, interval: float = 0.2
) -> T:
    """Polls FN until it returns something other than None/False; fails after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result is not None and result is not False:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    server: str
    owned: bool  # started by this test session (and stopped at its end)
    node_bin_dir: Path | None = None  # the real node's binaries (ctr), when it has one

    @classmethod
    def from_state(cls, state_dir: Path, *, owned: bool) -> Cluster:
        data = json.loads((state_dir / "state.json").read_text())
        node_bin = data.get("node_bin_dir") if data.get("node") == "real" else None
        return cls(
            state_dir=state_dir,
            kubeconfig=state_dir / "kubeconfig",
            bin_dir=Path(data["bin_dir"]),
            server=data["server"],
            owned=owned,
            node_bin_dir=Path(node_bin) if node_bin else None,
        )

    @property
    def real_node(self) -> bool:
        return self.node_bin_dir is not None

    wait_for = staticmethod(wait_for)

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools run against this cluster: its kubeconfig, built binaries first."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl against this cluster."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and res.returncode != 0:
            raise KubectlError(res.returncode, cmd, res.stdout, res.stderr)
        return res

    def get(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any], namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def wait_for_job_finished(
        self, name: str, namespace: str, timeout: float = 60
    ) -> tuple[str, dict[str, Any]]:
        """Waits until Job NAME has a Complete or Failed condition; returns (type, job)."""

        def finished() -> tuple[str, dict[str, Any]] | None:
            job = self.get("job", name, "-n", namespace)
            for cond in job.get("status", {}).get("conditions") or []:
                if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
                    return cond["type"], job
            return None

        return wait_for(finished, timeout=timeout, what=f"Job {namespace}/{name} to finish")


def _start_own_cluster() -> Cluster:
    state_dir = Path(tempfile.mkdtemp(prefix="nightshift-cluster-"))
    node = "real" if want_real_node() else "kwok"
    # A warm start with a real node takes ~30 s (loading the images); a cold image build is
    # `make images`' job, not this fixture's.
    res = run_cluster_py("up", state_dir, args=(f"--node={node}",), timeout=900)
    if res.returncode != 0:
        run_cluster_py("down", state_dir)
        pytest.fail(
            f"could not start the local control plane (state in {state_dir}):\n{res.stderr}",
            pytrace=False,
        )
    return Cluster.from_state(state_dir, owned=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local control plane: reused when already up at the default state dir, else started."""
    default_dir = Path(os.environ.get("NIGHTSHIFT_CLUSTER_DIR") or REPO / ".cluster").resolve()
    if run_cluster_py("status", default_dir).returncode == 0:
        found = Cluster.from_state(default_dir, owned=False)
        if found.real_node:
            # `up` on a running real node loads the images that changed since it started.
            res = run_cluster_py("up", default_dir, args=("--node=real",), timeout=900)
            if res.returncode != 0:
                pytest.fail(f"could not refresh the real node's images:\n{res.stderr}")
        if found.real_node or not want_real_node():
            yield found
            return
    own = _start_own_cluster()
    try:
        yield own
    finally:
        res = run_cluster_py("down", own.state_dir)
        if res.returncode == 0:
            shutil.rmtree(own.state_dir, ignore_errors=True)
        else:
            print(f"cluster teardown failed; state left in {own.state_dir}:\n{res.stderr}")


RunClusterPy = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def cluster_py() -> RunClusterPy:
    """`cluster_py(command, state_dir, extra_env=None)` runs hack/cluster/cluster.py."""
    return run_cluster_py


def _dns_label(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its `default` ServiceAccount ready) deleted after the test."""
    name = f"t-{_dns_label(request.node.name, 48)}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "test.nightshift.dev/owner=pytest")
    # Pods are rejected until the ServiceAccount controller has created `default`.
    wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=30,
        what=f"ServiceAccount {name}/default",
    )
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    """The generated CRDs (ScheduledTask, Calendar, Backfill), installed and Established."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{path.stem}")


def on_real_node(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ScheduledTask whose Job pods select the real node and tolerate its taint."""
    out = json.loads(json.dumps(manifest))
    template = out["spec"]["jobTemplate"].setdefault("spec", {}).setdefault("template", {})
    pod_spec = template.setdefault("spec", {})
    pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **REAL_NODE}
    pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *REAL_NODE_TOLERATIONS]
    return out


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


OPERATOR_IMAGE = "localhost/nightshift/operator"
METRICS_SCRAPER = "scraper"  # a ServiceAccount in the release namespace, bound to metrics-reader


def helm_run(cluster: Cluster, *args: str, timeout: float = 240) -> str:
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args]
    res = subprocess.run(
        cmd, capture_output=True, text=True, env=cluster.env, timeout=timeout, check=False
    )
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return res.stdout


def real_release_values(release: RealRelease, tag: str = "dev") -> list[str]:
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


@pytest.fixture(scope="session")
def real_release(cluster: Cluster, crd: None) -> Iterator[RealRelease]:
    """`helm install` of charts/nightshift on the real node, shared by the real-node tests.

    The operator watches only the two namespaces of this fixture, so it never acts on other
    tests' tasks. test_realnode.py's last test upgrades and uninstalls it; the teardown here
    uninstalls whatever is left.
    """
    if not cluster.real_node:
        why = "the cluster has no real node (NIGHTSHIFT_NODE=real, as root: make integration)"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    suffix = secrets.token_hex(3)
    release = RealRelease(
        name=f"rn{suffix}",
        system=f"nightshift-system-{suffix}",
        tasks=f"realnode-{suffix}",
        examples=f"examples-real-{suffix}",
        install_seconds=0.0,
    )
    for ns in (release.system, release.tasks, release.examples):
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("label", "namespace", ns, "test.nightshift.dev/owner=pytest")
    cluster.kubectl(
        "label", "namespace", release.system, "pod-security.kubernetes.io/enforce=restricted"
    )
    cluster.kubectl("create", "serviceaccount", METRICS_SCRAPER, "-n", release.system)
    # The session's CRDs came from kubectl: let the release take them over (Helm's import).
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd_name = f"crd/{path.stem}"
        cluster.kubectl(
            "annotate", crd_name, "--overwrite", f"meta.helm.sh/release-name={release.name}",
            f"meta.helm.sh/release-namespace={release.system}",
        )  # fmt: skip
        cluster.kubectl("label", crd_name, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    start = time.monotonic()
    try:
        helm_run(
            cluster, "install", release.name, str(REPO / "charts" / "nightshift"),
            "--namespace", release.system, *real_release_values(release),
            "--wait", "--timeout", "180s",
        )  # fmt: skip
        release = RealRelease(**{**release.__dict__, "install_seconds": time.monotonic() - start})
        print(f"\nhelm install until both replicas Ready: {release.install_seconds:.1f} s")
        yield release
    finally:
        subprocess.run(
            [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", "uninstall",
             release.name, "--namespace", release.system, "--wait", "--timeout", "120s"],
            capture_output=True, env=cluster.env, check=False, timeout=180,
        )  # fmt: skip
        for ns in (release.system, release.tasks, release.examples):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

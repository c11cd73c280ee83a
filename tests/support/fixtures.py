"""The pytest fixtures the integration and chaos suites share; each conftest imports the ones it
uses (pytest finds fixtures by the names in a conftest's namespace)."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import (
    REPO,
    Cluster,
    ClusterError,
    RunClusterPy,
    run_cluster_py,
    start_cluster,
    stop_cluster,
    want_real_node,
)
from support.operator import Operator
from support.wait import poll


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
    state_dir = Path(tempfile.mkdtemp(prefix="nightshift-cluster-"))
    node = "real" if want_real_node() else "kwok"
    try:
        # A warm start with a real node takes ~30 s (loading the images); a cold image build is
        # `make images`' job, not this fixture's.
        own = start_cluster(state_dir, args=(f"--node={node}",), timeout=900)
    except ClusterError as error:
        pytest.fail(
            f"could not start the local control plane (state in {state_dir}):\n{error.stderr}",
            pytrace=False,
        )
    try:
        yield own
    finally:
        stop_cluster(own.state_dir, remove=True)


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
    poll(
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


@pytest.fixture
def operator(cluster: Cluster, crd: None, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """`nightshift run` watching the test's namespace, started, and stopped after the test."""
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace])
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    """The generated CRDs (ScheduledTask, Calendar, Backfill), installed and Established."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{path.stem}")

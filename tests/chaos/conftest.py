"""Chaos tests: fault injection against the operator on the local control plane.

Every test here is marked ``chaos`` and only runs when selected with ``-m chaos`` (``make chaos``,
``make chaos-short``): a plain ``pytest`` skips them, they take minutes.

The ``namespace``, ``crd`` and ``cluster_py`` fixtures are the integration tests' (from
``tests/support/fixtures.py``). The ``cluster`` fixture is this directory's own: these tests stop
the API server and compact etcd, so they never borrow the shared development cluster at
``.cluster/``. With ``$NIGHTSHIFT_CLUSTER_DIR`` set they use (or start, and then stop) the cluster
there; without it they start a private one in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import fixtures
from support.cluster import (
    CLUSTER_PY,
    Cluster,
    ClusterError,
    run_cluster_py,
    start_cluster,
    stop_cluster,
)
from support.operator import Operator
from support.wait import poll

CHAOS_DIR = Path(__file__).resolve().parent

# The shared fixtures (tests/support/fixtures.py): pytest finds them by these names.
cluster_py = fixtures.cluster_py
crd = fixtures.crd
namespace = fixtures.namespace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything here ``chaos``; skip it unless ``-m`` selects chaos tests."""
    selected = "chaos" in (config.getoption("markexpr", "") or "")
    skip = pytest.mark.skip(reason="chaos tests run with -m chaos (make chaos / make chaos-short)")
    for item in items:
        if CHAOS_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.chaos)
            if not selected:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A control plane these tests may break: $NIGHTSHIFT_CLUSTER_DIR's, or a private one."""
    chosen = os.environ.get("NIGHTSHIFT_CLUSTER_DIR")
    state_dir = Path(chosen).resolve() if chosen else Path(tempfile.mkdtemp(prefix="chaos-"))
    if chosen and run_cluster_py("status", state_dir).returncode == 0:
        yield Cluster.from_state(state_dir, owned=False)
        return
    try:
        own = start_cluster(state_dir, timeout=600)
    except ClusterError as error:
        pytest.fail(f"could not start a control plane in {state_dir}:\n{error.stderr}")
    try:
        yield own
    finally:
        stop_cluster(state_dir, remove=not chosen)


@pytest.fixture
def operators(cluster: Any, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    """``operators(kubeconfig=None, **Operator kwargs)`` makes an Operator (not started) that is
    stopped at teardown whatever happened, so a failed test leaves no process behind."""
    made: list[Operator] = []

    def make(kubeconfig: Path | None = None, **kwargs: Any) -> Operator:
        operator = Operator(kubeconfig or cluster.kubeconfig, tmp_path, **kwargs)
        made.append(operator)
        return operator

    yield make
    for operator in made:
        try:
            operator.stop()
        except subprocess.TimeoutExpired:
            operator.kill()


@pytest.fixture
def api_server_restored(cluster: Any) -> Iterator[None]:
    """For tests that stop kube-apiserver: afterwards it runs again (even if the test failed) and
    the controllers work again, which takes a while after a restart: until RBAC is loaded the
    controller manager's watches are refused and back off. A fresh namespace getting its default
    ServiceAccount is the sign the next test needs (its ``namespace`` fixture waits 30 s only)."""
    yield
    with contextlib.suppress(subprocess.SubprocessError):
        subprocess.run(
            [sys.executable, str(CLUSTER_PY), "start-component", "kube-apiserver"],
            env={**os.environ, "NIGHTSHIFT_CLUSTER_DIR": str(cluster.state_dir)},
            capture_output=True,
            timeout=180,
            check=False,
        )
    probe = f"chaos-probe-{secrets.token_hex(3)}"
    started = time.monotonic()
    try:
        poll(
            lambda: cluster.kubectl("create", "namespace", probe, check=False).returncode == 0,
            timeout=120,
            what="the API server to accept writes",
        )
        poll(
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", "-n", probe, check=False
                ).returncode
                == 0
            ),
            timeout=300,
            what="the controllers to work again (a new namespace's default ServiceAccount)",
        )
        print(f"control plane working again {time.monotonic() - started:.1f} s after the test")
    finally:
        cluster.kubectl("delete", "namespace", probe, "--wait=false", check=False)

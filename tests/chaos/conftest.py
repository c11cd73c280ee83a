"""Chaos tests: fault injection against the operator on the local control plane.

Every test here is marked ``chaos`` and only runs when selected with ``-m chaos`` (``make chaos``,
``make chaos-short``): a plain ``pytest`` skips them, they take minutes.

Fixtures are the integration tests' (``namespace``, ``crd``, ``cluster_py``), imported from
``tests/integration/conftest.py`` by path (a non-root conftest may not use ``pytest_plugins``, and
both files are modules named ``conftest``). The ``cluster`` fixture is this directory's own: these
tests stop the API server and compact etcd, so they never borrow the shared development cluster at
``.cluster/``. With ``$NIGHTSHIFT_CLUSTER_DIR`` set they use (or start, and then stop) the cluster
there; without it they start a private one in a temporary directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHAOS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIR = CHAOS_DIR.parent / "integration"
# The integration helpers (harness.Operator, test_operator.task/jobs) import each other by bare
# module name, as pytest's rootdir-relative imports allow there.
if str(INTEGRATION_DIR) not in sys.path:
    sys.path.insert(0, str(INTEGRATION_DIR))

from chaoslib import CLUSTER_PY  # noqa: E402 - tests/chaos is on sys.path (pytest puts it there)
from harness import Operator  # noqa: E402 - found through INTEGRATION_DIR above


def _load_integration_conftest() -> ModuleType:
    name = "nightshift_integration_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, INTEGRATION_DIR / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


integration = _load_integration_conftest()
Cluster = integration.Cluster
run_cluster_py = integration.run_cluster_py

# Re-exported fixtures (pytest finds fixtures by the names in this module).
namespace = integration.namespace
crd = integration.crd
cluster_py = integration.cluster_py


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
def cluster() -> Iterator[object]:
    """A control plane these tests may break: $NIGHTSHIFT_CLUSTER_DIR's, or a private one."""
    chosen = os.environ.get("NIGHTSHIFT_CLUSTER_DIR")
    state_dir = Path(chosen).resolve() if chosen else Path(tempfile.mkdtemp(prefix="chaos-"))
    if chosen and run_cluster_py("status", state_dir).returncode == 0:
        yield Cluster.from_state(state_dir, owned=False)
        return
    res = run_cluster_py("up", state_dir, timeout=600)
    if res.returncode != 0:
        run_cluster_py("down", state_dir)
        pytest.fail(f"could not start a control plane in {state_dir}:\n{res.stderr}")
    try:
        yield Cluster.from_state(state_dir, owned=True)
    finally:
        res = run_cluster_py("down", state_dir)
        if res.returncode == 0 and not chosen:
            shutil.rmtree(state_dir, ignore_errors=True)
        elif res.returncode != 0:
            print(f"cluster teardown failed; state left in {state_dir}:\n{res.stderr}")


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
        integration.wait_for(
            lambda: cluster.kubectl("create", "namespace", probe, check=False).returncode == 0,
            timeout=120,
            what="the API server to accept writes",
        )
        integration.wait_for(
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

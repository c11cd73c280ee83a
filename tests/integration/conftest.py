"""Integration-test hooks and fixtures: a real local control plane (hack/cluster/cluster.py).

The session-scoped `cluster` fixture (tests/support/fixtures.py) reuses a healthy cluster at
$NIGHTSHIFT_CLUSTER_DIR (default <repo>/.cluster, i.e. the one `make cluster-up` starts);
otherwise it starts its own in a temporary state directory and stops it when the session ends.
With NIGHTSHIFT_NODE=real (what `make integration` sets) the cluster has a real node too: a reused
one must have it, an own one is started with `--node=real`. Binaries and images must be built
already (`make binaries node-binaries images`): a cold build takes longer than the test timeout.
Kueue is the exception: the session builds it in the background while the other tests run, and
runs its tests last. The helpers the tests use live in tests/support.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import fixtures
from support.chart import CHART, METRICS_SCRAPER, RealRelease, helm, real_release_values
from support.cluster import REPO, Cluster
from support.kueue import KueueBuild, start_kueue_build

INTEGRATION_DIR = Path(__file__).resolve().parent
KUEUE_TESTS = INTEGRATION_DIR / "test_kueue.py"

# The shared fixtures (tests/support/fixtures.py): pytest finds them by these names.
cluster = fixtures.cluster
cluster_py = fixtures.cluster_py
crd = fixtures.crd
namespace = fixtures.namespace
operator = fixtures.operator


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an `integration` test; Kueue's run last (a cold
    session builds Kueue meanwhile: see ``kueue_build``)."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: Path(item.path).resolve() == KUEUE_TESTS)  # stable: order kept


@pytest.fixture(scope="session", autouse=True)
def kueue_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KueueBuild]:
    """Kueue's cold build takes 10-15 minutes on 2 cores: when a Kueue test is to run, build it
    in the background from the session's start (a warm cache answers at once), killed at the
    session's end if still going."""
    log = tmp_path_factory.mktemp("kueue-build") / "build.log"
    wanted = any(Path(i.path).resolve() == KUEUE_TESTS for i in request.session.items)
    build = KueueBuild(start_kueue_build(log, nice=True) if wanted else None, log)
    try:
        yield build
    finally:
        build.stop()


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
        helm(
            cluster, "install", release.name, str(CHART),
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

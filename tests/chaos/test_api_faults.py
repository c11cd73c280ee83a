"""Faults that refused connections never produce: throttling, slow answers, RBAC taken away,
connections a NAT silently forgot, and an internal task that crashes.

Each test runs one operator against tasks that fire every 5 s with ``catchUp: All`` (within a
10-minute starting deadline), so the policy allows no slot to be lost: after the fault every slot
must have exactly one Job. Each fault is made with a real mechanism (API Priority and Fairness,
SIGSTOP of etcd, RBAC bindings deleted, nftables rules on the operator's flows), except the
internal crash, which only a fault seam can cause. Each test prints one ``CHAOS`` line with its
figures: how long the fault lasted, the first Job after it, when every task had caught up,
duplicates and lost slots (targets 0), and the operator's tracebacks.

The faults last their full length under ``make chaos`` and half of it under ``make chaos-short``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chaoslib import (
    Identity,
    Sampler,
    apf_rejecting,
    apply_objects,
    chaos_seconds,
    chart_identity,
    cluster_component,
    component_alive,
    component_pid,
    connections_dropped,
    duplicates,
    established,
    explain_slots,
    missing_slots,
    now,
    remove_objects,
    stopped,
    traceback_count,
    ts,
)

from support.metrics import by_label, parse_metrics
from support.operator import Operator
from support.tasks import task
from support.wait import poll

TASKS = 6
STEP = timedelta(seconds=5)
SPEC: dict[str, Any] = {
    "interval": "5s",
    "concurrencyPolicy": "Allow",
    "catchUp": "All",
    "maxCatchUp": 60,
    "startingDeadlineSeconds": 600,
    "history": {"succeeded": 100, "failed": 100},
}
CATCH_UP_LIMIT = 90.0  # s after the fault ends until every slot has its Job


def fault_seconds(full: float) -> float:
    """The fault's length: ``full`` under make chaos, half under make chaos-short."""
    return full if chaos_seconds() >= 600 else full / 2


@dataclass
class Figures:
    fault: str
    seconds: float
    first_job_after: float | None = None
    caught_up_after: float | None = None
    duplicates: int = 0
    lost_slots: int = 0
    jobs: int = 0
    tracebacks: int = 0
    max_gap: float = 0.0  # s without a new Job, around the fault (5 s when nothing is wrong)
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> None:
        print("CHAOS", json.dumps(asdict(self)))


Fault = Callable[[Operator], AbstractContextManager[Any]]


def run_scenario(
    cluster: Any,
    namespace: str,
    operator: Operator,
    *,
    name: str,
    seconds: float,
    fault: Fault,
) -> tuple[Figures, Sampler]:
    """Tasks firing every 5 s; ``fault`` held for ``seconds``; then wait until every slot up to
    the fault's end has its Job. Asserts no duplicate and no lost slot."""
    names = [f"{name}-{i}" for i in range(TASKS)]
    for task_name in names:
        cluster.apply(task(task_name, **SPEC), namespace)
    created = {
        n: ts(cluster.get("stask", n, "-n", namespace)["metadata"]["creationTimestamp"])
        for n in names
    }
    figures = Figures(name, seconds)
    with Sampler(cluster.kubeconfig, namespace, interval=1.0, jobs_every=1.0) as sampler:
        poll(
            lambda: {job_task(j) for j in sampler.all_jobs()} >= set(names),
            timeout=60,
            what="a Job per task",
        )
        with fault(operator) as held:
            started = now()
            time.sleep(seconds)
            ended = now()
        if isinstance(held, dict):
            figures.extra.update(held)
        figures.seconds = round((ended - started).total_seconds(), 1)
        figures.extra["window"] = [started.isoformat(), ended.isoformat()]

        def first_after() -> datetime | None:
            fresh = [
                ts(j["metadata"]["creationTimestamp"])
                for j in sampler.all_jobs()
                if ts(j["metadata"]["creationTimestamp"]) >= ended.replace(microsecond=0)
            ]
            return min(fresh) if fresh else None

        first = poll(first_after, timeout=CATCH_UP_LIMIT, what="a Job after the fault")
        figures.first_job_after = round(max(0.0, (first - ended).total_seconds()), 1)

        def caught_up() -> bool:
            return not missing_slots(sampler.all_jobs(), created, STEP, until=ended)

        poll(caught_up, timeout=CATCH_UP_LIMIT, what="every slot until the fault's end")
        figures.caught_up_after = round((now() - ended).total_seconds(), 1)
        time.sleep(8)  # a few slots more: nothing may have been doubled afterwards either
        until = now() - timedelta(seconds=4)
    jobs = sampler.all_jobs()
    doubled = duplicates(jobs)
    lost = missing_slots(jobs, created, STEP, until=until)
    figures.jobs = len(jobs)
    figures.duplicates = sum(len(v) - 1 for v in doubled.values())
    figures.lost_slots = sum(len(v) for v in lost.values())
    figures.tracebacks = traceback_count(operator.logs())
    figures.max_gap = longest_gap(jobs, started - timedelta(seconds=10), until)
    assert not doubled, f"duplicate Jobs: {doubled}"
    assert not lost, "slots without a Job:\n" + "\n".join(explain_slots(lost, sampler.tasks, jobs))
    assert operator.proc is not None
    assert operator.proc.poll() is None, "the operator died"
    assert operator.health()[0] == 200, f"liveness failed: {operator.health()}"
    return figures, sampler


def longest_gap(jobs: list[dict[str, Any]], since: datetime, until: datetime) -> float:
    """The longest time without a Job created, in [since, until] (1 s resolution)."""
    times = sorted(
        t for j in jobs if since <= (t := ts(j["metadata"]["creationTimestamp"])) <= until
    )
    edges = [since, *times, until]
    return max((b - a).total_seconds() for a, b in itertools.pairwise(edges))


def job_task(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"]["nightshift.dev/task"])


@pytest.fixture
def identity(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[Identity]:
    """The chart's ServiceAccount and RBAC for the test's namespace (deleted afterwards)."""
    made = chart_identity(cluster, namespace, tmp_path)
    try:
        yield made
    finally:
        remove_objects(cluster, [o for o in made.objects if o["kind"].startswith("Cluster")])


@pytest.fixture
def control_plane_restored(cluster: Any) -> Iterator[None]:
    """Afterwards every component of the control plane runs and the API server is ready."""
    yield
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        if not component_alive(cluster.state_dir, component):
            cluster_component(cluster.state_dir, "start", component)
    poll(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        timeout=120,
        what="the API server to be ready again",
    )


def _operator(operators: Callable[..., Operator], identity: Identity, namespace: str) -> Operator:
    return operators(
        kubeconfig=identity.kubeconfig,
        namespaces=[namespace],
        env={"POD_NAME": f"{identity.name}-chaos", "POD_NAMESPACE": namespace},
    )


def _api_errors(metrics: str) -> dict[str, float]:
    return by_label(parse_metrics(metrics), "nightshift_api_errors_total", "call")


# --- the faults --------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_apf_rejecting_the_operator_for_a_minute(
    cluster: Any,
    crd: None,
    namespace: str,
    identity: Identity,
    operators: Callable[..., Operator],
    tmp_path: Path,
) -> None:
    operator = _operator(operators, identity, namespace).start()

    @contextlib.contextmanager
    def throttled(op: Operator) -> Iterator[dict[str, int]]:
        with apf_rejecting(cluster, identity, tmp_path) as counts:
            yield counts

    figures, _ = run_scenario(
        cluster, namespace, operator, name="apf", seconds=fault_seconds(60), fault=throttled
    )
    errors = _api_errors(operator.metrics())
    figures.extra["operator_api_errors"] = errors
    figures.report()  # after the asserts of run_scenario, before the ones below
    assert figures.extra["rejected"] > 0, "API Priority and Fairness rejected nothing"
    assert sum(errors.values()) > 0, "the operator saw no error: the fault did not reach it"


@pytest.mark.timeout(600)
def test_etcd_paused_gives_slow_answers_and_5xx(
    cluster: Any,
    crd: None,
    namespace: str,
    operators: Callable[..., Operator],
    control_plane_restored: None,
) -> None:
    operator = operators(namespaces=[namespace]).start()
    etcd = component_pid(cluster.state_dir, "etcd")

    def paused(op: Operator) -> AbstractContextManager[None]:
        return stopped(etcd)

    run_scenario(cluster, namespace, operator, name="etcd", seconds=fault_seconds(40), fault=paused)


@pytest.mark.timeout(600)
def test_rbac_binding_removed_for_a_minute(
    cluster: Any,
    crd: None,
    namespace: str,
    identity: Identity,
    operators: Callable[..., Operator],
) -> None:
    operator = _operator(operators, identity, namespace).start()

    @contextlib.contextmanager
    def unbound(op: Operator) -> Iterator[dict[str, Any]]:
        remove_objects(cluster, identity.bindings)
        poll(
            lambda: "no" in cluster.kubectl(
                "auth", "can-i", "create", "jobs", f"--as={identity.user}", "-n", namespace,
                check=False,
            ).stdout,
            timeout=30,
            what="RBAC to refuse the operator",
        )  # fmt: skip
        try:
            yield {}
        finally:
            apply_objects(cluster, identity.bindings)

    figures, _ = run_scenario(
        cluster, namespace, operator, name="rbac", seconds=fault_seconds(60), fault=unbound
    )
    logs = operator.logs()
    assert "cannot create resource" in logs or "forbidden" in logs.lower(), (
        "the operator never saw a 403: the fault did not reach it"
    )
    figures.extra["forbidden_log_lines"] = sum(
        1 for line in logs.splitlines() if "forbidden" in line.lower()
    )
    figures.report()


@pytest.mark.timeout(600)
def test_established_connections_silently_dropped(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    operator = operators(namespaces=[namespace]).start()
    server_port = json.loads((cluster.state_dir / "state.json").read_text())["ports"]["apiserver"]

    @contextlib.contextmanager
    def forgotten(op: Operator) -> Iterator[dict[str, Any]]:
        assert op.proc is not None
        flows = established(op.proc.pid, server_port)
        assert flows, "the operator has no connection to the API server"
        with connections_dropped(flows, server_port):
            yield {"flows_dropped": len(flows)}

    # The rules stay for the whole fault: those flows are dead for good, as after a NAT forgot
    # them; the operator must notice (request and watch timeouts) and open new ones.
    figures, sampler = run_scenario(
        cluster, namespace, operator, name="conns", seconds=fault_seconds(90), fault=forgotten
    )
    figures.report()
    # Job completions reach status again only through a new Job watch (or a resync).
    fault_start = ts(figures.extra["window"][0])
    finished_after = [
        r
        for t in sampler.tasks.values()
        for r in (t.get("status") or {}).get("runs") or []
        if r.get("result") == "Succeeded" and ts(r["scheduledAt"]) > fault_start
    ]
    assert finished_after, "no run since the fault was recorded as finished"


@pytest.mark.timeout(600)
def test_an_internal_task_that_crashes_is_restarted(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    operator = operators(namespaces=[namespace], env={"NIGHTSHIFT_FAULT": "crash:timer@20"})
    operator.start()

    @contextlib.contextmanager
    def crash(op: Operator) -> Iterator[dict[str, Any]]:
        yield {}

    figures, _ = run_scenario(cluster, namespace, operator, name="crash", seconds=30, fault=crash)
    metrics = operator.metrics()
    assert 'nightshift_internal_restarts_total{task="timer"} 1.0' in metrics
    assert "internal task timer crashed" in operator.logs()
    figures.extra["restarts"] = 1
    figures.report()


@pytest.mark.timeout(120)
def test_a_crash_loop_fails_liveness_within_30_s(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    operator = operators(namespaces=[namespace], env={"NIGHTSHIFT_FAULT": "crash-loop:timer@1"})
    started = time.monotonic()
    operator.start()
    _, body = poll(
        lambda: (h := operator.health())[0] == 500 and h,
        timeout=30,
        what="liveness to fail",
    )
    took = time.monotonic() - started
    print("CHAOS", json.dumps({"fault": "crash-loop", "liveness_failed_after": round(took, 1)}))
    assert any("timer" in p for p in body["problems"]), body
    assert took <= 30

"""Watch expiry (410 Gone): the operator's watches resume from a resourceVersion that is gone.

The operator talks to the API server through a TCP proxy that the test can cut. While it is cut
off, the world changes behind its back:

* a task is created (``born-in-gap``), one is deleted (``doomed``), one is suspended (``paused``);
* the active Job of a Forbid task (``stuck``, whose pods run forever) is deleted;
* etcd is compacted to its current revision, and the API server is restarted so that its watch
  cache, which would otherwise still serve the old revisions from memory, starts empty.

A probe watch from the resourceVersion the operator last saw then gets ``410 Gone``, so the
operator's watches must re-list. After the proxy lets it through again, a user expects nothing to
have been missed:

* the steady tasks have a Job for every slot, through the gap (``catchUp: All``);
* ``born-in-gap`` and a task created right after the compaction get Jobs;
* ``doomed`` gets no more Jobs and Events, ``paused`` starts no new run;
* ``stuck`` notices its Job is gone and starts a new run instead of skipping every slot (Forbid);
* the operator's ``nightshift_tasks`` gauge counts the tasks that exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from chaoslib import (
    Sampler,
    TcpProxy,
    cluster_component,
    duplicates,
    etcd_compact,
    job_key,
    job_slot,
    kubeconfig_via,
    missing_slots,
    now,
    traceback_count,
    ts,
)

from support.metrics import parse_metrics
from support.operator import Operator
from support.tasks import events, task
from support.wait import poll

STEP = timedelta(seconds=5)
GAP = 25.0  # seconds the operator is cut off (plus the API server restart)
STEADY = [f"steady-{i}" for i in range(4)]


def gauge(metrics: str, name: str) -> float | None:
    """The value of an unlabelled gauge (None when it is not there)."""
    return parse_metrics(metrics).get((name, frozenset()))


def list_version(cluster: Any, path: str) -> str:
    """The resourceVersion of a list (kubectl's -o json of a list leaves it empty)."""
    listed = json.loads(cluster.kubectl("get", "--raw", f"{path}?limit=1").stdout)
    return str(listed["metadata"]["resourceVersion"])


def watch_from(cluster: Any, path: str, resource_version: str) -> dict[str, Any]:
    """The first event of a watch from ``resource_version`` (the raw API, as the operator uses)."""
    res = cluster.kubectl(
        "get",
        "--raw",
        f"{path}?watch=1&resourceVersion={resource_version}&timeoutSeconds=2",
        check=False,
        timeout=30,
    )
    first = res.stdout.strip().splitlines()[:1]
    return json.loads(first[0]) if first else {}


@pytest.mark.timeout(900)
def test_watch_expiry_relists_and_misses_nothing(
    cluster: Any,
    crd: None,
    namespace: str,
    tmp_path: Path,
    operators: Callable[..., Operator],
    api_server_restored: None,
) -> None:
    api_port = int(cluster.server.rsplit(":", 1)[1])
    proxy = TcpProxy(api_port)
    proxied = kubeconfig_via(cluster.kubeconfig, proxy.port, tmp_path / "via-proxy.kubeconfig")
    operator = operators(proxied, namespaces=[namespace])
    operator.start()
    base: dict[str, Any] = {"interval": "5s", "history": {"succeeded": 100, "failed": 100}}
    steady = {
        **base,
        "catchUp": "All",
        "maxCatchUp": 50,
        "startingDeadlineSeconds": 300,
        "concurrencyPolicy": "Allow",
    }
    for name in STEADY:
        cluster.apply(task(name, **steady), namespace)
    cluster.apply(task("doomed", **base), namespace)
    cluster.apply(task("paused", **base), namespace)
    forever = {"test.nightshift.dev/run-for": "forever"}
    cluster.apply(
        task("stuck", pod_annotations=forever, concurrencyPolicy="Forbid", **base), namespace
    )
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    tasks_path = f"/apis/nightshift.dev/v1alpha1/namespaces/{namespace}/scheduledtasks"
    timings: dict[str, float] = {}
    try:
        with Sampler(cluster.kubeconfig, namespace, interval=0.5, jobs_every=0.5) as sampler:
            poll(
                lambda: {job_key(j)[0] for j in sampler.all_jobs()} >= {*STEADY, "stuck"},
                timeout=60,
                what="Jobs of every task",
            )
            time.sleep(6)
            # The newest resourceVersions the operator can have seen before it is cut off.
            seen_jobs = list_version(cluster, jobs_path)
            seen_tasks = list_version(cluster, tasks_path)
            cut_at = now()
            proxy.cut()
            stuck_jobs = [j for j in sampler.all_jobs() if job_key(j)[0] == "stuck"]
            cluster.kubectl("delete", "stask", "doomed", "-n", namespace, "--wait=false")
            doomed_at = now()
            cluster.kubectl(
                "patch", "stask", "paused", "-n", namespace, "--type=merge",
                "-p", '{"spec": {"suspend": true}}',
            )  # fmt: skip
            paused_at = now()
            for job in stuck_jobs:
                cluster.kubectl(
                    "delete", "job", job["metadata"]["name"], "-n", namespace,
                    "--cascade=background", "--wait=false", "--ignore-not-found",
                )  # fmt: skip
            cluster.apply(task("born-in-gap", **steady), namespace)
            time.sleep(max(0.0, GAP - (now() - cut_at).total_seconds()))
            revision = etcd_compact(cluster.state_dir)
            started = time.monotonic()
            cluster_component(cluster.state_dir, "stop", "kube-apiserver")
            cluster_component(cluster.state_dir, "start", "kube-apiserver")
            timings["API server restart"] = time.monotonic() - started
            probe_jobs = watch_from(cluster, jobs_path, seen_jobs)
            probe_tasks = watch_from(cluster, tasks_path, seen_tasks)
            proxy.restore()
            restored_at = now()
            cluster.apply(task("after-compaction", **steady), namespace)
            created_after = now()

            def has_jobs(name: str) -> Any:
                return [j for j in sampler.all_jobs() if job_key(j)[0] == name]

            first_born = poll(
                lambda: has_jobs("born-in-gap"), timeout=60, what="a Job of born-in-gap"
            )
            first_after = poll(
                lambda: has_jobs("after-compaction"), timeout=60, what="a Job of after-compaction"
            )
            time.sleep(20)
            sampler.sample_tasks()
            sampler.sample_jobs()
            end = now() - timedelta(seconds=4)  # slots up to here have had time to start
            metrics = operator.metrics()
    finally:
        logs = operator.logs()
        operator.stop()
        proxy.close()

    jobs = sampler.all_jobs()
    created = {
        name: ts(t["metadata"]["creationTimestamp"])
        for name, t in sampler.tasks.items()
        if name in {*STEADY, "born-in-gap", "after-compaction"}
    }
    lost = missing_slots(jobs, created, STEP, end)
    doomed_jobs = [
        j["metadata"]["name"]
        for j in jobs
        if job_key(j)[0] == "doomed" and ts(j["metadata"]["creationTimestamp"]) > doomed_at
    ]
    doomed_events = [
        e["reason"]
        for e in events(cluster, namespace, "doomed")
        if ts(e.get("firstTimestamp") or e["eventTime"]) > doomed_at
    ]
    paused_runs = [
        j["metadata"]["name"]
        for j in jobs
        if job_key(j)[0] == "paused" and (job_slot(j) or cut_at) > paused_at + STEP
    ]
    stuck_reasons = [
        e["reason"]
        for e in events(cluster, namespace, "stuck")
        if ts(e.get("firstTimestamp") or e["eventTime"]) > restored_at
    ]
    stuck_after = [
        j["metadata"]["name"]
        for j in jobs
        if job_key(j)[0] == "stuck" and (job_slot(j) or cut_at) > cut_at
    ]
    tasks_gauge = gauge(metrics, "nightshift_tasks")
    expected_tasks = len(STEADY) + 4  # + paused, stuck, born-in-gap, after-compaction
    born_delay = (ts(first_born[0]["metadata"]["creationTimestamp"]) - restored_at).total_seconds()
    after_delay = (
        ts(first_after[0]["metadata"]["creationTimestamp"]) - created_after
    ).total_seconds()
    print(
        f"\nwatch expiry: cut off {cut_at:%H:%M:%S} -> {restored_at:%H:%M:%S} "
        f"({(restored_at - cut_at).total_seconds():.0f} s, API server restart "
        f"{timings['API server restart']:.1f} s), etcd compacted at revision {revision}"
    )
    print(
        f"watch expiry: probe watch from the last seen resourceVersion: Jobs -> "
        f"{probe_jobs.get('object', {}).get('code')}, tasks -> "
        f"{probe_tasks.get('object', {}).get('code')} (410 = Gone)"
    )
    print(
        f"watch expiry: first Job of born-in-gap {born_delay:.1f} s after reconnect, of "
        f"after-compaction {after_delay:.1f} s after its creation; slots without a Job: "
        f"{sum(map(len, lost.values()))}; {len(duplicates(jobs))} duplicate keys"
    )
    print(
        f"watch expiry: after the gap: doomed (deleted) got {len(doomed_jobs)} Jobs and Events "
        f"{sorted(set(doomed_events))}; paused (suspended) started {len(paused_runs)} runs; "
        f"stuck (its Job deleted) started {len(stuck_after)} runs (Events since: "
        f"{ {r: stuck_reasons.count(r) for r in set(stuck_reasons)} }); nightshift_tasks = "
        f"{tasks_gauge} (tasks that exist: {expected_tasks}); "
        f"{traceback_count(logs)} Traceback lines; proxy accepted {proxy.accepted}, "
        f"refused {proxy.refused} connections"
    )
    assert probe_jobs.get("object", {}).get("code") == 410, probe_jobs
    assert probe_tasks.get("object", {}).get("code") == 410, probe_tasks
    problems = []
    if lost:
        problems.append(f"slots without a Job: {lost}")
    if duplicates(jobs):
        problems.append(f"duplicate Jobs: {duplicates(jobs)}")
    if doomed_jobs or doomed_events:
        problems.append(
            f"the deleted task still fires: Jobs {doomed_jobs}, Events {doomed_events[:5]}"
        )
    if paused_runs:
        problems.append(f"the suspended task still fires: {paused_runs}")
    if not stuck_after:
        problems.append("the Forbid task whose Job was deleted never started another run")
    if tasks_gauge != expected_tasks:
        problems.append(f"nightshift_tasks is {tasks_gauge}, {expected_tasks} tasks exist")
    assert not problems, "\n".join(problems)

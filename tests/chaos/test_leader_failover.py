"""Two replicas with leader election; whichever holds the Lease is killed with SIGKILL, again and
again, and restarted (as a new process, so with a new identity) for $NIGHTSHIFT_CHAOS_SECONDS.

A user expects no duplicate Job, no lost slot (``catchUp: All`` covers the takeover), a
``status.lastScheduleTime`` that never goes backwards, and each failover, from the kill to the first
Job the new leader creates, within 15 s. Every failover time and the maximum are printed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from chaoslib import (
    Sampler,
    budget,
    chaos_seconds,
    duplicates,
    explain_slots,
    missing_slots,
    now,
    traceback_count,
    ts,
)

from support.operator import Operator
from support.percentiles import percentile
from support.tasks import task
from support.wait import poll

TASKS = 5
STEP = timedelta(seconds=2)
FAILOVER_LIMIT = 15.0
AFTER_TAKEOVER = 4.0  # s the new leader works before it is killed in turn


def holder(cluster: Any, namespace: str) -> str | None:
    lease = cluster.kubectl(
        "get", "lease", "nightshift", "-n", namespace, "-o", "json", check=False
    )
    if lease.returncode != 0:
        return None
    identity = (json.loads(lease.stdout).get("spec") or {}).get("holderIdentity")
    return str(identity) if identity else None


@pytest.mark.timeout(budget(extra=600))
def test_killing_the_leader_in_a_loop_fails_over_fast_without_duplicates(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    args = ["--leader-elect", "--leader-election-namespace", namespace]
    replicas = [operators(namespaces=[namespace], extra_args=args, name=n) for n in ("a", "b")]
    for replica in replicas:
        replica.start()
    spec = {
        "interval": "2s",
        "concurrencyPolicy": "Allow",
        "startingDeadlineSeconds": 120,
        "catchUp": "All",
        "maxCatchUp": 60,
        "history": {"succeeded": 100, "failed": 100},
    }
    for i in range(TASKS):
        cluster.apply(task(f"ha-{i}", **spec), namespace)
    failovers: list[float] = []
    kills: list[str] = []
    try:
        with Sampler(cluster.kubeconfig, namespace, interval=1.0, jobs_every=0.5) as sampler:
            poll(lambda: len(sampler.all_jobs()) >= TASKS, timeout=60, what="a Job per task")
            deadline = time.monotonic() + chaos_seconds()
            while time.monotonic() < deadline:
                identity = poll(
                    lambda: holder(cluster, namespace), timeout=60, what="a lease holder"
                )
                leader = next(
                    (r for r in replicas if r.proc and identity.endswith(f"-{r.proc.pid}")), None
                )
                if leader is None:  # the Lease still names a killed process: wait for takeover
                    time.sleep(0.5)
                    continue
                killed = now()
                leader.kill()
                kills.append(f"{killed:%H:%M:%S.%f}"[:-3])

                def first_job_after(moment: Any = killed) -> Any:
                    sampler.sample_jobs()
                    fresh = [
                        ts(j["metadata"]["creationTimestamp"])
                        for j in sampler.all_jobs()
                        if ts(j["metadata"]["creationTimestamp"]) > moment
                    ]
                    return min(fresh) if fresh else None

                leader.start()  # back as a new process; either replica may win the Lease
                first = poll(first_job_after, timeout=60, what="a Job from the new leader")
                failovers.append((first - killed).total_seconds())
                time.sleep(AFTER_TAKEOVER)
            time.sleep(10)  # the last leader catches up and its Jobs are listed
            sampler.sample_jobs()
            sampler.sample_tasks()
            end = now() - timedelta(seconds=4)  # slots up to here have had time to start
    finally:
        logs = "\n".join(r.logs() for r in replicas)
        for replica in replicas:
            replica.stop()

    jobs = sampler.all_jobs()
    dups = duplicates(jobs)
    created = {name: ts(t["metadata"]["creationTimestamp"]) for name, t in sampler.tasks.items()}
    lost = missing_slots(jobs, created, STEP, end)
    print(
        f"\nleader failover: {len(failovers)} kills of the leader; failover (kill -> first Job) "
        f"s: {[round(f, 1) for f in failovers]}"
    )
    print(
        f"leader failover: max {max(failovers, default=0):.1f} s, median "
        f"{percentile(failovers, 50, empty=math.nan):.1f} s; {len(jobs)} Jobs, "
        f"{len(dups)} duplicate keys, {sum(map(len, lost.values()))} slots without a Job; "
        "lastScheduleTime sampled "
        f"{sampler.samples} times, {len(sampler.regressions)} went backwards; "
        f"{traceback_count(logs)} Traceback lines in the replicas' logs"
    )
    assert failovers, "no failover happened (duration too short?)"
    assert not dups, f"duplicate Jobs: {dups}"
    assert not lost, "slots without a Job:\n" + "\n".join(
        [f"kills at {kills}", *explain_slots(lost, sampler.tasks, jobs)]
    )
    assert not sampler.regressions, f"lastScheduleTime went backwards: {sampler.regressions}"
    assert max(failovers) <= FAILOVER_LIMIT, f"slowest failover {max(failovers):.1f} s"

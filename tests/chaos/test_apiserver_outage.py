"""API server outage: only kube-apiserver stops for 60 s (etcd, controllers, KWOK keep running).

Ten tasks fire every 5 s with ``catchUp: Latest``. The operator is *not* restarted. When the API
server is back, a user expects:

* the operator to notice by itself: a new Job within 30 s;
* catch-up by policy, per task: the newest slot that passed runs, every older one is recorded
  ``Missed``, one ``MissedSlots`` Warning Event says so, and no slot is lost without a record;
* no traceback storm in the operator's log (a handful at most; the count is printed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from chaoslib import (
    Sampler,
    cluster_component,
    duplicates,
    first_slot_after,
    interval_slots,
    job_key,
    job_slot,
    now,
    traceback_count,
    ts,
)

from support.operator import Operator
from support.tasks import reasons, status, task
from support.wait import poll

TASKS = 10
STEP = timedelta(seconds=5)
OUTAGE = 60.0
RECOVERY_LIMIT = 30.0
TRACEBACKS_ALLOWED = 5


@pytest.mark.timeout(900)
def test_apiserver_outage_recovers_and_catches_up_by_policy(
    cluster: Any,
    crd: None,
    namespace: str,
    operators: Callable[..., Operator],
    api_server_restored: None,
) -> None:
    operator = operators(namespaces=[namespace])
    operator.start()
    spec: dict[str, Any] = {
        "interval": "5s",
        "catchUp": "Latest",
        "startingDeadlineSeconds": 300,
        # Allow: the catch-up run must not be Skipped because a run from before the outage still
        # looks active (the Job controller was cut off from the API server too).
        "concurrencyPolicy": "Allow",
        "history": {"succeeded": 100, "failed": 100},
    }
    names = [f"outage-{i}" for i in range(TASKS)]
    for name in names:
        cluster.apply(task(name, **spec), namespace)
    with Sampler(cluster.kubeconfig, namespace, interval=1.0) as sampler:
        poll(lambda: len(sampler.all_jobs()) >= 2 * TASKS, timeout=60, what="two Jobs per task")
        logs_before = traceback_count(operator.logs())
        stop_took = cluster_component(cluster.state_dir, "stop", "kube-apiserver")
        down_at = now()
        time.sleep(OUTAGE)
        start_took = cluster_component(cluster.state_dir, "start", "kube-apiserver")
        up_at = now()

        def new_job() -> Any:
            fresh = [
                ts(j["metadata"]["creationTimestamp"])
                for j in sampler.all_jobs()
                if ts(j["metadata"]["creationTimestamp"]) >= up_at - timedelta(seconds=1)
            ]
            return min(fresh) if fresh else None

        first = poll(new_job, timeout=RECOVERY_LIMIT + 30, what="a Job after the outage")
        recovery = (first - up_at).total_seconds()
        time.sleep(15)  # later slots fire on time again; status and Events settle
        sampler.sample_tasks()
        sampler.sample_jobs()
        end = now() - timedelta(seconds=4)  # slots up to here have had time to start
    assert operator.proc is not None
    assert operator.proc.poll() is None, "the operator exited during the outage"
    logs = operator.logs()
    operator.stop()

    jobs = sampler.all_jobs()
    slots_with_job: dict[str, set[Any]] = {name: set() for name in names}
    for job in jobs:
        name, _, attempt = job_key(job)
        if attempt == 1 and (slot := job_slot(job)) is not None:
            slots_with_job[name].add(slot)
    report: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name in names:
        st = status(cluster, namespace, name)
        runs = st.get("runs") or []
        missed = sorted(ts(r["scheduledAt"]) for r in runs if r["result"] == "Missed")
        missed_events = reasons(cluster, namespace, name).count("MissedSlots")
        info: dict[str, Any] = {"missed": len(missed), "MissedSlots events": missed_events}
        report[name] = info
        if not missed:
            problems.append(f"{name}: no Missed run recorded")
            continue
        # Latest: the newest due slot ran; it is the first slot after the newest Missed one.
        after = [s for s in slots_with_job[name] if s > missed[-1]]
        catch_up = min(after) if after else None
        info["catch-up slot"] = catch_up.strftime("%H:%M:%S") if catch_up else None
        if catch_up != missed[-1] + STEP:
            problems.append(f"{name}: the slot after the newest Missed one has no Job")
        if missed_events != 1:
            problems.append(f"{name}: {missed_events} MissedSlots Events (want exactly 1)")
        if len(missed) < OUTAGE / STEP.total_seconds() - 2:
            problems.append(f"{name}: only {len(missed)} slots Missed in a {OUTAGE:.0f} s outage")
        # Nothing lost silently: every slot since creation has a Job or a Missed record.
        created = ts(sampler.tasks[name]["metadata"]["creationTimestamp"])
        accounted = slots_with_job[name] | set(missed)
        expected = interval_slots(first_slot_after(created, STEP), end, STEP)
        lost = [s for s in expected if s not in accounted]
        if lost:
            problems.append(f"{name}: slots neither run nor Missed: {lost}")
        between = [s for s in slots_with_job[name] if missed[0] <= s <= missed[-1]]
        if between:
            problems.append(f"{name}: Jobs for slots inside the Missed range: {between}")
    tracebacks = traceback_count(logs)
    print(
        f"\napiserver outage: stop took {stop_took:.1f} s, down {down_at:%H:%M:%S} -> up "
        f"{up_at:%H:%M:%S} ({(up_at - down_at).total_seconds():.0f} s, start took "
        f"{start_took:.1f} s); first Job {recovery:.1f} s after the API server was back"
    )
    print(f"apiserver outage: per task {report}")
    print(
        f"apiserver outage: {tracebacks} Traceback lines in the operator log "
        f"({logs_before} before the outage), {len(logs.splitlines())} log lines; "
        f"{len(duplicates(jobs))} duplicate keys"
    )
    assert recovery <= RECOVERY_LIMIT, f"first Job {recovery:.1f} s after the API server returned"
    assert not problems, "\n".join(problems)
    assert not duplicates(jobs)
    assert tracebacks <= TRACEBACKS_ALLOWED, f"{tracebacks} tracebacks in the operator log"

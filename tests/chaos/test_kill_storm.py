"""kill -9 storm: the operator is killed at random moments and restarted, again and again.

20 interval tasks (every 10 s, five of them failing with exit code 1 and retried once after 2 s),
``catchUp: All`` within a 300 s starting deadline, ``Allow`` and history limits high enough that
nothing is pruned. A seeded random loop SIGKILLs the operator every 0-30 s and starts it again, for
$NIGHTSHIFT_CHAOS_SECONDS. What a user would notice, and what is asserted:

* no (task, run, attempt) ever got two Jobs;
* every slot from the task's first one to the end has its attempt-1 Job (downtime is far shorter
  than the starting deadline, so catch-up runs every slot that passed while the operator was down);
* ``status.lastScheduleTime`` never went backwards (sampled every 0.5 s throughout);
* every failed attempt got exactly one retry, and nothing that succeeded was retried.

The seed is printed; ``NIGHTSHIFT_CHAOS_SEED`` replays a run.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from chaoslib import (
    Sampler,
    budget,
    chaos_seconds,
    duplicates,
    job_finished,
    job_key,
    job_slot,
    missing_slots,
    now,
    traceback_count,
    ts,
)

from support.operator import Operator
from support.percentiles import percentile
from support.tasks import task
from support.wait import poll

TASKS = 20
FAILING = {f"storm-{i:02d}" for i in range(0, TASKS, 4)}  # 5 of 20 fail (exit code 1)
STEP = timedelta(seconds=10)
SETTLE = 35  # s after the last restart: retries (2 s back-off) and catch-up finish
MARGIN = timedelta(seconds=15)  # slots this close to the final look may still be starting


@pytest.mark.timeout(budget(extra=900))
def test_kill9_storm_keeps_exactly_once_and_loses_nothing(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    seed = int(os.environ.get("NIGHTSHIFT_CHAOS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    duration = chaos_seconds()
    print(f"\nkill -9 storm: seed {seed}, {duration:.0f} s, {TASKS} tasks every {STEP.seconds} s")

    operator = operators(namespaces=[namespace])
    operator.start()
    spec: dict[str, Any] = {
        "interval": "10s",
        "startingDeadlineSeconds": 300,
        "catchUp": "All",
        "maxCatchUp": 50,
        "concurrencyPolicy": "Allow",
        "history": {"succeeded": 100, "failed": 100},
        "retry": {"maxRetries": 1, "backoff": {"initial": "2s", "jitter": False}},
    }
    names = [f"storm-{i:02d}" for i in range(TASKS)]
    for name in names:
        annotations = {"test.nightshift.dev/exit-code": "1"} if name in FAILING else None
        cluster.apply(task(name, pod_annotations=annotations, **spec), namespace)

    restarts: list[float] = []  # seconds from kill -9 until the new process was ready
    with Sampler(cluster.kubeconfig, namespace) as sampler:
        poll(lambda: len(sampler.all_jobs()) >= TASKS, timeout=60, what="a first Job per task")
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, rng.uniform(0, 30)))
            if time.monotonic() >= deadline:
                break
            operator.kill()
            killed = time.monotonic()
            operator.start()
            restarts.append(time.monotonic() - killed)
        chaos_end = now()
        time.sleep(SETTLE)
        sampler.sample_tasks()
        sampler.sample_jobs()
    final = now()
    logs = operator.logs()
    operator.stop()

    jobs = sampler.all_jobs()
    created = {name: ts(t["metadata"]["creationTimestamp"]) for name, t in sampler.tasks.items()}
    dups = duplicates(jobs)
    lost = missing_slots(jobs, created, STEP, final - MARGIN)
    attempts: dict[tuple[str, str], set[int]] = defaultdict(set)
    results: dict[tuple[str, str, int], str | None] = {}
    for job in jobs:
        name, run, attempt = job_key(job)
        slot = job_slot(job)
        if slot is not None and slot <= final - MARGIN - STEP:
            attempts[(name, run)].add(attempt)
            results[(name, run, attempt)] = job_finished(job)
    bad_retries = {
        key: sorted(found)
        for key, found in attempts.items()
        if found != ({1, 2} if key[0] in FAILING else {1})
    }
    retried = sum(1 for found in attempts.values() if 2 in found)
    unfinished = [k for k, v in results.items() if v is None]

    print(
        f"kill -9 storm: {len(restarts)} kills; restart to ready median "
        f"{percentile(restarts, 50, empty=math.nan):.1f} s, max {max(restarts, default=0):.1f} s"
    )
    print(
        f"kill -9 storm: {len(jobs)} Jobs seen, {len(attempts)} runs checked "
        f"(slots up to {(final - MARGIN - STEP):%H:%M:%S}), {retried} retries, "
        f"{len(dups)} duplicate keys, {sum(map(len, lost.values()))} slots without a Job, "
        f"{len(bad_retries)} runs with a wrong attempt set, {len(unfinished)} unfinished Jobs"
    )
    print(
        f"kill -9 storm: lastScheduleTime sampled {sampler.samples} times "
        f"({sampler.errors} failed samples), {len(sampler.regressions)} went backwards; "
        f"{traceback_count(logs)} Traceback lines in the operator logs; chaos ended "
        f"{chaos_end:%H:%M:%S}, final look {final:%H:%M:%S}"
    )
    assert restarts, "the loop never killed the operator (duration too short?)"
    assert not dups, f"duplicate Jobs: {dups}"
    assert not lost, f"slots without an attempt-1 Job: {lost}"
    assert not sampler.regressions, f"lastScheduleTime went backwards: {sampler.regressions}"
    assert not bad_retries, (
        f"runs whose attempts are not exactly 1 (+2 when failing): {bad_retries}"
    )

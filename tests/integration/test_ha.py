"""Two operator replicas with a Lease: only the holder fires; kill -9 of the holder fails over."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.operator import Operator
from support.tasks import jobs, task, ts
from support.wait import poll


def holder(cluster: Any, namespace: str) -> str | None:
    lease = cluster.kubectl(
        "get", "lease", "nightshift", "-n", namespace, "-o", "json", check=False
    )
    if lease.returncode != 0:
        return None
    import json

    spec = json.loads(lease.stdout).get("spec") or {}
    return spec.get("holderIdentity")


def test_failover_after_kill9_has_no_duplicates_and_no_lost_slots(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    args = ["--leader-elect", "--leader-election-namespace", namespace]
    replicas = [
        Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace], extra_args=args, name=n)
        for n in ("a", "b")
    ]
    for replica in replicas:
        replica.start()
    try:
        spec = {
            "interval": "2s",
            "concurrencyPolicy": "Allow",
            "startingDeadlineSeconds": 60,
            "catchUp": "All",
            "maxCatchUp": 30,
            "history": {"succeeded": 50, "failed": 50},
        }
        for i in range(5):
            cluster.apply(task(f"ha-{i}", **spec), namespace)
        leader_id = poll(lambda: holder(cluster, namespace), timeout=30, what="a lease holder")
        leader = next(r for r in replicas if r.proc and leader_id.endswith(f"-{r.proc.pid}"))
        follower = next(r for r in replicas if r is not leader)
        time.sleep(6)  # the leader fires a few slots
        killed = datetime.now(UTC)
        leader.kill()
        new_id = poll(
            lambda: (h := holder(cluster, namespace)) and h != leader_id and h,
            timeout=30,
            what="the follower to take the lease",
        )
        assert follower.proc is not None
        assert new_id.endswith(f"-{follower.proc.pid}")

        def fired_after_kill() -> datetime | None:
            created = [
                ts(j["metadata"]["creationTimestamp"])
                for j in jobs(cluster, namespace)
                if ts(j["metadata"]["creationTimestamp"]) > killed
            ]
            return min(created) if created else None

        first = poll(fired_after_kill, timeout=30, what="a Job from the new leader")
        takeover = (first - killed).total_seconds()
        print(f"failover: first Job {takeover:.1f} s after kill -9 of the leader")
        assert takeover <= 15
        time.sleep(6)
        end = datetime.now(UTC) - timedelta(seconds=3)
        per_task: dict[str, list[datetime]] = defaultdict(list)
        seen: set[tuple[str, str, str]] = set()
        for job in jobs(cluster, namespace):
            meta = job["metadata"]
            key = (
                meta["labels"]["nightshift.dev/task"],
                meta["annotations"]["nightshift.dev/run"],
                meta["annotations"]["nightshift.dev/attempt"],
            )
            assert key not in seen, f"duplicate Job for {key}"
            seen.add(key)
            per_task[key[0]].append(ts(meta["annotations"]["nightshift.dev/scheduled-at"]))
        assert len(per_task) == 5
        for name, slots in per_task.items():
            slots.sort()
            expected = [
                slots[0] + timedelta(seconds=2 * i)
                for i in range(int((end - slots[0]).total_seconds() // 2) + 1)
            ]
            missing = sorted(set(expected) - set(slots))
            assert not missing, f"{name}: slots without a Job: {missing}"
    finally:
        for replica in replicas:
            replica.stop()


def test_clean_shutdown_hands_the_lease_over_at_once(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    args = ["--leader-elect", "--leader-election-namespace", namespace]
    replicas = [
        Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace], extra_args=args, name=n)
        for n in ("a", "b")
    ]
    for replica in replicas:
        replica.start()
    try:
        cluster.apply(task("handover", interval="2s", concurrencyPolicy="Allow"), namespace)
        leader_id = poll(lambda: holder(cluster, namespace), timeout=30, what="a lease holder")
        leader = next(r for r in replicas if r.proc and leader_id.endswith(f"-{r.proc.pid}"))
        poll(lambda: jobs(cluster, namespace, "handover"), timeout=20, what="a first Job")
        asked = datetime.now(UTC)
        leader.stop()  # SIGTERM, as in a rolling update; returns when the process has exited
        stopped = datetime.now(UTC)
        new_id = poll(
            lambda: (h := holder(cluster, namespace)) and h != leader_id and h,
            timeout=15,
            what="the follower to take the lease",
        )
        took = (datetime.now(UTC) - stopped).total_seconds()
        shutdown = (stopped - asked).total_seconds()
        print(f"handover: shutdown {shutdown:.1f} s, then lease taken by {new_id} in {took:.1f} s")
        # Released, not waited out: the follower's next 2 s attempt takes it (the lease lasts 10 s).
        assert took < 5
    finally:
        for replica in replicas:
            replica.stop()

"""Scale-out by shards on the local control plane: the API server picks the tasks our hash puts in
each shard; three replicas share six shards and create every Job once; a replica killed with
SIGKILL has its shards taken within 15 s; rescaling 1 -> 3 -> 2 replicas loses and repeats no
slot.

The tasks fire every 4 s with ``catchUp: All`` and ``Allow``, so a slot that falls in a handover
is run late rather than lost, and every slot in the test's window must have exactly one Job.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from nightshift.jobs import LABEL_BUCKET, build_job, run_id_for_slot
from nightshift.kube import KubeClient
from nightshift.models import parse_spec
from nightshift.sharding import bucket, shard_of, shard_selector
from nightshift.shards import detect_server_filtering
from support.operator import Operator
from support.tasks import task, ts
from support.wait import poll

STEP = timedelta(seconds=4)
SPEC = {
    "interval": "4s",
    "concurrencyPolicy": "Allow",
    "startingDeadlineSeconds": 120,
    "catchUp": "All",
    "maxCatchUp": 60,
    "history": {"succeeded": 100, "failed": 100},
}
TASKS = 12
SHARDS = 6
FAILOVER_LIMIT = 15.0


def apply_all(cluster: Any, namespace: str, bodies: list[dict[str, Any]]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": bodies}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(items))


def holders(cluster: Any, namespace: str) -> dict[int, str]:
    """Shard -> holder identity, from the shard Leases."""
    leases = cluster.get("leases", "-n", namespace, "-l", "nightshift.dev/lease-role=shard")[
        "items"
    ]
    return {
        int(lease["metadata"]["labels"]["nightshift.dev/shard"]): holder
        for lease in leases
        if (holder := (lease.get("spec") or {}).get("holderIdentity"))
    }


def held_by(cluster: Any, namespace: str, replicas: list[Operator]) -> dict[str, list[int]]:
    """Replica name -> the shards it holds (by the pid at the end of its identity)."""
    out: dict[str, list[int]] = {r.name: [] for r in replicas}
    for shard, identity in sorted(holders(cluster, namespace).items()):
        for replica in replicas:
            if replica.proc is not None and identity.endswith(f"-{replica.proc.pid}"):
                out[replica.name].append(shard)
    return out


def shares(cluster: Any, namespace: str, replicas: list[Operator]) -> list[int]:
    return sorted(len(v) for v in held_by(cluster, namespace, replicas).values())


def start(cluster: Any, tmp_path: Path, namespace: str, name: str) -> Operator:
    args = ["--shards", str(SHARDS), "--leader-election-namespace", namespace]
    replica = Operator(
        cluster.kubeconfig, tmp_path, namespaces=[namespace], extra_args=args, name=name
    )
    return replica.start()


@pytest.fixture
def replicas() -> Iterator[list[Operator]]:
    """The replicas a test starts; every one still running is stopped afterwards."""
    started: list[Operator] = []
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


def created_tasks(cluster: Any, namespace: str) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["name"]: t for t in cluster.get("stask", "-n", namespace)["items"]}


def check_every_slot_once(cluster: Any, namespace: str, until: datetime) -> list[str]:
    """Problems: a (task, run, attempt) with two Jobs, or a slot in (creation, until] without
    one. Every task must also have fired."""
    problems = []
    seen: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    slots: dict[str, set[datetime]] = defaultdict(set)
    for job in cluster.get("jobs", "-n", namespace)["items"]:
        meta = job["metadata"]
        key = (
            meta["labels"]["nightshift.dev/task"],
            meta["annotations"]["nightshift.dev/run"],
            meta["annotations"]["nightshift.dev/attempt"],
        )
        seen[key].append(meta["name"])
        slots[key[0]].add(ts(meta["annotations"]["nightshift.dev/scheduled-at"]))
    problems += [f"duplicate Jobs for {k}: {v}" for k, v in seen.items() if len(v) > 1]
    for name, body in created_tasks(cluster, namespace).items():
        created = ts(body["metadata"]["creationTimestamp"])
        step = STEP.total_seconds()
        slot = datetime.fromtimestamp((created.timestamp() // step + 1) * step, UTC)
        while slot <= until:
            if slot not in slots[name]:
                problems.append(f"{name}: no Job for the slot {slot:%H:%M:%S}")
            slot += STEP
    return problems


# --- the hash is the API server's -------------------------------------------------------------


def test_the_api_server_picks_the_tasks_our_hash_puts_in_each_shard(
    cluster: Any, crd: None, namespace: str
) -> None:
    spec = {**SPEC, "suspend": True}
    apply_all(cluster, namespace, [task(f"h-{i:02d}", **spec) for i in range(48)])
    uids = {name: t["metadata"]["uid"] for name, t in created_tasks(cluster, namespace).items()}
    base = f"/apis/nightshift.dev/v1alpha1/namespaces/{namespace}/scheduledtasks"
    for shards in (3, 6):
        for i in range(shards):
            selector = urllib.parse.quote(shard_selector(i, shards))
            listed = json.loads(
                cluster.kubectl("get", "--raw", f"{base}?shardSelector={selector}").stdout
            )
            names = {item["metadata"]["name"] for item in listed["items"]}
            expected = {n for n, uid in uids.items() if shard_of(bucket(uid), shards) == i}
            assert names == expected, f"shard {i} of {shards}"
    before = k8s.Configuration.get_default_copy()
    k8s_config.load_kube_config(config_file=str(cluster.kubeconfig))
    api = KubeClient(timeout=(5, 10))
    try:
        assert asyncio.run(detect_server_filtering(api, namespace)) is True
    finally:
        api.close()
        k8s.Configuration.set_default(before)


# --- replicas ---------------------------------------------------------------------------------


def test_three_replicas_share_the_shards_and_a_killed_ones_move_within_15_s(
    cluster: Any, crd: None, namespace: str, tmp_path: Path, replicas: list[Operator]
) -> None:
    for name in ("a", "b", "c"):
        replicas.append(start(cluster, tmp_path, namespace, name))
    apply_all(cluster, namespace, [task(f"s-{i:02d}", **SPEC) for i in range(TASKS)])
    poll(
        lambda: shares(cluster, namespace, replicas) == [2, 2, 2],
        timeout=30,
        what="two shards held by each replica",
    )
    time.sleep(10)  # every task fires a few slots
    assert not check_every_slot_once(cluster, namespace, datetime.now(UTC) - timedelta(seconds=3))

    victim = replicas[0]
    lost = held_by(cluster, namespace, replicas)[victim.name]
    orphans = {
        name
        for name, body in created_tasks(cluster, namespace).items()
        if shard_of(bucket(body["metadata"]["uid"]), SHARDS) in lost
    }
    killed = datetime.now(UTC)
    victim.kill()
    survivors = replicas[1:]
    poll(
        lambda: shares(cluster, namespace, survivors) == [3, 3],
        timeout=30,
        what="the survivors to hold three shards each",
    )
    moved = (datetime.now(UTC) - killed).total_seconds()

    def first_job_after_kill() -> datetime | None:
        created = [
            ts(job["metadata"]["creationTimestamp"])
            for job in cluster.get("jobs", "-n", namespace)["items"]
            if job["metadata"]["labels"]["nightshift.dev/task"] in orphans
            and ts(job["metadata"]["creationTimestamp"]) > killed
        ]
        return min(created) if created else None

    first = poll(first_job_after_kill, timeout=30, what="a Job of the killed replica's tasks")
    fired = (first - killed).total_seconds()
    print(f"kill -9: shards {lost} taken within {moved:.1f} s; first Job after {fired:.1f} s")
    assert orphans, "the killed replica's shards had no task"
    # creationTimestamp has whole seconds: 1 s of slack.
    assert fired <= FAILOVER_LIMIT + 1
    time.sleep(8)
    problems = check_every_slot_once(cluster, namespace, datetime.now(UTC) - timedelta(seconds=3))
    assert not problems, "\n".join(problems)


def test_rescaling_from_one_to_three_to_two_replicas_repeats_and_loses_no_slot(
    cluster: Any, crd: None, namespace: str, tmp_path: Path, replicas: list[Operator]
) -> None:
    replicas.append(start(cluster, tmp_path, namespace, "a"))
    apply_all(cluster, namespace, [task(f"r-{i:02d}", **SPEC) for i in range(TASKS)])
    poll(lambda: shares(cluster, namespace, replicas) == [6], timeout=30, what="a with 6")
    time.sleep(6)
    for name in ("b", "c"):
        replicas.append(start(cluster, tmp_path, namespace, name))
    poll(
        lambda: shares(cluster, namespace, replicas) == [2, 2, 2],
        timeout=30,
        what="1 -> 3: two shards each",
    )
    time.sleep(6)
    replicas[2].stop()  # SIGTERM, as when the Deployment scales down
    poll(
        lambda: shares(cluster, namespace, replicas[:2]) == [3, 3],
        timeout=15,
        what="3 -> 2: three shards each",
    )
    time.sleep(6)
    problems = check_every_slot_once(cluster, namespace, datetime.now(UTC) - timedelta(seconds=3))
    assert not problems, "\n".join(problems)


def test_without_server_filtering_tasks_and_old_jobs_get_bucket_labels_and_fire_once(
    cluster: Any, crd: None, namespace: str, tmp_path: Path, replicas: list[Operator]
) -> None:
    """``--shard-filter label``, what a cluster without ShardedListAndWatch gets: the labeller
    labels the tasks and a Job an older operator made, and each shard selects them by label."""
    legacy_task = {**task("legacy", interval="1h"), "metadata": {"name": "legacy"}}
    cluster.apply(legacy_task, namespace)
    uid = cluster.get("stask", "legacy", "-n", namespace)["metadata"]["uid"]
    job = build_job(
        task_name="legacy",
        task_uid=uid,
        spec=parse_spec(legacy_task["spec"]),
        run=run_id_for_slot(datetime(2026, 1, 1, tzinfo=UTC)),
        attempt=1,
        slot=datetime(2026, 1, 1, tzinfo=UTC),
    )
    del job["metadata"]["labels"][LABEL_BUCKET]  # as made before shards existed
    cluster.apply(job, namespace)
    apply_all(cluster, namespace, [task(f"l-{i:02d}", **SPEC) for i in range(8)])
    args = ["--shards", "4", "--shard-filter", "label", "--leader-election-namespace", namespace]
    for name in ("a", "b"):
        replica = Operator(
            cluster.kubeconfig, tmp_path, namespaces=[namespace], extra_args=args, name=name
        )
        replicas.append(replica.start())
    poll(lambda: shares(cluster, namespace, replicas) == [2, 2], timeout=30, what="2 shards each")
    poll(
        lambda: all(
            t["metadata"].get("labels", {}).get(LABEL_BUCKET) == str(bucket(t["metadata"]["uid"]))
            for t in created_tasks(cluster, namespace).values()
        ),
        timeout=15,
        what="every task labelled with its bucket",
    )
    labelled = cluster.get("job", job["metadata"]["name"], "-n", namespace)["metadata"]["labels"]
    assert labelled[LABEL_BUCKET] == str(bucket(uid))
    time.sleep(10)
    problems = check_every_slot_once(cluster, namespace, datetime.now(UTC) - timedelta(seconds=3))
    # "legacy" fires hourly: its only Job is the old one.
    problems = [p for p in problems if not p.startswith("legacy:")]
    assert not problems, "\n".join(problems)


# --- Backfills under shards -----------------------------------------------------------------------


def test_two_replicas_run_each_backfill_once_in_the_shard_of_its_task(
    cluster: Any, crd: None, namespace: str, tmp_path: Path, replicas: list[Operator]
) -> None:
    """Every shard's controller watches every Backfill; only the shard of its task plans and runs
    it, so each Backfill is planned once, each slot gets one Job (with the task's bucket label),
    and a Backfill whose task does not exist is reported once."""
    for name in ("a", "b"):
        replicas.append(start(cluster, tmp_path, namespace, name))
    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(seconds=now.second % 10)
    names = [f"bf-{i}" for i in range(4)]
    bodies = [
        task(
            name,
            interval="10s",
            anchor=anchor.strftime("%Y-%m-%dT%H:%M:%SZ"),
            suspend=True,  # the schedule runs nothing: every Job is a Backfill's
            history={"succeeded": 50},
            pod_annotations={"test.nightshift.dev/run-for": "1s"},
        )
        for name in names
    ]
    apply_all(cluster, namespace, bodies)
    uids = {n: t["metadata"]["uid"] for n, t in created_tasks(cluster, namespace).items()}
    start_at, end = anchor - timedelta(seconds=50), anchor - timedelta(seconds=1)

    def backfill(name: str, task_name: str) -> dict[str, Any]:
        return {
            "apiVersion": "nightshift.dev/v1alpha1",
            "kind": "Backfill",
            "metadata": {"name": name},
            "spec": {
                "taskRef": {"name": task_name},
                "from": start_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "parallelism": 5,
            },
        }

    apply_all(
        cluster,
        namespace,
        [backfill(f"past-{n}", n) for n in names] + [backfill("orphan", "no-such-task")],
    )
    poll(lambda: shares(cluster, namespace, replicas) == [3, 3], timeout=30, what="3 shards each")

    def done() -> dict[str, dict[str, Any]] | None:
        items = cluster.get("backfills", "-n", namespace)["items"]
        found = {b["metadata"]["name"]: b.get("status") or {} for b in items}
        ok = all(found.get(f"past-{n}", {}).get("phase") == "Succeeded" for n in names)
        return found if ok else None

    found = poll(done, timeout=120, what="every Backfill to succeed")
    assert {found[f"past-{n}"]["progress"] for n in names} == {"5/5"}
    assert found["orphan"]["conditions"][0]["reason"] == "TaskNotFound"
    all_jobs = cluster.get("jobs", "-n", namespace)["items"]
    for n in names:
        ours = [
            j
            for j in all_jobs
            if j["metadata"]["labels"].get("nightshift.dev/backfill") == f"past-{n}"
        ]
        assert len(ours) == 5, n
        assert {j["metadata"]["labels"][LABEL_BUCKET] for j in ours} == {str(bucket(uids[n]))}

    def counts() -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for e in cluster.get("events", "-n", namespace)["items"]:
            if e["involvedObject"].get("kind") == "Backfill":
                key = (e["involvedObject"]["name"], e["reason"])
                found[key] = found.get(key, 0) + int(e.get("count") or 1)
        return found

    expected = {("orphan", "TaskNotFound"): 1}
    for n in names:
        expected |= {
            (f"past-{n}", "BackfillPlanned"): 1,
            (f"past-{n}", "RunStarted"): 5,
            (f"past-{n}", "BackfillComplete"): 1,
        }

    # Events are written behind the status (and a repeated one is a count on the first): wait
    # for them, then check that none came twice. (A Backfill planned before the shards settled
    # may have been run by both replicas in turn: each Job's start is still announced once.)
    short: dict[tuple[str, str], str] = {}

    def all_there() -> dict[tuple[str, str], int] | None:
        found = counts()
        short.clear()
        short.update(
            {k: f"{found.get(k, 0)} of {v}" for k, v in expected.items() if found.get(k, 0) < v}
        )
        return None if short else found

    try:
        got = poll(all_there, timeout=30, what="every Backfill's Events")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; short: {short}") from None
    assert {k: got[k] for k in expected} == expected

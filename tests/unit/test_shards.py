"""Shards (``nightshift.shards``) over the in-memory API server: replicas announce themselves, take
their fair share of the shard Leases, give back what is above it, stop a shard they cannot renew,
take a dead replica's shards once its Leases expire, and run one controller per shard that sees
only that shard's tasks and Jobs.

Each replica is a ``ShardManager`` whose rounds the test runs by hand (``step``), with a
monotonic clock that moves only when told: a round is what the manager's loop does every 2 s.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from fakekube import FakeClock, FakeKube, Monotonic

from nightshift import memory
from nightshift.api import ApiError
from nightshift.jobs import LABEL_MANAGED
from nightshift.leader import LeaseTiming
from nightshift.sharding import (
    LABEL_BUCKET,
    bucket,
    bucket_label_selector,
    shard_of,
    shard_selector,
)
from nightshift.shards import (
    LABEL_GROUP,
    ShardManager,
    detect_server_filtering,
    member_lease_name,
    shard_lease_name,
)
from nightshift.supervise import Supervisor
from nightshift.workqueue import Backoff

OPS = "ops"  # where the Leases live
NS = "school"
TEMPLATE: dict[str, Any] = {
    "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
}
SPEC = {"schedule": "0 * * * *", "jobTemplate": TEMPLATE}


@pytest.fixture(autouse=True)
def _no_gc_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "freeze", lambda: None)


class Cluster:
    """The fake API server, a clock, and replicas (shard managers) sharing them."""

    def __init__(self) -> None:
        self.clock = FakeClock("2026-03-01T02:59:30Z")
        self.mono = Monotonic()
        self.fake = FakeKube(self.clock)
        self.replicas: dict[str, ShardManager] = {}

    def replica(self, name: str, shards: int = 6) -> ShardManager:
        manager = ShardManager(
            self.fake,
            namespace=OPS,
            name="nightshift",
            identity=name,
            shards=shards,
            clock=self.mono,
            wall=self.clock,
            controller_clock=self.clock,
            workers=1,
            make_supervisor=lambda: Supervisor(
                backoff=Backoff(initial=0.001, jitter=0.0), clock=self.mono
            ),
        )
        self.replicas[name] = manager
        return manager

    async def round(self, *names: str, seconds: float = 2.0) -> None:
        """Move the clock by a retry period, then let the named replicas (default: all) each run
        a round, as their loops would, and let their controllers run."""
        self.mono.advance(seconds)
        for name in names or tuple(self.replicas):
            manager = self.replicas[name]
            await manager.step()
            await manager.drop_lapsed()
        await settle()

    def holders(self) -> dict[int, str]:
        """Shard -> holder, as the shard Leases say."""
        out = {}
        for (_, name), lease in self.fake.leases.items():
            if "-shard-" in name and lease["spec"].get("holderIdentity"):
                out[int(name.rsplit("-", 1)[1])] = lease["spec"]["holderIdentity"]
        return out

    async def stop(self) -> None:
        for manager in self.replicas.values():
            for shard in list(manager.held):
                await manager._stop(shard, "released")


async def settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


def scenario(body: Callable[[Cluster], Coroutine[Any, Any, None]]) -> None:
    async def run() -> None:
        cluster = Cluster()
        try:
            await body(cluster)
        finally:
            await cluster.stop()

    asyncio.run(run())


def tasks_by_shard(manager: ShardManager) -> dict[int, set[str]]:
    return {i: {key[1] for key in h.controller.store.entries} for i, h in manager.held.items()}


# --- taking shards -----------------------------------------------------------------------------


def test_a_lone_replica_announces_itself_then_takes_every_shard() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a")
        await c.round()
        # The first round only announces: replicas started together see each other first.
        assert [name for _, name in c.fake.leases] == [member_lease_name("nightshift", "a")]
        assert a.held == {}
        await c.round()
        assert c.holders() == dict.fromkeys(range(6), "a")
        lease = c.fake.leases[OPS, shard_lease_name("nightshift", 3)]
        assert lease["metadata"]["labels"] == {
            LABEL_GROUP: "nightshift",
            "nightshift.dev/lease-role": "shard",
            "nightshift.dev/shard": "3",
            "nightshift.dev/shards": "6",
        }
        assert sorted(a.held) == list(range(6))

    scenario(body)


def test_a_replica_that_joins_gets_its_share_from_the_one_that_had_everything() -> None:
    async def body(c: Cluster) -> None:
        c.replica("a")
        await c.round()
        await c.round()
        assert len(c.holders()) == 6
        c.replica("b")
        await c.round("b")  # b announces itself
        await c.round("a")  # a sees two replicas: it keeps 3 and gives 3 back
        assert len(c.replicas["a"].held) == 3
        given_back = set(range(6)) - set(c.replicas["a"].held)
        assert all(
            c.fake.leases[OPS, shard_lease_name("nightshift", i)]["spec"]["holderIdentity"] == ""
            for i in given_back
        )
        await c.round("b")  # released, not expired: taken at once
        assert set(c.replicas["b"].held) == given_back
        assert sorted(c.holders().values()) == ["a"] * 3 + ["b"] * 3
        await c.round()
        await c.round()
        assert sorted(c.holders().values()) == ["a"] * 3 + ["b"] * 3  # and it stays so

    scenario(body)


def test_three_replicas_started_together_hold_two_shards_each() -> None:
    async def body(c: Cluster) -> None:
        for name in ("a", "b", "c"):
            c.replica(name)
        for _ in range(4):
            await c.round()
        assert sorted(c.holders()) == list(range(6))
        assert {name: len(m.held) for name, m in c.replicas.items()} == {"a": 2, "b": 2, "c": 2}

    scenario(body)


# --- losing shards ------------------------------------------------------------------------------


def test_a_shard_renewed_late_does_what_it_skipped_while_it_lapsed() -> None:
    """A replica whose event loop was too busy to renew within the renew deadline (the scale
    benchmark: 12,000 new tasks at once) skips syncs and writes meanwhile; renewed (nobody took
    the shard), it must do them: 3,049 first-look status writes stayed unwritten for good."""

    async def body(c: Cluster) -> None:
        a = c.replica("a", shards=1)
        c.fake.create_task(NS, "first", SPEC)
        await c.round()
        await c.round()
        await settle()
        assert c.fake.tasks[NS, "first"].get("status", {}).get("nextScheduleTime")
        c.mono.advance(8.0)  # no round for 8 s: past the renew deadline (7 s)
        assert not a.holds(0)
        late = c.fake.create_task(NS, "late", SPEC)
        a.held[0].controller.task_event("ADDED", late)  # as its watch delivers it
        await settle()
        assert not c.fake.tasks[NS, "late"].get("status")  # skipped: it may not act now
        await c.round(seconds=0.0)  # the late renewal
        assert a.holds(0)
        await settle()
        assert c.fake.tasks[NS, "late"]["status"]["nextScheduleTime"]

    scenario(body)


def test_the_leases_are_renewed_while_the_main_event_loop_is_busy() -> None:
    """A replica that takes shards holding many tasks looks at each of them on its main event
    loop, for minutes (the scale benchmark: 50,000 tasks on one replica). Renewals waiting behind
    that work came after the renew deadline, and the replica dropped its shards and took them
    again in a loop. The Leases are kept from a thread of their own: busy for longer than the
    renew deadline, the replica still holds its shards, renewed meanwhile."""
    timing = LeaseTiming(duration=3.0, renew_deadline=2.0, retry_period=0.25)

    async def body() -> None:
        fake = FakeKube()
        a = ShardManager(
            fake, namespace=OPS, name="nightshift", identity="a", shards=2, timing=timing, workers=1
        )
        run = asyncio.create_task(a.run())
        try:
            waited = time.monotonic() + 20.0
            while sorted(a.held) != [0, 1]:
                assert time.monotonic() < waited, "the shards were never taken"
                await asyncio.sleep(0.05)
            names = [shard_lease_name("nightshift", i) for i in (0, 1)]
            before = [fake.leases[OPS, name]["spec"]["renewTime"] for name in names]
            busy = time.monotonic() + 3.0  # past the renew deadline and the lease duration
            while time.monotonic() < busy:
                pass  # Python work on the main loop, which never yields
            assert a.holds(0)
            assert a.holds(1)
            after = [fake.leases[OPS, name]["spec"]["renewTime"] for name in names]
            assert all(late > early for early, late in zip(before, after, strict=True))
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        # The Lease loop has ended with run(): a clean shutdown gives the shards back for good.
        await a.release_all()
        assert a.held == {}
        assert a.renewed == {}
        holders = [fake.leases[OPS, name]["spec"]["holderIdentity"] for name in names]
        assert holders == ["", ""]
        await asyncio.sleep(2 * timing.retry_period)
        holders = [fake.leases[OPS, name]["spec"]["holderIdentity"] for name in names]
        assert holders == ["", ""]

    asyncio.run(body())


def test_a_shard_that_cannot_be_renewed_stops_before_its_lease_can_expire_elsewhere() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a", shards=2)
        c.fake.create_task(NS, "t", SPEC)
        await c.round()
        await c.round()
        assert sorted(a.held) == [0, 1]
        controllers = a.controllers()
        c.fake.fail("replace_lease", ApiError("etcd timeout (HTTP 504)", status=504), times=None)
        await c.round()
        await c.round()
        await c.round()  # 6 s without a renewal: still within the renew deadline (7 s)
        assert sorted(a.held) == [0, 1]
        assert all(a.holds(i) for i in (0, 1))
        await c.round()  # 8 s: stopped, though nobody else has the lease yet (it lasts 10 s)
        assert a.held == {}
        assert a.controllers() == []
        assert all(not c.running for c in controllers)
        assert a.tasks() == 0  # what the shards held in memory is gone
        c.fake.heal()
        await c.round()  # the Leases still name a: a takes them back
        assert sorted(a.held) == [0, 1]

    scenario(body)


def test_a_stopped_shard_leaves_nothing_behind_in_memory() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a", shards=2)
        for i in range(20):
            c.fake.create_task(NS, f"t{i}", SPEC)
        await c.round()
        await c.round()
        assert a.tasks() == 20
        gone = [weakref.ref(h.controller) for h in a.held.values()]
        stores = [weakref.ref(h.controller.store) for h in a.held.values()]
        await a.release(0)
        await a.release(1)
        await settle()
        gc.collect()
        assert [ref() for ref in gone + stores] == [None] * 4

    scenario(body)


def test_only_the_shard_still_held_creates_jobs_when_the_slot_comes() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a", shards=2)
        names = [f"t{i}" for i in range(12)]
        for name in names:
            c.fake.create_task(NS, name, SPEC)
        await c.round()
        await c.round()
        controllers = {i: h.controller for i, h in a.held.items()}
        lost = shard_lease_name("nightshift", 1)
        c.fake.fail(
            "replace_lease",
            ApiError("etcd timeout (HTTP 504)", status=504),
            times=None,
            match=lambda call: call.name == lost,
        )
        for _ in range(4):
            await c.round()
        assert sorted(a.held) == [0]
        c.clock.set("2026-03-01T03:00:01Z")
        for controller in controllers.values():  # the slot comes, as the timer would say
            controller.queue.pop_due(c.clock().timestamp())
        await settle()
        fired = {job["metadata"]["labels"]["nightshift.dev/task"] for job in c.fake.jobs.values()}
        shard0 = {
            n for n in names if shard_of(bucket(c.fake.tasks[NS, n]["metadata"]["uid"]), 2) == 0
        }
        assert shard0
        assert shard0 != set(names)
        assert fired == shard0

    scenario(body)


def test_a_killed_replicas_shards_are_taken_once_its_leases_expire() -> None:
    async def body(c: Cluster) -> None:
        c.replica("a")
        c.replica("b")
        for _ in range(4):
            await c.round()
        assert {n: len(m.held) for n, m in c.replicas.items()} == {"a": 3, "b": 3}
        b_shards = set(c.replicas["b"].held)
        # b is killed: it never runs another round (its controllers stop with the test).
        waited = 0.0
        while not b_shards <= set(c.replicas["a"].held):
            await c.round("a")
            waited += 2.0
            assert waited <= 16.0, "the shards of the killed replica were not taken in time"
        # a saw b's last renewal at its next round (2 s after it), the lease lasts 10 s from
        # there as a sees it, and a takes the shards at its first round after that: the worst
        # case, 14 s after the last renewal.
        assert waited == 14.0
        assert sorted(c.replicas["a"].held) == list(range(6))

    scenario(body)


def test_the_next_round_comes_when_a_lease_of_another_replica_expires() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a")
        labels = {LABEL_GROUP: "nightshift", "nightshift.dev/lease-role": "shard"}
        c.fake.hold_lease(OPS, shard_lease_name("nightshift", 0), "b", labels)
        await c.round()
        assert a.expiry() == pytest.approx(10.1)  # b's Lease, first seen now, lasts 10 s
        await c.round(seconds=9.0)
        assert a.expiry() == pytest.approx(1.1)  # before the retry period (2 s) is up
        await c.round(seconds=1.1)
        assert 0 in a.held  # taken 10.1 s after b was last seen to renew, not at 12 s

    scenario(body)


def test_a_clean_shutdown_gives_every_shard_back_and_withdraws_the_member() -> None:
    async def body(c: Cluster) -> None:
        a = c.replica("a", shards=2)
        b = c.replica("b", shards=2)
        for _ in range(3):
            await c.round()
        assert {n: len(m.held) for n, m in c.replicas.items()} == {"a": 1, "b": 1}
        await b.release_all()
        assert (OPS, member_lease_name("nightshift", "b")) not in c.fake.leases
        await c.round("a")  # one replica left, its share is both, and b's is free at once
        assert sorted(a.held) == [0, 1]

    scenario(body)


def test_no_shard_is_taken_while_replicas_with_another_shard_count_hold_some() -> None:
    async def body(c: Cluster) -> None:
        old = {LABEL_GROUP: "nightshift", "nightshift.dev/lease-role": "shard"}
        c.fake.hold_lease(OPS, "nightshift-shard-1", "old", old | {"nightshift.dev/shards": "4"})
        a = c.replica("a")
        for _ in range(3):
            c.fake.hold_lease(OPS, "nightshift-shard-1", "old")  # renewed
            await c.round()
        assert a.held == {}
        for _ in range(6):  # "old" is gone: its Lease expires
            await c.round()
        assert sorted(a.held) == list(range(6))

    scenario(body)


def test_no_shard_is_taken_while_an_unsharded_leader_holds_its_lease() -> None:
    """A rolling update from ``--shards 1``: the old leader syncs every task until it stops."""

    async def body(c: Cluster) -> None:
        c.fake.hold_lease(OPS, "nightshift", "old-leader")
        a = c.replica("a")
        for _ in range(3):
            c.fake.hold_lease(OPS, "nightshift", "old-leader")  # renewed
            await c.round()
        assert a.held == {}
        c.fake.hold_lease(OPS, "nightshift", "")  # it stops and releases the Lease
        await c.round()
        assert sorted(a.held) == list(range(6))

    scenario(body)


# --- what each shard sees -------------------------------------------------------------------------


@pytest.mark.parametrize("server_filters", [True, False], ids=["shardSelector", "label"])
def test_every_task_is_in_exactly_one_shard_the_one_its_uid_says(server_filters: bool) -> None:
    async def body(c: Cluster) -> None:
        c.fake.shard_filtering = server_filters
        names = [f"t{i}" for i in range(30)]
        for name in names:
            c.fake.create_task(NS, name, SPEC)
        a = c.replica("a", shards=3)
        await c.round()
        await c.round()
        await settle()
        assert a.mode == ("shardSelector" if server_filters else "label")
        seen = tasks_by_shard(a)
        assert sorted(n for shard in seen.values() for n in shard) == sorted(names)
        assert all(seen[i] for i in range(3))  # 30 random uids: each shard has some
        for shard, owned in seen.items():
            for name in owned:
                uid = c.fake.tasks[NS, name]["metadata"]["uid"]
                assert shard_of(bucket(uid), 3) == shard
        lists = [  # the shards' task lists (not the labeller's, of tasks without the label)
            call
            for call in c.fake.calls
            if call.verb == "list_tasks" and not call.args.get("labelSelector", "").startswith("!")
        ]
        if server_filters:
            assert {call.args.get("shardSelector") for call in lists} == {
                "shardRange(object.metadata.uid, '0x0000000000000000', '0x5600000000000000')",
                "shardRange(object.metadata.uid, '0x5600000000000000', '0xab00000000000000')",
                "shardRange(object.metadata.uid, '0xab00000000000000', '0x10000000000000000')",
            }
        else:
            # The server ignores shardSelector: tasks got the bucket label and are selected by it.
            assert all(LABEL_BUCKET in t["metadata"]["labels"] for t in c.fake.tasks.values())
            assert all(f"{LABEL_BUCKET} in (" in call.args["labelSelector"] for call in lists)

    scenario(body)


def test_a_job_made_before_shards_is_labelled_before_its_shard_lists_jobs() -> None:
    """A running Job the shard could not see would look deleted, and its run cancelled."""

    async def body(c: Cluster) -> None:
        task = c.fake.create_task(NS, "t", SPEC)
        uid = task["metadata"]["uid"]
        legacy = {
            "metadata": {
                "name": "t-20260301020000-1",
                "labels": {LABEL_MANAGED: "true", "nightshift.dev/task": "t"},
                "ownerReferences": [
                    {"kind": "ScheduledTask", "name": "t", "uid": uid, "controller": True}
                ],
            },
            "spec": {},
        }
        c.fake.put_job(NS, legacy)
        a = c.replica("a", shards=2)
        await c.round()
        await c.round()
        await settle()
        labels = c.fake.jobs[NS, "t-20260301020000-1"]["metadata"]["labels"]
        assert labels[LABEL_BUCKET] == str(bucket(uid))
        shard = shard_of(bucket(uid), 2)
        verbs = [
            (call.verb, call.args.get("labelSelector", ""))
            for call in c.fake.calls
            if call.verb in ("label", "list_jobs")
        ]
        labelled = verbs.index(("label", ""))
        own_list = next(
            i
            for i, (verb, selector) in enumerate(verbs)
            if verb == "list_jobs"
            and f"{LABEL_BUCKET} in (" in selector
            and str(bucket(uid)) in selector.split("(")[1].split(",")
        )
        assert labelled < own_list
        assert "t-20260301020000-1" in a.held[shard].controller.store.entries[NS, "t"].jobs

    scenario(body)


def test_a_taken_shard_lists_no_older_state_than_its_lease() -> None:
    """A new owner's lists show whatever the last owner wrote before the shard was taken (its
    Lease's version), from the API server's watch cache: a consistent read that a busy server
    serves from etcd took over 30 s at 50,000 tasks, and the shard fired nothing meanwhile."""

    async def body(c: Cluster) -> None:
        c.fake.create_task(NS, "t", SPEC)
        c.replica("a", shards=2)
        await c.round()
        await c.round()
        await settle()
        for shard in range(2):
            version = c.fake.leases[OPS, shard_lease_name("nightshift", shard)]["metadata"][
                "resourceVersion"
            ]
            term, selector = bucket_label_selector(shard, 2), shard_selector(shard, 2)
            firsts = [
                call.args
                for call in c.fake.calls
                if call.verb in ("list_tasks", "list_jobs")
                and (
                    term in call.args.get("labelSelector", "")
                    or call.args.get("shardSelector") == selector
                )
                and not call.args.get("page")
            ]
            assert len(firsts) == 2  # its tasks and its Jobs
            for args in firsts:
                assert args["resourceVersion"] == version
                assert args["resourceVersionMatch"] == "NotOlderThan"

    scenario(body)


def test_the_server_filtering_is_detected() -> None:
    async def body(c: Cluster) -> None:
        assert await detect_server_filtering(c.fake, None) is True
        c.fake.shard_filtering = False
        assert await detect_server_filtering(c.fake, NS) is False

    scenario(body)


# --- Backfills under shards -----------------------------------------------------------------------


def test_a_backfill_is_planned_and_run_by_the_shard_of_its_task_only() -> None:
    """Every shard's controller watches every Backfill; the one holding the bucket of the task's
    uid plans and runs it (its Jobs carry that bucket's label, so that shard sees them), and a
    Backfill whose task does not exist is reported once, by the shard of its own uid."""

    async def body(c: Cluster) -> None:
        tasks: dict[int, str] = {}
        for i in range(40):
            uid = c.fake.create_task(NS, f"t{i}", SPEC)["metadata"]["uid"]
            tasks.setdefault(shard_of(bucket(uid), 2), f"t{i}")
            if len(tasks) == 2:
                break
        assert sorted(tasks) == [0, 1]

        def backfill(name: str, task: str, **spec: Any) -> None:
            c.fake.create_object(
                "backfills",
                "Backfill",
                NS,
                name,
                {
                    "taskRef": {"name": task},
                    "from": "2026-03-01T01:00:00Z",
                    "to": "2026-03-01T02:00:00Z",
                    **spec,
                },
            )

        backfill("run-0", tasks[0])
        backfill("look-1", tasks[1], dryRun=True)
        backfill("orphan", "no-such-task")
        a = c.replica("a", shards=2)
        await c.round()
        await c.round()
        for _ in range(5):
            await settle()
        patches = [
            (call.name, call.args["resourceVersion"])
            for call in c.fake.calls
            if call.verb == "patch_backfills_status"
        ]
        # Planned (or reported) once, and run-0 written once more after its Job was created: a
        # second shard writing too would send a patch from the same resourceVersion (a conflict).
        assert sorted(name for name, _ in patches) == ["look-1", "orphan", "run-0", "run-0"]
        assert len(set(patches)) == len(patches)
        stored = {
            key[1]: obj.get("status") or {} for key, obj in c.fake.objects["backfills"].items()
        }
        assert stored["look-1"]["phase"] == "DryRun"
        assert stored["run-0"]["phase"] == "Running"
        assert stored["orphan"]["conditions"][0]["reason"] == "TaskNotFound"
        task_uid = c.fake.tasks[NS, tasks[0]]["metadata"]["uid"]
        assert stored["run-0"]["taskUID"] == task_uid
        [job] = [
            j for j in c.fake.jobs.values() if "nightshift.dev/backfill" in j["metadata"]["labels"]
        ]
        assert job["metadata"]["labels"][LABEL_BUCKET] == str(bucket(task_uid))
        assert job["metadata"]["annotations"]["nightshift.dev/backfill"] == "run-0"
        # The other shard passes it by, without a read, once it is planned.
        other = a.held[1].controller
        c.fake.calls.clear()
        await other.backfiller.sync((NS, "run-0"))
        assert c.fake.calls == []

    scenario(body)


def test_the_labeller_queues_each_unlabelled_object_once() -> None:
    """A task updated in a loop before it is labelled must not grow the labeller's queue."""
    from nightshift.shards import _Todo

    async def run() -> list[Any]:
        todo = _Todo()
        for i in range(1000):
            todo.put_nowait(("scheduledtasks", ("ns", "busy", "u1", i % 256)))
        todo.put_nowait(("jobs", ("ns", "busy", "u2", 7)))
        assert len(todo) == 2
        return [await todo.get(), await todo.get()]

    assert asyncio.run(run()) == [
        ("scheduledtasks", ("ns", "busy", "u1", 999 % 256)),
        ("jobs", ("ns", "busy", "u2", 7)),
    ]

"""Tables for ``nightshift.writer``: the write-behind of status, Job deletes and Events, with
optimistic concurrency, behind the Job creates.

The task is ``school/t``; a sync decided the status ``OURS`` (from ``BASE``), one Job to delete
(``t-1``, which exists) and one Event. What else happens before the write (a user, another
replica, a fault) is the row's; each row then states the writes that reached the API server in
order (``fakekube.FakeKube.writes``), the status stored there, and what the writer kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakekube import FakeClock, FakeKube
from prometheus_client import REGISTRY

from nightshift import writer as writer_module
from nightshift.api import ApiError, Unreachable
from nightshift.reconcile import Event
from nightshift.store import Entry, Key, Store
from nightshift.workqueue import Backoff, WorkQueue
from nightshift.writer import CreateGate, Writer, canonical

NS = "school"
KEY: Key = (NS, "t")
NOW = 1000.0
BASE: dict[str, Any] = {"runCount": 1, "lastResult": "Failed"}
OURS: dict[str, Any] = {"runCount": 2, "lastResult": "Succeeded"}
THEIRS: dict[str, Any] = {"runCount": 7, "lastResult": "Failed"}
SPEC: dict[str, Any] = {"schedule": "0 * * * *"}
EVENT = Event("Normal", "RunSucceeded", "run 03:00 attempt 1 succeeded (Job t-1)")
JOB: dict[str, Any] = {
    "metadata": {
        "name": "t-1",
        "labels": {"nightshift.dev/managed": "true"},
        "ownerReferences": [{"kind": "ScheduledTask", "name": "t", "uid": "x", "controller": True}],
    },
    "spec": {},
}


class Rig:
    """A Writer over a FakeKube, with the store, queue and gate the controller would give it."""

    def __init__(self, *, is_leader: Callable[[], bool] = lambda: True, events: int = 100) -> None:
        self.fake = FakeKube(FakeClock("2026-03-01T03:10:00Z"))
        self.store = Store()
        self.queue: WorkQueue[Key] = WorkQueue(
            clock=lambda: NOW, backoff=Backoff(initial=1.0, jitter=0.0)
        )
        self.gate = CreateGate(lambda: len(self.queue))
        self.queue.on_change = self.gate.update
        self.gone: list[Key] = []
        self.writer = Writer(
            self.fake,
            self.store,
            self.queue,
            self.gate,
            is_leader=is_leader,
            on_gone=self.gone.append,
            event_queue=events,
        )
        body = self.fake.create_task(NS, "t", SPEC, status=BASE)
        self.store.task_event("ADDED", body)
        self.job_uid = self.fake.put_job(NS, JOB)["metadata"]["uid"]
        self.fake.take_watch()

    @property
    def entry(self) -> Entry:
        entry = self.store.get(KEY)
        assert entry is not None
        return entry

    def submit(
        self,
        status: dict[str, Any] | None = OURS,
        deletes: dict[str, tuple[str, str | None]] | None = None,
        events: list[Event] | None = None,
        entry: Entry | None = None,
    ) -> None:
        """What a sync hands over; by default the decision described in the module docstring,
        made from the stored object."""
        entry = entry or self.entry
        self.writer.submit(
            KEY,
            self.writer.begin(KEY, entry, entry.body),
            status=status,
            deletes={"t-1": ("beyond history limits", self.job_uid)}
            if deletes is None
            else deletes,
            events=[EVENT] if events is None else events,
        )

    def posters(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.writer.post_events())


async def drain(rounds: int = 10) -> None:
    """Let the loop run ``rounds`` iterations; no time passes (the fake answers at once)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@dataclass(frozen=True)
class Row:
    id: str
    meddle: Callable[[Rig], None] = lambda rig: None  # between the decision and the write
    writes: tuple[tuple[str, str], ...] = ()
    status: dict[str, Any] | None = field(default_factory=lambda: dict(OURS))
    backlog: int = 0  # tasks with writes kept
    queued: int = 0  # keys queued for a sync
    wake: float | None = None  # the task's retry
    gone: tuple[Key, ...] = ()
    jobs: tuple[str, ...] = ()  # the Jobs left
    leader: bool = True


WRITTEN = (("patch_status", "t"), ("delete_job", "t-1"), ("post_event", "RunSucceeded"))


def spec_edit(rig: Rig) -> None:
    rig.fake.update_task(NS, "t", spec={"schedule": "30 * * * *"})


def other_replica(rig: Rig) -> None:
    rig.fake.write_status(NS, "t", THEIRS)


def recreated(rig: Rig) -> None:
    rig.fake.delete_task(NS, "t", cascade=False)
    rig.fake.create_task(NS, "t", SPEC)


ROWS = [
    Row(
        id="nothing changed meanwhile: the status, then the delete, then the Event",
        writes=WRITTEN,
    ),
    Row(
        id="a user edited the spec meanwhile: the write fails on the resourceVersion, the task "
        "is read again and queued; the decision is kept for the new spec",
        meddle=spec_edit,
        writes=(("patch_status", "t"),),
        status=BASE,
        backlog=1,
        queued=1,
        jobs=("t-1",),
    ),
    Row(
        id="another replica (the new leader) wrote the status meanwhile: ours does not land, "
        "nothing of the decision is written, the task is synced again from theirs",
        meddle=other_replica,
        writes=(("patch_status", "t"),),
        status=THEIRS,
        queued=1,
        jobs=("t-1",),
    ),
    Row(
        id="deleted and re-created under the same name: nothing of the old status lands on the "
        "namesake, which is synced from its own",
        meddle=recreated,
        writes=(("patch_status", "t"),),
        status=None,
        queued=1,
        jobs=("t-1",),
    ),
    Row(
        id="deleted (404): forgotten; its Job is not deleted and its Events are not posted",
        meddle=lambda rig: rig.fake.delete_task(NS, "t", cascade=False),
        writes=(("patch_status", "t"),),
        status=None,
        gone=(KEY,),
        jobs=("t-1",),
    ),
    Row(
        id="the status write fails (500): everything is kept and retried after the back-off",
        meddle=lambda rig: rig.fake.fail("patch_status", ApiError("etcd timeout", status=500)),
        writes=(("patch_status", "t"),),
        status=BASE,
        backlog=1,
        wake=NOW + 1,
        jobs=("t-1",),
    ),
    Row(
        id="the status write is throttled (429, Retry-After 7): retried no sooner than that",
        meddle=lambda rig: rig.fake.fail(
            "patch_status", ApiError("throttled", status=429, retry_after=7.0)
        ),
        writes=(("patch_status", "t"),),
        status=BASE,
        backlog=1,
        wake=NOW + 7,
        jobs=("t-1",),
    ),
    Row(
        id="no answer (unreachable): everything is kept and retried",
        meddle=lambda rig: rig.fake.fail("patch_status", Unreachable("connection reset")),
        writes=(("patch_status", "t"),),
        status=BASE,
        backlog=1,
        wake=NOW + 1,
        jobs=("t-1",),
    ),
    Row(
        id="a conflict whose re-read fails: the decision is kept and retried",
        meddle=lambda rig: (spec_edit(rig), rig.fake.fail("get_task", ApiError("x", status=503))),
        writes=(("patch_status", "t"),),
        status=BASE,
        backlog=1,
        wake=NOW + 1,
        jobs=("t-1",),
    ),
    Row(
        id="the delete fails: the status stays written, the Event is posted, the delete is "
        "kept and retried",
        meddle=lambda rig: rig.fake.fail("delete_job", ApiError("etcd timeout", status=500)),
        writes=WRITTEN,
        backlog=1,
        wake=NOW + 1,
        jobs=("t-1",),
    ),
    Row(
        id="the Job was re-created under its name meanwhile: the delete (uid precondition) "
        "leaves the namesake alone",
        meddle=lambda rig: (
            rig.fake.remove_job(NS, "t-1"),
            rig.fake.put_job(NS, JOB),
        ),
        writes=WRITTEN,
        jobs=("t-1",),
    ),
    Row(
        id="not the leader (any more): nothing is written, the decision waits for drop_all",
        leader=False,
        status=BASE,
        backlog=1,
        jobs=("t-1",),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_write(row: Row) -> None:
    async def run() -> None:
        rig = Rig(is_leader=lambda: row.leader)
        rig.posters()
        row.meddle(rig)
        rig.submit()
        await drain()
        assert rig.fake.writes() == list(row.writes)
        stored = rig.fake.tasks.get(KEY)
        assert (stored.get("status") if stored else None) == row.status
        assert rig.writer.backlog == row.backlog
        assert len(rig.queue) == row.queued
        assert rig.queue.wake_of(KEY) == row.wake
        assert tuple(rig.gone) == row.gone
        assert tuple(rig.fake.job_names(NS)) == row.jobs

    asyncio.run(run())


def test_a_failed_write_is_written_whole_by_the_next_flush() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        rig.fake.fail("patch_status", ApiError("etcd timeout", status=500))
        rig.submit()
        await drain()
        assert (
            rig.writer.begin(KEY, rig.entry, rig.entry.body).status == OURS
        )  # the next sync starts from it
        rig.submit(status=None, deletes={}, events=[])  # the retry's sync decided nothing new
        await drain()
        assert rig.fake.writes() == [("patch_status", "t"), *WRITTEN]
        assert rig.fake.task(NS, "t")["status"] == OURS
        assert rig.writer.backlog == 0

    asyncio.run(run())


def test_a_spec_edit_conflict_is_rebased_and_written_by_the_next_sync() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        spec_edit(rig)
        rig.submit()
        await drain()
        # The store took the edited task in; the key is queued for a sync, which starts from
        # the decision kept and writes it at the new resourceVersion.
        assert rig.entry.body["spec"] == {"schedule": "30 * * * *"}
        assert rig.writer.begin(KEY, rig.entry, rig.entry.body).status == OURS
        assert await rig.queue.get() == KEY
        rig.submit(status=None, deletes={}, events=[])
        await drain()
        patches = [c.args["resourceVersion"] for c in rig.fake.calls if c.verb == "patch_status"]
        assert patches == ["100", "102"]  # created at 100, Job 101, edited at 102
        assert rig.fake.writes() == [("patch_status", "t"), *WRITTEN]
        assert rig.fake.task(NS, "t")["status"] == OURS
        assert rig.fake.task(NS, "t")["spec"] == {"schedule": "30 * * * *"}

    asyncio.run(run())


def test_a_deposed_leaders_in_flight_write_does_not_land_after_its_successors() -> None:
    """issue 12: "a deposed leader can overwrite status ... its in-flight patch can land after the
    new leader's writes". Ours is in flight when the successor writes; ours then fails, and the
    task is decided again from the successor's status."""

    async def run() -> None:
        rig = Rig()
        rig.posters()
        hold = rig.fake.hold("patch_status")
        rig.submit()
        await hold.arrived.wait()
        other_replica(rig)
        hold.release()
        await drain()
        assert rig.fake.task(NS, "t")["status"] == THEIRS
        assert rig.fake.writes() == [("patch_status", "t")]
        assert rig.writer.backlog == 0
        assert rig.entry.body["status"] == THEIRS  # what the next sync decides from
        assert len(rig.queue) == 1

    asyncio.run(run())


def test_when_another_replica_wrote_first_only_the_starts_of_our_jobs_are_announced() -> None:
    """The Job this sync created is adopted silently by the next sync (decided from the other
    replica's status), so its RunStarted is posted now, once; the rest of the decision is not."""

    async def run() -> None:
        rig = Rig()
        rig.posters()
        other_replica(rig)
        started = Event("Normal", "RunStarted", "run 03:00 attempt 1 started (Job t-2)")
        rig.submit(events=[EVENT, started])
        await drain()
        assert rig.fake.writes() == [("patch_status", "t"), ("post_event", "RunStarted")]
        assert [e["message"] for e in rig.fake.events] == [started.message]
        assert rig.fake.task(NS, "t")["status"] == THEIRS
        assert rig.writer.backlog == 0

    asyncio.run(run())


def test_the_event_names_the_task_at_the_version_written() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        rig.submit()
        await drain()
        assert rig.fake.events == [
            {
                "metadata": {"name": "t.00000", "namespace": NS},
                "count": 1,
                "involvedObject": {
                    "kind": "ScheduledTask",
                    "name": "t",
                    "namespace": NS,
                    "uid": rig.fake.tasks[NS, "t"]["metadata"]["uid"],
                    "resourceVersion": "102",  # task 100, Job 101, our status 102
                },
                "type": "Normal",
                "reason": "RunSucceeded",
                "message": EVENT.message,
            }
        ]

    asyncio.run(run())


def test_a_later_sync_keeps_its_own_status_and_adds_its_writes() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        hold = rig.fake.hold("patch_status")
        rig.submit()
        await hold.arrived.wait()
        later = {**OURS, "runCount": 3}
        later_event = Event("Normal", "RunStarted", "run 04:00 started (Job t-2)")
        rig.submit(status=later, deletes={}, events=[later_event])  # while ours is in flight
        hold.release()
        await drain()
        patches = [c.args["status"] for c in rig.fake.calls if c.verb == "patch_status"]
        assert patches == [OURS, later]
        assert rig.fake.event_reasons() == ["RunSucceeded", "RunStarted"]
        assert rig.writer.backlog == 0

    asyncio.run(run())


def test_an_unwritten_status_is_only_for_the_entry_it_was_decided_for() -> None:
    async def run() -> None:
        rig = Rig()
        with rig.gate.creating_jobs(1):  # keeps the decision unwritten
            old = rig.entry
            rig.submit()
            assert rig.writer.begin(KEY, old, old.body).status == OURS
            recreated(rig)
            for event in rig.fake.take_watch():
                rig.store.task_event(event.type, event.body)
            assert rig.writer.begin(KEY, rig.entry, rig.entry.body).status is None

    asyncio.run(run())


# --- the create gate --------------------------------------------------------------------------


def test_a_write_waits_while_a_create_is_in_flight_and_goes_as_soon_as_it_ends() -> None:
    """issue 12: "the writers poll every 50 ms for each pending flush". The write must go within
    a few loop iterations of the gate opening, with no time passing, which no polling does."""

    async def run() -> None:
        rig = Rig()
        rig.posters()
        with rig.gate.creating_jobs(2):
            rig.submit()
            await drain(50)
            assert rig.fake.writes() == []
        await drain(10)
        assert rig.fake.writes() == list(WRITTEN)

    asyncio.run(run())


def test_a_write_waits_while_tasks_are_queued_and_goes_once_a_worker_took_them() -> None:
    async def run() -> None:
        rig = Rig()
        rig.queue.add(("school", "other"))
        rig.submit()
        await drain(50)
        assert rig.fake.writes() == []
        await rig.queue.get()
        await drain(10)
        assert rig.fake.writes() == [("patch_status", "t"), ("delete_job", "t-1")]

    asyncio.run(run())


def test_a_write_waits_for_the_creates_at_most_yield_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "YIELD_MAX", 0.005)

    async def run() -> None:
        rig = Rig()
        with rig.gate.creating_jobs(1):
            rig.submit()
            await drain()
            assert rig.fake.writes() == []
            await asyncio.sleep(0.02)
            assert rig.fake.writes() == [("patch_status", "t"), ("delete_job", "t-1")]

    asyncio.run(run())


def test_the_gate_is_shut_while_creating_or_queued() -> None:
    async def open_now(gate: CreateGate) -> bool:
        waiter = asyncio.create_task(gate.wait_idle(60))
        await drain()
        waiter.cancel()
        return waiter.done() and not waiter.cancelled()

    async def run() -> list[bool]:
        queued = [0]
        gate = CreateGate(lambda: queued[0])
        seen = [await open_now(gate)]
        with gate.creating_jobs(1):
            seen.append(await open_now(gate))
        seen.append(await open_now(gate))
        queued[0] = 1
        gate.update()
        seen.append(await open_now(gate))
        queued[0] = 0
        gate.update()
        seen.append(await open_now(gate))
        return seen

    assert asyncio.run(run()) == [True, False, True, False, True]


def test_a_write_waiting_at_the_gate_is_cancelled_even_as_the_gate_opens() -> None:
    """On Python 3.11 ``asyncio.wait_for`` swallowed a cancellation that came with the gate
    opening (CPython gh-86296), so a cancelled wait went on to write."""

    async def run() -> bool:
        gate = CreateGate(lambda: 0)
        with gate.creating_jobs(1):
            waiter = asyncio.create_task(gate.wait_idle(60))
            await asyncio.sleep(0)
        waiter.cancel()  # the gate opened in this very iteration
        await asyncio.wait({waiter}, timeout=0.5)
        return waiter.cancelled()

    assert asyncio.run(run()) is True


# --- Events -----------------------------------------------------------------------------------


def test_the_event_queue_is_bounded_drops_and_counts() -> None:
    async def run() -> tuple[float, list[str]]:
        rig = Rig(events=2)
        before = counter("nightshift_events_dropped_total")
        events = [Event("Normal", f"R{i}", "m") for i in range(5)]
        rig.submit(status=None, deletes={}, events=events)
        await drain()
        dropped = counter("nightshift_events_dropped_total") - before
        rig.posters()
        await drain()
        return dropped, rig.fake.event_reasons()

    assert asyncio.run(run()) == (3.0, ["R0", "R1"])


def test_the_same_event_again_is_a_count_on_the_first_until_it_expires() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        ref = {"metadata": {"name": "t", "namespace": NS, "uid": "u"}}
        failed = Event("Warning", "JobCreateFailed", "Job t-1: exceeded quota")
        for _ in range(3):
            rig.writer.post(ref, failed)
            await drain()
        assert [(e["reason"], e["count"]) for e in rig.fake.events] == [("JobCreateFailed", 3)]
        assert (
            rig.fake.writes()
            == [("post_event", "JobCreateFailed")] + [("patch_event", "JobCreateFailed")] * 2
        )
        rig.fake.expire_events()  # the API server's TTL: the count goes on a new Event
        rig.writer.post(ref, failed)
        await drain()
        assert [(e["reason"], e["count"]) for e in rig.fake.events] == [("JobCreateFailed", 4)]

    asyncio.run(run())


def test_events_posted_while_the_first_is_being_created_are_counted_on_it() -> None:
    async def run() -> None:
        rig = Rig()
        for _ in range(3):
            rig.posters()
        hold = rig.fake.hold("post_event")
        ref = {"metadata": {"name": "t", "namespace": NS, "uid": "u"}}
        rig.writer.post(ref, EVENT)
        await hold.arrived.wait()
        rig.writer.post(ref, EVENT)
        rig.writer.post(ref, EVENT)
        await drain()
        hold.release()
        await drain()
        assert [(e["reason"], e["count"]) for e in rig.fake.events] == [("RunSucceeded", 3)]
        assert rig.fake.verbs().count("post_event") == 1

    asyncio.run(run())


def test_a_task_posting_too_many_events_has_the_rest_dropped_and_counted() -> None:
    async def run() -> tuple[float, list[int]]:
        rig = Rig()
        rig.posters()
        before = counter("nightshift_events_throttled_total")
        ref = {"metadata": {"name": "t", "namespace": NS, "uid": "u"}}
        for i in range(40):
            rig.writer.post(ref, Event("Normal", "RunStarted", f"run {i} started"))
        await drain(100)
        return counter("nightshift_events_throttled_total") - before, [
            e["count"] for e in rig.fake.events
        ]

    throttled, counts = asyncio.run(run())
    assert throttled == 15  # 25 at once
    # 9 Events, then one combining the other 16, written once with the count it had by then.
    assert counts == [1] * 9 + [16]


def test_events_kept_behind_a_failing_status_write_are_bounded() -> None:
    async def run() -> tuple[float, list[str]]:
        rig = Rig()
        rig.posters()
        rig.fake.fail("patch_status", ApiError("unavailable (HTTP 503)", status=503), times=None)
        before = counter("nightshift_events_dropped_total")
        for batch in range(3):
            events = [Event("Normal", "RunStarted", f"run {batch}-{i}") for i in range(50)]
            rig.submit(events=events)
            await drain()
        dropped = counter("nightshift_events_dropped_total") - before
        rig.fake.heal()
        rig.submit(events=[])
        await drain(50)
        return dropped, [e["message"] for e in rig.fake.events]

    dropped, posted = asyncio.run(run())
    assert dropped == 50
    # The newest 100 survive: 9 Events of their own, then the rest combined (nightshift.events).
    assert posted[0] == "run 1-0"


def test_a_failed_event_post_does_not_stop_the_poster() -> None:
    async def run() -> list[str]:
        rig = Rig()
        rig.posters()
        rig.fake.fail("post_event", ApiError("forbidden", status=403, transient=False))
        events = [Event("Normal", "R1", "m"), Event("Normal", "R2", "m")]
        rig.submit(status=None, deletes={}, events=events)
        await drain()
        return rig.fake.event_reasons()

    assert asyncio.run(run()) == ["R2"]


def test_a_bug_in_a_write_is_logged_and_the_task_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> Rig:
        rig = Rig()
        rig.fake.fail("patch_status", ZeroDivisionError("a bug"))
        rig.submit()
        await drain()
        return rig

    rig = asyncio.run(run())
    assert rig.queue.wake_of(KEY) == NOW + 1
    assert "writing school/t failed" in caplog.text
    assert "ZeroDivisionError" in caplog.text


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ({"b": 1, "a": None, "c": {"d": None, "e": [1, {"f": None}]}}, b'{"b":1,"c":{"e":[1,{}]}}'),
        (None, b"{}"),
        ({}, b"{}"),
    ],
)
def test_canonical(status: Any, text: bytes) -> None:
    assert canonical(status) == text


def test_settle_returns_once_the_write_is_done_and_its_events_posted() -> None:
    async def run() -> None:
        rig = Rig()
        rig.posters()
        hold = rig.fake.hold("patch_status")
        rig.submit()
        await hold.arrived.wait()
        settled = asyncio.create_task(rig.writer.settle())
        await drain()
        assert not settled.done()  # the status write is in flight
        hold.release()
        await asyncio.wait_for(settled, 1)
        assert rig.fake.writes() == list(WRITTEN)

    asyncio.run(run())

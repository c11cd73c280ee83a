"""Sync scenarios through a real ``nightshift.controller.Controller``: its workers, store, queue and
writer, over the in-memory API server (``fakekube.FakeKube``) and a wall clock that moves only when
a scenario says so.

The task is ``school/t``, hourly (``0 * * * *``, UTC), created at 02:59:30 on 2026-03-01; unless a
scenario says otherwise it has the defaults (Forbid, no retries). The scenario delivers what the
watches would (``World.settle``) and moves the clock (``World.at``), which also queues the wake-ups
that came due, as the timer would. Expected writes, statuses and wake-ups are written out by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fakekube import FakeClock, FakeKube, Monotonic

from nightshift import memory
from nightshift.api import ApiError, Unreachable
from nightshift.controller import Controller
from nightshift.supervise import Supervisor
from nightshift.workqueue import Backoff

NS = "school"
KEY = (NS, "t")
CREATED = "2026-03-01T02:59:30Z"
TEMPLATE: dict[str, Any] = {
    "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
}
J03 = "t-20260301030000-1"  # the Job of the 03:00 slot, attempt 1
J03_2 = "t-20260301030000-2"
MANUAL = "t-mba7816bf8f-1"  # the Job of the run-now token "abc", attempt 1


def at(hms: str) -> str:
    return f"2026-03-01T{hms if hms.count(':') == 2 else hms + ':00'}Z"


def ts(hms: str) -> float:
    return datetime.fromisoformat(at(hms).replace("Z", "+00:00")).timestamp()


def spec(**more: Any) -> dict[str, Any]:
    return {"schedule": "0 * * * *", "jobTemplate": TEMPLATE, **more}


@pytest.fixture(autouse=True)
def _no_gc_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    # After its first resync the operator freezes the garbage collector's view of every object
    # alive (nightshift.memory.freeze): right for the operator, wrong for the test process.
    monkeypatch.setattr(memory, "freeze", lambda: None)


class World:
    """The fake API server and one or more controllers (replicas) watching it."""

    def __init__(self, *, page_size: int = 500) -> None:
        self.clock = FakeClock(CREATED)
        self.mono = Monotonic()
        self.fake = FakeKube(self.clock, page_size=page_size)
        self.controllers: list[Controller] = []
        self._runs: list[asyncio.Task[None]] = []

    def replica(
        self, *, workers: int = 2, is_leader: Callable[[], bool] = lambda: True
    ) -> Controller:
        controller = Controller(
            self.fake,
            workers=workers,
            clock=self.clock,
            is_leader=is_leader,
            supervisor=Supervisor(backoff=Backoff(initial=0.001, jitter=0.0), clock=self.mono),
        )
        controller.queue.backoff = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)
        self.controllers.append(controller)
        self._runs.append(asyncio.create_task(controller.run()))
        return controller

    def deliver(self) -> int:
        """Hand what the watches would deliver to every replica; how many events."""
        events = self.fake.take_watch()
        for event in events:
            for controller in self.controllers:
                if event.resource == "tasks":
                    controller.task_event(event.type, event.body)
                elif event.resource == "namespaces":
                    controller.policies.seen(event.type, event.body)
                else:
                    controller.job_event(event.type, event.body)
        return len(events)

    async def settle(self, *, watch: bool = True) -> None:
        """Deliver watch events (unless the watch lags) and run the loop until nothing moves
        for 50 iterations."""
        quiet = 0
        last: tuple[int, ...] = ()
        for _ in range(5000):
            delivered = self.deliver() if watch else 0
            await asyncio.sleep(0)
            now = (len(self.fake.calls), *(len(c.queue) for c in self.controllers))
            quiet = 0 if delivered or now != last else quiet + 1
            last = now
            if quiet >= 50:
                return
        raise AssertionError("the controllers never settled")

    async def at(self, hms: str) -> None:
        """Move the clock to ``hms``, queue what came due (as the timer does), and settle."""
        self.clock.set(at(hms))
        now = self.clock().timestamp()
        for controller in self.controllers:
            for key, when in controller.queue.pop_due(now):
                controller._due(key, when, now)  # as the timer does
        await self.settle()

    async def stop(self) -> None:
        for run in self._runs:
            run.cancel()
        async with asyncio.timeout(2):  # a replica that ignores its cancellation fails the test
            await asyncio.gather(*self._runs, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.fake.task(*KEY).get("status") or {}
        return status

    def writes_since(self, mark: int) -> list[tuple[str, str]]:
        return self.fake.writes()[mark:]


def scenario(body: Callable[[World], Any]) -> None:
    """Run ``body(world)`` on a fresh event loop, stopping the replicas afterwards."""

    async def run() -> None:
        world = World()
        try:
            await body(world)
        finally:
            await world.stop()

    asyncio.run(run())


def runs(status: dict[str, Any]) -> list[tuple[str, int, str, Any]]:
    return [
        (r["run"], r["attempt"], r["result"], r["exitCode"] if "exitCode" in r else r.get("reason"))
        for r in status.get("runs", [])
    ]


def active(status: dict[str, Any]) -> list[str]:
    return [a["job"] for a in status.get("active", [])]


async def first_run(world: World, **more: Any) -> Controller:
    """A leader, the task created at 02:59:30, and its 03:00 Job created."""
    controller = world.replica()
    world.fake.create_task(NS, "t", spec(**more))
    await world.settle()
    await world.at("03:00")
    assert active(world.status()) == [J03]
    return controller


# --- the first slot ---------------------------------------------------------------------------


def test_a_new_task_is_scheduled_then_its_slot_runs() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        assert world.fake.writes() == [("patch_status", "t")]
        assert world.status()["nextScheduleTime"] == at("03:00")
        assert controller.next_sync(KEY) == ts("03:00")
        await world.at("03:00")
        assert world.writes_since(1) == [
            ("create_job", J03),
            ("patch_status", "t"),
            ("post_event", "RunStarted"),
        ]
        assert active(world.status()) == [J03]
        assert world.status()["runCount"] == 1
        assert controller.next_sync(KEY) == ts("04:00")

    scenario(body)


# --- deciding ahead ------------------------------------------------------------------------------


def test_a_slot_is_decided_ahead_and_its_job_created_at_the_slot_not_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten seconds before the slot the sync is decided (as of the slot); at the slot it only
    creates the Job and hands over the writes: no second decision, the same outcome."""
    import nightshift.controller as controller_module

    decisions: list[tuple[datetime, int]] = []  # (as of when, API calls made before it)
    real = controller_module.decide
    fakes: list[Any] = []

    def counted(view: Any, now: datetime) -> Any:
        decisions.append((now, len(fakes[0].calls)))
        return real(view, now)

    monkeypatch.setattr(controller_module, "decide", counted)

    async def body(world: World) -> None:
        fakes.append(world.fake)
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        mark, before = len(world.fake.writes()), len(world.fake.calls)
        decisions.clear()
        await world.at("02:59:50")
        assert world.writes_since(mark) == []  # nothing is created before its slot
        slot = datetime.fromisoformat(at("03:00").replace("Z", "+00:00"))
        assert [when for when, _ in decisions] == [slot]
        await world.at("03:00")
        calls = world.fake.calls
        create = next(i for i in range(before, len(calls)) if calls[i].verb == "create_job")
        # The slot used the decision made ahead: none was made between it and the create (the
        # syncs after it are the watch's news of the Job and the status written).
        assert [n for _, n in decisions[1:] if n <= create] == []
        assert world.writes_since(mark) == [
            ("create_job", J03),
            ("patch_status", "t"),
            ("post_event", "RunStarted"),
        ]
        assert active(world.status()) == [J03]
        assert controller.next_sync(KEY) == ts("04:00")

    scenario(body)


def test_a_task_suspended_after_its_slot_was_decided_ahead_gets_no_job() -> None:
    async def body(world: World) -> None:
        world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        await world.at("02:59:50")
        world.fake.update_task(NS, "t", spec=spec(suspend=True))
        await world.at("02:59:55")
        await world.at("03:00")
        assert J03 not in {name for _, name in world.fake.jobs}
        assert world.status().get("active", []) == []

    scenario(body)


def test_a_decision_made_ahead_is_not_used_long_after_its_slot() -> None:
    """An operator that reaches the slot late (a long pause) decides again, as of then."""

    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        await world.at("02:59:50")
        assert KEY in controller._plans
        await world.at("03:00:30")
        assert KEY not in controller._plans
        assert active(world.status()) == [J03]  # caught up by a fresh decision

    scenario(body)


# --- issue 12: "a transient error erases an exit code" -----------------------------------------


def test_an_unreadable_exit_code_fails_the_sync_and_is_read_again() -> None:
    """pod_outcome fails once (a 500): the sync fails and records nothing; the retry reads exit
    code 3, so ``onExitCodes: [3]`` retries the run, as it must."""
    retry = {"maxRetries": 2, "onExitCodes": [3], "backoff": {"initial": "10s", "jitter": False}}

    async def body(world: World) -> None:
        controller = await first_run(world, retry=retry)
        world.clock.set(at("03:05"))
        world.fake.finish_job(NS, J03, succeeded=False, exit_code=3, message="bad input")
        world.fake.fail("pod_outcome", ApiError("etcd timeout (HTTP 500)", status=500))
        mark = len(world.fake.writes())
        await world.settle()
        assert world.writes_since(mark) == []
        assert runs(world.status()) == []
        assert active(world.status()) == [J03]
        assert controller.next_sync(KEY) == ts("03:05:01")  # back-off 1 s

        await world.at("03:05:01")
        assert world.writes_since(mark) == [
            ("patch_status", "t"),
            ("post_event", "RetryScheduled"),
        ]
        assert runs(world.status()) == [(at("03:00"), 1, "Failed", 3)]
        assert world.status()["pendingRetries"] == [
            {
                "run": at("03:00"),
                "attempt": 2,
                "notBefore": at("03:05:10"),
                "scheduledAt": at("03:00"),
            }
        ]
        await world.at("03:05:10")
        assert world.writes_since(mark + 2) == [
            ("create_job", J03_2),
            ("patch_status", "t"),
            ("post_event", "RetryStarted"),
        ]
        assert [c.verb for c in world.fake.calls].count("pod_outcome") == 2

    scenario(body)


# --- transient and permanent create errors ----------------------------------------------------


@pytest.mark.parametrize(
    ("watch", "first", "wake"),
    [
        pytest.param(
            False,
            [("create_job", MANUAL), ("create_job", J03)],
            ts("03:00:03"),
            id="the watch lags: retried after Retry-After (3 s), not the 1 s back-off",
        ),
        pytest.param(
            True,
            [("create_job", MANUAL), ("create_job", J03)],
            ts("03:00:03"),
            id="the sibling's watch event changes nothing: the store has its Job already",
        ),
    ],
)
def test_a_throttled_create_is_retried_not_recorded_and_its_sibling_is_adopted(
    watch: bool, first: list[tuple[str, str]], wake: float
) -> None:
    """Two creates in one decision (a run-now, then the 03:00 slot, Allow), made in order: the
    second is throttled (429, Retry-After 3 s). No run is recorded as failed; the retry adopts
    the run-now's Job instead of creating it again, and creates the slot's."""
    retried = [
        ("create_job", J03),
        ("patch_status", "t"),
        ("post_event", "RunStarted"),
    ]

    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec(concurrencyPolicy="Allow"))
        await world.settle()
        mark = len(world.fake.writes())
        world.clock.set(at("03:00"))
        world.fake.fail(
            "create_job",
            ApiError("throttled (HTTP 429)", status=429, retry_after=3.0),
            match=lambda call: call.name == J03,
        )
        world.fake.update_task(NS, "t", annotations={"nightshift.dev/run-now": "abc"})
        world.deliver()
        controller.queue.pop_due(world.clock().timestamp())  # the 03:00 wake-up, as the timer
        await world.settle(watch=watch)
        assert world.writes_since(mark) == first
        assert controller.next_sync(KEY) == wake
        assert world.fake.job_names(NS) == [MANUAL]
        assert runs(world.status()) == []
        assert active(world.status()) == []
        await world.settle()  # the watch catches up: the store knew the sibling already
        assert world.writes_since(mark) == first
        await world.at("03:00:03")
        assert world.writes_since(mark + 2) == retried
        assert world.fake.job_names(NS) == [J03, MANUAL]
        assert sorted(active(world.status())) == [J03, MANUAL]
        assert runs(world.status()) == []

    scenario(body)


def test_a_permanent_create_error_is_recorded_as_a_failed_run() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        world.fake.fail(
            "create_job",
            ApiError('Job.batch "t" is invalid (HTTP 422)', status=422, transient=False),
        )
        await world.at("03:00")
        assert world.writes_since(1) == [
            ("create_job", J03),
            ("patch_status", "t"),
            ("post_event", "JobCreateFailed"),
            ("post_event", "RunFailed"),
        ]
        assert runs(world.status()) == [(at("03:00"), 1, "Failed", "JobCreateFailed")]
        assert world.fake.job_names(NS) == []
        assert controller.next_sync(KEY) == ts("04:00")

    scenario(body)


@pytest.mark.parametrize(
    ("owner", "writes", "recorded", "jobs_active"),
    [
        pytest.param(
            "ours",
            [("create_job", J03), ("patch_status", "t")],
            [],
            [J03],
            id="created by our predecessor: adopted, and no RunStarted Event",
        ),
        pytest.param(
            "uid-stranger",
            [
                ("create_job", J03),
                ("patch_status", "t"),
                ("post_event", "JobNameConflict"),
                ("post_event", "RunFailed"),
            ],
            [(at("03:00"), 1, "Failed", "JobNameConflict")],
            [],
            id="someone else's: a name conflict, recorded",
        ),
    ],
)
def test_a_job_this_replica_has_not_seen_yet(
    owner: str, writes: list[tuple[str, str]], recorded: list[Any], jobs_active: list[str]
) -> None:
    """The slot's Job exists but the watch has not delivered it: AlreadyExists, then adopted
    only if the task's uid controls it."""

    async def body(world: World) -> None:
        world.replica()
        task = world.fake.create_task(NS, "t", spec())
        await world.settle()
        uid = task["metadata"]["uid"] if owner == "ours" else owner
        world.fake.put_job(
            NS,
            {
                "metadata": {
                    "name": J03,
                    "annotations": {
                        "nightshift.dev/run": at("03:00"),
                        "nightshift.dev/attempt": "1",
                    },
                    "ownerReferences": [
                        {"kind": "ScheduledTask", "name": "t", "uid": uid, "controller": True}
                    ],
                },
                "spec": {},
            },
        )
        world.fake.take_watch()  # not delivered (yet)
        await world.at("03:00")
        assert world.writes_since(1) == writes
        assert runs(world.status()) == recorded
        assert active(world.status()) == jobs_active
        assert world.fake.job_names(NS) == [J03]

    scenario(body)


# --- leadership -------------------------------------------------------------------------------


def test_a_replica_that_is_not_the_leader_calls_nothing() -> None:
    async def body(world: World) -> None:
        controller = world.replica(is_leader=lambda: False)
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        await world.at("03:00")
        # It lists and watches (to be ready to take over), and nothing else.
        assert {c.verb for c in world.fake.calls} == {
            "list_tasks",
            "list_jobs",
            "list_calendars",
            "list_backfills",
            "watch_tasks",
            "watch_jobs",
            "watch_calendars",
            "watch_backfills",
            "list_namespaces",
            "watch_namespaces",
        }
        assert controller.next_sync(KEY) is None  # no decision, so no wake-up

    scenario(body)


def test_deposed_while_creating_the_job_lands_but_nothing_else_and_the_successor_adopts() -> None:
    async def body(world: World) -> None:
        leader = {"a": True, "b": False}
        world.replica(is_leader=lambda: leader["a"])
        b = world.replica(is_leader=lambda: leader["b"])
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        hold = world.fake.hold("create_job")
        world.clock.set(at("03:00"))
        for controller in world.controllers:
            controller.queue.pop_due(world.clock().timestamp())
        await hold.arrived.wait()
        leader["a"] = False  # the lease is lost while the create is in flight
        hold.release()
        await world.settle()
        assert world.writes_since(1) == [("create_job", J03)]
        leader["b"] = True
        b.resync_all()  # what the election calls when b takes over
        await world.settle()
        assert world.writes_since(1) == [("create_job", J03), ("patch_status", "t")]
        assert active(world.status()) == [J03]
        assert world.status()["runCount"] == 1

    scenario(body)


def test_a_deposed_leaders_status_in_flight_does_not_overwrite_its_successors() -> None:
    """issue 12: "its in-flight patch can land after the new leader's writes". A's status (J03
    active) is in flight when A loses the lease; B records J03's success; A's write then arrives
    and must not erase that record."""

    async def body(world: World) -> None:
        leader = {"a": True, "b": False}
        world.replica(is_leader=lambda: leader["a"])
        b = world.replica(is_leader=lambda: leader["b"])
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        hold = world.fake.hold("patch_status", times=1)
        await world.at("03:00")
        assert hold.waiting == 1  # A's status write: J03 active
        leader["a"] = False
        world.clock.set(at("03:00:10"))
        world.fake.finish_job(NS, J03, succeeded=True, exit_code=0)
        leader["b"] = True
        b.resync_all()
        await world.settle()
        theirs = world.status()
        assert runs(theirs) == [(at("03:00"), 1, "Succeeded", 0)]
        hold.release()
        await world.settle()
        assert world.status() == theirs
        assert [c.verb for c in world.fake.calls].count("patch_status") == 3  # first, A's, B's
        assert [c.verb for c in world.fake.calls].count("get_task") == 1  # A's re-read

    scenario(body)


# --- liveness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "reachable", "problems"),
    [
        pytest.param(30.0, True, [], id="queued work not taken for 30 s: still alive"),
        pytest.param(
            31.0,
            True,
            ["1 task(s) queued and no worker took one for 31 s"],
            id="queued work not taken for 31 s: a wedged operator",
        ),
        pytest.param(
            300.0,
            False,
            [],
            id="while the API server is unreachable workers wait for a resync: not wedged",
        ),
    ],
)
def test_liveness_fails_when_queued_work_is_not_taken(
    idle: float, reachable: bool, problems: list[str]
) -> None:
    """One worker, stuck in a sync whose Job create never returns; another task waits."""

    async def body(world: World) -> None:
        controller = world.replica(workers=1)
        world.fake.create_task(NS, "t", spec())
        world.clock.set(at("03:00"))
        hold = world.fake.hold("create_job")  # the worker never comes back from t's create
        await world.settle()
        assert hold.waiting == 1
        world.fake.create_task(NS, "u", spec())
        await world.settle()
        assert len(controller.queue) == 1
        world.mono.advance(idle)
        controller.supervisor.beat("timer", 15.0)  # the timer is fine (it beats every 5 s)
        if not reachable:
            world.fake.on_unreachable()  # what the API client calls when a request got no answer
        assert controller.problems() == problems
        hold.release()

    scenario(body)


def test_liveness_reports_a_timer_that_stopped_beating() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        await world.settle()
        assert controller.problems() == []
        world.mono.advance(16.0)
        assert controller.problems() == ["timer: no heartbeat for 16 s (limit 15 s)"]

    scenario(body)


# --- issue 12: "a Job deleted within 30 s of its creation stays in status.active until the next
# slot" (the reconciler's rows are in test_reconcile.py; this is the same through the controller)


def test_a_job_deleted_right_after_its_creation_is_looked_at_again_30_s_on() -> None:
    async def body(world: World) -> None:
        controller = await first_run(world)
        world.clock.set(at("03:00:10"))
        world.fake.remove_job(NS, J03)
        await world.settle()
        assert active(world.status()) == [J03]  # its absence cannot be trusted yet
        assert controller.next_sync(KEY) == ts("03:00:31")
        await world.at("03:00:31")
        assert runs(world.status()) == [(at("03:00"), 1, "Cancelled", None)]
        assert active(world.status()) == []
        assert world.fake.event_reasons()[-1] == "RunCancelled"
        assert controller.next_sync(KEY) == ts("04:00")

    scenario(body)


# --- namesakes and resyncs --------------------------------------------------------------------


def test_a_namesake_recreated_before_the_watch_told_us_starts_from_its_own_status() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        hold = world.fake.hold("patch_status", times=1)
        await world.at("03:00")  # the old task's Job is created; its status write is in flight
        world.clock.set(at("03:00:05"))
        world.fake.delete_task(NS, "t")
        new = world.fake.create_task(NS, "t", spec())
        world.fake.take_watch()  # the watch lags: the controller learns of it by the conflict
        hold.release()
        await world.settle()
        status = world.status()
        assert world.fake.task(*KEY)["metadata"]["uid"] == new["metadata"]["uid"]
        assert (status["runCount"], active(status), runs(status)) == (0, [], [])
        assert status["nextScheduleTime"] == at("04:00")
        assert controller.store.get(KEY).uid == new["metadata"]["uid"]  # type: ignore[union-attr]

    scenario(body)


def test_a_task_deleted_while_no_watch_ran_is_forgotten_by_the_next_list() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        world.fake.delete_task(NS, "t")
        world.fake.take_watch()  # the watch missed the deletion
        world.fake.on_unreachable()  # (a request failed: everything is listed again)
        await world.settle()
        assert controller.store.get(KEY) is None
        mark = len(world.fake.calls)
        await world.at("03:00")
        assert [c for c in world.fake.calls[mark:] if c.verb == "create_job"] == []

    scenario(body)


def test_an_unreachable_api_server_stops_syncs_until_a_resync_succeeds() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        world.fake.fail("create_job", Unreachable("create Job: no answer (ReadTimeoutError)"))
        await world.at("03:00")
        # The failed sync made the controller list tasks and Jobs again before anything else;
        # the sync then runs again after its back-off.
        verbs = [c.verb for c in world.fake.calls]
        failed = len(verbs) - 1 - verbs[::-1].index("create_job")
        assert sorted(v for v in verbs[failed + 1 :] if v.startswith("list")) == [
            "list_backfills",
            "list_calendars",
            "list_jobs",
            "list_tasks",
        ]
        assert controller.problems() == []
        assert controller.next_sync(KEY) == ts("03:00:01")
        await world.at("03:00:01")
        assert active(world.status()) == [J03]

    scenario(body)


def test_stopping_just_as_a_new_list_is_asked_for_stops() -> None:
    """On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives together with
    the event it waits for (CPython gh-86296): a loop waiting that way ran on, and stopping the
    controller (SIGTERM) hung in Supervisor.stop."""

    async def body(world: World) -> None:
        world.replica()
        await world.settle()
        world.fake.on_unreachable()  # the informers' events are set ...
        await world.stop()  # ... and it is cancelled in the same loop iteration

    scenario(body)


def test_a_list_that_hits_a_bug_is_logged_and_the_operator_stays_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 12: "_resyncer catches only ApiError. An ApiException ... or a ValueError from
    json.loads ends it", and with it every worker. The informers list now; one that crashes is
    restarted by the supervisor, with its traceback logged."""

    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        world.fake.fail("list_tasks", ValueError("Expecting value: line 1 column 1 (char 0)"))
        world.fake.on_unreachable()  # asks for a new list, which fails with the bug
        await world.settle()
        world.mono.advance(1)
        await asyncio.sleep(0.01)  # the supervisor's back-off (1 ms here)
        await world.settle()
        assert controller.supervisor.restarts("informer-tasks-all") == 1
        assert controller.problems() == []
        assert controller.running
        await world.at("03:00")
        assert active(world.status()) == [J03]  # listed again: syncs resumed

    scenario(body)
    crashed = [
        r for r in caplog.records if "internal task informer-tasks-all crashed" in r.getMessage()
    ]
    assert len(crashed) == 1
    assert crashed[0].exc_info is not None
    assert crashed[0].exc_info[0] is ValueError


# --- what a list asks to look at first ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "meta", "urgent"),
    [
        pytest.param({}, {}, True, id="never synced: at once"),
        pytest.param(
            {"nextScheduleTime": at("04:00"), "observedGeneration": 1}, {}, False,
            id="next slot in an hour, nothing changed: in the background",
        ),
        pytest.param(
            {"nextScheduleTime": at("03:00:20"), "observedGeneration": 1}, {}, True,
            id="next slot within 30 s: at once",
        ),
        pytest.param(
            {"nextScheduleTime": at("02:00"), "observedGeneration": 1}, {}, True,
            id="next slot passed (down over it): at once",
        ),
        pytest.param(
            {"nextScheduleTime": at("04:00"), "observedGeneration": 1}, {"generation": 2}, True,
            id="the spec changed: at once",
        ),
        pytest.param(
            {"nextScheduleTime": at("04:00"), "observedGeneration": 1, "runNowToken": "a"},
            {"annotations": {"nightshift.dev/run-now": "b"}}, True,
            id="a run-now token not acted on: at once",
        ),
        pytest.param(
            {"nextScheduleTime": at("04:00"), "observedGeneration": 1,
             "active": [{"run": at("03:00"), "attempt": 1, "job": J03}]}, {}, True,
            id="a run is active: at once",
        ),
    ],
)  # fmt: skip
def test_a_list_looks_at_due_tasks_first(
    status: dict[str, Any], meta: dict[str, Any], urgent: bool
) -> None:
    from nightshift.controller import _needs_attention

    body = {"metadata": {"generation": 1, **meta}, "status": status}
    upcoming, got = _needs_attention(body, datetime.fromisoformat("2026-03-01T03:00:00+00:00"))
    assert got is urgent
    assert upcoming == (
        datetime.fromisoformat(status["nextScheduleTime"].replace("Z", "+00:00"))
        if "nextScheduleTime" in status
        else None
    )


# --- issue 18: the guard on the workload ------------------------------------------------------

PRIVILEGED: dict[str, Any] = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "main", "image": "busybox", "securityContext": {"privileged": True}}
                ],
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            }
        }
    }
}


def ready(status: dict[str, Any]) -> tuple[str, str, str]:
    cond = next(c for c in status.get("conditions", []) if c["type"] == "Ready")
    return cond["status"], cond["reason"], cond["message"]


def test_a_privileged_template_gets_no_job_one_event_and_others_run() -> None:
    async def body(world: World) -> None:
        world.replica()
        world.fake.create_task(NS, "t", spec(jobTemplate=PRIVILEGED))
        world.fake.create_task(NS, "ok", spec(concurrencyPolicy="Allow"))
        await world.settle()
        await world.at("03:00")
        await world.at("04:00")
        assert world.fake.job_names(NS) == ["ok-20260301030000-1", "ok-20260301040000-1"]
        status, reason, message = ready(world.status())
        assert (status, reason) == ("False", "PodSecurity")
        template = "spec.jobTemplate.spec.template.spec"
        assert message == (
            'Pod Security "baseline" (the operator\'s default): '
            f"{template}.containers[0].securityContext.privileged: must not be true; "
            f"{template}.volumes[0].hostPath: must not be set"
        )
        events = [e for e in world.fake.events if e["involvedObject"]["name"] == "t"]
        assert [(e["type"], e["reason"]) for e in events] == [("Warning", "PodSecurity")]
        assert events[0]["message"] == message + "; no Jobs will be created"
        assert "nextScheduleTime" not in world.status()

    scenario(body)


def test_a_namespace_labelled_privileged_lets_it_run_and_the_refusal_clears_at_once() -> None:
    async def body(world: World) -> None:
        controller = world.replica()
        world.fake.put_namespace(NS)
        world.fake.create_task(NS, "t", spec(jobTemplate=PRIVILEGED))
        await world.settle()
        assert ready(world.status())[1] == "PodSecurity"
        world.fake.put_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "privileged"})
        await world.settle()  # no slot is due: the label alone judges the task again
        assert ready(world.status())[:2] == ("True", "Scheduled")
        assert world.fake.event_reasons() == ["PodSecurity", "SpecValid"]
        assert controller.next_sync(KEY) == ts("03:00")
        await world.at("03:00")
        assert world.fake.job_names(NS) == [J03]
        # Stricter again: a new Job would be refused; the one running is the Job controller's.
        world.fake.put_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "restricted"})
        await world.settle()
        status, reason, message = ready(world.status())
        assert (status, reason) == ("False", "PodSecurity")
        assert message.startswith('Pod Security "restricted" (the namespace\'s label): ')

    scenario(body)


def test_a_service_account_outside_the_namespaces_allowlist_is_refused() -> None:
    template = {"spec": {"template": {"spec": {"serviceAccountName": "deployer", **POD}}}}

    async def body(world: World) -> None:
        world.replica()
        allow = {"nightshift.dev/allowed-service-accounts": "builder"}
        world.fake.put_namespace(NS, annotations=allow)
        world.fake.create_task(NS, "t", spec(jobTemplate=template))
        await world.settle()
        await world.at("03:00")
        assert world.fake.job_names(NS) == []
        status, reason, message = ready(world.status())
        assert (status, reason) == ("False", "ServiceAccountNotAllowed")
        assert message == (
            "spec.jobTemplate.spec.template.spec.serviceAccountName: 'deployer' is not in the "
            "namespace's allowlist (nightshift.dev/allowed-service-accounts: builder, default)"
        )

    scenario(body)


POD: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}


@pytest.mark.parametrize(
    ("more", "reason", "message"),
    [
        (
            {"schedule": None, "interval": "1s"},
            "IntervalTooShort",
            "spec.interval: 1s is below the minimum interval 1m (the operator's limit)",
        ),
        (
            {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "m", "image": "b", "args": ["x" * 70_000]}]}}}}},
            "TemplateTooLarge",
            "spec.jobTemplate: 70084 bytes, more than the limit of 65536 (the operator's limit); "
            "keep scripts and data in a ConfigMap",
        ),
    ],
)  # fmt: skip
def test_the_operators_limits_refuse_a_task_with_a_message_naming_the_field(
    more: dict[str, Any], reason: str, message: str
) -> None:
    async def body(world: World) -> None:
        world.replica()
        world.fake.create_task(NS, "t", {k: v for k, v in spec(**more).items() if v is not None})
        await world.settle()
        for second in range(1, 5):
            await world.at(f"02:59:3{second}")
        assert world.fake.job_names(NS) == []
        assert ready(world.status()) == ("False", reason, message)
        assert world.fake.event_reasons() == [reason]

    scenario(body)


def test_without_the_namespaces_no_job_is_made_and_liveness_says_why() -> None:
    """RBAC refuses the namespace list (an older chart): no task is synced, since none could be
    judged, and after 30 s liveness fails naming the cause."""

    async def body(world: World) -> None:
        refused = ApiError(
            'namespaces is forbidden: User "x" cannot list resource "namespaces"', status=403
        )
        world.fake.fail("list_namespaces", refused, times=None)
        controller = world.replica()
        world.fake.create_task(NS, "t", spec())
        await world.settle()
        await world.at("03:00")
        assert world.fake.job_names(NS) == []
        assert "patch_status" not in world.fake.verbs()
        world.mono.advance(31)
        controller.supervisor.beat("timer", 15.0)
        (problem,) = controller.problems()
        assert problem.endswith(
            "no worker took one for 31 s: the namespaces are not listed (the operator needs "
            "list and watch on them)"
        )
        world.fake.heal("list_namespaces")

    scenario(body)


def test_a_backfill_of_a_refused_task_waits_and_creates_no_job() -> None:
    """A Backfill runs its task's template: the guard refuses it the same Jobs."""

    async def body(world: World) -> None:
        world.fake.create_task(NS, "t", spec(jobTemplate=PRIVILEGED))
        world.fake.create_object(
            "backfills",
            "Backfill",
            NS,
            "again",
            {"taskRef": {"name": "t"}, "from": "2026-03-01T00:00:00Z", "to": CREATED},
        )
        world.replica()
        await world.settle()
        await world.at("02:59:45")
        assert world.fake.job_names(NS) == []
        status = world.fake.objects["backfills"][NS, "again"].get("status") or {}
        [condition] = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert (condition["status"], condition["reason"]) == ("False", "InvalidTask")
        assert 'refused (PodSecurity): Pod Security "baseline"' in condition["message"]
        # Its Event is the Backfill's, not a namesake task's.
        [event] = [e for e in world.fake.events if e["reason"] == "InvalidTask"]
        assert (event["involvedObject"]["kind"], event["involvedObject"]["name"]) == (
            "Backfill",
            "again",
        )

    scenario(body)

"""Tables for ``nightshift.supervise`` (restarts, crash loops, heartbeats) and ``nightshift.faults``
(the crash seams of the chaos tests).

The supervisor's monotonic clock is a ``fakekube.Monotonic`` that moves only when a row says so;
its back-off is 1 ms, so a restart costs a millisecond of real time and no test sleeps longer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fakekube import Monotonic
from prometheus_client import REGISTRY

from nightshift.faults import ENV, Fault, InjectedFault, from_env, parse
from nightshift.supervise import Supervisor
from nightshift.workqueue import Backoff

FAST = Backoff(initial=0.001, maximum=0.001, jitter=0.0)
_names = itertools.count()


def unique(prefix: str) -> str:
    """A task name no other test used (the restart counter is process-wide)."""
    return f"{prefix}-{next(_names)}"


async def until(condition: Callable[[], bool], *, limit: float = 1.0) -> None:
    """Wait (1 ms at a time, at most ``limit`` s) until ``condition`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def restarts_metric(name: str) -> float:
    return REGISTRY.get_sample_value("nightshift_internal_restarts_total", {"task": name}) or 0.0


def test_a_crashing_task_is_restarted_and_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("worker")
    starts: list[int] = []

    async def work() -> None:
        starts.append(1)
        if len(starts) == 1:
            raise ValueError("boom")
        await asyncio.Event().wait()

    async def run() -> tuple[int, list[str]]:
        supervisor = Supervisor(backoff=FAST, clock=Monotonic())
        supervisor.start(name, work)
        await until(lambda: len(starts) == 2)
        problems = supervisor.problems()
        await supervisor.stop()
        return supervisor.restarts(name), problems

    with caplog.at_level(logging.INFO, logger="nightshift.supervise"):
        assert asyncio.run(run()) == (1, [])
    crashed = [r for r in caplog.records if r.getMessage() == f"internal task {name} crashed"]
    assert len(crashed) == 1
    assert crashed[0].exc_info is not None
    assert crashed[0].exc_info[0] is ValueError
    assert "Traceback" in caplog.text
    assert "ValueError: boom" in caplog.text
    assert restarts_metric(name) == 1.0


@dataclass(frozen=True)
class LoopRow:
    id: str
    ends: int  # how many times the task ends (crashes or returns) before it stays up
    ran_for: float  # monotonic seconds each run lasts before it ends
    returns: bool  # returns instead of raising
    problems: tuple[str, ...]


LOOP_ROWS = [
    LoopRow("two quick crashes: restarted, not yet a crash loop", 2, 0.0, False, ()),
    LoopRow(
        "three quick crashes in a row: a crash loop, and liveness says why",
        3,
        0.0,
        False,
        ("task {name} crashed 3 times in a row: ValueError: boom",),
    ),
    LoopRow(
        "four quick crashes: still a loop, counted",
        4,
        1.0,
        False,
        ("task {name} crashed 4 times in a row: ValueError: boom",),
    ),
    LoopRow("crashes after a minute's stable run each time: never a loop", 5, 60.0, False, ()),
    LoopRow(
        "a task that returns (it never should): counted like a crash",
        3,
        0.0,
        True,
        ("task {name} crashed 3 times in a row: returned",),
    ),
]


@pytest.mark.parametrize("row", LOOP_ROWS, ids=lambda r: r.id)
def test_crash_loop(row: LoopRow) -> None:
    name = unique("loop")
    mono = Monotonic()
    starts: list[int] = []

    async def work() -> None:
        starts.append(1)
        if len(starts) > row.ends:
            await asyncio.Event().wait()
        mono.advance(row.ran_for)
        if row.returns:
            return
        raise ValueError("boom")

    async def run() -> list[str]:
        supervisor = Supervisor(backoff=FAST, clock=mono)
        supervisor.start(name, work)
        await until(lambda: len(starts) == row.ends + 1)
        problems = supervisor.problems()
        await supervisor.stop()
        assert supervisor.restarts(name) == row.ends
        return problems

    assert asyncio.run(run()) == [p.format(name=name) for p in row.problems]


@pytest.mark.parametrize(
    ("late", "problems"),
    [
        pytest.param(0.0, [], id="just beaten"),
        pytest.param(15.0, [], id="exactly at the limit: still alive"),
        pytest.param(16.0, ["timer: no heartbeat for 16 s (limit 15 s)"], id="past the limit"),
    ],
)
def test_a_stale_heartbeat_is_a_problem(late: float, problems: list[str]) -> None:
    mono = Monotonic()
    supervisor = Supervisor(clock=mono)
    supervisor.beat("timer", 15.0)
    mono.advance(late)
    assert supervisor.problems() == problems
    supervisor.beat("timer", 15.0)
    assert supervisor.problems() == []


def test_stop_cancels_every_task_even_one_waiting_to_restart() -> None:
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("forever")

    async def crash() -> None:
        raise RuntimeError("again")

    async def run() -> tuple[bool, int]:
        supervisor = Supervisor(backoff=Backoff(initial=60.0, maximum=60.0), clock=Monotonic())
        a = supervisor.start(unique("forever"), forever)
        b = supervisor.start(unique("crash"), crash)  # then sleeps 60 s before its restart
        await asyncio.sleep(0.001)
        await supervisor.stop()
        return a.cancelled() and b.cancelled(), len(supervisor.problems())

    assert asyncio.run(run()) == (True, 0)
    assert cleaned == ["forever"]


# --- fault seams ------------------------------------------------------------------------------


def test_a_crash_fault_crashes_the_task_once_and_it_is_restarted() -> None:
    name = unique("timer")
    starts: list[int] = []

    async def work() -> None:
        starts.append(1)
        await asyncio.Event().wait()

    async def run() -> tuple[int, list[str]]:
        supervisor = Supervisor(
            backoff=FAST, clock=Monotonic(), faults={name: Fault(name, after=0.001)}
        )
        supervisor.start(name, work)
        await until(lambda: len(starts) == 2)
        await asyncio.sleep(0.005)  # the second run is not crashed
        problems = supervisor.problems()
        await supervisor.stop()
        return supervisor.restarts(name), problems

    assert asyncio.run(run()) == (1, [])


def test_a_crash_loop_fault_fails_liveness() -> None:
    name = unique("timer")

    async def work() -> None:
        await asyncio.Event().wait()

    async def run() -> list[str]:
        fault = Fault(name, after=0.001, every_start=True)
        supervisor = Supervisor(backoff=FAST, clock=Monotonic(), faults={name: fault})
        supervisor.start(name, work)
        await until(lambda: supervisor.restarts(name) >= 3)
        problems = supervisor.problems()
        await supervisor.stop()
        return problems

    (problem,) = asyncio.run(run())
    assert problem.startswith(f"task {name} crashed ")
    assert problem.endswith(f"InjectedFault: {ENV}: internal task {name} crashed on purpose")


def test_a_fault_on_a_task_that_ends_first_passes_its_own_error_through() -> None:
    from nightshift.faults import crashing

    async def work() -> None:
        raise KeyError("own")

    async def run() -> None:
        with pytest.raises(KeyError):
            await crashing(Fault("x", after=60.0), work)()

    asyncio.run(run())


def test_injected_fault_is_a_runtime_error() -> None:
    assert issubclass(InjectedFault, RuntimeError)


@pytest.mark.parametrize(
    ("text", "faults"),
    [
        pytest.param("", {}, id="unset: none"),
        pytest.param("crash:timer@5", {"timer": Fault("timer", 5.0)}, id="crash once"),
        pytest.param(
            "crash-loop:resync@1.5", {"resync": Fault("resync", 1.5, True)}, id="crash loop"
        ),
        pytest.param("crash:worker-0", {"worker-0": Fault("worker-0", 0.0)}, id="no time: at once"),
        pytest.param(
            " crash:timer@5 , crash-loop:events-1@2 ,",
            {"timer": Fault("timer", 5.0), "events-1": Fault("events-1", 2.0, True)},
            id="several, spaces and a trailing comma",
        ),
    ],
)
def test_parse(text: str, faults: dict[str, Fault]) -> None:
    assert parse(text) == faults


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        pytest.param("exit-after-create", "'exit-after-create'", id="the old os._exit seam"),
        pytest.param("boom:timer@1", "'boom:timer@1'", id="unknown kind"),
        pytest.param("crash:@1", "'crash:@1'", id="no task"),
        pytest.param("crash:timer@5,crash:timer@soon", "'crash:timer@soon'", id="bad seconds"),
        pytest.param("crash:timer@-1", "'crash:timer@-1'", id="negative seconds"),
    ],
)
def test_parse_errors_name_the_bad_item(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"{ENV}: {bad} ") as error:
        parse(text)
    assert "crash:TASK@SECONDS" in str(error.value)


def test_from_env() -> None:
    assert from_env({ENV: "crash:timer@5"}) == {"timer": Fault("timer", 5.0)}
    assert from_env({}) == {}

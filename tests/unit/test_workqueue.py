"""Tables for ``nightshift.workqueue``: dedup, one worker per key, wake-ups that only move earlier,
and per-key back-off.

A row is a script of operations on a fresh queue whose wall clock reads ``NOW`` (1000.0) unless a
step moves it, and whose back-off has no jitter (1 s, doubling, at most 30 s). Each step states
what it returns; ``len`` is the number of keys queued for a worker, ``wake`` a key's pending
wake-up. Every expected value is written out by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from nightshift.workqueue import Backoff, WorkQueue

NOW = 1000.0
NO_JITTER = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)

# (operation, argument(s), expected result); None where the operation returns nothing
Step = tuple[Any, ...]


@dataclass(frozen=True)
class Row:
    id: str
    steps: tuple[Step, ...]


def play(steps: tuple[Step, ...]) -> list[Any]:
    """Run the steps on a fresh queue; returns what each returned."""

    async def run() -> list[Any]:
        clock = [NOW]
        queue: WorkQueue[str] = WorkQueue(clock=lambda: clock[0], backoff=NO_JITTER)
        out: list[Any] = []
        for op, *rest in steps:
            args = rest[:-1]  # the last item is the expectation
            if op == "get":
                out.append(await asyncio.wait_for(queue.get(), timeout=1))
            elif op == "len":
                out.append(len(queue))
            elif op == "clock":
                clock[0] = args[0]
                out.append(None)
            elif op == "wake":
                out.append(queue.wake_of(args[0]))
            elif op == "next_wake":
                out.append(queue.next_wake())
            elif op == "pop_due":
                out.append(queue.pop_due(args[0]))
            elif op == "background":
                out.append(queue.add(args[0], background=True))
            elif op == "urgent":
                out.append(queue.urgent)
            elif op == "retry":
                out.append(queue.retry(args[0], **(args[1] if len(args) > 1 else {})))
            else:
                out.append(getattr(queue, op)(*args))
        return out

    return asyncio.run(run())


ROWS = [
    Row(
        id="background keys (what a list asks to look at) wait until no urgent key is queued",
        steps=(
            ("background", "quiet-1", None),
            ("background", "quiet-2", None),
            ("add", "due", None),
            ("len", 3),
            ("urgent", 1),
            ("get", "due"),
            ("urgent", 0),
            ("get", "quiet-1"),
            ("get", "quiet-2"),
            ("len", 0),
        ),
    ),
    Row(
        id="a background key added again as urgent (its wake-up came) is promoted, and taken once",
        steps=(
            ("background", "a", None),
            ("background", "b", None),
            ("add", "b", None),
            ("len", 2),
            ("urgent", 1),
            ("get", "b"),
            ("get", "a"),
            ("len", 0),
            ("add", "c", None),
            ("get", "c"),  # b's stale copy in the background line is skipped
            ("len", 0),
        ),
    ),
    Row(
        id="added while busy: synced again afterwards, urgent if any add was",
        steps=(
            ("add", "a", None),
            ("get", "a"),
            ("background", "a", None),
            ("add", "a", None),
            ("background", "z", None),
            ("done", "a", None),
            ("urgent", 1),
            ("get", "a"),
            ("get", "z"),
        ),
    ),
    Row(
        id="dedup: a key added twice before a worker takes it is queued once",
        steps=(
            ("add", "a", None),
            ("add", "a", None),
            ("add", "b", None),
            ("len", 2),
            ("get", "a"),
            ("get", "b"),
            ("len", 0),
        ),
    ),
    Row(
        id="a key added while a worker syncs it is not handed to a second worker, and is synced "
        "again after done",
        steps=(
            ("add", "a", None),
            ("get", "a"),
            ("add", "a", None),
            ("add", "a", None),
            ("len", 0),
            ("done", "a", None),
            ("len", 1),
            ("get", "a"),
            ("done", "a", None),
            ("len", 0),
        ),
    ),
    Row(
        id="done without an add meanwhile: not queued again",
        steps=(("add", "a", None), ("get", "a"), ("done", "a", None), ("len", 0)),
    ),
    Row(
        id="add_after only moves a wake-up earlier",
        steps=(
            ("add_after", "a", 1100.0, None),
            ("add_after", "a", 1200.0, None),
            ("wake", "a", 1100.0),
            ("add_after", "a", 1050.0, None),
            ("wake", "a", 1050.0),
            ("add_after", "a", 1050.0, None),
            ("next_wake", 1050.0),
        ),
    ),
    Row(
        id="pop_due: due keys in time order, queued; later ones wait; superseded entries never "
        "fire",
        steps=(
            ("add_after", "b", 1030.0, None),
            ("add_after", "a", 1010.0, None),
            ("add_after", "c", 1020.0, None),
            ("add_after", "c", 1005.0, None),  # the 1020 entry is superseded
            ("pop_due", 1025.0, [("c", 1005.0), ("a", 1010.0)]),
            ("len", 2),
            ("wake", "c", None),
            ("next_wake", 1030.0),
            ("pop_due", 1029.0, []),
            ("pop_due", 1030.0, [("b", 1030.0)]),
            ("next_wake", None),
        ),
    ),
    Row(
        id="pop_due of a key being synced: synced again after done",
        steps=(
            ("add", "a", None),
            ("get", "a"),
            ("add_after", "a", 1001.0, None),
            ("pop_due", 1001.0, [("a", 1001.0)]),
            ("len", 0),
            ("done", "a", None),
            ("get", "a"),
        ),
    ),
    Row(
        id="forget drops the wake-up and the failures",
        steps=(
            ("retry", "a", 1.0),
            ("retry", "a", 2.0),
            ("forget", "a", None),
            ("wake", "a", None),
            ("pop_due", 2000.0, []),
            ("failures", "a", 0),
        ),
    ),
    Row(
        # issue 12: "an error path can push a task past its due slot"
        id="an error back-off never pushes a due slot back",
        steps=(
            ("add_after", "a", 1000.5, None),  # the next slot, half a second away
            ("retry", "a", 1.0),  # a sync failed: retry at 1001
            ("wake", "a", 1000.5),
            ("retry", "a", {"at_least": 30.0}, 30.0),  # throttled, Retry-After: 30
            ("wake", "a", 1000.5),
            ("pop_due", 1000.5, [("a", 1000.5)]),
        ),
    ),
    Row(
        id="an error back-off sooner than the next slot brings the wake-up forward",
        steps=(
            ("add_after", "a", 4600.0, None),
            ("retry", "a", 1.0),
            ("wake", "a", 1001.0),
        ),
    ),
    Row(
        id="back-off grows per failure (1, 2, 4, 8 s) from the time of each failure",
        steps=(
            ("retry", "a", 1.0),
            ("pop_due", 1001.0, [("a", 1001.0)]),
            ("clock", 1001.0, None),
            ("retry", "a", 2.0),
            ("wake", "a", 1003.0),
            ("pop_due", 1003.0, [("a", 1003.0)]),
            ("clock", 1003.0, None),
            ("retry", "a", 4.0),
            ("clock", 1007.0, None),
            ("retry", "a", 8.0),
            ("failures", "a", 4),
            ("failures", "b", 0),
        ),
    ),
    Row(
        id="a success resets the back-off",
        steps=(
            ("retry", "a", 1.0),
            ("retry", "a", 2.0),
            ("retry", "a", 4.0),
            ("succeeded", "a", None),
            ("failures", "a", 0),
            ("pop_due", 1001.0, [("a", 1001.0)]),
            ("retry", "a", 1.0),
        ),
    ),
    Row(
        id="retry honours the server's Retry-After when it is longer, not when shorter",
        steps=(
            ("retry", "a", {"at_least": 7.0}, 7.0),
            ("wake", "a", 1007.0),
            ("retry", "b", {"at_least": 0.5}, 1.0),
            ("retry", "c", {"at_least": None}, 1.0),
        ),
    ),
    Row(
        id="back-off per key: one key's failures do not slow another",
        steps=(
            ("retry", "a", 1.0),
            ("retry", "a", 2.0),
            ("retry", "b", 1.0),
            ("wake", "b", 1001.0),
        ),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_queue(row: Row) -> None:
    assert play(row.steps) == [step[-1] for step in row.steps]


@pytest.mark.parametrize(
    ("failures", "rand", "delay"),
    [
        (1, 0.5, 1.0),
        (2, 0.5, 2.0),
        (3, 0.5, 4.0),
        (5, 0.5, 16.0),
        (6, 0.5, 16.0),  # 32 capped
        (40, 0.5, 16.0),
        (0, 0.5, 1.0),  # never below the initial delay
        (1, 0.0, 0.9),  # jitter 0.1: 10 % shorter ...
        (3, 0.0, 3.6),
        (3, 1.0, 4.4),  # ... to 10 % longer
    ],
)
def test_backoff_delay(failures: int, rand: float, delay: float) -> None:
    assert Backoff().delay(failures, rand) == pytest.approx(delay)


def test_on_change_is_called_whenever_the_queued_count_changes() -> None:
    async def run() -> list[int]:
        counts: list[int] = []
        queue: WorkQueue[str] = WorkQueue(clock=lambda: NOW)
        queue.on_change = lambda: counts.append(len(queue))
        queue.add("a")
        queue.add("a")  # no change
        queue.add("b")
        await queue.get()
        queue.add_after("c", NOW)
        queue.pop_due(NOW)
        return counts

    assert asyncio.run(run()) == [1, 2, 1, 2]


def test_last_taken_reads_the_injected_monotonic_clock() -> None:
    async def run() -> tuple[float, float]:
        mono = [50.0]
        queue: WorkQueue[str] = WorkQueue(clock=lambda: NOW, monotonic=lambda: mono[0])
        first = queue.last_taken
        mono[0] = 80.0
        queue.add("a")
        await queue.get()
        return first, queue.last_taken

    assert asyncio.run(run()) == (50.0, 80.0)


def test_run_timer_queues_due_keys_and_wakes_for_an_earlier_one() -> None:
    """The timer moves due wake-ups into the queue with their lag, beats each round, and an
    add_after sooner than what it sleeps for wakes it at once (no real time passes)."""

    async def run() -> tuple[list[tuple[str, float, float]], str, str, int]:
        clock = [NOW]
        due: list[tuple[str, float, float]] = []
        beats: list[float] = []
        queue: WorkQueue[str] = WorkQueue(clock=lambda: clock[0])
        queue.add_after("late", NOW + 3600)
        queue.add_after("a", NOW - 2)  # already due: the first round queues it
        timer = asyncio.create_task(
            queue.run_timer(
                tick=60.0,
                on_due=lambda key, when, now: due.append((key, when, now)),
                beat=lambda: beats.append(clock[0]),
            )
        )
        first = await asyncio.wait_for(queue.get(), timeout=1)
        clock[0] = NOW + 10
        queue.add_after("b", NOW + 5)  # the timer sleeps for up to 60 s: this must wake it
        second = await asyncio.wait_for(queue.get(), timeout=1)
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)
        return due, first, second, len(beats)

    due, first, second, beats = asyncio.run(run())
    assert (first, second) == ("a", "b")
    assert due == [("a", 998.0, 1000.0), ("b", 1005.0, 1010.0)]
    assert beats == 2


def test_the_timer_stops_when_cancelled_as_a_wake_up_arrives() -> None:
    """Cancelled in the same loop iteration as an add_after wakes it, the timer must end (on
    Python 3.11 ``asyncio.wait_for`` swallowed such a cancellation, CPython gh-86296)."""

    async def run() -> bool:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: NOW)
        timer = asyncio.create_task(queue.run_timer(tick=3600.0))
        await asyncio.sleep(0)
        queue.add_after("a", NOW + 600)
        timer.cancel()
        done, _ = await asyncio.wait({timer}, timeout=0.5)
        return timer in done and timer.cancelled()

    assert asyncio.run(run()) is True


def test_wake_ups_superseded_again_and_again_do_not_pile_up() -> None:
    """A task whose syncs keep failing moves its wake-up earlier (the back-off) and back to its
    next slot once per attempt: the heap keeps at most twice the live wake-ups, plus slack."""

    async def run() -> tuple[int, list[tuple[str, float]]]:
        clock = [NOW]
        queue: WorkQueue[str] = WorkQueue(clock=lambda: clock[0], backoff=NO_JITTER)
        for i in range(20_000):
            queue.add_after("failing", NOW + 86_400)  # its next slot, tomorrow
            queue.add_after("failing", NOW + i + 1)  # the back-off
            queue.pop_due(NOW + i + 1)
        queue.add_after("failing", NOW + 86_400)  # the last sync succeeded
        queue.add_after("other", NOW + 50_000)
        heap = len(queue._heap)
        return heap, queue.pop_due(NOW + 86_400)

    heap, due = asyncio.run(run())
    assert heap <= 2 * 2 + 1024 + 1
    assert due == [("other", NOW + 50_000), ("failing", NOW + 86_400)]


def test_a_closed_queue_hands_out_nothing_and_drains_once_the_syncs_in_progress_end() -> None:
    """What a controller winding down relies on: no key is taken after close (queued or added
    later), and ``drained`` returns only when the key being synced is done."""

    async def run() -> None:
        changes: list[int] = []
        queue: WorkQueue[str] = WorkQueue(clock=lambda: NOW, backoff=NO_JITTER)
        queue.on_change = lambda: changes.append(len(queue))
        queue.add("a")
        queue.add("b")
        assert await queue.get() == "a"
        queue.add("a")  # again while busy
        queue.close()
        queue.add("c")
        assert len(queue) == 0
        assert changes[-1] == 0  # the write gate hears that nothing waits any more
        taker = asyncio.create_task(queue.get())
        drained = asyncio.create_task(queue.drained())
        await asyncio.sleep(0)
        assert not drained.done()  # "a" is still being synced
        queue.done("a")
        await asyncio.sleep(0)
        assert drained.done()
        assert not taker.done()  # neither "b", nor "a" again, nor "c"
        assert len(queue) == 0
        taker.cancel()

    asyncio.run(run())

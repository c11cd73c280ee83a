"""The work queue: which tasks to sync now, and a heap of wake-ups for the ones due later.

Like client-go's workqueue: a key is queued at most once, is never handed to two workers at once
(a key added while it is being synced is synced again afterwards), and ``add_after`` only ever
moves a key's wake-up earlier, so no later request (an error back-off, say) can push a due slot
back. Failures back off per key, exponentially, until the key succeeds once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff", "WorkQueue"]

K = TypeVar("K", bound=Hashable)
# The heap is rebuilt once it holds this many superseded wake-ups more than twice the live ones.
COMPACT_SLACK = 1024


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retrying a key that failed ``failures`` times in a row."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 16.0
    jitter: float = 0.1  # +/- this fraction, so that keys that failed together spread out

    def delay(self, failures: int, rand: float = 0.5) -> float:
        """``rand`` in [0, 1) picks the jitter (0.5: none)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return base * (1 + self.jitter * (2 * rand - 1))


class WorkQueue(Generic[K]):
    """Keys waiting for a worker, and wake-ups (wall-clock seconds) waiting for their time."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        on_change: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic  # for last_taken (liveness), never for wake-ups
        self.backoff = backoff or Backoff()
        self.on_change = on_change  # called whenever the number of queued keys changes
        # Two lines: urgent keys (watch events, due wake-ups) go before background ones (what a
        # list asks to look at), so that after a restart a due task does not wait behind the
        # first look at 10,000 quiet ones. A key promoted to urgent may sit in both deques; the
        # first copy taken wins and the other is skipped.
        self._urgent: collections.deque[K] = collections.deque()
        self._background: collections.deque[K] = collections.deque()
        self._queued: dict[K, bool] = {}  # key -> urgent
        self._urgent_queued = 0
        self._available = asyncio.Event()
        self._busy: dict[K, bool] = {}  # key -> taken from the urgent line
        self._again: dict[K, bool] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._wake: dict[K, float] = {}  # the current (earliest) wake-up of each key
        self._seq = itertools.count()
        self._timer = asyncio.Event()
        self._failures: dict[K, int] = {}
        self.last_taken = monotonic()  # when a worker last took a key (liveness)
        self._closed = False
        self._idle = asyncio.Event()  # no key is being synced
        self._idle.set()

    # --- now --------------------------------------------------------------------------------

    def add(self, key: K, *, background: bool = False) -> None:
        """Sync ``key`` soon (once, however often it is added before a worker takes it);
        ``background`` keys wait until no urgent one is queued."""
        urgent = not background
        if self._closed:
            return
        if key in self._busy:
            self._again[key] = self._again.get(key, False) or urgent
            return
        queued = self._queued.get(key)
        if queued is not None:
            if urgent and not queued:
                self._queued[key] = True
                self._urgent_queued += 1
                self._urgent.append(key)
                self.on_change()
            return
        self._queued[key] = urgent
        self._urgent_queued += urgent
        (self._urgent if urgent else self._background).append(key)
        self._available.set()
        self.on_change()

    def _take(self) -> K | None:
        for line in (self._urgent, self._background):
            while line:
                key = line.popleft()
                if key in self._queued:
                    return key
        return None

    async def get(self) -> K:
        """The next key to sync; the caller must call :meth:`done` with it afterwards."""
        while (key := self._take()) is None:
            self._available.clear()
            await self._available.wait()
        urgent = self._queued.pop(key)
        self._urgent_queued -= urgent
        self._busy[key] = urgent
        self._idle.clear()
        self.last_taken = self.monotonic()
        self.on_change()
        return key

    def done(self, key: K) -> None:
        """The worker finished ``key``; if it was added meanwhile, it is queued again."""
        self._busy.pop(key, None)
        urgent = self._again.pop(key, None)
        if urgent is not None:
            self.add(key, background=not urgent)
        if not self._busy:
            self._idle.set()

    def close(self) -> None:
        """Hand out nothing more: the queued keys are dropped and later adds ignored (the
        controller is stopping; whoever takes over lists everything afresh). Keys being synced
        finish; :meth:`drained` waits for them."""
        self._closed = True
        self._queued.clear()
        self._urgent.clear()
        self._background.clear()
        self._urgent_queued = 0
        self._again.clear()
        self.on_change()

    async def drained(self) -> None:
        """Return once no key is being synced."""
        await self._idle.wait()

    def taken_urgent(self, key: K) -> bool:
        """Whether a worker took ``key`` (now busy) from the urgent line."""
        return self._busy.get(key, False)

    def __len__(self) -> int:
        """Keys queued for a worker (not those being synced)."""
        return len(self._queued)

    @property
    def urgent(self) -> int:
        """Urgent keys queued (Job creates may be coming)."""
        return self._urgent_queued

    # --- later ------------------------------------------------------------------------------

    def add_after(self, key: K, when: float) -> None:
        """Sync ``key`` at ``when`` (wall clock) unless it already has an earlier wake-up."""
        current = self._wake.get(key)
        if current is not None and current <= when:
            return
        self._wake[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        if len(self._heap) > 2 * len(self._wake) + COMPACT_SLACK:
            # Superseded wake-ups stay in the heap until their time comes; a task whose syncs
            # keep failing would leave one behind per back-off. Rebuild from the live ones.
            self._heap = [(at, next(self._seq), k) for k, at in self._wake.items()]
            heapq.heapify(self._heap)
        self._timer.set()

    def wake_of(self, key: K) -> float | None:
        """The key's pending wake-up, if any."""
        return self._wake.get(key)

    def forget(self, key: K) -> None:
        """Drop the key's wake-up and failure count (the task is gone)."""
        self._wake.pop(key, None)
        self._failures.pop(key, None)

    def pop_due(self, now: float) -> list[tuple[K, float]]:
        """Queue every key whose wake-up is at or before ``now``; returns them with their times."""
        due: list[tuple[K, float]] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._wake.get(key) != when:
                continue  # superseded by an earlier wake-up, or forgotten
            del self._wake[key]
            due.append((key, when))
            self.add(key)
        return due

    def next_wake(self) -> float | None:
        """The earliest pending wake-up."""
        while self._heap and self._wake.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale entries first: they would wake the timer for nothing
        return self._heap[0][0] if self._heap else None

    @property
    def scheduled(self) -> int:
        """Keys with a pending wake-up."""
        return len(self._wake)

    async def run_timer(
        self,
        *,
        tick: float = 5.0,
        on_due: Callable[[K, float, float], None] = lambda key, when, now: None,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Move wake-ups into the queue as they come due, forever; ``beat`` at least every
        ``tick`` seconds, so that a stopped timer is noticed (liveness)."""
        while True:
            self._timer.clear()
            now = self.clock()
            for key, when in self.pop_due(now):
                on_due(key, when, now)
            beat()
            upcoming = self.next_wake()
            delay = tick if upcoming is None else min(tick, max(0.0, upcoming - now))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # comes with the event (CPython gh-86296), and stopping would then hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timer.wait()

    # --- failures ---------------------------------------------------------------------------

    def retry(self, key: K, *, at_least: float | None = None) -> float:
        """The key failed: sync it again after its back-off (or the server's ``at_least``
        seconds, if longer). Returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures, random.random())
        if at_least is not None:
            delay = max(delay, at_least)
        self.add_after(key, self.clock() + delay)
        return delay

    def succeeded(self, key: K) -> None:
        """The key synced without error: its next failure starts the back-off afresh."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

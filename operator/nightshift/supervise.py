"""Supervision of the operator's long-lived internal tasks, and the heartbeats liveness reads.

A task that raises is logged with its traceback and started again after a back-off, never left
dead while the process looks alive. One that keeps crashing, or a heartbeat that stops, makes
:meth:`Supervisor.problems` non-empty, which fails the liveness probe so the kubelet restarts
the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nightshift import metrics
from nightshift.faults import Fault, crashing
from nightshift.workqueue import Backoff

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

# A task that ran this long before crashing is "stable": its back-off and crash count restart.
STABLE_AFTER = 60.0
# This many crashes in a row (none of them after a stable run) is a crash loop: liveness fails.
CRASH_LOOP = 3


@dataclass(slots=True)
class _State:
    crashes: int = 0  # in a row
    last_error: str = ""
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs named coroutines, restarting each one that fails, and keeps heartbeats."""

    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    faults: dict[str, Fault] = field(default_factory=dict)  # test seams (nightshift.faults)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _states: dict[str, _State] = field(default_factory=dict)
    _beats: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (at, limit)

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``factory()`` as task ``name`` until :meth:`stop`, restarting it when it fails."""
        self._states[name] = _State()
        if name in self.faults:
            factory = crashing(self.faults[name], factory)
        task = asyncio.create_task(self._keep(name, factory), name=f"nightshift-{name}")
        self._tasks[name] = task
        return task

    async def _keep(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        state = self._states[name]
        while True:
            started = self.clock()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("internal task %s crashed", name)
                state.last_error = f"{type(error).__name__}: {error}"
            else:
                log.error("internal task %s returned, which it never should", name)
                state.last_error = "returned"
            if self.clock() - started >= STABLE_AFTER:
                state.crashes = 0
            state.crashes += 1
            state.restarts += 1
            metrics.RESTARTS.labels(task=name).inc()
            delay = self.backoff.delay(state.crashes)
            log.warning("restarting internal task %s in %.1f s", name, delay)
            await asyncio.sleep(delay)

    def restarts(self, name: str) -> int:
        """How often task ``name`` was restarted."""
        state = self._states.get(name)
        return state.restarts if state else 0

    def beat(self, name: str, limit: float) -> None:
        """Heartbeat ``name``; liveness fails when the next one is more than ``limit`` s late."""
        self._beats[name] = (self.clock(), limit)

    def problems(self) -> list[str]:
        """Why the process should be restarted (empty: it is alive)."""
        now = self.clock()
        out: list[str] = []
        for name, state in self._states.items():
            if state.crashes >= CRASH_LOOP:
                out.append(
                    f"task {name} crashed {state.crashes} times in a row: {state.last_error}"
                )
        for name, (at, limit) in self._beats.items():
            if now - at > limit:
                out.append(f"{name}: no heartbeat for {now - at:.0f} s (limit {limit:.0f} s)")
        return out

    async def stop(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

"""Fault seams for the chaos tests: the failures nothing outside the process can cause.

``NIGHTSHIFT_FAULT="crash:timer@5"`` makes the internal task ``timer`` raise 5 s after it first
starts (once); ``crash-loop:timer@1`` makes it raise 1 s after every start. Several faults are
separated by commas. The variable is read once at start-up and applied when a supervised task is
started, never on the path of a sync. Production never sets it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = ["Fault", "InjectedFault", "crashing", "from_env", "parse"]

ENV = "NIGHTSHIFT_FAULT"


class InjectedFault(RuntimeError):
    """Raised by a fault seam, on purpose."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Crash internal task ``task`` ``after`` seconds into its first run (or into every run)."""

    task: str
    after: float
    every_start: bool = False


def parse(text: str) -> dict[str, Fault]:
    """``crash:NAME@SECONDS`` or ``crash-loop:NAME@SECONDS``, comma-separated; by task name."""
    faults: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, rest = item.partition(":")
        name, _, after = rest.partition("@")
        try:
            seconds = float(after or 0)
        except ValueError:
            seconds = -1.0
        if kind not in ("crash", "crash-loop") or not name or seconds < 0:
            raise ValueError(f"{ENV}: {item!r} is not crash:TASK@SECONDS or crash-loop:TASK@S")
        faults[name] = Fault(name, seconds, every_start=kind == "crash-loop")
    return faults


def from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Fault]:
    """The faults ``$NIGHTSHIFT_FAULT`` asks for (none when it is unset)."""
    return parse(environ.get(ENV, ""))


def crashing(fault: Fault, factory: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``factory`` that crashes as ``fault`` says."""
    starts = 0

    async def run() -> None:
        nonlocal starts
        starts += 1
        if starts > 1 and not fault.every_start:
            await factory()
            return
        task = asyncio.ensure_future(factory())
        done, _ = await asyncio.wait({task}, timeout=fault.after)
        if task in done:
            task.result()
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise InjectedFault(f"{ENV}: internal task {fault.task} crashed on purpose")

    return run

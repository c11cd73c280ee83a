"""Waiting: poll a function until its answer is truthy, or sleep until a wall-clock time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """A poll that timed out: an AssertionError for the tests, a TimeoutError for the bench
    (which catches that to go on with what it has)."""


def poll(fn: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``fn`` until it returns a truthy value and return that; after ``timeout`` s raise
    WaitTimeout naming ``what`` and the last value. ``fn`` runs at least once, and once more
    after the deadline has passed."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def sleep_until(when: float) -> None:
    """Sleep until ``time.time()`` reaches ``when``: coarse steps, then a spin for the last 2 ms."""
    while True:
        left = when - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.5) if left > 0.002 else 0)

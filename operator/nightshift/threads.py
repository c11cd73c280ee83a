"""Run a coroutine on an event loop of its own, in a thread of its own, and wait for it.

Lease renewals run this way: the operator's main event loop can be busy for minutes (a replica
that takes shards holding 50,000 tasks looks at every one of them), and a renewal that waits
behind that work comes after the renew deadline, so the replica drops the shards it holds. A
second loop in another thread is scheduled by the interpreter every few milliseconds whatever the
first one does; what it shares with the main loop goes through :func:`call_soon` and
:func:`run_on`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["call_soon", "in_thread", "run_on"]

T = TypeVar("T")


async def in_thread(main: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> T:
    """Run ``main()`` on a new event loop in a new thread and return what it returns.

    Cancelling the caller cancels ``main()`` and waits (without blocking the caller's loop)
    until it has ended, so that nothing it does outlives the caller: a Lease renewed after the
    operator gave it back would hold it for another replica's whole lease duration.
    """
    started: concurrent.futures.Future[asyncio.Task[T]] = concurrent.futures.Future()
    ended: concurrent.futures.Future[T] = concurrent.futures.Future()

    async def body() -> T:
        task = asyncio.current_task()
        assert task is not None
        started.set_result(task)
        return await main()

    def target() -> None:
        try:
            result = asyncio.run(body())
        except asyncio.CancelledError:
            ended.cancel()
        except BaseException as error:
            ended.set_exception(error)
        else:
            ended.set_result(result)

    threading.Thread(target=target, name=name, daemon=True).start()
    waiting = asyncio.wrap_future(ended)
    try:
        # Shielded: a cancelled caller must not mark the thread's future done under its feet.
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        task = await asyncio.wrap_future(started)
        with contextlib.suppress(RuntimeError):  # its loop is already closed: it has ended
            task.get_loop().call_soon_threadsafe(task.cancel)
        with contextlib.suppress(BaseException):
            await waiting
        raise


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_soon(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], object]) -> None:
    """Call ``fn`` on ``loop``: now if that is the running loop (or None), else soon, there."""
    if loop is None or loop is _running():
        fn()
        return
    with contextlib.suppress(RuntimeError):  # that loop is closed: the operator is stopping
        loop.call_soon_threadsafe(fn)


async def run_on(
    loop: asyncio.AbstractEventLoop | None, work: Callable[[], Coroutine[Any, Any, T]]
) -> T:
    """Await ``work()`` on ``loop`` (here if that is the running loop, or None)."""
    if loop is None or loop is _running():
        return await work()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work(), loop))

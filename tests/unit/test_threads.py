"""The helper that runs the Lease loops on an event loop and thread of their own
(``nightshift.threads``): results and errors come back, a cancelled caller waits until the
thread's work has ended, and calls come back to the caller's loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nightshift.threads import call_soon, in_thread, run_on


def test_the_result_and_the_error_come_back_from_the_thread() -> None:
    async def answer() -> str:
        await asyncio.sleep(0.01)
        return threading.current_thread().name

    async def fail() -> None:
        raise ValueError("from the thread")

    async def body() -> None:
        assert await in_thread(answer, name="aside") == "aside"
        with pytest.raises(ValueError, match="from the thread"):
            await in_thread(fail, name="aside")

    asyncio.run(body())


def test_a_cancelled_caller_returns_only_once_the_work_in_the_thread_has_ended() -> None:
    """Otherwise a renewal could land after the operator gave its Leases back."""
    steps: list[str] = []
    started = threading.Event()

    async def work() -> None:
        try:
            steps.append("started")
            started.set()
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.2)  # cleanup that takes a while
            steps.append("ended")

    async def body() -> None:
        task = asyncio.create_task(in_thread(work, name="aside"))
        assert await asyncio.to_thread(started.wait, 10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == ["started", "ended"]

    asyncio.run(body())


def test_calls_from_the_thread_run_on_the_callers_loop() -> None:
    async def body() -> None:
        main = asyncio.get_running_loop()
        seen: list[str] = []
        done = asyncio.Event()

        def here() -> None:
            seen.append(threading.current_thread().name)
            done.set()

        async def there() -> str:
            assert asyncio.get_running_loop() is main
            return threading.current_thread().name

        async def work() -> str:
            call_soon(main, here)
            return await run_on(main, there)

        assert await in_thread(work, name="aside") == threading.current_thread().name
        await done.wait()
        assert seen == [threading.current_thread().name]
        # On the caller's own loop (or with none given) both run at once, in place.
        call_soon(None, here)
        assert len(seen) == 2
        assert await run_on(main, there) == threading.current_thread().name

    asyncio.run(body())

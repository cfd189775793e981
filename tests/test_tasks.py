"""Ending background tasks: a stop that is itself cancelled stops."""

from __future__ import annotations

import asyncio

import pytest

from chatapp.tasks import cancel_and_wait


def slow_to_end(cleaning: asyncio.Event, release: asyncio.Event) -> asyncio.Task[None]:
    """A task whose clean-up, once it is cancelled, waits for ``release``."""

    async def run() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()

    return asyncio.create_task(run())


async def test_a_stop_cancelled_while_it_waits_is_cancelled_and_goes_no_further() -> None:
    # The self-check cancelled at shutdown while it was restarting the Redis listener: had
    # it swallowed that cancellation, it would have started a new listener and run on.
    cleaning, release = asyncio.Event(), asyncio.Event()
    task = slow_to_end(cleaning, release)
    went_on = False

    async def stop_it() -> None:
        nonlocal went_on
        await cancel_and_wait(task)
        went_on = True

    stopper = asyncio.create_task(stop_it())
    await cleaning.wait()  # the stopper waits for the task's clean-up
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not went_on
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stop_returns_once_the_task_has_ended() -> None:
    cleaning, release = asyncio.Event(), asyncio.Event()
    task = slow_to_end(cleaning, release)
    stopper = asyncio.create_task(cancel_and_wait(task))
    await cleaning.wait()
    assert not stopper.done()
    release.set()
    await stopper
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to stop


async def test_what_a_task_failed_with_reaches_whoever_stops_it() -> None:
    started = asyncio.Event()

    async def fails_on_cancel() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("broken clean-up")

    task = asyncio.create_task(fails_on_cancel())
    await started.wait()  # cancelled inside its try, not before it began
    with pytest.raises(RuntimeError, match="broken clean-up"):
        await cancel_and_wait(task)

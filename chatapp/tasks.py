"""Ending background tasks, and telling where the ones that will not end wait."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and return once it has ended; re-raise what it failed with, if not
    its cancellation.

    ``task.cancel(); with suppress(CancelledError): await task`` also swallows a
    cancellation of the *caller* that arrives while it waits, and the caller runs on: a
    self-check cancelled at shutdown while it was restarting the Redis listener started a
    new one and kept the process from ever exiting. Here the caller's cancellation
    reaches the caller.
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.result()


def waiting_on(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its chain of awaits, outermost first (``asyncio`` shows only
    the outermost frame of a suspended task)."""
    step: Any = task.get_coro()
    frames: list[str] = []
    while step is not None and len(frames) < 30:
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is None:
            frame = getattr(step, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            frames.append(f"{code.co_name} ({_short(code.co_filename)}:{frame.f_lineno})")
        step = (
            getattr(step, "cr_await", None)
            or getattr(step, "gi_yieldfrom", None)
            or getattr(step, "ag_await", None)
        )
    return " -> ".join(frames) or "?"


def _short(path: str) -> str:
    """``path`` from its import root: ``chatapp/feed.py``, ``asyncio/tasks.py``."""
    roots = sorted((root for root in sys.path if root and path.startswith(root + "/")), key=len)
    return path[len(roots[-1]) + 1 :] if roots else path


def still_waiting(limit: int = 20) -> str:
    """Every other task of the running loop and where it waits, alike ones counted
    together (thousands of connections wait in the same place), the most common first."""
    current = asyncio.current_task()
    seen: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        if task is not current:
            name = task.get_name()
            named = "" if name.startswith("Task-") else f"{name}: "
            seen[named + waiting_on(task)] += 1
    shown = [f"{n} x {where}" for where, n in seen.most_common(limit)]
    if len(seen) > limit:
        shown.append(f"and {len(seen) - limit} more")
    return " | ".join(shown) or "nothing"

"""Running a bridge: until told to stop, with progress reports, and a clean close either way."""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

from .stats import BridgeStats

PROGRESS_S = 0.25  # how often on_progress hears about the run


class Bridge(Protocol):
    async def run(self) -> None: ...
    async def close(self) -> None: ...
    def stats(self) -> BridgeStats: ...


async def run_bridge(
    bridge: Bridge, stop: asyncio.Event, on_progress: Callable[[BridgeStats], None] | None = None
) -> BridgeStats:
    """Run ``bridge`` until ``stop`` is set, close it, and return its final stats.

    An error inside the bridge ends the run too, and is raised after the close.
    """
    task = asyncio.create_task(bridge.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        while not (task.done() or stop.is_set()):
            await asyncio.wait((task, stopping), timeout=PROGRESS_S, return_when=asyncio.FIRST_COMPLETED)
            if on_progress is not None:
                on_progress(bridge.stats())
    finally:
        task.cancel()
        stopping.cancel()
        await asyncio.wait((task, stopping))
        await bridge.close()
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()
    return bridge.stats()

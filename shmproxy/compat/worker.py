"""Blocking calls for asyncio code, one at a time and in order, on a daemon thread.

Why not ``asyncio.to_thread`` or a ThreadPoolExecutor: their threads are joined when the
interpreter exits, so one broker call that never returns would keep serve from exiting after
SIGTERM. A daemon thread is abandoned instead. One thread also keeps the calls in order and never
concurrent, which is what upstream adapters expect (upstream's proxy called them from its event loop).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future]


class SerialWorker:
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue ``function(*args)`` now, behind the calls queued before it; a future of its outcome."""
        if self._thread.ident is None:  # started on first use
            self._thread.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((function, args, loop, future))
        return future

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``'s result (or exception), run on the worker thread in its turn."""
        return await self.submit(function, *args)

    def close(self) -> None:
        """Let the thread end once the queued calls are done."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, args, loop, future = job
            try:
                outcome = (function(*args), None)
            except Exception as exc:
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                return


def _settle(future: asyncio.Future, result: Any, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)

"""The ring pump: follows the ring and feeds every tick to the hub, then flushes subscribers.

Busy, it reads batches back to back; idle, it parks on the ring's futex in a worker thread (see
``SharedMemorySubscriber.wait_async``), costing no CPU. Records lost because the pump was lapped are
counted and logged once per burst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from ..subscriber import SharedMemorySubscriber
from .hub import Hub

log = logging.getLogger("shmproxy.serve")

_BATCH = 1024  # records per read: bounds how long other tasks wait behind one batch
_LAP_LOG_INTERVAL_S = 1.0


class RingPump:
    def __init__(self, subscriber: SharedMemorySubscriber, hub: Hub,
                 on_batch: Callable[[float], None] | None = None) -> None:
        """``on_batch`` receives each batch's dispatch + flush time in seconds."""
        self.subscriber = subscriber
        self.hub = hub
        self._on_batch = on_batch or (lambda seconds: None)
        self.batches = 0
        self.failed_batches = 0
        self._logged_lost = 0
        self._last_lap_log = 0.0
        self._generation = subscriber.generation

    def prime(self) -> int:
        """Load every tick still in the ring into the last-value cache (before clients connect)."""
        primed = 0
        while ticks := self.subscriber.poll(_BATCH):
            self.hub.dispatch(ticks)
            primed += len(ticks)
        return primed

    async def run(self) -> None:
        hub = self.hub
        wait = self.subscriber.wait_async
        while True:
            try:
                ticks = await wait(timeout=1.0, limit=_BATCH)
                self._report_changes()  # before the ticks go out: a log line about them precedes them
                if ticks:
                    started = time.perf_counter()
                    hub.flush(hub.dispatch(ticks))
                    self._on_batch(time.perf_counter() - started)
                    self.batches += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # the feed must outlive a bug in one batch: log it, keep pumping
                self.failed_batches += 1
                log.exception("ring pump: a batch failed and was dropped (%d so far)", self.failed_batches)
                await asyncio.sleep(0.1)
            await asyncio.sleep(0)  # let client requests in between batches

    def _report_changes(self) -> None:
        lost = self.subscriber.lost
        now = time.monotonic()
        if lost > self._logged_lost and now - self._last_lap_log >= _LAP_LOG_INTERVAL_S:
            log.warning("ring pump lapped: %d records lost (%d in all)", lost - self._logged_lost, lost)
            self._logged_lost, self._last_lap_log = lost, now
        if self.subscriber.generation != self._generation:
            self._generation = self.subscriber.generation
            log.warning("ring '%s' was re-created: following the new generation", self.subscriber.buffer_name)

"""SharedMemorySubscriber: follow a ring from Python, by polling, blocking or ``async for``."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from .records import Tick
from .ring import RingReader
from .segment import Segment
from .settings import Settings
from .wakeup import SequenceWaiter

# Idle back-off: spin a few polls (a busy ring answers at once), sleep in growing steps, then park
# on the write sequence's futex until a writer wakes us (see wakeup.py: the steps must add up to
# more than WAKE_AFTER_GAP_NS). Without futexes, keep sleeping in the last step.
_SPIN_POLLS = 20
_SLEEPS = (0.00005, 0.0001, 0.00025, 0.0005)
_PARK_S = 0.25  # longest single park: bounds how late a re-created segment or a deadline is noticed
_FALLBACK_SLEEP_S = 0.001
_ASYNC_IDLE_S = 0.001  # asyncio's timers resolve to about 1 ms: one such sleep before parking
_REPLACED_CHECK_S = 0.5  # how often an idle reader looks for a re-created segment


class NameDecoder:
    """Decodes the padded name fields of records; names repeat, so each pair is decoded once."""

    _LIMIT = 100_000

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], tuple[str, str]] = {}

    def decode(self, record: tuple) -> tuple[str, str]:
        key = (record[6], record[7])
        names = self._cache.get(key)
        if names is None:
            if len(self._cache) >= self._LIMIT:
                self._cache.clear()
            names = self._cache[key] = (
                record[6][: record[4]].decode("utf-8", "replace"),
                record[7][: record[5]].decode("utf-8", "replace"),
            )
        return names


class SharedMemorySubscriber:
    """Reads every tick published into a ring, with a cursor of its own.

    ``start="latest"`` (default) reads what is published from now on; ``"oldest"`` first replays
    everything still in the ring; an int starts at that sequence. The ring must exist
    (:class:`~shmproxy.core.errors.SegmentNotFoundError` otherwise). The segment is mapped
    read-only: a subscriber cannot disturb writers or other readers, and closing it (or the process
    dying) leaves the ring in place.

    ``lost`` counts records this reader missed because writers lapped it; ``delivered`` counts
    records returned. If the ring is re-created under the same name, the subscriber notices while
    waiting, re-attaches and reads the new ring from its oldest record (``resyncs`` counts this).
    """

    def __init__(self, buffer_name: str | None = None, start: str | int = "latest", settings: Settings | None = None) -> None:
        self.buffer_name = buffer_name or (settings or Settings.load()).shm_buffer_name
        self._segment = Segment.attach(self.buffer_name)
        self._reader = RingReader(self._segment, start)
        self._waiter = SequenceWaiter(self._segment.fd)
        self._names = NameDecoder()
        self._lost_before = 0
        self._delivered_before = 0
        self.resyncs = 0
        self._next_replaced_check = time.monotonic() + _REPLACED_CHECK_S

    # --- state -----------------------------------------------------------------------------
    @property
    def segment(self) -> Segment:
        return self._segment

    @property
    def lost(self) -> int:
        return self._lost_before + self._reader.lost

    @property
    def delivered(self) -> int:
        return self._delivered_before + self._reader.delivered

    @property
    def cursor(self) -> int:
        """The next sequence this subscriber will read."""
        return self._reader.cursor

    @property
    def generation(self) -> int:
        return self._segment.generation

    def lag(self) -> int:
        return self._reader.lag()

    # --- reading ---------------------------------------------------------------------------
    def poll(self, limit: int = 4096) -> list[Tick]:
        """Return the ticks published since the last call (at most ``limit``); never blocks."""
        decode = self._names.decode
        from_slot = Tick.from_slot
        return [from_slot(r, *decode(r)) for r in self._reader.read(limit)]

    def wait(self, timeout: float | None = None, limit: int = 4096) -> list[Tick]:
        """Block until ticks arrive (returning them) or ``timeout`` seconds pass (returning [])."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for idle in range(_SPIN_POLLS + len(_SLEEPS)):
            ticks = self.poll(limit)
            if ticks:
                return ticks
            if idle >= _SPIN_POLLS and not self._pause(_SLEEPS[idle - _SPIN_POLLS], deadline):
                return []
        while True:
            seen = self._segment.write_seq()
            ticks = self.poll(limit)
            if ticks:
                return ticks
            if not self._park(seen, deadline):
                return []
            self._check_replaced()

    async def wait_async(self, timeout: float | None = None, limit: int = 4096) -> list[Tick]:
        """Like :meth:`wait`, without blocking the event loop.

        A busy ring is polled between other tasks; an idle one is parked on in a worker thread,
        which costs no CPU and wakes the loop as soon as a record arrives.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        for _ in range(_SPIN_POLLS):
            ticks = self.poll(limit)
            if ticks:
                return ticks
            await asyncio.sleep(0)
        while True:
            seen = self._segment.write_seq()
            await asyncio.sleep(_ASYNC_IDLE_S)  # park only after a silence longer than WAKE_AFTER_GAP_NS
            ticks = self.poll(limit)
            if ticks:
                return ticks
            if not await loop.run_in_executor(None, self._park, seen, deadline):
                return []
            self._check_replaced()

    def __aiter__(self) -> AsyncIterator[Tick]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Tick]:
        while True:
            for tick in await self.wait_async():
                yield tick

    def _pause(self, pause: float, deadline: float | None) -> bool:
        """Sleep ``pause`` (cut short at ``deadline``); False when the deadline has passed."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pause = min(pause, left)
        time.sleep(pause)
        return True

    def _park(self, seen_seq: int, deadline: float | None) -> bool:
        """Park until the write sequence moves past ``seen_seq``; False when the deadline has passed."""
        pause = _PARK_S if self._waiter.available else _FALLBACK_SLEEP_S
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
            if pause <= 0:
                return False
        if self._waiter.available:
            self._waiter.wait(seen_seq, pause)
        else:
            time.sleep(pause)
        return True

    def _check_replaced(self) -> None:
        """Re-attach when the ring was re-created under our name (a new generation)."""
        now = time.monotonic()
        if now < self._next_replaced_check:
            return
        self._next_replaced_check = now + _REPLACED_CHECK_S
        if not self._segment.replaced():
            return
        try:
            fresh = Segment.attach(self.buffer_name)
        except Exception:
            return  # gone, or being created: keep the old mapping and look again later
        self._lost_before += self._reader.lost
        self._delivered_before += self._reader.delivered
        self._waiter.close()
        self._segment.close()
        self._segment = fresh
        self._reader = RingReader(fresh, "oldest")
        self._waiter = SequenceWaiter(fresh.fd)
        self.resyncs += 1

    def close(self) -> None:
        """Unmap the ring (which stays in place)."""
        self._waiter.close()
        self._segment.close()

    def __enter__(self) -> SharedMemorySubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

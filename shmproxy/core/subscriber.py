"""SharedMemorySubscriber: follow a ring from Python, by polling, blocking or ``async for``."""

from __future__ import annotations

import time
from typing import AsyncIterator

from .records import Tick
from .ring import RingReader
from .segment import Segment
from .settings import Settings
from .speedups import LAYOUT_FACTS, TickReader, enabled
from .waitthread import WaitThread
from .wakeup import SequenceWaiter

# Idle back-off: spin a few polls (a busy ring answers at once), sleep in growing steps, then park
# on the write sequence's futex until a writer wakes us (see wakeup.py: the steps must add up to
# more than WAKE_AFTER_GAP_NS). Without futexes, keep sleeping in the last step.
_SPIN_POLLS = 20
_SLEEPS = (0.00005, 0.0001, 0.00025, 0.0005)
_PARK_S = 0.25  # longest single park: bounds how late a re-created segment or a deadline is noticed
_FALLBACK_SLEEP_S = 0.001
_REPLACED_CHECK_S = 0.5  # how often an idle reader looks for a re-created segment


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _step(deadline: float | None) -> float:
    """The end of the next bounded wait: at most _PARK_S, never past ``deadline``."""
    step = time.monotonic() + _PARK_S
    return step if deadline is None else min(step, deadline)


def _sleep_until(when: float) -> bool:
    """Sleep until ``when``; False when it had already passed."""
    left = when - time.monotonic()
    if left <= 0:
        return False
    time.sleep(left)
    return True


class NameDecoder:
    """Decodes the padded name fields of records; names repeat, so each pair is decoded once."""

    _LIMIT = 100_000

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, bytes, bytes], tuple[str, str]] = {}

    def decode(self, record: tuple) -> tuple[str, str]:
        key = record[4:8]  # lengths and padded names
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
        self._tick_reader = self._compiled_reader()
        self._waiter = SequenceWaiter(self._segment.fd)
        self._wait_thread = WaitThread(self._wait_ready)
        self._names = NameDecoder()
        self._lost_before = 0
        self._laps_before = 0
        self._delivered_before = 0
        self.resyncs = 0
        self.invalid = 0  # records skipped because their mode byte is not 1, 2 or 3
        self._next_replaced_check = time.monotonic() + _REPLACED_CHECK_S

    # --- state -----------------------------------------------------------------------------
    @property
    def segment(self) -> Segment:
        return self._segment

    @property
    def lost(self) -> int:
        return self._lost_before + self._reader.lost

    @property
    def laps(self) -> int:
        """How many times writers lapped this reader."""
        return self._laps_before + self._reader.laps

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

    @property
    def compiled(self) -> bool:
        """True when ticks are read through the compiled path (``_speedups``)."""
        return self._tick_reader is not None

    # --- reading ---------------------------------------------------------------------------
    def poll(self, limit: int = 4096) -> list[Tick]:
        """Return the ticks published since the last call (at most ``limit``); never blocks."""
        if self._tick_reader is None:
            return self._poll_records(limit)
        reader = self._reader
        ticks, consumed = self._tick_reader.read(reader.cursor, limit)
        reader.advance(consumed)
        self.invalid += consumed - len(ticks)
        if consumed < limit and reader.ready():  # stopped at a lapped slot: RingReader skips ahead
            ticks += self._poll_records(limit - consumed)
        return ticks

    def _poll_records(self, limit: int) -> list[Tick]:
        decode = self._names.decode
        from_slot = Tick.from_slot
        records = self._reader.read(limit)
        ticks = [from_slot(r, *decode(r)) for r in records if 1 <= r[3] <= 3]
        if len(ticks) != len(records):  # a foreign writer's record with no valid mode: skip, count
            self.invalid += len(records) - len(ticks)
        return ticks

    def _compiled_reader(self) -> TickReader | None:
        if not enabled():
            return None
        segment = self._segment
        try:
            return TickReader(buf=segment.buf, capacity=segment.capacity, layout=LAYOUT_FACTS, tick_type=Tick)
        except ValueError:  # built for another layout or Tick: a stale build, so stay on the Python path
            return None

    def wait(self, timeout: float | None = None, limit: int = 4096) -> list[Tick]:
        """Block until ticks arrive (returning them) or ``timeout`` seconds pass (returning [])."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ticks = self.poll(limit)
            if ticks or _expired(deadline):
                return ticks
            self._wait_ready(_step(deadline))
            self._check_replaced()

    async def wait_async(self, timeout: float | None = None, limit: int = 4096) -> list[Tick]:
        """Like :meth:`wait`, without blocking the event loop.

        The waiting (spin, short sleeps, futex park) happens in a thread of this subscriber's
        (:mod:`~shmproxy.core.waitthread`) that reads nothing, so cancelling this coroutine never
        loses a tick; the loop does the reading.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ticks = self.poll(limit)
            if ticks or _expired(deadline):
                return ticks
            await self._wait_thread.wait(_step(deadline))
            self._check_replaced()

    def __aiter__(self) -> AsyncIterator[Tick]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Tick]:
        while True:
            for tick in await self.wait_async():
                yield tick

    def _wait_ready(self, until: float) -> bool:
        """Wait until a record is ready at the cursor (True) or ``until`` passes (False); reads nothing."""
        ready = self._reader.ready
        for _ in range(_SPIN_POLLS):
            if ready():
                return True
        for pause in _SLEEPS:
            if not _sleep_until(min(until, time.monotonic() + pause)) or ready():
                return ready()
        while True:
            seen = self._segment.write_seq()
            if ready():
                return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            if self._waiter.available:
                self._waiter.wait(seen, left)
            else:
                time.sleep(min(left, _FALLBACK_SLEEP_S))

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
        self._laps_before += self._reader.laps
        self._delivered_before += self._reader.delivered
        self.close()
        self._segment = fresh
        self._reader = RingReader(fresh, "oldest")
        self._tick_reader = self._compiled_reader()
        self._waiter = SequenceWaiter(fresh.fd)
        self.resyncs += 1

    def close(self) -> None:
        """Unmap the ring (which stays in place)."""
        if self._tick_reader is not None:
            self._tick_reader.close()  # lets go of the mapping before the segment unmaps it
        self._wait_thread.close()
        self._waiter.close()
        self._segment.close()

    def __enter__(self) -> SharedMemorySubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

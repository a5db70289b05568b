"""Following a ring the way ``shmproxy tail`` shows it: start position, filter, count, end.

:func:`open_tail` attaches a :class:`SharedMemorySubscriber` (read-only, a cursor of its own, so
other readers are never affected) at the requested start and wraps it in a :class:`RingTail`,
which turns it into batches of selected ticks and reports the records writers overwrote before
it could read them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Iterator

from .errors import SegmentNotFoundError
from .records import Tick
from .segment import read_info
from .subscriber import SharedMemorySubscriber
from .tickfilter import TickFilter

WAIT_POLL_S = 0.2  # how often --wait looks for a ring that does not exist yet
_WAIT_S = 1.0      # longest single park while following (a parked reader costs no CPU)


def open_tail(
    name: str,
    keep: TickFilter | None = None,
    start: str = "latest",
    last: int | None = None,
    follow: bool = True,
    count: int | None = None,
    wait: bool = False,
    on_waiting: Callable[[], None] = lambda: None,
) -> RingTail:
    """Attach to ring ``name`` and return a :class:`RingTail` over it.

    ``start`` is "latest" (records published from now on) or "oldest" (everything still in the
    ring); ``last=N`` starts with the N newest selected records instead. With ``wait``, a missing
    ring is waited for (``on_waiting`` is called once) and, once it appears, read from its first
    record. Raises SegmentNotFoundError (without ``wait``) and the other segment errors.
    """
    waited = False
    while True:
        try:
            return RingTail(_subscribe(name, start, last, keep), keep, last, follow, count)
        except SegmentNotFoundError:
            if not wait:
                raise
        if not waited:
            on_waiting()
            waited = True
            start, last = "oldest", None  # everything the new ring gets is news to us
        time.sleep(WAIT_POLL_S)


def _subscribe(name: str, start: str, last: int | None, keep: TickFilter | None) -> SharedMemorySubscriber:
    if last is None:
        return SharedMemorySubscriber(name, start=start)
    if keep is not None and not keep.selects_all:
        return SharedMemorySubscriber(name, start="oldest")  # the newest matches may be anywhere
    info = read_info(name)
    return SharedMemorySubscriber(name, start=max(info.oldest_seq, info.write_seq - last + 1, 1))


class RingTail:
    """Selected ticks from a subscriber, in batches.

    ``keep`` selects ticks; ``last=N`` keeps only the N newest selected ticks of what is already in
    the ring (:func:`open_tail` starts the subscriber where they can be found);
    ``follow=False`` stops at the record that was newest when the tail started; ``count`` stops
    after that many ticks. :meth:`take_lost` reports records lost to writers since it was last
    called (a lapped reader's count of what it missed).
    """

    def __init__(
        self,
        subscriber: SharedMemorySubscriber,
        keep: TickFilter | None = None,
        last: int | None = None,
        follow: bool = True,
        count: int | None = None,
    ) -> None:
        self._sub = subscriber
        self._keep = keep if keep is not None and not keep.selects_all else None
        self._last = last
        self._end = None if follow else subscriber.segment.write_seq()
        self._left = count if count is not None else -1
        self._lost_reported = 0

    @property
    def subscriber(self) -> SharedMemorySubscriber:
        return self._sub

    def close(self) -> None:
        """Detach (the ring stays in place)."""
        self._sub.close()

    def __enter__(self) -> RingTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> Iterator[list[Tick]]:
        """Yield lists of selected ticks until the end (if any) or the count is reached.

        A list is empty only when records were lost since the last one (see :meth:`take_lost`).
        """
        if self._last is not None:
            for ticks in self._backlog(self._last):
                if ticks and self._left:
                    yield self._take(ticks)
        while self._left and (self._end is None or self._sub.cursor <= self._end):
            ticks = self._until(self._end, self._read())
            if ticks or self._sub.lost != self._lost_reported:
                yield self._take(ticks)

    def take_lost(self) -> int:
        """Records lost (overwritten before this tail read them) since the last call."""
        lost = self._sub.lost - self._lost_reported
        self._lost_reported = self._sub.lost
        return lost

    def _backlog(self, last: int) -> tuple[list[Tick], list[Tick]]:
        """The ``last`` newest selected ticks already published, and any newer ones read meanwhile."""
        end = self._end if self._end is not None else self._sub.segment.write_seq()
        newest: deque[Tick] = deque(maxlen=last)
        newer: list[Tick] = []
        while self._sub.cursor <= end:
            ticks = self._read()
            newest.extend(self._until(end, ticks))
            newer += [t for t in ticks if t.seq > end]
        return list(newest), self._until(self._end, newer)

    def _read(self) -> list[Tick]:
        ticks = self._sub.wait(_WAIT_S)
        keep = self._keep
        return [t for t in ticks if keep(t)] if keep is not None else ticks

    @staticmethod
    def _until(end: int | None, ticks: list[Tick]) -> list[Tick]:
        """``ticks`` up to sequence ``end`` (all when ``end`` is None)."""
        if end is None or not ticks or ticks[-1].seq <= end:
            return ticks
        return [t for t in ticks if t.seq <= end]

    def _take(self, ticks: list[Tick]) -> list[Tick]:
        if self._left < 0:
            return ticks
        ticks = ticks[: self._left]
        self._left -= len(ticks)
        return ticks

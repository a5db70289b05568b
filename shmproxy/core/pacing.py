"""Rate control: run work at a steady N items per second, from 1 to hundreds of thousands.

Item ``i`` (from 0) is due at ``start + i / rate``: an absolute schedule, so a late wake-up makes
the next batch bigger instead of lowering the average rate. Above ~1,000 items/s the caller works
in batches (everything due at once) and sleeps between them at least :data:`MIN_GAP_S`, so the
number of wake-ups stays bounded; each sleep is a coarse ``time.sleep`` ending :data:`SPIN_S`
early, then a short spin to the exact due time. A machine that cannot keep up bursts to catch up,
but never by more than :data:`MAX_LAG_S` of work: beyond that the debt is written off, so resuming
after a long stall (a suspended process) is not a flood.
"""

from __future__ import annotations

import time
from typing import Callable

MIN_GAP_S = 0.001   # shortest sleep between batches: at most ~1,000 wake-ups a second
SPIN_S = 0.0001     # the end of each sleep is spun, since time.sleep overshoots by ~50-100 us
MAX_LAG_S = 0.5     # work more than this far behind schedule is written off, not caught up


class Pacer:
    """Schedules items at ``rate`` per second.

    Loop: ``n = pacer.due(limit)``; do ``n`` items and call ``pacer.done(n)``; when ``n`` is 0,
    ``pacer.sleep_until(pacer.next_due(limit))`` (or earlier, to do something else in between).
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.perf_counter) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, not {rate!r}")
        self.rate = rate
        self._clock = clock
        self._batch = max(1, int(rate * MIN_GAP_S))
        self.origin = self.started = clock()  # ``started`` moves when debt is written off
        self.sent = 0
        self.written_off = 0  # items dropped from the schedule because the machine fell behind
        self.last_done = self.started

    def due(self, limit: int) -> int:
        """How many items are due now, at most ``limit``."""
        owed = int((self._clock() - self.started) * self.rate) + 1 - self.sent
        excess = owed - int(self.rate * MAX_LAG_S) - self._batch
        if excess > 0:  # too far behind to catch up: move the schedule instead
            self.started += excess / self.rate
            self.written_off += excess
            owed -= excess
        return max(0, min(owed, limit))

    def done(self, count: int) -> None:
        """Record that ``count`` items were done."""
        self.sent += count
        self.last_done = self._clock()

    def next_due(self, limit: int) -> float:
        """Clock time at which the next batch (of at most ``limit`` items) is due."""
        return self.started + (self.sent + min(self._batch, limit) - 1) / self.rate

    def sleep_until(self, when: float) -> None:
        """Sleep until clock time ``when`` (see :func:`sleep_until`)."""
        sleep_until(when, self._clock)

    def achieved_rate(self) -> float | None:
        """Items per second from the first to the last item done; None before two are done."""
        span = self.last_done - self.origin
        if self.sent < 2 or span <= 0:
            return None
        return (self.sent - 1) / span


def sleep_until(when: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Sleep until ``clock()`` reaches ``when``: coarsely, then spinning the last :data:`SPIN_S`."""
    left = when - clock()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while clock() < when:
        pass

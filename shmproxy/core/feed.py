"""A mock market feed: :class:`MockMarket` ticks published into a ring at a steady rate.

This is what ``shmproxy mock-feed`` runs; the command only adds signals and a status line. The
publisher never waits for readers, so the feed itself never loses or holds back a tick: the rate
is limited only by the schedule and by how fast this machine can make and write ticks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from .market import MockMarket
from .pacing import Pacer
from .publisher import SharedMemoryPublisher

HEARTBEAT_S = 0.1  # between ticks slower than this, refresh the writer's heartbeat ourselves
PROGRESS_S = 0.25  # how often on_progress hears about the run
_BATCH = 512       # most ticks between two looks at the clock, the stop flag and progress
_ON_SCHEDULE = 0.95  # an achieved rate below this share of the target means the machine's ceiling


@dataclass(frozen=True)
class FeedStats:
    """Where a feed run stands. Rates in ticks per second."""

    published: int
    elapsed_s: float
    target_rate: float
    achieved_rate: float | None  # first to last tick; None before two ticks
    recent_rate: float           # over the last progress interval
    last_seq: int
    written_off: int             # ticks dropped from the schedule after a stall (see pacing.py)

    @property
    def at_ceiling(self) -> bool:
        """True when the machine could not publish as fast as asked."""
        return self.achieved_rate is not None and self.achieved_rate < self.target_rate * _ON_SCHEDULE


class MockFeed:
    """Publishes ``market.next_tick()`` through ``publisher`` at ``rate`` ticks per second.

    The run ends after ``count`` ticks, after ``duration`` seconds (having published
    ``ceil(rate * duration)`` ticks, or fewer if the machine is too slow), or when ``should_stop``
    returns True, whichever comes first; with neither limit it runs until stopped.
    """

    def __init__(
        self,
        publisher: SharedMemoryPublisher,
        market: MockMarket,
        rate: float,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.market = market
        self.rate = rate
        self.duration = duration
        limits = [count] if count is not None else []
        if duration is not None:
            limits.append(math.ceil(rate * duration))
        self.limit = min(limits) if limits else None

    def run(
        self,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[FeedStats], None] | None = None,
    ) -> FeedStats:
        """Publish until a limit is reached or ``should_stop()``; return the final stats."""
        clock = time.perf_counter
        publish = self.publisher.publish_market_data
        next_tick = self.market.next_tick
        pacer = Pacer(self.rate, clock)
        deadline = math.inf if self.duration is None else pacer.started + self.duration
        remaining = math.inf if self.limit is None else self.limit
        last_seq = 0
        last_beat = pacer.started
        progress = _Progress(pacer, on_progress)
        while not should_stop():
            batch = pacer.due(min(_BATCH, remaining))
            if batch:
                for _ in range(batch):
                    last_seq = publish(*next_tick())
                pacer.done(batch)
                remaining -= batch
                progress.maybe_report(pacer.last_done, last_seq)
                if pacer.last_done < deadline:
                    continue
            now = clock()
            if now >= deadline or (not remaining and deadline == math.inf):
                break
            if now - max(pacer.last_done, last_beat) >= HEARTBEAT_S:
                self.publisher.heartbeat()  # idle between ticks: tell readers and `clean` we are alive
                last_beat = now
            progress.maybe_report(now, last_seq)
            wake = min(deadline, max(pacer.last_done, last_beat) + HEARTBEAT_S, progress.next_at)
            pacer.sleep_until(min(wake, pacer.next_due(remaining)) if remaining else wake)
        return progress.stats(clock(), last_seq)


class _Progress:
    """Builds :class:`FeedStats` and calls the progress callback every :data:`PROGRESS_S`."""

    def __init__(self, pacer: Pacer, callback: Callable[[FeedStats], None] | None) -> None:
        self._pacer = pacer
        self._callback = callback
        self.next_at = pacer.started + PROGRESS_S if callback else math.inf
        self._mark = (pacer.started, 0)

    def maybe_report(self, now: float, last_seq: int) -> None:
        if now >= self.next_at:
            self.next_at = now + PROGRESS_S
            self._callback(self.stats(now, last_seq))

    def stats(self, now: float, last_seq: int) -> FeedStats:
        pacer = self._pacer
        then, sent_then = self._mark
        recent = (pacer.sent - sent_then) / (now - then) if now > then else 0.0
        self._mark = (now, pacer.sent)
        return FeedStats(
            published=pacer.sent, elapsed_s=now - pacer.origin, target_rate=pacer.rate,
            achieved_rate=pacer.achieved_rate(), recent_rate=recent, last_seq=last_seq,
            written_off=pacer.written_off,
        )

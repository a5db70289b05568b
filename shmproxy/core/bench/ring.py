"""The shared-memory ring as a hop benchmark transport, on a private ring removed afterwards."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

from ..publisher import SharedMemoryPublisher
from ..segment import remove_segment
from ..subscriber import SharedMemorySubscriber
from .hop import Receive
from .load import Publish

BENCH_PREFIX = "shmproxy_bench_"


@contextmanager
def private_ring(size: int = 64 << 20) -> Iterator[str]:
    """A ring under a fresh name, removed when done."""
    name = f"{BENCH_PREFIX}{uuid.uuid4().hex[:10]}"
    SharedMemoryPublisher(buffer_name=name, buffer_size=size).close()
    try:
        yield name
    finally:
        remove_segment(name)


class RingTransport:
    """``publish_market_data`` into a ring; readers follow it with ``wait()`` (or ``poll()`` when spinning)."""

    name = "shm"

    def __init__(self, ring: str) -> None:
        self.ring = ring

    @contextmanager
    def publisher(self) -> Iterator[Publish]:
        with SharedMemoryPublisher(buffer_name=self.ring) as pub:
            yield pub.publish_market_data

    @contextmanager
    def subscriber(self) -> Iterator[Receive]:
        with SharedMemorySubscriber(self.ring) as sub:
            def receive(timeout: float) -> list[tuple[int, int]]:
                ticks = sub.wait(timeout) if timeout else sub.poll()
                return [(t.volume, t.last_trade_time) for t in ticks]

            yield receive


@contextmanager
def ring_transport() -> Iterator[RingTransport]:
    """A ring transport on a private ring, removed when done."""
    with private_ring() as name:
        yield RingTransport(name)

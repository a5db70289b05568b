"""``bridge out``: follow a local ring and publish each tick to NATS."""

from __future__ import annotations

import asyncio
import secrets
import time

from ..subscriber import SharedMemorySubscriber
from .codec import encoder
from .link import NatsLink
from .stats import BridgeStats
from .streams import Routes

_BATCH = 512  # ticks read from the ring, and handed to nats-py, between two socket writes


class BridgeOut:
    """Publishes what ``subscriber`` reads, on ``<prefix>.<EXCHANGE>.<SYMBOL>.<MODE>``, in ``fmt``.

    While NATS is unreachable it stops reading: the ring keeps the backlog (it is forwarded after
    the reconnection), and what the ring overwrites meanwhile is counted lost, like any ring lap.
    """

    def __init__(self, subscriber: SharedMemorySubscriber, link: NatsLink, prefix: str, fmt: str) -> None:
        self._sub = subscriber
        self._link = link
        self._prefix = prefix
        self._format = fmt
        self._encode = encoder(fmt)
        self._routes = Routes(prefix)
        self._origin = secrets.randbits(32)
        self._started = time.monotonic()
        self.forwarded = 0
        self.refused = 0  # ticks nats-py would not buffer (its reconnect buffer was full)

    async def run(self) -> None:
        """Forward until cancelled."""
        from nats.errors import OutboundBufferLimitError

        client = await self._link.connect()
        self._link.tell(f"forwarding ring '{self._sub.buffer_name}' as {self._prefix}.<EXCHANGE>.<SYMBOL>.<MODE>")
        connected, encode, origin = self._link.connected, self._encode, self._origin
        while True:
            await connected.wait()
            for tick in await self._sub.wait_async(limit=_BATCH):
                route = self._routes.of(tick)
                try:
                    await client.publish(route.subject, encode(tick, origin, route.sent + 1))
                except OutboundBufferLimitError:
                    self.refused += 1
                    continue
                route.sent += 1
                self.forwarded += 1
            # nats-py queues publishes and writes them from its own task: yielding once per batch
            # lets it send the whole batch in one write, instead of a write (or a flush) per tick.
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self._link.close()

    def stats(self) -> BridgeStats:
        link = self._link
        return BridgeStats(
            "out", self._sub.buffer_name, link.url, self._prefix, link.state, self.forwarded,
            self._sub.lost + self.refused, link.reconnects, link.disconnects, time.monotonic() - self._started,
            link.last_error, format=self._format,
        )

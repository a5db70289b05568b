"""``bridge in``: subscribe to ticks on NATS and republish them into a local ring."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..errors import RecordError
from ..publisher import SharedMemoryPublisher
from .codec import decode
from .link import NatsLink
from .stats import BridgeStats, LatencySampler
from .streams import GapCounter

if TYPE_CHECKING:
    from nats.aio.msg import Msg

HEARTBEAT_S = 1.0  # keep this writer "alive" for serve's /health and `clean` while the market is quiet


class BridgeIn:
    """Writes every tick arriving on ``subject_filter`` into ``publisher``'s ring.

    Each tick keeps its exchange time and mode; its publish time becomes the local one (the ring's
    order), while the source's publish time measures the latency across the bridge.
    """

    def __init__(self, publisher: SharedMemoryPublisher, link: NatsLink, subject_filter: str) -> None:
        self._publisher = publisher
        self._link = link
        self._filter = subject_filter
        self._gaps = GapCounter()
        self._latency = LatencySampler()
        self._started = time.monotonic()
        self.forwarded = 0
        self.invalid = 0

    async def run(self) -> None:
        """Receive until cancelled."""
        client = await self._link.connect()
        await client.subscribe(self._filter, cb=self._on_message)
        await client.flush()  # the server has the subscription: from here on nothing published is missed
        self._link.tell(f"subscribed to {self._filter}, writing into ring '{self._publisher.buffer_name}'")
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._publisher.heartbeat()

    async def _on_message(self, msg: Msg) -> None:
        try:
            message = decode(msg.data)
            self._gaps.see(message.origin, msg.subject, message.seq)
            self._publisher.republish(message.tick)
        except RecordError:  # not a bridge tick, or one this ring cannot hold
            self.invalid += 1
            return
        self.forwarded += 1
        self._latency.add(time.time_ns() - message.tick.publish_ns)

    async def close(self) -> None:
        await self._link.close()  # drains: what NATS already delivered still reaches the ring

    def stats(self) -> BridgeStats:
        link = self._link
        return BridgeStats(
            "in", self._publisher.buffer_name, link.url, self._filter, link.state, self.forwarded,
            self._gaps.missing, link.reconnects, link.disconnects, time.monotonic() - self._started,
            link.last_error, invalid=self.invalid, slow_consumer=link.slow_consumer,
            latency_us=self._latency.summary_us(), recent_latency_ms=self._latency.recent_ms(),
        )

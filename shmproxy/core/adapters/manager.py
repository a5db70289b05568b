"""Running adapters inside serve: start, route subscription changes, report status, stop.

The hub reports, synchronously, every change of the level an instrument is needed at (see
:class:`~shmproxy.core.proxy.registry.UpstreamChange`). The manager queues them and a worker task per
adapter applies them in order, so a slow broker call never blocks the event loop's other work and
an adapter's fault (it raises) is logged without taking serve down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

from ..publisher import SharedMemoryPublisher
from ..settings import Settings
from ..proxy.registry import UpstreamChange
from .base import Adapter, AdapterStatus
from .registry import enabled_adapters

log = logging.getLogger("shmproxy.adapters")

STOP_TIMEOUT_S = 2.0  # serve must be gone within 5 s of SIGTERM: clients first, then this
HEARTBEAT_S = 1.0  # readers judge a writer's liveness by its heartbeat, even while the market is quiet


class AdapterManager:
    def __init__(self, adapters: list[Adapter]) -> None:
        self.adapters = adapters
        # Created now, so changes that arrive before start() wait for it instead of getting lost.
        self._queues: dict[str, asyncio.Queue[UpstreamChange]] = {a.name: asyncio.Queue() for a in adapters}
        self._workers: list[asyncio.Task] = []
        self.publisher: SharedMemoryPublisher | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> AdapterManager:
        """The enabled adapters, checked (raises SettingsError naming the first problem)."""
        return cls([adapter_class(config) for adapter_class in enabled_adapters(config)])

    @property
    def broker(self) -> str:
        """The name clients see in acks: the adapter's, or "shmproxy" when ticks only come from the ring."""
        return "+".join(a.name for a in self.adapters) or "shmproxy"

    async def start(self, settings: Settings) -> None:
        """Open the ring's publisher (only when there are adapters), give it to each and start them."""
        if not self.adapters:
            return
        publisher = self.publisher = SharedMemoryPublisher(buffer_name=settings.shm_buffer_name, settings=settings)
        self._workers.append(asyncio.create_task(self._beat(publisher), name="adapters-heartbeat"))
        for adapter in self.adapters:
            adapter.publisher = publisher
            await adapter.start()
            queue = self._queues[adapter.name]
            self._workers.append(asyncio.create_task(self._apply(adapter, queue), name=f"adapter-{adapter.name}"))

    def on_upstream(self, changes: list[UpstreamChange]) -> None:
        """Called by the hub: queue the changes for every adapter that can serve each instrument."""
        for change in changes:
            for adapter in self.adapters:
                if change.new_mode == 0 or adapter.check_instrument(change.exchange, change.symbol) is None:
                    self._queues[adapter.name].put_nowait(change)

    def check_instrument(self, exchange: str, symbol: str) -> str | None:
        """Why no adapter can serve the instrument, or None (always None without adapters)."""
        if not self.adapters:
            return None
        reasons = [a.check_instrument(exchange, symbol) for a in self.adapters]
        return None if any(r is None for r in reasons) else reasons[0]

    def statuses(self) -> list[AdapterStatus]:
        return [a.status() for a in self.adapters]

    def summary(self) -> str:
        """One word for get_broker_info's adapter_status."""
        return summarize([a.state.value for a in self.adapters])

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await asyncio.gather(*(self._stop(adapter) for adapter in self.adapters))  # in parallel: one deadline
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    @staticmethod
    async def _beat(publisher: SharedMemoryPublisher) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            publisher.heartbeat()

    async def _stop(self, adapter: Adapter) -> None:
        try:
            await asyncio.wait_for(adapter.stop(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("%s adapter did not stop within %gs", adapter.name, STOP_TIMEOUT_S)
        except Exception as exc:
            log.warning("%s adapter failed while stopping: %s", adapter.name, exc)

    async def _apply(self, adapter: Adapter, queue: asyncio.Queue[UpstreamChange]) -> None:
        while True:
            change = await queue.get()
            try:
                if change.new_mode:
                    await adapter.subscribe(change.exchange, change.symbol, change.new_mode)
                else:
                    await adapter.unsubscribe(change.exchange, change.symbol)
            except Exception as exc:
                log.warning("%s adapter failed on %s:%s: %s", adapter.name, change.exchange, change.symbol, exc)


def summarize(states: list[str]) -> str:
    """"ring" without adapters, their common state, or "mixed"."""
    if not states:
        return "ring"
    distinct = set(states)
    return distinct.pop() if len(distinct) == 1 else "mixed"

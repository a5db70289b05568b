"""The mock adapter: a synthetic market that ticks for whatever instruments clients subscribe to.

Used by ``serve --demo`` and for trying a set-up without a broker. Each subscribed instrument trades
``MOCK_TICK_RATE`` times a second on average (exponential gaps, like real trades), at the mode
clients need; with ``MOCK_BACKGROUND_RATE`` > 0 the built-in list of liquid names also trades in the
background, so the ring is busy even before anyone subscribes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Mapping

from ..errors import SettingsError
from ..settings import float_range, read_setting
from ..market import DEFAULT_SYMBOLS, MockMarket
from .base import Adapter, AdapterState, Setting


TICK_RATE = float_range(0, 10_000)  # ticks per second


class MockAdapter(Adapter):
    name = "mock"
    description = "synthetic market: ticks for any subscribed instrument (serve --demo)"
    settings = (
        Setting("MOCK_TICK_RATE", "ticks per second per subscribed instrument (default 2)"),
        Setting("MOCK_BACKGROUND_RATE", "ticks per second over the built-in symbol list (default 0)"),
        Setting("MOCK_SEED", "random seed, for repeatable runs"),
    )

    @classmethod
    def check(cls, config: Mapping[str, str]) -> list[str]:
        try:
            read_setting(config, "MOCK_TICK_RATE", TICK_RATE, 2.0)
            read_setting(config, "MOCK_BACKGROUND_RATE", TICK_RATE, 0.0)
            int((config.get("MOCK_SEED") or "0").strip())
        except SettingsError as exc:
            return [str(exc)]
        except ValueError:
            return [f"MOCK_SEED={config.get('MOCK_SEED')!r} is not a whole number"]
        return []

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        self.tick_rate = read_setting(config, "MOCK_TICK_RATE", TICK_RATE, 2.0)
        self.background_rate = read_setting(config, "MOCK_BACKGROUND_RATE", TICK_RATE, 0.0)
        seed = (config.get("MOCK_SEED") or "").strip()
        self.market = MockMarket(DEFAULT_SYMBOLS, seed=int(seed) if seed else None)
        self._rng = random.Random(self.market.seed)
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._background: asyncio.Task | None = None

    async def start(self) -> None:
        self.set_state(AdapterState.CONNECTED, "synthetic market")
        if self.background_rate > 0:
            self._background = asyncio.create_task(self._trade_background())

    async def stop(self) -> None:
        tasks = list(self._tasks.values()) + ([self._background] if self._background else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._background = None
        self.set_state(AdapterState.STOPPED)

    async def _subscribe(self, exchange: str, symbol: str, mode: int, previous: int) -> None:
        key = (exchange, symbol)
        self.publish(exchange, symbol, self.market.tick(f"{exchange}:{symbol}", mode))  # a first price at once
        if key not in self._tasks and self.tick_rate > 0:
            self._tasks[key] = asyncio.create_task(self._trade(exchange, symbol))

    async def _unsubscribe(self, exchange: str, symbol: str, previous: int) -> None:
        task = self._tasks.pop((exchange, symbol), None)
        if task:
            task.cancel()

    async def _trade(self, exchange: str, symbol: str) -> None:
        while True:
            await asyncio.sleep(self._rng.expovariate(self.tick_rate))
            mode = self.wanted.get((exchange, symbol))
            if mode:
                self.publish(exchange, symbol, self.market.tick(f"{exchange}:{symbol}", mode))

    async def _trade_background(self) -> None:
        while True:
            await asyncio.sleep(self._rng.expovariate(self.background_rate))
            key, data = self.market.next_tick()
            exchange, symbol = key.split(":", 1)
            self.publish(exchange, symbol, data)

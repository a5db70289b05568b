"""Last-value cache: the newest tick of each instrument at each mode it can serve.

A Depth tick serves Depth, Quote and LTP subscribers; a Quote tick Quote and LTP; an LTP tick LTP
only. A new subscriber at mode m is replayed the newest tick that can serve m.
"""

from __future__ import annotations

from ..records import Tick


class LastValueCache:
    def __init__(self) -> None:
        self._ticks: dict[tuple[str, str], list[Tick | None]] = {}

    def update(self, tick: Tick) -> None:
        slots = self._ticks.get((tick.exchange, tick.symbol))
        if slots is None:
            slots = self._ticks[(tick.exchange, tick.symbol)] = [None, None, None, None]
        for mode in range(1, tick.mode + 1):
            slots[mode] = tick

    def get(self, exchange: str, symbol: str, mode: int) -> Tick | None:
        slots = self._ticks.get((exchange, symbol))
        return slots[mode] if slots else None

    def __len__(self) -> int:
        return len(self._ticks)

    def clear(self) -> None:
        self._ticks.clear()

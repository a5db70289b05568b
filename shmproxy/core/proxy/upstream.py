"""What the broker must serve when several serve workers share the adapters.

Each worker's registry reports the level (highest mode) it needs per instrument; the broker must
serve the highest level over all workers. :class:`UpstreamAggregator` keeps each worker's levels and
forwards only changes of that maximum, so adapters stay reference-counted across workers, and a
worker that dies releases everything it held.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

from .registry import UpstreamChange

Instrument = tuple[str, str]


class UpstreamAggregator:
    def __init__(self, sink: Callable[[list[UpstreamChange]], None]) -> None:
        self._sink = sink
        self._levels: dict[Hashable, dict[Instrument, int]] = {}

    def level(self, instrument: Instrument) -> int:
        return max((levels.get(instrument, 0) for levels in self._levels.values()), default=0)

    def needed(self) -> dict[Instrument, int]:
        keys = {key for levels in self._levels.values() for key in levels}
        return {key: self.level(key) for key in keys}

    def apply(self, worker: Hashable, changes: Iterable[UpstreamChange]) -> None:
        """A worker's own level of some instruments changed."""
        levels = self._levels.setdefault(worker, {})
        out = []
        for change in changes:
            key = (change.exchange, change.symbol)
            before = self.level(key)
            if change.new_mode:
                levels[key] = change.new_mode
            else:
                levels.pop(key, None)
            out += self._moved(key, before)
        if out:
            self._sink(out)

    def drop(self, worker: Hashable) -> None:
        """A worker is gone: release everything it held."""
        befores = {key: self.level(key) for key in self._levels.get(worker, {})}
        self._levels.pop(worker, None)
        out = [change for key, before in befores.items() for change in self._moved(key, before)]
        if out:
            self._sink(out)

    def _moved(self, key: Instrument, before: int) -> list[UpstreamChange]:
        after = self.level(key)
        return [UpstreamChange(key[0], key[1], before, after)] if after != before else []

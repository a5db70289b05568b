"""Who is subscribed to what: the subscription index and upstream reference counts.

Keys are ``(exchange, symbol, mode)``. The index maps a key to its clients (insertion-ordered) for
the fan-out; each client's own keys are kept for unsubscribe-all and disconnects. Across all clients
and modes, an instrument needs upstream (a broker adapter) at the highest mode anyone holds: every
change of that level is returned as an :class:`UpstreamChange` so the caller can subscribe the broker
once, move it up or down, and release it with the last client. Pure data structure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable

Key = tuple[str, str, int]


@dataclass(frozen=True)
class UpstreamChange:
    """The level an instrument is needed at moved from ``old_mode`` to ``new_mode`` (0 = not needed)."""

    exchange: str
    symbol: str
    old_mode: int
    new_mode: int


class SubscriptionRegistry:
    def __init__(self) -> None:
        self._index: dict[Key, dict[Hashable, None]] = {}
        self._by_client: dict[Hashable, set[Key]] = {}
        self._mode_counts: dict[tuple[str, str], list[int]] = {}  # [unused, ltp, quote, depth] key counts

    # --- queries (hot path: ``index.get``) ---------------------------------------------------
    @property
    def index(self) -> dict[Key, dict[Hashable, None]]:
        return self._index

    def subscribers(self, key: Key) -> Iterable[Hashable]:
        return self._index.get(key, {}).keys()

    def keys_of(self, client: Hashable) -> set[Key]:
        return self._by_client.get(client, set())

    def holds(self, client: Hashable, key: Key) -> bool:
        return key in self._by_client.get(client, ())

    def count(self, client: Hashable) -> int:
        return len(self._by_client.get(client, ()))

    def upstream_mode(self, exchange: str, symbol: str) -> int:
        """The highest mode any client holds for the instrument (0 when nobody does)."""
        counts = self._mode_counts.get((exchange, symbol))
        if counts is None:
            return 0
        return max((m for m in (3, 2, 1) if counts[m]), default=0)

    def upstream(self) -> dict[tuple[str, str], int]:
        return {k: self.upstream_mode(*k) for k in self._mode_counts}

    @property
    def total(self) -> int:
        """Number of (client, key) subscriptions."""
        return sum(len(keys) for keys in self._by_client.values())

    # --- changes -------------------------------------------------------------------------------
    def add(self, client: Hashable, key: Key) -> UpstreamChange | None:
        """Subscribe ``client`` to ``key`` (idempotent)."""
        keys = self._by_client.setdefault(client, set())
        if key in keys:
            return None
        exchange, symbol, mode = key
        before = self.upstream_mode(exchange, symbol)
        keys.add(key)
        self._index.setdefault(key, {})[client] = None
        self._mode_counts.setdefault((exchange, symbol), [0, 0, 0, 0])[mode] += 1
        return self._change(exchange, symbol, before)

    def remove(self, client: Hashable, key: Key) -> UpstreamChange | None:
        """Unsubscribe ``client`` from ``key``; a key it does not hold changes nothing."""
        keys = self._by_client.get(client)
        if not keys or key not in keys:
            return None
        exchange, symbol, mode = key
        before = self.upstream_mode(exchange, symbol)
        keys.discard(key)
        clients = self._index[key]
        del clients[client]
        if not clients:
            del self._index[key]
        counts = self._mode_counts[(exchange, symbol)]
        counts[mode] -= 1
        if not any(counts):
            del self._mode_counts[(exchange, symbol)]
        return self._change(exchange, symbol, before)

    def remove_client(self, client: Hashable) -> list[UpstreamChange]:
        """Drop everything ``client`` held (disconnect or unsubscribe-all)."""
        changes = [self.remove(client, key) for key in sorted(self._by_client.get(client, ()))]
        self._by_client.pop(client, None)
        return _merge([c for c in changes if c is not None])

    def _change(self, exchange: str, symbol: str, before: int) -> UpstreamChange | None:
        after = self.upstream_mode(exchange, symbol)
        return UpstreamChange(exchange, symbol, before, after) if after != before else None


def _merge(changes: list[UpstreamChange]) -> list[UpstreamChange]:
    """Collapse successive changes of one instrument into one (first old level -> last new level)."""
    merged: dict[tuple[str, str], UpstreamChange] = {}
    for change in changes:
        key = (change.exchange, change.symbol)
        first = merged.get(key)
        old = first.old_mode if first else change.old_mode
        merged[key] = UpstreamChange(change.exchange, change.symbol, old, change.new_mode)
    return [c for c in merged.values() if c.old_mode != c.new_mode]

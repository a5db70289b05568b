"""Choosing records by instrument and mode, for tools that show part of a ring (``tail``)."""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable

from .records import Tick, parse_mode


class TickFilter:
    """Selects ticks; each criterion left empty selects everything, and all criteria must hold.

    ``symbols`` / ``exclude``: shell-style globs, case-insensitive. A pattern with a colon matches
    "EXCHANGE:SYMBOL" (``NFO:NIFTY*``), one without matches the symbol alone (``INFY``, ``BANK*``).
    ``exchanges``: exchange names. ``modes``: 1/2/3 or "LTP"/"Quote"/"Depth", the mode a record
    was published at. Raises ValueError for an empty pattern or an unknown mode.
    """

    _CACHE_LIMIT = 100_000

    def __init__(
        self,
        symbols: Iterable[str] = (),
        exclude: Iterable[str] = (),
        exchanges: Iterable[str] = (),
        modes: Iterable[int | str] = (),
    ) -> None:
        self._include = _Globs(symbols)
        self._exclude = _Globs(exclude)
        self._exchanges = frozenset(e.strip().upper() for e in exchanges)
        self._modes = frozenset(parse_mode(m) for m in modes)
        self._by_name: dict[tuple[str, str], bool] = {}  # names repeat: match each pair once

    @property
    def selects_all(self) -> bool:
        return not (self._include or self._exclude or self._exchanges or self._modes)

    def __call__(self, tick: Tick) -> bool:
        if self._modes and tick.mode not in self._modes:
            return False
        key = (tick.exchange, tick.symbol)
        selected = self._by_name.get(key)
        if selected is None:
            if len(self._by_name) >= self._CACHE_LIMIT:
                self._by_name.clear()
            selected = self._by_name[key] = self._names_selected(*key)
        return selected

    def _names_selected(self, exchange: str, symbol: str) -> bool:
        if self._exchanges and exchange.upper() not in self._exchanges:
            return False
        if self._include and not self._include.match(exchange, symbol):
            return False
        return not (self._exclude and self._exclude.match(exchange, symbol))


class _Globs:
    """A set of globs compiled into two regexes: for "EXCH:SYMBOL" patterns and for bare symbols."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = [p.strip() for p in patterns]
        if any(not p for p in patterns):
            raise ValueError("an empty symbol pattern matches nothing: give a glob such as 'NIFTY*' or 'NSE:INFY'")
        self._full = _compile([p for p in patterns if ":" in p])
        self._bare = _compile([p for p in patterns if ":" not in p])

    def __bool__(self) -> bool:
        return self._full is not None or self._bare is not None

    def match(self, exchange: str, symbol: str) -> bool:
        return bool(
            (self._bare is not None and self._bare.match(symbol))
            or (self._full is not None and self._full.match(f"{exchange}:{symbol}"))
        )


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)

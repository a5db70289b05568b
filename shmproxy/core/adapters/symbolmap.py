"""Instrument maps: OpenAlgo's (exchange, symbol) to a broker's (exchange, token) and back.

Brokers that speak numeric tokens need the table OpenAlgo keeps as its master contract. Adapters
load it from a CSV file with a header naming at least ``exchange``, ``symbol`` and ``token`` (other
columns are ignored, so an exported master contract works as it is)::

    exchange,symbol,token
    NSE,RELIANCE,2885
    NSE_INDEX,NIFTY,26000

``exchange`` and ``symbol`` are OpenAlgo's, matched exactly. The broker's exchange is the same
name unless the adapter passes aliases (Noren knows ``NSE_INDEX`` instruments as ``NSE``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, NamedTuple

REQUIRED_COLUMNS = ("exchange", "symbol", "token")


class BrokerKey(NamedTuple):
    """An instrument as the broker names it."""

    exchange: str
    token: str


Instrument = tuple[str, str]  # OpenAlgo's (exchange, symbol)


class SymbolMap:
    """A one-to-one map between OpenAlgo instruments and broker keys."""

    def __init__(self, entries: Mapping[Instrument, BrokerKey]) -> None:
        self._keys = dict(entries)
        self._instruments = {key: instrument for instrument, key in self._keys.items()}

    def __len__(self) -> int:
        return len(self._keys)

    def broker_key(self, exchange: str, symbol: str) -> BrokerKey | None:
        return self._keys.get((exchange, symbol))

    def instrument(self, key: BrokerKey) -> Instrument | None:
        return self._instruments.get(key)

    @classmethod
    def load(cls, path: str | Path, exchange_aliases: Mapping[str, str] | None = None) -> SymbolMap:
        """Read a CSV map. Raises OSError when the file cannot be read, ValueError (naming the line)
        when its content is not a map: missing columns, empty values, an instrument or token twice."""
        aliases = exchange_aliases or {}
        entries: dict[Instrument, BrokerKey] = {}
        taken: dict[BrokerKey, int] = {}
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            _check_header(reader.fieldnames)
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or ()]
            for row in reader:
                line = reader.line_num
                exchange, symbol, token = (_value(row, column, line) for column in REQUIRED_COLUMNS)
                key = BrokerKey(aliases.get(exchange, exchange), token)
                if (exchange, symbol) in entries:
                    raise ValueError(f"line {line}: {exchange}:{symbol} is listed twice")
                if key in taken:
                    raise ValueError(f"line {line}: token {key.exchange}|{token} is already used on line {taken[key]}")
                entries[(exchange, symbol)] = key
                taken[key] = line
        return cls(entries)


def _check_header(fieldnames: list[str] | None) -> None:
    columns = {name.strip().lower() for name in fieldnames or ()}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"the header must name the columns {','.join(REQUIRED_COLUMNS)} (missing: {', '.join(missing)})")


def _value(row: dict[str, str | None], column: str, line: int) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise ValueError(f"line {line}: no {column}")
    return value

"""Tick records: validation of published data, and the decoded :class:`Tick`.

A record is fixed-size (see :mod:`shmproxy.core.layout`). :func:`encode_tick` turns
``publish_market_data``'s ``(symbol, data)`` into the values packed into a slot; :class:`Tick` is a
record read back, and :meth:`Tick.to_dict` gives the OpenAlgo ``market_data`` ``data`` shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import layout
from .errors import RecordError

MODE_LTP, MODE_QUOTE, MODE_DEPTH = 1, 2, 3
MODE_NAMES = {MODE_LTP: "LTP", MODE_QUOTE: "Quote", MODE_DEPTH: "Depth"}
_MODE_BY_NAME = {"ltp": MODE_LTP, "quote": MODE_QUOTE, "depth": MODE_DEPTH}
_INFINITIES = (float("inf"), float("-inf"))
_INT64_MAX = (1 << 63) - 1

# Names accepted in ``data`` for each record field: the OpenAlgo name first, then the SDK's spelling.
PRICE_FIELDS = (
    ("ltp",), ("open",), ("high",), ("low",), ("close",),
    ("average_price", "avg_trade_price"), ("percent_change", "change_percent"),
)
QUANTITY_FIELDS = (
    ("volume",), ("last_quantity", "last_trade_quantity"), ("last_trade_time", "ltt"), ("oi",),
    ("total_buy_quantity",), ("total_sell_quantity",),
)


def parse_mode(value: Any) -> int:
    """Return mode 1/2/3 from an int or a name ("LTP", "quote", ...); raise RecordError otherwise."""
    if isinstance(value, str):
        mode = _MODE_BY_NAME.get(value.strip().lower())
        if mode is not None:
            return mode
        if value.strip().isdigit():
            value = int(value)
    if type(value) is int and MODE_LTP <= value <= MODE_DEPTH:
        return value
    raise RecordError(f"mode={value!r} is not a valid mode: use 1/2/3 or LTP/Quote/Depth")


def split_symbol(symbol: str, exchange: Any) -> tuple[str, str]:
    """Accept ``"NSE:RELIANCE"`` or a bare symbol plus ``exchange``; return (exchange, symbol)."""
    if not isinstance(symbol, str) or not symbol:
        raise RecordError(f"symbol={symbol!r} must be a non-empty string")
    if ":" in symbol:
        prefix, _, symbol = symbol.partition(":")
        exchange = exchange or prefix
    if not exchange or not isinstance(exchange, str):
        raise RecordError(f"missing exchange for symbol {symbol!r}: pass data['exchange'] or 'EXCHANGE:SYMBOL'")
    return exchange, symbol


class NameCodec:
    """Encodes (exchange, symbol) once and remembers it: names repeat on every tick.

    :meth:`encode` validates; :meth:`remember` also files the result under the caller's own key
    (such as ``(None, "NSE:RELIANCE")``) so that :meth:`get` finds it next time without parsing.
    """

    _LIMIT = 100_000

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, str], tuple[int, int, bytes, bytes]] = {}
        self.get = self.cache.get

    def encode(self, exchange: str, symbol: str) -> tuple[int, int, bytes, bytes]:
        hit = self.cache.get((exchange, symbol))
        if hit is not None:
            return hit
        ex, sym = exchange.encode(), symbol.encode()
        if not symbol.strip() or len(sym) > layout.SYMBOL_BYTES:
            raise RecordError(f"symbol {symbol!r} must be 1 to {layout.SYMBOL_BYTES} bytes of UTF-8 (got {len(sym)})")
        if len(ex) > layout.EXCHANGE_BYTES:
            raise RecordError(f"exchange {exchange!r} must be 1 to {layout.EXCHANGE_BYTES} bytes of UTF-8 (got {len(ex)})")
        hit = (len(ex), len(sym), ex, sym)
        self.remember((exchange, symbol), hit)
        return hit

    def remember(self, key: tuple[Any, str], names: tuple[int, int, bytes, bytes]) -> None:
        if len(self.cache) >= self._LIMIT:
            self.cache.clear()
        self.cache[key] = names


def _lookup(data: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The first truthy value under ``names``, else None: a zero or empty value moves on to the next
    spelling, as ``data.get(a) or data.get(b)`` does in the publisher's fast path."""
    for name in names:
        value = data.get(name)
        if value:
            return value
    return None


def _price(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name}={value!r} is not a number") from None
    if number != number or number in _INFINITIES:
        raise RecordError(f"{name}={value!r} is not a finite number")
    return number


def _quantity(value: Any, name: str) -> int:
    if type(value) is not int:
        value = int(_price(value, name))
    if not -_INT64_MAX <= value <= _INT64_MAX:
        raise RecordError(f"{name}={value!r} does not fit in 64 bits")
    return value


def encode_prices(data: Mapping[str, Any]) -> list[float]:
    """The 7 price fields in record order; ``ltp`` is required, the rest default to 0."""
    if data.get("ltp") is None:
        raise RecordError("missing ltp: every tick needs a last traded price")
    prices = [_price(data["ltp"], "ltp")]
    for names in PRICE_FIELDS[1:]:
        value = _lookup(data, names)
        prices.append(0.0 if value is None else _price(value, names[0]))
    if not prices[6] and prices[4]:
        prices[6] = (prices[0] - prices[4]) / prices[4] * 100.0  # percent change against close
    return prices


def encode_quantities(data: Mapping[str, Any]) -> list[int]:
    quantities = []
    for names in QUANTITY_FIELDS:
        value = _lookup(data, names)
        quantities.append(0 if value is None else _quantity(value, names[0]))
    return quantities


def encode_depth(depth: Any) -> list[float | int]:
    """Flatten ``{"buy": [...], "sell": [...]}`` into 30 values (5 levels x price, quantity, orders)."""
    if not isinstance(depth, Mapping):
        raise RecordError(f"depth must be an object with 'buy' and 'sell' lists, not {type(depth).__name__}")
    values: list[float | int] = []
    for side in ("buy", "sell"):
        levels = depth.get(side) or []
        if not isinstance(levels, (list, tuple)):
            raise RecordError(f"depth.{side} must be a list of levels")
        for i in range(layout.DEPTH_LEVELS):
            level = levels[i] if i < len(levels) else None
            if level is None:
                values += (0.0, 0, 0)
                continue
            if not isinstance(level, Mapping):
                raise RecordError(f"depth.{side}[{i}] must be an object with price, quantity, orders")
            values.append(_price(level.get("price", 0), f"depth.{side}[{i}].price"))
            values.append(_quantity(level.get("quantity", 0), f"depth.{side}[{i}].quantity"))
            values.append(_quantity(level.get("orders", 0), f"depth.{side}[{i}].orders"))
    return values


def exchange_ns_of(data: Mapping[str, Any]) -> int:
    """Exchange time in ns from OpenAlgo's ``timestamp`` (ms since the epoch); 0 when absent."""
    value = data.get("timestamp")
    if value is None:
        return 0
    if type(value) is int:  # exact: a float would round epoch-ms values by tens of ns
        ns = _quantity(value, "timestamp") * 1_000_000
    else:
        ns = int(_price(value, "timestamp") * 1_000_000)
    if not -_INT64_MAX <= ns <= _INT64_MAX:
        raise RecordError(f"timestamp={value!r} is not a time in ms since the epoch (too far out)")
    return ns


class Tick:
    """One record read from the ring.

    Attributes mirror the record: ``seq`` (ring sequence), ``publish_ns`` and ``exchange_ns``
    (ns since the epoch, ``exchange_ns`` 0 when the publisher gave none), ``mode``, ``exchange``,
    ``symbol``, the OpenAlgo price and quantity fields, and ``depth`` for Depth records.
    """

    __slots__ = (
        "seq", "publish_ns", "exchange_ns", "mode", "exchange", "symbol",
        "ltp", "open", "high", "low", "close", "average_price", "percent_change",
        "volume", "last_quantity", "last_trade_time", "oi", "total_buy_quantity", "total_sell_quantity",
        "_depth",
    )

    @classmethod
    def from_slot(cls, v: tuple, exchange: str, symbol: str) -> Tick:
        """Build from a ``layout.SLOT_READ`` tuple whose names were already decoded."""
        t = cls.__new__(cls)
        (t.seq, t.publish_ns, t.exchange_ns, t.mode) = v[0], v[1], v[2], v[3]
        t.exchange, t.symbol = exchange, symbol
        (t.ltp, t.open, t.high, t.low, t.close, t.average_price, t.percent_change,
         t.volume, t.last_quantity, t.last_trade_time, t.oi, t.total_buy_quantity,
         t.total_sell_quantity) = v[8:21]
        t._depth = v[21:51] if t.mode == MODE_DEPTH else None
        return t

    @property
    def key(self) -> tuple[str, str]:
        return (self.exchange, self.symbol)

    @property
    def mode_name(self) -> str:
        return MODE_NAMES[self.mode]

    @property
    def timestamp_ms(self) -> int:
        return (self.exchange_ns or self.publish_ns) // 1_000_000

    @property
    def values(self) -> tuple:
        """The 7 prices and 6 quantities in record order (``layout.BODY_FORMAT``'s ``7d6q``)."""
        return (
            self.ltp, self.open, self.high, self.low, self.close, self.average_price, self.percent_change,
            self.volume, self.last_quantity, self.last_trade_time, self.oi, self.total_buy_quantity,
            self.total_sell_quantity,
        )

    @property
    def depth_values(self) -> tuple | None:
        """The 30 depth values in record order (``layout.DEPTH_FORMAT``) for Depth records, else None."""
        return self._depth

    @property
    def depth(self) -> dict[str, list[dict[str, float | int]]] | None:
        """``{"buy": [...5 levels], "sell": [...]}`` for Depth records, else None."""
        d = self._depth
        if d is None:
            return None
        levels = [{"price": d[i], "quantity": d[i + 1], "orders": d[i + 2]} for i in range(0, 30, 3)]
        return {"buy": levels[:5], "sell": levels[5:]}

    def to_dict(self, mode: int | None = None) -> dict[str, Any]:
        """The OpenAlgo ``market_data`` ``data`` object for ``mode`` (default: the tick's own).

        A tick serves its own mode and every lower one; asking for a higher mode gives the tick's own.
        Quote and Depth carry both the server's and the SDK's spellings of the same fields.
        """
        mode = self.mode if mode is None or mode > self.mode else mode
        data: dict[str, Any] = {"ltp": self.ltp, "timestamp": self.timestamp_ms}
        if self.last_trade_time:
            data["ltt"] = self.last_trade_time
        if mode == MODE_LTP:
            return data
        data.update(
            open=self.open, high=self.high, low=self.low, close=self.close, volume=self.volume,
            average_price=self.average_price, avg_trade_price=self.average_price,
            percent_change=self.percent_change, change_percent=self.percent_change,
            change=round(self.ltp - self.close, 4) if self.close else 0.0,
            last_quantity=self.last_quantity, last_trade_quantity=self.last_quantity,
            last_trade_time=self.last_trade_time, oi=self.oi,
        )
        if mode == MODE_DEPTH:
            data.update(
                total_buy_quantity=self.total_buy_quantity, total_sell_quantity=self.total_sell_quantity,
                depth=self.depth,
            )
        return data

    def __repr__(self) -> str:
        return f"Tick(seq={self.seq}, {self.exchange}:{self.symbol}, {self.mode_name}, ltp={self.ltp})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tick):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

"""Upstream tick dicts -> the typed fields :class:`~shmproxy.SharedMemoryPublisher` records.

Upstream adapters sent their dicts through ZeroMQ as JSON, so many pass broker values on as they
come: numbers as strings (``"2950.50"``), gaps as None or ``""``, NaN from arithmetic on missing
values, depth levels without ``orders``, times as epoch seconds, milliseconds or date strings. The
ring holds numbers only, so each known field is converted here. A field that cannot be converted
is left out and named in :attr:`Converted.dropped`; the tick still goes out, unless its price is
the field that failed (RecordError).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from ..core.errors import RecordError
from ..core.layout import DEPTH_LEVELS
from ..core.records import PRICE_FIELDS, QUANTITY_FIELDS

# (record name, accepted spellings): the publisher's own tables, plus upstream's "last_price" for ltp.
_PRICES = (("ltp", "last_price"),) + PRICE_FIELDS[1:]
_QUANTITIES = tuple(names for names in QUANTITY_FIELDS if names[0] != "last_trade_time")
_TRADE_TIME = ("last_trade_time", "ltt")
_DATE_FORMATS = ("%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%d-%b-%Y %H:%M:%S")  # Indian brokers' styles
_SECONDS_BELOW, _MS_BELOW, _US_BELOW = 1e11, 1e14, 1e17  # epoch magnitudes tell the unit apart


class Unusable(ValueError):
    """A value that is present but cannot be converted."""


@dataclass
class Converted:
    fields: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def convert(data: Mapping[str, Any]) -> Converted:
    """The record fields found in ``data``, converted; symbol, exchange and mode are not included."""
    out = Converted({})
    for names in _PRICES:
        _take(out, data, names, real)
    for names in _QUANTITIES:
        _take(out, data, names, integer)
    _take(out, data, ("timestamp",), epoch_ms)
    _take(out, data, _TRADE_TIME, trade_time)
    _take(out, data, ("depth",), depth)
    unusable_price = next((name for name in _PRICES[0] if name in out.dropped), None)
    if unusable_price is not None:  # without a price there is no tick to record
        raise RecordError(f"{unusable_price}={data[unusable_price]!r} is not a usable price")
    return out


def _take(out: Converted, data: Mapping[str, Any], names: tuple[str, ...], conversion: Callable[[Any], Any]) -> None:
    """Convert the first present spelling of a field into ``out.fields[names[0]]``."""
    for name in names:
        value = data.get(name)
        if _absent(value):
            continue
        try:
            out.fields[names[0]] = conversion(value)
        except Unusable:
            out.dropped.append(name)
        return


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def real(value: Any) -> float:
    """A finite float from a number or a numeric string (thousands separators allowed)."""
    if isinstance(value, bool):
        raise Unusable(value)
    try:
        number = float(value.replace(",", "") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise Unusable(value) from None
    if not math.isfinite(number):
        raise Unusable(value)
    return number


def integer(value: Any) -> int:
    """An int from an int, a whole-valued float or a numeric string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(real(value))


def epoch_seconds(value: Any) -> float:
    """Seconds since the epoch from epoch s/ms/us/ns (told apart by size) or a date-time string.

    A date-time without a zone is local time: upstream adapters stamp with ``datetime.now()``.
    """
    try:
        number = real(value)
    except Unusable:
        return _parse_datetime(value).timestamp()
    magnitude = abs(number)
    if magnitude < _SECONDS_BELOW:
        return number
    if magnitude < _MS_BELOW:
        return number / 1e3
    return number / (1e6 if magnitude < _US_BELOW else 1e9)


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise Unusable(value)
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for layout in _DATE_FORMATS:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    raise Unusable(value)


def epoch_ms(value: Any) -> int:
    """OpenAlgo's ``timestamp``: milliseconds since the epoch."""
    return int(epoch_seconds(value) * 1000)


def trade_time(value: Any) -> int:
    """``last_trade_time``: a broker's number is kept as it is (clients saw it so upstream); a
    date-time string becomes epoch seconds. A bare time of day (no date) cannot be placed: Unusable."""
    try:
        return integer(value)
    except Unusable:
        return int(_parse_datetime(value).timestamp())


def depth(value: Any) -> dict[str, list[dict[str, float | int]]]:
    """``{"buy": [...], "sell": [...]}`` with typed levels, at most the ring's 5 per side.

    A level that cannot be converted makes the whole book Unusable: a book with a hole in it
    would show a wrong spread.
    """
    if not isinstance(value, Mapping):
        raise Unusable(value)
    book = {}
    for side in ("buy", "sell"):
        levels = value.get(side) or []
        if not isinstance(levels, (list, tuple)):
            raise Unusable(value)
        book[side] = [_level(level) for level in levels[:DEPTH_LEVELS]]
    return book


def _level(level: Any) -> dict[str, float | int]:
    if not isinstance(level, Mapping):
        raise Unusable(level)
    price, quantity, orders = level.get("price"), level.get("quantity"), level.get("orders")
    return {
        "price": 0.0 if _absent(price) else real(price),
        "quantity": 0 if _absent(quantity) else integer(quantity),
        "orders": 0 if _absent(orders) else integer(orders),
    }

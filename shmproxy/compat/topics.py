"""Upstream OpenAlgo topics (``EXCHANGE_SYMBOL_MODE``) and the instrument a published tick belongs to.

Upstream adapters publish under topics such as ``NSE_RELIANCE_QUOTE``: the mode (LTP, QUOTE or
DEPTH) is the last segment, the exchange the first, except for index exchanges, which span two
(``NSE_INDEX_NIFTY_LTP``); the symbol is everything in between, so it may hold underscores
(``CRYPTO_SOL_INR_LTP``) and hyphens (``NSE_BAJAJ-AUTO_LTP``). Upstream's proxy split topics this
way; here any ``<EX>_INDEX`` prefix counts as one exchange, not only the ones upstream listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..core.errors import RecordError
from ..core.records import parse_mode

TOPIC_MODES = {"LTP": 1, "QUOTE": 2, "DEPTH": 3}
# Upstream adapters also publish account events on the same socket; they are not market data.
ACCOUNT_EVENT_SUFFIXES = ("_orders", "_positions", "_margins")


class TopicError(RecordError):
    """A topic that does not name an exchange, a symbol and a mode."""


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    mode: int


def parse_topic(topic: Any) -> Instrument:
    """Split ``EXCHANGE_SYMBOL_MODE``; raise TopicError naming what is missing."""
    if not isinstance(topic, str):
        raise TopicError(f"topic {topic!r} is not a string")
    parts = topic.split("_")
    if len(parts) < 3:
        raise TopicError(f"topic {topic!r} is not EXCHANGE_SYMBOL_MODE")
    mode = TOPIC_MODES.get(parts[-1].upper())
    if mode is None:
        raise TopicError(f"topic {topic!r} ends in {parts[-1]!r}, not LTP, QUOTE or DEPTH")
    head = parts[:-1]
    exchange_parts = 2 if len(head) > 2 and head[1] == "INDEX" else 1
    exchange, symbol = "_".join(head[:exchange_parts]), "_".join(head[exchange_parts:])
    if not exchange or not symbol:
        raise TopicError(f"topic {topic!r} has an empty exchange or symbol")
    return Instrument(exchange, symbol, mode)


def instrument_of(topic: Any, data: Any) -> Instrument:
    """The tick's instrument: ``symbol``, ``exchange`` and ``mode`` from ``data`` win over the topic's.

    Upstream adapters often carry all three in ``data`` (then the topic is not even parsed); the
    topic fills in whatever ``data`` lacks.
    """
    if not isinstance(data, Mapping):
        raise RecordError(f"data must be a dict of tick fields, not {type(data).__name__}")
    exchange, symbol, mode = _text(data.get("exchange")), _text(data.get("symbol")), data.get("mode")
    if not (exchange and symbol and mode is not None):
        parsed = parse_topic(topic)
        exchange, symbol = exchange or parsed.exchange, symbol or parsed.symbol
        mode = parsed.mode if mode is None else mode
    return Instrument(exchange, symbol, parse_mode(mode))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

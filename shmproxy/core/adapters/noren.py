"""The Noren (Flattrade PiConnect) market-data protocol, without sockets.

Builds the client's messages, keeps the last full state of each instrument by merging the broker's
partial updates (``tf``/``df`` carry only the fields that changed) into its snapshot (``tk``/``dk``),
and converts that state, strings on the wire, into the dict ``publish_market_data`` takes.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from ..records import MODE_DEPTH, MODE_QUOTE
from .symbolmap import BrokerKey

TOUCHLINE, DEPTH = "t", "d"  # subscription levels, named by their subscribe verbs
_UNSUBSCRIBE = {TOUCHLINE: "u", DEPTH: "ud"}
FEED_LEVELS = {"tk": TOUCHLINE, "tf": TOUCHLINE, "dk": DEPTH, "df": DEPTH}  # snapshot, then partial updates
LOGIN_ACKS = ("ak", "ck")  # current and older deployments
HEARTBEAT = json.dumps({"t": "h"})
KEYS_PER_MESSAGE = 100  # a re-subscribe after a reconnect may carry thousands: keep frames modest
DEPTH_LEVELS = 5
IST = timezone(timedelta(hours=5, minutes=30))  # the exchanges' clock, for times sent without a date

_PRICES = {"ltp": "lp", "open": "o", "high": "h", "low": "l", "close": "c", "average_price": "ap",
           "percent_change": "pc"}
_QUANTITIES = {"volume": "v", "last_quantity": "ltq", "oi": "oi", "total_buy_quantity": "tbq",
               "total_sell_quantity": "tsq"}


# --- messages to the broker -------------------------------------------------------------------------
def login_message(user_id: str, account_id: str, token: str) -> str:
    return json.dumps({"t": "a", "uid": user_id, "actid": account_id, "source": "API", "accesstoken": token})


def level_for(mode: int) -> str | None:
    """The subscription a mode needs: touchline for LTP and Quote, depth for Depth, none for 0."""
    if not mode:
        return None
    return DEPTH if mode >= MODE_DEPTH else TOUCHLINE


def subscription_messages(level: str, keys: list[BrokerKey], subscribe: bool = True) -> list[str]:
    """Subscribe (or unsubscribe) frames for ``keys`` at ``level``, ``EXCHANGE|TOKEN`` joined by ``#``."""
    verb = level if subscribe else _UNSUBSCRIBE[level]
    return [json.dumps({"t": verb, "k": "#".join(f"{k.exchange}|{k.token}" for k in keys[i:i + KEYS_PER_MESSAGE])})
            for i in range(0, len(keys), KEYS_PER_MESSAGE)]


# --- messages from the broker -----------------------------------------------------------------------
def parse(raw: str | bytes) -> dict[str, Any] | None:
    """A broker frame as a dict, or None when it is not a JSON object."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def login_refusal(ack: Mapping[str, Any]) -> str | None:
    """None when a login ack accepts the session, else the broker's reason (its ``emsg``)."""
    if str(ack.get("s", "")).strip().upper() == "OK":
        return None
    return str(ack.get("emsg") or f"status {ack.get('s')!r}")


def feed_key(message: Mapping[str, Any]) -> BrokerKey | None:
    """The instrument a feed message (tk/tf/dk/df) is about; None for other messages."""
    exchange, token = message.get("e"), message.get("tk")
    if message.get("t") not in FEED_LEVELS or not exchange or not token:
        return None
    return BrokerKey(str(exchange), str(token))


def publish_mode(wanted: int, feed: str) -> int:
    """The mode to publish a feed message at: touchline feeds carry no depth, so at most Quote."""
    return wanted if FEED_LEVELS[feed] == DEPTH else min(wanted, MODE_QUOTE)


class FeedBook:
    """The last full state of each instrument: its snapshot with every partial update merged in."""

    def __init__(self) -> None:
        self._states: dict[BrokerKey, dict[str, Any]] = {}

    def merge(self, key: BrokerKey, message: Mapping[str, Any]) -> Mapping[str, Any]:
        state = self._states.setdefault(key, {})
        state.update(message)
        return state

    def forget(self, key: BrokerKey) -> None:
        self._states.pop(key, None)

    def clear(self) -> None:
        self._states.clear()


# --- conversion to a tick ---------------------------------------------------------------------------
def to_tick(state: Mapping[str, Any], mode: int) -> dict[str, Any] | None:
    """The ``publish_market_data`` dict for an instrument's state at ``mode``; None before its first
    last price. ``ft`` (feed time, epoch seconds) becomes ``timestamp`` (ms). Raises ValueError naming
    the first price or quantity field that is not a number."""
    if not _present(state, "lp"):
        return None
    tick: dict[str, Any] = {"mode": mode}
    tick.update({name: _number(state, field) for name, field in _PRICES.items() if _present(state, field)})
    tick.update({name: _whole(state, field) for name, field in _QUANTITIES.items() if _present(state, field)})
    feed_time = _whole(state, "ft") if _present(state, "ft") else None
    if feed_time:
        tick["timestamp"] = feed_time * 1000
    traded = trade_time(str(state["ltt"]), feed_time) if _present(state, "ltt") else None
    if traded:
        tick["last_trade_time"] = traded
    if mode == MODE_DEPTH:
        tick["depth"] = {side: [_level(state, prefix, i) for i in range(1, DEPTH_LEVELS + 1)]
                         for side, prefix in (("buy", "b"), ("sell", "s"))}
    return tick


def trade_time(text: str, feed_time: int | None = None) -> int | None:
    """Epoch seconds of a last-trade time sent as epoch seconds, as ``DD-MM-YYYY HH:MM:SS`` or as
    ``HH:MM:SS`` (India time; a bare time is on the feed time's date). None for any other form: an
    unreadable trade time is left out rather than costing the tick its price."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.strptime(text, "%d-%m-%Y %H:%M:%S").replace(tzinfo=IST).timestamp())
    except ValueError:
        pass
    try:
        clock = datetime.strptime(text, "%H:%M:%S").time()
    except ValueError:
        return None
    day = datetime.fromtimestamp(feed_time or time.time(), IST).date()
    return int(datetime.combine(day, clock, IST).timestamp())


def _level(state: Mapping[str, Any], prefix: str, i: int) -> dict[str, Any]:
    """One depth level from ``{b|s}p<i>`` (price), ``q<i>`` (quantity), ``o<i>`` (orders); 0 when absent."""
    price, quantity, orders = f"{prefix}p{i}", f"{prefix}q{i}", f"{prefix}o{i}"
    return {"price": _number(state, price) if _present(state, price) else 0.0,
            "quantity": _whole(state, quantity) if _present(state, quantity) else 0,
            "orders": _whole(state, orders) if _present(state, orders) else 0}


def _present(state: Mapping[str, Any], field: str) -> bool:
    return state.get(field) not in (None, "")


def _number(state: Mapping[str, Any], field: str) -> float:
    raw = state[field]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{field}={raw!r} is not a number")
    return value


def _whole(state: Mapping[str, Any], field: str) -> int:
    value = _number(state, field)
    if not value.is_integer():
        raise ValueError(f"{field}={state[field]!r} is not a whole number")
    return int(value)

"""OpenAlgo WebSocket protocol: parse and validate client frames, build server replies.

Pure functions and small dataclasses, no I/O (the websockets library's sans-I/O split is the
model). The wire format is in ``shared/reference/openalgo-ws-protocol.md``: JSON text frames,
the verb in ``action`` (or ``type``). A bad frame raises :class:`ProtocolError` carrying the
protocol's error code; :func:`error_reply` turns it into the error frame.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Union

from ..layout import EXCHANGE_BYTES, SYMBOL_BYTES
from ..records import MODE_NAMES, MODE_QUOTE

AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
INVALID_JSON = "INVALID_JSON"
INVALID_ACTION = "INVALID_ACTION"
INVALID_MODE = "INVALID_MODE"
INVALID_PARAMETERS = "INVALID_PARAMETERS"
BROKER_ERROR = "BROKER_ERROR"
SERVER_ERROR = "SERVER_ERROR"
RATE_LIMITED = "RATE_LIMITED"

_MODE_BY_NAME = {"ltp": 1, "quote": 2, "depth": 3}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9&_.\-]*$")
_MAX_REQUEST_ID = 128
MAX_DEPTH = 50


class ProtocolError(Exception):
    """A request the server refuses, with the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Instrument:
    """One entry of a subscribe/unsubscribe request, or the reason it is invalid."""

    exchange: str
    symbol: str
    mode: int = MODE_QUOTE
    error: str | None = None  # set when this entry alone is invalid ("partial" replies)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.exchange, self.symbol, self.mode)


@dataclass(frozen=True)
class Authenticate:
    api_key: str


@dataclass(frozen=True)
class Subscribe:
    instruments: list[Instrument]
    mode: int
    depth: int
    request_id: Any = None


@dataclass(frozen=True)
class Unsubscribe:
    instruments: list[Instrument] = field(default_factory=list)
    everything: bool = False
    request_id: Any = None


@dataclass(frozen=True)
class Ping:
    timestamp: Any = None
    ping_id: Any = None


@dataclass(frozen=True)
class GetBrokerInfo:
    pass


@dataclass(frozen=True)
class GetSupportedBrokers:
    pass


Request = Union[Authenticate, Subscribe, Unsubscribe, Ping, GetBrokerInfo, GetSupportedBrokers]


# --- parsing ------------------------------------------------------------------------------------
def parse_frame(frame: str | bytes) -> Request:
    """Parse one client frame into a request, or raise :class:`ProtocolError`."""
    if isinstance(frame, bytes):
        raise ProtocolError(INVALID_JSON, "binary frames are not supported: send JSON text frames")
    try:
        message = json.loads(frame, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ProtocolError(INVALID_JSON, "Invalid JSON message") from None
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_JSON, "a request must be a JSON object")
    action = message.get("action") or message.get("type")
    parse = _PARSERS.get(action) if isinstance(action, str) else None
    if parse is None:
        shown = action if isinstance(action, str) and len(action) <= 40 else type(action).__name__
        raise ProtocolError(INVALID_ACTION, f"Invalid action: {shown}")
    return parse(message)


def _no_constants(name: str) -> Any:
    """NaN and Infinity are not JSON (browsers reject them); refuse them rather than echo them."""
    raise ValueError(f"{name} is not JSON")


def _encodable(text: str) -> bool:
    """False for strings with lone surrogates (legal in JSON escapes, not in UTF-8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_mode(value: Any) -> int:
    """1/2/3 or "LTP"/"Quote"/"Depth" in any case."""
    if isinstance(value, str):
        mode = _MODE_BY_NAME.get(value.strip().lower())
        if mode is None and value.strip() in ("1", "2", "3"):
            mode = int(value)
        if mode is not None:
            return mode
    elif type(value) is int and 1 <= value <= 3:
        return value
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    raise ProtocolError(INVALID_MODE, f"Invalid mode {shown}: use 1/2/3 or LTP/Quote/Depth")


def _authenticate(message: dict) -> Authenticate:
    key = message.get("api_key") or message.get("apikey")
    if not key:
        raise ProtocolError(AUTHENTICATION_ERROR, "API key is required")
    if not isinstance(key, str) or len(key) > 512 or not key.isprintable() or not _encodable(key):
        raise ProtocolError(AUTHENTICATION_ERROR, "Invalid API key")
    return Authenticate(key)


def _request_id(message: dict) -> Any:
    request_id = message.get("request_id")
    if request_id is None or isinstance(request_id, (int, float)) and not isinstance(request_id, bool):
        return request_id
    if isinstance(request_id, str) and len(request_id) <= _MAX_REQUEST_ID:
        return request_id
    raise ProtocolError(INVALID_PARAMETERS, f"request_id must be a number or a string of at most {_MAX_REQUEST_ID} characters")


def _entries(message: dict) -> list[Any]:
    """The ``symbols`` list, or the top-level ``symbol`` + ``exchange`` as a one-entry list."""
    symbols = message.get("symbols")
    if symbols is None or symbols == []:
        if message.get("symbol") is None and message.get("exchange") is None:
            raise ProtocolError(INVALID_PARAMETERS, "At least one symbol must be specified")
        return [{"symbol": message.get("symbol"), "exchange": message.get("exchange"), "mode": message.get("mode")}]
    if not isinstance(symbols, list):
        raise ProtocolError(INVALID_PARAMETERS, "symbols must be a list of {symbol, exchange} objects")
    return symbols


def _instrument(entry: Any, default_mode: int) -> Instrument:
    """Validate one entry; an invalid entry comes back with ``error`` set, never raising."""
    if not isinstance(entry, dict):
        return Instrument("", "", default_mode, "each entry must be an object with symbol and exchange")
    symbol, exchange = entry.get("symbol"), entry.get("exchange")
    shown_symbol = symbol if isinstance(symbol, str) else ""
    shown_exchange = exchange if isinstance(exchange, str) else ""
    try:
        mode = default_mode if entry.get("mode") is None else parse_mode(entry["mode"])
    except ProtocolError as exc:
        return Instrument(shown_exchange[:EXCHANGE_BYTES], shown_symbol[:SYMBOL_BYTES], default_mode, exc.message)
    problem = _name_problem("symbol", symbol, SYMBOL_BYTES) or _name_problem("exchange", exchange, EXCHANGE_BYTES)
    if problem:
        return Instrument(shown_exchange[:EXCHANGE_BYTES], shown_symbol[:SYMBOL_BYTES], mode, problem)
    return Instrument(exchange, symbol, mode)


def _name_problem(what: str, value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{what} is required"
    if not _NAME_RE.match(value) or len(value) > limit:  # the pattern is ASCII: one byte a character
        return f"invalid {what}: 1 to {limit} letters, digits or &_.- expected"
    return None


def _subscribe(message: dict) -> Subscribe:
    mode = parse_mode(message.get("mode", "Quote"))
    depth = message.get("depth", 5)
    if type(depth) is not int or not 1 <= depth <= MAX_DEPTH:
        raise ProtocolError(INVALID_PARAMETERS, f"depth must be a whole number from 1 to {MAX_DEPTH}")
    request_id = _request_id(message)
    return Subscribe([_instrument(e, mode) for e in _entries(message)], mode, depth, request_id)


def _unsubscribe(message: dict) -> Unsubscribe:
    request_id = _request_id(message)
    # Upstream ignores a top-level mode on list-form unsubscribes; we honour it (default Quote).
    mode = parse_mode(message.get("mode", MODE_QUOTE))
    return Unsubscribe([_instrument(e, mode) for e in _entries(message)], False, request_id)


def _unsubscribe_all(message: dict) -> Unsubscribe:
    return Unsubscribe([], True, _request_id(message))


def _ping(message: dict) -> Ping:
    timestamp, ping_id = message.get("timestamp"), message.get("_pingId")
    for name, value in (("timestamp", timestamp), ("_pingId", ping_id)):
        if value is not None and not isinstance(value, (int, float, str)) or isinstance(value, str) and len(value) > 128:
            raise ProtocolError(INVALID_PARAMETERS, f"{name} must be a number or a short string")
    return Ping(timestamp, ping_id)


_PARSERS = {
    "authenticate": _authenticate,
    "auth": _authenticate,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "unsubscribe_all": _unsubscribe_all,
    "ping": _ping,
    "get_broker_info": lambda message: GetBrokerInfo(),
    "get_supported_brokers": lambda message: GetSupportedBrokers(),
}


# --- replies --------------------------------------------------------------------------------------
def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "status": "error", "code": code, "message": message}


def auth_reply(broker: str, user_id: str) -> dict[str, Any]:
    return {
        "type": "auth", "status": "success", "message": "Authentication successful", "broker": broker,
        "user_id": user_id, "supported_features": {"ltp": True, "quote": True, "depth": True},
    }


def _with_request_id(reply: dict[str, Any], request_id: Any) -> dict[str, Any]:
    if request_id is not None:
        reply["request_id"] = request_id
    return reply


def subscribe_reply(entries: list[dict[str, Any]], broker: str, request_id: Any) -> dict[str, Any]:
    ok = sum(1 for e in entries if e["status"] == "success")
    status = "success" if ok == len(entries) else ("partial" if ok else "error")
    return _with_request_id(
        {"type": "subscribe", "status": status, "subscriptions": entries,
         "message": "Subscription processing complete", "broker": broker},
        request_id,
    )


def subscribed_entry(instrument: Instrument, depth: int, broker: str) -> dict[str, Any]:
    return {"symbol": instrument.symbol, "exchange": instrument.exchange, "status": "success",
            "mode": MODE_NAMES[instrument.mode], "depth": depth, "broker": broker}


def failed_entry(instrument: Instrument, message: str, broker: str) -> dict[str, Any]:
    return {"symbol": instrument.symbol, "exchange": instrument.exchange, "status": "error",
            "message": message, "broker": broker}


def unsubscribe_reply(successful: list[dict], failed: list[dict], broker: str, request_id: Any) -> dict[str, Any]:
    status = "error" if failed and not successful else ("partial" if failed else "success")
    return _with_request_id(
        {"type": "unsubscribe", "status": status, "message": "Unsubscription processing complete",
         "successful": successful, "failed": failed, "broker": broker},
        request_id,
    )


def unsubscribed_entry(exchange: str, symbol: str, mode: int, broker: str) -> dict[str, Any]:
    return {"symbol": symbol, "exchange": exchange, "status": "success", "mode": MODE_NAMES[mode], "broker": broker}


def pong_reply(ping: Ping) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "pong", "status": "success", "server_timestamp": int(time.time() * 1000)}
    if ping.timestamp is not None:
        reply["client_timestamp"] = ping.timestamp
    if ping.ping_id is not None:
        reply["_pingId"] = ping.ping_id
    return reply


def broker_info_reply(broker: str, adapter_status: str, user_id: str) -> dict[str, Any]:
    return {"type": "broker_info", "status": "success", "broker": broker, "adapter_status": adapter_status, "user_id": user_id}


def supported_brokers_reply(brokers: list[str]) -> dict[str, Any]:
    return {"type": "supported_brokers", "status": "success", "brokers": brokers, "count": len(brokers)}

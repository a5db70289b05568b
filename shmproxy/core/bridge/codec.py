"""Bridge messages: one tick plus its place in its subject's stream, as compact binary or JSON.

Binary (the default), version 1, little-endian, 200 bytes, 440 for a Depth tick:

=======  ====  ======================================================================================
offset   size  field
=======  ====  ======================================================================================
0        1     version: 1
1        3     zero
4        4     origin: u32, random, drawn by each ``bridge out`` run
8        8     seq: u64, this message's number on its subject in that run, from 1
16       184   the ring record's body exactly as ``layout.BODY_FORMAT`` (docs/shm-format.md, slot
               offsets 8 to 191): publish_ns, exchange_ns, mode, name lengths, zero-padded names,
               7 prices (f64), 6 quantities (i64)
200      240   depth as ``layout.DEPTH_FORMAT`` (slot offsets 192 to 431): Depth ticks only
=======  ====  ======================================================================================

JSON (``--format json``, for consumers in other languages): OpenAlgo's ``market_data`` message with
``data`` as :meth:`Tick.to_dict` gives it (what an OpenAlgo client sees of that tick), plus
``exchange_ns`` and ``publish_ns`` (ns since the epoch, at the source ring) and ``origin``/``seq``.

:func:`decode` recognises either by the first byte (``{`` or a version), so ``bridge in`` takes both.
A message that is not one of these raises :class:`DecodeError`: nothing reaches the ring.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, NamedTuple

from .. import layout
from ..errors import RecordError
from ..records import (
    MODE_DEPTH, MODE_LTP, NameCodec, Tick, encode_depth, encode_prices, encode_quantities, parse_mode,
)

VERSION = 1
FORMATS = ("binary", "json")
_HEAD = "<B3xIQ"  # version, origin, seq
_PLAIN = struct.Struct(_HEAD + layout.BODY_FORMAT)
_DEPTH = struct.Struct(_HEAD + layout.BODY_FORMAT + layout.DEPTH_FORMAT)
_NO_NAMES = (0, 0, b"", b"")  # Tick.from_slot takes names already decoded
_INFINITIES = (float("inf"), float("-inf"))

Encoder = Callable[[Tick, int, int], bytes]


class DecodeError(RecordError):
    """A message that is not a bridge tick (counted as invalid by ``bridge in``)."""


class Message(NamedTuple):
    origin: int
    seq: int
    tick: Tick  # tick.seq is ``seq``; tick.publish_ns the time it was published at the source


class BinaryEncoder:
    """Encodes ticks in the binary format; remembers each name's encoded bytes."""

    def __init__(self) -> None:
        self._names = NameCodec()

    def __call__(self, tick: Tick, origin: int, seq: int) -> bytes:
        head = (VERSION, origin, seq, tick.publish_ns, tick.exchange_ns, tick.mode)
        names = self._names.encode(tick.exchange, tick.symbol)
        depth = tick.depth_values
        if depth is None:
            return _PLAIN.pack(*head, *names, *tick.values)
        return _DEPTH.pack(*head, *names, *tick.values, *depth)


def encode_json(tick: Tick, origin: int, seq: int) -> bytes:
    message = {
        "type": "market_data", "exchange": tick.exchange, "symbol": tick.symbol, "mode": tick.mode,
        "data": tick.to_dict(), "exchange_ns": tick.exchange_ns, "publish_ns": tick.publish_ns,
        "origin": origin, "seq": seq,
    }
    return json.dumps(message, separators=(",", ":")).encode()


def encoder(fmt: str) -> Encoder:
    """The encoder for ``fmt``, "binary" or "json"."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return BinaryEncoder() if fmt == "binary" else encode_json


def decode(payload: bytes) -> Message:
    """The message in ``payload``, in either format; DecodeError when it is not a valid one."""
    if payload[:1] == b"{":
        return _decode_json(payload)
    return _decode_binary(payload)


def _decode_binary(payload: bytes) -> Message:
    if payload[:1] != bytes([VERSION]):
        raise DecodeError(f"unknown message version {payload[:1]!r}: neither JSON nor binary version {VERSION}")
    size = len(payload)
    if size not in (_PLAIN.size, _DEPTH.size):
        raise DecodeError(f"a binary message is {_PLAIN.size} or {_DEPTH.size} bytes, not {size}")
    v = (_PLAIN if size == _PLAIN.size else _DEPTH).unpack(payload)
    mode, ex_len, sym_len = v[5], v[6], v[7]
    if not MODE_LTP <= mode <= MODE_DEPTH or (mode == MODE_DEPTH) != (size == _DEPTH.size):
        raise DecodeError(f"mode {mode} does not match a {size}-byte message")
    if not (0 < ex_len <= layout.EXCHANGE_BYTES and 0 < sym_len <= layout.SYMBOL_BYTES):
        raise DecodeError(f"name lengths {ex_len}/{sym_len} are out of range")
    try:
        exchange, symbol = v[8][:ex_len].decode(), v[9][:sym_len].decode()
    except UnicodeDecodeError:
        raise DecodeError("a name is not UTF-8") from None
    _check_prices(v[10:17])
    return Message(v[1], v[2], Tick.from_slot(v[2:], exchange, symbol))


def _check_prices(prices: tuple) -> None:
    total = sum(prices)
    if total != total or total in _INFINITIES:
        raise DecodeError("a price is not a finite number")


def _decode_json(payload: bytes) -> Message:
    try:
        m = json.loads(payload)
        mode = parse_mode(m["mode"])
        data = m["data"]
        depth = encode_depth(data["depth"]) if mode == MODE_DEPTH else ()
        values = (*encode_prices(data), *encode_quantities(data), *depth)
        origin, seq, exchange, symbol = m["origin"], m["seq"], m["exchange"], m["symbol"]
        times = (_integer(m["publish_ns"]), _integer(m["exchange_ns"]), mode)
    except RecordError as exc:
        raise DecodeError(str(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, not an object, a field missing
        raise DecodeError(f"not a bridge JSON message: {type(exc).__name__}: {exc}") from None
    if not (isinstance(exchange, str) and isinstance(symbol, str) and exchange and symbol):
        raise DecodeError("exchange and symbol must be non-empty strings")
    seq, origin = _integer(seq), _integer(origin)
    return Message(origin, seq, Tick.from_slot((seq, *times, *_NO_NAMES, *values), exchange, symbol))


def _integer(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError(f"{value!r} is not a whole number >= 0")
    return value

"""SharedMemoryPublisher: the Python API adapters and scripts use to put ticks on the ring."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .errors import RecordError
from .records import (
    MODE_DEPTH,
    MODE_LTP,
    MODE_QUOTE,
    NameCodec,
    Tick,
    encode_depth,
    encode_prices,
    encode_quantities,
    exchange_ns_of,
    parse_mode,
    split_symbol,
)
from .ring import RingWriter
from .segment import Segment
from .settings import Settings

_MAX_TIMESTAMP_MS = ((1 << 63) - 1) // 1_000_000  # past this, the exchange time in ns overflows 64 bits
_INT64_MAX = (1 << 63) - 1
_QUOTE_OR_DEPTH = object()  # mode absent: Quote, or Depth when the tick carries depth
_MODES: dict[Any, Any] = {"default": _QUOTE_OR_DEPTH, None: _QUOTE_OR_DEPTH}
for _mode, _name in ((MODE_LTP, "LTP"), (MODE_QUOTE, "Quote"), (MODE_DEPTH, "Depth")):
    _MODES.update({_mode: _mode, _name: _mode, _name.upper(): _mode, _name.lower(): _mode})


class SharedMemoryPublisher:
    """Publishes ticks into a ring, creating it (mode 0600) if it does not exist.

    ``buffer_name`` and ``buffer_size`` default to ``SHM_BUFFER_NAME`` / ``SHM_BUFFER_SIZE``. An
    explicit ``buffer_size`` that differs from an existing ring's is an error; without one the
    existing ring is used as it is. Safe to share between threads; several processes may publish
    into the same ring at once. Closing (or leaving the ``with`` block) leaves the ring in place.
    """

    def __init__(self, buffer_name: str | None = None, buffer_size: int | None = None, settings: Settings | None = None) -> None:
        settings = settings or Settings.load()
        self.buffer_name = buffer_name or settings.shm_buffer_name
        self._segment = Segment.create_or_attach(self.buffer_name, buffer_size, settings.shm_buffer_size)
        self._writer = RingWriter(self._segment)
        self._names = NameCodec()
        tick_writer = self._writer.compiled_path(self._names.cache, _MODES, _QUOTE_OR_DEPTH)
        self._compiled = tick_writer.publish if tick_writer is not None else None

    @property
    def compiled(self) -> bool:
        """True when well-formed LTP and Quote ticks go through the compiled path (``_speedups``)."""
        return self._compiled is not None

    @property
    def segment(self) -> Segment:
        return self._segment

    @property
    def created(self) -> bool:
        """True when this publisher created the ring (it was absent)."""
        return self._segment.created

    @property
    def published(self) -> int:
        """Records this publisher has written."""
        return self._writer.records

    def publish_market_data(self, symbol: str, data: Mapping[str, Any]) -> int:
        """Write one tick and return its ring sequence number.

        ``symbol`` is ``"RELIANCE"`` (with ``data["exchange"]``) or ``"NSE:RELIANCE"``. ``data`` holds
        the OpenAlgo fields: ``mode`` (1/2/3 or "LTP"/"Quote"/"Depth"; default Quote, or Depth when
        ``depth`` is given), ``ltp`` (required), ``open``, ``high``, ``low``, ``close``, ``volume``,
        ``average_price``, ``percent_change`` (computed from ``close`` when absent), ``last_quantity``,
        ``last_trade_time``, ``oi``, ``total_buy_quantity``, ``total_sell_quantity``, ``timestamp``
        (exchange time, ms since the epoch) and ``depth`` (``{"buy": [{"price", "quantity",
        "orders"}, ...], "sell": [...]}``, up to 5 levels). The SDK's spellings (``avg_trade_price``,
        ``change_percent``, ``last_trade_quantity``, ``ltt``) are accepted too. Other keys are ignored.

        Raises ValueError (:class:`RecordError`) naming the field when the data cannot be recorded;
        nothing is written then.
        """
        if self._compiled is not None:
            seq = self._compiled(symbol, data)
            if seq:
                return seq
        try:
            body, depth = self._encode(symbol, data)
        except RecordError:
            self._writer.count_rejected()
            raise
        return self._writer.write(body, depth)

    def republish(self, tick: Tick) -> int:
        """Write a tick read from another ring (or carried by ``shmproxy bridge``) and return its sequence.

        Every field stays as it was, the exchange time to the nanosecond, except the publish time,
        which becomes now. Raises ValueError (:class:`RecordError`) when a name does not fit.
        """
        try:
            names = self._names.encode(tick.exchange, tick.symbol)
        except RecordError:
            self._writer.count_rejected()
            raise
        body = [time.time_ns(), tick.exchange_ns, tick.mode, *names, *tick.values]
        return self._writer.write(body, tick.depth_values)

    def _encode(self, symbol: str, data: Mapping[str, Any]) -> tuple[list, list | None]:
        """Fast path for well-formed ticks; anything doubtful goes to :meth:`_encode_checked`.

        ``_speedups.c`` does the same for LTP and Quote ticks: keep the two in step.
        """
        try:
            get = data.get
            names = self._names.get((get("exchange"), symbol))
            mode = _MODES.get(get("mode", "default"))
            stamp = get("timestamp")
            plain_stamp = stamp is None or type(stamp) is int and 0 <= stamp <= _MAX_TIMESTAMP_MS
            if names is None or mode is None or not plain_stamp:
                return self._encode_checked(symbol, data)
            if mode is _QUOTE_OR_DEPTH:
                mode = MODE_DEPTH if "depth" in data else MODE_QUOTE
            ltp = float(data["ltp"])
            close = float(get("close") or 0.0)
            high = float(get("high") or 0.0)
            low = float(get("low") or 0.0)
            opened = float(get("open") or 0.0)
            average = float(get("average_price") or get("avg_trade_price") or 0.0)
            change = float(get("percent_change") or get("change_percent") or 0.0)
            volume = int(get("volume") or 0)
            last_quantity = int(get("last_quantity") or get("last_trade_quantity") or 0)
            last_trade_time = int(get("last_trade_time") or get("ltt") or 0)
            oi = int(get("oi") or 0)
            buy_quantity = int(get("total_buy_quantity") or 0)
            sell_quantity = int(get("total_sell_quantity") or 0)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            return self._encode_checked(symbol, data)
        if ((ltp - ltp) + (close - close) + (high - high) + (low - low) + (opened - opened) + (average - average)
                + (change - change)) != 0.0:
            return self._encode_checked(symbol, data)  # x - x is NaN unless x is finite: name the bad field
        if not 0 <= volume | last_quantity | last_trade_time | oi | buy_quantity | sell_quantity <= _INT64_MAX:
            return self._encode_checked(symbol, data)  # negative or past 64 bits: check each
        if not change and close:
            change = (ltp - close) / close * 100.0
        body = [
            time.time_ns(), stamp * 1_000_000 if stamp else 0, mode, *names,
            ltp, opened, high, low, close, average, change,
            volume, last_quantity, last_trade_time, oi, buy_quantity, sell_quantity,
        ]
        return body, encode_depth(get("depth") or {}) if mode == MODE_DEPTH else None

    def _encode_checked(self, symbol: str, data: Mapping[str, Any]) -> tuple[list, list | None]:
        """Validate every field, naming the first bad one in a RecordError."""
        if not isinstance(data, Mapping):
            raise RecordError(f"data must be a dict of tick fields, not {type(data).__name__}")
        exchange, bare_symbol = split_symbol(symbol, data.get("exchange"))
        raw_mode = data.get("mode")
        mode = parse_mode(raw_mode) if raw_mode is not None else (MODE_DEPTH if "depth" in data else MODE_QUOTE)
        names = self._names.encode(exchange, bare_symbol)
        if isinstance(data.get("exchange"), (str, type(None))):  # the fast paths' key; never an unhashable one
            self._names.remember((data.get("exchange"), symbol), names)
        depth = encode_depth(data.get("depth") or {}) if mode == MODE_DEPTH else None
        body = [time.time_ns(), exchange_ns_of(data), mode, *names]
        body += encode_prices(data)
        body += encode_quantities(data)
        return body, depth

    def heartbeat(self) -> None:
        """Tell readers this publisher is alive while it has nothing to publish."""
        self._writer.heartbeat()

    def close(self) -> None:
        """Mark this writer closed and unmap the ring; the ring itself stays for its readers."""
        if self._segment.fd >= 0:
            self._writer.close()
            self._segment.close()

    def __enter__(self) -> SharedMemoryPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

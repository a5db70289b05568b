"""A synthetic market: believable ticks for demos, tests, load and mock brokers.

:class:`MockMarket` keeps a trading day's state per instrument and produces OpenAlgo-shaped tick
data, ready for :meth:`SharedMemoryPublisher.publish_market_data`::

    market = MockMarket(seed=7)                     # the built-in DEFAULT_SYMBOLS, mixed modes
    key, data = market.next_tick()                  # ("NSE:INFY", {"mode": 2, "ltp": 1561.35, ...})
    data = market.tick("NFO:NIFTY30DEC25FUT", 3)    # one trade of that instrument, as a Depth tick

Guarantees, for every instrument:

- prices sit on the 0.05 grid; ``low <= open, ltp <= high``; ``close`` is the previous day's close
  and ``percent_change`` is measured against it; ``average_price`` is the day's VWAP;
- ``volume`` and ``last_trade_time`` (epoch seconds, from ``clock``) never go down;
- a Depth tick's ladder has 5 levels a side, bids falling and asks rising, best bid < best ask,
  with the last trade price between them (inclusive);
- prices follow a random walk pulled gently back towards the day's open, so a long run stays in a
  believable band instead of drifting to zero.

Determinism: each instrument draws from its own generator seeded with ``(seed, "EXCH:SYMBOL")``,
so an instrument's ticks depend only on the seed and on how many ticks it has produced, never on
the other instruments or the order they were asked for. ``next_tick``'s choice of instrument (and
of mode, in "mixed") comes from a generator of its own. Same seed and same clock readings, same
ticks; with the wall clock only ``last_trade_time`` differs between runs.

Ticks carry no ``timestamp``: the publisher stamps each record when it writes it.
"""

from __future__ import annotations

import os
import random
import time
import zlib
from typing import Any, Callable, Iterable

from .records import MODE_DEPTH, MODE_LTP, MODE_QUOTE, NameCodec, parse_mode, split_symbol
from .errors import RecordError

TICK_SIZE = 0.05
_TICKS_PER_RUPEE = 20  # prices are kept as whole ticks; ticks / 20 is the exact nearest float
_LEVELS = 5

# (instrument, previous close, lot size). Liquid NSE equities, then a few index futures and
# options (NFO) and commodity futures (MCX). Prices are round figures of the right magnitude.
_DEFAULT_BOOK: tuple[tuple[str, float, int], ...] = (
    ("NSE:RELIANCE", 1545.0, 1), ("NSE:HDFCBANK", 1005.0, 1), ("NSE:ICICIBANK", 1390.0, 1),
    ("NSE:INFY", 1560.0, 1), ("NSE:TCS", 3150.0, 1), ("NSE:SBIN", 960.0, 1),
    ("NSE:BHARTIARTL", 2080.0, 1), ("NSE:ITC", 405.0, 1), ("NSE:LT", 4050.0, 1),
    ("NSE:KOTAKBANK", 2120.0, 1), ("NSE:AXISBANK", 1270.0, 1), ("NSE:HINDUNILVR", 2450.0, 1),
    ("NSE:BAJFINANCE", 1020.0, 1), ("NSE:MARUTI", 15800.0, 1), ("NSE:SUNPHARMA", 1790.0, 1),
    ("NSE:M&M", 3700.0, 1), ("NSE:TITAN", 3850.0, 1), ("NSE:ASIANPAINT", 2900.0, 1),
    ("NSE:ULTRACEMCO", 11800.0, 1), ("NSE:NTPC", 330.0, 1), ("NSE:POWERGRID", 270.0, 1),
    ("NSE:ONGC", 245.0, 1), ("NSE:TATASTEEL", 170.0, 1), ("NSE:JSWSTEEL", 1160.0, 1),
    ("NSE:ADANIENT", 2450.0, 1), ("NSE:ADANIPORTS", 1480.0, 1), ("NSE:COALINDIA", 380.0, 1),
    ("NSE:HCLTECH", 1620.0, 1), ("NSE:WIPRO", 245.0, 1), ("NSE:TECHM", 1500.0, 1),
    ("NSE:NESTLEIND", 1270.0, 1), ("NSE:BAJAJFINSV", 2050.0, 1), ("NSE:HDFCLIFE", 770.0, 1),
    ("NSE:SBILIFE", 2000.0, 1), ("NSE:GRASIM", 2800.0, 1), ("NSE:CIPLA", 1520.0, 1),
    ("NSE:DRREDDY", 1250.0, 1), ("NSE:EICHERMOT", 7000.0, 1), ("NSE:HEROMOTOCO", 6100.0, 1),
    ("NSE:BAJAJ-AUTO", 9000.0, 1), ("NSE:BRITANNIA", 6000.0, 1), ("NSE:APOLLOHOSP", 7600.0, 1),
    ("NSE:INDUSINDBK", 850.0, 1), ("NSE:TATACONSUM", 1170.0, 1), ("NSE:SHRIRAMFIN", 850.0, 1),
    ("NSE:TRENT", 4300.0, 1), ("NSE:BEL", 420.0, 1), ("NSE:HINDALCO", 840.0, 1),
    ("NSE:ETERNAL", 300.0, 1), ("NSE:IDEA", 11.0, 1),
    ("NFO:NIFTY30DEC25FUT", 26100.0, 75), ("NFO:BANKNIFTY30DEC25FUT", 59500.0, 35),
    ("NFO:NIFTY30DEC2526000CE", 260.0, 75), ("NFO:NIFTY30DEC2526000PE", 180.0, 75),
    ("MCX:CRUDEOIL19DEC25FUT", 5300.0, 1), ("MCX:GOLD05FEB26FUT", 128000.0, 1),
    ("MCX:SILVER05MAR26FUT", 170000.0, 1),
)

DEFAULT_SYMBOLS: tuple[str, ...] = tuple(key for key, _, _ in _DEFAULT_BOOK)
"""The built-in instrument list ("EXCH:SYMBOL"): 50 liquid NSE names plus NFO and MCX contracts."""

MARKET_MODES = ("ltp", "quote", "depth", "mixed")
_MIXED = (MODE_LTP,) * 9 + (MODE_QUOTE,) * 7 + (MODE_DEPTH,) * 4  # 45% LTP, 35% Quote, 20% Depth
_DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "MCX", "CDS", "BCD", "NCDEX"})

# Shared lookup tables (fixed, so every run agrees): standard normal draws for price steps, and a
# skewed distribution of trade sizes in lots (mostly small, now and then a block).
_table_rng = random.Random(0)
_NORMAL = tuple(_table_rng.gauss(0.0, 1.0) for _ in range(4096))
_TRADE_LOTS = tuple(1 + int(_table_rng.expovariate(1 / 40)) if _table_rng.random() < 0.9 else
                    200 + int(_table_rng.expovariate(1 / 800)) for _ in range(1024))
del _table_rng

_MIN_PRICE = 20  # Rs 1 in ticks: the floor of every price, leaving room for the depth ladder
_VOLATILITY = 0.00012  # one trade's price move, as a fraction of the price (standard deviation)
_REVERSION = 0.002     # pull back towards the open per trade, as a fraction of the distance


class Instrument:
    """One instrument's trading day: last price, the day's range, volume and order book size.

    Use through :class:`MockMarket`; :meth:`trade` advances it by one trade and :meth:`data`
    renders the current state as tick data at a mode.
    """

    __slots__ = (
        "key", "exchange", "symbol", "lot", "derivative", "_rng", "_clock", "close", "open_", "ltp",
        "high", "low", "volume", "turnover", "last_quantity", "last_trade_time", "oi", "buy_quantity",
        "sell_quantity", "_sigma",
    )

    def __init__(self, key: str, close: float, lot: int, seed: int, clock: Callable[[], float]) -> None:
        self.key = key
        self.exchange, self.symbol = key.split(":", 1)
        self.lot = lot
        self.derivative = self.exchange in _DERIVATIVE_EXCHANGES
        self._rng = random.Random(f"{seed}:{key}")  # str seeds hash with SHA-512: stable across runs
        self._clock = clock
        rng = self._rng
        self.close = max(_MIN_PRICE, round(close * _TICKS_PER_RUPEE))  # in ticks, like every price here
        self.open_ = max(_MIN_PRICE, round(self.close * (1 + rng.uniform(-0.01, 0.01))))
        self.ltp = self.high = self.low = self.open_
        self._sigma = max(1.0, self.close * _VOLATILITY)
        self.volume = 0
        self.turnover = 0.0
        self.last_quantity = 0
        self.last_trade_time = 0
        self.oi = lot * rng.randrange(1_000, 100_000) if self.derivative else 0
        self.buy_quantity = lot * rng.randrange(10_000, 500_000)
        self.sell_quantity = lot * rng.randrange(10_000, 500_000)

    def trade(self) -> None:
        """Advance by one trade: move the price, extend the day's range, add the trade's volume."""
        bits = self._rng.getrandbits(32)  # one draw: 12 bits price step, 10 trade size, 10 book drift
        ltp = self.ltp
        ltp += round(_NORMAL[bits & 0xFFF] * self._sigma - (ltp - self.open_) * _REVERSION)
        if ltp < _MIN_PRICE:
            ltp = _MIN_PRICE
        self.ltp = ltp
        if ltp > self.high:
            self.high = ltp
        elif ltp < self.low:
            self.low = ltp
        lot = self.lot
        quantity = lot * _TRADE_LOTS[bits >> 12 & 0x3FF]
        self.last_quantity = quantity
        self.volume += quantity
        self.turnover += quantity * ltp
        now = int(self._clock())
        if now > self.last_trade_time:
            self.last_trade_time = now
        drift = (bits >> 22) - 512  # the resting book and open interest wander too, in lots
        self.buy_quantity = max(lot, self.buy_quantity + drift * lot)
        self.sell_quantity = max(lot, self.sell_quantity - drift * lot)
        if self.derivative:
            self.oi = max(0, self.oi + (drift >> 6) * lot)

    def data(self, mode: int) -> dict[str, Any]:
        """The current state as ``publish_market_data`` data at ``mode`` (a new dict every call)."""
        ltp = self.ltp / _TICKS_PER_RUPEE
        if mode == MODE_LTP:
            return {"mode": MODE_LTP, "ltp": ltp, "last_trade_time": self.last_trade_time}
        close = self.close / _TICKS_PER_RUPEE
        average = self.turnover / self.volume if self.volume else self.ltp  # VWAP; the open before any trade
        data = {
            "mode": mode, "ltp": ltp, "open": self.open_ / _TICKS_PER_RUPEE,
            "high": self.high / _TICKS_PER_RUPEE, "low": self.low / _TICKS_PER_RUPEE, "close": close,
            "volume": self.volume, "average_price": round(average / _TICKS_PER_RUPEE, 2),
            "percent_change": round((ltp - close) / close * 100.0, 2), "last_quantity": self.last_quantity,
            "last_trade_time": self.last_trade_time, "oi": self.oi,
            "total_buy_quantity": self.buy_quantity, "total_sell_quantity": self.sell_quantity,
        }
        if mode == MODE_DEPTH:
            data["depth"] = self._depth()
        return data

    def _depth(self) -> dict[str, list[dict[str, Any]]]:
        """A 5-level ladder around the last price: best bid < best ask, ltp between them."""
        rng = self._rng
        shape = rng.getrandbits(2)
        spread = 1 + (shape & 1)
        bid = self.ltp - (shape >> 1) * spread  # the last trade hit the bid or lifted the ask
        sizes = rng.getrandbits(8 * 2 * _LEVELS).to_bytes(2 * _LEVELS, "little")  # a byte per level
        lot = self.lot
        levels = [
            {"price": price / _TICKS_PER_RUPEE, "quantity": lot * (1 + (size & 0x1F)) * (1 + (size >> 5)) * 5,
             "orders": 1 + (size & 0x1F)}
            for price, size in zip(_ladder(bid, bid + spread), sizes)
        ]
        return {"buy": levels[:_LEVELS], "sell": levels[_LEVELS:]}


def _ladder(best_bid: int, best_ask: int) -> list[int]:
    """Prices (in ticks) of 5 bid levels falling from ``best_bid``, then 5 asks rising from ``best_ask``."""
    return [best_bid - i for i in range(_LEVELS)] + [best_ask + i for i in range(_LEVELS)]


class MockMarket:
    """A deterministic synthetic market over a list of instruments.

    ``symbols``: "EXCH:SYMBOL" keys (default :data:`DEFAULT_SYMBOLS`); ``seed``: any int (default:
    a random one, readable as ``market.seed`` so a run can be repeated); ``mode``: "ltp", "quote",
    "depth" or "mixed" (45% LTP, 35% Quote, 20% Depth), the modes :meth:`next_tick` produces;
    ``clock``: seconds since the epoch, for ``last_trade_time`` (default ``time.time``).

    Raises ValueError (:class:`RecordError`) for a key without an exchange or a name too long for a
    ring record, and ValueError for an unknown mode or an empty symbol list.
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        seed: int | None = None,
        mode: str = "mixed",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MARKET_MODES:
            raise ValueError(f"mode={mode!r} is not a market mode: use one of {', '.join(MARKET_MODES)}")
        self.seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
        self.mode = mode
        self._clock = clock
        self._names = NameCodec()
        self._instruments: dict[str, Instrument] = {}
        keys = DEFAULT_SYMBOLS if symbols is None else tuple(dict.fromkeys(symbols))
        if not keys:
            raise ValueError("the market needs at least one symbol")
        self._listed = [self.instrument(key) for key in keys]
        self._rng = random.Random(f"{self.seed}:market")
        self._modes = _MIXED if mode == "mixed" else (parse_mode(mode),)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The instruments :meth:`next_tick` chooses from."""
        return tuple(i.key for i in self._listed)

    def next_tick(self) -> tuple[str, dict[str, Any]]:
        """One trade of a randomly chosen listed instrument: ``("EXCH:SYMBOL", data)``."""
        rng = self._rng
        instrument = self._listed[int(rng.random() * len(self._listed))]
        modes = self._modes
        mode = modes[int(rng.random() * len(modes))] if len(modes) > 1 else modes[0]
        instrument.trade()
        return instrument.key, instrument.data(mode)

    def tick(self, symbol: str, mode: int | str = MODE_QUOTE) -> dict[str, Any]:
        """One trade of ``symbol`` ("EXCH:SYMBOL", listed or not), as tick data at ``mode``.

        ``mode`` is 1/2/3 or "LTP"/"Quote"/"Depth". An instrument not seen before joins the market
        with a believable price derived from its name (the same for every seed).
        """
        mode = parse_mode(mode)
        instrument = self.instrument(symbol)
        instrument.trade()
        return instrument.data(mode)

    def instrument(self, symbol: str) -> Instrument:
        """The state of ``symbol`` ("EXCH:SYMBOL"), created on first use."""
        found = self._instruments.get(symbol)
        if found is None:
            found = self._instruments[symbol] = self._new_instrument(symbol)
        return found

    def _new_instrument(self, key: str) -> Instrument:
        if not isinstance(key, str) or ":" not in key:
            raise RecordError(f"symbol {key!r} needs its exchange: write it as EXCHANGE:SYMBOL, e.g. NSE:INFY")
        exchange, symbol = split_symbol(key, None)
        self._names.encode(exchange, symbol)  # the ring's limits: refuse names no record can hold
        close, lot = _BOOK.get(key) or (_price_for(key), 1)
        return Instrument(key, close, lot, self.seed, self._clock)


_BOOK = {key: (close, lot) for key, close, lot in _DEFAULT_BOOK}


def _price_for(key: str) -> float:
    """A stable price between Rs 50 and Rs 5,000 for an instrument the book does not know."""
    fraction = zlib.crc32(key.encode()) / 0xFFFFFFFF
    return round(50 * 100 ** fraction, 2)

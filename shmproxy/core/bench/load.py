"""The benchmark's ticks and how they are published: the same dict for every transport.

Every benchmark publishes the same OpenAlgo Quote dict, whether into the ring
(``publish_market_data``) or onto ZeroMQ (serialised as upstream does). Two of its own fields carry
the measurement, so no transport gets an extra key to carry: ``volume`` is the tick's sequence in
the run (from 1; 0 marks a warm-up tick) and ``last_trade_time`` is the time it was handed to the
transport, in ns since the epoch (one clock for every process on the machine).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from ..pacing import sleep_until

Publish = Callable[[str, Mapping[str, Any]], object]
"""``publish(symbol, data)``: hand one tick to a transport."""

QUOTE = {
    "exchange": "NSE", "mode": 2, "ltp": 2950.5, "open": 2900.0, "high": 2960.0, "low": 2890.0, "close": 2910.0,
    "volume": 1234567, "average_price": 2940.1, "percent_change": 1.39, "last_quantity": 5,
    "last_trade_time": 1732601234,
}


def publish_for(publish: Publish, symbols: Sequence[str], seconds: float, rate: float | None = None) -> int:
    """Publish stamped ticks round-robin over ``symbols`` for ``seconds``; return how many.

    At ``rate`` ticks/s each tick is due at its own time (evenly spaced, never in bursts, so
    latency is not inflated by queueing behind its own batch); with ``rate`` None, flat out.
    """
    data = dict(QUOTE)
    interval = 1.0 / rate if rate else 0.0
    count = 0
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        if interval:
            sleep_until(started + count * interval)
        count += 1
        data["volume"] = count
        data["last_trade_time"] = time.time_ns()
        publish(symbols[count % len(symbols)], data)
    return count


def warm_up(publish: Publish, symbol: str) -> None:
    """Publish one warm-up tick (sequence 0), which readers use to know they are connected."""
    publish(symbol, {**QUOTE, "volume": 0, "last_trade_time": time.time_ns()})



"""Ring benchmarks: publish rate, publish + consume across processes, hop latency, parked readers.

Each function runs real processes on a private ring, removes the ring afterwards and returns plain
numbers (a dict), so callers can print a table or JSON.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from ..publisher import SharedMemoryPublisher
from ..segment import remove_segment
from ..subscriber import SharedMemorySubscriber
from .stats import latency_summary_us

QUOTE = {
    "exchange": "NSE", "mode": 2, "ltp": 2950.5, "open": 2900.0, "high": 2960.0, "low": 2890.0, "close": 2910.0,
    "volume": 1234567, "average_price": 2940.1, "percent_change": 1.39, "last_quantity": 5,
    "last_trade_time": 1732601234,
}
_CTX = mp.get_context("fork")


@contextmanager
def private_ring(size: int = 64 << 20) -> Iterator[str]:
    """A ring under a fresh name, removed when done."""
    name = f"shmproxy_bench_{uuid.uuid4().hex[:10]}"
    SharedMemoryPublisher(buffer_name=name, buffer_size=size).close()
    try:
        yield name
    finally:
        remove_segment(name)


def publish_rate(count: int = 300_000) -> dict[str, float]:
    """``publish_market_data`` calls per second with Quote ticks, one process, nobody reading."""
    with private_ring() as name, SharedMemoryPublisher(buffer_name=name) as pub:
        publish = pub.publish_market_data
        symbols = [f"SYM{i}" for i in range(50)]
        started = time.perf_counter()
        for i in range(count):
            publish(symbols[i % 50], QUOTE)
        elapsed = time.perf_counter() - started
    return {"records": count, "seconds": elapsed, "per_second": count / elapsed}


def _count_reader(name: str, total: int, ready, results) -> None:
    with SharedMemorySubscriber(name) as sub:
        ready.put(True)
        deadline = time.monotonic() + 120
        while sub.cursor <= total and time.monotonic() < deadline:
            sub.wait(timeout=0.5)
        results.put((sub.delivered, sub.lost, time.perf_counter()))


def publish_and_consume(readers: int, count: int = 300_000) -> dict[str, float]:
    """One writer at full speed, ``readers`` reader processes following it: rate and losses."""
    with private_ring() as name:
        ready, results = _CTX.Queue(), _CTX.Queue()
        procs = [_CTX.Process(target=_count_reader, args=(name, count, ready, results)) for _ in range(readers)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=30)
        with SharedMemoryPublisher(buffer_name=name) as pub:
            started = time.perf_counter()
            for i in range(count):
                pub.publish_market_data("RELIANCE", QUOTE)
            published = time.perf_counter()
        outcomes = [results.get(timeout=150) for _ in procs]
        for p in procs:
            p.join(10)
    finished = max(o[2] for o in outcomes)
    return {
        "readers": readers,
        "records": count,
        "publish_per_second": count / (published - started),
        "consume_per_second": count / (finished - started),
        "delivered_min": min(o[0] for o in outcomes),
        "lost_max": max(o[1] for o in outcomes),
    }


def _latency_reader(name: str, total: int, spin: bool, ready, results) -> None:
    samples: list[int] = []
    with SharedMemorySubscriber(name) as sub:
        ready.put(True)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall_before = time.monotonic()
        deadline = wall_before + 120
        while sub.cursor <= total and time.monotonic() < deadline:
            ticks = sub.poll() if spin else sub.wait(timeout=0.5)
            now = time.time_ns()
            samples.extend(now - t.publish_ns for t in ticks)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - wall_before
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    results.put((samples, cpu / wall if wall else 0.0, sub.lost))


def _paced_publish(name: str, count: int, rate: float) -> None:
    with SharedMemoryPublisher(buffer_name=name) as pub:
        interval = 1.0 / rate
        due = time.perf_counter()
        for _ in range(count):
            due += interval
            while (gap := due - time.perf_counter()) > 0:
                if gap > 0.002:
                    time.sleep(gap - 0.001)  # sleep through long gaps, spin the last stretch
            pub.publish_market_data("RELIANCE", QUOTE)


def hop_latency(rate: float = 20_000, seconds: float = 3.0, spin: bool = True) -> dict[str, float]:
    """Publish-to-read latency at a paced rate, with a reader that spins (``spin``) or parks."""
    count = max(1, int(rate * seconds))
    with private_ring() as name:
        ready, results = _CTX.Queue(), _CTX.Queue()
        reader = _CTX.Process(target=_latency_reader, args=(name, count, spin, ready, results))
        reader.start()
        ready.get(timeout=30)
        _paced_publish(name, count, rate)
        samples, cpu, lost = results.get(timeout=150)
        reader.join(10)
    return {"rate": rate, **latency_summary_us(samples), "reader_cpu": cpu, "lost": lost}


def parked_reader(seconds: float = 3.0, wakeups: int = 60) -> dict[str, float]:
    """An idle reader parked in ``wait()``: its CPU use, and how fast it wakes for a sparse tick."""
    return {**hop_latency(rate=wakeups / seconds, seconds=seconds, spin=False), **_idle_cpu(seconds)}


def _idle_reader(name: str, seconds: float, results) -> None:
    with SharedMemorySubscriber(name) as sub:
        before = os.times()
        sub.wait(timeout=seconds)
        after = os.times()
    results.put((after.user + after.system) - (before.user + before.system))


def _idle_cpu(seconds: float) -> dict[str, float]:
    with private_ring() as name:
        results = _CTX.Queue()
        reader = _CTX.Process(target=_idle_reader, args=(name, seconds, results))
        reader.start()
        cpu = results.get(timeout=seconds + 30)
        reader.join(10)
    return {"idle_cpu_percent": 100.0 * cpu / seconds}

"""The hop benchmark on any transport: one publishing process, reader processes on the other side.

A transport (the shared-memory ring in ring.py, ZeroMQ PUB/SUB in zmq_baseline.py) supplies a
``publish`` callable for this process and a ``receive`` callable for each reader process; the
functions here run the same measurements on any of them and return plain numbers (dicts):
publish rate, delivered throughput with N readers, latency at a paced rate, an idle reader's CPU.

Readers are started first and wait for a warm-up tick before the measurement starts, so a
transport that connects asynchronously (ZeroMQ's "slow joiner") loses nothing to its set-up.
"""

from __future__ import annotations

import resource
import time
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Callable, Protocol

from . import children
from .load import QUOTE, Publish, publish_for, warm_up
from .stats import latency_summary_us

Receive = Callable[[float], list[tuple[int, int]]]
"""``receive(timeout)``: wait up to ``timeout`` s (0: only look) and return the ticks that arrived,
as (sequence, publish time in ns) pairs."""


class Transport(Protocol):
    name: str

    def publisher(self) -> AbstractContextManager[Publish]: ...

    def subscriber(self) -> AbstractContextManager[Receive]: ...


_SYMBOL = "RELIANCE"
_WARM_UP_EVERY_S = 0.005
_QUIET_S = 0.5  # after publishing ended, this long without a tick means the rest was lost
_SLACK_S = 60.0  # every wait for a child is bounded by the run's length plus this


def publish_rate(transport: Transport, seconds: float) -> dict[str, float]:
    """``publish`` calls per second with the Quote tick over 50 symbols, nobody reading."""
    batch = [f"SYM{i}" for i in range(50)] * 20
    calls = 0
    with transport.publisher() as publish:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            for symbol in batch:
                publish(symbol, QUOTE)
            calls += len(batch)
        elapsed = time.perf_counter() - started
    return {"calls": calls, "seconds": elapsed, "per_second": calls / elapsed}


def throughput(transport: Transport, readers: int, seconds: float) -> dict[str, float]:
    """One publisher flat out for ``seconds``, ``readers`` reader processes: what each gets, per second.

    ``per_second`` is the slowest reader's delivered ticks over the time from the first publish to
    its last delivery; ticks a reader never got (lapped on the ring, dropped at ZeroMQ's high-water
    mark) are ``lost``.
    """
    published, started, outcomes = _with_readers(transport, readers, _count, lambda p: publish_for(p, [_SYMBOL], seconds),
                                                 seconds)
    rates = [delivered / max(1e-9, finished - started) for delivered, finished in outcomes]
    return {
        "readers": readers, "published": published, "publish_per_second": published / seconds,
        "per_second": min(rates), "delivered_min": min(o[0] for o in outcomes),
        "lost_max": published - min(o[0] for o in outcomes),
    }


def latency(transport: Transport, rate: float, seconds: float, spin: bool = False) -> dict[str, Any]:
    """Publish-to-read latency at ``rate`` ticks/s, the reader blocking in ``receive`` (or polling: ``spin``)."""
    job = _latencies_polling if spin else _latencies_blocking
    published, _, ((samples, cpu),) = _with_readers(transport, 1, job, lambda p: publish_for(p, [_SYMBOL], seconds, rate),
                                                    seconds)
    return {"rate": rate, "published": published, **latency_summary_us(samples), "lost": published - len(samples),
            "reader_cpu_percent": 100.0 * cpu}


def idle_cpu(transport: Transport, seconds: float) -> dict[str, float]:
    """CPU use of a reader blocked in ``receive`` for ``seconds`` with nothing published."""
    _, _, (cpu,) = _with_readers(transport, 1, partial(_idle, seconds), lambda _: 0, seconds)
    return {"seconds": seconds, "cpu_percent": 100.0 * cpu}


def _with_readers(transport: Transport, readers: int, job: Callable, load: Callable[[Publish], int],
                  seconds: float) -> tuple[int, float, list]:
    """Start ``readers`` processes running ``job``, warm up, run ``load``: its count, its start, their results.

    Results are collected before the publisher closes: closing a ZeroMQ socket drops what it still holds.
    """
    ready, results = children.CTX.Queue(), children.CTX.Queue()
    total = children.CTX.Value("q", 0, lock=False)  # the last sequence, once publishing has ended
    limit = seconds + _SLACK_S
    procs = [children.start(_reader, transport, job, total, limit, ready, results) for _ in range(readers)]
    try:
        with transport.publisher() as publish:
            _warm_up(publish, ready, readers, limit)
            started = time.perf_counter()
            total.value = load(publish)
            return total.value, started, [results.get(timeout=limit) for _ in procs]
    finally:
        children.stop(procs)


def _warm_up(publish: Publish, ready: Any, readers: int, limit: float) -> None:
    """Publish warm-up ticks until every reader has received one."""
    deadline = time.monotonic() + limit
    waiting = readers
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} benchmark reader(s) never received a tick")
        warm_up(publish, _SYMBOL)
        while waiting and not ready.empty():
            ready.get()
            waiting -= 1
        time.sleep(_WARM_UP_EVERY_S)


def _reader(transport: Transport, job: Callable, total: Any, limit: float, ready: Any, results: Any) -> None:
    deadline = time.monotonic() + limit
    with transport.subscriber() as receive:
        while not receive(0.1) and time.monotonic() < deadline:
            pass
        ready.put(True)
        results.put(job(receive, total, deadline))


def _follow(receive: Receive, total: Any, deadline: float, timeout: float):
    """Batches of measured ticks (warm-up ticks left out) until the last one, or a quiet spell after it was due."""
    last_arrival = time.monotonic()
    while True:
        batch = receive(timeout)
        now, end = time.monotonic(), total.value
        if batch:
            last_arrival = now
            yield [tick for tick in batch if tick[0]]
            if end and batch[-1][0] >= end:
                return
        elif end and now - last_arrival > _QUIET_S:
            return
        if now > deadline:
            return


def _count(receive: Receive, total: Any, deadline: float) -> tuple[int, float]:
    delivered, finished = 0, time.perf_counter()
    for batch in _follow(receive, total, deadline, 0.1):
        delivered += len(batch)
        finished = time.perf_counter()
    return delivered, finished


def _latencies(receive: Receive, total: Any, deadline: float, timeout: float) -> tuple[list[int], float]:
    """Publish-to-receive times in ns, and the reader's CPU use as a fraction of the elapsed time."""
    samples: list[int] = []
    cpu, wall = _cpu_seconds(), time.monotonic()
    for batch in _follow(receive, total, deadline, timeout):
        now = time.time_ns()
        samples.extend(now - sent for _, sent in batch)
    return samples, (_cpu_seconds() - cpu) / max(1e-9, time.monotonic() - wall)


def _latencies_blocking(receive: Receive, total: Any, deadline: float) -> tuple[list[int], float]:
    return _latencies(receive, total, deadline, 0.1)


def _latencies_polling(receive: Receive, total: Any, deadline: float) -> tuple[list[int], float]:
    return _latencies(receive, total, deadline, 0.0)


def _idle(seconds: float, receive: Receive, total: Any, deadline: float) -> float:
    """CPU use, as a fraction of the time, while blocked in ``receive`` for ``seconds`` (nothing is published)."""
    time.sleep(_WARM_UP_EVERY_S * 4)  # let the warm-up ticks still in flight arrive, then drain them
    receive(0)
    cpu, started = _cpu_seconds(), time.monotonic()
    while (left := started + seconds - time.monotonic()) > 0:
        receive(left)
    return (_cpu_seconds() - cpu) / (time.monotonic() - started)


def _cpu_seconds() -> float:
    """This process's CPU time, all threads (ZeroMQ's I/O thread included), in microsecond resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

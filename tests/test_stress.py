"""Stress: 2 writer processes and 3 reader processes on one ring, every record checksummed.

For every reader: no corrupt record, each writer's records in order, and delivered + lost ==
published. Run once with a ring large enough that readers mostly keep up, and once with a tiny
ring so that they are lapped over and over. One writer and two readers use the compiled paths, the
others the Python paths, so both kinds share the ring as they would in production.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import zlib

import pytest

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core import layout
from shmproxy.core.speedups import PURE_PYTHON_ENV

WRITERS, READERS = 2, 3
DEADLINE_S = 240


def _checksum(symbol: str, ltp: float, volume: int, writer: int, mode: int, depth_qty: int) -> int:
    return zlib.crc32(f"{symbol}|{ltp!r}|{volume}|{writer}|{mode}|{depth_qty}".encode())


def _writer(name: str, writer: int, count: int, start: mp.Event) -> None:
    if writer == 1:
        os.environ[PURE_PYTHON_ENV] = "1"  # writer 0 on the compiled path (where built), writer 1 on Python's
    start.wait()
    with SharedMemoryPublisher(buffer_name=name) as pub:
        for n in range(count):
            symbol = f"W{writer}S{n % 50}"
            ltp = 100.0 + n * 0.05
            mode = 3 if n % 7 == 0 else 2
            depth_qty = n % 1000
            data = {
                "exchange": "NSE", "mode": mode, "ltp": ltp, "volume": n, "last_quantity": writer,
                "oi": _checksum(symbol, ltp, n, writer, mode, depth_qty),
            }
            if mode == 3:
                data["depth"] = {"buy": [{"price": ltp, "quantity": depth_qty, "orders": 1}] * 5,
                                 "sell": [{"price": ltp + 0.05, "quantity": depth_qty, "orders": 1}] * 5}
            pub.publish_market_data(symbol, data)


def _reader(name: str, reader: int, total: int, ready: mp.Queue, results: mp.Queue) -> None:
    if reader == 0:
        os.environ[PURE_PYTHON_ENV] = "1"  # reader 0 on the Python path, the others compiled (where built)
    corrupt = 0
    out_of_order = 0
    last = {w: -1 for w in range(WRITERS)}
    with SharedMemorySubscriber(name, start="oldest") as sub:
        ready.put(True)
        deadline = time.monotonic() + DEADLINE_S
        while sub.cursor <= total and time.monotonic() < deadline:
            for t in sub.wait(timeout=1.0):
                depth = t.depth
                depth_qty = depth["buy"][0]["quantity"] if depth else t.volume % 1000
                ok = (
                    t.oi == _checksum(t.symbol, t.ltp, t.volume, t.last_quantity, t.mode, depth_qty)
                    and t.symbol == f"W{t.last_quantity}S{t.volume % 50}"
                    and (depth is None or all(l["quantity"] == depth_qty for l in depth["buy"] + depth["sell"]))
                )
                if not ok:
                    corrupt += 1
                    continue
                if t.volume <= last[t.last_quantity]:
                    out_of_order += 1
                last[t.last_quantity] = t.volume
        results.put((sub.delivered, sub.lost, corrupt, out_of_order, sub.cursor))


@pytest.mark.parametrize(("per_writer", "size"), [(500_000, 64 << 20), (100_000, layout.MIN_SEGMENT_SIZE)])
def test_two_writers_three_readers(ring_name: str, per_writer: int, size: int) -> None:
    ctx = mp.get_context("fork")
    SharedMemoryPublisher(buffer_name=ring_name, buffer_size=size).close()
    total = WRITERS * per_writer
    start, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(ring_name, r, total, ready, results)) for r in range(READERS)]
    writers = [ctx.Process(target=_writer, args=(ring_name, w, per_writer, start)) for w in range(WRITERS)]
    for p in readers + writers:
        p.start()
    for _ in readers:
        ready.get(timeout=30)
    start.set()
    outcomes = [results.get(timeout=DEADLINE_S + 30) for _ in readers]
    for p in readers + writers:
        p.join(30)
        assert p.exitcode == 0
    with SharedMemorySubscriber(ring_name) as sub:
        assert sub.segment.write_seq() == total
    for delivered, lost, corrupt, out_of_order, cursor in outcomes:
        assert corrupt == 0 and out_of_order == 0
        assert cursor == total + 1
        assert delivered + lost == total
        assert delivered > 0
    if size == layout.MIN_SEGMENT_SIZE:
        assert any(lost > 0 for _, lost, *_ in outcomes)  # the small ring really lapped its readers

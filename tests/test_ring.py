"""The ring as a broadcast log: round trips, independent readers, lapping, waiting."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time

import pytest

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber, Tick
from shmproxy.core import layout
from shmproxy.core.segment import read_info, remove_segment

from conftest import run_python, wait_for

pytestmark = pytest.mark.usefixtures("both_paths")  # each test on the compiled and the Python paths

QUOTE = {
    "exchange": "NSE", "mode": 2, "ltp": 2950.5, "open": 2900.0, "high": 2960.0, "low": 2890.0,
    "close": 2910.0, "volume": 123456, "average_price": 2940.1, "percent_change": 1.39,
    "last_quantity": 5, "last_trade_time": 1732601234, "oi": 7,
}
DEPTH = {
    **QUOTE, "mode": "Depth", "total_buy_quantity": 1500, "total_sell_quantity": 1700,
    "depth": {
        "buy": [{"price": 2950.0 - i * 0.05, "quantity": 10 + i, "orders": 1 + i} for i in range(5)],
        "sell": [{"price": 2950.55 + i * 0.05, "quantity": 20 + i, "orders": 2 + i} for i in range(5)],
    },
}


def test_round_trip_keeps_every_field(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name, start="oldest") as sub:
        seq = pub.publish_market_data("RELIANCE", DEPTH)
        (tick,) = sub.poll()
    assert tick.seq == seq == 1
    assert (tick.exchange, tick.symbol, tick.mode) == ("NSE", "RELIANCE", 3)
    data = tick.to_dict()
    for field in ("ltp", "open", "high", "low", "close", "volume", "average_price", "percent_change",
                  "last_quantity", "last_trade_time", "oi", "total_buy_quantity", "total_sell_quantity"):
        assert data[field] == DEPTH[field], field
    assert data["depth"] == DEPTH["depth"]
    assert abs(tick.publish_ns - time.time_ns()) < 60e9


def test_to_dict_follows_the_mode_hierarchy(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name, start="oldest") as sub:
        pub.publish_market_data("NSE:RELIANCE", DEPTH)
        (tick,) = sub.poll()
    ltp = tick.to_dict(1)
    assert set(ltp) == {"ltp", "timestamp", "ltt"}
    quote = tick.to_dict(2)
    assert "depth" not in quote and "total_buy_quantity" not in quote
    # both the server's and the SDK's spellings
    assert quote["last_trade_quantity"] == quote["last_quantity"] == 5
    assert quote["avg_trade_price"] == quote["average_price"]
    assert quote["change_percent"] == quote["percent_change"]
    assert quote["change"] == pytest.approx(2950.5 - 2910.0)
    depth = tick.to_dict(3)
    assert len(depth["depth"]["buy"]) == len(depth["depth"]["sell"]) == 5
    assert depth["depth"]["buy"][0] == {"price": 2950.0, "quantity": 10, "orders": 1}


def test_lower_mode_tick_never_claims_depth(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name, start="oldest") as sub:
        pub.publish_market_data("NSE:INFY", {"mode": "ltp", "ltp": 1500.0, "timestamp": 1732601234567})
        (tick,) = sub.poll()
    assert tick.mode == 1 and tick.depth is None
    assert tick.to_dict(3) == {"ltp": 1500.0, "timestamp": 1732601234567}


def test_two_readers_each_receive_every_record(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        first = SharedMemorySubscriber(ring_name)
        second = SharedMemorySubscriber(ring_name)
        for i in range(100):
            pub.publish_market_data("NSE:RELIANCE", {**QUOTE, "volume": i})
        a = [t.volume for t in first.poll()]
        b = [t.volume for t in second.poll()]
        assert a == b == list(range(100))
        assert first.poll() == [] and second.poll() == []
        first.close()
        second.close()


def test_a_reader_starting_late_sees_only_new_records(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        pub.publish_market_data("NSE:A", QUOTE)
        with SharedMemorySubscriber(ring_name) as latest, SharedMemorySubscriber(ring_name, start="oldest") as oldest:
            pub.publish_market_data("NSE:B", QUOTE)
            assert [t.symbol for t in latest.poll()] == ["B"]
            assert [t.symbol for t in oldest.poll()] == ["A", "B"]


def test_a_lapped_reader_counts_exactly_what_it_lost(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=layout.MIN_SEGMENT_SIZE) as pub:
        capacity = pub.segment.capacity
        with SharedMemorySubscriber(ring_name) as sub:
            total = capacity * 3 + 5
            for i in range(total):
                pub.publish_market_data("NSE:X", {**QUOTE, "volume": i})
            ticks = sub.poll()
            assert sub.lost + len(ticks) == total
            assert sub.lost == total - capacity
            # what it got is the newest records, in order
            assert [t.volume for t in ticks] == list(range(total - capacity, total))
            pub.publish_market_data("NSE:X", {**QUOTE, "volume": total})
            assert [t.volume for t in sub.poll()] == [total]


def test_limit_bounds_one_poll(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        for _ in range(10):
            pub.publish_market_data("NSE:X", QUOTE)
        assert len(sub.poll(limit=4)) == 4
        assert len(sub.poll()) == 6


def test_wait_times_out_then_wakes_for_another_process(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name), SharedMemorySubscriber(ring_name) as sub:
        started = time.monotonic()
        assert sub.wait(timeout=0.05) == []
        assert time.monotonic() - started >= 0.05
        code = (
            "import sys, time; from shmproxy import SharedMemoryPublisher\n"
            "time.sleep(0.2)\n"
            "with SharedMemoryPublisher(buffer_name=sys.argv[1]) as p:\n"
            "    p.publish_market_data('NSE:LATE', {'ltp': 1.0})\n"
        )
        done = threading.Thread(target=run_python, args=(code, ring_name))
        done.start()
        ticks = sub.wait(timeout=20)
        done.join()
    assert [t.symbol for t in ticks] == ["LATE"]


def test_async_iteration(ring_name: str) -> None:
    async def consume() -> list[Tick]:
        got = []
        with SharedMemorySubscriber(ring_name) as sub:
            async def produce() -> None:
                await asyncio.sleep(0.05)
                for i in range(3):
                    pub.publish_market_data("NSE:A", {"ltp": float(i)})

            task = asyncio.ensure_future(produce())
            async for tick in sub:
                got.append(tick)
                if len(got) == 3:
                    break
            await task
            assert await sub.wait_async(timeout=0.01) == []
        return got

    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        ticks = asyncio.run(asyncio.wait_for(consume(), 20))
    assert [t.ltp for t in ticks] == [0.0, 1.0, 2.0]


def _wait_threads() -> int:
    return sum(t.name == "shmproxy-ring-wait" for t in threading.enumerate())


def test_a_cancelled_async_wait_loses_nothing_and_delays_no_later_wait(ring_name: str) -> None:
    async def scenario(pub: SharedMemoryPublisher) -> tuple[float, list[Tick]]:
        with SharedMemorySubscriber(ring_name) as sub:
            waiting = asyncio.ensure_future(sub.wait_async(timeout=10))
            await asyncio.sleep(0.01)  # now parked in its thread, for 250 ms from its start
            waiting.cancel()
            started = time.monotonic()
            assert await sub.wait_async(timeout=0.02) == []  # not queued behind the cancelled wait
            waited = time.monotonic() - started
            pub.publish_market_data("NSE:A", {"ltp": 1.0})
            return waited, await sub.wait_async(timeout=10)

    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        waited, ticks = asyncio.run(asyncio.wait_for(scenario(pub), 20))
    assert waited < 0.15 and [t.ltp for t in ticks] == [1.0]  # queued behind the stale park: about 0.24 s


def test_the_wait_thread_ends_with_its_subscriber_closed_or_dropped(ring_name: str) -> None:
    async def follow(sub: SharedMemorySubscriber) -> None:
        assert await sub.wait_async(timeout=0.01) == []

    SharedMemoryPublisher(buffer_name=ring_name).close()
    before = _wait_threads()
    closed = SharedMemorySubscriber(ring_name)
    dropped = SharedMemorySubscriber(ring_name)
    asyncio.run(follow(closed))
    asyncio.run(follow(dropped))
    assert _wait_threads() == before + 2
    closed.close()
    del dropped
    wait_for(lambda: _wait_threads() == before, timeout=5, what="wait threads to end")


def test_async_waiting_works_in_a_forked_child(ring_name: str) -> None:
    code = (
        "import asyncio, os, sys\n"
        "from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber\n"
        "sub = SharedMemorySubscriber(sys.argv[1])\n"
        "asyncio.run(sub.wait_async(timeout=0.01))  # the parent's wait thread is running\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    with SharedMemoryPublisher(buffer_name=sys.argv[1]) as pub:\n"
        "        pub.publish_market_data('NSE:CHILD', {'ltp': 1.0})\n"
        "    ticks = asyncio.run(asyncio.wait_for(sub.wait_async(timeout=5), 10))\n"
        "    os._exit(0 if [t.symbol for t in ticks] == ['CHILD'] else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child exit', os.waitstatus_to_exitcode(status))\n"
    )
    SharedMemoryPublisher(buffer_name=ring_name).close()
    done = run_python(code, ring_name, timeout=30)
    assert done.returncode == 0 and "child exit 0" in done.stdout, done.stderr


def test_ring_is_created_0600_and_described_by_its_header(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=65536) as pub:
        assert pub.created
        for _ in range(3):
            pub.publish_market_data("NSE:A", QUOTE)
        info = read_info(ring_name)
        mode = stat.S_IMODE(os.stat(f"/dev/shm/{ring_name}").st_mode)
        assert mode == 0o600
        assert info.total_size == 65536 and info.layout_version == 1
        assert info.slot_size == layout.SLOT_SIZE and info.capacity == (65536 - 4096) // layout.SLOT_SIZE
        assert info.write_seq == 3 and info.oldest_seq == 1 and info.generation != 0
        (writer,) = info.writers
        assert writer.pid == os.getpid() and writer.status == "alive"
        assert info.writer_attaches == 1
    (writer,) = read_info(ring_name).writers
    assert writer.status == "closed" and writer.records == 3


def test_second_publisher_attaches_without_recreating(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as first:
        first.publish_market_data("NSE:A", QUOTE)
        generation = read_info(ring_name).generation
        with SharedMemoryPublisher(buffer_name=ring_name) as second:
            assert not second.created
            assert second.publish_market_data("NSE:B", QUOTE) == 2
        assert read_info(ring_name).generation == generation


def test_subscriber_follows_a_recreated_ring(ring_name: str) -> None:
    pub = SharedMemoryPublisher(buffer_name=ring_name)
    pub.publish_market_data("NSE:OLD", QUOTE)
    with SharedMemorySubscriber(ring_name, start="oldest") as sub:
        assert [t.symbol for t in sub.poll()] == ["OLD"]
        old_generation = sub.generation
        pub.close()
        remove_segment(ring_name)
        with SharedMemoryPublisher(buffer_name=ring_name) as fresh:
            fresh.publish_market_data("NSE:NEW", QUOTE)
            ticks = sub.wait(timeout=20)
        assert [t.symbol for t in ticks] == ["NEW"]
        assert sub.resyncs == 1 and sub.generation != old_generation


def test_a_record_completed_by_a_writer_that_died_before_publishing_it_is_kept(ring_name: str) -> None:
    """Killed between writing a record and storing write_seq: the next writer must not reuse
    that sequence, since readers may already have delivered the record."""
    from shmproxy.core.ring import RingWriter

    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        body, depth = pub._encode("NSE:ORPHAN", {"ltp": 1.0})
        offset = layout.slot_offset(1, pub.segment.capacity)
        layout.SLOT_BEGIN.pack_into(pub.segment.buf, offset, 1)  # what the dead writer got done:
        layout.SLOT_WRITE_NO_DEPTH.pack_into(pub.segment.buf, offset + 8, *body, 1)  # the whole record
        assert [t.symbol for t in sub.poll()] == ["ORPHAN"] and pub.segment.write_seq() == 0
        assert RingWriter(pub.segment).write(pub._encode("NSE:NEXT", {"ltp": 2.0})[0], None) == 2
        assert [t.symbol for t in sub.poll()] == ["NEXT"] and sub.lost == 0

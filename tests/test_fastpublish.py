"""The compiled publish path (``_fastpublish.c``) writes exactly what the Python path writes.

Each example publishes the same (symbol, data) through a publisher on the compiled path and one on
the Python path (``SHMPROXY_PURE_PYTHON=1``), each on its own ring, and compares the slots byte for
byte, all but the publish time; bad input must raise the same error on both. Then the compiled
path's share of the writer's duties: heartbeat, records count, the thread mutex, waking parked readers.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmproxy import RecordError, SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core import layout
from shmproxy.core.publisher import PURE_PYTHON_ENV
from shmproxy.core.ring import TickWriter
from shmproxy.core.segment import read_info, remove_segment

if TickWriter is None:
    if os.environ.get("CI"):
        pytest.fail("CI must build the compiled publish path (gcc and Python headers are on the CI machine)")
    pytest.skip("the compiled publish path was not built here (no C compiler at install time)", allow_module_level=True)

SYMBOLS = ["RELIANCE", "NSE:INFY", "BANKNIFTY28NOV2448000CE", "NIFTY 50"]
PRICES = ["ltp", "open", "high", "low", "close", "average_price", "avg_trade_price", "percent_change", "change_percent"]
QUANTITIES = ["volume", "last_quantity", "last_trade_quantity", "last_trade_time", "ltt", "oi",
              "total_buy_quantity", "total_sell_quantity"]
PUBLISH_NS = slice(8, 16)  # the only bytes of a slot the two paths may write differently

plain_price = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6),
                        st.sampled_from([0, 0.0, -0.0]))
plain_quantity = st.one_of(st.integers(0, 2**63 - 1), st.floats(0, 1e15), st.sampled_from([0, 0.0, 0.5]))
odd_value = st.one_of(
    st.none(), st.booleans(), st.text(max_size=4), st.sampled_from(["12.5", "7", math.nan, math.inf, -math.inf]),
    st.integers(-2**70, 2**70), st.floats(), st.lists(st.integers(), max_size=1),
)


@st.composite
def plain_ticks(draw: st.DrawFn) -> dict:
    """Ticks the compiled path takes: a dict of plain floats and ints, LTP or Quote."""
    data = {"ltp": draw(plain_price)}
    for key in draw(st.sets(st.sampled_from(PRICES[1:]))):
        data[key] = draw(plain_price)
    for key in draw(st.sets(st.sampled_from(QUANTITIES))):
        data[key] = draw(plain_quantity)
    mode = draw(st.sampled_from([None, 1, 2, "LTP", "quote", "QUOTE", "absent"]))
    if mode != "absent":
        data["mode"] = mode
    if draw(st.booleans()):
        data["timestamp"] = draw(st.integers(0, (2**63 - 1) // 1_000_000))
    return data


@st.composite
def any_ticks(draw: st.DrawFn) -> object:
    """Anything a caller might pass: plain ticks with odd values mixed in, Depth, non-dicts."""
    data = draw(plain_ticks())
    for key in draw(st.sets(st.sampled_from(PRICES + QUANTITIES + ["mode", "timestamp", "exchange", "depth"]),
                            max_size=3)):
        data[key] = draw(odd_value)
    if draw(st.booleans()):
        data.pop("ltp", None)
    return draw(st.sampled_from([data, OrderedDict(data), dict(data, mode=3), list(data)]))


@pytest.fixture
def twin_publishers(ring_name: str, monkeypatch: pytest.MonkeyPatch):
    """(compiled, pure Python) publishers, each on its own fresh ring."""
    compiled = SharedMemoryPublisher(buffer_name=ring_name + "_c", buffer_size=1 << 20)
    monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    python = SharedMemoryPublisher(buffer_name=ring_name + "_p", buffer_size=1 << 20)
    assert compiled.compiled and not python.compiled
    yield compiled, python
    for pub in (compiled, python):
        pub.close()
        remove_segment(pub.buffer_name)


def slot(pub: SharedMemoryPublisher, seq: int) -> bytes:
    at = layout.slot_offset(seq, pub.segment.capacity)
    raw = bytearray(pub.segment.buf[at:at + layout.SLOT_SIZE])
    raw[PUBLISH_NS] = bytes(8)
    return bytes(raw)


def publish_both(twins, symbol: str, data: object) -> tuple[object, object]:
    """Publish through both paths; each outcome is the slot written or the error raised."""
    outcomes = []
    for pub in twins:
        try:
            outcomes.append(slot(pub, pub.publish_market_data(symbol, data)))
        except RecordError as err:
            outcomes.append(str(err))
    return outcomes[0], outcomes[1]


def warm(twins, symbol: str) -> None:
    """First publish of a name: both take the Python path, which fills the name cache."""
    publish_both(twins, symbol, {"exchange": "NSE", "ltp": 1.0})


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(SYMBOLS), data=plain_ticks())
def test_plain_ticks_go_compiled_and_write_the_same_bytes(twin_publishers, symbol: str, data: dict) -> None:
    compiled, python = twin_publishers
    data["exchange"] = "NSE"
    warm(twin_publishers, symbol)
    before = compiled._writer._tick_writer.records
    written, expected = publish_both(twin_publishers, symbol, data)
    assert written == expected
    assert compiled._writer._tick_writer.records == before + 1  # it really took the compiled path


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(SYMBOLS), data=any_ticks())
def test_any_input_gives_the_same_record_or_the_same_error(twin_publishers, symbol: str, data: object) -> None:
    if isinstance(data, dict):
        data.setdefault("exchange", "NSE")
    warm(twin_publishers, symbol)
    written, expected = publish_both(twin_publishers, symbol, data)
    assert written == expected


def test_heartbeat_and_records_count_follow_compiled_writes(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        assert pub.compiled
        pub.publish_market_data("NSE:A", {"ltp": 1.0})
        first = read_info(ring_name).writers[0].heartbeat_ns
        deadline = time.monotonic() + 0.3  # past the 100 ms heartbeat interval, twice
        while time.monotonic() < deadline:
            pub.publish_market_data("NSE:A", {"ltp": 2.0})
        entry = read_info(ring_name).writers[0]
        assert pub._writer._tick_writer.records == pub.published - 1
        assert entry.heartbeat_ns > first and 0 < entry.records <= pub.published
        assert time.time_ns() - entry.heartbeat_ns < 200_000_000


def test_a_thread_holding_the_mutex_makes_compiled_publish_wait_its_turn(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        pub.publish_market_data("NSE:A", {"ltp": 1.0})
        mutex = pub._writer._mutex
        mutex.acquire()
        released = []

        def release_later() -> None:
            time.sleep(0.2)
            released.append(time.monotonic())
            mutex.release()

        threading.Thread(target=release_later).start()
        seq = pub.publish_market_data("NSE:A", {"ltp": 2.0})  # declined by C, then waits in Python
        assert released and time.monotonic() >= released[0]
        assert seq == 2 and [t.ltp for t in sub.poll()] == [1.0, 2.0]


def test_threads_mixing_both_paths_lose_and_tear_nothing(ring_name: str) -> None:
    per_thread = 20_000
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=64 << 20) as pub:
        def publish(thread: int) -> None:
            for n in range(per_thread):
                data = {"exchange": "NSE", "ltp": float(n), "volume": n, "oi": thread}
                if n % 5 == 0:
                    data["depth"] = {"buy": [{"price": float(n), "quantity": n, "orders": thread}]}
                pub.publish_market_data(f"T{thread}", data)

        threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pub.published == 4 * per_thread
        assert pub._writer._tick_writer.records > 0
        with SharedMemorySubscriber(ring_name, start="oldest") as sub:
            ticks = sub.poll(limit=10**6)
    assert len(ticks) == 4 * per_thread and sub.lost == 0
    last = {}
    for t in ticks:
        assert t.symbol == f"T{t.oi}" and t.ltp == float(t.volume)
        assert t.depth is None if t.volume % 5 else t.depth["buy"][0]["orders"] == t.oi
        assert t.volume == last.get(t.oi, -1) + 1  # each thread's ticks in order, none missing
        last[t.oi] = t.volume

"""The compiled paths (``_speedups.c``) give exactly what the Python paths give.

Publishing: each example publishes the same (symbol, data) through a publisher on the compiled path
and one on the Python path (``SHMPROXY_PURE_PYTHON=1``), each on its own ring, and compares the
slots byte for byte, all but the publish time; bad input must raise the same error on both. Then
the compiled writer's share of the writer's duties: heartbeat, records count, the thread mutex.

Reading: a compiled and a Python subscriber on the same ring return the same ticks (every field,
to the bit), the same counts of lost and invalid records, also for foreign records and lapping.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
import zlib
from collections import OrderedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmproxy import RecordError, SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core import layout
from shmproxy.core.records import Tick
from shmproxy.core.segment import read_info, remove_segment
from shmproxy.core.speedups import PURE_PYTHON_ENV, built

from conftest import run_python
from ringtools import BOOK, publish_book

if not built():
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


def twin_subscribers(ring: str, monkeypatch: pytest.MonkeyPatch, start: str | int = "oldest"):
    compiled = SharedMemorySubscriber(ring, start=start)
    with monkeypatch.context() as env:
        env.setenv(PURE_PYTHON_ENV, "1")
        python = SharedMemorySubscriber(ring, start=start)
    assert compiled.compiled and not python.compiled
    return compiled, python


def exact(ticks: list[Tick]) -> list[tuple[str, ...]]:
    """Every field of every tick, as repr: tells -0.0 from 0.0 and compares NaN."""
    return [tuple(repr(getattr(t, name)) for name in Tick.__slots__) for t in ticks]


def read_all(sub: SharedMemorySubscriber, limit: int) -> list[Tick]:
    ticks: list[Tick] = []
    while sub.cursor <= sub.segment.write_seq():  # a batch of only foreign records is empty, yet not the end
        ticks += sub.poll(limit)
    return ticks


def test_compiled_reader_returns_what_the_python_reader_returns(ring_name: str, monkeypatch) -> None:
    publish_book(ring_name)
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        pub.publish_market_data("BSE:ÄKTIE 50", {"ltp": -0.0, "close": 3.5, "timestamp": 1732601234567})
        foreign = [time.time_ns(), 0, 9, 3, 1, b"NSE", b"X", *[1.5] * 7, *[7] * 6]
        pub._writer.write(foreign, None)  # a record whose mode byte no shmproxy writer sets
        pub.publish_market_data("NSE:INFY", {"ltp": 2.0, "mode": "LTP"})
    compiled, python = twin_subscribers(ring_name, monkeypatch)
    with compiled, python:
        for limit in (1, 3, 4096):
            for sub in (compiled, python):
                sub._reader.cursor = 1
            got, expected = read_all(compiled, limit), read_all(python, limit)
            assert exact(got) == exact(expected) and len(got) == len(BOOK) + 2
        assert (compiled.invalid, compiled.delivered) == (python.invalid, python.delivered) == (3, 3 * (len(BOOK) + 3))


def test_compiled_reader_counts_a_lap_as_the_python_reader_does(ring_name: str, monkeypatch) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=layout.MIN_SEGMENT_SIZE) as pub:
        compiled, python = twin_subscribers(ring_name, monkeypatch)
        for n in range(100):
            pub.publish_market_data("NSE:A", {"ltp": float(n), "mode": 3 if n % 3 else 2, "depth": {"buy": [{"price": n}]}})
    with compiled, python:
        got, expected = read_all(compiled, 4096), read_all(python, 4096)
        assert exact(got) == exact(expected) and len(got) == layout.MIN_CAPACITY
        assert compiled.lost == python.lost == 100 - len(got) and compiled.laps == python.laps == 1


names = st.binary(max_size=40)
numbers = st.one_of(st.floats(), st.integers(-2**63, 2**63 - 1))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=16), names,
    st.lists(st.floats(), min_size=7, max_size=7), st.lists(st.integers(-2**63, 2**63 - 1), min_size=6, max_size=6),
    st.one_of(st.none(), st.tuples(*[st.floats(), st.integers(-2**63, 2**63 - 1), st.integers(0, 9)] * 10)),
), min_size=1, max_size=20))
def test_any_record_bytes_read_the_same_on_both_paths(ring_name: str, monkeypatch, records) -> None:
    """Foreign writers may put anything in a slot: bad UTF-8, lengths past the field, any mode byte."""
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        start = pub.segment.write_seq() + 1
        for mode, ex_len, sym_len, exchange, symbol, prices, quantities, depth in records:
            pub._writer.write([1, 2, mode, ex_len, sym_len, exchange, symbol, *prices, *quantities], depth)
    compiled, python = twin_subscribers(ring_name, monkeypatch, start=start)
    with compiled, python:
        assert exact(compiled.poll()) == exact(python.poll())
        assert (compiled.invalid, compiled.delivered) == (python.invalid, python.delivered)


def _publish_checksummed(ring: str, seconds: float) -> None:
    with SharedMemoryPublisher(buffer_name=ring) as pub:
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += 1
            pub.publish_market_data("NSE:A", {"ltp": float(n), "volume": n, "oi": zlib.crc32(str(n).encode()),
                                              "high": float(n), "total_sell_quantity": n})


@pytest.mark.parametrize("pure_python", [False, True], ids=["compiled", "python"])
def test_a_reader_racing_the_writer_for_the_oldest_slot_never_returns_a_torn_record(
        ring_name: str, monkeypatch, pure_python: bool) -> None:
    """The seqlock, aimed at: the reader copies the very slot the writer overwrites next, for 2 s."""
    if pure_python:
        monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    SharedMemoryPublisher(buffer_name=ring_name, buffer_size=layout.MIN_SEGMENT_SIZE).close()
    writer = multiprocessing.get_context("fork").Process(target=_publish_checksummed, args=(ring_name, 2.0))
    writer.start()
    returned = torn = 0
    with SharedMemorySubscriber(ring_name) as sub:
        assert sub.compiled is not pure_python
        capacity, write_seq = sub.segment.capacity, sub.segment.write_seq
        while writer.is_alive():
            sub._reader.cursor = max(1, write_seq() - capacity + 1)  # the slot the next record goes into
            for t in sub.poll(1):
                returned += 1
                torn += not (t.oi == zlib.crc32(str(t.volume).encode()) and t.ltp == t.high == t.volume
                             == t.total_sell_quantity)
    writer.join(10)
    assert writer.exitcode == 0
    assert returned > 1000 and torn == 0


# Hostile callers: each case runs in its own interpreter (PYTHONMALLOC=debug catches use after free),
# so that a crash fails the test instead of ending the test run.
HOSTILE_PRELUDE = """
import faulthandler, gc, os, sys
faulthandler.enable()
from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core import speedups
from shmproxy.core.records import Tick
ring = sys.argv[1]
"""

HOSTILE = {  # case: (script, what its output must contain)
    "writer closed by a GC callback while publish encodes": ("""
pub = SharedMemoryPublisher(buffer_name=ring)
pub.publish_market_data("NSE:A", {"ltp": 1.0})
def close_once(phase, info):
    if phase == "start" and gc.callbacks:
        gc.callbacks.clear(); pub._writer.close()
data = {"exchange": None, "ltp": 2.0}
gc.collect(); gc.callbacks.append(close_once); gc.set_threshold(1)
try:
    pub._compiled("NSE:A", data)  # the name-cache key tuple it builds starts a collection
except ValueError as err:
    print("refused:", err)
""", "refused: TickWriter is closed"),
    "subscriber closed by a GC callback while read builds ticks": ("""
with SharedMemoryPublisher(buffer_name=ring) as pub:
    for i in range(10):
        pub.publish_market_data("NSE:A", {"ltp": float(i)})
sub = SharedMemorySubscriber(ring, start="oldest")
def close_once(phase, info):
    if phase == "start" and gc.callbacks:
        gc.callbacks.clear(); sub.close()
reader = sub._tick_reader
gc.collect(); gc.callbacks.append(close_once); gc.set_threshold(1)
ticks, consumed = reader.read(1, 100)
print("stopped after", consumed)
""", "stopped after"),
    "a mode whose __hash__ drops it from the dict": ("""
class Mode:
    def __hash__(self):
        data.pop("mode", None)
        return 1
    def __eq__(self, other):
        return other == 1
pub = SharedMemoryPublisher(buffer_name=ring)
pub.publish_market_data("NSE:A", {"ltp": 1.0})
data = {"ltp": 2.0, "mode": Mode()}
print("published", pub.publish_market_data("NSE:A", data))
""", "published 2"),
    "a heartbeat that raises keeps its own error and frees the mutex": ("""
import threading
from shmproxy.core import publisher
pub = SharedMemoryPublisher(buffer_name=ring)
pub.publish_market_data("NSE:A", {"ltp": 1.0})
def bad_beat(now):
    raise RuntimeError("beat failed")
mutex = threading.Lock()
tw = speedups.TickWriter(buf=pub.segment.buf, fd=pub.segment.fd, capacity=pub.segment.capacity,
                         layout=speedups.LAYOUT_FACTS, names=pub._names.cache, modes=publisher._MODES,
                         quote_or_depth=publisher._QUOTE_OR_DEPTH, mutex=mutex, beat=bad_beat,
                         beat_interval_ns=0, wake_gap_ns=0)
try:
    tw.publish("NSE:A", {"ltp": 3.0})
except RuntimeError as err:
    print("raised", err, "locked", mutex.locked())
tw.close()
""", "raised beat failed locked False"),
    "a capacity past the mapping, or a type that is not Tick": ("""
pub = SharedMemoryPublisher(buffer_name=ring)
for capacity in (2**64 // 448 + 1, pub.segment.capacity + 1):
    try:
        speedups.TickReader(buf=pub.segment.buf, capacity=capacity, layout=speedups.LAYOUT_FACTS, tick_type=Tick)
    except ValueError as err:
        print("refused:", err)
try:
    speedups.TickReader(buf=pub.segment.buf, capacity=16, layout=speedups.LAYOUT_FACTS, tick_type=int)
except ValueError as err:
    print("refused:", err)
""", "refused: buffer is smaller than the ring's capacity\n"
        "refused: buffer is smaller than the ring's capacity\nrefused: Tick has no object slot seq"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_callers_get_an_error_never_a_crash(ring_name: str, case: str) -> None:
    script, expected = HOSTILE[case]
    done = run_python(HOSTILE_PRELUDE + script, ring_name, env={**os.environ, "PYTHONMALLOC": "debug"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout, done.stdout


def test_a_publisher_and_subscriber_dropped_without_close_free_their_mapping(ring_name: str, both_paths) -> None:
    def open_files_and_maps() -> tuple[int, int]:
        return len(os.listdir("/proc/self/fd")), len(open("/proc/self/maps").read().splitlines())

    SharedMemoryPublisher(buffer_name=ring_name).close()
    before = open_files_and_maps()
    pub = SharedMemoryPublisher(buffer_name=ring_name)
    pub.publish_market_data("NSE:A", {"ltp": 1.0})
    sub = SharedMemorySubscriber(ring_name, start="oldest")
    assert len(sub.poll()) == 1
    del pub, sub  # no gc.collect(): nothing may hold them in a reference cycle
    assert open_files_and_maps() == before

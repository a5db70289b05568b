"""Bad publish input: a ValueError naming the field, nothing written, the rejection counted."""

from __future__ import annotations

import pytest

from shmproxy import RecordError, SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core.segment import read_info

pytestmark = pytest.mark.usefixtures("both_paths")  # each test on the compiled and the Python paths


@pytest.mark.parametrize(
    ("symbol", "data", "named"),
    [
        ("RELIANCE", {"ltp": 1.0}, "missing exchange"),
        ("NSE:RELIANCE", {}, "missing ltp"),
        ("NSE:RELIANCE", {"ltp": "abc"}, "ltp='abc'"),
        ("NSE:RELIANCE", {"ltp": float("nan")}, "ltp=nan"),
        ("NSE:RELIANCE", {"ltp": 1.0, "high": float("inf")}, "high=inf"),
        ("NSE:RELIANCE", {"ltp": 1.0, "close": [1]}, "close=[1]"),
        ("NSE:RELIANCE", {"ltp": 1.0, "volume": "lots"}, "volume='lots'"),
        ("NSE:RELIANCE", {"ltp": 1.0, "volume": 2**70}, "volume"),
        ("NSE:RELIANCE", {"ltp": 1.0, "timestamp": 10**16}, "timestamp=10000000000000000"),
        ("NSE:RELIANCE", {"ltp": 1.0, "mode": 4}, "mode=4"),
        ("NSE:RELIANCE", {"ltp": 1.0, "mode": "full"}, "mode='full'"),
        ("NSE:RELIANCE", {"ltp": 1.0, "mode": None, "depth": "x"}, "depth must be an object"),
        ("NSE:RELIANCE", {"ltp": 1.0, "mode": 3, "depth": {"buy": [{"price": "x"}]}}, "depth.buy[0].price"),
        ("NSE:" + "X" * 41, {"ltp": 1.0}, "symbol"),
        ("X" * 10, {"ltp": 1.0, "exchange": "E" * 17}, "exchange"),
        ("", {"ltp": 1.0, "exchange": "NSE"}, "symbol"),
        ("NSE:A", "not a dict", "data must be a dict"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(ring_name: str, symbol, data, named: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        with pytest.raises(ValueError, match=None) as err:
            pub.publish_market_data(symbol, data)
        assert isinstance(err.value, RecordError)
        assert named in str(err.value)
        info = read_info(ring_name)
        assert info.write_seq == 0 and info.rejected == 1


def test_real_fo_symbols_fit(ring_name: str) -> None:
    names = ["NFO:BANKNIFTY28NOV2448000CE", "MCX:CRUDEOILM19DEC24FUT", "NSE_INDEX:NIFTY", "CDS:USDINR24DECFUT"]
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        for name in names:
            pub.publish_market_data(name, {"ltp": 1.0})
        assert [f"{t.exchange}:{t.symbol}" for t in sub.poll()] == names


def test_modes_by_name_and_number_and_extra_keys_ignored(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        for mode in (1, "ltp", "Quote", "QUOTE", 3, "depth", "2"):
            pub.publish_market_data("NSE:A", {"ltp": 1.0, "mode": mode, "whatever": object()})
        assert [t.mode for t in sub.poll()] == [1, 1, 2, 2, 3, 3, 2]


def test_numeric_strings_and_sdk_spellings_are_accepted(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        pub.publish_market_data(
            "NSE:A",
            {"ltp": "101.5", "close": "100", "volume": "42", "avg_trade_price": 100.7,
             "last_trade_quantity": 3, "ltt": 1732601234},
        )
        (tick,) = sub.poll()
    assert (tick.ltp, tick.close, tick.volume, tick.average_price) == (101.5, 100.0, 42, 100.7)
    assert (tick.last_quantity, tick.last_trade_time) == (3, 1732601234)
    assert tick.percent_change == pytest.approx(1.5)  # derived from close when not given


def test_exchange_in_data_wins_over_prefix(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        pub.publish_market_data("NSE:A", {"ltp": 1.0, "exchange": "BSE"})
        pub.publish_market_data("NSE:A", {"ltp": 1.0, "exchange": "BSE"})  # second time from the cache
        assert [(t.exchange, t.symbol) for t in sub.poll()] == [("BSE", "A")] * 2


def test_integer_exchange_timestamp_is_kept_to_the_nanosecond(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        pub.publish_market_data("NSE:A", {"ltp": 1.0, "timestamp": 1734000000123})
        (tick,) = sub.poll()
    assert tick.exchange_ns == 1734000000123 * 1_000_000 and tick.timestamp_ms == 1734000000123


def test_an_unhashable_exchange_is_input_not_a_crash(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub, SharedMemorySubscriber(ring_name) as sub:
        pub.publish_market_data("NSE:RELIANCE", {"ltp": 1.0, "exchange": []})  # empty: the prefix names it
        with pytest.raises(RecordError, match="missing exchange"):
            pub.publish_market_data("NSE:RELIANCE", {"ltp": 1.0, "exchange": ["BSE"]})
        assert [(t.exchange, t.symbol) for t in sub.poll()] == [("NSE", "RELIANCE")]

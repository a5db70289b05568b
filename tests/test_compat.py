"""shmproxy.compat: upstream OpenAlgo adapters publish into the ring and run inside serve unchanged."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.compat import BaseBrokerWebSocketAdapter, TopicError, parse_topic, serve_adapter
from shmproxy.compat.convert import convert, epoch_ms

from serve_harness import API_KEY, ServeProcess, authed, request
from simulated_broker import SimulatedBroker
from upstream_style_adapter import SimBrokerWebSocketAdapter

TESTS = str(Path(__file__).parent)

# --- topics --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic, exchange, symbol, mode", [
    ("NSE_INDEX_NIFTY_LTP", "NSE_INDEX", "NIFTY", 1),
    ("NFO_BANKNIFTY28NOV2448000CE_QUOTE", "NFO", "BANKNIFTY28NOV2448000CE", 2),
    ("MCX_CRUDEOILM19DEC24FUT_DEPTH", "MCX", "CRUDEOILM19DEC24FUT", 3),
    ("BSE_INDEX_SENSEX_LTP", "BSE_INDEX", "SENSEX", 1),
    ("CDS_USDINR24DECFUT_QUOTE", "CDS", "USDINR24DECFUT", 2),
    ("NSE_BAJAJ-AUTO_QUOTE", "NSE", "BAJAJ-AUTO", 2),
    ("NSE_M&M_LTP", "NSE", "M&M", 1),
    ("CRYPTO_SOL_INR_LTP", "CRYPTO", "SOL_INR", 1),
    ("NSE_INDEX_NIFTY_NEXT_50_QUOTE", "NSE_INDEX", "NIFTY_NEXT_50", 2),
    ("MCX_INDEX_MCXCOMPDEX_LTP", "MCX_INDEX", "MCXCOMPDEX", 1),
    ("NSE_RELIANCE_Depth", "NSE", "RELIANCE", 3),
])
def test_upstream_topics_parse(topic: str, exchange: str, symbol: str, mode: int) -> None:
    parsed = parse_topic(topic)
    assert (parsed.exchange, parsed.symbol, parsed.mode) == (exchange, symbol, mode)


@pytest.mark.parametrize("topic", ["", "RELIANCE", "NSE_RELIANCE", "NSE_RELIANCE_FULL", "_RELIANCE_LTP",
                                   "NSE__QUOTE", "NSE_INDEX__LTP", None, 42])
def test_malformed_topics_are_topic_errors(topic: Any) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


# --- publishing straight into a ring ---------------------------------------------------------------------


@pytest.fixture
def adapter(ring_name: str, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> SimBrokerWebSocketAdapter:
    """An upstream-style adapter, never connected, that opens the ring named by SHM_BUFFER_NAME."""
    monkeypatch.setenv("SHM_BUFFER_NAME", ring_name)
    made = SimBrokerWebSocketAdapter()
    yield made
    made.cleanup_zmq()


def _ticks(ring_name: str) -> list:
    with SharedMemorySubscriber(buffer_name=ring_name, start="oldest") as sub:
        return sub.poll()


def test_ticks_reach_a_ring_reader_with_strings_converted(adapter: SimBrokerWebSocketAdapter, ring_name: str) -> None:
    levels = [{"price": f"{2950.0 - i * 0.05:.2f}", "quantity": str(10 * (i + 1)), "orders": str(i + 1)} for i in range(7)]
    adapter.publish_market_data("NSE_RELIANCE_DEPTH", {
        "ltp": "2950.50", "open": "2900", "close": "2900.00", "volume": "1,23,456", "timestamp": "1732780000",
        "total_buy_quantity": "5000", "depth": {"buy": levels, "sell": [{"price": "2950.55", "quantity": "7"}]},
    })
    adapter.publish_market_data("NSE_INDEX_NIFTY_LTP", {"ltp": 24131.1, "timestamp": 1732780000123})
    (depth, index) = _ticks(ring_name)
    assert (depth.exchange, depth.symbol, depth.mode) == ("NSE", "RELIANCE", 3)
    assert (depth.ltp, depth.open, depth.close, depth.volume, depth.total_buy_quantity) == (2950.5, 2900.0, 2900.0, 123456, 5000)
    assert depth.timestamp_ms == 1732780000000
    assert depth.depth["buy"][4] == {"price": 2949.8, "quantity": 50, "orders": 5}  # 7 levels sent, the ring keeps 5
    assert depth.depth["sell"][0] == {"price": 2950.55, "quantity": 7, "orders": 0}
    assert (index.exchange, index.symbol, index.mode, index.ltp) == ("NSE_INDEX", "NIFTY", 1, 24131.1)
    assert index.timestamp_ms == 1732780000123
    assert adapter.shm_sink.stats() == {"published": 2, "rejected": 0, "ignored": 0, "fields_dropped": 0}


def test_symbol_exchange_and_mode_in_data_win_over_the_topic(adapter: SimBrokerWebSocketAdapter, ring_name: str) -> None:
    adapter.publish_market_data("NSE_SBIN_LTP", {"symbol": "SBIN-EQ", "exchange": "BSE", "mode": "QUOTE", "ltp": "801"})
    adapter.publish_market_data("not a topic", {"symbol": "INFY", "exchange": "NSE", "mode": 1, "ltp": 1500})
    adapter.publish_market_data("NSE_INDEX_NIFTY_LTP", {"mode": 3, "ltp": "24000"})
    got = [(t.exchange, t.symbol, t.mode, t.ltp) for t in _ticks(ring_name)]
    assert got == [("BSE", "SBIN-EQ", 2, 801.0), ("NSE", "INFY", 1, 1500.0), ("NSE_INDEX", "NIFTY", 3, 24000.0)]


def test_malformed_topics_and_data_are_counted_and_logged_once(adapter: SimBrokerWebSocketAdapter, ring_name: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    bad = [("NSE_RELIANCE", {"ltp": 1}), ("NSE_RELIANCE_FULL", {"ltp": 1}), (None, {"ltp": 1}),
           ("NSE_RELIANCE_LTP", "2950.5"), ("NSE_RELIANCE_LTP", {"ltp": 1, "mode": 7}),
           ("NSE_RELIANCE_QUOTE", {"ltp": "n/a"}), ("NSE_RELIANCE_QUOTE", {"close": 1}),
           ("NSE_RELIANCE_QUOTE", {"ltp": float("nan")})]
    with caplog.at_level(logging.WARNING, logger="shmproxy.compat"):
        for topic, data in bad + bad:
            adapter.publish_market_data(topic, data)  # must not raise
        adapter.publish_market_data("flattrade_AB1234_orders", {"order_id": "1"})  # an account event: not market data
    assert adapter.shm_sink.stats() == {"published": 0, "rejected": 16, "ignored": 1, "fields_dropped": 0}
    logged = [r.getMessage() for r in caplog.records]
    # once per topic that names no instrument (4), once for the instrument NSE:RELIANCE
    assert len(logged) == 5, logged
    assert any("topic 'NSE_RELIANCE_FULL' ends in 'FULL'" in line for line in logged)
    assert any("NSE:RELIANCE: ltp='n/a' is not a usable price" in line for line in logged)
    assert _ticks(ring_name) == []


def test_unconvertible_fields_are_left_out_and_logged_once_per_symbol(adapter: SimBrokerWebSocketAdapter, ring_name: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shmproxy.compat"):
        for n in range(3):
            adapter.publish_market_data("NSE_INFY_QUOTE", {"ltp": f"150{n}", "high": float("nan"), "ltt": "15:29:59",
                                                           "low": "", "close": None, "volume": "-"})
    assert [t.ltp for t in _ticks(ring_name)] == [1500.0, 1501.0, 1502.0]
    assert adapter.shm_sink.stats() == {"published": 3, "rejected": 0, "ignored": 0, "fields_dropped": 9}
    assert [r.getMessage() for r in caplog.records] == [
        "SimBrokerWebSocketAdapter: left out fields of NSE:INFY it cannot convert: high, volume, ltt"]


def test_after_cleanup_the_ring_stays_and_ticks_are_ignored(adapter: SimBrokerWebSocketAdapter, ring_name: str) -> None:
    adapter.publish_market_data("NSE_SBIN_LTP", {"ltp": 801})
    adapter.cleanup_zmq()
    adapter.publish_market_data("NSE_SBIN_LTP", {"ltp": 802})
    assert [t.ltp for t in _ticks(ring_name)] == [801.0]
    assert adapter.shm_sink.stats()["ignored"] == 1


# --- converting upstream data ------------------------------------------------------------------------------


def test_strings_gaps_and_spellings_convert() -> None:
    converted = convert({
        "last_price": "101.5", "open": "", "high": None, "low": "99.05", "close": "100", "avg_trade_price": "100.7",
        "change_percent": "1.5", "volume": "12,345", "last_trade_quantity": "25.0", "oi": 7, "total_sell_quantity": "0",
        "ltt": "1732780000", "unknown_field": "kept out",
    })
    assert converted.fields == {
        "ltp": 101.5, "low": 99.05, "close": 100.0, "average_price": 100.7, "percent_change": 1.5, "volume": 12345,
        "last_quantity": 25, "oi": 7, "total_sell_quantity": 0, "last_trade_time": 1732780000,
    }
    assert converted.dropped == []


LOCAL = datetime(2024, 11, 28, 10, 15, 30)  # a zone-less time is local, as datetime.now() gives


@pytest.mark.parametrize("value, expected_ms", [
    (1732780000, 1732780000000),
    ("1732780000.5", 1732780000500),
    (1732780000123, 1732780000123),
    (1732780000123456, 1732780000123),
    (1732780000123456789, 1732780000123),
    ("2024-11-28T04:46:40+00:00", 1732769200000),
    ("2024-11-28 10:15:30", int(LOCAL.timestamp() * 1000)),
    ("28-11-2024 10:15:30", int(LOCAL.timestamp() * 1000)),
])
def test_timestamp_variants_become_epoch_milliseconds(value: Any, expected_ms: int) -> None:
    assert epoch_ms(value) == expected_ms
    assert convert({"ltp": 1, "timestamp": value}).fields["timestamp"] == expected_ms


def test_a_depth_book_with_a_bad_level_is_left_out_whole() -> None:
    good = {"price": "10.5", "quantity": "3"}
    assert convert({"ltp": 1, "depth": {"buy": [good], "sell": None}}).fields["depth"] == {
        "buy": [{"price": 10.5, "quantity": 3, "orders": 0}], "sell": []}
    for book in ({"buy": [good, {"price": "abc", "quantity": 1}]}, {"buy": [good, "10.5"]}, {"buy": "10.5"}, [good]):
        converted = convert({"ltp": 1, "depth": book})
        assert "depth" not in converted.fields and converted.dropped == ["depth"]


# --- the asyncio wrapper serve runs -------------------------------------------------------------------------


class Recorder(BaseBrokerWebSocketAdapter):
    """Records every call and the thread it ran on. Subscribing SLOW takes 0.3 s, UNKNOWN is an error
    response, BOOM raises; user id "nobody" fails initialize."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.threads: set[str] = set()

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.threads.add(threading.current_thread().name)

    def initialize(self, broker_name: str, user_id: str, auth_data: dict[str, str] | None = None) -> None:
        self._record("initialize", broker_name, user_id, auth_data, os.getenv("BROKER_API_KEY"))
        if user_id == "nobody":
            raise ValueError("Missing credentials for user nobody")

    def connect(self) -> None:
        self._record("connect")
        self.connected = True
        self.publish_market_data("NSE_RELIANCE_LTP", {"ltp": "2950.5"})

    def disconnect(self) -> None:
        self._record("disconnect")

    def subscribe(self, symbol: str, exchange: str, mode: int = 2, depth_level: int = 5) -> dict[str, Any]:
        self._record("subscribe", symbol, exchange, mode, depth_level)
        if symbol == "SLOW":
            time.sleep(0.3)
        if symbol == "BOOM":
            raise RuntimeError("socket gone")
        if symbol == "UNKNOWN":
            return self._create_error_response("SYMBOL_NOT_FOUND", f"Symbol {symbol} not found")
        return self._create_success_response("Subscription requested", symbol=symbol)

    def unsubscribe(self, symbol: str, exchange: str, mode: int = 2) -> dict[str, Any]:
        self._record("unsubscribe", symbol, exchange, mode)
        return self._create_success_response("Unsubscribed")


RecorderAdapter = serve_adapter(Recorder, name="recorder")
CONFIG = {"RECORDER_USER_ID": "AB1234", "RECORDER_AUTH_TOKEN": "tok", "RECORDER_FEED_TOKEN": "feed", "ENABLE_RECORDER": "true"}


def _run(ring_name: str, config: dict[str, str], scenario: Callable[[Any], Awaitable[None]]) -> Any:
    """Drive a RecorderAdapter as serve does (publisher, start, scenario, stop) and return it."""
    async def main() -> Any:
        with SharedMemoryPublisher(buffer_name=ring_name) as publisher:
            made = RecorderAdapter(config)
            made.publisher = publisher
            await made.start()
            try:
                await asyncio.wait_for(scenario(made), 10)
            finally:
                await made.stop()
            return made
    return asyncio.run(main())


async def _until(predicate: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_wrapper_calls_the_upstream_adapter_in_order_off_the_event_loop(ring_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "BROKER_API_KEY"})

    async def scenario(adapter: Any) -> None:
        await adapter.subscribe("NSE", "RELIANCE", 1)
        await adapter.subscribe("NSE", "RELIANCE", 3)  # a Depth client arrives
        await adapter.subscribe("NSE", "RELIANCE", 2)  # it leaves; a Quote client stays
        await adapter.unsubscribe("NSE", "RELIANCE")

    made = _run(ring_name, {**CONFIG, "BROKER_API_KEY": "AB1234:::key"}, scenario)
    assert made.upstream.calls == [
        ("initialize", "recorder", "AB1234", {"auth_token": "tok", "feed_token": "feed"}, "AB1234:::key"),
        ("connect",),
        ("subscribe", "RELIANCE", "NSE", 1, 5),
        ("subscribe", "RELIANCE", "NSE", 3, 5), ("unsubscribe", "RELIANCE", "NSE", 1),
        ("subscribe", "RELIANCE", "NSE", 2, 5), ("unsubscribe", "RELIANCE", "NSE", 3),
        ("unsubscribe", "RELIANCE", "NSE", 2),
        ("disconnect",),
    ]
    assert made.upstream.threads == {"recorder-adapter"}
    assert [(t.symbol, t.ltp) for t in _ticks(ring_name)] == [("RELIANCE", 2950.5)]  # through serve's publisher
    assert made.status().ticks == 1 and made.status().state == "stopped"


def test_slow_and_failing_upstream_calls_never_block_or_crash_serve(ring_name: str) -> None:
    async def scenario(adapter: Any) -> None:
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                await asyncio.sleep(0.01)
                beats += 1

        beating = asyncio.create_task(heartbeat())
        await adapter.subscribe("NSE", "SLOW", 2)
        beating.cancel()
        assert beats >= 10  # the loop ran on through the 0.3 s call
        await _until(lambda: adapter.state.value == "connected")
        await adapter.subscribe("NSE", "UNKNOWN", 2)
        assert adapter.status().detail == "subscribe NSE:UNKNOWN failed: SYMBOL_NOT_FOUND: Symbol UNKNOWN not found"
        await adapter.subscribe("NSE", "BOOM", 2)
        status = adapter.status()
        assert status.detail == "subscribe NSE:BOOM raised RuntimeError('socket gone')" and status.state == "connected"

    _run(ring_name, CONFIG, scenario)


def test_the_upstream_connected_flag_becomes_the_state(ring_name: str) -> None:
    async def scenario(adapter: Any) -> None:
        await _until(lambda: adapter.state.value == "connected")
        adapter.upstream.connected = False  # the broker dropped; the upstream adapter reconnects by itself
        await _until(lambda: adapter.state.value == "reconnecting")
        adapter.upstream.connected = True
        await _until(lambda: adapter.state.value == "connected")
        assert adapter.status().reconnects == 1

    _run(ring_name, CONFIG, scenario)


def test_a_failed_initialize_is_reported_and_later_calls_are_skipped(ring_name: str) -> None:
    async def scenario(adapter: Any) -> None:
        await _until(lambda: adapter.state.value == "auth_failed")
        assert adapter.status().detail == "initialize failed: Missing credentials for user nobody"
        await adapter.subscribe("NSE", "RELIANCE", 2)

    made = _run(ring_name, {**CONFIG, "RECORDER_USER_ID": "nobody"}, scenario)
    assert [call[0] for call in made.upstream.calls] == ["initialize", "disconnect"]


def test_serve_adapter_declares_settings_and_refuses_other_classes() -> None:
    assert RecorderAdapter.name == "recorder"
    assert RecorderAdapter.check({}) == ["RECORDER_USER_ID is not set"]
    assert RecorderAdapter.check(CONFIG) == []
    with pytest.raises(TypeError, match="does not subclass shmproxy.compat.BaseBrokerWebSocketAdapter"):
        serve_adapter(dict, name="nope")


# --- end to end: a real serve process, the simulated broker, the OpenAlgo SDK --------------------------------

openalgo = pytest.importorskip("openalgo", reason="the test extra installs the OpenAlgo SDK: pip install -e '.[test]'")


def _serve_env(broker: SimulatedBroker) -> dict[str, str]:
    return {
        "SHMPROXY_EXTRA_ADAPTERS": "simbroker=upstream_style_adapter:SimBrokerAdapter",
        "ENABLE_SIMBROKER": "true",
        "SIMBROKER_USER_ID": "AB1234",
        "SIMBROKER_AUTH_TOKEN": broker.token,
        "SIMBROKER_URL": broker.url,
        "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])),
    }


def test_an_upstream_adapter_runs_inside_serve_and_feeds_an_openalgo_client(ring_name: str) -> None:
    with SimulatedBroker() as broker, ServeProcess(ring_name, env=_serve_env(broker)) as server:
        client = openalgo.api(api_key=API_KEY, host="http://127.0.0.1:9", ws_url=server.url)
        assert client.connect() is True
        got: dict[str, list[dict]] = {"ltp": [], "depth": []}
        try:
            assert client.subscribe_depth([{"exchange": "NSE", "symbol": "RELIANCE"}], on_data_received=got["depth"].append)
            assert client.subscribe_ltp([{"exchange": "NSE_INDEX", "symbol": "NIFTY"}], on_data_received=got["ltp"].append)
            deadline = time.monotonic() + 15
            while not (got["depth"] and got["ltp"]):
                assert time.monotonic() < deadline, f"no ticks reached the SDK: {server.logs()}"
                time.sleep(0.05)
            assert broker.wait_for(lambda m: m.get("t") == "c")["uid"] == "AB1234"
            client.unsubscribe_ltp([{"exchange": "NSE_INDEX", "symbol": "NIFTY"}])
            broker.wait_for(lambda m: m == {"t": "u", "k": "NSE_INDEX|NIFTY", "m": 1})
            with authed(server.url) as ws:
                info = request(ws, {"action": "get_broker_info"})
            assert (info["broker"], info["adapter_status"]) == ("simbroker", "connected")
        finally:
            client.disconnect()
        assert server.stop() == 0
        broker.wait_for(lambda m: m.get("t") == "bye", timeout=5)  # SIGTERM reached the adapter's disconnect()

    depth = got["depth"][-1]
    assert (depth["exchange"], depth["symbol"], depth["mode"]) == ("NSE", "RELIANCE", 3)
    data = depth["data"]  # the SDK hands depth callbacks ltp, timestamp and depth
    assert isinstance(data["ltp"], float) and data["ltp"] > 2950
    assert data["depth"]["buy"][0] == {"price": round(data["ltp"] - 0.05, 2), "quantity": 10, "orders": 1}
    assert data["depth"]["sell"][4] == {"price": round(data["ltp"] + 0.25, 2), "quantity": 100, "orders": 5}
    assert abs(data["timestamp"] - time.time() * 1000) < 60_000  # the broker's epoch seconds, now in ms
    nifty = got["ltp"][-1]
    assert (nifty["exchange"], nifty["symbol"], nifty["mode"]) == ("NSE_INDEX", "NIFTY", 1) and nifty["data"]["ltp"] > 2950

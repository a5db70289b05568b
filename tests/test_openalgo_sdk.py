"""The official OpenAlgo Python SDK (``openalgo`` from PyPI) against a real serve process."""

from __future__ import annotations

import time

import pytest

from shmproxy import SharedMemoryPublisher

from serve_harness import API_KEY, SdkInbox, ServeProcess

openalgo = pytest.importorskip("openalgo", reason="the test extra installs the OpenAlgo SDK: pip install -e '.[test]'")

DEPTH = {"buy": [{"price": 2950.0 - i * 0.05, "quantity": 10 * (i + 1), "orders": i + 1} for i in range(5)],
         "sell": [{"price": 2950.1 + i * 0.05, "quantity": 20 * (i + 1), "orders": i + 1} for i in range(5)]}


def _wait(predicate, pub: SharedMemoryPublisher, timeout: float = 20) -> None:
    """Publish a fresh tick every 50 ms until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    n = 0
    while not predicate():
        assert time.monotonic() < deadline, "the SDK did not receive the ticks in time"
        n += 1
        pub.publish_market_data("NSE:RELIANCE", {"mode": 3, "ltp": 2950.0 + n * 0.05, "close": 2900.0,
                                                 "volume": 1000 + n, "depth": DEPTH})
        pub.publish_market_data("NSE:INFY", {"mode": 2, "ltp": 1500.0 + n * 0.05, "close": 1490.0, "volume": 500 + n})
        time.sleep(0.05)


def test_sdk_receives_ltp_quote_and_depth(ring_name: str) -> None:
    with ServeProcess(ring_name) as server, SharedMemoryPublisher(buffer_name=ring_name) as pub:
        client = openalgo.api(api_key=API_KEY, host="http://127.0.0.1:9", ws_url=server.url)
        assert client.connect() is True
        inbox = SdkInbox()
        got, collect = inbox.got, inbox.collect
        try:
            reliance = [{"exchange": "NSE", "symbol": "RELIANCE"}]
            assert client.subscribe_ltp(reliance + [{"exchange": "NSE", "symbol": "INFY"}], on_data_received=collect("ltp"))
            assert client.subscribe_quote([{"exchange": "NSE", "symbol": "INFY"}], on_data_received=collect("quote"))
            assert client.subscribe_depth(reliance, on_data_received=collect("depth"))
            _wait(lambda: all(got.values()) and len({m["symbol"] for m in got["ltp"]}) == 2, pub)
        finally:
            client.disconnect()

    ltp_symbols = {m["symbol"] for m in got["ltp"]}
    assert ltp_symbols == {"RELIANCE", "INFY"}  # a Depth tick also feeds the LTP callback
    assert all(m["mode"] == 1 and m["data"]["ltp"] > 0 for m in got["ltp"])
    quote = got["quote"][-1]
    assert quote["symbol"] == "INFY" and quote["mode"] == 2 and quote["data"]["close"] == 1490.0
    depth = got["depth"][-1]
    assert depth["symbol"] == "RELIANCE" and depth["mode"] == 3
    assert depth["data"]["depth"]["buy"][0] == {"price": 2950.0, "quantity": 10, "orders": 1}
    assert len(depth["data"]["depth"]["sell"]) == 5

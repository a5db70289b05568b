"""serve speaks OpenAlgo's protocol: every verb, ack and error code, against a real serve process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shmproxy import SharedMemoryPublisher

from serve_harness import API_KEY, ServeProcess, authed, recv, request, send, subscribe, ticks

SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def server():
    ring = f"shmproxy_test_{uuid.uuid4().hex[:12]}"
    with ServeProcess(ring, env={"MAX_SYMBOLS_PER_WEBSOCKET": "5"}) as proc:
        with SharedMemoryPublisher(buffer_name=ring) as pub:
            proc.pub = pub
            yield proc
    (SHM / ring).unlink(missing_ok=True)


def _symbol() -> str:
    return f"S{uuid.uuid4().hex[:8].upper()}"


def test_authentication_success_and_failure(server) -> None:
    with connect(server.url) as ws:
        reply = request(ws, {"action": "authenticate", "api_key": "wrong"})
        assert (reply["status"], reply["code"]) == ("error", "AUTHENTICATION_ERROR")
        reply = request(ws, {"action": "auth", "apikey": API_KEY})
        assert reply == {
            "type": "auth", "status": "success", "message": "Authentication successful", "broker": "shmproxy",
            "user_id": "shmproxy", "supported_features": {"ltp": True, "quote": True, "depth": True},
        }


def test_missing_key(server) -> None:
    with connect(server.url) as ws:
        assert request(ws, {"action": "authenticate"})["code"] == "AUTHENTICATION_ERROR"


@pytest.mark.parametrize(
    "message",
    [{"action": "subscribe", "symbol": "A", "exchange": "NSE"}, {"action": "ping"}, {"action": "get_broker_info"}],
)
def test_everything_needs_authentication_first(server, message) -> None:
    with connect(server.url) as ws:
        reply = request(ws, message)
        assert (reply["status"], reply["code"]) == ("error", "NOT_AUTHENTICATED")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "INVALID_JSON"),
        ("[1, 2]", "INVALID_JSON"),
        (json.dumps({"action": "fly"}), "INVALID_ACTION"),
        (json.dumps({"symbol": "A"}), "INVALID_ACTION"),
        (json.dumps({"action": "subscribe", "symbol": "A", "exchange": "NSE", "mode": 7}), "INVALID_MODE"),
        (json.dumps({"action": "subscribe", "symbol": "A", "exchange": "NSE", "mode": "full"}), "INVALID_MODE"),
        (json.dumps({"action": "subscribe"}), "INVALID_PARAMETERS"),
        (json.dumps({"action": "subscribe", "symbols": "A"}), "INVALID_PARAMETERS"),
        (json.dumps({"action": "subscribe", "symbol": "A", "exchange": "NSE", "depth": "x"}), "INVALID_PARAMETERS"),
        (json.dumps({"action": "unsubscribe"}), "INVALID_PARAMETERS"),
        (b"\x00\x01binary", "INVALID_JSON"),
        ('{"action":"ping","timestamp":NaN}', "INVALID_JSON"),  # not JSON; echoing it would break browsers
        ('{"action":"authenticate","api_key":"\\ud800"}', "AUTHENTICATION_ERROR"),  # a lone surrogate
    ],
)
def test_bad_requests_get_error_frames_and_the_connection_lives_on(server, frame, code) -> None:
    with authed(server.url) as ws:
        ws.send(frame)
        reply = recv(ws)
        assert (reply["status"], reply["code"]) == ("error", code)
        assert request(ws, {"action": "ping"})["type"] == "pong"


def test_subscribe_ack_echoes_request_id_and_receives_ticks(server) -> None:
    symbol = _symbol()
    with authed(server.url) as ws:
        ack = request(ws, {"action": "subscribe", "symbols": [{"symbol": symbol, "exchange": "NSE"}],
                           "mode": "Quote", "request_id": "r-1"})
        assert ack == {
            "type": "subscribe", "status": "success", "message": "Subscription processing complete",
            "broker": "shmproxy", "request_id": "r-1",
            "subscriptions": [{"symbol": symbol, "exchange": "NSE", "status": "success", "mode": "Quote",
                               "depth": 5, "broker": "shmproxy"}],
        }
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 2, "ltp": 101.5, "close": 100.0, "volume": 7})
        (tick,) = ticks(ws, 1)
    assert tick["type"] == "market_data" and tick["mode"] == 2 and tick["broker"] == "shmproxy"
    assert (tick["symbol"], tick["exchange"]) == (symbol, "NSE")
    data = tick["data"]
    assert data["ltp"] == 101.5 and data["volume"] == 7 and data["change_percent"] == pytest.approx(1.5)
    assert "depth" not in data


def test_one_bad_entry_fails_alone(server) -> None:
    good = _symbol()
    with authed(server.url) as ws:
        ack = request(ws, {"action": "subscribe", "mode": 1, "symbols": [
            {"symbol": good, "exchange": "NSE"}, {"symbol": "", "exchange": "NSE"}, {"exchange": "NSE"},
            {"symbol": "X" * 60, "exchange": "NSE"}, "junk"]})
        assert ack["status"] == "partial"
        statuses = [e["status"] for e in ack["subscriptions"]]
        assert statuses == ["success", "error", "error", "error", "error"]
        assert all(e["message"] for e in ack["subscriptions"][1:])


def test_unencodable_symbol_fails_its_entry_not_the_connection(server) -> None:
    with authed(server.url) as ws:
        ws.send('{"action":"subscribe","symbol":"\\ud800","exchange":"NSE"}')
        ack = recv(ws)
        assert ack["status"] == "error" and ack["subscriptions"][0]["status"] == "error"
        assert request(ws, {"action": "ping"})["type"] == "pong"
    assert "Traceback" not in server.logs()


def test_symbol_limit_per_connection(server) -> None:
    with authed(server.url) as ws:
        ack = request(ws, {"action": "subscribe", "mode": 1, "symbols": [{"symbol": f"L{i}", "exchange": "NSE"} for i in range(7)]})
        assert [e["status"] for e in ack["subscriptions"]] == ["success"] * 5 + ["error"] * 2
        assert "limit" in ack["subscriptions"][-1]["message"]


def test_mode_hierarchy_each_subscriber_tagged_with_its_own_mode(server) -> None:
    symbol = _symbol()
    with authed(server.url) as ltp, authed(server.url) as quote, authed(server.url) as all_modes:
        subscribe(ltp, symbol, mode="LTP")
        subscribe(quote, symbol, mode="quote")
        for mode in (1, 2, 3):
            subscribe(all_modes, symbol, mode=mode)
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 3, "ltp": 10.0, "depth": {
            "buy": [{"price": 9.95, "quantity": 100, "orders": 3}], "sell": [{"price": 10.05, "quantity": 50, "orders": 1}]}})
        (a,) = ticks(ltp, 1)
        (b,) = ticks(quote, 1)
        c = ticks(all_modes, 3)
    assert a["mode"] == 1 and set(a["data"]) == {"ltp", "timestamp"}
    assert b["mode"] == 2 and "open" in b["data"] and "depth" not in b["data"]
    assert sorted(t["mode"] for t in c) == [1, 2, 3]
    depth = next(t for t in c if t["mode"] == 3)["data"]["depth"]
    assert depth["buy"][0] == {"price": 9.95, "quantity": 100, "orders": 3} and len(depth["sell"]) == 5


def test_quote_tick_does_not_reach_depth_subscribers(server) -> None:
    symbol = _symbol()
    with authed(server.url) as depth_only:
        subscribe(depth_only, symbol, mode=3)
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 2, "ltp": 1.0})
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 3, "ltp": 2.0})
        (tick,) = ticks(depth_only, 1)
    assert tick["data"]["ltp"] == 2.0


def test_one_clients_unsubscribe_or_disconnect_never_stops_anothers_feed(server) -> None:
    symbol = _symbol()
    with authed(server.url) as stays:
        subscribe(stays, symbol, mode=1)
        leaver = authed(server.url)
        subscribe(leaver, symbol, mode=1)
        reply = request(leaver, {"action": "unsubscribe", "symbol": symbol, "exchange": "NSE", "mode": 1})
        assert reply["status"] == "success" and reply["successful"][0]["symbol"] == symbol
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "ltp": 1.0})
        assert ticks(stays, 1)[0]["data"]["ltp"] == 1.0
        subscribe(leaver, symbol, mode=1)
        leaver.close()
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "ltp": 2.0})
        assert ticks(stays, 1)[0]["data"]["ltp"] == 2.0


def test_unsubscribe_honours_top_level_mode_on_list_form(server) -> None:
    symbol = _symbol()
    with authed(server.url) as ws:
        subscribe(ws, symbol, mode=1)
        subscribe(ws, symbol, mode=2)
        reply = request(ws, {"action": "unsubscribe", "mode": "LTP", "symbols": [{"symbol": symbol, "exchange": "NSE"}],
                             "request_id": 9})
        assert reply["status"] == "success" and reply["request_id"] == 9
        assert reply["successful"] == [{"symbol": symbol, "exchange": "NSE", "status": "success", "mode": "LTP", "broker": "shmproxy"}]
        again = request(ws, {"action": "unsubscribe", "mode": 1, "symbols": [{"symbol": symbol, "exchange": "NSE"}]})
        assert again["status"] == "error" and again["failed"][0]["message"] == "not subscribed"
        server.pub.publish_market_data(symbol, {"exchange": "NSE", "ltp": 3.0})
        (tick,) = ticks(ws, 1)
        assert tick["mode"] == 2


def test_unsubscribe_all(server) -> None:
    first, second = _symbol(), _symbol()
    with authed(server.url) as ws:
        subscribe(ws, first, mode=1)
        subscribe(ws, second, mode=3)
        reply = request(ws, {"action": "unsubscribe_all"})
        assert reply["type"] == "unsubscribe" and reply["status"] == "success"
        assert sorted(e["symbol"] for e in reply["successful"]) == sorted([first, second])
        server.pub.publish_market_data(first, {"exchange": "NSE", "ltp": 1.0})
        assert request(ws, {"action": "ping"})["type"] == "pong"  # and no tick came before it


def test_last_value_replay_on_subscribe(server) -> None:
    symbol = _symbol()
    server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 3, "ltp": 42.0})
    server.pub.publish_market_data(symbol, {"exchange": "NSE", "mode": 1, "ltp": 43.0})
    with authed(server.url) as ws:
        ack = subscribe(ws, symbol, mode=1)
        assert ack["status"] == "success"
        (tick,) = ticks(ws, 1)
        assert tick["data"]["ltp"] == 43.0 and tick["mode"] == 1
        subscribe(ws, symbol, mode=3)
        (tick,) = ticks(ws, 1)
        assert tick["data"]["ltp"] == 42.0 and tick["mode"] == 3  # newest tick that can serve Depth


def test_ping_echoes_timestamp_and_ping_id(server) -> None:
    with authed(server.url) as ws:
        reply = request(ws, {"action": "ping", "timestamp": 1234, "_pingId": "p7"})
    assert reply["type"] == "pong" and reply["status"] == "success"
    assert reply["client_timestamp"] == 1234 and reply["_pingId"] == "p7" and reply["server_timestamp"] > 0


def test_broker_info_and_supported_brokers(server) -> None:
    with authed(server.url) as ws:
        info = request(ws, {"action": "get_broker_info"})
        brokers = request(ws, {"type": "get_supported_brokers"})
    assert info == {"type": "broker_info", "status": "success", "broker": "shmproxy", "adapter_status": "ring", "user_id": "shmproxy"}
    assert brokers["type"] == "supported_brokers" and brokers["brokers"] and brokers["count"] == len(brokers["brokers"])


def test_oversized_frame_is_closed_with_1009(server) -> None:
    with authed(server.url) as ws:
        send(ws, {"action": "ping", "pad": "x" * 100_000})
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
    assert closed.value.rcvd.code == 1009


def test_request_flood_is_rate_limited_not_fatal(server) -> None:
    with authed(server.url) as ws:
        for _ in range(1000):
            send(ws, {"action": "ping"})
        replies = [recv(ws) for _ in range(1000)]
        codes = {r.get("code") for r in replies if r["status"] == "error"}
        assert codes == {"RATE_LIMITED"}
        assert sum(r["type"] == "pong" for r in replies) >= 500  # the burst allowance is served


def test_repeated_wrong_keys_close_the_connection(server) -> None:
    with connect(server.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                request(ws, {"action": "authenticate", "api_key": "nope"})
    assert closed.value.rcvd.code == 4403

"""The Flattrade adapter end to end, with real processes and sockets throughout:
OpenAlgo client -> serve -> flattrade adapter -> simulated Noren server -> ring -> serve -> client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from datetime import time as clock

import pytest
from websockets.sync.client import connect

from conftest import run_cli
from noren_sim import BAD_TOKEN_EMSG, GOOD_TOKEN, NorenSim, instrument_state
from serve_harness import API_KEY, SdkInbox, ServeProcess, authed, recv_until, request, send, subscribe
from shmproxy.core.adapters.noren import IST

RELIANCE, INFY, NIFTY = ("NSE", "2885"), ("NSE", "1594"), ("NSE", "26000")
SYMBOL_MAP = "exchange,symbol,token\nNSE,RELIANCE,2885\nNSE,INFY,1594\nNSE_INDEX,NIFTY,26000\n"
USER = "FT0001"


@pytest.fixture
def sim():
    instruments = {RELIANCE: instrument_state(*RELIANCE, "RELIANCE-EQ", 2950.0),
                   INFY: instrument_state(*INFY, "INFY-EQ", 1500.0),
                   NIFTY: instrument_state(*NIFTY, "Nifty 50", 22000.0)}
    with NorenSim(instruments) as simulator:
        yield simulator


@pytest.fixture
def env(sim: NorenSim, tmp_path) -> dict[str, str]:
    (tmp_path / "symbols.csv").write_text(SYMBOL_MAP)
    return {"ENABLE_FLATTRADE": "true", "FLATTRADE_USER_ID": USER, "FLATTRADE_AUTH_TOKEN": GOOD_TOKEN,
            "FLATTRADE_WS_URL": sim.url, "FLATTRADE_SYMBOL_MAP": str(tmp_path / "symbols.csv"),
            "FLATTRADE_HEARTBEAT_SECONDS": "0.5", "FLATTRADE_AUTH_RETRY_SECONDS": "1"}


# --- helpers ------------------------------------------------------------------------------------------
def adapter_status(ws) -> str:
    return request(ws, {"action": "get_broker_info"})["adapter_status"]


def wait_for_status(ws, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (status := adapter_status(ws)) != wanted:
        assert time.monotonic() < deadline, f"adapter_status stayed {status!r}, expected {wanted!r}"
        time.sleep(0.05)


def health_of_adapter(server: ServeProcess) -> dict:
    """The flattrade entry of serve's /health document (served 503 when serve is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    return next(a for a in json.loads(body)["adapters"] if a["name"] == "flattrade")


def session_of_login(sim: NorenSim, n: int) -> int:
    """The simulator's session id of the n-th login (1-based), once it happened."""
    return sim.wait_for(lambda: len(sim.logins()) >= n and sim.logins()[n - 1]["session"], what=f"login #{n}")


def tick_with_ltp(ws, symbol: str, ltp: float, mode: int | None = None, timeout: float = 10) -> dict:
    return recv_until(ws, lambda m: m.get("type") == "market_data" and m["symbol"] == symbol
                      and m["data"]["ltp"] == ltp and m["mode"] == (mode or m["mode"]), timeout)


def trade_time_of(state: dict[str, str]) -> int:
    """The broker's ``ltt`` (HH:MM:SS, India time) on the feed time's date, in epoch seconds."""
    day = datetime.fromtimestamp(int(state["ft"]), IST).date()
    return int(datetime.combine(day, clock.fromisoformat(state["ltt"]), IST).timestamp())


def depth_of(state: dict[str, str]) -> dict[str, list[dict]]:
    return {side: [{"price": float(state[f"{p}p{i}"]), "quantity": int(state[f"{p}q{i}"]),
                    "orders": int(state[f"{p}o{i}"])} for i in range(1, 6)] for side, p in (("buy", "b"), ("sell", "s"))}


def assert_matches_broker_state(data: dict, state: dict[str, str], mode: int) -> None:
    """A tick frame carries the broker's full state: its snapshot with every partial update merged in."""
    assert data["ltp"] == float(state["lp"])
    assert data["timestamp"] == int(state["ft"]) * 1000 and data["ltt"] == trade_time_of(state)
    if mode == 1:
        return
    assert (data["open"], data["high"], data["low"], data["close"]) == tuple(float(state[f]) for f in "ohlc")
    assert data["volume"] == int(state["v"]) and data["last_quantity"] == int(state["ltq"])
    assert data["average_price"] == float(state["ap"]) and data["percent_change"] == float(state["pc"])
    if mode == 3:
        assert data["total_buy_quantity"] == int(state["tbq"]) and data["total_sell_quantity"] == int(state["tsq"])
        assert data["depth"] == depth_of(state)


# --- ticks ---------------------------------------------------------------------------------------------
def test_sdk_receives_merged_ltp_quote_and_depth(ring_name, sim, env) -> None:
    openalgo = pytest.importorskip("openalgo")
    inbox = SdkInbox()
    got, lock, collect = inbox.got, inbox.lock, inbox.collect

    def latest(kind: str, ltp: float) -> dict | None:
        with lock:
            return next((m for m in reversed(got[kind]) if m["data"]["ltp"] == ltp), None)

    with ServeProcess(ring_name, env=env) as server:
        client = openalgo.api(api_key=API_KEY, host="http://127.0.0.1:9", ws_url=server.url)
        assert client.connect() is True
        try:
            assert client.subscribe_ltp([{"exchange": "NSE_INDEX", "symbol": "NIFTY"}], on_data_received=collect("ltp"))
            assert client.subscribe_quote([{"exchange": "NSE", "symbol": "INFY"}], on_data_received=collect("quote"))
            assert client.subscribe_depth([{"exchange": "NSE", "symbol": "RELIANCE"}], on_data_received=collect("depth"))
            session = session_of_login(sim, 1)
            sim.wait_for(lambda: sim.subscribed(session, "t") == {"NSE|26000", "NSE|1594"}
                         and sim.subscribed(session, "d") == {"NSE|2885"}, what="the subscriptions")
            # partial updates: only the changed fields go over the wire
            sim.update(*NIFTY, lp="22010.50")
            sim.update(*INFY, lp="1502.25", v="130500", h="1516.00")
            sim.update(*RELIANCE, lp="2953.10", bq1="999", sp2="2953.40", so2="9")
            sim.wait_for(lambda: latest("ltp", 22010.5) and latest("quote", 1502.25) and latest("depth", 2953.1),
                         what="the SDK's callbacks")
        finally:
            client.disconnect()

    # the SDK hands its callbacks a subset of the frame, under its own names
    nifty, infy, reliance = (latest(kind, ltp)["data"] for kind, ltp in (("ltp", 22010.5), ("quote", 1502.25), ("depth", 2953.1)))
    for data, key in ((nifty, NIFTY), (infy, INFY), (reliance, RELIANCE)):
        assert data["timestamp"] == int(sim.instruments[key]["ft"]) * 1000
    assert nifty["ltt"] == trade_time_of(sim.instruments[NIFTY])
    state = sim.instruments[INFY]  # the snapshot with the partial update merged in
    assert infy == {**infy, "open": float(state["o"]), "high": 1516.0, "low": float(state["l"]), "close": float(state["c"]),
                    "volume": 130500, "last_trade_quantity": int(state["ltq"]), "avg_trade_price": float(state["ap"]),
                    "change_percent": float(state["pc"])}
    assert reliance["depth"] == depth_of(sim.instruments[RELIANCE]) and reliance["depth"]["buy"][0]["quantity"] == 999


def test_levels_move_with_clients_and_the_last_one_releases(ring_name, sim, env) -> None:
    with ServeProcess(ring_name, env=env) as server, authed(server.url) as quote_client:
        ack = request(quote_client, {"action": "subscribe", "mode": "Quote", "symbols": [
            {"symbol": "RELIANCE", "exchange": "NSE"}, {"symbol": "XYZ", "exchange": "NSE"}]})
        assert ack["status"] == "partial" and ack["broker"] == "flattrade"
        ok, bad = ack["subscriptions"]
        assert ok["status"] == "success" and ok["broker"] == "flattrade"
        assert bad["status"] == "error" and bad["message"] == "unknown symbol for flattrade: NSE:XYZ"
        tick_with_ltp(quote_client, "RELIANCE", 2950.0, mode=2)
        session = session_of_login(sim, 1)

        with authed(server.url) as depth_client:
            assert subscribe(depth_client, "RELIANCE", mode=3)["status"] == "success"
            sim.wait_for(lambda: sim.subscribed(session, "u"), what="the touchline release")
            depth = tick_with_ltp(depth_client, "RELIANCE", 2950.0, mode=3)
            assert_matches_broker_state(depth["data"], sim.instruments[RELIANCE], 3)
        sim.wait_for(lambda: sim.subscribed(session, "ud"), what="the depth release")
        sim.update(*RELIANCE, lp="n/a")  # a broken update is dropped and counted, the feed goes on
        sim.update(*RELIANCE, lp="2951.00")
        tick_with_ltp(quote_client, "RELIANCE", 2951.0, mode=2)  # back on touchline, still served
        assert health_of_adapter(server)["rejected"] == 1
        quote_client.close()
        sim.wait_for(lambda: len(sim.received("u")) == 2, what="the release by the last client")
        logs = server.logs()
    assert "flattrade: cannot record a tick of NSE:RELIANCE: lp='n/a' is not a number" in logs

    kinds = [(m["t"], m["k"]) for m in sim.received() if m["session"] == session and m["t"] in ("t", "u", "d", "ud")]
    # subscribe the new level before releasing the old one; the last client leaving releases all
    assert kinds == [("t", "NSE|2885"), ("d", "NSE|2885"), ("u", "NSE|2885"), ("t", "NSE|2885"),
                     ("ud", "NSE|2885"), ("u", "NSE|2885")]


# --- faults ---------------------------------------------------------------------------------------------
def test_reconnects_and_resubscribes_after_a_drop_and_a_silent_link(ring_name, sim, env) -> None:
    with ServeProcess(ring_name, env=env) as server, authed(server.url) as ws:
        subscribe(ws, "RELIANCE", mode=2)
        subscribe(ws, "INFY", mode=3)
        tick_with_ltp(ws, "INFY", 1500.0)

        for n, (fault, price) in enumerate(((sim.drop_all, "2960.00"), (sim.mute, "2970.00")), start=2):
            fault()
            session = session_of_login(sim, n)
            sim.wait_for(lambda: sim.subscribed(session, "t") == {"NSE|2885"} and sim.subscribed(session, "d") == {"NSE|1594"},
                         timeout=15, what=f"the re-subscription on session {session}")
            sim.update(*RELIANCE, lp=price)
            tick = tick_with_ltp(ws, "RELIANCE", float(price))  # the same client connection throughout
            assert_matches_broker_state(tick["data"], sim.instruments[RELIANCE], 2)
        assert adapter_status(ws) == "connected" and health_of_adapter(server)["reconnects"] >= 2
        assert sim.received("h")  # heartbeats went out (the muted session's went unanswered)
        logs = server.logs()
    assert "flattrade adapter: reconnecting (connection lost" in logs
    assert "no message from the broker for 2s" in logs


def test_bad_token_is_reported_and_retried_and_a_refreshed_token_file_is_picked_up(ring_name, sim, env, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("stale-token-0042\n")
    env = {**env, "FLATTRADE_AUTH_TOKEN": "", "FLATTRADE_TOKEN_FILE": str(token_file), "FLATTRADE_AUTH_RETRY_SECONDS": "0.5"}
    with ServeProcess(ring_name, env=env) as server, authed(server.url) as ws:
        wait_for_status(ws, "auth_failed")
        assert health_of_adapter(server)["detail"] == f"login refused: {BAD_TOKEN_EMSG}"
        assert subscribe(ws, "RELIANCE")["status"] == "success"  # served once the login works
        sim.wait_for(lambda: len(sim.logins()) >= 3, what="login retries")
        times = [m["at"] for m in sim.logins()]
        assert min(b - a for a, b in zip(times, times[1:])) >= 0.45  # the slow pace, not a tight loop
        assert server.proc.poll() is None

        token_file.write_text(GOOD_TOKEN + "\n")
        session = sim.wait_for(lambda: [m["session"] for m in sim.received("t")], what="a working login")[0]
        assert sim.logins()[-1] == {**sim.logins()[-1], "session": session, "accesstoken": GOOD_TOKEN}
        assert adapter_status(ws) == "connected"
        sim.update(*RELIANCE, lp="2955.00")
        assert tick_with_ltp(ws, "RELIANCE", 2955.0)["data"]["volume"] == 120000
        logs = server.logs()
    assert f"flattrade adapter: auth_failed (login refused: {BAD_TOKEN_EMSG})" in logs
    assert "stale-token-0042" not in logs and GOOD_TOKEN not in logs


def test_a_second_login_evicts_the_adapter_which_backs_off(ring_name, sim, env) -> None:
    env = {**env, "FLATTRADE_AUTH_RETRY_SECONDS": "2"}  # a window wide enough to see the state in
    with ServeProcess(ring_name, env=env) as server, authed(server.url) as ws:
        session_of_login(sim, 1)
        wait_for_status(ws, "connected")
        with connect(sim.url, open_timeout=5) as other:  # the user logs in elsewhere
            send(other, {"t": "a", "uid": USER, "actid": USER, "source": "API", "accesstoken": GOOD_TOKEN})
            assert json.loads(other.recv(timeout=5))["s"] == "OK"
            wait_for_status(ws, "auth_failed")
            assert health_of_adapter(server)["detail"] == "evicted by another login"
            evicted_at = sim.logins()[1]["at"]
            session_of_login(sim, 3)  # the adapter tries again, at the slow pace
        assert sim.logins()[2]["at"] - evicted_at >= 1.9
        logs = server.logs()
    assert "flattrade adapter: auth_failed (evicted by another login)" in logs


def test_sigterm_stops_the_adapter_and_serve_exits_0(ring_name, sim, env) -> None:
    with ServeProcess(ring_name, env=env) as server, authed(server.url) as ws:
        subscribe(ws, "RELIANCE")
        session = session_of_login(sim, 1)
        sim.wait_for(lambda: sim.subscribed(session, "t"), what="the subscription")
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 5
        logs = server.logs()
    closed = sim.wait_for(lambda: [m for m in sim.received("_closed") if m["session"] == session], what="the close")
    assert closed[0]["code"] == 1000  # a closing handshake from the adapter, not a dropped socket
    assert "flattrade adapter: stopped" in logs


# --- settings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, problem", [
    ({"FLATTRADE_USER_ID": ""}, "FLATTRADE_USER_ID is not set"),
    ({"FLATTRADE_AUTH_TOKEN": ""}, "no token: set FLATTRADE_AUTH_TOKEN or FLATTRADE_TOKEN_FILE"),
    ({"FLATTRADE_SYMBOL_MAP": "/nonexistent/symbols.csv"},
     "FLATTRADE_SYMBOL_MAP='/nonexistent/symbols.csv' cannot be read: No such file or directory"),
    ({"FLATTRADE_WS_URL": "http://127.0.0.1:1/"}, "FLATTRADE_WS_URL='http://127.0.0.1:1/' is not valid"),
])
def test_bad_settings_stop_serve_with_one_line(ring_name, env, change, problem) -> None:
    result = run_cli("serve", "--buffer", ring_name, "--port", "0", env={"SHMPROXY_API_KEYS": "k", **env, **change})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"ENABLE_FLATTRADE is set but the flattrade adapter is not configured: {problem}" in result.stderr


def test_adapters_command_lists_flattrade(env) -> None:
    result = run_cli("adapters", "--json", env={**env, "FLATTRADE_USER_ID": ""})
    flattrade = next(a for a in json.loads(result.stdout) if a["name"] == "flattrade")
    assert flattrade["enabled"] is True and flattrade["configured"] is False
    assert flattrade["problems"] == ["FLATTRADE_USER_ID is not set"]

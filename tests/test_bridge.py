"""shmproxy bridge: codec and subjects, then real processes through a real nats-server.

mock-feed -> ring A -> bridge out -> nats-server -> bridge in -> ring B -> serve -> WebSocket client.
"""

from __future__ import annotations

import json
import signal
import struct
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core.bridge.codec import DecodeError, Message, decode, encoder
from shmproxy.core.bridge.streams import GapCounter, Routes
from shmproxy.core.bridge.subjects import (
    SubjectError, check_filter, check_prefix, escape_token, subject_for, unescape_token,
)
from shmproxy.core.records import Tick
from shmproxy.core.segment import read_info

from conftest import SHM, run_python
from nats_harness import BridgeProcess, NatsServer, require_nats_server
from ringtools import cli, spawn, tick_data, wait_until
from serve_harness import ServeProcess, authed, recv_until, subscribe

ODD_SYMBOLS = ["RELIANCE", "M&M", "BAJAJ-AUTO", "NIFTY 50", "BRK.B", "A*B>C%D", "NIFTY\tBANK", "ÇA"]
EXCHANGE_MS = 1_734_000_000_123  # an exchange timestamp the bridge must carry as it is


# --- pure parts ------------------------------------------------------------------------------

def ring_ticks(ring: str) -> list[Tick]:
    """Everything ring ``ring`` still holds, oldest first."""
    with SharedMemorySubscriber(ring, start="oldest") as sub:
        return sub.poll(1_000_000)


def published(ring: str, keys: list[str], timestamp: int | None = EXCHANGE_MS) -> list[Tick]:
    """One tick per key and mode, with depth for mode 3, as a ring gives them back."""
    with SharedMemoryPublisher(buffer_name=ring) as pub:
        for i, key in enumerate(keys):
            for mode in (1, 2, 3):
                data = {**tick_data(mode, 100.0 + i + mode / 20), "exchange": "NSE", "oi": 7, "ltt": 1_734_000_000}
                if timestamp is not None:
                    data["timestamp"] = timestamp + i
                pub.publish_market_data(key, data)
    return ring_ticks(ring)


def test_binary_round_trip_keeps_every_field_of_every_mode(ring_name: str) -> None:
    ticks = published(ring_name, ODD_SYMBOLS)
    encode = encoder("binary")
    for tick in ticks:
        payload = encode(tick, 0xDEADBEEF, tick.seq)
        assert len(payload) == (440 if tick.mode == 3 else 200)
        assert decode(payload) == Message(0xDEADBEEF, tick.seq, tick)  # Tick equality: every field
    assert {t.mode for t in ticks} == {1, 2, 3} and ticks[2].depth["sell"][4]["quantity"] == 100


def test_json_round_trip_is_the_openalgo_message_plus_times(ring_name: str) -> None:
    encode = encoder("json")
    for tick in published(ring_name, ODD_SYMBOLS):
        payload = encode(tick, 5, 9)
        message = json.loads(payload)
        assert message["type"] == "market_data" and message["data"] == tick.to_dict()
        assert (message["exchange"], message["symbol"], message["mode"]) == (tick.exchange, tick.symbol, tick.mode)
        assert (message["publish_ns"], message["exchange_ns"]) == (tick.publish_ns, tick.exchange_ns)
        origin, seq, back = decode(payload)
        assert (origin, seq, back.seq) == (5, 9, 9)
        assert (back.exchange, back.symbol, back.mode) == (tick.exchange, tick.symbol, tick.mode)
        assert (back.publish_ns, back.exchange_ns) == (tick.publish_ns, tick.exchange_ns)
        assert back.to_dict() == tick.to_dict()


def test_republished_tick_keeps_exchange_time_and_gets_a_local_publish_time(ring_name: str) -> None:
    source = published(ring_name, ["NIFTY 50"])
    other = f"{ring_name}_b"
    try:
        before = time.time_ns()
        with SharedMemoryPublisher(buffer_name=other) as pub:
            for tick in source:
                pub.republish(decode(encoder("binary")(tick, 1, tick.seq)).tick)
        copies = ring_ticks(other)
    finally:
        (SHM / other).unlink(missing_ok=True)
    assert len(copies) == len(source) == 3
    for tick, copy in zip(source, copies):
        assert copy.publish_ns >= before > tick.publish_ns
        assert (copy.exchange_ns, copy.mode, copy.symbol, copy.values) == (tick.exchange_ns, tick.mode, tick.symbol, tick.values)
        assert copy.depth == tick.depth and copy.to_dict() == tick.to_dict()


def _bad_payloads(tick: Tick) -> dict[str, bytes]:
    good = encoder("binary")(tick, 1, 1)
    message = json.loads(encoder("json")(tick, 1, 1))
    nan_ltp = good[:96] + struct.pack("<d", float("nan")) + good[104:]  # ltp: body offset 80, after the 16-byte head
    return {
        "empty": b"",
        "other version": b"\x02" + good[1:],
        "truncated": good[:-1],
        "mode 7": good[:16 + 16] + b"\x07" + good[16 + 17:],
        "symbol length 41": good[:16 + 18] + b"\x29" + good[16 + 19:],
        "not UTF-8": good[:16 + 40] + b"\xff" + good[16 + 41:],
        "NaN price": nan_ltp,
        "not JSON": b"{nope",
        "JSON list": b"[1]",
        "JSON without mode": json.dumps({k: v for k, v in message.items() if k != "mode"}).encode(),
        "JSON negative seq": json.dumps({**message, "seq": -1}).encode(),
        "JSON infinite ltp": json.dumps({**message, "data": {**message["data"], "ltp": float("inf")}}).encode(),
        "JSON data not an object": json.dumps({**message, "data": "x"}).encode(),
        "JSON empty exchange": json.dumps({**message, "exchange": ""}).encode(),
    }


def test_decode_refuses_what_is_not_a_valid_bridge_tick(ring_name: str) -> None:
    tick = published(ring_name, ["INFY"])[0]
    for what, payload in _bad_payloads(tick).items():
        with pytest.raises(DecodeError):
            decode(payload)
            pytest.fail(what)


@pytest.mark.parametrize("name, token", [
    ("M&M", "M&M"), ("BAJAJ-AUTO", "BAJAJ-AUTO"), ("NIFTY 50", "NIFTY%2050"), ("BRK.B", "BRK%2EB"),
    ("A*B>C%", "A%2AB%3EC%25"), ("ÇA", "%C3%87A"), ("TAB\tX", "TAB%09X"),
])
def test_names_are_escaped_into_one_valid_token(name: str, token: str) -> None:
    assert escape_token(name) == token and unescape_token(token) == name
    assert subject_for("ticks", "NSE", name, 2) == f"ticks.NSE.{token}.2"


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_escaping_is_reversible_and_never_breaks_a_subject(name: str) -> None:
    token = escape_token(name)
    assert unescape_token(token) == name
    assert token and not any(c in token for c in ".*> \t\r\n") and token.isascii() and token.isprintable()


def test_subject_prefixes_and_filters_are_checked() -> None:
    for good in ("ticks.>", "ticks.NSE.>", "ticks.*.INFY.*", "md.ticks.NSE.NIFTY%2050.2", ">"):
        assert check_filter(good) == good
    for bad in ("", "ticks..NSE", "ticks.>.2", "ticks.NS*", "ticks.NSE >", "ticks.>x", ".ticks"):
        with pytest.raises(SubjectError):
            check_filter(bad)
    assert check_prefix("md.ticks") == "md.ticks"
    for bad in ("ticks.>", "ticks.*", "a b", "ticks.", ""):
        with pytest.raises(SubjectError):
            check_prefix(bad)


def test_streams_are_numbered_per_subject_and_gaps_counted_per_origin(ring_name: str) -> None:
    ticks = published(ring_name, ["INFY", "TCS"], timestamp=None)
    routes = Routes("p")
    assert routes.of(ticks[0]) is routes.of(ticks[0]) and routes.of(ticks[0]).subject == "p.NSE.INFY.1"
    assert len({routes.of(t).subject for t in ticks}) == 6
    gaps = GapCounter()
    for origin, subject, seq in [(1, "a", 5), (1, "a", 6), (1, "b", 1), (1, "a", 9), (2, "a", 1), (1, "b", 4), (2, "a", 2)]:
        gaps.see(origin, subject, seq)
    assert gaps.missing == 2 + 2  # a: 7, 8; b: 2, 3; a new origin starts its own stream


# --- the command line without a server -----------------------------------------------------

def test_missing_nats_py_bad_url_and_bad_subject_each_give_one_line(ring_name: str) -> None:
    no_nats = run_python(
        "import sys; sys.modules['nats'] = None; sys.argv = ['shmproxy', 'bridge', 'in', '--buffer', sys.argv[1]];"
        "from shmproxy.cli.app import main; main()", ring_name,
    )
    bad_url = cli("bridge", "out", "--buffer", ring_name, "--nats", "http://127.0.0.1:4222")
    bad_filter = cli("bridge", "in", "--buffer", ring_name, "--subject", "ticks.>.NSE")
    for result, phrase in ((no_nats, "pip install 'shmproxy[bridge]'"), (bad_url, "is not a NATS URL"),
                           (bad_filter, "'>' can only be the last token")):
        assert result.returncode == 2 and result.stdout == "", result
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and phrase in result.stderr
    assert not (SHM / ring_name).exists()  # refused before touching any ring


# --- real processes through a real nats-server ---------------------------------------------

@pytest.fixture
def nats_server():
    server = NatsServer(require_nats_server())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def ring_b():
    name = f"shmproxy_test_{uuid.uuid4().hex[:12]}"
    yield name
    (SHM / name).unlink(missing_ok=True)


@contextmanager
def running_bridges(url: str, ring_a: str, ring_b: str, out_args=(), in_args=()) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    """bridge out and bridge in, both ready (following / subscribed); killed at exit unless stopped."""
    inbound = BridgeProcess("in", ring_b, url, *in_args)
    outbound = BridgeProcess("out", ring_a, url, *out_args)
    try:
        inbound.wait_for("subscribed to")
        outbound.wait_for("forwarding ring")
        yield outbound, inbound
    finally:
        inbound.kill()
        outbound.kill()


def written(ring: str) -> int:
    return read_info(ring).write_seq if (SHM / ring).exists() else 0


def feed(ring: str, count: int, rate: int, symbols: str) -> None:
    result = cli("mock-feed", "--buffer", ring, "--count", count, "--rate", rate, "--symbols", symbols, "--seed", 11)
    assert result.returncode == 0 and f"published {count:,} ticks" in result.stdout, result.stderr


def last_view(ticks: list[Tick], symbol: str, mode: int) -> dict:
    """What a client subscribed to ``symbol`` at ``mode`` must see last: the newest tick serving that mode."""
    return [t for t in ticks if t.symbol == symbol and t.mode >= mode][-1].to_dict(mode)


def without_time(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "timestamp"}  # publish-time based unless the exchange gave one


def test_ticks_cross_from_mock_feed_to_a_websocket_client_on_the_other_ring(
    nats_server: NatsServer, ring_name: str, ring_b: str
) -> None:
    wanted = [("M&M", 3), ("BRK.B", 1), ("BAJAJ-AUTO", 2), ("INFY", 2)]  # serve refuses spaces: NIFTY 50 is checked in ring B
    seen: dict = {}
    with ServeProcess(ring_b) as serve, running_bridges(nats_server.url, ring_name, ring_b) as (outbound, inbound):
        with authed(serve.url) as ws:
            for symbol, mode in wanted:
                assert subscribe(ws, symbol, "NSE", mode)["status"] == "success"
            feed(ring_name, 600, 3000, "NSE:INFY,NSE:M&M,NSE:NIFTY 50,NSE:BRK.B,NSE:BAJAJ-AUTO,MCX:GOLD05FEB26FUT")
            with SharedMemoryPublisher(buffer_name=ring_name) as pub:  # an exchange time must cross as it is
                pub.publish_market_data("NSE:INFY", {**tick_data(2, 1601.25), "timestamp": EXCHANGE_MS})
            wait_until(lambda: written(ring_b) >= 601, timeout=20, what="ring B to hold every tick")
            source = ring_ticks(ring_name)
            expected = {(s, m): last_view(source, s, m) for s, m in wanted}
            recv_until(ws, lambda msg: msg.get("type") == "market_data" and _is_last(msg, expected, seen), timeout=15)
        summaries = outbound.stop(signal.SIGINT), inbound.stop()
    copies = ring_ticks(ring_b)
    assert len(source) == len(copies) == 601 and "NIFTY 50" in {c.symbol for c in copies}
    for tick, copy in zip(source, copies):
        assert (copy.exchange, copy.symbol, copy.mode, copy.exchange_ns, copy.values, copy.depth_values) == (
            tick.exchange, tick.symbol, tick.mode, tick.exchange_ns, tick.values, tick.depth_values)
        assert copy.publish_ns > tick.publish_ns
    assert seen[("INFY", 2)]["timestamp"] == EXCHANGE_MS and seen[("INFY", 2)]["ltp"] == 1601.25
    for direction, summary in zip(("out", "in"), summaries):
        assert (summary["direction"], summary["forwarded"], summary["lost"], summary["reconnects"]) == (direction, 601, 0, 0)
    assert summaries[1]["invalid"] == 0 and summaries[1]["latency_us"]["samples"] == 601


def _is_last(message: dict, expected: dict, seen: dict) -> bool:
    """Record ``message``; True once every subscription has received its expected final tick."""
    seen[(message["symbol"], message["mode"])] = message["data"]
    return all(key in seen and without_time(seen[key]) == without_time(data) for key, data in expected.items())


def test_json_format_and_a_subject_filter_carry_only_the_chosen_exchange(
    nats_server: NatsServer, ring_name: str, ring_b: str
) -> None:
    options = {"out_args": ("--format", "json", "--subject", "md.ticks"), "in_args": ("--subject", "md.ticks.NSE.>")}
    with running_bridges(nats_server.url, ring_name, ring_b, **options) as (outbound, inbound):
        feed(ring_name, 400, 4000, "NSE:INFY,MCX:GOLD05FEB26FUT,NSE:BAJAJ-AUTO,NFO:NIFTY30DEC25FUT")
        nse = [t for t in ring_ticks(ring_name) if t.exchange == "NSE"]
        wait_until(lambda: written(ring_b) >= len(nse), timeout=20, what="ring B to hold the NSE ticks")
        time.sleep(0.3)  # anything unwanted would have arrived by now
        summaries = outbound.stop(), inbound.stop()
    copies = ring_ticks(ring_b)
    assert 100 < len(nse) < 300 and len(copies) == len(nse)
    assert [(c.symbol, c.mode, without_time(c.to_dict())) for c in copies] == [
        (t.symbol, t.mode, without_time(t.to_dict())) for t in nse]
    assert (summaries[0]["format"], summaries[0]["forwarded"], summaries[0]["subject"]) == ("json", 400, "md.ticks")
    assert (summaries[1]["forwarded"], summaries[1]["lost"], summaries[1]["invalid"]) == (len(nse), 0, 0)


def test_bridges_reconnect_after_a_nats_restart_and_account_for_every_tick(
    nats_server: NatsServer, ring_name: str, ring_b: str
) -> None:
    total = 2000  # fewer than ring A holds (2,331), so the test can read back every one
    with running_bridges(nats_server.url, ring_name, ring_b) as (outbound, inbound):
        feeder = spawn("mock-feed", "--buffer", ring_name, "--count", total, "--rate", 400,
                       "--symbols", "NSE:INFY,NSE:TCS", "--mode", "quote", "--seed", 3)
        try:
            wait_until(lambda: written(ring_b) >= 300, timeout=20, what="ticks to cross before the restart")
            nats_server.stop()
            outbound.wait_for("disconnected from")
            inbound.wait_for("disconnected from")
            before_restart = written(ring_b)
            time.sleep(0.5)
            nats_server.start()
            outbound.wait_for("reconnected to")
            inbound.wait_for("reconnected to")
            feed_out, feed_err = feeder.communicate(timeout=30)
        finally:
            feeder.kill()
        assert feeder.returncode == 0 and f"published {total:,} ticks" in feed_out, feed_err
        wait_until(lambda: written(ring_b) > before_restart + 300, timeout=20, what="ticks to flow again")
        time.sleep(0.5)  # let the last ones land
        out, into = outbound.stop(), inbound.stop()
    assert out["reconnects"] == into["reconnects"] == out["disconnects"] == into["disconnects"] == 1
    assert out["forwarded"] + out["lost"] == total  # every tick in ring A: sent, or lapped while NATS was away
    assert into["forwarded"] + into["lost"] == out["forwarded"]  # every tick sent: written, or counted missing
    assert into["forwarded"] == written(ring_b) and into["invalid"] == 0
    copies, source = ring_ticks(ring_b), ring_ticks(ring_name)
    position = {(t.symbol, t.volume): i for i, t in enumerate(source)}
    order = [position[(c.symbol, c.volume)] for c in copies]
    assert order == sorted(order)  # a subset of ring A, in ring A's order

"""Hostile input against a real serve: 10,000+ generated bad frames over many connections while a
well-behaved client keeps receiving every tick of its symbol."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shmproxy import SharedMemoryPublisher

from serve_harness import API_KEY, ServeProcess, authed, subscribe

CONNECTIONS = 40
FRAMES_PER_CONNECTION = 260  # 10,400 in all
ALLOWED_CLOSE_CODES = {1009, 4403, 1008}  # frame too big, too many wrong keys, policy


def _hostile_frames(rng: random.Random) -> list[str | bytes]:
    """Frames no client should send: every field wrong in every way we can think of."""
    junk_values = [None, True, -1, 0, 2**70, 1e308, float("inf"), "", "x" * 300, [], {}, [1, [2, [3]]], {"a": {"b": 1}}]
    actions = ["subscribe", "unsubscribe", "unsubscribe_all", "ping", "authenticate", "auth", "get_broker_info",
               "get_supported_brokers", "SUBSCRIBE", "delete", "", None, 7, ["subscribe"]]
    frames: list[str | bytes] = []
    for _ in range(FRAMES_PER_CONNECTION):
        kind = rng.randrange(10)
        if kind == 4 and rng.random() < 0.8:
            kind = 9  # wrong keys are slowed down on purpose (brute force): keep them few, or the test crawls
        if kind == 0:
            frames.append(rng.choice(["{", "}", "nul", "[", '{"action":', "\x00", "💥", "{'action': 'ping'}"]))
        elif kind == 1:
            frames.append("[" * 5000 + "]" * 5000)  # deeply nested
        elif kind == 2:
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))  # binary
        elif kind == 3:
            frames.append(json.dumps({"action": "subscribe", "symbols": [{"symbol": f"S{i}", "exchange": "NSE"} for i in range(3000)]}))
        elif kind == 4:
            frames.append(json.dumps({"action": "authenticate", "api_key": rng.choice(junk_values + ["wrong"])}, default=str))
        else:
            message = {"action": rng.choice(actions)}
            for field in rng.sample(["symbol", "exchange", "mode", "depth", "symbols", "request_id", "_pingId", "timestamp"], 3):
                message[field] = rng.choice(junk_values)
            frames.append(json.dumps(message, default=str))
    return frames


async def _attack(url: str, seed: int) -> dict[str, int]:
    """Send every frame, reconnecting after each close; count error frames, closes, surprises."""
    rng = random.Random(seed)
    frames = _hostile_frames(rng)
    outcome = {"sent": 0, "answered": 0, "errors": 0, "closed": 0, "unexpected": 0}
    while frames:
        async with connect(url, max_size=None) as ws:
            if seed % 2:  # half the connections authenticate first, so frames reach the verbs
                await ws.send(json.dumps({"action": "authenticate", "api_key": API_KEY}))
                await ws.recv()
            while frames:
                frame = frames.pop()
                try:
                    await ws.send(frame)
                    outcome["sent"] += 1
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                    outcome["closed" if code in ALLOWED_CLOSE_CODES else "unexpected"] += 1
                    break
                outcome["answered"] += 1
                if reply.get("status") == "error" and reply.get("code"):
                    outcome["errors"] += 1
                elif reply.get("type") not in ("pong", "subscribe", "unsubscribe", "broker_info", "supported_brokers", "auth"):
                    outcome["unexpected"] += 1
    return outcome


async def _campaign(url: str) -> list[dict[str, int]]:
    results = []
    for batch in range(0, CONNECTIONS, 10):  # ten at a time keeps the 2-core machine responsive
        results += await asyncio.gather(*(_attack(url, seed) for seed in range(batch, batch + 10)))
    return results


def test_hostile_frames_never_disturb_a_good_client(ring_name: str) -> None:
    with ServeProcess(ring_name) as server, SharedMemoryPublisher(buffer_name=ring_name) as pub, authed(server.url) as good:
        subscribe(good, "GOOD", mode=2)
        received: list[int] = []
        stop = threading.Event()

        def follow() -> None:
            while not stop.is_set() or len(received) < published[0]:
                try:
                    message = json.loads(good.recv(timeout=10))
                except TimeoutError:
                    return
                if message.get("type") == "market_data":
                    received.append(message["data"]["volume"])

        published = [0]

        def produce() -> None:
            while not stop.is_set():
                pub.publish_market_data("NSE:GOOD", {"mode": 2, "ltp": 100.0, "volume": published[0]})
                published[0] += 1
                time.sleep(0.02)

        threads = [threading.Thread(target=follow), threading.Thread(target=produce)]
        for t in threads:
            t.start()
        try:
            results = asyncio.run(asyncio.wait_for(_campaign(server.url), 240))
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert server.proc.poll() is None  # still up
        total = {key: sum(r[key] for r in results) for key in results[0]}
        assert total["sent"] == CONNECTIONS * FRAMES_PER_CONNECTION >= 10_000
        assert total["unexpected"] == 0
        assert total["answered"] + total["closed"] == total["sent"]  # every frame: a reply or a clear close
        assert total["errors"] > 0.9 * total["answered"]  # and nearly all replies are error frames
        assert received == list(range(published[0]))  # every tick, in order, none lost or conflated

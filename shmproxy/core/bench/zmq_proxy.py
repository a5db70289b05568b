"""An upstream-style OpenAlgo WebSocket proxy: the end-to-end baseline of ``shmproxy bench --compare-zmq``.

It does per tick what upstream's websocket_proxy/server.py does in its ZeroMQ listener, and nothing
more: receive ``[topic, json]`` from a SUB socket (waiting at most 0.3 s at a time, as upstream
does), split the topic into exchange, symbol and mode, ``json.loads`` the tick, look up the
subscribers of (symbol, exchange, mode) and every lower mode, and for each one copy the message,
tag it with that client's mode, ``json.dumps`` it and ``await websocket.send()`` it, one tick's
sends gathered together. The websockets server uses upstream's queue and ping settings.
Authentication checks one key from SHMPROXY_API_KEYS; there is no database and no broker.

    python -m shmproxy.core.bench.zmq_proxy ENDPOINT LIFETIME_S

prints ``ws://127.0.0.1:PORT`` when ready and exits on SIGTERM, or by itself after LIFETIME_S.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import defaultdict
from typing import Any

import zmq
import zmq.asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

_MODES = {"LTP": 1, "QUOTE": 2, "DEPTH": 3}
Key = tuple[str, str, int]  # (symbol, exchange, mode), upstream's subscription index key


class UpstreamStyleProxy:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.index: defaultdict[Key, set[ServerConnection]] = defaultdict(set)

    async def handle(self, ws: ServerConnection) -> None:
        """One client: answer authenticate and subscribe requests until it goes away."""
        keys: set[Key] = set()
        try:
            async for frame in ws:
                await ws.send(json.dumps(self._answer(json.loads(frame), ws, keys)))
        except ConnectionClosed:
            pass
        finally:
            for key in keys:
                self.index[key].discard(ws)

    def _answer(self, request: dict[str, Any], ws: ServerConnection, keys: set[Key]) -> dict[str, Any]:
        if request.get("action") == "authenticate":
            ok = request.get("api_key") == self.api_key
            return {"type": "auth", "status": "success" if ok else "error"}
        if request.get("action") == "subscribe":
            for entry in request.get("symbols", []):
                key = (entry["symbol"], entry["exchange"], int(request.get("mode", 1)))
                self.index[key].add(ws)
                keys.add(key)
            return {"type": "subscribe", "status": "success"}
        return {"status": "error", "code": "INVALID_ACTION"}

    async def listen(self, sub: zmq.asyncio.Socket) -> None:
        """Forward every tick from ZeroMQ to its subscribers, the upstream way."""
        while True:
            try:
                topic, payload = await asyncio.wait_for(sub.recv_multipart(), timeout=0.3)
            except asyncio.TimeoutError:
                continue
            parts = topic.decode().split("_")
            exchange, symbol, mode = parts[0], "_".join(parts[1:-1]), _MODES[parts[-1]]
            data = json.loads(payload)
            targets = {ws: m for m in range(1, mode + 1) for ws in self.index.get((symbol, exchange, m), ())}
            if not targets:
                continue
            message = {"type": "market_data", "symbol": symbol, "exchange": exchange, "mode": mode, "data": data}
            await asyncio.gather(*(self._send(ws, {**message, "mode": m, "broker": "bench"}) for ws, m in targets.items()),
                                 return_exceptions=True)

    @staticmethod
    async def _send(ws: ServerConnection, message: dict[str, Any]) -> None:
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed:
            pass


async def main(endpoint: str, lifetime: float) -> None:
    proxy = UpstreamStyleProxy(os.environ["SHMPROXY_API_KEYS"])
    context = zmq.asyncio.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with serve(proxy.handle, "127.0.0.1", 0, max_queue=1024, ping_interval=20, ping_timeout=20) as server:
        port = next(s.getsockname()[1] for s in server.sockets)
        print(f"upstream-style proxy ws://127.0.0.1:{port}", flush=True)
        listener = asyncio.create_task(proxy.listen(sub))
        try:
            await asyncio.wait_for(stop.wait(), lifetime)
        except asyncio.TimeoutError:
            pass
        listener.cancel()
    sub.close(linger=0)
    context.term()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))

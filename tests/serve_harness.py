"""Run a real ``shmproxy serve`` process for tests, and talk to it with real WebSocket clients."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from websockets.sync.client import ClientConnection, connect

API_KEY = "test-key-0123456789abcdef"
_BANNER = re.compile(r"ws://([\d.]+):(\d+)")


class ServeProcess:
    """``shmproxy serve`` on a free port and a given ring; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, ring: str, *args: str, env: dict[str, str] | None = None, keys: str = API_KEY) -> None:
        self.ring = ring
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SHM_", "WS_", "WEBSOCKET_", "SHMPROXY_", "MAX_"))}
        full_env.update({"SHMPROXY_API_KEYS": keys, "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        self.log = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shmproxy", "serve", "--port", "0", "--buffer", ring, *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=full_env,
        )
        self.port = self._wait_for_banner()
        self.url = f"ws://127.0.0.1:{self.port}"

    def _wait_for_banner(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"serve exited ({self.proc.wait()}): {self.logs()}")
            match = _BANNER.search(line)
            if match:
                return int(match.group(2))
        raise RuntimeError("serve did not start in time")

    def logs(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        os.unlink(self.log.name)


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def request(ws: ClientConnection, message: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send a request and return the first reply that is not a market_data tick."""
    send(ws, message)
    return recv_until(ws, lambda m: m.get("type") != "market_data", timeout)


def recv_until(ws: ClientConnection, accept: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = recv(ws, max(0.01, deadline - time.monotonic()))
        if accept(message):
            return message


def ticks(ws: ClientConnection, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The next ``count`` market_data frames."""
    return [recv_until(ws, lambda m: m.get("type") == "market_data", timeout) for _ in range(count)]


def authed(url: str, key: str = API_KEY) -> ClientConnection:
    # max_queue=None: a test that stops reading must still see the close frame behind unread ticks
    ws = connect(url, open_timeout=10, max_size=None, max_queue=None).__enter__()  # callers close it with ``with``
    reply = request(ws, {"action": "authenticate", "api_key": key})
    assert reply["status"] == "success", reply
    return ws


def subscribe(ws: ClientConnection, symbol: str, exchange: str = "NSE", mode: Any = 2, **extra: Any) -> dict[str, Any]:
    return request(ws, {"action": "subscribe", "symbol": symbol, "exchange": exchange, "mode": mode, **extra})


class SdkInbox:
    """Collects the OpenAlgo SDK's callbacks per kind ("ltp", "quote", "depth"); the SDK calls them
    from its own thread, hence the lock."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {"ltp": [], "quote": [], "depth": []}
        self.lock = threading.Lock()

    def collect(self, kind: str) -> Callable[[dict[str, Any]], None]:
        def callback(message: dict[str, Any]) -> None:
            with self.lock:
                self.got[kind].append(message)
        return callback

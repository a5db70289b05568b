"""A small simulated broker feed for the compat tests: a WebSocket server on 127.0.0.1, in a thread.

JSON text frames, loosely in the style of Indian broker feeds:

- client -> broker: ``{"t": "c", "uid", "token"}`` log in (answered ``{"t": "ck", "s": "OK"}``, or
  ``"NOT_OK"`` for a wrong token); ``{"t": "s", "k": "NSE|RELIANCE", "m": 1|2|3}`` subscribe;
  ``{"t": "u", "k", "m"}`` unsubscribe; ``{"t": "bye"}`` log out.
- broker -> client: every ``TICK_S``, one tick per subscription, ``{"t": "tk", "e", "ts", "m", "lp",
  ...}`` with every number as a string, as real feeds send them, and five depth levels in mode 3.

Every message received is kept in ``received`` for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

TICK_S = 0.05


def expected_ltp(n: int) -> float:
    """The price of the n-th tick (n from 1) of any subscription."""
    return round(2950.0 + n * 0.05, 2)


def tick(exchange: str, symbol: str, mode: int, n: int) -> dict[str, str | int]:
    ltp = expected_ltp(n)
    message: dict[str, Any] = {"t": "tk", "e": exchange, "ts": symbol, "m": mode, "lp": f"{ltp:.2f}",
                               "ft": str(int(time.time()))}
    if mode >= 2:
        message.update(o="2900.00", h=f"{ltp + 1:.2f}", l="2890.10", c="2900.00", v=str(100_000 + n),
                       ap="2925.35", ltq="25", ltt=str(int(time.time())))
    if mode == 3:
        message.update(tbq="5000", tsq="7000")
        for level in range(1, 6):
            message.update({f"bp{level}": f"{ltp - 0.05 * level:.2f}", f"bq{level}": str(10 * level), f"bo{level}": str(level),
                            f"sp{level}": f"{ltp + 0.05 * level:.2f}", f"sq{level}": str(20 * level), f"so{level}": str(level)})
    return message


class SimulatedBroker:
    def __init__(self, token: str = "secret-token") -> None:
        self.token = token
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="simulated-broker", daemon=True)

    def __enter__(self) -> SimulatedBroker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def wait_for(self, accept: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first received message ``accept`` takes, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((m for m in self.received if accept(m)), None)
            if found is not None:
                return found
            time.sleep(0.02)
        raise AssertionError(f"the simulated broker never received the message; it got {self.received}")

    def _handle(self, ws: ServerConnection) -> None:
        subscriptions: dict[tuple[str, int], int] = {}  # ("NSE|RELIANCE", mode) -> ticks sent
        logged_in = False
        try:
            while True:
                try:
                    message = json.loads(ws.recv(timeout=TICK_S))
                except TimeoutError:
                    message = None
                if message is not None:
                    with self._lock:
                        self.received.append(message)
                    logged_in = self._apply(ws, message, subscriptions, logged_in)
                if logged_in:
                    self._send_ticks(ws, subscriptions)
        except ConnectionClosed:
            return

    def _apply(self, ws: ServerConnection, message: dict[str, Any], subscriptions: dict[tuple[str, int], int],
               logged_in: bool) -> bool:
        kind = message.get("t")
        if kind == "c":
            ok = message.get("token") == self.token
            ws.send(json.dumps({"t": "ck", "s": "OK" if ok else "NOT_OK"}))
            return ok
        if kind == "s":
            subscriptions.setdefault((message["k"], message["m"]), 0)
        elif kind == "u":
            subscriptions.pop((message["k"], message["m"]), None)
        return logged_in

    @staticmethod
    def _send_ticks(ws: ServerConnection, subscriptions: dict[tuple[str, int], int]) -> None:
        for (key, mode), sent in subscriptions.items():
            exchange, symbol = key.split("|", 1)
            subscriptions[(key, mode)] = sent + 1
            ws.send(json.dumps(tick(exchange, symbol, mode, sent + 1)))

"""A broker adapter written the way OpenAlgo's upstream adapters are, for tests/simulated_broker.py.

Synchronous methods, its own thread running a websocket-client ``WebSocketApp`` with its own
reconnect loop, subscriptions kept in ``self.subscriptions`` and replayed after each log-in, broker
strings passed on as they come, and ``self.publish_market_data(topic, data)`` with upstream topics.
The only line that differs from an upstream adapter is the import of the base class; the last
line registers it with serve.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import websocket

from shmproxy.compat import BaseBrokerWebSocketAdapter, Setting, serve_adapter

MODE_NAMES = {1: "LTP", 2: "QUOTE", 3: "DEPTH"}
RECONNECT_DELAY_S = 0.2


class SimBrokerWebSocketAdapter(BaseBrokerWebSocketAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.logger = logging.getLogger("simbroker_websocket")
        self.ws_app: websocket.WebSocketApp | None = None
        self.ws_thread: threading.Thread | None = None
        self.running = False
        self.lock = threading.Lock()

    def initialize(self, broker_name: str, user_id: str, auth_data: dict[str, str] | None = None) -> None:
        if not auth_data or not auth_data.get("auth_token") or not auth_data.get("url"):
            raise ValueError(f"Missing credentials for user {user_id}")
        self.broker_name, self.user_id = broker_name, user_id
        self.url, self.token = auth_data["url"], auth_data["auth_token"]

    def connect(self) -> None:
        self.running = True
        self.ws_thread = threading.Thread(target=self._run, name="simbroker-ws", daemon=True)
        self.ws_thread.start()

    def disconnect(self) -> None:
        self.running = False
        if self.ws_app is not None and self.connected:
            self._send({"t": "bye"})
            self.ws_app.close()
        if self.ws_thread is not None:
            self.ws_thread.join(timeout=2)
        self.connected = False
        self.cleanup_zmq()

    def subscribe(self, symbol: str, exchange: str, mode: int = 2, depth_level: int = 5) -> dict[str, Any]:
        if mode not in MODE_NAMES:
            return self._create_error_response("INVALID_MODE", f"Invalid mode {mode}")
        if symbol.startswith("UNKNOWN"):
            return self._create_error_response("SYMBOL_NOT_FOUND", f"Symbol {symbol} not found for exchange {exchange}")
        key = f"{exchange}|{symbol}"
        with self.lock:
            self.subscriptions[(symbol, exchange, mode)] = key
        if self.connected:
            self._send({"t": "s", "k": key, "m": mode})
        return self._create_success_response("Subscription requested", symbol=symbol, exchange=exchange, mode=mode)

    def unsubscribe(self, symbol: str, exchange: str, mode: int = 2) -> dict[str, Any]:
        with self.lock:
            key = self.subscriptions.pop((symbol, exchange, mode), None)
        if key is None:
            return self._create_error_response("NOT_SUBSCRIBED", f"{symbol}.{exchange} is not subscribed")
        if self.connected:
            self._send({"t": "u", "k": key, "m": mode})
        return self._create_success_response(f"Unsubscribed from {symbol}.{exchange}", symbol=symbol, exchange=exchange, mode=mode)

    # --- the broker connection, on the adapter's own thread ------------------------------------------------
    def _run(self) -> None:
        while self.running:
            self.ws_app = websocket.WebSocketApp(self.url, on_open=self._on_open, on_message=self._on_message,
                                                 on_close=self._on_close)
            self.ws_app.run_forever()
            if self.running:
                self.logger.info("simbroker connection lost, reconnecting")
                time.sleep(RECONNECT_DELAY_S)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.ws_app.send(json.dumps(message))
        except Exception as exc:
            self.logger.error(f"send failed: {exc}")

    def _on_open(self, ws: websocket.WebSocketApp) -> None:
        self._send({"t": "c", "uid": self.user_id, "token": self.token})

    def _on_close(self, ws: websocket.WebSocketApp, code: Any, reason: Any) -> None:
        self.connected = False

    def _on_message(self, ws: websocket.WebSocketApp, raw: str) -> None:
        message = json.loads(raw)
        if message.get("t") == "ck":
            self.connected = message.get("s") == "OK"
            if self.connected:
                with self.lock:
                    for (symbol, exchange, mode), key in self.subscriptions.items():
                        self._send({"t": "s", "k": key, "m": mode})
        elif message.get("t") == "tk":
            self._on_tick(message)

    def _on_tick(self, message: dict[str, Any]) -> None:
        mode = int(message["m"])
        data: dict[str, Any] = {"mode": mode, "ltp": message["lp"], "timestamp": message["ft"]}
        if mode >= 2:
            data.update(open=message["o"], high=message["h"], low=message["l"], close=message["c"],
                        volume=message["v"], average_price=message["ap"], last_quantity=message["ltq"],
                        last_trade_time=message["ltt"])
        if mode == 3:
            data.update(total_buy_quantity=message["tbq"], total_sell_quantity=message["tsq"], depth={
                side: [{"price": message[f"{p}p{i}"], "quantity": message[f"{p}q{i}"], "orders": message[f"{p}o{i}"]}
                       for i in range(1, 6)]
                for side, p in (("buy", "b"), ("sell", "s"))
            })
        self.publish_market_data(f"{message['e']}_{message['ts']}_{MODE_NAMES[mode]}", data)


SimBrokerAdapter = serve_adapter(SimBrokerWebSocketAdapter, name="simbroker", settings=(
    Setting("SIMBROKER_USER_ID", "client code", required=True),
    Setting("SIMBROKER_AUTH_TOKEN", "feed token", required=True),
    Setting("SIMBROKER_URL", "the simulated broker's ws:// address", required=True),
))

"""``BaseBrokerWebSocketAdapter`` with upstream OpenAlgo's interface, publishing into the ring.

OpenAlgo's streaming adapters (websocket_proxy/base_adapter.py upstream) subclass one base whose
``publish_market_data(topic, data)`` sent ZeroMQ messages. This base keeps that interface and its
semantics (synchronous methods, adapters run their own threads) and writes the ticks to the
shared-memory ring instead, so an upstream adapter ports by changing its import.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

from ..core.publisher import SharedMemoryPublisher
from .sink import RingSink


class BaseBrokerWebSocketAdapter(ABC):
    """Base of upstream-style broker adapters.

    Subclasses implement :meth:`initialize`, :meth:`connect`, :meth:`disconnect`,
    :meth:`subscribe` and :meth:`unsubscribe` (modes 1 LTP, 2 Quote, 3 Depth) and call
    :meth:`publish_market_data` from their own threads. Attributes upstream adapters rely on:
    ``logger``, ``subscriptions``, ``connected``, ``running``, ``lock``; ``shm_sink`` counts what
    was published (``shm_sink.stats()``).
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger("broker_adapter")  # upstream's name; adapters usually set their own
        self.subscriptions: dict[Any, Any] = {}
        self.connected = False
        self.running = False
        self.lock = threading.Lock()
        self.zmq_port: int | None = None  # upstream adapters log it; there is no ZeroMQ socket any more
        self.shm_sink = RingSink(type(self).__name__)

    # --- the interface upstream's proxy calls --------------------------------------------------------
    @abstractmethod
    def initialize(self, broker_name: str, user_id: str, auth_data: dict[str, str] | None = None) -> None:
        """Prepare the broker connection for ``user_id`` with ``auth_data`` (credentials)."""

    @abstractmethod
    def connect(self) -> None:
        """Connect to the broker, usually by starting a thread; return without waiting for it."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the broker connection and stop the adapter's threads."""

    @abstractmethod
    def subscribe(self, symbol: str, exchange: str, mode: int = 2, depth_level: int = 5) -> dict[str, Any]:
        """Ask for ``symbol`` at ``mode``; return a success or error response dict."""

    @abstractmethod
    def unsubscribe(self, symbol: str, exchange: str, mode: int = 2) -> dict[str, Any]:
        """Stop ``symbol`` at ``mode``; return a success or error response dict."""

    # --- what adapters call --------------------------------------------------------------------------
    def publish_market_data(self, topic: str, data: dict[str, Any]) -> None:
        """Write one tick to the ring. ``topic`` is ``EXCHANGE_SYMBOL_MODE`` (symbol, exchange and mode
        in ``data`` win over it); values may be strings. Never raises: bad input is counted and logged."""
        self.shm_sink.publish(topic, data)

    def use_publisher(self, publisher: SharedMemoryPublisher | None) -> None:
        """Publish through ``publisher`` (serve hands over its own) instead of opening the ring
        named by ``SHM_BUFFER_NAME`` on the first tick."""
        self.shm_sink.use(publisher)

    def cleanup_zmq(self) -> None:
        """Upstream's name for releasing the transport, which adapters call in ``disconnect()``:
        closes the ring if this adapter opened it; later ticks are ignored."""
        self.shm_sink.close()

    def _create_success_response(self, message: str, **kwargs: Any) -> dict[str, Any]:
        return {"status": "success", "message": message, **kwargs}

    def _create_error_response(self, code: str, message: str) -> dict[str, Any]:
        return {"status": "error", "code": code, "message": message}

"""One connected client: its session state and its outbox of pending frames.

Frames due to a client queue in order, up to ``max_queue`` (``WS_MAX_QUEUE``) of them. Past that, the
client is behind: further frames go to a conflation map keyed by ``(exchange, symbol, mode)`` where a
newer tick replaces an older one still waiting (a trader wants the latest price, not a backlog).
:meth:`Client.flush` writes everything pending in one ``transport.write`` unless the client's socket
buffer is above its high-water mark; then frames wait, and the time the client has been backed up
is tracked so that a client stuck for too long can be closed.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from . import frames

_ids = itertools.count(1)
REQUEST_RATE = 100.0  # requests a second a client may make on average...
REQUEST_BURST = 500.0  # ...and in a burst (a UI subscribing a watchlist one frame per symbol)


class Client:
    __slots__ = (
        "id", "connection", "transport", "peer", "address", "user_id", "authenticated", "queued", "latest", "max_queue",
        "high_water", "backlogged_since", "delivered", "conflated", "conflating", "auth_failures", "_tokens", "_refilled",
    )

    def __init__(self, connection: Any, max_queue: int, high_water: int) -> None:
        self.id = next(_ids)
        self.connection = connection
        self.transport = connection.transport
        self.peer = _peer(connection)
        self.address = self.peer.rpartition(":")[0] or self.peer
        self.user_id: str | None = None
        self.authenticated = False
        self.queued: list[bytes] = []  # in order, at most max_queue
        self.latest: dict[tuple[str, str, int], bytes] = {}  # conflated, once the queue is full
        self.max_queue = max_queue
        self.high_water = high_water
        self.backlogged_since: float | None = None
        self.delivered = 0
        self.conflated = 0
        self.conflating = False  # reported state: behind and conflating, as last logged
        self.auth_failures = 0
        self._tokens = REQUEST_BURST
        self._refilled = time.monotonic()

    @property
    def pending(self) -> bool:
        return bool(self.queued or self.latest)

    def queue(self, key: tuple[str, str, int], frame: bytes) -> None:
        """Queue a frame; once ``max_queue`` wait, keep only the newest per key."""
        if len(self.queued) < self.max_queue and not self.latest:
            self.queued.append(frame)
            return
        latest = self.latest
        if key in latest:
            self.conflated += 1
        latest[key] = frame

    def drop(self, key: tuple[str, str, int]) -> None:
        """Forget a conflated frame for a key the client no longer holds."""
        self.latest.pop(key, None)

    def flush(self) -> bool:
        """Write everything pending in one write; False when it must wait (socket backed up)."""
        if not self.queued and not self.latest:
            return True
        if not frames.writable(self.connection):
            self.queued.clear()  # closing: nothing more may be written
            self.latest.clear()
            return True
        if self.transport.get_write_buffer_size() > self.high_water:
            if self.backlogged_since is None:
                self.backlogged_since = time.monotonic()
            return False
        queued, latest = self.queued, self.latest
        if latest:
            queued.extend(latest.values())
            latest.clear()
        self.transport.write(b"".join(queued))
        self.delivered += len(queued)
        queued.clear()
        self.backlogged_since = None
        return True

    def backlogged_for(self, now: float) -> float:
        return 0.0 if self.backlogged_since is None else now - self.backlogged_since

    def allow_request(self) -> bool:
        """Token bucket: REQUEST_RATE requests a second on average, bursts up to REQUEST_BURST."""
        now = time.monotonic()
        self._tokens = min(REQUEST_BURST, self._tokens + (now - self._refilled) * REQUEST_RATE)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def __repr__(self) -> str:
        return f"client#{self.id}({self.peer})"


def _peer(connection: Any) -> str:
    address = getattr(connection, "remote_address", None)
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "?"

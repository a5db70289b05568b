"""A NATS connection that never gives up, and says what it is doing.

nats-py does the reconnecting (every server restart, forever: ``max_reconnect_attempts=-1``),
re-subscribes after it and buffers what is published meanwhile; this wrapper turns its callbacks
into a state for the status line, counters and one-line events for the log.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from ..errors import ShmProxyError

if TYPE_CHECKING:
    from nats.aio.client import Client

DEFAULT_URL = "nats://127.0.0.1:4222"
_SCHEMES = ("nats", "tls", "ws", "wss")
RECONNECT_WAIT_S = 0.5  # between attempts to reach a server that is down
PING_S = 5  # with 2 unanswered pings, a silently dead link is noticed within about 15 s
CLOSE_S = 3.0  # at exit, at most this long to hand over what is buffered


class BridgeSetupError(ShmProxyError):
    """The bridge cannot start: nats-py missing, or a NATS URL it cannot use."""

    exit_code = 2


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise BridgeSetupError(f"--nats {url!r} is not a NATS URL: use e.g. nats://127.0.0.1:4222 ({', '.join(_SCHEMES)})")
    return url


def require_nats() -> None:
    """Fail with one line naming the extra to install when nats-py is missing."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise BridgeSetupError("shmproxy bridge needs nats-py: pip install 'shmproxy[bridge]'") from None


class NatsLink:
    """One connection to ``url``; ``connected`` is set while it is up.

    ``on_event`` hears one line per change: connected, cannot reach, disconnected, reconnected.
    ``slow_consumer`` counts messages nats-py dropped because this process read too slowly.
    """

    def __init__(self, url: str, name: str, on_event: Callable[[str], None] = lambda line: None) -> None:
        self.url = url
        self.name = name
        self.connected = asyncio.Event()
        self.state = "connecting"
        self.reconnects = 0
        self.disconnects = 0
        self.slow_consumer = 0
        self.last_error = ""
        self._on_event = on_event
        self._client: Client | None = None
        self._told_unreachable = False

    async def connect(self) -> Client:
        """Connect, retrying until a server answers; the client then reconnects by itself."""
        import nats

        self._client = await nats.connect(
            self.url, name=self.name, max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT_S,
            ping_interval=PING_S, max_outstanding_pings=2, drain_timeout=CLOSE_S,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
        )
        self._up(f"connected to {self.url}")
        return self._client

    async def close(self) -> None:
        """Hand over what is buffered (bounded by CLOSE_S) and close."""
        client = self._client
        if client is None or client.is_closed:
            return
        self.state = "closing"  # so that the disconnection this causes is not reported as an outage
        try:
            if client.is_connected:
                await asyncio.wait_for(client.drain(), CLOSE_S + 1)
        except Exception:  # a server gone mid-drain: nothing more can be delivered anyway
            pass
        finally:
            await client.close()
            self.state = "closed"
            self.connected.clear()

    def tell(self, event: str) -> None:
        """Report ``event`` as one line (the runners' own milestones go out this way too)."""
        self._on_event(event)

    def _up(self, event: str) -> None:
        self.state = "connected"
        self.last_error = ""
        self._told_unreachable = False
        self.connected.set()
        self.tell(event)

    async def _on_error(self, exc: Exception) -> None:
        from nats.errors import SlowConsumerError

        if isinstance(exc, SlowConsumerError):
            self.slow_consumer += 1
            return
        self.last_error = str(exc) or type(exc).__name__
        if not self.connected.is_set() and not self._told_unreachable:
            self._told_unreachable = True  # once per outage: attempts repeat every RECONNECT_WAIT_S
            self.tell(f"cannot reach {self.url} ({self.last_error}); retrying every {RECONNECT_WAIT_S:g} s")

    async def _on_disconnected(self) -> None:
        if self.state != "connected":
            return  # nats-py also reports failed attempts while it is still reconnecting
        self.state = "disconnected"
        self.disconnects += 1
        self.connected.clear()
        self.tell(f"disconnected from {self.url}; reconnecting")

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._up(f"reconnected to {self.url}")

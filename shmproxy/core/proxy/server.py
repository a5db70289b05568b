"""serve: the WebSocket server around the hub and the ring pump.

This module only moves bytes: it accepts connections (websockets), hands frames to the
:class:`~shmproxy.core.proxy.hub.Hub`, sends its replies, runs the ring pump and a housekeeping
task (flushing backed-up clients, closing stuck ones), and shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from ..._version import __version__
from ..errors import ShmProxyError
from ..segment import Segment
from ..settings import Settings
from ..subscriber import SharedMemorySubscriber
from . import frames, health
from .client import Client
from .hub import Close, Hub
from .pump import RingPump

log = logging.getLogger("shmproxy.serve")

MAX_FRAME_BYTES = 64 * 1024  # a client request larger than this is closed with 1009 (message too big)
HIGH_WATER_BYTES_PER_FRAME = 512  # WS_MAX_QUEUE frames of about this size may wait in a socket buffer
HOUSEKEEPING_INTERVAL_S = 0.1
CLOSE_TIMEOUT_S = 2.0
SLOW_CLIENT_CLOSE = 1008
SOCKET_SEND_BUFFER = 128 * 1024


class ServeError(ShmProxyError):
    """serve cannot start (port in use, ring unusable, ...)."""

    exit_code = 3


@dataclass
class ServeStats:
    started: bool = False
    primed: int = 0


class ProxyServer:
    """Runs the proxy: ``await start()``, then ``await stop()`` (idempotent)."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.stats = ServeStats()
        self._server: Server | None = None
        self._subscriber: SharedMemorySubscriber | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing: set[asyncio.Task] = set()  # fire-and-forget closes, referenced until done
        # Plain HTTP GETs answered on the WebSocket port: path -> () -> (status, content type, body).
        self.routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}
        self.on_batch: Callable[[float], None] | None = None
        self.reuse_port = False  # several worker processes share one port (SO_REUSEPORT)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Attach to (or create) the ring, prime the last values, then listen."""
        self._subscriber = open_ring(self.settings)
        pump = RingPump(self._subscriber, self.hub, self.on_batch)
        self.stats.primed = pump.prime()
        s = self.settings
        try:
            self._server = await serve(
                self._handle, s.websocket_host, s.websocket_port,
                compression=None,  # per-message deflate costs far more than it saves on small ticks
                max_size=MAX_FRAME_BYTES,
                ping_interval=s.ws_ping_interval or None,
                ping_timeout=s.ws_ping_timeout,
                close_timeout=CLOSE_TIMEOUT_S,
                process_request=self._admit,
                server_header=f"shmproxy/{__version__}",
                reuse_port=self.reuse_port,
            )
        except OSError as exc:
            self._subscriber.close()
            raise ServeError(_bind_problem(s.websocket_host, s.websocket_port, exc)) from None
        self._tasks = [asyncio.create_task(pump.run(), name="ring-pump"),
                       asyncio.create_task(self._housekeeping(), name="housekeeping")]
        self.stats.started = True
        log.info("serving ws://%s:%d from ring '%s' (%d ticks primed)",
                 s.websocket_host, self.port, self._subscriber.buffer_name, self.stats.primed)

    async def stop(self) -> None:
        """Stop accepting, close clients with 1001 (going away), release the ring."""
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S + 1)
            except asyncio.TimeoutError:
                log.warning("some clients did not close in time; dropped")
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    # --- connections --------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def ring_report(self) -> dict[str, Any]:
        sub = self._subscriber
        if sub is None or sub.segment.fd < 0:
            return health.ring_report(None, 0, 0, 0)
        return health.ring_report(sub.segment.info(), sub.lag(), sub.laps, sub.lost)

    def _admit(self, connection: ServerConnection, request: Any) -> Any:
        """Answer plain HTTP routes (/health, /metrics); refuse (503) past the client limit."""
        route = self.routes.get(request.path.partition("?")[0])
        if route is not None:
            status, content_type, body = route()
            headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                               ("Cache-Control", "no-store")])
            return Response(status, HTTPStatus(status).phrase, headers, body)
        if len(self.hub.clients) >= self.settings.max_websocket_connections:
            log.warning("refused a connection: %d clients already", len(self.hub.clients))
            return connection.respond(503, "too many clients\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        _limit_socket_buffer(connection)
        max_queue = self.settings.ws_max_queue
        client = Client(connection, max_queue, max_queue * HIGH_WATER_BYTES_PER_FRAME)
        self.hub.add(client)
        log.info("%r connected", client)
        deadline = asyncio.create_task(self._auth_deadline(client))
        try:
            await self._serve_client(client)
        except ConnectionClosed:
            pass
        finally:
            deadline.cancel()
            self.hub.remove(client)
            log.info("%r closed: %s", client, _close_summary(connection))

    async def _serve_client(self, client: Client) -> None:
        connection = client.connection
        async for message in connection:
            try:
                replies = await self.hub.handle(client, message)
            except Close as close:
                log.warning("closing %r: %s", client, close.reason)
                await connection.close(close.code, close.reason)
                return
            for reply in replies:
                await _reply(connection, reply)
            if client.pending:
                self.hub.flush({client})

    async def _auth_deadline(self, client: Client) -> None:
        await asyncio.sleep(self.settings.ws_auth_grace_seconds)
        if not client.authenticated:
            log.warning("closing %r: not authenticated within %gs", client, self.settings.ws_auth_grace_seconds)
            await client.connection.close(4401, "auth timeout")

    async def _housekeeping(self) -> None:
        """Retry backed-up clients' outboxes; close those stuck past the ping timeout."""
        s = self.settings
        stuck_after = (s.ws_ping_interval or 0) + s.ws_ping_timeout
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            waiting = [c for c in self.hub.clients.values() if c.pending]
            self.hub.flush(set(waiting))
            now = time.monotonic()
            for client in waiting:
                if client.backlogged_for(now) > stuck_after:
                    self.hub.counters.slow_closed += 1
                    log.warning("closing %r: too slow, backed up for over %gs", client, stuck_after)
                    self.hub.counters.dropped += len(client.queued) + len(client.latest)
                    client.queued.clear()
                    client.latest.clear()
                    client.backlogged_since = None
                    task = asyncio.create_task(client.connection.close(SLOW_CLIENT_CLOSE, "client too slow"))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)


async def _reply(connection: ServerConnection, reply: dict[str, Any]) -> None:
    """Send a reply at once, ahead of queued ticks. websockets' send() would wait for the socket
    buffer to drain, which never happens while the pump keeps a slow client's buffer full: the
    client could then never get the ack of the unsubscribe meant to relieve it."""
    if frames.writable(connection):
        connection.transport.write(frames.json_frame(reply))
    else:
        await connection.send(json.dumps(reply, separators=(",", ":")))


def _limit_socket_buffer(connection: ServerConnection) -> None:
    """Cap the kernel's send buffer: megabytes of stale ticks queued in the kernel would reach a
    slow client seconds late, where a small buffer backs up into our queue, which conflates."""
    sock = connection.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)


def _close_summary(connection: ServerConnection) -> str:
    """What was sent and received in the closing handshake, as websockets words it."""
    try:
        return str(connection.close_exc)
    except Exception:  # the handshake has not finished (serve is stopping)
        return "connection dropped"


def open_ring(settings: Settings) -> SharedMemorySubscriber:
    """Attach to the ring, creating it first if it does not exist (serve never destroys it)."""
    Segment.create_or_attach(settings.shm_buffer_name, None, settings.shm_buffer_size).close()
    return SharedMemorySubscriber(settings.shm_buffer_name, start="oldest")


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is already in use (another serve running?)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: that address does not belong to this machine"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"

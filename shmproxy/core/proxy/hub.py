"""The proxy's heart: client sessions, subscriptions, last values and the tick fan-out.

No sockets here: the server hands each client frame to :meth:`Hub.handle` and sends the replies it
returns; the ring pump hands ticks to :meth:`Hub.dispatch`, which queues pre-built frames into
subscribers' outboxes and returns the clients to flush. Everything runs on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..records import Tick
from . import protocol as p
from .client import Client
from .frames import json_frame
from .lastvalue import LastValueCache
from .registry import SubscriptionRegistry, UpstreamChange

log = logging.getLogger("shmproxy.serve")

MAX_AUTH_FAILURES = 5  # wrong keys on one connection before it is closed
AUTH_FAILURE_DELAY_S = 0.25  # doubled with each failure on a connection, to slow guessing down
PEER_FAILURE_WINDOW_S = 60.0  # failures from one address within this window...
PEER_FAILURE_LIMIT = 20  # ...past this many make every further attempt from it wait the longest delay
MAX_AUTH_DELAY_S = 2.0


@dataclass
class Counters:
    """What operators read in /health and /metrics."""

    ticks_in: int = 0
    frames_encoded: int = 0
    deliveries: int = 0
    conflated: int = 0
    slow_closed: int = 0
    dropped: int = 0  # frames discarded when a stuck client was closed
    auth_failures: int = 0
    requests: int = 0
    errors: int = 0
    rate_limited: int = 0


@dataclass
class HubConfig:
    broker: str = "shmproxy"
    max_symbols: int = 1000
    adapter_status: Callable[[], str] = field(default=lambda: "ring")
    supported_brokers: Callable[[], list[str]] = field(default=lambda: [])


class Close(Exception):
    """Raised by :meth:`Hub.handle` when the connection must be closed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Hub:
    def __init__(self, verify: Callable[[str], Any], config: HubConfig | None = None,
                 upstream: Callable[[list[UpstreamChange]], None] | None = None,
                 check_instrument: Callable[[str, str], str | None] | None = None) -> None:
        """``verify`` is an async callable returning a user id or None for an API key;
        ``upstream`` receives changes of what the broker must be subscribed to;
        ``check_instrument`` returns why an instrument cannot be served, or None."""
        self.config = config or HubConfig()
        self.registry = SubscriptionRegistry()
        self.cache = LastValueCache()
        self.clients: dict[int, Client] = {}
        self.counters = Counters()
        self.last_tick: float | None = None  # time.monotonic() of the last tick dispatched
        self._peer_failures: dict[str, list[float]] = {}
        self._verify = verify
        self._upstream = upstream or (lambda changes: None)
        self._check_instrument = check_instrument or (lambda exchange, symbol: None)

    # --- clients ---------------------------------------------------------------------------------
    def add(self, client: Client) -> None:
        self.clients[client.id] = client

    def remove(self, client: Client) -> None:
        """Forget a client and release everything it held (one client never stops another's feed)."""
        self.clients.pop(client.id, None)
        self.counters.conflated += client.conflated
        self._notify(self.registry.remove_client(client))

    # --- requests ----------------------------------------------------------------------------------
    async def handle(self, client: Client, frame: str | bytes) -> list[dict[str, Any]]:
        """Process one client frame; return the replies to send, in order.

        Ticks to replay are queued for the client; the caller flushes them after sending
        the replies, so an ack always precedes its replayed ticks. Raises :class:`Close`.
        """
        self.counters.requests += 1
        if not client.allow_request():
            self.counters.rate_limited += 1
            return [p.error_reply(p.RATE_LIMITED, "too many requests: slow down")]
        try:
            request = p.parse_frame(frame)
            if isinstance(request, p.Authenticate):
                return [await self._authenticate(client, request)]
            if not client.authenticated:
                raise p.ProtocolError(p.NOT_AUTHENTICATED, "You must authenticate first")
            return [self._dispatch_request(client, request)]
        except p.ProtocolError as exc:
            self.counters.errors += 1
            return [p.error_reply(exc.code, exc.message)]
        except (Close, asyncio.CancelledError):
            raise
        except Exception:  # a bug must cost one error frame, never the connection or the log's sanity
            self.counters.errors += 1
            log.exception("internal error handling a request from %r", client)
            return [p.error_reply(p.SERVER_ERROR, "internal error: the request was not processed")]

    def _dispatch_request(self, client: Client, request: p.Request) -> dict[str, Any]:
        if isinstance(request, p.Subscribe):
            return self._subscribe(client, request)
        if isinstance(request, p.Unsubscribe):
            return self._unsubscribe(client, request)
        if isinstance(request, p.Ping):
            return p.pong_reply(request)
        if isinstance(request, p.GetBrokerInfo):
            return p.broker_info_reply(self.config.broker, self.config.adapter_status(), client.user_id or "")
        return p.supported_brokers_reply(self.config.supported_brokers() or [self.config.broker])

    async def _authenticate(self, client: Client, request: p.Authenticate) -> dict[str, Any]:
        user_id = await self._verify(request.api_key)
        if user_id is not None:
            client.authenticated, client.user_id = True, user_id
            log.info("%r authenticated as %s", client, user_id)
            return p.auth_reply(self.config.broker, user_id)
        client.auth_failures += 1
        self.counters.auth_failures += 1
        recent = self._record_peer_failure(client.address)
        log.warning("auth failed for %r (%d on this connection, %d from %s in %gs)", client,
                    client.auth_failures, recent, client.address, PEER_FAILURE_WINDOW_S)
        if client.auth_failures >= MAX_AUTH_FAILURES:
            raise Close(4403, "too many failed authentications")
        delay = AUTH_FAILURE_DELAY_S * 2 ** (client.auth_failures - 1)
        await asyncio.sleep(MAX_AUTH_DELAY_S if recent > PEER_FAILURE_LIMIT else min(delay, MAX_AUTH_DELAY_S))
        raise p.ProtocolError(p.AUTHENTICATION_ERROR, "Invalid API key")

    def _record_peer_failure(self, address: str) -> int:
        """Remember a failure from ``address``; return how many it made in the window."""
        now = time.monotonic()
        if len(self._peer_failures) > 10_000:  # bounded: forget the quiet addresses
            self._peer_failures = {a: t for a, t in self._peer_failures.items() if now - t[-1] < PEER_FAILURE_WINDOW_S}
        times = [t for t in self._peer_failures.get(address, []) if now - t < PEER_FAILURE_WINDOW_S][-1000:]
        times.append(now)
        self._peer_failures[address] = times
        return len(times)

    def _subscribe(self, client: Client, request: p.Subscribe) -> dict[str, Any]:
        broker = self.config.broker
        entries, changes = [], []
        for instrument in request.instruments:
            problem = instrument.error or self._check_instrument(instrument.exchange, instrument.symbol)
            if problem is None and not self.registry.holds(client, instrument.key) \
                    and self.registry.count(client) >= self.config.max_symbols:
                problem = f"subscription limit reached ({self.config.max_symbols} per connection)"
            if problem:
                entries.append(p.failed_entry(instrument, problem, broker))
                continue
            changes.append(self.registry.add(client, instrument.key))
            entries.append(p.subscribed_entry(instrument, request.depth, broker))
            self._replay(client, instrument)
        self._notify([c for c in changes if c])
        return p.subscribe_reply(entries, broker, request.request_id)

    def _unsubscribe(self, client: Client, request: p.Unsubscribe) -> dict[str, Any]:
        broker = self.config.broker
        if request.everything:
            held = sorted(self.registry.keys_of(client))
            self._notify(self.registry.remove_client(client))
            done = [p.unsubscribed_entry(*key, broker) for key in held]
            return p.unsubscribe_reply(done, [], broker, request.request_id)
        successful, failed, changes = [], [], []
        for instrument in request.instruments:
            if instrument.error:
                failed.append(p.failed_entry(instrument, instrument.error, broker))
            elif not self.registry.holds(client, instrument.key):
                failed.append(p.failed_entry(instrument, "not subscribed", broker))
            else:
                changes.append(self.registry.remove(client, instrument.key))
                client.drop(instrument.key)
                successful.append(p.unsubscribed_entry(*instrument.key, broker))
        self._notify([c for c in changes if c])
        return p.unsubscribe_reply(successful, failed, broker, request.request_id)

    def _replay(self, client: Client, instrument: p.Instrument) -> None:
        tick = self.cache.get(instrument.exchange, instrument.symbol, instrument.mode)
        if tick is not None:
            client.queue(instrument.key, self.encode(tick, instrument.mode))

    def _notify(self, changes: list[UpstreamChange]) -> None:
        if changes:
            self._upstream(changes)

    # --- ticks (hot path) ----------------------------------------------------------------------------
    def encode(self, tick: Tick, mode: int) -> bytes:
        """The market_data frame of ``tick`` for subscribers of ``mode``."""
        self.counters.frames_encoded += 1
        return json_frame({
            "type": "market_data", "symbol": tick.symbol, "exchange": tick.exchange, "mode": mode,
            "data": tick.to_dict(mode), "broker": self.config.broker,
        })

    def dispatch(self, ticks: list[Tick]) -> set[Client]:
        """Queue each tick, encoded once per mode, for every subscriber; return clients to flush."""
        index = self.registry.index
        update = self.cache.update
        dirty: set[Client] = set()
        for tick in ticks:
            update(tick)
            exchange, symbol = tick.exchange, tick.symbol
            for mode in range(1, tick.mode + 1):
                key = (exchange, symbol, mode)
                subscribers = index.get(key)
                if subscribers:
                    frame = self.encode(tick, mode)
                    for client in subscribers:
                        client.queue(key, frame)
                    dirty.update(subscribers)
        self.counters.ticks_in += len(ticks)
        self.last_tick = time.monotonic()
        return dirty

    def conflated(self) -> int:
        """Frames replaced by newer ones before being written, over all clients ever connected."""
        return self.counters.conflated + sum(c.conflated for c in self.clients.values())

    def flush(self, clients: set[Client]) -> None:
        """Write each client's pending frames (one write per client); backed-up clients conflate."""
        for client in clients:
            before = client.delivered
            behind = bool(client.latest)
            client.flush()
            self.counters.deliveries += client.delivered - before
            if behind and not client.conflating:
                client.conflating = True
                log.info("%r is behind: conflating to the newest tick per instrument", client)
            elif client.conflating and not client.pending:
                client.conflating = False
                log.info("%r caught up (%d frames conflated so far)", client, client.conflated)

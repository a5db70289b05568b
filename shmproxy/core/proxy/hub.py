"""The proxy's heart: client sessions, subscriptions, last values and the tick fan-out.

No sockets here: the server hands each client frame to :meth:`Hub.handle` and sends the replies it
returns; the ring pump hands ticks to :meth:`Hub.dispatch`, which queues pre-built frames into
subscribers' outboxes and returns the clients to flush. Everything runs on one event loop.
"""

from __future__ import annotations

import logging
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


@dataclass
class Counters:
    """What operators read in /health and /metrics."""

    ticks_in: int = 0
    frames_encoded: int = 0
    deliveries: int = 0
    conflated: int = 0
    slow_closed: int = 0
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
        if user_id is None:
            client.auth_failures += 1
            self.counters.auth_failures += 1
            log.warning("auth failed for %r (%d on this connection)", client, client.auth_failures)
            if client.auth_failures >= MAX_AUTH_FAILURES:
                raise Close(4403, "too many failed authentications")
            raise p.ProtocolError(p.AUTHENTICATION_ERROR, "Invalid API key")
        client.authenticated, client.user_id = True, user_id
        log.info("%r authenticated as %s", client, user_id)
        return p.auth_reply(self.config.broker, user_id)

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
        return dirty

    def conflated(self) -> int:
        """Frames replaced by newer ones before being written, over all clients ever connected."""
        return self.counters.conflated + sum(c.conflated for c in self.clients.values())

    def flush(self, clients: set[Client]) -> None:
        """Write each client's outbox (one write per client); backed-up clients keep conflating."""
        for client in clients:
            before = client.delivered
            client.flush()
            self.counters.deliveries += client.delivered - before

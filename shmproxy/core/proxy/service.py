"""serve as a whole: the proxy server plus the broker adapters, started and stopped in order."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import time
from typing import Any, Callable, Iterable, Mapping

from ..adapters.manager import AdapterManager
from ..adapters.registry import installed
from ..openalgo.database import OpenAlgoDatabase
from ..openalgo.keys import CachedKeyVerifier
from ..settings import Settings
from . import health
from .auth import CompositeVerifier, KeyVerifier, Verifier
from .hub import Hub, HubConfig
from .metrics import CONTENT_TYPE, ProxyMetrics
from .server import ProxyServer

log = logging.getLogger("shmproxy.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_verifier(keys: Iterable[str], openalgo: OpenAlgoDatabase | None, cache_seconds: float) -> CompositeVerifier:
    """The configured keys (constant time), then OpenAlgo's database when the settings point at it."""
    verifiers: list[Verifier] = [KeyVerifier(keys)]
    if openalgo is not None:
        verifiers.append(CachedKeyVerifier(openalgo.key_owner, cache_seconds))
        log.info("API keys are also checked against OpenAlgo's database %s (an accepted key is trusted for %gs)",
                 openalgo.path, cache_seconds)
    return CompositeVerifier(verifiers)


class ProxyService:
    """The proxy server and its adapters. Checks adapter settings on construction (SettingsError).

    ``adapters`` defaults to running the enabled adapters here; a serve worker passes a stand-in
    that forwards subscription changes to the supervisor, where the adapters run once for all.
    """

    def __init__(self, settings: Settings, keys: Iterable[str], config: Mapping[str, str],
                 adapters: AdapterManager | None = None) -> None:
        self.settings = settings
        self.config = config
        self.openalgo = OpenAlgoDatabase.from_config(config)  # checked first: its problems are its own
        self.adapters = adapters if adapters is not None else AdapterManager.from_config(config)
        self.health_extra: Callable[[], dict[str, Any]] | None = None  # more /health fields (workers)
        verifier = key_verifier(keys, self.openalgo, settings.key_cache_seconds)
        hub_config = HubConfig(
            broker=self.adapters.broker,
            max_symbols=settings.max_symbols_per_websocket,
            adapter_status=lambda: self.adapters.summary(),
            supported_brokers=lambda: sorted(installed(config)),
        )
        self.hub = Hub(verifier.verify, hub_config, upstream=self._on_upstream, check_instrument=self._check_instrument)
        self.server = ProxyServer(settings, self.hub)
        self.metrics = ProxyMetrics(self.health)
        self.server.on_batch = self.metrics.batch_seconds.observe
        self.server.routes.update({"/health": self._health_route, "/metrics": self._metrics_route})
        self._started = time.monotonic()

    def health(self) -> dict[str, Any]:
        """The /health document (also what /metrics and ``shmproxy status`` show)."""
        report = health.build(self.hub, self.server.ring_report(), self.adapters.statuses(), self.server.accepting,
                              self.settings.stale_feed_seconds, self._started)
        if self.health_extra is not None:
            report.update(self.health_extra())
        return report

    def _health_route(self) -> tuple[int, str, bytes]:
        report = self.health()
        status = 503 if report["status"] == health.DOWN else 200
        return status, "application/json", json.dumps(report).encode()

    def _metrics_route(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE, self.metrics.render()

    def _on_upstream(self, changes) -> None:
        self.adapters.on_upstream(changes)

    def _check_instrument(self, exchange: str, symbol: str) -> str | None:
        return self.adapters.check_instrument(exchange, symbol)

    async def start(self) -> None:
        """Ring and socket first (the checks that can fail), then the adapters."""
        await self.server.start()
        await self.adapters.start(self.settings)

    async def stop(self) -> None:
        await self.server.stop()
        await self.adapters.stop()


async def run_until_stopped(service: ProxyService, on_ready: Callable[[ProxyService], None] | None = None,
                            stop: asyncio.Event | None = None,
                            signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Start ``service``, call ``on_ready``, serve until one of ``signals`` (or ``stop``), then stop it."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
        if on_ready is not None:
            on_ready(service)
        await stop.wait()
        log.info("shutting down")
    finally:
        await service.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)

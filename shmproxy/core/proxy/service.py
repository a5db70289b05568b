"""Running serve as a service: build the hub from settings, start, wait for a stop signal, stop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from typing import Callable, Iterable

from .auth import KeyVerifier
from .hub import Hub, HubConfig
from .server import ProxyServer

log = logging.getLogger("shmproxy.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_until_stopped(server: ProxyServer, on_ready: Callable[[ProxyServer], None] | None = None,
                            stop: asyncio.Event | None = None) -> None:
    """Start ``server``, call ``on_ready``, serve until SIGINT/SIGTERM (or ``stop``), then stop it."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def build_server(settings, keys: Iterable[str]) -> ProxyServer:
    """A proxy server for ``settings`` accepting ``keys``."""
    verifier = KeyVerifier(keys)
    hub = Hub(verifier.verify, HubConfig(max_symbols=settings.max_symbols_per_websocket))
    return ProxyServer(settings, hub)

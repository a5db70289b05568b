"""``shmproxy serve``: the OpenAlgo-compatible WebSocket proxy on the ring."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Optional

import typer

from ..core.proxy.auth import read_key_file
from ..core.proxy.server import ProxyServer
from ..core.proxy.service import build_server, is_loopback, run_until_stopped
from .app import app
from .common import EnvFileOption, console, fail, load_settings, warn


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind [env WEBSOCKET_HOST; default 127.0.0.1].", show_default=False),
    port: Optional[int] = typer.Option(None, "--port", help="Port to bind [env WEBSOCKET_PORT; default 8765].", show_default=False),
    buffer: Optional[str] = typer.Option(None, "--buffer", help="Ring to read [env SHM_BUFFER_NAME; default ws_proxy_buffer].", show_default=False),
    env_file: Optional[Path] = EnvFileOption,
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File with accepted API keys, one a line (adds to SHMPROXY_API_KEYS).", dir_okay=False, show_default=False),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Serve ticks from the ring to OpenAlgo WebSocket clients (SDK, browser UI, scripts).

    Clients connect to ws://HOST:PORT, authenticate with an API key and subscribe to instruments
    at LTP, Quote or Depth; every tick any publisher puts on the ring reaches its subscribers. The
    ring is created if absent and never destroyed. Ctrl-C or SIGTERM stops it cleanly.

    Examples:

      SHMPROXY_API_KEYS=mykey shmproxy serve

      shmproxy serve --env-file /path/to/openalgo/.env --api-key-file keys.txt --port 8765
    """
    _configure_logging(log_level)
    settings = load_settings(env_file, websocket_host=host, websocket_port=port, shm_buffer_name=buffer)
    keys = list(settings.api_keys) + (read_key_file(api_key_file) if api_key_file else [])
    if not keys:
        fail("no API keys configured: set SHMPROXY_API_KEYS or pass --api-key-file", 2)
    if not is_loopback(settings.websocket_host):
        warn(f"listening on {settings.websocket_host}, reachable from other machines: put TLS in front of it")
    server = build_server(settings, keys)
    asyncio.run(run_until_stopped(server, on_ready=_announce))


def _announce(server: ProxyServer) -> None:
    s = server.settings
    console.print(f"[bold green]shmproxy serving[/] ws://{s.websocket_host}:{server.port}  "
                  f"ring [cyan]{s.shm_buffer_name}[/]  (Ctrl-C to stop)")


def _configure_logging(level: str) -> None:
    value = getattr(logging, level.upper(), None)
    if not isinstance(value, int):
        fail(f"--log-level {level!r} is not valid: use debug, info, warning or error", 2)
    logging.basicConfig(level=value, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(max(value, logging.WARNING))

"""``shmproxy serve``: the OpenAlgo-compatible WebSocket proxy on the ring."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Optional

import typer

from ..core import logfmt
from ..core.openalgo.database import OpenAlgoDatabase
from ..core.proxy.auth import read_key_file
from ..core.proxy.service import ProxyService, is_loopback, run_until_stopped
from ..core.proxy.workers import Supervisor
from ..core.settings import Settings, load_environment
from .app import app
from .common import EnvFileOption, console, fail, load_settings, warn

DEMO_ENVIRONMENT = {"ENABLE_MOCK": "true", "MOCK_BACKGROUND_RATE": "50"}


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (env WEBSOCKET_HOST; default 127.0.0.1).", show_default=False),
    port: Optional[int] = typer.Option(None, "--port", help="Port to bind; 0 picks a free one (env WEBSOCKET_PORT; default 8765).", show_default=False),
    buffer: Optional[str] = typer.Option(None, "--buffer", help="Ring to read (env SHM_BUFFER_NAME; default ws_proxy_buffer).", show_default=False),
    env_file: Optional[Path] = EnvFileOption,
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File with accepted API keys, one a line (adds to SHMPROXY_API_KEYS).", dir_okay=False, show_default=False),
    demo: bool = typer.Option(False, "--demo", help="Try it now: a synthetic market inside serve and a fresh API key, printed."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    log_json: bool = typer.Option(False, "--log-json", help="Log one JSON object a line (for log shippers)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes sharing the port (SO_REUSEPORT); adapters run once."),
) -> None:
    """Serve ticks from the ring to OpenAlgo WebSocket clients (SDK, browser UI, scripts).

    Clients connect to ws://HOST:PORT, authenticate with an API key and subscribe to instruments at LTP, Quote or Depth; every tick any publisher puts on the ring reaches its subscribers, and enabled broker adapters (ENABLE_<BROKER>=true, see `shmproxy adapters`) are subscribed on demand. The ring is created if absent and never destroyed. Ctrl-C or SIGTERM stops it cleanly.

    Examples:

      shmproxy serve --demo

      SHMPROXY_API_KEYS=mykey shmproxy serve

      shmproxy serve --env-file /path/to/openalgo/.env --api-key-file keys.txt
    """
    _configure_logging(log_level, log_json)
    settings = load_settings(env_file, websocket_host=host, websocket_port=port, shm_buffer_name=buffer)
    config = load_environment(env_file)
    keys = list(settings.api_keys) + (read_key_file(api_key_file) if api_key_file else [])
    demo_key = None
    if demo:
        config.update(DEMO_ENVIRONMENT)
        demo_key = secrets.token_hex(16)
        keys.append(demo_key)
    openalgo = OpenAlgoDatabase.from_config(config)  # checked here, before any worker starts
    if not keys and openalgo is None:
        fail("no API keys configured: set SHMPROXY_API_KEYS, pass --api-key-file or --env-file with OpenAlgo's .env "
             "(or try --demo)", 2)
    if not is_loopback(settings.websocket_host):
        warn(f"listening on {settings.websocket_host}, reachable from other machines: put TLS in front of it")
    if workers > 1:
        supervisor = Supervisor(settings, keys, config, workers, *_log_options(log_level, log_json))
        asyncio.run(supervisor.run(on_ready=lambda s: _announce(s.settings, s.port, s.adapters.broker, demo_key, workers)))
        return
    service = ProxyService(settings, keys, config)
    asyncio.run(run_until_stopped(
        service, on_ready=lambda s: _announce(s.settings, s.server.port, s.adapters.broker, demo_key, 1)))


def _announce(s: Settings, port: int, broker: str, demo_key: str | None, workers: int) -> None:
    url = f"ws://{s.websocket_host}:{port}"
    spread = f"  {workers} workers" if workers > 1 else ""
    console.print(f"[bold green]shmproxy serving[/] {url}  ring [cyan]{s.shm_buffer_name}[/]  "
                  f"broker [cyan]{broker}[/]{spread}  (Ctrl-C to stop)")
    if demo_key:
        console.print(f"API key for this run: [bold]{demo_key}[/]")
        console.print(f"try: python -m websockets {url}   then send "
                      f'{{"action":"authenticate","api_key":"{demo_key}"}} and '
                      '{"action":"subscribe","symbol":"RELIANCE","exchange":"NSE","mode":"Quote"}', markup=False)


def _log_options(level: str, as_json: bool) -> tuple[int, bool]:
    value = getattr(logging, level.upper(), None) if level.lower() in ("debug", "info", "warning", "error") else None
    if not isinstance(value, int):
        fail(f"--log-level {level!r} is not valid: use debug, info, warning or error", 2)
    return value, as_json


def _configure_logging(level: str, as_json: bool) -> None:
    logfmt.configure(*_log_options(level, as_json))

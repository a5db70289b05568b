"""``shmproxy status``: a running serve's health at a glance (exit 0 ok, 1 degraded, 2 down)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..core.proxy.health import EXIT_CODES
from ..core.proxy.probe import ProbeError, fetch_health, unreachable
from .app import app
from .common import EnvFileOption, console, load_settings

_COLOURS = {"ok": "green", "degraded": "yellow", "down": "red"}


@app.command()
def status(
    url: Optional[str] = typer.Option(None, "--url", help="serve's address (default: http://WEBSOCKET_HOST:WEBSOCKET_PORT).", show_default=False),
    env_file: Optional[Path] = EnvFileOption,
    as_json: bool = typer.Option(False, "--json", help="Print serve's /health JSON as it is."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every --interval seconds until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes with --watch."),
) -> None:
    """Show whether ticks are flowing: ring, writers, adapters, clients and counters.

    Exit code: 0 ok, 1 degraded (e.g. no tick for SHMPROXY_STALE_SECONDS while clients are subscribed), 2 down or unreachable, so scripts and monitors can act on it.

    Examples:

      shmproxy status

      shmproxy status --url http://127.0.0.1:8765 --json | jq .counters

      shmproxy status --watch
    """
    if url is None:
        settings = load_settings(env_file)
        url = f"http://{settings.websocket_host}:{settings.websocket_port}"
    if watch:
        _watch(url, interval)
        return
    report = _probe(url)
    if as_json:
        console.print_json(json.dumps(report))
    else:
        console.print(render(report, url))
    raise typer.Exit(EXIT_CODES.get(report.get("status"), 2))


def _probe(url: str) -> dict[str, Any]:
    try:
        return fetch_health(url)
    except ProbeError as exc:
        return unreachable(str(exc))


def _watch(url: str, interval: float) -> None:
    try:
        with Live(render(_probe(url), url), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(render(_probe(url), url))
    except KeyboardInterrupt:
        pass


def render(report: dict[str, Any], url: str) -> Group:
    state = report.get("status", "down")
    headline = Text.assemble(("serve ", "bold"), (state.upper(), f"bold {_COLOURS.get(state, 'red')}"), f"  {url}")
    parts: list[Any] = [headline]
    parts += [Text(f"  - {reason}", style=_COLOURS.get(state, "red")) for reason in report.get("reasons", [])]
    if "ring" in report:
        parts += [_overview(report), _writers(report["ring"])]
        if report.get("adapters"):
            parts.append(_adapters(report["adapters"]))
    return Group(*parts)


def _overview(report: dict[str, Any]) -> Table:
    ring, feed, counters = report["ring"], report["feed"], report["counters"]
    table = Table(show_header=False, box=None, padding=(0, 2))
    age = feed["last_tick_age_s"]
    rows = [
        ("ring", f"{ring.get('name', '?')}  seq {ring.get('write_seq', 0):,}  lag {ring.get('lag', 0):,}"
                 if ring.get("attached") else "not attached"),
        ("last tick", "never" if age is None else f"{age:.1f}s ago"),
        ("ticks in", f"{feed['ticks_in']:,}"),
        ("clients", f"{report['clients']['connected']} connected, {report['clients']['authenticated']} authenticated"),
        ("subscriptions", f"{report['subscriptions']['total']:,} on {report['subscriptions']['instruments']:,} instruments"),
        ("delivered", f"{counters['deliveries']:,}"),
        ("conflated / dropped", f"{counters['conflated']:,} / {counters['dropped']:,}"),
        ("lost (lapped)", f"{counters['lost']:,} ({counters['lapped']:,} laps)"),
        ("slow closed / auth failures", f"{counters['slow_closed']:,} / {counters['auth_failures']:,}"),
        ("uptime", f"{report['uptime_s']:.0f}s  (pid {report['pid']}, v{report['version']})"),
    ]
    for name, value in rows:
        table.add_row(Text(name, style="dim"), value)
    return table


def _writers(ring: dict[str, Any]) -> Table:
    table = Table(title="ring writers", title_justify="left")
    for column in ("pid", "status", "heartbeat", "records"):
        table.add_column(column)
    colours = {"alive": "green", "closed": "dim", "dead": "red"}
    for w in ring.get("writers", []):
        beat = "-" if w["heartbeat_age_s"] is None else f"{w['heartbeat_age_s']:.1f}s ago"
        table.add_row(str(w["pid"]), Text(w["status"], style=colours.get(w["status"], "")), beat, f"{w['records']:,}")
    return table


def _adapters(adapters: list[dict[str, Any]]) -> Table:
    table = Table(title="adapters", title_justify="left")
    for column in ("adapter", "state", "instruments", "ticks", "reconnects", "last tick", "detail"):
        table.add_column(column)
    for a in adapters:
        age = "-" if a["last_tick_age_s"] is None else f"{a['last_tick_age_s']:.1f}s ago"
        colour = "green" if a["state"] == "connected" else "yellow"
        table.add_row(a["name"], Text(a["state"], style=colour), str(a["instruments"]), f"{a['ticks']:,}",
                      str(a["reconnects"]), age, a["detail"])
    return table

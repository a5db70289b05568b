"""``shmproxy bridge out|in``: carry a ring to other hosts through NATS, and back into a ring there."""

from __future__ import annotations

import asyncio
import json
import signal
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.text import Text

from ..core.bridge.inbound import BridgeIn
from ..core.bridge.link import DEFAULT_URL, NatsLink, check_url, require_nats
from ..core.bridge.outbound import BridgeOut
from ..core.bridge.session import Bridge, run_bridge
from ..core.bridge.stats import BridgeStats
from ..core.bridge.subjects import DEFAULT_FILTER, DEFAULT_PREFIX, check_filter, check_prefix
from ..core.publisher import SharedMemoryPublisher
from ..core.segment import Segment
from ..core.subscriber import SharedMemorySubscriber
from .app import app
from .common import EnvFileOption, console, err_console, load_settings

bridge_app = typer.Typer(
    name="bridge", no_args_is_help=True,
    help="Carry a ring to other hosts through NATS (out) and back into a local ring there (in).",
)
app.add_typer(bridge_app)


class WireFormat(str, Enum):
    binary = "binary"
    json = "json"


BufferOption = typer.Option(
    None, "--buffer", "-b", show_default=False, help="Local ring (env SHM_BUFFER_NAME; default ws_proxy_buffer).",
)
NatsOption = typer.Option(DEFAULT_URL, "--nats", help="NATS server URL.")
JsonOption = typer.Option(False, "--json", help="Print the exit summary as one JSON object (and no status line).")


@bridge_app.command("out")
def bridge_out(
    buffer: Optional[str] = BufferOption,
    nats_url: str = NatsOption,
    subject: str = typer.Option(DEFAULT_PREFIX, "--subject", "-s", help="Subject prefix: ticks go to PREFIX.EXCHANGE.SYMBOL.MODE."),
    fmt: WireFormat = typer.Option(
        WireFormat.binary, "--format", "-f", case_sensitive=False,
        help="binary: the ring's record, 200 or 440 bytes; json: OpenAlgo's market_data message (docs/scaling.md).",
    ),
    as_json: bool = JsonOption,
    env_file: Optional[Path] = EnvFileOption,
) -> None:
    """Publish every tick of a local ring to NATS, from the moment it starts.

    Each tick goes to ticks.EXCHANGE.SYMBOL.MODE (mode 1 LTP, 2 Quote,
    3 Depth; dots, spaces, '*', '>' and '%' in names are %-escaped, so
    "NIFTY 50" is NIFTY%2050). The ring is created if absent. While NATS
    is down it reconnects forever and stops reading: the ring holds the
    backlog, and what it overwrites meanwhile is counted lost.
    Ctrl-C or SIGTERM stop it cleanly (exit 0) with a one-line summary.

    Examples:

      shmproxy bridge out --nats nats://10.0.0.5:4222

      shmproxy bridge out --buffer demo --format json --subject md.ticks
    """
    settings = load_settings(env_file, shm_buffer_name=buffer)
    link = _link(nats_url, "out")
    check_prefix(subject)
    Segment.create_or_attach(settings.shm_buffer_name, None, settings.shm_buffer_size).close()
    with SharedMemorySubscriber(settings=settings) as subscriber:
        _run(BridgeOut(subscriber, link, subject, fmt.value), as_json)


@bridge_app.command("in")
def bridge_in(
    buffer: Optional[str] = BufferOption,
    nats_url: str = NatsOption,
    subject: str = typer.Option(
        DEFAULT_FILTER, "--subject", "-s",
        help="Subject filter: '*' is one token, '>' the rest, e.g. 'ticks.NSE.>' or 'ticks.*.INFY.*'.",
    ),
    as_json: bool = JsonOption,
    env_file: Optional[Path] = EnvFileOption,
) -> None:
    """Write ticks arriving from NATS into a local ring (created if absent).

    serve, tail and scripts on this host then read them as usual. Each
    tick keeps its exchange time and mode; its publish time becomes
    this host's. Both wire formats are accepted. Messages missing from a
    subject's numbering are counted lost; messages that are not ticks,
    invalid. The summary gives the latency from the source ring's
    publish to this ring (meaningful when both clocks agree).
    Ctrl-C or SIGTERM stop it cleanly (exit 0).

    Examples:

      shmproxy bridge in --nats nats://10.0.0.5:4222

      shmproxy bridge in --subject 'ticks.NSE.>' --buffer nse_only
    """
    settings = load_settings(env_file, shm_buffer_name=buffer)
    link = _link(nats_url, "in")
    check_filter(subject)
    with SharedMemoryPublisher(settings=settings) as publisher:
        _run(BridgeIn(publisher, link, subject), as_json)


def _link(url: str, direction: str) -> NatsLink:
    require_nats()
    return NatsLink(check_url(url), f"shmproxy bridge {direction}", lambda line: _event(direction, line))


def _event(direction: str, line: str) -> None:
    err_console.print(f"bridge {direction}: {line}", markup=False)


def _run(bridge: Bridge, as_json: bool) -> None:
    stats = asyncio.run(_session(bridge, live=console.is_terminal and not as_json))
    if as_json:
        print(json.dumps(stats.as_dict()), flush=True)
    else:
        console.print(_summary(stats), markup=False)


async def _session(bridge: Bridge, live: bool) -> BridgeStats:
    """Run until Ctrl-C or SIGTERM, with a status line on a terminal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not live:
        return await run_bridge(bridge, stop)
    with Live(console=console, auto_refresh=False, transient=True) as display:
        status = _StatusLine()
        return await run_bridge(bridge, stop, lambda s: display.update(status(s), refresh=True))


_STATE_STYLE = {"connected": "bold green", "connecting": "yellow", "disconnected": "bold red"}


class _StatusLine:
    """The live line; remembers the previous report to show the recent rate."""

    def __init__(self) -> None:
        self._before = (0, 0.0)

    def __call__(self, s: BridgeStats) -> Text:
        count, then = self._before
        rate = (s.forwarded - count) / (s.elapsed_s - then) if s.elapsed_s > then else 0.0
        self._before = (s.forwarded, s.elapsed_s)
        style = _STATE_STYLE.get(s.state, "dim")
        line = Text.assemble(  # what matters first: a narrow terminal cuts the end
            (f"● bridge {s.direction} ", style), (s.state, style), "   ", (f"{rate:,.0f} ticks/s", "bold"),
            f"   forwarded {s.forwarded:,}   ", (f"lost {s.lost:,}", "bold yellow" if s.lost else "dim"),
        )
        if s.invalid:
            line.append(f"   invalid {s.invalid:,}", "bold yellow")
        if s.recent_latency_ms is not None:
            line.append(f"   latency {s.recent_latency_ms:,.2f} ms")
        line.append(f"   reconnects {s.reconnects}   ")
        route = f"ring {s.ring} → {s.nats} {s.subject}" if s.direction == "out" else f"{s.nats} {s.subject} → ring {s.ring}"
        line.append(route, "cyan")
        line.append(f"   {s.elapsed_s:,.1f} s")
        if s.last_error and s.state != "connected":
            line.append(f"   {s.last_error}", "red")
        line.append("   Ctrl-C to stop", "dim")
        return line


def _summary(s: BridgeStats) -> str:
    rate = s.forwarded / s.elapsed_s if s.elapsed_s > 0 else 0.0
    if s.direction == "out":
        route = f"from ring '{s.ring}' to {s.nats} as {s.subject}.> ({s.format})"
        losses = f"lost {s.lost:,}"
    else:
        route = f"from {s.nats} {s.subject} into ring '{s.ring}'"
        losses = f"lost {s.lost:,} (slow consumer {s.slow_consumer:,}), invalid {s.invalid:,}"
    text = (
        f"bridge {s.direction}: forwarded {s.forwarded:,} ticks {route} in {s.elapsed_s:,.2f} s ({rate:,.0f} ticks/s); "
        f"{losses}; reconnects {s.reconnects}"
    )
    if s.latency_us and s.latency_us["samples"]:
        text += f"; latency p50 {s.latency_us['p50_us'] / 1000:,.2f} ms, p99 {s.latency_us['p99_us'] / 1000:,.2f} ms"
    return text

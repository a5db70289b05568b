"""``shmproxy mock-feed``: a synthetic market publishing into the ring."""

from __future__ import annotations

import signal
import threading
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.text import Text

from ..core.feed import FeedStats, MockFeed
from ..core.market import DEFAULT_SYMBOLS, MockMarket
from ..core.publisher import SharedMemoryPublisher
from .app import app
from .common import EnvFileOption, console, fail, load_settings

MAX_RATE = 1_000_000


class FeedMode(str, Enum):
    ltp = "ltp"
    quote = "quote"
    depth = "depth"
    mixed = "mixed"


@app.command("mock-feed")
def mock_feed(
    buffer: Optional[str] = typer.Option(
        None, "--buffer", "-b", show_default=False,
        help="Ring to publish into, created if absent (env SHM_BUFFER_NAME; default ws_proxy_buffer).",
    ),
    symbols: Optional[str] = typer.Option(
        None, "--symbols", "-s", show_default=False,
        help=f"Comma-separated EXCHANGE:SYMBOL list (default: {len(DEFAULT_SYMBOLS)} built in: liquid NSE names, "
        "NIFTY/BANKNIFTY futures and options, MCX crude, gold, silver).",
    ),
    rate: float = typer.Option(100.0, "--rate", "-r", help=f"Ticks per second, above 0 and up to {MAX_RATE:,}."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", show_default=False, help="Stop after this many seconds."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, show_default=False, help="Stop after this many ticks."),
    mode: FeedMode = typer.Option(
        FeedMode.mixed, "--mode", "-m", case_sensitive=False,
        help="Tick modes to publish; mixed is 45% LTP, 35% Quote, 20% Depth.",
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", show_default=False,
        help="Same seed, same ticks: prices, sizes, order; trade times follow the clock (default: random, shown at exit).",
    ),
    env_file: Optional[Path] = EnvFileOption,
) -> None:
    """Publish a believable synthetic market into the ring, for demos, tests and load.

    Prices walk on the 0.05 grid with a consistent open/high/low/close;
    volume and trade times only grow; Depth ticks carry a 5-level book
    with best bid < best ask. It runs until Ctrl-C or SIGTERM unless
    --duration or --count ends it first, then prints a one-line summary
    and exits 0. On a terminal a status line shows the live rate.

    Writers never wait for readers: a slow reader never slows the feed
    (it loses the oldest ticks instead, and says so).

    Examples:

      shmproxy mock-feed                             # 100 ticks/s, built-in list

      shmproxy mock-feed --rate 50000 --duration 10  # load: 500,000 ticks

      shmproxy mock-feed -s NSE:INFY,NSE:TCS --mode depth --rate 5 --seed 42

      shmproxy mock-feed --buffer demo --count 1000
      shmproxy tail demo --from-start --no-follow
    """
    if not 0 < rate <= MAX_RATE:
        fail(f"--rate {rate:g} is out of range: use more than 0 and at most {MAX_RATE:,} ticks per second", 2)
    if duration is not None and not duration > 0:
        fail(f"--duration {duration:g} is out of range: use a number of seconds above 0", 2)
    settings = load_settings(env_file, shm_buffer_name=buffer)
    market = MockMarket(_parse_symbols(symbols), seed=seed, mode=mode.value)
    stop = _stop_on_signals()
    with SharedMemoryPublisher(settings=settings) as publisher:
        feed = MockFeed(publisher, market, rate, count=count, duration=duration)
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, transient=True) as live:
                stats = feed.run(stop.is_set, lambda s: live.update(_status(s, publisher), refresh=True))
        else:
            stats = feed.run(stop.is_set)
        console.print(_summary(stats, publisher, market), soft_wrap=True, markup=False)


def _parse_symbols(raw: Optional[str]) -> Optional[list[str]]:
    if raw is None:
        return None
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    if not symbols:
        fail("--symbols is empty: give EXCHANGE:SYMBOL names separated by commas, e.g. NSE:INFY,NSE:TCS", 2)
    return symbols


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM ask the feed to stop after the tick in hand; the summary still prints."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def _status(stats: FeedStats, publisher: SharedMemoryPublisher) -> Text:
    behind = stats.recent_rate < stats.target_rate * 0.95 and stats.elapsed_s > 1
    line = Text.assemble(
        ("● mock-feed ", "bold green"), ("→ ring ", "dim"), (publisher.buffer_name, "cyan"),
        "   ", (f"{_rate(stats.recent_rate)} ticks/s", "bold yellow" if behind else "bold"),
        (f" (target {_rate(stats.target_rate)})", "dim"),
        f"   total {stats.published:,}   seq {stats.last_seq:,}   ",
        ("lost 0: writers never block", "dim"), f"   {stats.elapsed_s:,.1f} s",
    )
    if behind:
        line.append("   at this machine's ceiling", "yellow")
    line.append("   Ctrl-C to stop", "dim")
    return line


def _summary(stats: FeedStats, publisher: SharedMemoryPublisher, market: MockMarket) -> str:
    ring = f"new ring '{publisher.buffer_name}'" if publisher.created else f"ring '{publisher.buffer_name}'"
    achieved = f"{_rate(stats.achieved_rate)} ticks/s (target {_rate(stats.target_rate)})"
    if stats.at_ceiling:
        achieved = f"{_rate(stats.achieved_rate)} ticks/s, this machine's ceiling (target {_rate(stats.target_rate)})"
    return (
        f"mock-feed: published {stats.published:,} ticks to {ring} in {stats.elapsed_s:,.2f} s: {achieved}; "
        f"last seq {stats.last_seq:,}; seed {market.seed} (--seed {market.seed} repeats them)"
    )

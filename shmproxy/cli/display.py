"""How the inspection commands show ticks, sizes and ages to a person."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from rich.console import Console, RenderableType
from rich.markup import escape

from ..core.records import MODE_DEPTH, Tick
from .common import console

_MODE_STYLE = {1: "blue", 2: "magenta", 3: "cyan"}
STATE_STYLE = {"alive": "green", "stale": "yellow", "dead": "red", "closed": "dim", "none": "dim"}  # writers
_PIPED_WIDTH = 1000  # no terminal to fit: let tables take the width they need


class TickCells(NamedTuple):
    """A tick's columns as plain text (empty where the record has nothing to say)."""

    time: str
    seq: str
    instrument: str
    mode: str
    ltp: str
    change: str
    volume: str
    bid: str
    ask: str


def price(value: float) -> str:
    """Two decimals, or four when the price needs them (currency pairs)."""
    return f"{value:,.2f}" if round(value, 2) == value else f"{value:,.4f}"


def tick_cells(tick: Tick) -> TickCells:
    when = datetime.fromtimestamp(tick.timestamp_ms / 1000).strftime("%H:%M:%S.%f")[:-3]
    change = f"{tick.percent_change:+.2f}%" if tick.close or tick.percent_change else ""
    bid = ask = ""
    if tick.mode == MODE_DEPTH:
        depth = tick.depth
        bid, ask = price(depth["buy"][0]["price"]), price(depth["sell"][0]["price"])
    return TickCells(
        when, f"#{tick.seq}", f"{tick.exchange}:{tick.symbol}", tick.mode_name, price(tick.ltp), change,
        f"{tick.volume:,}" if tick.volume else "", bid, ask,
    )


def tick_line(tick: Tick, color: bool) -> str:
    """One line for ``tail``: rich markup when ``color``, else plain text."""
    c = tick_cells(tick)
    volume = f"vol {c.volume}" if c.volume else ""
    if not color:
        book = f"bid {c.bid} / ask {c.ask}" if c.bid else ""
        return f"{c.time}  {c.seq:>9}  {c.instrument:<26} {c.mode:<5} {c.ltp:>12} {c.change:>8}  {volume:<16} {book}".rstrip()
    trend = "green" if tick.percent_change > 0 else "red" if tick.percent_change < 0 else "default"
    book = f"bid [green]{c.bid}[/] / ask [red]{c.ask}[/]" if c.bid else ""
    return (
        f"[dim]{c.time}  {c.seq:>9}[/]  [bold]{escape(f'{c.instrument:<26}')}[/] "
        f"[{_MODE_STYLE[tick.mode]}]{c.mode:<5}[/] [bold]{c.ltp:>12}[/] [{trend}]{c.change:>8}[/]  {volume:<16} {book}"
    ).rstrip()


def size(n: int) -> str:
    """Bytes in binary units: "512 B", "1.0 MiB"."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def age(seconds: float | None) -> str:
    """"0.2 s ago", "4 min ago", "3 h ago", "2 d ago"; "never" for None."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


def moment(ns: int) -> str:
    """Local date and time of ``ns`` since the epoch, to the second; "-" for 0."""
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"


def show(renderable: RenderableType) -> None:
    """Print tables at their natural width when piped (rich would cut them to 80 columns)."""
    (console if console.is_terminal else Console(width=_PIPED_WIDTH, highlight=False)).print(renderable)

"""``shmproxy tail``: follow a ring like ``tail -f``, without disturbing anyone reading it."""

from __future__ import annotations

import json
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer

from ..core.follow import RingTail, open_tail
from ..core.inspect import tick_view
from ..core.records import Tick
from ..core.tickfilter import TickFilter
from .app import app
from .common import EnvFileOption, console, err_console, fail, load_settings
from .display import tick_line


class TickMode(str, Enum):
    ltp = "ltp"
    quote = "quote"
    depth = "depth"


@app.command()
def tail(
    buffer: Optional[str] = typer.Argument(
        None, show_default=False, help="Ring to follow (env SHM_BUFFER_NAME; default ws_proxy_buffer)."
    ),
    json_lines: bool = typer.Option(
        False, "--json", help="One JSON object a line: OpenAlgo's market_data message plus seq, for jq."
    ),
    from_start: bool = typer.Option(False, "--from-start", help="Begin with everything still in the ring."),
    last: Optional[int] = typer.Option(
        None, "--last", "-n", min=1, show_default=False, help="Begin with the N newest (matching) records."
    ),
    count: Optional[int] = typer.Option(None, "--count", "-c", min=1, show_default=False, help="Exit after N records."),
    no_follow: bool = typer.Option(
        False, "--no-follow", help="Print what the ring holds now and exit (all of it, or --last N)."
    ),
    symbol: Optional[list[str]] = typer.Option(
        None, "--symbol", "-s", show_default=False,
        help="Only symbols matching this glob, case-insensitive (repeatable): INFY, 'BANK*', 'NFO:NIFTY*'.",
    ),
    exclude: Optional[list[str]] = typer.Option(
        None, "--exclude", "-x", show_default=False, help="Leave out symbols matching this glob (repeatable)."
    ),
    exchange: Optional[list[str]] = typer.Option(
        None, "--exchange", "-e", show_default=False, help="Only this exchange (repeatable): NSE, NFO, MCX, ..."
    ),
    mode: Optional[list[TickMode]] = typer.Option(
        None, "--mode", "-m", case_sensitive=False, show_default=False,
        help="Only records published in this mode (repeatable).",
    ),
    wait: bool = typer.Option(
        False, "--wait", "-w", help="If the ring does not exist yet, wait for it (then show it from its first record)."
    ),
    env_file: Optional[Path] = EnvFileOption,
) -> None:
    """Follow a ring like tail -f: every new tick, one line each.

    A line shows time, seq, EXCHANGE:SYMBOL, mode, last price, change
    against the previous close, volume and, for Depth, best bid / ask:
    coloured on a terminal, plain when piped. Without --from-start or
    --last it shows ticks published from now on.

    tail reads through a read-only mapping with a cursor of its own, so
    it never slows or changes the ring for anyone else. If writers
    overwrite records before tail reads them (it fell a whole ring
    behind), it says how many on stderr. Ctrl-C exits quietly.

    Exit codes: 4 no such ring (or use --wait), 5 not a shmproxy ring,
    6 damaged ring.

    Examples:

      shmproxy tail                           # new ticks on ws_proxy_buffer

      shmproxy tail --last 20 --symbol 'NIFTY*' --exchange NFO

      shmproxy tail demo --json --count 100 | jq -r '[.seq, .symbol, .data.ltp] | @tsv'

      shmproxy tail demo --from-start --no-follow --mode depth
    """
    if from_start and last is not None:
        fail("--from-start and --last both say where to begin: use one of them", 2)
    settings = load_settings(env_file, shm_buffer_name=buffer)
    try:
        keep = TickFilter(symbol or (), exclude or (), exchange or (), [m.value for m in mode or ()])
    except ValueError as exc:
        fail(str(exc), 2)
    start = "oldest" if from_start or no_follow else "latest"
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a polite stop, like Ctrl-C
    try:
        with open_tail(
            settings.shm_buffer_name, keep, start, last, not no_follow, count, wait,
            on_waiting=lambda: err_console.print(f"waiting for ring '{settings.shm_buffer_name}' to appear (Ctrl-C to stop)"),
        ) as ring:
            _show(ring, _writer(json_lines))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (| head): nothing more to say
        raise typer.Exit(0) from None


def _writer(json_lines: bool) -> Callable[[list[Tick]], None]:
    """How a batch of ticks reaches stdout."""
    if json_lines:
        return lambda ticks: _write("".join(json.dumps(tick_view(t)) + "\n" for t in ticks))
    if console.is_terminal:
        return lambda ticks: console.print("\n".join(tick_line(t, color=True) for t in ticks), soft_wrap=True)
    return lambda ticks: _write("".join(tick_line(t, color=False) + "\n" for t in ticks))


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _show(ring: RingTail, write: Callable[[list[Tick]], None]) -> None:
    for ticks in ring.batches():
        if ticks:
            write(ticks)
        lost = ring.take_lost()
        if lost:
            err_console.print(
                f"[yellow]lapped:[/] {lost:,} records lost: writers overwrote them before tail read them "
                f"({ring.subscriber.lost:,} in all)"
            )


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

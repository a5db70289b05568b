"""``shmproxy bench``: measure shmproxy on this machine, beside the ZeroMQ hop it replaces."""

from __future__ import annotations

import itertools
import json
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..core.bench.extras import require
from ..core.bench.suite import Options, Step, plan, run
from .app import app
from .common import err_console, fail
from .display import show

_COLUMNS = {"shm": "shmproxy", "zmq_ipc": "ZeroMQ ipc", "zmq_tcp": "ZeroMQ tcp"}


class Which(str, Enum):
    ring = "ring"
    e2e = "e2e"
    all = "all"


@app.command()
def bench(
    which: Which = typer.Argument(Which.all, help="ring: publisher -> reader processes; e2e: -> proxy -> WebSocket clients; all: both."),
    compare_zmq: bool = typer.Option(False, "--compare-zmq", help="Measure the ZeroMQ hop and an upstream-style ZeroMQ proxy in the same run (needs the extra 'bench')."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (every raw result, the machine and the figures) instead of the table."),
    plot: Optional[Path] = typer.Option(None, "--plot", dir_okay=False, show_default=False, help="Draw the latency distributions to this PNG (needs the extra 'bench')."),
    duration: float = typer.Option(Options.duration, "--duration", help="Seconds each measurement publishes (or idles)."),
    clients: int = typer.Option(Options.clients, "--clients", min=1, max=1000, help="WebSocket clients end to end."),
    symbols: int = typer.Option(Options.symbols, "--symbols", min=1, max=1000, help="Symbols every client subscribes to end to end."),
    rate: float = typer.Option(Options.rate, "--rate", help="Ticks/s published end to end (each one goes to every client)."),
    hop_rate: float = typer.Option(Options.hop_rate, "--hop-rate", help="Ticks/s for the hop latency."),
    workers: int = typer.Option(Options.workers, "--workers", min=1, max=16, help="Also measure serve --workers N flat out (1 skips it)."),
) -> None:
    """Measure publish rate, hop throughput and latency, idle cost and end-to-end fan-out on this machine.

    Each measurement runs real processes on a private ring (removed afterwards) and on 127.0.0.1
    only; with --compare-zmq the same ticks also go over ZeroMQ PUB/SUB (ipc and tcp) and through an
    upstream-style ZeroMQ proxy, and the table shows shmproxy's advantage over each. The defaults
    take about a minute on 2 cores. A benchmark, not a test: close other work first; see docs/performance.md.

    Examples:

      shmproxy bench --compare-zmq

      shmproxy bench e2e --clients 200 --rate 500

      shmproxy bench --compare-zmq --json --plot latency.png > bench.json
    """
    _check(duration, rate, hop_rate)
    if plot is not None:
        require("matplotlib", "--plot")
    options = Options(duration=duration, clients=clients, symbols=symbols, rate=rate, hop_rate=hop_rate, workers=workers)
    steps = plan(which.value, options, compare_zmq)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: children stopped, rings removed
    report = _run(steps, options)
    if plot is not None:
        from ..core.bench.plot import draw
        draw(report, plot)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        show(render(report))


def _check(duration: float, rate: float, hop_rate: float) -> None:
    for flag, value, low, high in (("--duration", duration, 0.05, 600), ("--rate", rate, 1, 100_000),
                                   ("--hop-rate", hop_rate, 1, 200_000)):
        if not low <= value <= high:
            fail(f"{flag} {value:g} is out of range: use {low:g} to {high:,}", 2)


def _run(steps: list[Step], options: Options) -> dict[str, Any]:
    """Run the steps, with a progress bar on stderr when it is a terminal."""
    if not err_console.is_terminal:
        return run(steps, options)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("starting", total=len(steps))
        started = itertools.count()

        def advance(step: Step) -> None:
            progress.update(task, description=step.label, completed=next(started))

        return run(steps, options, advance)


def render(report: dict[str, Any]) -> Table:
    """The figures as a table: each value with its unit, beside the baselines, and shmproxy's advantage."""
    targets = [t for t in _COLUMNS if any(t in f["values"] for f in report["figures"])]
    m = report["machine"]
    table = Table(title="shmproxy bench", title_justify="left", caption_justify="left", caption=(
        f"{m['cpu_model']}, {m['cpus']} cores, Python {m['python']} ({m['paths']}), "
        f"load {m['load_average'][0]:.2f} at start; "
        f"{report['seconds']:.0f} s. Advantage above 1x: shmproxy is better (rates: ours / theirs; "
        "times, CPU, memory: theirs / ours)."))
    table.add_column("figure")
    for target in targets:
        table.add_column(_COLUMNS[target], justify="right")
    if len(targets) > 1:
        table.add_column("shmproxy's advantage", justify="right")
    for figure in report["figures"]:
        cells = [_value(figure["values"].get(t), figure["unit"]) for t in targets]
        if len(targets) > 1:
            cells.append(_advantages(figure["advantage"]))
        table.add_row(figure["label"], *cells)
    return table


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "us":
        return f"{value:,.1f} us" if value < 1000 else f"{value / 1000:,.2f} ms" if value < 1e6 else f"{value / 1e6:,.2f} s"
    if unit == "%":
        return f"{value:.2f} %" if value < 10 else f"{value:.0f} %"
    return f"{value:,.0f} {unit}"


def _advantages(advantage: dict[str, float | None]) -> Text:
    text = Text()
    for target, ratio in advantage.items():
        if text:
            text.append("  ")
        label = _COLUMNS[target].removeprefix("ZeroMQ ")
        text.append(f"{label} ")
        text.append("n/a" if ratio is None else f"{ratio:,.2f}x", style="" if ratio is None else "green" if ratio >= 1 else "red")
    return text

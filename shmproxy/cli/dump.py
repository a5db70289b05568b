"""``shmproxy dump``: a ring's header, writers, counters and newest records, read-only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Group
from rich.table import Table

from ..core.inspect import STALE_AFTER_S, dump_ring
from ..core.records import Tick
from .app import app
from .common import EnvFileOption, load_settings
from .display import STATE_STYLE, TickCells, age, moment, show, size, tick_cells

@app.command()
def dump(
    buffer: Optional[str] = typer.Argument(
        None, show_default=False, help="Ring to inspect (env SHM_BUFFER_NAME; default ws_proxy_buffer)."
    ),
    records: int = typer.Option(10, "--records", "-n", min=0, help="How many of the newest records to show."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document, for scripts."),
    env_file: Optional[Path] = EnvFileOption,
) -> None:
    """Show what a ring holds: header, writers, counters and the newest records.

    The header gives name, size, layout version, slot size, capacity,
    the write sequence (records ever written), the oldest sequence still
    readable and when the ring was created. Each writer shows its PID as
    alive, stale (running, but no heartbeat for a while), dead or closed,
    with its heartbeat age. dump maps the ring read-only and never
    changes a byte of it.

    Exit codes: 4 no such ring, 5 not a shmproxy ring, 6 damaged ring.

    Examples:

      shmproxy dump

      shmproxy dump demo --records 50

      shmproxy dump --json | jq '.writers[] | select(.state == "alive") | .pid'
    """
    settings = load_settings(env_file, shm_buffer_name=buffer)
    dumped = dump_ring(settings.shm_buffer_name, records)
    view = dumped.view()
    if json_out:
        print(json.dumps(view, indent=2))
        return
    show(Group(_header(view), "", _writers(view), "", _records(dumped.records, records)))


def _header(ring: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counters = ring["counters"]
    for label, value in (
        ("ring", f"[cyan]{ring['name']}[/]  {ring['path']}"),
        ("size", f"{size(ring['size'])} ({ring['size']:,} bytes)"),
        ("layout", f"version {ring['layout_version']}, {ring['header_size']:,} B header, {ring['slot_size']} B slots"),
        ("capacity", f"{ring['capacity']:,} records"),
        ("write seq", f"{ring['write_seq']:,}"),
        ("oldest seq", f"{ring['oldest_seq']:,}  ({ring['records_held']:,} records readable)"),
        ("created", f"{moment(ring['created_ns'])}  ({age(ring['created_age_s'])})"),
        ("generation", f"{ring['generation']:#018x}"),
        ("last write", age(ring["last_write_age_s"])),
        ("counters", f"{counters['writer_attaches']:,} writer attaches, {counters['rejected']:,} records rejected"),
    ):
        grid.add_row(label, value)
    return grid


def _writers(ring: dict[str, Any]) -> Table:
    table = _table(f"writers (stale: running, but no heartbeat for {STALE_AFTER_S:g} s)")
    for column in ("pid", "state", "heartbeat", "started", "records"):
        table.add_column(column, justify="right" if column in ("pid", "records") else "left")
    for w in ring["writers"]:
        table.add_row(
            str(w["pid"]), f"[{STATE_STYLE[w['state']]}]{w['state']}[/]", age(w["heartbeat_age_s"]),
            moment(w["started_ns"]), f"{w['records']:,}",
        )
    if not ring["writers"]:
        table.add_row("", "[dim]none has attached[/]", "", "", "")
    return table


def _records(ticks: list[Tick], asked: int) -> Table:
    table = _table(f"newest records ({len(ticks):,} of {asked:,} asked)")
    for column in TickCells._fields:
        table.add_column(column, justify="right" if column in ("seq", "ltp", "change", "volume") else "left")
    for tick in ticks:
        table.add_row(*tick_cells(tick))
    return table


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", show_edge=False, box=None, header_style="dim")

"""``shmproxy ls`` and ``shmproxy clean``: the rings on this machine, and removing dead ones."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from ..core.cleanup import CleanPlan, plan_clean, remove_ring
from ..core.errors import SegmentError
from ..core.inspect import list_rings, writer_state
from ..core.segment import SHM_DIR, validate_name
from .app import app
from .common import console, fail, warn
from .display import STATE_STYLE, age, show, size


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "--json", help="Print one JSON document, for scripts.")) -> None:
    """List the shmproxy rings on this machine.

    For each ring in /dev/shm: size, records written, its writers' state
    (alive, stale, dead, closed or none), when it was last written and
    when it was created. Segments that are not shmproxy rings are not
    listed; shmproxy segments that cannot be read (damaged, or another
    layout version) are named on stderr. Nothing is changed.

    Examples:

      shmproxy ls

      shmproxy ls --json | jq -r '.rings[] | select(.writer_state != "alive") | .name'
    """
    listing = list_rings()
    now = time.time_ns()
    views = [ring.view(now, records=False) for ring in listing.rings]
    if json_out:
        unreadable = [{"name": name, "error": error} for name, error in listing.unreadable]
        print(json.dumps({"rings": views, "unreadable": unreadable}, indent=2))
        return
    if views:
        show(_ring_table(views))
    else:
        console.print(f"no shmproxy rings in {SHM_DIR}")
    for name, error in listing.unreadable:
        warn(f"{name}: {error}")


def _ring_table(views: list[dict]) -> Table:
    table = Table(show_edge=False, box=None, header_style="dim")
    for column in ("name", "size", "records", "writer", "last write", "created"):
        table.add_column(column, justify="right" if column in ("size", "records") else "left", no_wrap=True)
    for ring in views:
        table.add_row(
            f"[cyan]{ring['name']}[/]", size(ring["size"]), f"{ring['write_seq']:,}", _writer_cell(ring),
            age(ring["last_write_age_s"]), age(ring["created_age_s"]),
        )
    return table


def _writer_cell(ring: dict) -> str:
    state = ring["writer_state"]
    pids = ", ".join(str(w["pid"]) for w in ring["writers"] if w["state"] == state)
    return f"[{STATE_STYLE[state]}]{state}[/]" + (f" (pid {pids})" if pids else "")


@app.command()
def clean(
    name: str = typer.Argument(..., help="The ring to remove: its name in /dev/shm."),
    force: bool = typer.Option(
        False, "--force", "-f",
        help="Remove it even if a writer is alive or its header is damaged (never a segment that is not a ring).",
    ),
) -> None:
    """Remove a ring nobody is writing any more.

    A ring is removed only when none of its writers is alive: each one is
    closed, dead (its process is gone) or stale (running, but no
    heartbeat for a while). Otherwise clean refuses and says why; --force
    removes it anyway, after saying what it removes. A segment that is
    not a shmproxy ring is never removed, forced or not.

    Readers still attached keep the old ring until a new one is created
    under the same name, then move to it.

    Exit codes: 4 no such ring, 5 not a shmproxy ring, 6 damaged ring
    (use --force), 7 in use (use --force).

    Examples:

      shmproxy clean ws_proxy_buffer

      shmproxy ls --json | jq -r '.rings[] | select(.writer_state == "dead") | .name' | xargs -n1 shmproxy clean
    """
    try:
        validate_name(name)
    except SegmentError as exc:
        fail(str(exc), 2)  # a usage error, as a bad ring name is for the other commands
    plan = plan_clean(name)
    if force and plan.refusal() is not None:
        warn(f"--force: removing ring '{name}' ({_describe(plan)}) although {_overridden(plan)}")
    remove_ring(plan, force=force)
    console.print(f"removed ring '{name}' ({_describe(plan)})", markup=False)


def _overridden(plan: CleanPlan) -> str:
    """What --force overrides, in a few words."""
    if plan.live:
        return f"writer pid {', '.join(str(w.pid) for w in plan.live)} is alive: it keeps writing into a ring nobody can open"
    return f"its header is damaged: {plan.damage}"


def _describe(plan: CleanPlan) -> str:
    if plan.info is None:
        return f"{size(plan.size)}, damaged header"
    now = time.time_ns()
    writers = ", ".join(f"pid {w.pid} {writer_state(w, now)}" for w in plan.info.writers) or "no writers"
    return f"{size(plan.size)}, {plan.info.write_seq:,} records written; {writers}"


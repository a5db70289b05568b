"""``shmproxy adapters``: which broker adapters are installed, enabled and configured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..core.adapters.registry import describe, enable_variable
from ..core.adapters.session_token import TokenStatus
from ..core.settings import load_environment
from .app import app
from .common import EnvFileOption, console


@app.command("adapters")
def adapters_command(
    env_file: Optional[Path] = EnvFileOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document for scripts."),
) -> None:
    """List installed broker adapters: enabled or not, configured or not, and why.

    An adapter runs inside `shmproxy serve` when ENABLE_<NAME>=true is set (environment or .env). Third-party packages add adapters through the `shmproxy.adapters` entry-point group.

    Example:

      shmproxy adapters --env-file /path/to/openalgo/.env
    """
    infos = describe(load_environment(env_file))
    if as_json:
        console.print_json(json.dumps([
            {"name": i.name, "description": i.description, "enabled": i.enabled, "configured": i.configured,
             "problems": i.problems + ([i.load_error] if i.load_error else []), "enable_with": enable_variable(i.name),
             "token_source": i.token.source if i.token else None, "token_usable": i.token.usable if i.token else None,
             "token_problem": (i.token.problem or None) if i.token else None}
            for i in infos
        ]))
        return
    table = Table(title="shmproxy adapters")
    for column in ("adapter", "enabled", "configured", "token", "notes"):
        table.add_column(column)
    for i in infos:
        notes = i.load_error or "; ".join(i.problems) or (i.token and i.token.problem) or i.description
        table.add_row(
            i.name,
            "[green]yes[/]" if i.enabled else f"no ({enable_variable(i.name)}=true enables)",
            "[green]yes[/]" if i.configured else "[red]no[/]",
            _token_cell(i.token),
            notes,
        )
    console.print(table)


def _token_cell(token: TokenStatus | None) -> str:
    """Where the adapter's token comes from and whether it is usable; never the token."""
    if token is None:
        return "-"
    if token.source == "none":
        return "[red]none[/]"
    return f"{escape(token.source)}: " + ("[green]usable[/]" if token.usable else "[red]not usable[/]")

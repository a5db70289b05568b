"""``shmproxy migrate-config``: move an OpenAlgo ``.env`` from ZeroMQ to shared memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core import envfile
from ..core.migrate import Item, Migration, plan
from ..core.safewrite import replace_content
from .app import app
from .common import console, warn

# Typer keeps single line breaks inside help paragraphs, so each paragraph is one string.
_HELP = (
    "Move an OpenAlgo .env from ZeroMQ (ZMQ_*) to shared memory (SHM_*), keeping every other byte.\n\n"
    "ZMQ_HOST, ZMQ_PORT and any other ZMQ_* setting give way to SHM_BUFFER_NAME=ws_proxy_buffer and "
    "SHM_BUFFER_SIZE=1048576, written where the ZeroMQ lines were, in the file's own quoting style, under a "
    "comment saying what replaced what. Settings already present are kept. When REDIRECT_URL names a broker "
    "shmproxy has an adapter for (http://127.0.0.1:5000/flattrade/callback), ENABLE_<BROKER>=true is added, "
    "and for flattrade FLATTRADE_USER_ID when BROKER_API_KEY has the form CLIENTID:::APIKEY.\n\n"
    "Before writing, the original is copied to ENV_FILE.bak-YYYYmmdd-HHMMSS; the new file replaces it in one "
    "step and keeps its permissions. Running it again changes nothing. Secret values are never printed: the "
    "diff and the report show them as ****."
)
_EPILOG = """\b
Examples:
  shmproxy migrate-config --dry-run        # show the change to ./.env
  shmproxy migrate-config /opt/openalgo/.env
  shmproxy migrate-config --check || echo "run shmproxy migrate-config"
  shmproxy migrate-config --broker flattrade --user-id FT1234

\b
Exit codes:
  0   migrated, or nothing to do
  1   --check: the file needs migrating
  2   bad option (unknown --broker, bad --user-id)
  10  the file does not exist
  11  it is a directory or not a regular file
  12  it cannot be read
  13  it is not UTF-8 text
  14  it cannot be written (the original is left as it was)
"""

_DIFF_STYLES = {"---": "bold", "+++": "bold", "@@": "cyan", "-": "red", "+": "green"}
_ITEM_STYLES = {"-": "red", "+": "green", "=": "dim"}


@app.command("migrate-config", help=_HELP, epilog=_EPILOG)
def migrate_config(
    env_file: Path = typer.Argument(  # readable=False: envfile.load reports that with its own exit code
        Path(".env"), metavar="ENV_FILE", readable=False, help="The OpenAlgo .env file to migrate."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the change as a unified diff; write nothing."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if the file needs migrating, 0 if not."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (for scripts)."),
    no_backup: bool = typer.Option(False, "--no-backup", help="Do not keep a copy of the original."),
    broker: Optional[str] = typer.Option(
        None, "--broker", metavar="NAME", help="Turn this broker's adapter on (ENABLE_<NAME>=true), whatever REDIRECT_URL says."
    ),
    user_id: Optional[str] = typer.Option(
        None, "--user-id", metavar="ID", help="The broker account's user id (FLATTRADE_USER_ID for flattrade)."
    ),
) -> None:
    """Plan the migration, write it unless asked not to, report it (see ``_HELP``)."""
    env = envfile.load(env_file)
    migration = plan(env, broker, user_id)
    write = migration.changed and not (dry_run or check)
    backup = None
    if write:
        backup = replace_content(env_file, env.to_bytes(), migration.after.to_bytes(), backup=not no_backup)
    if as_json:
        report = migration.as_dict() | {"file": str(env_file), "written": write, "backup": backup and str(backup)}
        if dry_run:
            report["diff"] = migration.diff(str(env_file))
        typer.echo(json.dumps(report, indent=2))
    else:
        if dry_run:
            _print_diff(migration.diff(str(env_file)))
        _print_report(migration, _headline(migration, env_file, write, backup))
    if check and migration.changed:
        raise typer.Exit(1)


def _headline(migration: Migration, path: Path, written: bool, backup: Path | None) -> str:
    if migration.status == "already-migrated":
        return f"{path}: already migrated, nothing to do"
    if migration.status == "nothing-to-migrate":
        return f"{path}: no ZMQ_* settings, nothing to migrate"
    if not written:
        return f"{path}: needs migrating (nothing written)"
    return f"Migrated {path}" + (f" (backup: {backup})" if backup else " (no backup)")


def _print_diff(lines: list[str]) -> None:
    for line in lines:
        style = next((s for prefix, s in _DIFF_STYLES.items() if line.startswith(prefix)), "")
        console.print(Text(line, style=style), soft_wrap=True)


def _print_report(migration: Migration, headline: str) -> None:
    console.print(Text(headline, style="bold"), soft_wrap=True)
    for sign, items in (("-", migration.removed), ("+", migration.added), ("=", migration.kept)):
        for item in items:
            console.print(Text(f"  {sign} {_describe(item, sign)}", style=_ITEM_STYLES[sign]), soft_wrap=True)
    for note in migration.notes:
        console.print(Text(f"  note: {note}"), soft_wrap=True)
    for warning in migration.warnings:
        warn(warning)


def _describe(item: Item, sign: str) -> str:
    if sign == "-":
        return f"{item.key} (was line {item.line})"
    return f"{item.key}={item.value}, line {item.line}" + (f": {item.reason}" if item.reason else "")

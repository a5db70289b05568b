"""The ``shmproxy`` Typer application and its entry point."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .._version import __version__
from ..core import speedups
from ..core.errors import ShmProxyError
from .common import err_console, escape

app = typer.Typer(
    name="shmproxy",
    help="Local market-data fan-out: a shared-memory tick ring behind an OpenAlgo-compatible WebSocket proxy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shmproxy {__version__} ({speedups.describe()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Local market-data fan-out: a shared-memory tick ring behind an OpenAlgo-compatible WebSocket proxy.

    Ticks go into the ring "ws_proxy_buffer" in /dev/shm (SHM_BUFFER_NAME); every reader follows it
    with a cursor of its own, so watching a live ring never disturbs it.
    """


def _register_commands() -> None:
    """Each command module adds its commands to ``app`` when imported, in the order --help lists them:
    the proxy first, then feeding and watching a ring, then moving and measuring."""
    from . import serve, status, adapters  # noqa: F401
    from . import mock_feed, tail, dump, rings  # noqa: F401
    from . import bridge, migrate_config, bench  # noqa: F401


def main() -> None:
    """Console-script entry point: run the app, turning shmproxy errors into one line on stderr."""
    _register_commands()
    try:
        app()
    except ShmProxyError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)

"""What every command shares: consoles, settings loading and one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..core.settings import Settings

console = Console(highlight=False, soft_wrap=True)  # never wrap a line a script may parse
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # errors stay one line

EnvFileOption = typer.Option(
    None, "--env-file", help="Read settings from this .env file (the environment still wins over it).",
    dir_okay=False, show_default=False,
)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}")


def load_settings(env_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Settings from ``env_file`` + environment, with flag values (non-None) winning.

    Errors propagate as SettingsError; :func:`shmproxy.cli.app.main` turns them into one line.
    """
    return Settings.load(env_file, overrides)


def is_terminal() -> bool:
    return sys.stdout.isatty()

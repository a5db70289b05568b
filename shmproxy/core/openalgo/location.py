"""Where OpenAlgo's database is: the SQLite file its ``DATABASE_URL`` names, as SQLAlchemy reads it.

OpenAlgo runs from its own directory, which also holds its ``.env``: the relative path of its default
``sqlite:///db/openalgo.db`` means ``<that directory>/db/openalgo.db``. So a relative URL read from a
``.env`` file is anchored to the file's directory (:func:`anchored`); one from the process
environment stays relative to the current directory, as it would for OpenAlgo itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import SettingsError

_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?)://(?P<rest>.*)$")


def database_path(url: str) -> Path:
    """The file a SQLite URL names (relative or absolute); SettingsError for any other database."""
    match = _SQLITE_URL.match(url.strip())
    if match is None:
        raise SettingsError(f"DATABASE_URL={url!r} is not a SQLite database: shmproxy reads OpenAlgo's SQLite file only")
    rest = match["rest"].split("?", 1)[0]  # SQLAlchemy options after '?' do not change the file
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        raise SettingsError(f"DATABASE_URL={url!r} names no database file")
    return Path(rest[1:])  # sqlite:///db/x.db -> db/x.db; sqlite:////srv/x.db -> /srv/x.db


def anchored(url: str, base: Path) -> str:
    """``url`` with a relative SQLite path made absolute against ``base``; any other URL as it is
    (a URL that is not usable is reported when the database is opened)."""
    try:
        path = database_path(url)
    except SettingsError:
        return url
    if path.is_absolute():
        return url
    scheme = _SQLITE_URL.match(url.strip())["scheme"]
    return f"{scheme}:///{os.path.abspath(base / path)}"

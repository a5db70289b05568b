"""OpenAlgo's database, read-only: who owns an API key, and the broker session OpenAlgo stored.

Every read opens the file with SQLite's ``mode=ro`` for that read alone: reads are rare (callers
cache), a short-lived connection always sees OpenAlgo's latest commit and holds no lock between reads,
and shmproxy never writes to the file. Only the tables and columns below are read.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

from ..errors import SettingsError
from .location import database_path

if TYPE_CHECKING:
    from .crypto import Secrets

COLUMNS = {
    "api_keys": ("user_id", "api_key_hash", "api_key_encrypted"),
    "auth": ("name", "auth", "feed_token", "broker", "user_id", "is_revoked"),
}
EXTRA_MISSING = "install shmproxy[openalgo] to read OpenAlgo's database"
BUSY_TIMEOUT_S = 2.0  # OpenAlgo may be writing; a read waits this long for its lock
PEPPER_SAMPLES = 20  # stored values per table tried when checking the pepper


class OpenAlgoUnavailable(Exception):
    """The database cannot be read now (removed, locked, damaged); the message says why."""


class NoSession(Exception):
    """OpenAlgo holds no usable session for the broker; the message says why and what to do."""


@dataclass(frozen=True)
class BrokerSession:
    """A broker session OpenAlgo stored: its user and the decrypted tokens (kept out of repr)."""

    user: str  # OpenAlgo's user name (auth.name)
    broker_user_id: str  # the broker's client id, when OpenAlgo stored one
    token: str = field(repr=False)
    feed_token: str = field(repr=False)


def is_configured(config: Mapping[str, str]) -> bool:
    """Whether the settings point at an OpenAlgo install: both DATABASE_URL and API_KEY_PEPPER set."""
    return bool((config.get("DATABASE_URL") or "").strip() and (config.get("API_KEY_PEPPER") or "").strip())


class OpenAlgoDatabase:
    """The database of one OpenAlgo install, with the secrets to read what it encrypted."""

    def __init__(self, path: Path, secrets: Secrets, salt_named: bool) -> None:
        self.path = path
        self._secrets = secrets
        self._salt_named = salt_named  # FERNET_SALT was used (else the legacy salt): named in errors

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> OpenAlgoDatabase | None:
        """The checked database the settings name, or None when they name none (:func:`is_configured`).

        Raises SettingsError with one line naming the problem: the extra is not installed, the URL
        is not a SQLite file, the file or a table is missing, or the pepper does not match.
        """
        if not is_configured(config):
            return None
        try:
            from . import crypto
        except ImportError:
            raise SettingsError(f"DATABASE_URL and API_KEY_PEPPER are set: {EXTRA_MISSING}") from None
        path = database_path(config["DATABASE_URL"]).absolute()
        salt = crypto.fernet_salt(config.get("FERNET_SALT") or "")
        database = cls(path, crypto.Secrets(config["API_KEY_PEPPER"], salt or crypto.LEGACY_SALT), salt is not None)
        database.check()
        return database

    # --- start-up checks -------------------------------------------------------------------------
    def check(self) -> None:
        """The file is a database with OpenAlgo's tables, and the pepper decrypts what it stored."""
        if not self.path.exists():
            raise SettingsError(f"OpenAlgo database {self.path} does not exist: check DATABASE_URL")
        if not self.path.is_file():
            raise SettingsError(f"OpenAlgo database {self.path} is not a file: check DATABASE_URL")
        try:
            self._check_tables()
            self._check_pepper()
        except OpenAlgoUnavailable as exc:
            raise SettingsError(str(exc)) from None

    def _check_tables(self) -> None:
        for table, wanted in COLUMNS.items():
            present = {row["name"] for row in self._query(f"PRAGMA table_info({table})")}
            if not present:
                raise SettingsError(f"OpenAlgo database {self.path} has no table {table!r}: "
                                    "is DATABASE_URL OpenAlgo's database?")
            missing = [c for c in wanted if c not in present]
            if missing:
                raise SettingsError(f"OpenAlgo database {self.path}: table {table!r} has no column {missing[0]!r}")

    def _check_pepper(self) -> None:
        """Decrypting any stored value proves the key derived from the pepper (Fernet authenticates);
        a database that stores nothing yet cannot tell, and is accepted."""
        stored = (self._query("SELECT api_key_encrypted FROM api_keys WHERE api_key_encrypted <> '' LIMIT ?",
                              (PEPPER_SAMPLES,))
                  + self._query("SELECT auth FROM auth WHERE auth <> '' LIMIT ?", (PEPPER_SAMPLES,)))
        if stored and not any(self._secrets.decrypt(str(row[0])) is not None for row in stored):
            names = "API_KEY_PEPPER or FERNET_SALT does" if self._salt_named else "API_KEY_PEPPER does"
            raise SettingsError(f"{names} not match OpenAlgo database {self.path}: "
                                "none of its encrypted API keys or tokens decrypts with it")

    # --- reads ---------------------------------------------------------------------------------------
    def key_owner(self, api_key: str) -> str | None:
        """The OpenAlgo user whose API key this is, or None. Slow by design: one Argon2 check per
        stored key. Raises OpenAlgoUnavailable."""
        for row in self._query("SELECT user_id, api_key_hash FROM api_keys"):
            if row["api_key_hash"] and self._secrets.key_matches(str(row["api_key_hash"]), api_key):
                return str(row["user_id"])
        return None

    def broker_session(self, broker: str, broker_user_id: str = "") -> BrokerSession:
        """The session OpenAlgo's login stored for ``broker``. Raises NoSession or OpenAlgoUnavailable.

        Rows stored for another broker client id than ``broker_user_id`` are never used (rows with
        none are); among the rest, an exact client id match comes first. Revoked rows (OpenAlgo
        revokes sessions at their daily expiry) and rows that do not decrypt are skipped.
        """
        rows = self._query("SELECT name, auth, feed_token, user_id, is_revoked FROM auth "
                           "WHERE lower(broker) = lower(?) ORDER BY rowid DESC", (broker,))
        wanted = broker_user_id.casefold()
        exact = [r for r in rows if wanted and str(r["user_id"] or "").casefold() == wanted]
        candidates = exact + [r for r in rows if not r["user_id"] or not wanted]
        live = [r for r in candidates if r["auth"] and not _is_true(r["is_revoked"])]
        if not candidates:
            raise NoSession(f"OpenAlgo holds no {broker} session: log in to {broker} through OpenAlgo")
        if not live:
            raise NoSession(f"OpenAlgo's {broker} session is revoked: log in to {broker} through OpenAlgo again")
        for row in live:
            token = self._secrets.decrypt(str(row["auth"]))
            if token:
                feed_token = self._secrets.decrypt(str(row["feed_token"])) if row["feed_token"] else None
                return BrokerSession(str(row["name"]), str(row["user_id"] or ""), token, feed_token or "")
        raise NoSession(f"OpenAlgo's {broker} session does not decrypt with API_KEY_PEPPER (changed since "
                        f"the login?): log in to {broker} through OpenAlgo again")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            with closing(sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_S)) as connection:
                connection.row_factory = sqlite3.Row
                return connection.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise OpenAlgoUnavailable(f"cannot read OpenAlgo database {self.path}: {exc}") from None


def _is_true(value: Any) -> bool:
    """SQLAlchemy stores Boolean as 0/1 in SQLite; NULL (no value) means not revoked."""
    return str(value).strip().lower() in ("1", "true")

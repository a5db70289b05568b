"""An OpenAlgo install for tests: its .env and its SQLite database, written as OpenAlgo writes them.

The tables and columns are upstream's (database/auth_db.py, as SQLAlchemy creates them on SQLite), API
keys are stored the way OpenAlgo's ``upsert_api_key`` stores them (an argon2-cffi ``PasswordHasher``
hash of key + pepper, and the key Fernet-encrypted) and broker sessions the way ``upsert_auth`` does
(tokens Fernet-encrypted under PBKDF2-HMAC-SHA256 of the pepper, 100,000 iterations, salted with
FERNET_SALT or the legacy static salt). This is the tests' own implementation of that contract,
independent of shmproxy's, so a mistake in one shows up against the other.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

SCHEMA = """
CREATE TABLE auth (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    auth TEXT NOT NULL,
    feed_token TEXT,
    broker VARCHAR(20) NOT NULL,
    user_id VARCHAR(255),
    is_revoked BOOLEAN
);
CREATE TABLE api_keys (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id VARCHAR NOT NULL UNIQUE,
    api_key_hash TEXT NOT NULL,
    api_key_encrypted TEXT NOT NULL,
    created_at DATETIME DEFAULT (CURRENT_TIMESTAMP),
    order_mode VARCHAR(20)
);
"""


def new_api_key() -> str:
    return secrets.token_hex(32)  # OpenAlgo's key format: 64 hex characters


class OpenAlgoInstall:
    """``OpenAlgoInstall(tmp_path)``: an OpenAlgo directory with ``.env`` and ``db/openalgo.db``."""

    def __init__(self, root: Path, pepper: str | None = None, fernet_salt: str = "") -> None:
        self.root = root
        self.pepper = pepper or secrets.token_hex(32)
        self.fernet_salt = fernet_salt
        self.db = root / "db" / "openalgo.db"
        self.db.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.db)) as connection:
            connection.executescript(SCHEMA)
        self._fernet = fernet_for(self.pepper, fernet_salt)
        self.write_env()

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    def write_env(self, **overrides: str) -> Path:
        """OpenAlgo's .env lines that matter here, in its own style; ``overrides`` replace values."""
        values = {"DATABASE_URL": "sqlite:///db/openalgo.db", "API_KEY_PEPPER": self.pepper,
                  "FERNET_SALT": self.fernet_salt, **overrides}
        lines = ["# OpenAlgo", "BROKER_API_KEY = 'FT0001:::apikey'"]
        lines += [f"{name} = '{value}'" for name, value in values.items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        return self.env_file

    def execute(self, sql: str, params: tuple = ()) -> None:
        with closing(sqlite3.connect(self.db)) as connection, connection:
            connection.execute(sql, params)

    def set_api_key(self, user: str, api_key: str) -> None:
        """Store (or regenerate) the user's API key, as OpenAlgo's API key page does."""
        hashed = PasswordHasher().hash(api_key + self.pepper)
        self.execute("INSERT INTO api_keys (user_id, api_key_hash, api_key_encrypted, order_mode) "
                     "VALUES (?, ?, ?, 'auto') ON CONFLICT(user_id) DO UPDATE SET "
                     "api_key_hash = excluded.api_key_hash, api_key_encrypted = excluded.api_key_encrypted",
                     (user, hashed, self.encrypt(api_key)))

    def set_session(self, user: str, broker: str, token: str, feed_token: str | None = None,
                    broker_user_id: str | None = None, revoked: bool = False) -> None:
        """Store the user's broker session, as OpenAlgo's broker login (and its expiry) does."""
        self.execute("INSERT INTO auth (name, auth, feed_token, broker, user_id, is_revoked) "
                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET auth = excluded.auth, "
                     "feed_token = excluded.feed_token, broker = excluded.broker, user_id = excluded.user_id, "
                     "is_revoked = excluded.is_revoked",
                     (user, self.encrypt(token), self.encrypt(feed_token) if feed_token else None, broker,
                      broker_user_id, revoked))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode() if value else ""


def fernet_for(pepper: str, fernet_salt: str = "") -> Fernet:
    salt = bytes.fromhex(fernet_salt) if len(fernet_salt) >= 32 else b"openalgo_static_salt"
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=100_000)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(pepper.encode())))

"""OpenAlgo's hashing and encryption contract (upstream's database/auth_db.py), for reading its data.

- An API key is stored as an Argon2 hash (argon2-cffi's ``PasswordHasher`` defaults) of key + pepper.
- Broker tokens, and the API key again for display, are Fernet-encrypted under a key derived from the
  pepper by PBKDF2-HMAC-SHA256 (100,000 iterations, 32 bytes), salted with ``FERNET_SALT`` (hex) when
  it holds at least 32 valid hex characters, else with OpenAlgo's legacy static salt.

This module needs the ``shmproxy[openalgo]`` extra (argon2-cffi, cryptography); nothing else in
shmproxy imports it unless OpenAlgo's database is configured.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

LEGACY_SALT = b"openalgo_static_salt"
KDF_ITERATIONS = 100_000


def fernet_salt(raw: str) -> bytes | None:
    """The salt ``FERNET_SALT`` gives, or None where OpenAlgo falls back to its legacy salt
    (unset, shorter than 32 characters, or not hex)."""
    raw = raw.strip()
    if len(raw) < 32:
        return None
    try:
        return bytes.fromhex(raw)
    except ValueError:
        return None


@lru_cache(maxsize=4)
def _cipher(pepper: str, salt: bytes) -> Fernet:
    """Derived once per (pepper, salt): PBKDF2 is slow by design and several readers share it."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=KDF_ITERATIONS)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(pepper.encode())))


class Secrets:
    """OpenAlgo's pepper and the token cipher derived from it."""

    def __init__(self, pepper: str, salt: bytes) -> None:
        self._pepper = pepper
        self._cipher = _cipher(pepper, salt)
        self._hasher = PasswordHasher()

    def __repr__(self) -> str:
        return "Secrets(...)"

    def key_matches(self, stored_hash: str, api_key: str) -> bool:
        """Whether ``api_key`` is the key behind ``stored_hash``. Slow by design (Argon2)."""
        try:
            return self._hasher.verify(stored_hash, api_key + self._pepper)
        except (VerificationError, InvalidHashError):
            return False

    def decrypt(self, value: str) -> str | None:
        """The plaintext of a stored Fernet token, or None when it was not encrypted under this key."""
        try:
            return self._cipher.decrypt(value.encode()).decode()
        except (InvalidToken, UnicodeError):
            return None

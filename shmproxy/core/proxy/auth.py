"""API-key verification: constant-time comparison against the configured keys.

Keys come from ``SHMPROXY_API_KEYS`` or an API-key file; they are never logged. Every configured key
is compared (no early exit), so the time taken does not reveal which key, or how much of one, matched.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from ..errors import SettingsError

DEFAULT_USER_ID = "shmproxy"


class KeyVerifier:
    """Verifies API keys; :meth:`verify` returns the key's user id, or None."""

    def __init__(self, keys: Iterable[str], user_id: str = DEFAULT_USER_ID) -> None:
        self._keys = [k.encode() for k in keys if k]
        self.user_id = user_id

    def __len__(self) -> int:
        return len(self._keys)

    async def verify(self, api_key: str) -> str | None:
        candidate = api_key.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return self.user_id if matched else None


class Verifier(Protocol):
    async def verify(self, api_key: str) -> str | None: ...


class CompositeVerifier:
    """Asks each verifier in turn (cheap ones first); the first owner found is the key's owner."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self.verifiers = list(verifiers)

    async def verify(self, api_key: str) -> str | None:
        for verifier in self.verifiers:
            owner = await verifier.verify(api_key)
            if owner is not None:
                return owner
        return None


def read_key_file(path: str | Path) -> list[str]:
    """Keys from a file, one a line; blank lines and ``#`` comments are skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"API key file {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise SettingsError(f"API key file {str(p)!r} is a directory") from None
    except PermissionError:
        raise SettingsError(f"API key file {str(p)!r} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise SettingsError(f"API key file {str(p)!r} is not UTF-8 text") from None
    keys = [line.strip() for line in text.splitlines()]
    return [k for k in keys if k and not k.startswith("#")]

"""Where a broker adapter's session token comes from, looked up afresh for every login.

The first source set wins: ``<PREFIX>_AUTH_TOKEN`` (fixed for the run), ``<PREFIX>_TOKEN_FILE`` (a
file holding the token alone), else OpenAlgo's database when the settings point at it: the session
OpenAlgo's daily broker login stored (:mod:`shmproxy.core.openalgo`). The file and the database
change while serve runs; adapters re-read them on a refused login and on a timer. The token itself
is never shown: statuses and errors say where it comes from and why it is not usable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import SettingsError
from ..openalgo.database import NoSession, OpenAlgoDatabase, OpenAlgoUnavailable


class TokenUnavailable(Exception):
    """No usable token right now; the message says why."""


@dataclass(frozen=True)
class TokenStatus:
    """What ``shmproxy adapters`` shows about an adapter's token: where it comes from, and whether it
    is usable now (else ``problem`` says why)."""

    source: str
    usable: bool
    problem: str = ""


@dataclass(frozen=True)
class SessionToken:
    value: str = field(repr=False)
    source: str  # for people, e.g. "OpenAlgo database (user alice)"


def read_token_file(path: str | Path) -> str:
    """The token in ``path``: its content without surrounding whitespace. Raises OSError or ValueError."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token or len(token.split()) > 1:
        raise ValueError("expected the token alone" if token else "the file is empty")
    return token


def _check_token_file(name: str, path: str) -> None:
    try:
        read_token_file(path)
    except OSError as exc:
        raise SettingsError(f"{name}={path!r} cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsError(f"{name}={path!r} is not valid: {exc}") from None


@dataclass(frozen=True)
class TokenSource:
    prefix: str  # of the settings, e.g. FLATTRADE
    broker: str  # as OpenAlgo names it in its auth table
    user_id: str  # the broker client id the session must belong to
    token: str = field(default="", repr=False)
    file: Path | None = None
    openalgo: OpenAlgoDatabase | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, str], prefix: str, broker: str, user_id: str) -> TokenSource:
        """The source the settings choose; SettingsError when none or two are set, or the file is unusable."""
        token_name, file_name = f"{prefix}_AUTH_TOKEN", f"{prefix}_TOKEN_FILE"
        token, file = (config.get(token_name) or "").strip(), (config.get(file_name) or "").strip()
        if token and file:
            raise SettingsError(f"set only one of {token_name} and {file_name}")
        if file:
            _check_token_file(file_name, file)
        openalgo = None if token or file else OpenAlgoDatabase.from_config(config)
        if not (token or file or openalgo):
            raise SettingsError(f"no token: set {token_name} or {file_name}, or point at OpenAlgo's .env "
                                "(DATABASE_URL and API_KEY_PEPPER)")
        return cls(prefix, broker, user_id, token, Path(file) if file else None, openalgo)

    @property
    def changes(self) -> bool:
        """Whether the token can change while serve runs (a file or OpenAlgo's database)."""
        return not self.token

    def describe(self) -> str:
        if self.token:
            return f"{self.prefix}_AUTH_TOKEN"
        if self.file is not None:
            return f"token file {self.file}"
        return "OpenAlgo database"

    def read(self) -> SessionToken:
        """The token now. Raises TokenUnavailable naming why there is none."""
        if self.token:
            return SessionToken(self.token, self.describe())
        if self.file is not None:
            try:
                return SessionToken(read_token_file(self.file), self.describe())
            except (OSError, ValueError) as exc:
                raise TokenUnavailable(f"{self.prefix}_TOKEN_FILE cannot be used: "
                                       f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            session = self.openalgo.broker_session(self.broker, self.user_id)
        except (NoSession, OpenAlgoUnavailable) as exc:
            raise TokenUnavailable(str(exc)) from None
        return SessionToken(session.token, f"OpenAlgo database (user {session.user})")

    def status(self) -> TokenStatus:
        try:
            return TokenStatus(self.read().source, True)
        except TokenUnavailable as exc:
            return TokenStatus(self.describe(), False, str(exc))

"""Settings: one typed, validated object built from the environment and a ``.env`` file.

The environment wins over the file (python-dotenv's ``override=False``); command-line flags win over
both (the CLI passes them as ``overrides``). Invalid values raise :class:`SettingsError` with one line
naming the variable, its value and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv import dotenv_values

from . import layout
from .errors import SettingsError
from .openalgo.location import anchored
from .segment import SHM_DIR, NAME_RE

DEFAULT_BUFFER_NAME = "ws_proxy_buffer"
DEFAULT_BUFFER_SIZE = 1_048_576


def _int_range(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not valid: expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={raw!r} is out of range: allowed {low} to {high}")
        return value

    return parse


def float_range(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not valid: expected a number from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={raw!r} is out of range: allowed {low:g} to {high:g}")
        return value

    return parse


def read_setting(config: Mapping[str, str], name: str, parse: Callable[[str, str], Any], default: Any) -> Any:
    """``config[name]`` parsed (SettingsError naming it when invalid), or ``default`` when unset or blank.

    For settings outside :class:`Settings`, such as an adapter's own.
    """
    raw = (config.get(name) or "").strip()
    return default if not raw else parse(name, raw)


def _buffer_name(name: str, raw: str) -> str:
    value = raw.strip()
    if not NAME_RE.match(value):
        raise SettingsError(
            f"{name}={raw!r} is not valid: use 1-200 letters, digits, '_', '.' or '-' (a name in {SHM_DIR})"
        )
    return value


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _key_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} is not valid: expected true or false")


def _setting(env: str, parse: Callable[[str, str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting shmproxy reads, with its environment variable in ``metadata['env']``."""

    shm_buffer_name: str = _setting("SHM_BUFFER_NAME", _buffer_name, DEFAULT_BUFFER_NAME, "ring name in /dev/shm")
    shm_buffer_size: int = _setting(
        "SHM_BUFFER_SIZE", _int_range(layout.MIN_SEGMENT_SIZE, layout.MAX_SEGMENT_SIZE), DEFAULT_BUFFER_SIZE,
        "ring size in bytes, header included",
    )
    websocket_host: str = _setting("WEBSOCKET_HOST", _text, "127.0.0.1", "address serve binds")
    websocket_port: int = _setting("WEBSOCKET_PORT", _int_range(0, 65535), 8765, "port serve binds (0: any free port)")
    ws_auth_grace_seconds: float = _setting(
        "WS_AUTH_GRACE_SECONDS", float_range(0.1, 3600), 15.0, "seconds a client may stay unauthenticated"
    )
    ws_max_queue: int = _setting("WS_MAX_QUEUE", _int_range(1, 1_000_000), 1024, "frames buffered per client")
    ws_ping_interval: float = _setting("WS_PING_INTERVAL", float_range(0, 3600), 20.0, "seconds between pings (0 = off)")
    ws_ping_timeout: float = _setting("WS_PING_TIMEOUT", float_range(0.1, 3600), 20.0, "seconds to wait for a pong")
    max_symbols_per_websocket: int = _setting(
        "MAX_SYMBOLS_PER_WEBSOCKET", _int_range(1, 1_000_000), 1000, "subscriptions one client may hold"
    )
    max_websocket_connections: int = _setting(
        "MAX_WEBSOCKET_CONNECTIONS", _int_range(1, 100_000), 1000, "clients served at once"
    )
    stale_feed_seconds: float = _setting(
        "SHMPROXY_STALE_SECONDS", float_range(1, 86400), 30.0, "no tick for this long while subscribed: degraded"
    )
    api_keys: tuple[str, ...] = _setting("SHMPROXY_API_KEYS", _key_list, (), "accepted API keys, comma-separated")
    key_cache_seconds: float = _setting(
        "SHMPROXY_KEY_CACHE_SECONDS", float_range(0, 3600), 60.0,
        "an API key verified against OpenAlgo's database is trusted this long without a new check",
    )

    @classmethod
    def load(cls, env_file: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Build settings from ``env_file`` (if given, it must exist) + the environment + ``overrides``.

        ``overrides`` maps field names to already-typed values (flags); ``None`` values are ignored.
        """
        source = load_environment(env_file)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = f.metadata["parse"](f.metadata["env"], raw)
        settings = cls(**values)
        return settings.with_overrides(overrides or {})

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Apply typed values (from flags) after validating them like their variables."""
        changes = {}
        by_name = {f.name: f for f in fields(self)}
        for name, value in overrides.items():
            if value is None:
                continue
            f = by_name[name]
            raw = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
            changes[name] = f.metadata["parse"](f.metadata["env"], raw)
        return replace(self, **changes)


def load_environment(env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The variables shmproxy sees: ``env_file`` (if given) overlaid by the process environment.

    Adapters read their own settings (``ENABLE_*``, ``FLATTRADE_*``, ...) from this mapping. A relative
    SQLite ``DATABASE_URL`` in the file is made absolute against the file's directory, where OpenAlgo
    runs from (:mod:`shmproxy.core.openalgo.location`).
    """
    source = {k: v for k, v in (read_env_file(env_file) if env_file is not None else {}).items() if v is not None}
    if "DATABASE_URL" in source:
        source["DATABASE_URL"] = anchored(source["DATABASE_URL"], Path(env_file).parent)
    source.update(os.environ)
    return source


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """Read a ``.env`` file with python-dotenv; a missing or unreadable file is a SettingsError."""
    p = Path(path)
    if not p.exists():
        raise SettingsError(f"env file {str(p)!r} does not exist")
    if not p.is_file():
        raise SettingsError(f"env file {str(p)!r} is not a regular file")
    try:
        p.read_bytes().decode("utf-8")
    except PermissionError:
        raise SettingsError(f"env file {str(p)!r} is not readable (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"env file {str(p)!r} is not UTF-8 text (bad byte at offset {exc.start})") from None
    return dict(dotenv_values(p, encoding="utf-8"))

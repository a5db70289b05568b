"""Finding adapters: every class registered under the ``shmproxy.adapters`` entry-point group.

The built-ins (``mock``, ``flattrade``) register the same way in this project's pyproject.toml, so a
third-party package adds a broker by declaring its own entry point, without touching shmproxy.
Adapters that are not installed as a package (a module on ``PYTHONPATH``) are named in
``SHMPROXY_EXTRA_ADAPTERS="name=module:attribute,..."``. An adapter is enabled by
``ENABLE_<NAME>=true`` in the environment or the .env file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable, Mapping

from ..errors import SettingsError
from .base import Adapter
from .session_token import TokenStatus

GROUP = "shmproxy.adapters"
log = logging.getLogger("shmproxy.adapters")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AdapterInfo:
    """What ``shmproxy adapters`` shows about one installed adapter."""

    name: str
    description: str
    enabled: bool
    problems: list[str]
    load_error: str | None = None
    token: TokenStatus | None = None

    @property
    def configured(self) -> bool:
        return not self.problems and self.load_error is None


def enable_variable(name: str) -> str:
    return f"ENABLE_{name.upper().replace('-', '_')}"


def is_enabled(name: str, config: Mapping[str, str]) -> bool:
    raw = (config.get(enable_variable(name)) or "").strip().lower()
    if raw and raw not in _TRUE + ("0", "false", "no", "off"):
        raise SettingsError(f"{enable_variable(name)}={config[enable_variable(name)]!r} is not valid: expected true or false")
    return raw in _TRUE


def installed(config: Mapping[str, str] | None = None) -> dict[str, type[Adapter] | Exception]:
    """Adapter classes by name; one that fails to load maps to its exception instead."""
    loaders: dict[str, tuple[str, Callable[[], object]]] = {
        point.name: (point.value, point.load) for point in entry_points(group=GROUP)
    }
    for name, target in _extra_adapters(config or {}):
        loaders[name] = (target, lambda target=target: _load_target(target))
    found: dict[str, type[Adapter] | Exception] = {}
    for name, (target, load) in loaders.items():
        try:
            cls = load()
            if not (isinstance(cls, type) and issubclass(cls, Adapter)):
                raise TypeError(f"{target} is not an Adapter subclass")
            found[name] = cls
        except Exception as exc:  # a broken third-party adapter must not take serve down
            found[name] = exc
    return dict(sorted(found.items()))


def _extra_adapters(config: Mapping[str, str]) -> list[tuple[str, str]]:
    raw = (config.get("SHMPROXY_EXTRA_ADAPTERS") or "").strip()
    pairs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target or not name.strip():
            raise SettingsError(f"SHMPROXY_EXTRA_ADAPTERS entry {item!r} is not valid: expected name=module:attribute")
        pairs.append((name.strip(), target.strip()))
    return pairs


def _load_target(target: str) -> object:
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


def describe(config: Mapping[str, str]) -> list[AdapterInfo]:
    infos = []
    for name, cls in installed(config).items():
        enabled = (config.get(enable_variable(name)) or "").strip().lower() in _TRUE
        if isinstance(cls, Exception):
            infos.append(AdapterInfo(name, "", enabled, [], f"cannot load: {cls}"))
        else:
            infos.append(AdapterInfo(name, cls.description, enabled, cls.check(config), token=cls.token_status(config)))
    return infos


def enabled_adapters(config: Mapping[str, str]) -> list[type[Adapter]]:
    """The enabled adapters' classes; an enabled adapter that cannot run is a SettingsError."""
    chosen = []
    available = installed(config)
    for name, cls in available.items():
        if not is_enabled(name, config):
            continue
        if isinstance(cls, Exception):
            raise SettingsError(f"{enable_variable(name)} is set but the {name} adapter cannot be loaded: {cls}")
        problems = cls.check(config)
        if problems:
            raise SettingsError(f"{enable_variable(name)} is set but the {name} adapter is not configured: {problems[0]}")
        chosen.append(cls)
    known = set(available)
    for key, value in config.items():
        if key.startswith("ENABLE_") and (value or "").strip().lower() in _TRUE:
            name = key[len("ENABLE_"):].lower().replace("_", "-")
            if name not in known and name.replace("-", "_") not in known:
                log.warning("%s is set but no adapter named %r is installed", key, name)
    return chosen

"""Plan the move of an OpenAlgo ``.env`` from ZeroMQ (``ZMQ_*``) to shared memory (``SHM_*``).

Pure: :func:`plan` takes a parsed file and returns a :class:`Migration` (the new file and a report of
what was replaced, added, kept and why); reading, writing and printing are the caller's business.
Only whole entries are removed or inserted, so every other byte of the file stays as it was.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from dotenv.variables import Variable, parse_variables

from .envfile import BOM, MASK, EnvFile, Entry, Kind, Style, parse
from .errors import MigrateOptionError
from .settings import DEFAULT_BUFFER_NAME, DEFAULT_BUFFER_SIZE

ZMQ_PREFIX = "ZMQ_"
SHM_SETTINGS = {"SHM_BUFFER_NAME": DEFAULT_BUFFER_NAME, "SHM_BUFFER_SIZE": str(DEFAULT_BUFFER_SIZE)}
USER_ID_KEYS = {"flattrade": "FLATTRADE_USER_ID"}  # brokers whose adapter needs the account's user id
MARKER = "# shmproxy migrate-config:"
_SHOWN_PREFIXES = ("SHM_", "ENABLE_")  # values shmproxy writes itself; every other value may be a secret
_TOKEN = re.compile(r"[A-Za-z0-9_.@-]+")  # user ids shmproxy writes: plain tokens that need no quoting


def adapter_names() -> set[str]:
    """Brokers shmproxy has an adapter for, from the ``shmproxy.adapters`` entry points."""
    names = {ep.name for ep in entry_points(group="shmproxy.adapters")}
    # The entry points exist only once an installed shmproxy declares them (the adapter registry);
    # a checkout installed before that still ships the Flattrade adapter, so fall back to it.
    return names or {"flattrade"}


def shown(key: str) -> bool:
    """Whether a key's value may be printed: only the settings shmproxy writes itself."""
    return key.startswith(_SHOWN_PREFIXES)


def enable_key(broker: str) -> str:
    """The switch that turns a broker's adapter on, e.g. ``ENABLE_FLATTRADE``."""
    return "ENABLE_" + re.sub(r"\W", "_", broker).upper()


@dataclass(frozen=True)
class Item:
    """One setting in the report: where it is (or will be), its printable value, and why."""

    key: str
    line: int
    value: str  # the value for keys :func:`shown` allows, MASK otherwise
    reason: str = ""


@dataclass(frozen=True)
class Migration:
    """The result of :func:`plan`: the file before and after, and the report."""

    before: EnvFile
    after: EnvFile
    status: str  # "migrated", "already-migrated" or "nothing-to-migrate"
    removed: tuple[Item, ...]
    added: tuple[Item, ...]
    kept: tuple[Item, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    broker: str | None

    @property
    def changed(self) -> bool:
        return self.status == "migrated"

    def diff(self, name: str) -> list[str]:
        """A unified diff (lines without endings) with every secret value masked."""
        return list(
            difflib.unified_diff(
                self.before.masked_lines(shown), self.after.masked_lines(shown),
                fromfile=name, tofile=f"{name} (migrated)", lineterm="",
            )
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (values masked like the diff)."""
        return {
            "status": self.status, "changed": self.changed, "broker": self.broker,
            "removed": [asdict(i) for i in self.removed], "added": [asdict(i) for i in self.added],
            "kept": [asdict(i) for i in self.kept],
            "warnings": list(self.warnings), "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Wanted:
    key: str
    value: str
    reason: str
    explicit: bool = False  # given on the command line: say so when the file already has another value


def plan(env: EnvFile, broker: str | None = None, user_id: str | None = None) -> Migration:
    """Plan the migration of ``env``; ``broker`` and ``user_id`` are the explicit ``--broker``/``--user-id``."""
    current = env.last_setting()
    adapters = adapter_names()
    name = _broker(current, adapters, broker, user_id)
    zmq = [e for e in env.settings() if (e.key or "").startswith(ZMQ_PREFIX)]
    warnings = _input_warnings(env) + _zmq_warnings(env, zmq)
    notes, wanted = [], [_Wanted(k, v, "replaces ZeroMQ") for k, v in SHM_SETTINGS.items() if zmq]
    if name and (zmq or broker or user_id):  # an adapter is switched on as part of a migration, or on request
        if name in adapters:
            wanted += _adapter_settings(name, current, broker, user_id)
        else:
            notes.append(f"REDIRECT_URL names {name}; shmproxy has no adapter for it, so no ENABLE_ switch was added")
        id_key = USER_ID_KEYS.get(name)
        if id_key and id_key not in current and all(w.key != id_key for w in wanted):
            warnings.append(f"{id_key} could not be derived: add {id_key}=<your client id> or pass --user-id")
    kept, new = [], []
    for want in wanted:
        if want.key in current:
            kept.append(_item(current[want.key], "already set"))
            if want.explicit and current[want.key].value != want.value:
                warnings.append(f"{current[want.key].where}: {want.key} is already set; left as it is")
        else:
            new.append(want)
    after = parse(_rewrite(env, zmq, new))
    placed = after.last_setting()
    added = [Item(w.key, placed[w.key].line, _show(w.key, w.value), w.reason) for w in new]
    return Migration(
        env, after, _status(env, after, current), tuple(_item(e) for e in zmq), tuple(added), tuple(kept),
        tuple(warnings), tuple(notes), name,
    )


def _broker(current: dict[str, Entry], adapters: set[str], broker: str | None, user_id: str | None) -> str | None:
    """The broker to set up: ``--broker``, else the one REDIRECT_URL names; bad options raise."""
    if broker is not None and broker.lower() not in adapters:
        raise MigrateOptionError(f"--broker {broker}: shmproxy has no adapter for it (has: {', '.join(sorted(adapters))})")
    name = broker.lower() if broker else _broker_in_redirect(current)
    if user_id is not None and name not in USER_ID_KEYS:
        raise MigrateOptionError(f"--user-id needs --broker {' or '.join(sorted(USER_ID_KEYS))}")
    if user_id is not None and not _TOKEN.fullmatch(user_id):
        raise MigrateOptionError(f"--user-id {user_id!r}: use letters, digits, '_', '.', '@' or '-'")
    return name


def _adapter_settings(name: str, current: dict[str, Entry], broker: str | None, user_id: str | None) -> list[_Wanted]:
    """ENABLE_<BROKER>=true and, where the adapter needs one and it is known, the user id."""
    wanted = [_Wanted(enable_key(name), "true", "--broker" if broker else f"REDIRECT_URL names {name}", broker is not None)]
    id_key = USER_ID_KEYS.get(name)
    if id_key and user_id:
        wanted.append(_Wanted(id_key, user_id, "--user-id", explicit=True))
    elif id_key and (derived := _user_id_in_api_key(current)):
        wanted.append(_Wanted(id_key, derived, "client id in BROKER_API_KEY"))
    return wanted


def _broker_in_redirect(current: dict[str, Entry]) -> str | None:
    """The broker in OpenAlgo's ``REDIRECT_URL`` (``http://127.0.0.1:5000/<broker>/callback``)."""
    entry = current.get("REDIRECT_URL")
    parts = [p for p in urlsplit((entry and entry.value) or "").path.split("/") if p]
    return parts[-2].lower() if len(parts) >= 2 and parts[-1] == "callback" else None


def _user_id_in_api_key(current: dict[str, Entry]) -> str | None:
    """The client id in a ``BROKER_API_KEY`` of the form ``CLIENTID:::APIKEY`` (Flattrade's)."""
    entry = current.get("BROKER_API_KEY")
    client, sep, key = ((entry and entry.value) or "").partition(":::")
    return client.strip() if sep and key and _TOKEN.fullmatch(client.strip()) else None


def _input_warnings(env: EnvFile) -> list[str]:
    """What python-dotenv reads differently from what the file seems to say."""
    warnings = []
    for e in env.entries:
        if e.kind is Kind.INVALID:
            warnings.append(f"{e.where}: not KEY=VALUE; python-dotenv skips it (kept as it is)")
        elif e.kind is Kind.SETTING and e.value is None:
            warnings.append(f"{e.where}: {e.key} has no '='; python-dotenv reads no value (kept as it is)")
    seen: dict[str, list[int]] = {}
    for e in env.settings():
        seen.setdefault(e.key or "", []).append(e.line)
    for key, lines in seen.items():
        if len(lines) > 1:
            where = ", ".join(map(str, lines))
            warnings.append(f"line {lines[-1]}: {key} is set on lines {where}; python-dotenv uses the last one")
    first = env.entries[0] if env.entries else None
    if env.bom and first and first.kind is Kind.SETTING and not (first.key or "").startswith(ZMQ_PREFIX):
        warnings.append(f"line 1: the file starts with a byte-order mark, so python-dotenv reads this key as "
                        f"'\\ufeff{first.key}', not {first.key}; save the file as UTF-8 without BOM")
    return warnings


def _zmq_warnings(env: EnvFile, zmq: list[Entry]) -> list[str]:
    """A remote ZeroMQ publisher, and values that expand a ZMQ_* key about to disappear."""
    warnings = []
    host = next((e for e in reversed(zmq) if e.key == "ZMQ_HOST"), None)
    if host and not _is_local(host.value or ""):
        warnings.append(
            f"{host.where}: ZMQ_HOST={host.value!r} is a remote publisher, which shared memory cannot reach: "
            "run shmproxy on that machine (clients connect to its WebSocket) or keep ZeroMQ for this install"
        )
    for e in env.settings() if zmq else []:
        refs = {a.name for a in parse_variables(e.value or "") if isinstance(a, Variable)}
        for ref in sorted(r for r in refs if r.startswith(ZMQ_PREFIX)):
            if e not in zmq:
                warnings.append(f"{e.where}: {e.key} uses ${{{ref}}}, which this migration removes; edit its value")
    return warnings


def _is_local(host: str) -> bool:
    """Loopback, or the bind-all address (the publisher was on this machine)."""
    host = host.strip().strip("[]")
    if host.lower() in ("", "localhost", "*"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _rewrite(env: EnvFile, zmq: list[Entry], new: list[_Wanted]) -> str:
    """The new text: the block (comment + new settings) where the first ZMQ_* entry was, or at the end."""
    if not zmq and not new:
        return env.text
    model = zmq[0] if zmq else next(reversed(env.settings()), None)  # the neighbours' way of writing
    style = (model and model.style) or Style()
    block = [_marker(zmq, new)] + [style.format(w.key, w.value) for w in new]
    nl = env.newline
    lines: list[tuple[str, str]] = []
    for e in env.entries:
        if zmq and e is zmq[0]:
            lines += [(text, nl) for text in block]
        if e not in zmq:
            lines.append((e.text, e.eol))
    if not zmq:
        if lines and not lines[-1][1]:
            lines[-1] = (lines[-1][0], nl)
        lines += [(text, nl) for text in block]
    if not env.ends_with_newline:  # a file that ended without a newline still does
        lines[-1] = (lines[-1][0], "")
    return (BOM if env.bom else "") + "".join(text + eol for text, eol in lines)


def _marker(zmq: list[Entry], new: list[_Wanted]) -> str:
    """The one-line comment above the block saying what replaced what."""
    parts = []
    if zmq:
        old = ", ".join(dict.fromkeys(e.key or "" for e in zmq))
        parts.append(f"{old} replaced by shared memory ({', '.join(SHM_SETTINGS)})")
    adapter = [w.key for w in new if w.key not in SHM_SETTINGS]
    if adapter:
        parts.append(f"added {', '.join(adapter)}")
    return f"{MARKER} {'; '.join(parts)}"


def _status(before: EnvFile, after: EnvFile, current: dict[str, Entry]) -> str:
    """"migrated" when the text changes; else whether an earlier run left its traces."""
    if after.text != before.text:
        return "migrated"
    done = any(k in current for k in SHM_SETTINGS) or any(
        e.kind is Kind.COMMENT and e.text.lstrip().startswith(MARKER) for e in before.entries
    )
    return "already-migrated" if done else "nothing-to-migrate"


def _item(entry: Entry, reason: str = "") -> Item:
    return Item(entry.key or "", entry.line, _show(entry.key or "", entry.value or ""), reason)


def _show(key: str, value: str) -> str:
    return value if shown(key) or not value else MASK

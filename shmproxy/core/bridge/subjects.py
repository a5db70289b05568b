"""NATS subjects for ticks: ``<prefix>.<EXCHANGE>.<SYMBOL>.<MODE>``, names escaped to fit a token.

A NATS subject token cannot hold ``.``, ``*``, ``>`` or whitespace, and must not be empty. Exchange
and symbol are escaped like URL percent-encoding: each UTF-8 byte outside printable ASCII, and
``.``, ``*``, ``>``, ``%`` itself, becomes ``%XX`` (upper-case hex). ``M&M`` and ``BAJAJ-AUTO`` stay
as they are, ``NIFTY 50`` becomes ``NIFTY%2050``, ``BRK.B`` becomes ``BRK%2EB``; escaping ``%`` too
makes it reversible (:func:`unescape_token`). Mode is the number: 1 LTP, 2 Quote, 3 Depth.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ..errors import ShmProxyError

DEFAULT_PREFIX = "ticks"
DEFAULT_FILTER = "ticks.>"
_KEEP = frozenset(map(chr, range(0x21, 0x7F))) - frozenset(".*>%")
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")  # whitespace and control characters: never in a subject
_CACHE_LIMIT = 100_000


class SubjectError(ShmProxyError, ValueError):
    """A subject prefix or filter NATS would refuse."""

    exit_code = 2


_escaped: dict[str, str] = {}


def escape_token(name: str) -> str:
    """``name`` as one subject token (cached: names repeat on every tick)."""
    token = _escaped.get(name)
    if token is None:
        if len(_escaped) >= _CACHE_LIMIT:
            _escaped.clear()
        token = _escaped[name] = "".join(
            c if c in _KEEP else "".join(f"%{b:02X}" for b in c.encode()) for c in name
        )
    return token


def unescape_token(token: str) -> str:
    """The name :func:`escape_token` turned into ``token``; ValueError if it is not one."""
    return unquote(token, errors="strict")


def subject_for(prefix: str, exchange: str, symbol: str, mode: int) -> str:
    return f"{prefix}.{escape_token(exchange)}.{escape_token(symbol)}.{mode}"


def _tokens(subject: str, what: str) -> list[str]:
    if _FORBIDDEN.search(subject):
        raise SubjectError(f"{what} {subject!r} contains whitespace or control characters")
    tokens = subject.split(".")
    if not all(tokens):
        raise SubjectError(f"{what} {subject!r} has an empty token: tokens are separated by single dots")
    return tokens


def check_prefix(prefix: str) -> str:
    """A subject prefix for ``bridge out``: dot-separated tokens without wildcards."""
    if any("*" in t or ">" in t for t in _tokens(prefix, "subject prefix")):
        raise SubjectError(f"subject prefix {prefix!r} cannot contain wildcards ('*' or '>')")
    return prefix


def check_filter(subject: str) -> str:
    """A subscription subject for ``bridge in``: ``*`` matches one whole token, ``>`` the rest (last only)."""
    tokens = _tokens(subject, "subject filter")
    for i, token in enumerate(tokens):
        if token == ">" and i != len(tokens) - 1:
            raise SubjectError(f"subject filter {subject!r}: '>' can only be the last token")
        if token not in ("*", ">") and ("*" in token or ">" in token):
            raise SubjectError(f"subject filter {subject!r}: a wildcard must be a whole token, like 'ticks.*.INFY.>'")
    return subject

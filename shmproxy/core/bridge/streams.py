"""Per-subject message numbers: ``bridge out`` numbers each subject's messages, ``bridge in`` finds gaps.

Core NATS delivers at most once, in order per publisher: a message is never duplicated or
reordered, but one can vanish (a server restart, a slow consumer cut off, a link down before the
client noticed). Numbering per subject rather than per bridge keeps the count exact under any
subject filter, as a filter takes or leaves whole subjects. Each ``bridge out`` run draws a random
origin, so a restarted bridge starts new streams instead of looking like a jump back.
"""

from __future__ import annotations

from ..records import Tick
from .subjects import subject_for

_LIMIT = 1_000_000  # streams remembered; past this they are forgotten (and their next gap missed)


class Route:
    """Where one (exchange, symbol, mode) goes, and how many messages went there."""

    __slots__ = ("subject", "sent")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.sent = 0


class Routes:
    """The :class:`Route` of each tick's (exchange, symbol, mode) under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._routes: dict[tuple[str, str, int], Route] = {}

    def of(self, tick: Tick) -> Route:
        key = (tick.exchange, tick.symbol, tick.mode)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = Route(subject_for(self._prefix, *key))
        return route


class GapCounter:
    """Counts messages missing from each (origin, subject) stream.

    The first message seen of a stream starts it (what came before was not meant for us); after
    that, a jump from ``n`` to ``n + k`` means ``k - 1`` messages were lost on the way.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[int, str], int] = {}
        self.missing = 0

    def see(self, origin: int, subject: str, seq: int) -> None:
        key = (origin, subject)
        last = self._last.get(key)
        if last is None and len(self._last) >= _LIMIT:
            self._last.clear()
        self._last[key] = seq
        if last is not None and seq > last + 1:
            self.missing += seq - last - 1

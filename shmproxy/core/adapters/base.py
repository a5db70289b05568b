"""The adapter interface: an asyncio-native broker feed that publishes into the ring.

serve tells an adapter what its clients need, per instrument, at the highest mode any client holds:
:meth:`Adapter.subscribe` (new instrument, or a new level for one already held) and
:meth:`Adapter.unsubscribe` (nobody needs it any more). The adapter keeps ``wanted`` up to date
before calling the broker, so after a reconnect it can re-subscribe everything from ``wanted``.
Ticks go out through :meth:`Adapter.publish`, which never raises into the adapter: data that cannot
be recorded is logged once per symbol and counted.

To write an adapter: subclass, set ``name`` and ``description``, list the settings in ``settings``,
implement ``_connect_and_run`` (or override start/stop), ``_subscribe`` and ``_unsubscribe``, and
register the class under the ``shmproxy.adapters`` entry-point group. docs/adapters.md has more.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, ClassVar, Mapping

from ..errors import RecordError
from ..publisher import SharedMemoryPublisher
from .session_token import TokenStatus

log = logging.getLogger("shmproxy.adapters")


class AdapterState(str, Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True)
class Setting:
    """One environment setting an adapter reads."""

    name: str
    help: str
    required: bool = False


@dataclass
class AdapterStatus:
    name: str
    state: str
    detail: str
    instruments: int
    reconnects: int
    ticks: int
    rejected: int
    last_tick_age_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Adapter(ABC):
    """Base class of every broker adapter."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, config: Mapping[str, str]) -> None:
        """``config`` is the merged environment (.env + process), already passed by :meth:`check`.

        serve gives the adapter its ring publisher (``self.publisher``) before calling :meth:`start`.
        """
        self.config = config
        self.publisher: SharedMemoryPublisher | None = None
        self.wanted: dict[tuple[str, str], int] = {}  # (exchange, symbol) -> mode the broker must serve
        self.state = AdapterState.STOPPED
        self.detail = ""
        self.reconnects = 0
        self.ticks = 0
        self.rejected = 0
        self._last_tick = 0.0
        self._bad_symbols: set[tuple[str, str]] = set()

    # --- configuration ---------------------------------------------------------------------------
    @classmethod
    def check(cls, config: Mapping[str, str]) -> list[str]:
        """Problems with this adapter's settings in ``config`` (empty when it can run).

        The default checks that required settings are present; adapters add their own checks.
        """
        return [f"{s.name} is not set" for s in cls.settings if s.required and not (config.get(s.name) or "").strip()]

    @classmethod
    def token_status(cls, config: Mapping[str, str]) -> TokenStatus | None:
        """Where the session token comes from and whether it is usable now (never the token), for
        ``shmproxy adapters``; None for an adapter without one."""
        return None

    # --- lifecycle ---------------------------------------------------------------------------------
    @abstractmethod
    async def start(self) -> None:
        """Begin serving; return promptly (connect in the background, retrying as needed)."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect and stop every task of this adapter."""

    # --- subscriptions -----------------------------------------------------------------------------
    async def subscribe(self, exchange: str, symbol: str, mode: int) -> None:
        """Serve ``exchange:symbol`` at ``mode`` (subscribing, or changing the level)."""
        previous = self.wanted.get((exchange, symbol), 0)
        self.wanted[(exchange, symbol)] = mode
        await self._subscribe(exchange, symbol, mode, previous)

    async def unsubscribe(self, exchange: str, symbol: str) -> None:
        """Stop serving ``exchange:symbol``."""
        previous = self.wanted.pop((exchange, symbol), 0)
        if previous:
            await self._unsubscribe(exchange, symbol, previous)

    @abstractmethod
    async def _subscribe(self, exchange: str, symbol: str, mode: int, previous: int) -> None:
        """Ask the broker for the instrument at ``mode`` (``previous`` is 0 or the old mode)."""

    @abstractmethod
    async def _unsubscribe(self, exchange: str, symbol: str, previous: int) -> None:
        """Tell the broker the instrument (held at ``previous``) is no longer needed."""

    def check_instrument(self, exchange: str, symbol: str) -> str | None:
        """Why this adapter cannot serve the instrument (e.g. an unknown symbol), or None."""
        return None

    # --- publishing ----------------------------------------------------------------------------------
    def publish(self, exchange: str, symbol: str, data: dict[str, Any]) -> None:
        """Publish one tick; bad data is logged once per symbol and counted, never raised."""
        assert self.publisher is not None, "serve binds a publisher before start()"
        try:
            self.publisher.publish_market_data(symbol, {**data, "exchange": exchange})
        except RecordError as exc:
            self._reject(exchange, symbol, exc)
            return
        self.ticks += 1
        self._last_tick = time.monotonic()

    def _reject(self, exchange: str, symbol: str, reason: object) -> None:
        """Count a tick that cannot be published; log it once per symbol (a bad feed repeats)."""
        self.rejected += 1
        if (exchange, symbol) not in self._bad_symbols:
            self._bad_symbols.add((exchange, symbol))
            log.warning("%s: cannot record a tick of %s:%s: %s", self.name, exchange, symbol, reason)

    # --- state ---------------------------------------------------------------------------------------
    def set_state(self, state: AdapterState, detail: str = "") -> None:
        if state != self.state or detail != self.detail:
            log.info("%s adapter: %s%s", self.name, state.value, f" ({detail})" if detail else "")
        self.state, self.detail = state, detail

    def status(self) -> AdapterStatus:
        age = time.monotonic() - self._last_tick if self._last_tick else None
        return AdapterStatus(self.name, self.state.value, self.detail, len(self.wanted), self.reconnects,
                             self.ticks, self.rejected, age)

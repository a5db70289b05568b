"""The Flattrade adapter: Flattrade's Noren (PiConnect) market-data WebSocket, inside serve.

One connection serves every instrument clients need. After each (re)connect it logs in, then
subscribes everything in ``wanted``: touchline for LTP and Quote, depth for Depth. Snapshots and
partial updates are merged per instrument (:mod:`.noren`) and each update is published as a full
tick. A dropped or silent link reconnects with exponential back-off and jitter; a rejected login and
an eviction by another login of the same user are retried at a slow pace, so a second session (a
browser, another tool) is not fought over. Settings are described in docs/adapters.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Awaitable, Callable, ClassVar, Iterable, Mapping, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from ..errors import SettingsError
from ..settings import float_range, read_setting
from . import noren
from .backoff import Backoff
from .base import Adapter, AdapterState, Setting
from .session_token import TokenSource, TokenStatus, TokenUnavailable
from .symbolmap import BrokerKey, Instrument, SymbolMap

log = logging.getLogger("shmproxy.adapters")

DEFAULT_URL = "wss://piconnect.flattrade.in/PiConnectWSAPI/"
EXCHANGE_ALIASES = {"NSE_INDEX": "NSE", "BSE_INDEX": "BSE"}  # OpenAlgo exchanges Noren knows by another name
EVICTED = "evicted by another login"
T = TypeVar("T")


class LoginRefused(Exception):
    """The broker (or the token source) refused this session: retry at the slow pace."""


class TokenRefreshed(Exception):
    """The token source holds a new token: start the session over with it."""


@dataclass(frozen=True)
class FlattradeSettings:
    """The adapter's settings, checked; :meth:`from_config` raises SettingsError naming a bad one."""

    user_id: str
    account_id: str
    tokens: TokenSource
    url: str
    symbols: SymbolMap
    heartbeat_s: float
    auth_retry_s: float
    token_check_s: float

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> FlattradeSettings:
        user_id = _get(config, "FLATTRADE_USER_ID")
        if not user_id:
            raise SettingsError("FLATTRADE_USER_ID is not set")
        return cls(
            user_id=user_id,
            account_id=_get(config, "FLATTRADE_ACCOUNT_ID") or user_id,
            tokens=TokenSource.from_config(config, "FLATTRADE", FlattradeAdapter.name, user_id),
            url=_url(_get(config, "FLATTRADE_WS_URL") or DEFAULT_URL),
            symbols=_symbol_map(_get(config, "FLATTRADE_SYMBOL_MAP")),
            heartbeat_s=read_setting(config, "FLATTRADE_HEARTBEAT_SECONDS", _SECONDS, 30.0),
            auth_retry_s=read_setting(config, "FLATTRADE_AUTH_RETRY_SECONDS", _SECONDS, 60.0),
            token_check_s=read_setting(config, "FLATTRADE_TOKEN_CHECK_SECONDS", _SECONDS, 300.0),
        )


def _get(config: Mapping[str, str], name: str) -> str:
    return (config.get(name) or "").strip()


def _checked(name: str, path: str, load: Callable[[str], T]) -> T:
    """``load(path)``, turning OSError and ValueError into a SettingsError naming the setting."""
    try:
        return load(path)
    except OSError as exc:
        raise SettingsError(f"{name}={path!r} cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsError(f"{name}={path!r} is not valid: {exc}") from None


def _url(value: str) -> str:
    try:
        parse_uri(value)
    except (InvalidURI, ValueError):
        raise SettingsError(f"FLATTRADE_WS_URL={value!r} is not valid: expected a ws:// or wss:// URL") from None
    return value


def _symbol_map(path: str) -> SymbolMap:
    if not path:
        raise SettingsError("FLATTRADE_SYMBOL_MAP is not set (a CSV file: exchange,symbol,token)")
    return _checked("FLATTRADE_SYMBOL_MAP", path, lambda p: SymbolMap.load(p, EXCHANGE_ALIASES))


_SECONDS = float_range(0.05, 3600)


class FlattradeAdapter(Adapter):
    name = "flattrade"
    description = "Flattrade (Noren PiConnect) market-data WebSocket"
    settings = (
        Setting("FLATTRADE_USER_ID", "Flattrade client id", required=True),
        Setting("FLATTRADE_ACCOUNT_ID", "account id (default: the user id)"),
        Setting("FLATTRADE_AUTH_TOKEN", "session token (or FLATTRADE_TOKEN_FILE, or OpenAlgo's database)"),
        Setting("FLATTRADE_TOKEN_FILE", "file holding the session token, re-read on every (re)connect"),
        Setting("FLATTRADE_TOKEN_CHECK_SECONDS", "how often a token file or OpenAlgo's database is checked for "
                "a new token while connected (default 300)"),
        Setting("FLATTRADE_WS_URL", f"market-data WebSocket (default {DEFAULT_URL})"),
        Setting("FLATTRADE_SYMBOL_MAP", "CSV file exchange,symbol,token: OpenAlgo symbols to broker tokens",
                required=True),
        Setting("FLATTRADE_HEARTBEAT_SECONDS", "heartbeat interval (default 30); four missed = a dead link"),
        Setting("FLATTRADE_AUTH_RETRY_SECONDS", "retry pace after a refused login or an eviction (default 60)"),
    )
    connect_timeout_s: ClassVar[float] = 10.0  # TCP + TLS + WebSocket handshake
    login_timeout_s: ClassVar[float] = 10.0  # login sent -> ack
    close_timeout_s: ClassVar[float] = 2.0
    stable_after_s: ClassVar[float] = 10.0  # a session that lasted this long resets the back-off
    silent_heartbeats: ClassVar[int] = 4  # this many heartbeat intervals without a message: a dead link

    @classmethod
    def check(cls, config: Mapping[str, str]) -> list[str]:
        try:
            FlattradeSettings.from_config(config)
        except SettingsError as exc:
            return [str(exc)]
        return []

    @classmethod
    def token_status(cls, config: Mapping[str, str]) -> TokenStatus:
        try:
            tokens = TokenSource.from_config(config, "FLATTRADE", cls.name, _get(config, "FLATTRADE_USER_ID"))
        except SettingsError as exc:
            return TokenStatus("none", False, str(exc))
        return tokens.status()

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        self.options = FlattradeSettings.from_config(config)
        self._book = noren.FeedBook()
        self._backoff = Backoff(first=0.5, cap=30.0)
        self._ws: ClientConnection | None = None  # set while logged in
        self._held: dict[BrokerKey, str] = {}  # what the broker serves on this connection: key -> level
        self._task: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.set_state(AdapterState.CONNECTING, self.options.url)
        self._task = asyncio.create_task(self._run(), name="flattrade")

    async def stop(self) -> None:
        """Cancel the connection task, which closes the socket with a closing handshake."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.set_state(AdapterState.STOPPED)

    # --- subscriptions -----------------------------------------------------------------------------
    def check_instrument(self, exchange: str, symbol: str) -> str | None:
        if self.options.symbols.broker_key(exchange, symbol) is None:
            return f"unknown symbol for flattrade: {exchange}:{symbol}"
        return None

    async def _subscribe(self, exchange: str, symbol: str, mode: int, previous: int) -> None:
        await self._sync([(exchange, symbol)])

    async def _unsubscribe(self, exchange: str, symbol: str, previous: int) -> None:
        await self._sync([(exchange, symbol)])

    async def _sync(self, instruments: Iterable[Instrument]) -> None:
        """Bring the broker's subscriptions for ``instruments`` in line with ``wanted``: subscribe the
        new level first, then release the old one, so a level change (t -> d) leaves no gap."""
        ws = self._ws
        if ws is None:
            return  # not logged in: the next login subscribes everything in ``wanted``
        try:
            for frame in self._changes(instruments):
                await ws.send(frame)
        except ConnectionClosed:
            pass  # the connection task notices too, reconnects and subscribes everything again

    def _changes(self, instruments: Iterable[Instrument]) -> list[str]:
        """The frames that take ``instruments`` from what the broker holds to ``wanted``, marked as
        held at once (before any send yields, so concurrent calls never send the same change twice)."""
        adds: dict[str, list[BrokerKey]] = defaultdict(list)
        drops: dict[str, list[BrokerKey]] = defaultdict(list)
        for exchange, symbol in instruments:
            key = self.options.symbols.broker_key(exchange, symbol)
            if key is None:
                continue
            want = noren.level_for(self.wanted.get((exchange, symbol), 0))
            held = self._held.get(key)
            if held == want:
                continue
            if want:
                self._held[key] = want
                adds[want].append(key)
            else:
                del self._held[key]
                self._book.forget(key)
            if held:
                drops[held].append(key)
        return ([m for level, keys in adds.items() for m in noren.subscription_messages(level, keys)]
                + [m for level, keys in drops.items() for m in noren.subscription_messages(level, keys, subscribe=False)])

    # --- the connection ----------------------------------------------------------------------------
    async def _run(self) -> None:
        """Connect, serve, and after every end wait as long as the way it ended calls for."""
        while True:
            await asyncio.sleep(await self._session())
            self.reconnects += 1

    async def _session(self) -> float:
        """One connection from connect to its end; returns the delay before the next attempt."""
        logged_in_at = None
        try:
            token = await asyncio.to_thread(self._read_token)  # OpenAlgo's database is a file read
            ws = await connect(self.options.url, open_timeout=self.connect_timeout_s,
                               close_timeout=self.close_timeout_s)
            try:
                await self._login(ws, token)
                logged_in_at = time.monotonic()
                await self._serve(ws, token)
            finally:
                await ws.close()  # a normal closing handshake however it ends: refused, silent, stopping
        except LoginRefused as exc:
            return self._refused(str(exc))
        except TokenRefreshed as exc:
            self._backoff.reset()  # a new token is no fault: log in again at once
            reason = str(exc)
        except ConnectionClosed as exc:
            if logged_in_at is not None and exc.rcvd is not None and exc.rcvd.code == 1000:
                return self._refused(EVICTED)  # the broker's one-session rule: another login took over
            reason = f"connection lost ({exc})"
        except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bug must not end the feed for good
            log.exception("flattrade adapter: unexpected error")
            reason = f"unexpected error: {exc!r}"
        finally:
            self._ws = None
        if logged_in_at is not None and time.monotonic() - logged_in_at >= self.stable_after_s:
            self._backoff.reset()
        self.set_state(AdapterState.RECONNECTING, reason)
        return _next_attempt_in(self._backoff.next_delay(), reason)

    def _refused(self, reason: str) -> float:
        self.set_state(AdapterState.AUTH_FAILED, reason)
        return _next_attempt_in(self.options.auth_retry_s, reason)

    def _read_token(self) -> str:
        """The session token, looked up afresh for every login so a refreshed token is picked up.

        Sources: FLATTRADE_AUTH_TOKEN, else FLATTRADE_TOKEN_FILE, else OpenAlgo's database.
        """
        try:
            return self.options.tokens.read().value
        except TokenUnavailable as exc:
            raise LoginRefused(str(exc)) from None

    async def _login(self, ws: ClientConnection, token: str) -> None:
        """Send the login and wait for its ack; raise LoginRefused with the broker's reason."""
        o = self.options
        await ws.send(noren.login_message(o.user_id, o.account_id, token))
        try:
            ack = await asyncio.wait_for(_login_ack(ws), self.login_timeout_s)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"no login ack within {self.login_timeout_s:g}s") from None
        refusal = noren.login_refusal(ack)
        if refusal is not None:
            raise LoginRefused(f"login refused: {refusal}")

    async def _serve(self, ws: ClientConnection, token: str) -> None:
        """Logged in: subscribe everything wanted, heartbeat, and publish the feed until the link ends
        (or, for a token that can change, until a new one appears)."""
        self._held.clear()
        self._book.clear()
        self._ws = ws  # from here on, subscription changes go straight to the broker
        self.set_state(AdapterState.CONNECTED, self.options.url)
        heartbeat = asyncio.create_task(self._heartbeat(ws))
        try:
            await self._sync(list(self.wanted))
            if self.options.tokens.changes:
                await _first_to_end(self._receive(ws), self._watch_token(token))
            else:
                await self._receive(ws)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _watch_token(self, token: str) -> None:
        """Raise TokenRefreshed once the source holds another token (OpenAlgo's daily re-login, a
        rewritten file): the broker may go on serving the old session for a while, or drop it
        silently. No usable token (OpenAlgo revoked the session) keeps the session the broker accepts."""
        while True:
            await asyncio.sleep(self.options.token_check_s)
            try:
                fresh = await asyncio.to_thread(self._read_token)
            except LoginRefused:
                continue
            if fresh != token:
                raise TokenRefreshed(f"a new session token in the {self.options.tokens.describe()}")

    async def _heartbeat(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            await ws.send(noren.HEARTBEAT)

    async def _receive(self, ws: ClientConnection) -> None:
        silence = self.silent_heartbeats * self.options.heartbeat_s
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), silence)
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(f"no message from the broker for {silence:g}s") from None
            message = noren.parse(raw)
            key = noren.feed_key(message) if message else None
            if key is not None:
                self._on_feed(key, message)

    def _on_feed(self, key: BrokerKey, message: dict) -> None:
        """Merge a snapshot or partial update into the instrument's state and publish the result."""
        instrument = self.options.symbols.instrument(key)
        mode = self.wanted.get(instrument, 0) if instrument else 0
        if not mode:
            return  # a late update for an instrument just released
        state = self._book.merge(key, message)
        try:
            tick = noren.to_tick(state, noren.publish_mode(mode, message["t"]))
        except ValueError as exc:
            self._reject(*instrument, exc)
            return
        if tick is not None:
            self.publish(*instrument, tick)


def _next_attempt_in(delay: float, reason: str) -> float:
    log.warning("flattrade adapter: %s; next attempt in %.1fs", reason, delay)
    return delay


async def _first_to_end(*coroutines: Awaitable[None]) -> None:
    """Run the coroutines until the first ends, cancel the others, and raise what the first raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        done.pop().result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _login_ack(ws: ClientConnection) -> dict:
    """The broker's login ack; anything before it is skipped."""
    while True:
        message = noren.parse(await ws.recv())
        if message and message.get("t") in noren.LOGIN_ACKS:
            return message

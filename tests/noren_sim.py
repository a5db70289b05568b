"""A simulated Flattrade (Noren) market-data server: a real websockets server on 127.0.0.1.

It speaks the message shapes of the broker's protocol (see docs/adapters.md): login with an ack
(a bad token gets a non-"OK" ack with ``emsg`` and the socket is left open, as the broker may do),
heartbeat replies, touchline and depth subscribe/unsubscribe answered with ``tk``/``dk`` snapshots,
then ``tf``/``df`` updates carrying only the fields that changed, and a second login of a user evicting
the older session with close code 1000. Tests drive it from their own thread: :meth:`update` moves a
price, :meth:`drop_all` cuts every connection like a network failure, :meth:`mute` makes the current
sessions go silent with the socket still open. Everything clients send is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from shmproxy.core.adapters.noren import IST

GOOD_TOKEN = "good-token-7d41"
BAD_TOKEN_EMSG = "Session Expired :  Invalid Session Key"
TOUCHLINE_FIELDS = ("ts", "lp", "pc", "v", "o", "h", "l", "c", "ap", "ltq", "ltt", "ft", "oi", "bp1", "bq1", "sp1", "sq1")


def instrument_state(exchange: str, token: str, trading_symbol: str, price: float) -> dict[str, str]:
    """A full instrument state as the broker sends it: every value a string."""
    now = int(time.time())
    state = {"e": exchange, "tk": token, "ts": trading_symbol, "lp": f"{price:.2f}", "pc": "1.25",
             "v": "120000", "o": f"{price - 10:.2f}", "h": f"{price + 15:.2f}", "l": f"{price - 20:.2f}",
             "c": f"{price / 1.0125:.2f}", "ap": f"{price - 2:.2f}", "ltq": "25", "oi": "0",
             "ltt": datetime.fromtimestamp(now - 1, IST).strftime("%H:%M:%S"), "ft": str(now),
             "tbq": "53000", "tsq": "61000"}
    for i in range(1, 6):
        state.update({f"bp{i}": f"{price - 0.05 * i:.2f}", f"bq{i}": str(100 * i), f"bo{i}": str(i),
                      f"sp{i}": f"{price + 0.05 * i:.2f}", f"sq{i}": str(150 * i), f"so{i}": str(i + 1)})
    return state


@dataclass(eq=False)
class Session:
    id: int
    ws: ServerConnection
    uid: str | None = None
    touchline: set[tuple[str, str]] = field(default_factory=set)
    depth: set[tuple[str, str]] = field(default_factory=set)
    muted: bool = False


class NorenSim:
    """``with NorenSim(instruments) as sim: ... sim.url ...``; controls are safe to call from any thread."""

    def __init__(self, instruments: dict[tuple[str, str], dict[str, str]], tokens: tuple[str, ...] = (GOOD_TOKEN,)) -> None:
        self.instruments = instruments
        self.tokens = set(tokens)
        self.events: list[dict[str, Any]] = []  # what clients sent, plus "_closed" entries
        self._lock = threading.Lock()
        self._sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="noren-sim", daemon=True)
        self._server = None
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> NorenSim:
        self._thread.start()
        self._server = self._call(self._serve())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close(close_connections=True)
        self._call(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/PiConnectWSAPI/"

    # --- controls ---------------------------------------------------------------------------------
    def update(self, exchange: str, token: str, **changes: str) -> None:
        """Change fields of an instrument and send each subscriber only those (plus a new feed time)."""
        self._call(self._update((exchange, token), {**changes, "ft": str(int(time.time()))}))

    def drop_all(self) -> None:
        """Cut every connection without a closing handshake, as a network failure does."""
        self._call(self._each_session(lambda s: s.ws.transport.abort()))

    def mute(self) -> None:
        """The current sessions send nothing more (no feed, no heartbeat replies); sockets stay open."""
        self._call(self._each_session(lambda s: setattr(s, "muted", True)))

    # --- records ------------------------------------------------------------------------------------
    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Messages clients sent (each with its ``session`` id), of one ``t`` kind or all."""
        with self._lock:
            return [e for e in self.events if kind is None or e.get("t") == kind]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "the simulator") -> Any:
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}; it saw: {self.received()}"
            time.sleep(0.02)
        return result

    def logins(self) -> list[dict[str, Any]]:
        return self.received("a")

    def subscribed(self, session: int, kind: str) -> set[str]:
        """Keys (``EXCHANGE|TOKEN``) a session sent in messages of ``kind`` (t, u, d, ud)."""
        return {k for m in self.received(kind) if m["session"] == session for k in m["k"].split("#")}

    # --- the server ---------------------------------------------------------------------------------
    def _call(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _serve(self):
        return await serve(self._handle, "127.0.0.1", 0, compression=None)

    async def _each_session(self, action: Callable[[Session], Any]) -> None:
        for session in list(self._sessions.values()):
            action(session)

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(next(self._ids), ws)
        self._sessions[session.id] = session
        try:
            async for raw in ws:
                message = json.loads(raw)
                self._record({"session": session.id, "at": time.monotonic(), **message})
                await self._dispatch(session, message)
        except ConnectionClosed:
            pass
        finally:
            del self._sessions[session.id]
            rcvd = ws.protocol.close_rcvd
            self._record({"t": "_closed", "session": session.id, "code": rcvd.code if rcvd else None})

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    async def _dispatch(self, session: Session, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "a":
            await self._login(session, message)
        elif session.uid is None:
            return  # nothing but a login before a login
        elif kind == "h":
            await self._send(session, {"t": "hk"})
        elif kind in ("t", "d"):
            await self._subscribe(session, kind, _keys(message))
        elif kind in ("u", "ud"):
            (session.touchline if kind == "u" else session.depth).difference_update(_keys(message))

    async def _login(self, session: Session, message: dict[str, Any]) -> None:
        if message.get("accesstoken") not in self.tokens:
            await self._send(session, {"t": "ak", "s": "NOT_OK", "emsg": BAD_TOKEN_EMSG})
            return
        for other in list(self._sessions.values()):
            if other is not session and other.uid == message.get("uid"):
                await other.ws.close(1000, "logged in elsewhere")
        session.uid = message.get("uid")
        await self._send(session, {"t": "ak", "s": "OK", "uid": session.uid})

    async def _subscribe(self, session: Session, kind: str, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            state = self.instruments.get(key)
            if state is None:
                continue
            if kind == "t":
                session.touchline.add(key)
                await self._send(session, {"t": "tk", **{f: state[f] for f in ("e", "tk") + TOUCHLINE_FIELDS}})
            else:
                session.depth.add(key)
                await self._send(session, {"t": "dk", **state})

    async def _update(self, key: tuple[str, str], changes: dict[str, str]) -> None:
        self.instruments[key].update(changes)
        touchline_changes = {f: v for f, v in changes.items() if f in TOUCHLINE_FIELDS}
        head = {"e": key[0], "tk": key[1]}
        for session in list(self._sessions.values()):
            if key in session.touchline:
                await self._send(session, {"t": "tf", **head, **touchline_changes})
            if key in session.depth:
                await self._send(session, {"t": "df", **head, **changes})

    async def _send(self, session: Session, message: dict[str, Any]) -> None:
        if not session.muted:
            try:
                await session.ws.send(json.dumps(message))
            except ConnectionClosed:
                pass


def _keys(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(k.split("|", 1)) for k in str(message.get("k", "")).split("#") if "|" in k]

"""Running an upstream-style adapter inside serve: its synchronous, threaded interface behind the asyncio one.

:func:`serve_adapter` wraps a :class:`~shmproxy.compat.BaseBrokerWebSocketAdapter` subclass in an
:class:`~shmproxy.core.adapters.base.Adapter` that serve finds like any other (an entry point in the
``shmproxy.adapters`` group, or ``SHMPROXY_EXTRA_ADAPTERS``) and runs when ``ENABLE_<NAME>=true``.

- Every call into the upstream adapter (construction, ``initialize``, ``connect``, ``subscribe``,
  ``unsubscribe``, ``disconnect``) runs on one worker thread, in order, never on the event loop.
- ``initialize(broker_name, user_id, auth_data)`` gets the adapter's name, ``<NAME>_USER_ID``, and
  every other ``<NAME>_*`` setting as ``auth_data``, keyed by the rest of its name in lower case
  (``ANGEL_FEED_TOKEN`` -> ``auth_data["feed_token"]``); None when there are none. Settings from a
  ``.env`` file that the environment lacks are copied into ``os.environ`` first, because upstream
  adapters read ``os.getenv`` (upstream loaded its ``.env`` into the environment).
- The adapter publishes through serve's own publisher. Reconnecting is the upstream adapter's job;
  its ``connected`` attribute becomes the state serve reports. A failing call (an exception or an
  ``{"status": "error"}`` response) is logged and shown in the status detail, never raised into serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from typing import Any, ClassVar, Iterable, Mapping

from ..core.adapters.base import Adapter, AdapterState, AdapterStatus, Setting
from .base import BaseBrokerWebSocketAdapter
from .worker import SerialWorker

log = logging.getLogger("shmproxy.adapters")

POLL_S = 0.25  # how often the upstream adapter's ``connected`` flag is read
DEPTH_LEVEL = 5  # the ring holds 5 levels a side


class _NotLive(Exception):
    """The upstream adapter did not come up (or has been disconnected): calls are skipped."""


class _BringUpFailed(Exception):
    def __init__(self, state: AdapterState, detail: str) -> None:
        super().__init__(detail)
        self.state, self.detail = state, detail


def setting_prefix(name: str) -> str:
    return f"{name.upper().replace('-', '_')}_"


def initialize_args(name: str, config: Mapping[str, str]) -> tuple[str, dict[str, str] | None]:
    """``(user_id, auth_data)`` for the upstream ``initialize`` call, from ``<NAME>_*`` settings."""
    prefix = setting_prefix(name)
    user_key = f"{prefix}USER_ID"
    auth_data = {
        key[len(prefix):].lower(): value.strip()
        for key, value in config.items()
        if key.startswith(prefix) and key != user_key and value and value.strip()
    }
    return (config.get(user_key) or "").strip(), auth_data or None


class ThreadedAdapter(Adapter):
    """serve's side of an upstream-style adapter; made by :func:`serve_adapter`."""

    upstream_class: ClassVar[type[BaseBrokerWebSocketAdapter]]

    def __init__(self, config: Mapping[str, str]) -> None:
        super().__init__(config)
        self.upstream: BaseBrokerWebSocketAdapter | None = None
        self._live = False  # read and written on the worker thread only
        self._worker = SerialWorker(f"{self.name}-adapter")
        self._runner: asyncio.Task | None = None
        self._ever_connected = False

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Queue the bring-up (so subscriptions queued from now on follow it) and return at once."""
        self.set_state(AdapterState.CONNECTING)
        user_id, auth_data = initialize_args(self.name, self.config)
        brought_up = self._worker.submit(self._bring_up, user_id, auth_data)
        self._runner = asyncio.create_task(self._run(brought_up), name=f"adapter-{self.name}-run")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        try:
            await self._worker.run(self._disconnect)
        except Exception as exc:
            log.warning("%s adapter: disconnect raised %r", self.name, exc)
        finally:
            self._worker.close()
            self.set_state(AdapterState.STOPPED)

    async def _run(self, brought_up: asyncio.Future) -> None:
        """Wait for the bring-up, then follow the upstream adapter's connection."""
        try:
            await brought_up
        except _BringUpFailed as failure:
            log.warning("%s adapter: %s", self.name, failure.detail)
            self.set_state(failure.state, failure.detail)
            return
        while True:
            self._follow_connection()
            await asyncio.sleep(POLL_S)

    # --- on the worker thread ------------------------------------------------------------------------
    def _bring_up(self, user_id: str, auth_data: dict[str, str] | None) -> None:
        for key, value in self.config.items():
            os.environ.setdefault(key, value)
        try:
            self.upstream = self.upstream_class()
            self.upstream.use_publisher(self.publisher)
            self.upstream.initialize(self.name, user_id, auth_data)
        except Exception as exc:  # upstream adapters check their credentials here
            raise _BringUpFailed(AdapterState.AUTH_FAILED, f"initialize failed: {exc}") from exc
        try:
            self.upstream.connect()
        except Exception as exc:
            raise _BringUpFailed(AdapterState.STOPPED, f"connect failed: {exc}") from exc
        self._live = True

    def _invoke(self, method: str, *args: Any) -> Any:
        if not self._live:
            raise _NotLive
        return getattr(self.upstream, method)(*args)

    def _disconnect(self) -> None:
        self._live = False
        if self.upstream is not None:
            try:
                self.upstream.disconnect()
            finally:
                self.upstream.shm_sink.close()  # a tick from a thread still winding down is dropped

    # --- subscriptions -------------------------------------------------------------------------------
    async def _subscribe(self, exchange: str, symbol: str, mode: int, previous: int) -> None:
        """Upstream keys subscriptions by mode (1 LTP, 2 Quote, 3 Depth, as here): a level change
        subscribes the new mode first, so no tick is missed, then drops the old one."""
        await self._call("subscribe", exchange, symbol, mode, DEPTH_LEVEL)
        if previous and previous != mode:
            await self._call("unsubscribe", exchange, symbol, previous)

    async def _unsubscribe(self, exchange: str, symbol: str, previous: int) -> None:
        await self._call("unsubscribe", exchange, symbol, previous)

    async def _call(self, method: str, exchange: str, symbol: str, *args: Any) -> None:
        """Call the upstream ``method(symbol, exchange, *args)``; a failure goes to the log and the detail."""
        what = f"{method} {exchange}:{symbol}"
        try:
            response = await self._worker.run(self._invoke, method, symbol, exchange, *args)
        except _NotLive:
            log.info("%s adapter is not running: %s skipped", self.name, what)
            return
        except Exception as exc:
            self._fault(f"{what} raised {exc!r}")
            return
        if isinstance(response, Mapping) and response.get("status") == "error":
            self._fault(f"{what} failed: {response.get('code', 'ERROR')}: {response.get('message', '')}")

    def _fault(self, detail: str) -> None:
        log.warning("%s adapter: %s", self.name, detail)
        self.detail = detail  # shows the last failed call until the next one; the state stays

    # --- state -----------------------------------------------------------------------------------------
    def _follow_connection(self) -> None:
        """Mirror the upstream adapter's ``connected`` flag (it reconnects by itself)."""
        if getattr(self.upstream, "connected", False):
            if self._ever_connected and self.state is not AdapterState.CONNECTED:
                self.reconnects += 1
            self._ever_connected = True
            state = AdapterState.CONNECTED
        else:
            state = AdapterState.RECONNECTING if self._ever_connected else AdapterState.CONNECTING
        if state is not self.state:
            self.set_state(state, self.detail)

    def status(self) -> AdapterStatus:
        """The base status, with the tick counts of the upstream adapter's ring sink."""
        status = super().status()
        if self.upstream is None:
            return status
        sink = self.upstream.shm_sink
        return replace(status, ticks=sink.published, rejected=sink.rejected, last_tick_age_s=sink.last_tick_age())


def serve_adapter(upstream_class: type[BaseBrokerWebSocketAdapter], name: str,
                  settings: Iterable[Setting] | None = None, description: str = "") -> type[ThreadedAdapter]:
    """An :class:`Adapter` class that runs ``upstream_class`` inside serve, to register as an entry
    point or in ``SHMPROXY_EXTRA_ADAPTERS`` under ``name``.

    ``settings`` lists what ``shmproxy adapters`` checks and shows; by default ``<NAME>_USER_ID``
    (required) and ``<NAME>_AUTH_TOKEN``.
    """
    if not (isinstance(upstream_class, type) and issubclass(upstream_class, BaseBrokerWebSocketAdapter)):
        raise TypeError(f"{upstream_class!r} does not subclass shmproxy.compat.BaseBrokerWebSocketAdapter")
    prefix = setting_prefix(name)
    if settings is None:
        settings = (
            Setting(f"{prefix}USER_ID", "user id passed to initialize()", required=True),
            Setting(f"{prefix}AUTH_TOKEN", "passed to initialize() as auth_data['auth_token']"),
        )
    attributes = {
        "name": name,
        "description": description or f"OpenAlgo adapter {upstream_class.__name__} (shmproxy.compat)",
        "settings": tuple(settings),
        "upstream_class": upstream_class,
        "__module__": upstream_class.__module__,
        "__doc__": f"{upstream_class.__name__} running inside serve.",
    }
    return type(f"{upstream_class.__name__}InServe", (ThreadedAdapter,), attributes)

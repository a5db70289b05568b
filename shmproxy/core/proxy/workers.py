"""``serve --workers N``: a supervisor and N worker processes sharing one port.

The ring is a broadcast log, so every worker follows it with its own cursor and sees every tick.
Workers bind the same port with SO_REUSEPORT and the kernel spreads connections among them. The
broker adapters run once, in the supervisor: each worker forwards the changes of what its own
clients need, and an :class:`~shmproxy.core.proxy.upstream.UpstreamAggregator` keeps the broker
subscribed at the highest level over all workers. Workers report their health every second and get
back a view of the whole service (adapters and every worker), which their /health and /metrics
include. A worker that dies is restarted (its clients reconnect); stopping the supervisor stops all.

Control messages are JSON lines over a UNIX socket in a private temporary directory.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

from ..adapters.base import AdapterStatus
from ..adapters.manager import AdapterManager, summarize
from ..settings import Settings
from .. import logfmt
from .registry import UpstreamChange
from .server import ServeError, open_ring
from .service import ProxyService, run_until_stopped
from .upstream import UpstreamAggregator

log = logging.getLogger("shmproxy.serve")

REPORT_INTERVAL_S = 1.0
CONTROL_LINE_LIMIT = 16 << 20  # a control line's longest length (asyncio's default, 64 KiB, is too short)
CHANGES_PER_MESSAGE = 500  # a client leaving with thousands of subscriptions sends several lines
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
RESTART_WINDOW_S = 10.0  # more than RESTART_BURST restarts of one worker in this window...
RESTART_BURST = 5
RESTART_PAUSE_S = 2.0  # ...and it waits this long before the next, so a crash loop cannot spin
_SPAWN = mp.get_context("spawn")


def _line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


# --- worker side --------------------------------------------------------------------------------
class RemoteAdapters:
    """A worker's stand-in for the adapter manager: adapters run in the supervisor.

    Subscription changes go to the supervisor; instrument checks use the adapters' own rules
    (constructed here, never started); statuses are the supervisor's latest view.
    """

    adapters: tuple = ()  # nothing runs in the worker itself

    def __init__(self, config: Mapping[str, str], send: Callable[[dict[str, Any]], None]) -> None:
        self._rules = AdapterManager.from_config(config)
        self._send = send
        self._statuses: list[AdapterStatus] = []

    @property
    def broker(self) -> str:
        return self._rules.broker

    def on_upstream(self, changes: list[UpstreamChange]) -> None:
        for start in range(0, len(changes), CHANGES_PER_MESSAGE):
            chunk = changes[start:start + CHANGES_PER_MESSAGE]
            self._send({"op": "upstream", "changes": [[c.exchange, c.symbol, c.old_mode, c.new_mode] for c in chunk]})

    def check_instrument(self, exchange: str, symbol: str) -> str | None:
        return self._rules.check_instrument(exchange, symbol)

    def statuses(self) -> list[AdapterStatus]:
        return self._statuses

    def summary(self) -> str:
        return summarize([s.state for s in self._statuses])

    def update(self, statuses: list[dict[str, Any]]) -> None:
        self._statuses = [AdapterStatus(**s) for s in statuses]

    async def start(self, settings: Settings) -> None:
        pass

    async def stop(self) -> None:
        pass


def run_worker(settings: Settings, keys: list[str], config: dict[str, str], control: str, index: int,
               log_level: int, log_json: bool) -> None:
    """Entry point of a worker process."""
    # Ctrl-C reaches the whole process group; the supervisor alone decides, and stops workers with
    # SIGTERM, so that it never mistakes a worker stopping on Ctrl-C for one that crashed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logfmt.configure(log_level, log_json)
    asyncio.run(_worker(settings, keys, config, control, index))


async def _worker(settings: Settings, keys: list[str], config: dict[str, str], control: str, index: int) -> None:
    reader, writer = await asyncio.open_unix_connection(control, limit=CONTROL_LINE_LIMIT)
    send = lambda message: writer.write(_line(message))  # noqa: E731
    adapters = RemoteAdapters(config, send)
    service = ProxyService(settings, keys, config, adapters=adapters)
    service.server.reuse_port = True
    view: dict[str, Any] = {}
    service.health_extra = lambda: {"worker": index, "service": view.get("service", {})}
    stop = asyncio.Event()

    async def listen() -> None:
        async for raw in reader:
            message = json.loads(raw)
            adapters.update(message.get("adapters", []))
            view.update(message)
        log.warning("worker %d: supervisor gone; stopping", index)
        stop.set()

    async def report() -> None:
        while True:
            own = service.health()
            own.pop("service", None)
            send({"op": "health", "report": own})
            await asyncio.sleep(REPORT_INTERVAL_S)

    send({"op": "hello", "worker": index, "pid": os.getpid()})
    tasks = [asyncio.create_task(listen())]

    def ready(_: ProxyService) -> None:
        send({"op": "ready"})
        tasks.append(asyncio.create_task(report()))

    try:
        await run_until_stopped(service, on_ready=ready, stop=stop, signals=(signal.SIGTERM,))
    finally:
        for task in tasks:
            task.cancel()
        writer.close()


# --- supervisor side ------------------------------------------------------------------------------
class Supervisor:
    """Runs the adapters and ``count`` workers; restarts workers that die."""

    def __init__(self, settings: Settings, keys: list[str], config: Mapping[str, str], count: int,
                 log_level: int, log_json: bool) -> None:
        self.settings = settings
        self.keys = keys
        self.config = dict(config)
        self.count = count
        self._logging = (log_level, log_json)
        self.adapters = AdapterManager.from_config(config)  # checks their settings now
        self.aggregator = UpstreamAggregator(self.adapters.on_upstream)
        self.procs: dict[int, Any] = {}
        self.restarts: dict[int, list[float]] = {i: [] for i in range(count)}
        self.reports: dict[int, tuple[float, dict[str, Any]]] = {}
        self.ready: set[int] = set()
        self._stopping = False
        self._control = ""

    @property
    def port(self) -> int:
        return self.settings.websocket_port

    async def run(self, on_ready: Callable[[Supervisor], None], stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        open_ring(self.settings).close()  # create or check the ring before anything binds
        reservation = _reserve_port(self.settings.websocket_host, self.settings.websocket_port)
        self.settings = replace(self.settings, websocket_port=reservation.getsockname()[1])
        directory = tempfile.mkdtemp(prefix="shmproxy-")
        self._control = str(Path(directory) / "control.sock")
        server = await asyncio.start_unix_server(self._serve_worker, self._control, limit=CONTROL_LINE_LIMIT)
        try:
            await self.adapters.start(self.settings)
            for index in range(self.count):
                self._spawn(index)
            await self._wait_ready()
            on_ready(self)
            while not stop.is_set():
                self._restart_dead()
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
            log.info("shutting down %d workers", len(self.procs))
        finally:
            self._stopping = True
            await self._stop_workers()
            server.close()
            await self.adapters.stop()
            reservation.close()
            shutil.rmtree(directory, ignore_errors=True)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    # --- workers -----------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        level, as_json = self._logging
        proc = _SPAWN.Process(
            target=run_worker, name=f"shmproxy-worker-{index}",
            args=(self.settings, self.keys, self.config, self._control, index, level, as_json),
        )
        proc.start()
        self.procs[index] = proc

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.ready) < self.count:
            dead = [i for i, p in self.procs.items() if not p.is_alive()]
            if dead:
                raise ServeError(f"worker {dead[0]} exited during start-up (code {self.procs[dead[0]].exitcode}); see its log above")
            if time.monotonic() > deadline:
                raise ServeError(f"workers not ready after {READY_TIMEOUT_S:g}s")
            await asyncio.sleep(0.05)

    def _restart_dead(self) -> None:
        now = time.monotonic()
        for index, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            recent = [t for t in self.restarts[index] if now - t < RESTART_WINDOW_S]
            if len(recent) >= RESTART_BURST and now - recent[-1] < RESTART_PAUSE_S:
                continue
            log.warning("worker %d (pid %s) exited with code %s: restarting", index, proc.pid, proc.exitcode)
            self.ready.discard(index)
            self.reports.pop(index, None)
            self.restarts[index] = recent + [now]
            self._spawn(index)

    async def _stop_workers(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker closes its clients with 1001
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            while proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.is_alive():
                proc.kill()
            proc.join(1)

    # --- control channel -----------------------------------------------------------------------
    async def _serve_worker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = None
        member = object()  # this connection's share of the upstream: a restarted worker gets a new one
        try:
            async for raw in reader:
                try:
                    message = json.loads(raw)
                    op = message["op"]
                except (ValueError, KeyError, TypeError) as exc:  # one bad line costs that line only
                    log.warning("worker %s sent a bad control line: %s", index, exc)
                    continue
                if op == "hello":
                    index = message["worker"]
                elif op == "ready":
                    self.ready.add(index)
                elif op == "upstream":
                    self.aggregator.apply(member, [UpstreamChange(*c) for c in message["changes"]])
                elif op == "health":
                    self.reports[index] = (time.monotonic(), message["report"])
                    writer.write(_line(self.view()))
        except (ConnectionError, ValueError) as exc:
            log.warning("worker %s control channel failed: %s", index, exc)
        finally:
            if not self._stopping:
                self.aggregator.drop(member)
            writer.close()

    def view(self) -> dict[str, Any]:
        """The whole service as every worker's /health shows it."""
        now = time.monotonic()
        members = []
        for index in range(self.count):
            proc = self.procs.get(index)
            seen, report = self.reports.get(index, (None, {}))
            members.append({
                "worker": index, "pid": proc.pid if proc else None, "alive": bool(proc and proc.is_alive()),
                "restarts": len(self.restarts[index]), "status": report.get("status", "starting"),
                "report_age_s": None if seen is None else round(now - seen, 1),
                "clients": report.get("clients", {}).get("connected", 0),
                "subscriptions": report.get("subscriptions", {}).get("total", 0),
                "deliveries": report.get("counters", {}).get("deliveries", 0),
                "ticks_in": report.get("feed", {}).get("ticks_in", 0),
            })
        states = [m["status"] for m in members]
        status = "down" if not any(m["alive"] for m in members) else (
            "ok" if all(s == "ok" for s in states) else "degraded")
        return {
            "op": "view",
            "adapters": [s.to_dict() for s in self.adapters.statuses()],
            "service": {"status": status, "workers": members, "upstream": len(self.aggregator.needed())},
        }


def _reserve_port(host: str, port: int) -> socket.socket:
    """Hold the port with SO_REUSEPORT (not listening) so workers can bind it, and refuse a port
    someone else listens on (a second reuse-port server of ours would silently share it)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a previous serve is no user
    try:
        probe.bind((host, port))
        port = probe.getsockname()[1]
    except OSError as exc:
        probe.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"cannot listen on {host}:{port}: the port is already in use (another serve running?)") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.close()
    reservation.bind((host, port))
    return reservation

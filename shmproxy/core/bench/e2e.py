"""End-to-end benchmark: publisher -> transport -> proxy process -> many WebSocket clients.

A proxy process (a real ``shmproxy serve`` on a private ring, or the ZeroMQ baseline's
upstream-style proxy) serves client processes holding many connections, each subscribed to every
symbol at Quote; this process publishes (paced, or flat out) and the clients count deliveries and
sample tick-to-client latency from the tick's ``last_trade_time`` (see load.py), on one clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

from ..publisher import SharedMemoryPublisher
from . import children
from .load import Publish, publish_for
from .ring import private_ring
from .stats import latency_summary_us

_SENT_NS = re.compile(rb'"last_trade_time": ?(\d+)')  # serve writes compact JSON, json.dumps adds a space
_BANNER = re.compile(r"ws://[\d.]+:(\d+)")
_SAMPLE_EVERY = 16
_START_TIMEOUT_S = 30.0
_SLACK_S = 60.0  # every wait for a child is bounded by the run's length plus this
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class ProxyProcess:
    """A WebSocket proxy under test: where clients connect, its API key, and its resource use."""

    proc: subprocess.Popen
    url: str
    key: str

    def cpu_seconds(self) -> float:
        """CPU time of the proxy and its worker processes (serve --workers runs them as children)."""
        return sum(_stat(pid)[0] for pid in self._tree())

    def rss_mib(self) -> float:
        return sum(_stat(pid)[1] for pid in self._tree()) * _PAGE / (1 << 20)

    def _tree(self) -> list[int]:
        """The proxy's pid and its direct children's."""
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if _stat(int(entry))[2] == self.proc.pid:
                        children.append(int(entry))
                except OSError:  # exited meanwhile
                    pass
        return [self.proc.pid, *children]


def _stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, resident pages, parent pid) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S, int(fields[21]), int(fields[1])


@contextmanager
def running_proxy(argv: list[str], key: str) -> Iterator[ProxyProcess]:
    """Run ``argv``, a proxy accepting API key ``key`` that prints its ws:// address when ready; stop it afterwards."""
    env = {**os.environ, "SHMPROXY_API_KEYS": key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            preexec_fn=partial(children.die_with_parent, os.getpid()))
    try:
        port = _wait_for_banner(proc)
        yield ProxyProcess(proc, f"ws://127.0.0.1:{port}", key)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_banner(proc: subprocess.Popen) -> int:
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if selector.select(_START_TIMEOUT_S):
            line = proc.stdout.readline()
            if match := _BANNER.search(line):
                return int(match.group(1))
            raise RuntimeError(f"benchmark proxy did not start: {' '.join(proc.args[1:4])} said {line!r}")
    raise RuntimeError(f"benchmark proxy did not start within {_START_TIMEOUT_S:.0f} s: {' '.join(proc.args[1:4])}")


@contextmanager
def running_serve(ring: str, workers: int = 1) -> Iterator[ProxyProcess]:
    """A ``shmproxy serve`` process (``workers`` of them on one port) reading ``ring``, on a free port of 127.0.0.1."""
    argv = [sys.executable, "-m", "shmproxy", "serve", "--port", "0", "--host", "127.0.0.1", "--buffer", ring,
            "--log-level", "warning", "--workers", str(workers)]
    with running_proxy(argv, secrets.token_hex(16)) as serve:
        yield serve


def fan_out(clients: int = 100, symbols: int = 50, seconds: float = 5.0, rate: float | None = 1000.0,
            client_processes: int = 2, workers: int = 1) -> dict[str, float]:
    """Ring -> serve (with ``workers`` processes): deliveries/s and latency with ``clients`` connections,
    each subscribed to every symbol."""
    with private_ring() as ring, running_serve(ring, workers) as serve, SharedMemoryPublisher(buffer_name=ring) as pub:
        return measure_fan_out(serve, pub.publish_market_data, clients, symbols, seconds, rate, client_processes)


def measure_fan_out(proxy: ProxyProcess, publish: Publish, clients: int, symbols: int, seconds: float,
                    rate: float | None, client_processes: int = 2) -> dict[str, float]:
    """Connect ``clients`` to ``proxy``, publish through ``publish`` for ``seconds``, count what arrives."""
    names = [f"BENCH{i}" for i in range(symbols)]
    with _client_fleet(proxy, names, clients, client_processes, seconds) as fleet:
        cpu_before = proxy.cpu_seconds()
        fleet.start.set()
        published = publish_for(publish, names, seconds, rate)
        time.sleep(0.2)  # let the last batch arrive
        fleet.stop.set()
        cpu_used = proxy.cpu_seconds() - cpu_before
        outcomes = fleet.outcomes()
        rss = proxy.rss_mib()
    delivered = sum(o[0] for o in outcomes)
    elapsed = max(o[1] for o in outcomes)
    samples = [s for o in outcomes for s in o[2]]
    return {
        "clients": clients, "symbols": symbols, "rate": rate or 0.0, "published": published,
        "published_per_second": published / seconds, "deliveries": delivered,
        "deliveries_per_second": delivered / elapsed, "expected_deliveries": published * clients,
        **latency_summary_us(samples), "proxy_cpu_percent": 100.0 * cpu_used / elapsed,
        "proxy_cpu_us_per_delivery": 1e6 * cpu_used / max(1, delivered), "proxy_rss_mib": rss,
    }


def idle_cpu(clients: int = 10, seconds: float = 3.0) -> dict[str, float]:
    """serve's CPU use with ``clients`` connected and subscribed while nothing is published."""
    with private_ring() as ring, running_serve(ring) as serve:
        with _client_fleet(serve, [f"IDLE{i}" for i in range(5)], clients, 1, seconds) as fleet:
            time.sleep(0.5)
            before = serve.cpu_seconds()
            fleet.start.set()
            time.sleep(seconds)
            fleet.stop.set()
            used = serve.cpu_seconds() - before
            fleet.outcomes()
    return {"clients": clients, "seconds": seconds, "serve_cpu_percent": 100.0 * used / seconds}


@dataclass
class _Fleet:
    """Client processes, connected and subscribed; counting between ``start`` and ``stop``."""

    start: Any
    stop: Any
    results: Any
    procs: list

    def outcomes(self) -> list[tuple[int, float, list[int]]]:
        """(deliveries, seconds from the start to the last of them, latency samples in ns) from each process."""
        return [self.results.get(timeout=_SLACK_S) for _ in self.procs]


@contextmanager
def _client_fleet(proxy: ProxyProcess, symbols: list[str], clients: int, processes: int,
                  seconds: float) -> Iterator[_Fleet]:
    ready, results = children.CTX.Queue(), children.CTX.Queue()
    start, stop = children.CTX.Event(), children.CTX.Event()
    lifetime = seconds + _SLACK_S
    per_process = [clients // processes + (i < clients % processes) for i in range(processes)]
    procs = [children.start(_client_process, proxy.url, proxy.key, symbols, n, lifetime, ready, start, stop, results)
             for n in per_process if n]
    try:
        for _ in procs:
            ready.get(timeout=_SLACK_S)
        yield _Fleet(start, stop, results, procs)
    finally:
        stop.set()
        children.stop(procs)


def _client_process(url: str, key: str, symbols: list[str], connections: int, lifetime: float,
                    ready, start, stop, results) -> None:
    results.put(asyncio.run(_clients(url, key, symbols, connections, time.monotonic() + lifetime, ready, start, stop)))


async def _clients(url, key, symbols, connections, deadline, ready, start, stop) -> tuple[int, float, list[int]]:
    counter = _Counter()
    host, port = url.removeprefix("ws://").split(":")
    streams = [await _open(host, int(port), key, symbols) for _ in range(connections)]
    tasks = [asyncio.create_task(_follow(reader, writer, counter)) for reader, writer in streams]
    ready.put(connections)
    while not start.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    counter.sampling, first, started = True, counter.received, time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    counted = counter.received - first
    elapsed = (counter.last if counted else time.monotonic()) - started  # until the last delivery, not the stop
    counter.sampling = False
    for task in tasks:
        task.cancel()
    for _, writer in streams:
        writer.close()
    return counted, elapsed, counter.samples


class _Counter:
    def __init__(self) -> None:
        self.received = 0
        self.last = 0.0  # when the last tick arrived (monotonic)
        self.sampling = False
        self.samples: list[int] = []


# A minimal WebSocket client: the websockets library costs ~20 us a message in the client, which
# would make two client processes, not the proxy, the bottleneck on a 2-core machine. It walks
# frames in large reads, answers pings, and parses only the frames it samples.
_HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: c2htcHJveHktYmVuY2gtMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask; a zero mask keeps the payload as is)."""
    length = len(payload)
    header = bytes((0x80 | opcode, 0x80 | length)) if length < 126 else bytes((0x80 | opcode, 0xFE)) + length.to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


async def _open(host: str, port: int, key: str, symbols: list[str]):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    writer.write(_HANDSHAKE.format(host=host).encode())
    await reader.readuntil(b"\r\n\r\n")
    for request in ({"action": "authenticate", "api_key": key},
                    {"action": "subscribe", "mode": 2, "symbols": [{"exchange": "NSE", "symbol": s} for s in symbols]}):
        writer.write(_masked(0x1, json.dumps(request).encode()))
        header = await reader.readexactly(2)
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        await reader.readexactly(length)  # the ack
    return reader, writer


async def _follow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: _Counter) -> None:
    buffer = b""
    while chunk := await reader.read(1 << 20):
        buffer += chunk
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start:start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start:start + 8], "big"), start + 8
            if start + length > size:
                break
            if opcode == 0x1:
                counter.received += 1
                if counter.sampling and counter.received % _SAMPLE_EVERY == 0:
                    found = _SENT_NS.search(buffer, start, start + length)
                    if found:
                        counter.samples.append(time.time_ns() - int(found.group(1)))
            elif opcode == 0x9:
                writer.write(_masked(0xA, buffer[start:start + length]))
            offset = start + length
        buffer = buffer[offset:]
        counter.last = time.monotonic()

"""End-to-end benchmark: publisher -> ring -> serve -> many WebSocket clients.

A real ``shmproxy serve`` process reads a private ring; client processes hold many connections,
each subscribed to every symbol; the benchmark publishes Quote ticks (paced, or as fast as it can)
and the clients count deliveries and sample tick-to-client latency. Each tick carries its publish
time in microseconds in ``volume``, so latency is publish -> client receive, measured on one clock.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ..publisher import SharedMemoryPublisher
from .ring import private_ring
from .stats import latency_summary_us

_CTX = mp.get_context("fork")
_VOLUME = re.compile(rb'"volume":(\d+)')
_SAMPLE_EVERY = 16
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    url: str
    key: str

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE / (1 << 20)


@contextmanager
def running_serve(ring: str, extra_env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """A ``shmproxy serve`` process on a free port of 127.0.0.1, stopped afterwards."""
    key = secrets.token_hex(16)
    env = {**os.environ, "SHMPROXY_API_KEYS": key, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shmproxy", "serve", "--port", "0", "--host", "127.0.0.1", "--buffer", ring,
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"ws://[\d.]+:(\d+)", line)
        if not match:
            raise RuntimeError(f"serve did not start: {line!r}")
        yield ServeProcess(proc, f"ws://127.0.0.1:{match.group(1)}", key)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _client_process(url: str, key: str, symbols: list[str], connections: int, ready, start, stop, results) -> None:
    results.put(asyncio.run(_clients(url, key, symbols, connections, ready, start, stop)))


async def _clients(url, key, symbols, connections, ready, start, stop) -> tuple[int, float, list[int]]:
    counter = _Counter()
    host, port = url.removeprefix("ws://").split(":")
    streams = [await _open(host, int(port), key, symbols) for _ in range(connections)]
    tasks = [asyncio.create_task(_follow(reader, writer, counter)) for reader, writer in streams]
    ready.put(connections)
    while not start.is_set():
        await asyncio.sleep(0.01)
    counter.sampling, first, started = True, counter.received, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
    counted, elapsed = counter.received - first, time.monotonic() - started
    counter.sampling = False
    for task in tasks:
        task.cancel()
    for _, writer in streams:
        writer.close()
    return counted, elapsed, counter.samples


class _Counter:
    def __init__(self) -> None:
        self.received = 0
        self.sampling = False
        self.samples: list[int] = []


# A minimal WebSocket client: the websockets library costs ~20 us a message in the client, which
# would make two client processes, not serve, the bottleneck on a 2-core machine. It walks frames
# in large reads, answers pings, and parses only the frames it samples.
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
                    found = _VOLUME.search(buffer, start, start + length)
                    if found:
                        counter.samples.append(time.time_ns() - int(found.group(1)) * 1000)
            elif opcode == 0x9:
                writer.write(_masked(0xA, buffer[start:start + length]))
            offset = start + length
        buffer = buffer[offset:]


def _publish(ring: str, symbols: list[str], seconds: float, rate: float | None) -> int:
    """Quote ticks round-robin over ``symbols``; ``rate`` ticks/s, or flat out when None."""
    count = 0
    data = {"exchange": "NSE", "mode": 2, "ltp": 100.0, "close": 99.0, "open": 99.5, "high": 101.0, "low": 98.0}
    with SharedMemoryPublisher(buffer_name=ring) as pub:
        started = time.perf_counter()
        end = started + seconds
        while (now := time.perf_counter()) < end:
            if rate is not None:
                due = int((now - started) * rate) + 1
                if count >= due:
                    time.sleep(min(0.001, (count + 1 - due) / rate))
                    continue
            data["volume"] = time.time_ns() // 1000
            pub.publish_market_data(symbols[count % len(symbols)], data)
            count += 1
    return count


def fan_out(clients: int = 100, symbols: int = 50, seconds: float = 5.0, rate: float | None = 1000.0,
            client_processes: int = 2) -> dict[str, float]:
    """Deliveries/s and latency with ``clients`` connections, each subscribed to every symbol."""
    names = [f"BENCH{i}" for i in range(symbols)]
    with private_ring() as ring, running_serve(ring) as serve:
        ready, results = _CTX.Queue(), _CTX.Queue()
        start, stop = _CTX.Event(), _CTX.Event()
        per_process = [clients // client_processes + (i < clients % client_processes) for i in range(client_processes)]
        procs = [_CTX.Process(target=_client_process, args=(serve.url, serve.key, names, n, ready, start, stop, results))
                 for n in per_process if n]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        cpu_before = serve.cpu_seconds()
        start.set()
        published = _publish(ring, names, seconds, rate)
        time.sleep(0.2)  # let the last batch arrive
        stop.set()
        cpu_used = serve.cpu_seconds() - cpu_before
        outcomes = [results.get(timeout=120) for _ in procs]
        rss = serve.rss_mib()
        for p in procs:
            p.join(30)
    delivered = sum(o[0] for o in outcomes)
    elapsed = max(o[1] for o in outcomes)
    samples = [s for o in outcomes for s in o[2]]
    return {
        "clients": clients, "symbols": symbols, "rate": rate or 0.0, "published": published,
        "published_per_second": published / seconds, "deliveries": delivered,
        "deliveries_per_second": delivered / elapsed, "expected_deliveries": published * clients,
        **latency_summary_us(samples), "serve_cpu_percent": 100.0 * cpu_used / elapsed, "serve_rss_mib": rss,
    }


def idle_cpu(clients: int = 10, seconds: float = 3.0) -> dict[str, float]:
    """serve's CPU use with ``clients`` connected and subscribed while nothing is published."""
    names = [f"IDLE{i}" for i in range(5)]
    with private_ring() as ring, running_serve(ring) as serve:
        ready, results = _CTX.Queue(), _CTX.Queue()
        start, stop = _CTX.Event(), _CTX.Event()
        proc = _CTX.Process(target=_client_process, args=(serve.url, serve.key, names, clients, ready, start, stop, results))
        proc.start()
        ready.get(timeout=60)
        time.sleep(0.5)
        before = serve.cpu_seconds()
        start.set()
        time.sleep(seconds)
        stop.set()
        used = serve.cpu_seconds() - before
        results.get(timeout=60)
        proc.join(30)
    return {"clients": clients, "seconds": seconds, "serve_cpu_percent": 100.0 * used / seconds}

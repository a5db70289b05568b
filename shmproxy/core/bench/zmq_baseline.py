"""The ZeroMQ baseline: what shmproxy replaces, measured the way shmproxy is.

Hop: a PUB socket in the publishing process, a SUB socket in each reader process, over
``ipc://`` (a path in a private temporary directory, removed afterwards) or
``tcp://127.0.0.1:<free port>``, with ZeroMQ's default high-water marks. Ticks go out as upstream
OpenAlgo's adapters send them: ``send_multipart([b"EXCHANGE_SYMBOL_MODE", json.dumps(data)])``; a
reader ``json.loads`` each, as upstream's proxy does. End to end: the same publisher feeding the
upstream-style proxy of :mod:`.zmq_proxy` over tcp, measured by :func:`.e2e.measure_fan_out`.

Needs pyzmq, from the optional extra ``bench``: :func:`.extras.require` says so before anything runs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import zmq

from . import e2e
from .hop import Receive
from .load import Publish

TRANSPORTS = ("ipc", "tcp")
_MODE_NAMES = {1: "LTP", 2: "QUOTE", 3: "DEPTH"}
_DRAIN_LIMIT = 4096  # at most this many ticks per receive() call, like the ring reader's poll()
_PROXY_SLACK_S = 60.0  # the proxy process ends by itself this long after its run should be over


class ZmqTransport:
    """PUB/SUB on one endpoint; the publisher binds, as upstream's adapters do, readers connect."""

    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint

    @contextmanager
    def publisher(self) -> Iterator[Publish]:
        with _socket(zmq.PUB) as pub:
            pub.bind(self.endpoint)
            send = pub.send_multipart

            def publish(symbol: str, data: Mapping[str, Any]) -> None:
                send([f"{data['exchange']}_{symbol}_{_MODE_NAMES[data['mode']]}".encode(), json.dumps(data).encode()])

            yield publish

    @contextmanager
    def subscriber(self) -> Iterator[Receive]:
        with _socket(zmq.SUB) as sub:
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(self.endpoint)
            yield lambda timeout: _receive(sub, timeout)


def _receive(sub: zmq.Socket, timeout: float) -> list[tuple[int, int]]:
    if not sub.poll(int(timeout * 1000)):
        return []
    ticks = []
    for _ in range(_DRAIN_LIMIT):
        try:
            _, payload = sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        data = json.loads(payload)
        ticks.append((data["volume"], data["last_trade_time"]))
    return ticks


@contextmanager
def _socket(kind: int) -> Iterator[zmq.Socket]:
    """A socket in a context of its own (one per process: contexts do not survive fork), closed without lingering."""
    context = zmq.Context()
    sock = context.socket(kind)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        context.term()


@contextmanager
def zmq_transport(kind: str) -> Iterator[ZmqTransport]:
    """A ZeroMQ transport over ``ipc`` (a private temporary path, removed after) or ``tcp`` (127.0.0.1)."""
    if kind == "tcp":
        yield ZmqTransport("zmq_tcp", f"tcp://127.0.0.1:{free_port()}")
        return
    with tempfile.TemporaryDirectory(prefix="shmproxy_bench_") as folder:
        yield ZmqTransport("zmq_ipc", f"ipc://{os.path.join(folder, 'hop')}")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the publisher binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fan_out(clients: int, symbols: int, seconds: float, rate: float | None) -> dict[str, float]:
    """The end-to-end run of :func:`.e2e.fan_out`, with ZeroMQ over tcp and the upstream-style proxy instead."""
    transport = ZmqTransport("zmq_tcp", f"tcp://127.0.0.1:{free_port()}")
    key = secrets.token_hex(16)
    lifetime = str(seconds + _PROXY_SLACK_S)
    argv = [sys.executable, "-m", "shmproxy.core.bench.zmq_proxy", transport.endpoint, lifetime]
    with transport.publisher() as publish, e2e.running_proxy(argv, key) as proxy:
        return e2e.measure_fan_out(proxy, publish, clients, symbols, seconds, rate)

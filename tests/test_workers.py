"""serve --workers: one port, one ring, adapters once; a dead worker is restarted."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from shmproxy.core.proxy.registry import UpstreamChange
from shmproxy.core.proxy.upstream import UpstreamAggregator

from conftest import wait_for
from serve_harness import ServeProcess, authed, recv, subscribe, ticks

MOCK = {"ENABLE_MOCK": "true", "MOCK_TICK_RATE": "20", "MOCK_SEED": "3"}


def _service(server: ServeProcess) -> dict:
    """/health from whichever worker the kernel picks; retried while a dying worker resets it."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5) as response:
                return json.load(response)
        except OSError:  # a connection queued on the worker that was just killed
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _members(health: dict) -> list[dict]:
    """The per-worker view, once the supervisor has sent one (empty right after start-up)."""
    return health.get("service", {}).get("workers", [])


_wait_for = partial(wait_for, timeout=20, interval=0.2)


def test_workers_share_the_port_and_the_adapter_is_subscribed_once(ring_name: str) -> None:
    with ServeProcess(ring_name, "--workers", "2", env=MOCK) as server:
        clients = [authed(server.url) for _ in range(16)]
        try:
            for ws in clients:
                assert subscribe(ws, "RELIANCE", mode=2)["broker"] == "mock"
            for ws in clients:
                assert ticks(ws, 1)[0]["symbol"] == "RELIANCE"
            view = _wait_for(lambda: (h := _service(server)) and _members(h)
                             and sum(w["clients"] for w in _members(h)) == 16 and h)
            workers = view["service"]["workers"]
            assert len(workers) == 2 and all(w["alive"] for w in workers)
            assert all(w["clients"] > 0 for w in workers)  # the kernel spread the connections
            (mock,) = view["adapters"]
            assert mock["instruments"] == 1 and view["service"]["upstream"] == 1
            for ws in clients[:15]:
                ws.close()
            assert ticks(clients[15], 2)  # one client left, wherever it is: still fed
        finally:
            for ws in clients:
                ws.close()
        released = _wait_for(lambda: (h := _service(server))["adapters"][0]["instruments"] == 0 and h)
        assert released["service"]["upstream"] == 0


def test_a_killed_worker_is_restarted_and_shutdown_stops_everything(ring_name: str) -> None:
    server = ServeProcess(ring_name, "--workers", "2", env=MOCK)
    try:
        view = _wait_for(lambda: (h := _service(server)) and len(_members(h)) == 2 and all(w["pid"] for w in _members(h)) and h)
        victim = _members(view)[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        restarted = _wait_for(lambda: (m := _members(_service(server))) and (w := m[0])["restarts"] == 1
                              and w["alive"] and w["pid"] != victim and w["status"] == "ok" and w)
        assert restarted["pid"] != victim
        with authed(server.url) as ws:  # clients reconnect and are served by either worker
            subscribe(ws, "INFY", mode=1)
            assert ticks(ws, 1)[0]["symbol"] == "INFY"
            pids = [w["pid"] for w in _members(_service(server))]
            started = time.monotonic()
            assert server.stop() == 0
            assert time.monotonic() - started < 8
            try:
                recv(ws, timeout=5)
            except Exception as closed:  # going away
                assert getattr(getattr(closed, "rcvd", None), "code", 1001) == 1001
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        assert "restarting" in server.logs()
    finally:
        server.stop()


workers = st.integers(0, 2)
changes = st.lists(st.tuples(workers, st.sampled_from(["A", "B"]), st.integers(0, 3)) | st.tuples(workers, st.none(), st.none()),
                   max_size=40)


@settings(max_examples=200, deadline=None)
@given(changes)
def test_aggregator_tracks_the_highest_level_over_workers(ops) -> None:
    broker: dict[tuple[str, str], int] = {}

    def sink(out: list[UpstreamChange]) -> None:
        for c in out:
            assert broker.get((c.exchange, c.symbol), 0) == c.old_mode
            if c.new_mode:
                broker[(c.exchange, c.symbol)] = c.new_mode
            else:
                broker.pop((c.exchange, c.symbol))

    aggregator = UpstreamAggregator(sink)
    levels: dict[int, dict[tuple[str, str], int]] = {}
    for worker, symbol, mode in ops:
        if symbol is None:
            levels.pop(worker, None)
            aggregator.drop(worker)
            continue
        key = ("NSE", symbol)
        old = levels.get(worker, {}).get(key, 0)
        if old == mode:
            continue
        if mode:
            levels.setdefault(worker, {})[key] = mode
        else:
            levels.get(worker, {}).pop(key, None)
        aggregator.apply(worker, [UpstreamChange("NSE", symbol, old, mode)])
        expected: dict[tuple[str, str], int] = {}
        for held in levels.values():
            for k, m in held.items():
                expected[k] = max(expected.get(k, 0), m)
        assert broker == expected == aggregator.needed()

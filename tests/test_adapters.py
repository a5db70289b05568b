"""Adapters inside serve: discovery, settings checks, on-demand subscriptions with the mock adapter."""

from __future__ import annotations

import json
import time

from shmproxy.core.adapters.backoff import Backoff
from shmproxy.core.adapters.registry import installed

from conftest import run_cli
from serve_harness import ServeProcess, authed, request, subscribe, ticks

MOCK = {"ENABLE_MOCK": "true", "MOCK_TICK_RATE": "20", "MOCK_SEED": "7"}


def test_builtins_are_found_through_entry_points() -> None:
    assert "mock" in installed()


def test_adapters_command_lists_and_explains() -> None:
    result = run_cli("adapters", "--json", env={"PATH": "/usr/bin:/bin", "ENABLE_MOCK": "true", "MOCK_TICK_RATE": "fast"})
    assert result.returncode == 0, result.stderr
    mock = next(a for a in json.loads(result.stdout) if a["name"] == "mock")
    assert mock["enabled"] is True and mock["configured"] is False
    assert "MOCK_TICK_RATE='fast'" in mock["problems"][0]


def test_bad_settings_of_an_enabled_adapter_stop_serve_at_start(ring_name: str) -> None:
    result = run_cli("serve", "--buffer", ring_name, "--port", "0",
                     env={"SHMPROXY_API_KEYS": "k", "ENABLE_MOCK": "true", "MOCK_TICK_RATE": "-1"})
    assert result.returncode == 2
    assert "ENABLE_MOCK is set but the mock adapter is not configured: MOCK_TICK_RATE='-1' is out of range" in result.stderr


def test_bad_enable_value(ring_name: str) -> None:
    result = run_cli("serve", "--buffer", ring_name, "--port", "0", env={"SHMPROXY_API_KEYS": "k", "ENABLE_MOCK": "maybe"})
    assert result.returncode == 2 and "ENABLE_MOCK='maybe' is not valid" in result.stderr


def test_mock_adapter_ticks_on_demand_and_stops_when_released(ring_name: str) -> None:
    with ServeProcess(ring_name, env=MOCK) as server, authed(server.url) as ws:
        ack = subscribe(ws, "ANYTHING", exchange="NFO", mode=3)
        assert ack["status"] == "success" and ack["broker"] == "mock"
        got = ticks(ws, 3)
        assert all(t["symbol"] == "ANYTHING" and t["exchange"] == "NFO" and t["mode"] == 3 for t in got)
        depth = got[-1]["data"]["depth"]
        assert depth["buy"][0]["price"] < depth["sell"][0]["price"]
        info = request(ws, {"action": "get_broker_info"})
        assert info["broker"] == "mock" and info["adapter_status"] == "connected"
        request(ws, {"action": "unsubscribe", "symbol": "ANYTHING", "exchange": "NFO", "mode": 3})
        time.sleep(0.5)
        reply = request(ws, {"action": "ping"}, timeout=2)  # only replies now: no more ticks
        assert reply["type"] == "pong"
        logs = server.logs()
    assert "mock adapter: connected" in logs


def test_demo_prints_a_working_key(ring_name: str) -> None:
    import re
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "shmproxy", "serve", "--demo", "--port", "0", "--buffer", ring_name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"ws://[\d.]+:\d+", proc.stdout.readline()).group(0)
        key = re.search(r"API key for this run: (\w+)", proc.stdout.readline()).group(1)
        with authed(url, key=key) as ws:
            assert subscribe(ws, "RELIANCE")["broker"] == "mock"
            assert ticks(ws, 1)[0]["data"]["ltp"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(first=1.0, cap=8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert max(delays[4:]) > max(delays[:1])
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_extra_adapters_load_from_a_module_path(tmp_path) -> None:
    (tmp_path / "my_feed.py").write_text(
        "from shmproxy.core.adapters.mock import MockAdapter\n"
        "class MyFeed(MockAdapter):\n    name = 'myfeed'\n    description = 'a local adapter'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "SHMPROXY_EXTRA_ADAPTERS": "myfeed=my_feed:MyFeed,broken=nowhere:X"}
    result = run_cli("adapters", "--json", env=env)
    listed = {a["name"]: a for a in json.loads(result.stdout)}
    assert listed["myfeed"]["description"] == "a local adapter" and listed["myfeed"]["configured"]
    assert "cannot load" in listed["broken"]["problems"][0]
    bad = run_cli("adapters", env={"PATH": "/usr/bin:/bin", "SHMPROXY_EXTRA_ADAPTERS": "nonsense"})
    assert bad.returncode == 2 and "SHMPROXY_EXTRA_ADAPTERS entry 'nonsense' is not valid" in bad.stderr

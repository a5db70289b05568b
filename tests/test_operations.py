"""Operations: /health, /metrics, `shmproxy status`, JSON logs, and surviving producer/serve faults."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from functools import partial

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shmproxy import SharedMemoryPublisher
from shmproxy.core.segment import remove_segment

from conftest import run_cli, wait_for
from serve_harness import API_KEY, ServeProcess, authed, recv, request, subscribe, ticks


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _health(server: ServeProcess) -> dict:
    return json.loads(_get(f"http://127.0.0.1:{server.port}/health")[2])


_wait_for = partial(wait_for, interval=0.1)


def test_health_and_metrics_report_the_feed(ring_name: str) -> None:
    with ServeProcess(ring_name) as server, SharedMemoryPublisher(buffer_name=ring_name) as pub, authed(server.url) as ws:
        subscribe(ws, "RELIANCE", mode=2)
        for n in range(5):
            pub.publish_market_data("NSE:RELIANCE", {"mode": 3, "ltp": 100.0 + n})
        ticks(ws, 5)
        status, content_type, body = _get(f"http://127.0.0.1:{server.port}/health")
        report = json.loads(body)
        assert status == 200 and content_type == "application/json"
        assert report["status"] == "ok" and report["reasons"] == []
        assert report["ring"]["attached"] and report["ring"]["write_seq"] == 5 and report["ring"]["name"] == ring_name
        (writer,) = report["ring"]["writers"]
        assert writer["status"] == "alive" and writer["records"] >= 0
        assert report["feed"]["ticks_in"] == 5 and report["feed"]["last_tick_age_s"] < 30
        assert report["clients"] == {"connected": 1, "authenticated": 1}
        assert report["subscriptions"] == {"total": 1, "instruments": 1}
        assert report["counters"]["deliveries"] == 5
        assert API_KEY not in body.decode()

        status, content_type, body = _get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        assert samples["shmproxy_ticks_in_total"] == 5 and samples["shmproxy_deliveries_total"] == 5
        assert samples["shmproxy_clients"] == 1 and samples["shmproxy_ring_write_sequence"] == 5
        assert samples["shmproxy_fanout_batch_seconds_count"] >= 1


def test_status_command_exit_codes(ring_name: str) -> None:
    with ServeProcess(ring_name, env={"SHMPROXY_STALE_SECONDS": "1"}) as server:
        url = f"http://127.0.0.1:{server.port}"
        ok = run_cli("status", "--url", url)
        assert ok.returncode == 0 and "OK" in ok.stdout
        with authed(server.url) as ws:
            subscribe(ws, "QUIET", mode=1)  # subscribed, and nothing ticks: degraded after 1 s
            time.sleep(1.5)
            degraded = run_cli("status", "--url", url, "--json")
            assert degraded.returncode == 1
            report = json.loads(degraded.stdout)
            assert report["status"] == "degraded" and "no tick" in report["reasons"][0]
    down = run_cli("status", "--url", url)
    assert down.returncode == 2 and "DOWN" in down.stdout and "cannot reach" in down.stdout


def test_json_logs_one_object_a_line(ring_name: str) -> None:
    with ServeProcess(ring_name, "--log-json") as server:
        with authed(server.url):
            pass
        assert server.stop() == 0
        lines = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    assert any("connected" in line["message"] for line in lines)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)


def test_wrong_keys_are_slowed_logged_and_closed(ring_name: str) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with ServeProcess(ring_name) as server:
        with connect(server.url) as ws:
            started = time.monotonic()
            for _ in range(4):
                assert request(ws, {"action": "authenticate", "api_key": "guess"})["code"] == "AUTHENTICATION_ERROR"
            assert time.monotonic() - started >= 0.25 + 0.5 + 1.0  # growing delays
            with pytest.raises(ConnectionClosed) as closed:
                request(ws, {"action": "authenticate", "api_key": "guess"})
            assert closed.value.rcvd.code == 4403
        assert _health(server)["counters"]["auth_failures"] == 5
        assert server.logs().count("auth failed") == 5 and "guess" not in server.logs()


def _producer(ring: str) -> subprocess.Popen:
    code = (
        "import sys, time\nfrom shmproxy import SharedMemoryPublisher\n"
        "p = SharedMemoryPublisher(buffer_name=sys.argv[1])\nprint('ready', flush=True)\nn = 0\n"
        "while True:\n    n += 1\n    p.publish_market_data('NSE:FLOW', {'mode': 1, 'ltp': float(n)})\n    time.sleep(0.01)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, ring], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_producer_killed_then_replaced_without_clients_reconnecting(ring_name: str) -> None:
    with ServeProcess(ring_name, env={"SHMPROXY_STALE_SECONDS": "1"}) as server, authed(server.url) as ws:
        subscribe(ws, "FLOW", mode=1)
        first = _producer(ring_name)
        ticks(ws, 5)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        report = _wait_for(lambda: (r := _health(server))["status"] == "degraded" and r)
        assert any(w["status"] == "dead" for w in report["ring"]["writers"])
        second = _producer(ring_name)
        try:
            assert ticks(ws, 3)[-1]["data"]["ltp"] >= 1  # same connection: ticks flow again
            assert _wait_for(lambda: _health(server)["status"] == "ok")
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(10)


def test_serve_killed_and_restarted_clients_reconnect(ring_name: str) -> None:
    from websockets.exceptions import ConnectionClosed

    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        server = ServeProcess(ring_name)
        ws = authed(server.url)
        subscribe(ws, "R", mode=1)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        with pytest.raises((ConnectionClosed, OSError)):
            recv(ws, timeout=10)
        ws.close()
        assert pub.publish_market_data("NSE:R", {"ltp": 5.0}) > 0  # the ring and its producer never noticed
        with ServeProcess(ring_name) as again, authed(again.url) as ws:
            subscribe(ws, "R", mode=1)
            assert ticks(ws, 1)[0]["data"]["ltp"] == 5.0  # replayed from the ring
        server.stop()


def test_ring_recreated_serve_resyncs(ring_name: str) -> None:
    with ServeProcess(ring_name) as server, authed(server.url) as ws:
        subscribe(ws, "GEN", mode=1)
        generation = _health(server)["ring"]["generation"]
        remove_segment(ring_name)
        with SharedMemoryPublisher(buffer_name=ring_name) as pub:
            _wait_for(lambda: _health(server)["ring"]["generation"] != generation)
            pub.publish_market_data("NSE:GEN", {"ltp": 9.0})
            assert ticks(ws, 1)[0]["data"]["ltp"] == 9.0
        assert "re-created" in server.logs()


def test_connection_flood_is_refused_cleanly_and_memory_stays_bounded(ring_name: str) -> None:
    from websockets.sync.client import connect

    with ServeProcess(ring_name, env={"MAX_WEBSOCKET_CONNECTIONS": "50"}) as server:
        rss_before = _rss_kib(server.proc.pid)
        held, refused = [], 0
        for _ in range(80):
            try:
                held.append(connect(server.url, open_timeout=5).__enter__())
            except Exception as exc:
                assert "503" in str(exc)
                refused += 1
        assert len(held) == 50 and refused == 30
        for ws in held:
            ws.close()
        with authed(server.url) as ws:
            assert request(ws, {"action": "ping"})["type"] == "pong"
        assert _rss_kib(server.proc.pid) - rss_before < 64 * 1024


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

"""serve as a process: start-up checks, priming, slow clients, auth grace, graceful shutdown."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shmproxy import SharedMemoryPublisher

from conftest import SHM, run_cli
from serve_harness import ServeProcess, authed, recv, request, subscribe, ticks


def test_ticks_published_before_serve_started_are_replayed(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        pub.publish_market_data("NSE:EARLY", {"mode": 2, "ltp": 7.5})
    with ServeProcess(ring_name) as server, authed(server.url) as ws:
        subscribe(ws, "EARLY", mode=2)
        (tick,) = ticks(ws, 1)
    assert tick["data"]["ltp"] == 7.5


def test_serve_creates_a_missing_ring_and_never_removes_it(ring_name: str) -> None:
    with ServeProcess(ring_name) as server:
        assert (SHM / ring_name).exists()
        assert server.stop() == 0
    assert (SHM / ring_name).exists()


def test_sigterm_closes_clients_with_going_away_and_exits_0(ring_name: str) -> None:
    server = ServeProcess(ring_name)
    try:
        with authed(server.url) as ws:
            started = time.monotonic()
            code = server.stop()
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws, timeout=5)
        assert code == 0 and time.monotonic() - started < 5
        assert closed.value.rcvd.code == 1001
    finally:
        server.stop()


def test_unauthenticated_client_is_closed_with_4401(ring_name: str) -> None:
    with ServeProcess(ring_name, env={"WS_AUTH_GRACE_SECONDS": "0.5"}) as server:
        with connect(server.url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws, timeout=10)
        assert closed.value.rcvd.code == 4401 and closed.value.rcvd.reason == "auth timeout"
        with authed(server.url) as ws:  # an authenticated client is left alone
            time.sleep(1.0)
            assert request(ws, {"action": "ping"})["type"] == "pong"


def test_client_limit_refuses_extra_connections(ring_name: str) -> None:
    with ServeProcess(ring_name, env={"MAX_WEBSOCKET_CONNECTIONS": "2"}) as server:
        with authed(server.url), authed(server.url):
            with pytest.raises(Exception, match="503"):
                connect(server.url, open_timeout=5).__enter__()


def _raw_websocket(port: int) -> socket.socket:
    """A client that completes the handshake, subscribes, then never reads again (tiny buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response
    for text in (b'{"action":"authenticate","api_key":"test-key-0123456789abcdef"}',
                 b'{"action":"subscribe","symbol":"HOT","exchange":"NSE","mode":3}'):
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        sock.sendall(bytes((0x81, 0x80 | len(text))) + mask + masked)
    return sock


def test_slow_client_is_conflated_then_closed_while_fast_clients_keep_up(ring_name: str) -> None:
    env = {"WS_MAX_QUEUE": "4", "WS_PING_INTERVAL": "1", "WS_PING_TIMEOUT": "1"}
    depth = {"buy": [{"price": 100.0, "quantity": 10, "orders": 1}] * 5, "sell": [{"price": 100.05, "quantity": 10, "orders": 1}] * 5}
    total = 3000
    with ServeProcess(ring_name, env=env) as server, SharedMemoryPublisher(buffer_name=ring_name) as pub:
        slow = _raw_websocket(server.port)
        slow_peer = f"127.0.0.1:{slow.getsockname()[1]})"
        with authed(server.url) as fast:
            subscribe(fast, "HOT", mode=3)
            volumes: list[int] = []

            def read_fast() -> None:
                while not volumes or volumes[-1] != total - 1:
                    volumes.append(recv(fast, timeout=10)["data"]["volume"])

            reader = threading.Thread(target=read_fast)
            reader.start()
            for n in range(total):
                pub.publish_market_data("NSE:HOT", {"mode": 3, "ltp": 100.0 + n * 0.05, "volume": n, "depth": depth})
                if n % 100 == 99:
                    time.sleep(0.01)
            reader.join(20)
            assert volumes and volumes[-1] == total - 1  # the newest tick always arrives
            assert volumes == sorted(volumes) and len(volumes) > 100
            deadline = time.monotonic() + 15  # ping interval + timeout + close timeout, with room to spare
            while not _closed_line(server.logs(), slow_peer) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert request(fast, {"action": "ping"})["type"] == "pong"  # the fast client is still served
        logs = server.logs()
        slow.close()
    assert "sent 1011" in _closed_line(logs, slow_peer) or "sent 1008" in _closed_line(logs, slow_peer), logs


def _closed_line(logs: str, peer: str) -> str:
    """The serve log line saying the client at ``peer`` was closed ('' if none yet)."""
    return next((line for line in logs.splitlines() if peer in line and " closed: " in line), "")


def test_missing_api_keys_is_a_start_up_error(ring_name: str) -> None:
    result = run_cli("serve", "--buffer", ring_name, "--port", "0", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "no API keys configured" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"WEBSOCKET_PORT": "99999"}, "WEBSOCKET_PORT='99999' is out of range"),
    ({"WS_PING_TIMEOUT": "soon"}, "WS_PING_TIMEOUT='soon' is not valid"),
])
def test_bad_settings_are_one_line_errors(ring_name: str, env: dict, message: str) -> None:
    result = run_cli("serve", "--buffer", ring_name, env={"SHMPROXY_API_KEYS": "k", **env})
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_in_use(ring_name: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--buffer", ring_name, "--port", str(port), env={"SHMPROXY_API_KEYS": "k"})
    assert result.returncode == 3 and "already in use" in result.stderr and "Traceback" not in result.stderr


def test_foreign_ring_is_refused_before_binding(ring_name: str) -> None:
    (SHM / ring_name).write_bytes(b"not a ring" * 1000)
    result = run_cli("serve", "--buffer", ring_name, "--port", "0", env={"SHMPROXY_API_KEYS": "k"})
    assert result.returncode == 5 and "not a shmproxy ring" in result.stderr
    assert (SHM / ring_name).read_bytes() == b"not a ring" * 1000


def test_api_key_file(ring_name: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# comment\n\nfile-key-1\n")
    with ServeProcess(ring_name, "--api-key-file", str(keys), keys="") as server:
        with authed(server.url, key="file-key-1"):
            pass
    missing = run_cli("serve", "--buffer", ring_name, "--api-key-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr

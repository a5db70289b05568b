"""A real nats-server on 127.0.0.1, and real ``shmproxy bridge`` processes, for tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

INSTALL_HINT = "nats-server is not installed: apt-get install nats-server (README: shmproxy bridge)"


def require_nats_server() -> str:
    """The nats-server binary; skips the test without it, but fails it under CI (CI must run it)."""
    path = shutil.which("nats-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{INSTALL_HINT}; CI must install it (.ci/run)")
        pytest.skip(INSTALL_HINT)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """``nats-server -a 127.0.0.1 -p PORT``; stop() and start() again keep the port (a restart)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="nats-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): {self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4) == b"INFO":  # the server greets every client with INFO
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not accept connections in {timeout} s: {self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def logs(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def close(self) -> None:
        self.stop()
        os.unlink(self.log.name)


class BridgeProcess:
    """``shmproxy bridge DIRECTION --buffer RING --nats URL --json ARGS``; stderr lines collected as they come."""

    def __init__(self, direction: str, ring: str, url: str, *args: str) -> None:
        self.direction = direction
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shmproxy", "bridge", direction, "--buffer", ring, "--nats", url, "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def wait_for(self, text: str, times: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.count(text) < times:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"bridge {self.direction} never said {text!r} {times}x: {self.lines}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> dict[str, Any]:
        """Stop it with ``signum``; check it exits 0, and return its ``--json`` summary."""
        self.proc.send_signal(signum)
        self.proc.wait(15)  # stdout only gets the one-line summary: the pipe cannot fill
        self._reader.join(5)
        out = self.proc.stdout.read()
        assert self.proc.returncode == 0, (self.proc.returncode, self.lines)
        assert "Traceback" not in "\n".join(self.lines), self.lines
        return json.loads(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

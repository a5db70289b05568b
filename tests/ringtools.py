"""Helpers for the command-line tool tests: known ticks, real processes, waiting without guessing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from shmproxy import SharedMemoryPublisher

from conftest import SHM, run_cli, run_python
from conftest import wait_for as wait_until  # noqa: F401  (the name these tests use)

# (instrument, mode, ltp): a small market whose filters have known answers.
BOOK = [
    ("NSE:INFY", 1, 1501.0),
    ("NSE:INFY", 2, 1501.5),
    ("NFO:NIFTY30DEC25FUT", 3, 26100.0),
    ("NSE:BANKBARODA", 2, 240.1),
    ("MCX:GOLD05FEB26FUT", 1, 128000.0),
    ("NSE:HDFCBANK", 3, 1005.05),
    ("NFO:BANKNIFTY30DEC25FUT", 2, 59500.0),
    ("NSE:INFY", 3, 1502.0),
]


def tick_data(mode: int, ltp: float) -> dict:
    data = {"mode": mode, "ltp": ltp, "close": round(ltp * 0.99, 2), "volume": 1000, "last_quantity": 5}
    if mode == 3:
        data["depth"] = {
            "buy": [{"price": ltp - 0.05 * (i + 1), "quantity": 10 * (i + 1), "orders": i + 1} for i in range(5)],
            "sell": [{"price": ltp + 0.05 * (i + 1), "quantity": 20 * (i + 1), "orders": i + 1} for i in range(5)],
        }
    return data


def publish_book(ring: str, book: list[tuple[str, int, float]] = BOOK, size: int | None = None) -> None:
    """Publish ``book`` into ``ring`` (created if absent) and close the publisher."""
    with SharedMemoryPublisher(buffer_name=ring, buffer_size=size) as pub:
        for key, mode, ltp in book:
            pub.publish_market_data(key, tick_data(mode, ltp))


def cli(*args: object, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    return run_cli(*map(str, args), timeout=timeout, **kwargs)


def spawn(*args: object, stdout=subprocess.PIPE, **kwargs) -> subprocess.Popen:
    """Start ``shmproxy ARGS`` in the background, stdout (unless redirected) and stderr captured as text.

    A process whose output is not read while it runs blocks once the pipe is full: give such a
    process a file as ``stdout``.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "shmproxy", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE, text=True, **kwargs
    )


def maps_ring(pid: int, ring: str) -> bool:
    """True once process ``pid`` has ring ``ring`` mapped (it is attached and reading)."""
    try:
        return f"{SHM / ring}" in Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        return False


def wait_attached(proc: subprocess.Popen, ring: str) -> None:
    wait_until(lambda: maps_ring(proc.pid, ring) or proc.poll() is not None, what=f"pid {proc.pid} to map {ring}")
    assert proc.poll() is None, proc.communicate()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def assert_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    """A bad input's answer: exit ``code``, no traceback, the phrases on stderr and nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert_error(result, code, *phrases)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def env_with(**values: object) -> dict[str, str]:
    return {**os.environ, **{k: str(v) for k, v in values.items()}}


def kill_own_writer(ring: str) -> int:
    """Publish from a process that is then killed: an active writer entry whose process is gone."""
    result = run_python(
        "import os, signal, sys\n"
        "from shmproxy import SharedMemoryPublisher\n"
        "pub = SharedMemoryPublisher(buffer_name=sys.argv[1])\n"
        "pub.publish_market_data('NSE:INFY', {'ltp': 1.0})\n"
        "print(os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        ring,
    )
    assert result.returncode == -signal.SIGKILL
    return int(result.stdout)

"""Foreign and corrupt segments, and readers that leave: the ring is never destroyed by accident."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmproxy import (
    CorruptSegmentError,
    ForeignSegmentError,
    SegmentError,
    SegmentNotFoundError,
    SharedMemoryPublisher,
    SharedMemorySubscriber,
)

from conftest import SHM, run_python


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_ring(name: str) -> Path:
    with SharedMemoryPublisher(buffer_name=name, buffer_size=65536) as pub:
        pub.publish_market_data("NSE:A", {"ltp": 1.0})
    return SHM / name


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize("content", [b"", b"hello", os.urandom(70000), b"\0" * 4000])
def test_foreign_segment_is_refused_and_left_untouched(ring_name: str, content: bytes) -> None:
    path = SHM / ring_name
    path.write_bytes(content)
    before = _digest(path)
    for attempt in (lambda: SharedMemorySubscriber(ring_name), lambda: SharedMemoryPublisher(buffer_name=ring_name)):
        with pytest.raises((ForeignSegmentError, CorruptSegmentError)) as err:
            attempt()
        assert ring_name in str(err.value) and "\n" not in str(err.value)
    assert _digest(path) == before


def test_other_magic_is_named(ring_name: str) -> None:
    path = _make_ring(ring_name)
    _patch(path, 0, b"NOTOURS!")
    with pytest.raises(ForeignSegmentError, match="magic b'NOTOURS!'"):
        SharedMemorySubscriber(ring_name)


def test_other_layout_version_is_named(ring_name: str) -> None:
    path = _make_ring(ring_name)
    _patch(path, 8, struct.pack("<I", 2))
    before = _digest(path)
    with pytest.raises(ForeignSegmentError, match="layout version 2"):
        SharedMemoryPublisher(buffer_name=ring_name)
    assert _digest(path) == before


def test_other_slot_size_is_named(ring_name: str) -> None:
    path = _make_ring(ring_name)
    _patch(path, 16, struct.pack("<I", 512))
    with pytest.raises(ForeignSegmentError, match="slot 512 B"):
        SharedMemorySubscriber(ring_name)


def test_inconsistent_size_is_corrupt(ring_name: str) -> None:
    path = _make_ring(ring_name)
    _patch(path, 24, struct.pack("<Q", 1 << 20))
    with pytest.raises(CorruptSegmentError, match="corrupt"):
        SharedMemorySubscriber(ring_name)


def test_header_never_finished_is_corrupt_after_a_short_wait(ring_name: str) -> None:
    path = _make_ring(ring_name)
    _patch(path, 0, b"\0" * 8)
    started = time.monotonic()
    with pytest.raises(CorruptSegmentError, match="no ring header"):
        SharedMemorySubscriber(ring_name)
    assert time.monotonic() - started < 5


def test_missing_ring(ring_name: str) -> None:
    with pytest.raises(SegmentNotFoundError, match=ring_name):
        SharedMemorySubscriber(ring_name)


@pytest.mark.parametrize("name", ["", "a/b", "../etc", "x" * 201, ".hidden"])
def test_bad_names(name: str) -> None:
    with pytest.raises(SegmentError, match="invalid buffer name"):
        SharedMemoryPublisher(buffer_name=name or "\0")


def test_explicit_size_mismatch_is_an_error(ring_name: str) -> None:
    _make_ring(ring_name)
    with pytest.raises(SegmentError, match="exists with 65536 bytes"):
        SharedMemoryPublisher(buffer_name=ring_name, buffer_size=131072)
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:  # no explicit size: use it as it is
        assert pub.segment.total_size == 65536


def test_size_out_of_range(ring_name: str) -> None:
    with pytest.raises(SegmentError, match="out of range"):
        SharedMemoryPublisher(buffer_name=ring_name, buffer_size=1000)
    assert not (SHM / ring_name).exists()


READER = (
    "import sys, time\n"
    "from shmproxy import SharedMemorySubscriber\n"
    "sub = SharedMemorySubscriber(sys.argv[1], start='oldest')\n"
    "print(len(sub.poll()), flush=True)\n"
    "if sys.argv[2] == 'hang': time.sleep(60)\n"
)


def test_reader_exiting_normally_leaves_the_ring(ring_name: str) -> None:
    path = _make_ring(ring_name)
    before = _digest(path)
    result = run_python(READER, ring_name, "exit")
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr
    assert path.exists() and _digest(path) == before


def test_reader_killed_leaves_the_ring(ring_name: str) -> None:
    path = _make_ring(ring_name)
    before = _digest(path)
    proc = subprocess.Popen([sys.executable, "-c", READER, ring_name, "hang"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "1"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert path.exists() and _digest(path) == before


def test_writer_killed_mid_stream_leaves_a_usable_ring(ring_name: str) -> None:
    code = (
        "import sys\nfrom shmproxy import SharedMemoryPublisher\n"
        "p = SharedMemoryPublisher(buffer_name=sys.argv[1], buffer_size=65536)\n"
        "print('ready', flush=True)\n"
        "while True: p.publish_market_data('NSE:A', {'ltp': 1.0})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, ring_name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with SharedMemorySubscriber(ring_name) as sub, SharedMemoryPublisher(buffer_name=ring_name) as pub:
        seq = pub.publish_market_data("NSE:B", {"ltp": 2.0})  # the lock died with its holder
        (tick,) = sub.poll()
        assert tick.seq == seq and tick.symbol == "B"
        statuses = sorted(w.status for w in pub.segment.info().writers)
        assert statuses == ["alive", "dead"]

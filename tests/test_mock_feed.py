"""shmproxy mock-feed, run as a real process publishing into a real ring."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core.inspect import dump_ring
from shmproxy.core.segment import read_info

from conftest import SHM
from ringtools import assert_error, assert_one_line_error, cli, env_with, spawn, wait_attached, wait_until


@pytest.fixture
def other_ring() -> str:
    name = f"shmproxy_test_{uuid.uuid4().hex[:12]}"
    yield name
    (SHM / name).unlink(missing_ok=True)


def test_tail_and_a_subscriber_both_get_every_tick_while_it_publishes(ring_name: str, tmp_path: Path) -> None:
    total = 12_000  # more than the ring holds (4,672): both readers must keep up while it runs
    SharedMemoryPublisher(buffer_name=ring_name, buffer_size=2 << 20).close()
    tail_out = open(tmp_path / "tail.jsonl", "w+")
    tail = spawn("tail", ring_name, "--json", "--from-start", "--count", total, stdout=tail_out)
    try:
        wait_attached(tail, ring_name)
        with SharedMemorySubscriber(ring_name, start="oldest") as sub:
            feed = spawn("mock-feed", "--buffer", ring_name, "--rate", 6000, "--count", total, "--seed", 7)
            got = []
            deadline = time.monotonic() + 60
            while len(got) < total and time.monotonic() < deadline:
                got += sub.wait(timeout=0.5)
            assert sub.lost == 0
        _, err = tail.communicate(timeout=60)
        feed_out, feed_err = feed.communicate(timeout=60)
    finally:
        tail.kill()
        tail_out.close()
    out = (tmp_path / "tail.jsonl").read_text()
    assert feed.returncode == 0 and f"published {total:,} ticks" in feed_out, feed_err
    assert tail.returncode == 0 and err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["seq"] for m in lines] == [t.seq for t in got] == list(range(1, total + 1))
    for message, tick in zip(lines, got):
        assert (message["exchange"], message["symbol"], message["mode"]) == (tick.exchange, tick.symbol, tick.mode)
        assert message["data"] == tick.to_dict()


def test_rate_is_held_within_5_percent(ring_name: str) -> None:
    started = time.monotonic()
    result = cli("mock-feed", "--buffer", ring_name, "--rate", 2000, "--duration", 2, env=env_with(SHM_BUFFER_SIZE=4 << 20))
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    ring = dump_ring(ring_name, records=5000)
    ticks = ring.records
    assert ring.info.write_seq == len(ticks) == 4000
    rate = (len(ticks) - 1) / ((ticks[-1].publish_ns - ticks[0].publish_ns) / 1e9)
    assert 1900 <= rate <= 2100, rate
    assert wall >= 1.9
    assert "4,000 ticks" in result.stdout and "target 2,000" in result.stdout and result.stdout.count("\n") == 1


def test_slow_rate_spaces_ticks_and_keeps_the_heartbeat_fresh(ring_name: str) -> None:
    feed = spawn("mock-feed", "--buffer", ring_name, "--rate", 2, "--duration", 2)
    try:
        wait_until(lambda: (SHM / ring_name).exists() and read_info(ring_name).write_seq, what="the first tick")
        ages = []
        for _ in range(12):  # ticks come every 0.5 s; heartbeats every 0.1 s in between
            (writer,) = read_info(ring_name).live_writers
            ages.append((time.time_ns() - writer.heartbeat_ns) / 1e9)
            time.sleep(0.07)
        out, _ = feed.communicate(timeout=30)
    finally:
        feed.kill()
    assert max(ages) < 0.3, ages
    ticks = dump_ring(ring_name).records
    assert len(ticks) == 4
    gaps = [(b.publish_ns - a.publish_ns) / 1e9 for a, b in zip(ticks, ticks[1:])]
    assert all(0.45 < gap < 0.6 for gap in gaps), gaps


def test_a_rate_beyond_the_machine_says_its_ceiling(ring_name: str) -> None:
    result = cli("mock-feed", "--buffer", ring_name, "--rate", 1_000_000, "--count", 20_000)
    assert result.returncode == 0, result.stderr
    assert "published 20,000 ticks" in result.stdout and "this machine's ceiling" in result.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_it_cleanly_with_the_summary(ring_name: str, signum: int) -> None:
    feed = spawn("mock-feed", "--buffer", ring_name, "--rate", 500)
    try:
        wait_until(lambda: (SHM / ring_name).exists() and read_info(ring_name).write_seq > 100, what="ticks")
        feed.send_signal(signum)
        out, err = feed.communicate(timeout=15)
    finally:
        feed.kill()
    assert feed.returncode == 0 and err == ""
    info = read_info(ring_name)
    assert f"published {info.write_seq:,} ticks" in out and out.count("\n") == 1
    assert [w.status for w in info.writers] == ["closed"]


def test_same_seed_same_ticks(ring_name: str, other_ring: str) -> None:
    for ring in (ring_name, other_ring):
        assert cli("mock-feed", "--buffer", ring, "--count", 500, "--rate", 100_000, "--seed", 99).returncode == 0

    def market(ring: str) -> list[tuple]:
        return [(t.exchange, t.symbol, t.mode, t.ltp, t.high, t.volume, t.depth) for t in dump_ring(ring, 500).records]

    assert market(ring_name) == market(other_ring)
    (SHM / other_ring).unlink()
    assert cli("mock-feed", "--buffer", other_ring, "--count", 500, "--rate", 100_000, "--seed", 100).returncode == 0
    assert market(ring_name) != market(other_ring)


def test_symbols_and_mode_choose_what_is_published(ring_name: str) -> None:
    result = cli("mock-feed", "--buffer", ring_name, "--symbols", "NSE:INFY, NSE:TCS,BSE:NEWCO", "--mode", "DEPTH",
                 "--count", 300, "--rate", 50_000)
    assert result.returncode == 0, result.stderr
    ticks = dump_ring(ring_name, 300).records
    assert {f"{t.exchange}:{t.symbol}" for t in ticks} == {"NSE:INFY", "NSE:TCS", "BSE:NEWCO"}
    assert {t.mode for t in ticks} == {3}


def test_terminal_gets_a_live_status_line(ring_name: str) -> None:
    main, child = pty.openpty()
    feed = subprocess.Popen([sys.executable, "-m", "shmproxy", "mock-feed", "--buffer", ring_name, "--rate", "1000",
                             "--duration", "1.5"], stdout=child, stderr=child, env=env_with(COLUMNS=200))
    os.close(child)
    output = b""
    try:
        while chunk := _read(main):
            output += chunk
        feed.wait(timeout=15)
    finally:
        feed.kill()
        os.close(main)
    text = output.decode(errors="replace")
    assert feed.returncode == 0
    assert "ticks/s" in text and "Ctrl-C to stop" in text and "lost 0" in text
    assert "published 1,500 ticks" in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the child closed its end
        return b""


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--rate", "0"], 2, "--rate 0 is out of range"),
        (["--rate", "-5"], 2, "out of range"),
        (["--rate", "2000000"], 2, "out of range"),
        (["--duration", "0"], 2, "--duration"),
        (["--symbols", "RELIANCE"], 2, "needs its exchange"),
        (["--symbols", " , "], 2, "--symbols is empty"),
        (["--symbols", "NSE:" + "X" * 41], 2, "must be 1 to 40 bytes"),
        (["--env-file", "/nonexistent/.env"], 2, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(ring_name: str, args: list[str], code: int, phrase: str) -> None:
    assert_one_line_error(cli("mock-feed", "--buffer", ring_name, "--count", 1, *args), code, phrase)
    assert not (SHM / ring_name).exists()


@pytest.mark.parametrize(
    ("args", "phrase"), [(["--count", "0"], "--count"), (["--mode", "full"], "--mode"), (["--rate", "fast"], "--rate")]
)
def test_bad_option_values_are_usage_errors(ring_name: str, args: list[str], phrase: str) -> None:
    assert_error(cli("mock-feed", "--buffer", ring_name, *args), 2, phrase)
    assert not (SHM / ring_name).exists()


def test_bad_buffer_name_and_foreign_segment(ring_name: str) -> None:
    assert_one_line_error(cli("mock-feed", "--buffer", "no/slash", "--count", 1), 2, "SHM_BUFFER_NAME")
    (SHM / ring_name).write_bytes(b"not a ring" * 1000)
    assert_one_line_error(cli("mock-feed", "--buffer", ring_name, "--count", 1), 5, "not a shmproxy ring")
    assert (SHM / ring_name).read_bytes() == b"not a ring" * 1000


def test_help_teaches_with_examples() -> None:
    result = cli("mock-feed", "--help")
    assert result.returncode == 0
    for text in ("--rate", "--duration", "--count", "--mode", "--seed", "--symbols", "Examples", "shmproxy mock-feed --rate"):
        assert text in result.stdout

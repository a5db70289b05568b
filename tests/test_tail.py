"""shmproxy tail: what it shows, where it starts and stops, and how it fails."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys

import pytest

from shmproxy import SharedMemoryPublisher
from shmproxy.core import layout

from conftest import SHM
from ringtools import BOOK, assert_error, assert_one_line_error, cli, patch, publish_book, spawn, wait_attached


def seqs(result: subprocess.CompletedProcess) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["seq"] for line in result.stdout.splitlines()]


def book_seqs(keep) -> list[int]:
    return [seq for seq, (key, mode, _) in enumerate(BOOK, 1) if keep(key, mode)]


def test_no_follow_prints_the_ring_as_plain_lines_when_piped(ring_name: str) -> None:
    publish_book(ring_name)
    result = cli("tail", ring_name, "--no-follow")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == len(BOOK) and "\x1b[" not in result.stdout
    for line, (key, mode, ltp) in zip(lines, BOOK):
        assert key in line and f"{ltp:,.2f}" in line and ["LTP", "Quote", "Depth"][mode - 1] in line
    assert "+1.01%" in lines[1] and "vol 1,000" in lines[1]  # change against close, volume
    assert "bid 26,099.95 / ask 26,100.05" in lines[2]        # depth: best bid / ask


def test_json_lines_are_market_data_messages_plus_seq(ring_name: str) -> None:
    publish_book(ring_name)
    messages = [json.loads(line) for line in cli("tail", ring_name, "--no-follow", "--json").stdout.splitlines()]
    assert [m["seq"] for m in messages] == list(range(1, len(BOOK) + 1))
    for message, (key, mode, ltp) in zip(messages, BOOK):
        assert set(message) == {"type", "symbol", "exchange", "mode", "data", "seq"}
        assert message["type"] == "market_data" and f"{message['exchange']}:{message['symbol']}" == key
        assert message["mode"] == mode and message["data"]["ltp"] == ltp
    assert messages[2]["data"]["depth"]["buy"][0] == {"price": 26099.95, "quantity": 10, "orders": 1}
    assert "depth" not in messages[1]["data"]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (["--symbol", "INFY"], lambda key, mode: key == "NSE:INFY"),
        (["--symbol", "nfo:*nifty*"], lambda key, mode: key.startswith("NFO:")),
        (["--symbol", "BANK*", "--symbol", "HDFC*"], lambda key, mode: key in ("NSE:BANKBARODA", "NFO:BANKNIFTY30DEC25FUT", "NSE:HDFCBANK")),
        (["--exclude", "INFY", "--exclude", "*FUT"], lambda key, mode: key in ("NSE:BANKBARODA", "NSE:HDFCBANK")),
        (["--exchange", "nse", "--exchange", "MCX"], lambda key, mode: key.split(":")[0] in ("NSE", "MCX")),
        (["--mode", "depth"], lambda key, mode: mode == 3),
        (["--mode", "ltp", "--mode", "Quote", "--symbol", "INFY"], lambda key, mode: key == "NSE:INFY" and mode < 3),
        (["--exchange", "BSE"], lambda key, mode: False),
    ],
)
def test_filters(ring_name: str, filters: list[str], keep) -> None:
    publish_book(ring_name)
    assert seqs(cli("tail", ring_name, "--no-follow", "--json", *filters)) == book_seqs(keep)


def test_last_n_and_count(ring_name: str) -> None:
    publish_book(ring_name)
    assert seqs(cli("tail", ring_name, "--no-follow", "--json", "--last", 3)) == [6, 7, 8]
    assert seqs(cli("tail", ring_name, "--no-follow", "--json", "--last", 2, "--symbol", "INFY")) == [2, 8]
    assert seqs(cli("tail", ring_name, "--no-follow", "--json", "--last", 100)) == list(range(1, 9))
    # --count ends a following tail by itself
    assert seqs(cli("tail", ring_name, "--json", "--from-start", "--count", 2)) == [1, 2]
    assert seqs(cli("tail", ring_name, "--json", "--last", 4, "--count", 2, "--mode", "quote")) == [2, 4]


def test_last_n_counts_only_what_the_ring_still_holds(ring_name: str) -> None:
    publish_book(ring_name, BOOK * 10, size=layout.MIN_SEGMENT_SIZE)  # 80 records in 16 slots
    assert seqs(cli("tail", ring_name, "--no-follow", "--json")) == list(range(65, 81))
    assert seqs(cli("tail", ring_name, "--no-follow", "--json", "--last", 50)) == list(range(65, 81))


def test_follow_shows_only_new_ticks_and_leaves_the_ring_in_place(ring_name: str) -> None:
    publish_book(ring_name)
    tail = spawn("tail", ring_name, "--json", "--count", 3)
    try:
        wait_attached(tail, ring_name)
        publish_book(ring_name, BOOK[:3])
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0 and err == ""
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [9, 10, 11]
    assert (SHM / ring_name).exists()


def test_a_lapped_tail_says_how_many_records_it_lost(ring_name: str) -> None:
    SharedMemoryPublisher(buffer_name=ring_name, buffer_size=layout.MIN_SEGMENT_SIZE).close()  # 16 slots
    tail = spawn("tail", ring_name, "--json", "--from-start", "--count", 16)
    try:
        wait_attached(tail, ring_name)
        tail.send_signal(signal.SIGSTOP)  # a reader that falls behind ...
        publish_book(ring_name, BOOK * 12)  # ... while 96 records go by
        tail.send_signal(signal.SIGCONT)
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == list(range(81, 97))
    assert "lapped: 80 records lost" in err and err.count("\n") == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_exits_quietly(ring_name: str, signum: int) -> None:
    publish_book(ring_name)
    tail = spawn("tail", ring_name)
    try:
        wait_attached(tail, ring_name)
        tail.send_signal(signum)
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert (tail.returncode, out, err) == (0, "", "")
    assert (SHM / ring_name).exists()


def test_wait_for_a_ring_that_does_not_exist_yet(ring_name: str) -> None:
    tail = spawn("tail", ring_name, "--wait", "--json", "--count", 3)
    try:
        assert "waiting for ring" in tail.stderr.readline()
        publish_book(ring_name, BOOK[:3])
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0 and err == ""
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]


def test_colour_on_a_terminal(ring_name: str) -> None:
    publish_book(ring_name)
    main, child = pty.openpty()
    tail = subprocess.Popen([sys.executable, "-m", "shmproxy", "tail", ring_name, "--no-follow"], stdout=child, stderr=child)
    os.close(child)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        tail.wait(timeout=30)
    finally:
        tail.kill()
        os.close(main)
    assert tail.returncode == 0
    assert b"\x1b[" in output and b"NFO:NIFTY30DEC25FUT" in output


def test_a_closed_pipe_ends_it_quietly(ring_name: str) -> None:
    publish_book(ring_name, BOOK * 200)
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m shmproxy tail {ring_name} --no-follow --json | head -1"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 1


def test_missing_ring_is_a_one_line_error(ring_name: str) -> None:
    assert_one_line_error(cli("tail", ring_name), 4, f"no shared-memory ring named '{ring_name}'")
    assert not (SHM / ring_name).exists()


def test_foreign_and_damaged_segments(ring_name: str) -> None:
    (SHM / ring_name).write_bytes(b"x" * 8192)
    assert_one_line_error(cli("tail", ring_name), 5, "not a shmproxy ring")
    (SHM / ring_name).unlink()
    publish_book(ring_name)
    patch(SHM / ring_name, 24, (12345).to_bytes(8, "little"))  # total_size no longer matches the file
    assert_one_line_error(cli("tail", ring_name), 6, "corrupt")


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--from-start", "--last", "3"], 2, "use one of them"),
        (["--symbol", " "], 2, "empty symbol pattern"),
        (["--count", "0"], 2, "--count"),
        (["--last", "-1"], 2, "--last"),
        (["--mode", "full"], 2, "--mode"),
    ],
)
def test_bad_options(ring_name: str, args: list[str], code: int, phrase: str) -> None:
    publish_book(ring_name)
    assert_error(cli("tail", ring_name, *args), code, phrase)


def test_bad_ring_name() -> None:
    assert_one_line_error(cli("tail", "../etc"), 2, "SHM_BUFFER_NAME")

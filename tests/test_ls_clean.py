"""shmproxy ls and clean: listing rings, and removing only what nobody writes and what is ours."""

from __future__ import annotations

import json
import os
import time

import pytest

from shmproxy import SharedMemoryPublisher
from shmproxy.core import layout
from shmproxy.core.segment import read_info

from conftest import SHM
from ringtools import assert_error, assert_one_line_error, cli, digest, kill_own_writer, patch, publish_book, spawn, wait_until


def listing() -> dict:
    result = cli("ls", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return json.loads(result.stdout)


def test_ls_lists_rings_and_only_rings(ring_name: str) -> None:
    publish_book(ring_name)
    foreign, damaged = f"{ring_name}_foreign", f"{ring_name}_damaged"
    try:
        (SHM / foreign).write_bytes(os.urandom(8192))
        publish_book(damaged)
        patch(SHM / damaged, 24, (12345).to_bytes(8, "little"))
        found = listing()
        rings = {r["name"]: r for r in found["rings"]}
        ring = rings[ring_name]
        assert (ring["write_seq"], ring["size"], ring["writer_state"]) == (8, 1 << 20, "closed")
        assert ring["last_write_age_s"] < 30 and ring["created_age_s"] < 30 and "records" not in ring
        assert foreign not in rings and damaged not in rings
        unreadable = {u["name"]: u["error"] for u in found["unreadable"]}
        assert foreign not in unreadable and "corrupt" in unreadable[damaged]
        human = cli("ls")
        assert human.returncode == 0 and ring_name in human.stdout and "closed" in human.stdout
        assert foreign not in human.stdout + human.stderr and damaged in human.stderr
    finally:
        (SHM / foreign).unlink(missing_ok=True)
        (SHM / damaged).unlink(missing_ok=True)


def test_ls_shows_live_and_dead_writers(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        pub.publish_market_data("NSE:INFY", {"ltp": 1.0})
        (ring,) = [r for r in listing()["rings"] if r["name"] == ring_name]
        assert ring["writer_state"] == "alive" and ring["writers"][0]["pid"] == os.getpid()
    (SHM / ring_name).unlink()
    pid = kill_own_writer(ring_name)
    (ring,) = [r for r in listing()["rings"] if r["name"] == ring_name]
    assert ring["writer_state"] == "dead" and ring["writers"][0]["pid"] == pid


def test_clean_refuses_a_live_ring_and_force_removes_it(ring_name: str) -> None:
    feed = spawn("mock-feed", "--buffer", ring_name, "--rate", 2)  # slow, but heartbeating
    try:
        wait_until(lambda: (SHM / ring_name).exists() and read_info(ring_name).write_seq, what="the feed")
        time.sleep(1.0)  # several ticks apart: only heartbeats keep the writer fresh now
        refused = cli("clean", ring_name)
        assert_one_line_error(refused, 7, "is in use", f"pid {feed.pid}", "--force")
        assert (SHM / ring_name).exists()
        forced = cli("clean", ring_name, "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"--force: removing ring '{ring_name}'" in forced.stderr and f"pid {feed.pid} alive" in forced.stderr
        assert f"removed ring '{ring_name}'" in forced.stdout
        assert not (SHM / ring_name).exists()
        assert feed.poll() is None, "the writer carries on, unharmed"
    finally:
        feed.terminate()
        feed.communicate(timeout=30)
    assert feed.returncode == 0


def test_clean_removes_a_ring_whose_writer_died(ring_name: str) -> None:
    pid = kill_own_writer(ring_name)
    result = cli("clean", ring_name)
    assert result.returncode == 0 and result.stderr == ""
    assert f"removed ring '{ring_name}'" in result.stdout and f"pid {pid} dead" in result.stdout
    assert not (SHM / ring_name).exists()


def test_clean_removes_a_closed_ring_and_then_finds_nothing(ring_name: str) -> None:
    publish_book(ring_name)
    assert cli("clean", ring_name).returncode == 0
    assert not (SHM / ring_name).exists()
    assert_one_line_error(cli("clean", ring_name), 4, "no shared-memory ring")


def test_clean_removes_a_ring_whose_live_writer_went_silent(ring_name: str) -> None:
    with SharedMemoryPublisher(buffer_name=ring_name) as pub:
        pub.publish_market_data("NSE:INFY", {"ltp": 1.0})
        assert_one_line_error(cli("clean", ring_name), 7, "is in use", f"pid {os.getpid()}")
        stale = time.time_ns() - 60 * 10**9  # as if this writer hung a minute ago
        patch(SHM / ring_name, layout.writer_entry_offset(0) + 16, stale.to_bytes(8, "little"))
        result = cli("clean", ring_name)
        assert result.returncode == 0, result.stderr
        assert f"pid {os.getpid()} stale" in result.stdout
    assert not (SHM / ring_name).exists()


@pytest.mark.parametrize("content", [b"not a ring" * 1000, b"\0" * 8192, b"tiny"], ids=["text", "zeros", "tiny"])
def test_clean_never_removes_a_segment_that_is_not_a_ring(ring_name: str, content: bytes) -> None:
    (SHM / ring_name).write_bytes(content)
    for args in ((), ("--force",)):
        assert_one_line_error(cli("clean", ring_name, *args), 5, "not a shmproxy ring", "clean only removes shmproxy rings")
    assert (SHM / ring_name).read_bytes() == content


@pytest.mark.parametrize(
    ("offset", "data", "phrase"),
    [(24, (12345).to_bytes(8, "little"), "corrupt"), (0, b"\0" * 8, "no ring header")],  # damaged; creator died
)
def test_a_damaged_ring_goes_only_when_forced(ring_name: str, offset: int, data: bytes, phrase: str) -> None:
    publish_book(ring_name)
    patch(SHM / ring_name, offset, data)
    before = digest(SHM / ring_name)
    assert_one_line_error(cli("clean", ring_name), 6, phrase, "--force")
    assert digest(SHM / ring_name) == before
    forced = cli("clean", ring_name, "--force")
    assert forced.returncode == 0 and "header is damaged" in forced.stderr
    assert not (SHM / ring_name).exists()


def test_bad_names_and_missing_argument() -> None:
    assert_one_line_error(cli("clean", "../etc/passwd"), 2, "invalid buffer name")
    assert_error(cli("clean"), 2, "Missing argument")

"""shmproxy dump: the header, writers, counters and records of a ring, and never a byte changed."""

from __future__ import annotations

import json
import os
import time

import pytest

from shmproxy import RecordError, SharedMemoryPublisher
from shmproxy.core import layout

from conftest import SHM
from ringtools import BOOK, assert_error, assert_one_line_error, cli, digest, kill_own_writer, patch, publish_book, tick_data


def dump_json(ring: str, *args: object) -> dict:
    result = cli("dump", ring, "--json", *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return json.loads(result.stdout)


def test_json_matches_what_was_published(ring_name: str) -> None:
    before = time.time_ns()
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=1 << 20) as pub:
        for key, mode, ltp in BOOK * 2:
            pub.publish_market_data(key, tick_data(mode, ltp))
        with pytest.raises(RecordError):
            pub.publish_market_data("NSE:INFY", {"ltp": "not a price"})
        ring = dump_json(ring_name)  # this process is a live writer meanwhile
    assert ring["name"] == ring_name and ring["path"] == str(SHM / ring_name)
    assert ring["size"] == 1 << 20 == (SHM / ring_name).stat().st_size
    assert (ring["layout_version"], ring["header_size"], ring["slot_size"]) == (1, 4096, 448)
    assert ring["capacity"] == layout.capacity_for(1 << 20) == 2331
    assert ring["write_seq"] == 16 and ring["oldest_seq"] == 1 and ring["records_held"] == 16
    assert before - 1e9 <= ring["created_ns"] <= time.time_ns() and ring["created"].startswith(time.strftime("%Y-"))
    assert ring["counters"] == {"writer_attaches": 1, "rejected": 1}
    assert 0 <= ring["last_write_age_s"] < 30
    (writer,) = ring["writers"]
    assert writer["pid"] == os.getpid() and writer["state"] == "alive" and writer["records"] <= 16
    assert ring["writer_state"] == "alive" and writer["heartbeat_age_s"] < 30
    records = ring["records"]
    assert [r["seq"] for r in records] == list(range(7, 17))  # the newest 10
    for record, (key, mode, ltp) in zip(records, (BOOK * 2)[6:]):
        assert f"{record['exchange']}:{record['symbol']}" == key and record["mode"] == mode
        assert record["data"]["ltp"] == ltp and record["type"] == "market_data"
    nifty = next(r for r in records if r["symbol"] == "NIFTY30DEC25FUT")
    assert nifty["data"]["depth"]["sell"][4] == {"price": 26100.25, "quantity": 100, "orders": 5}


def test_records_option(ring_name: str) -> None:
    publish_book(ring_name)
    assert [r["seq"] for r in dump_json(ring_name, "--records", 3)["records"]] == [6, 7, 8]
    assert dump_json(ring_name, "--records", 0)["records"] == []
    assert [r["seq"] for r in dump_json(ring_name, "-n", 100)["records"]] == list(range(1, 9))


def test_a_lapped_ring_shows_what_it_still_holds(ring_name: str) -> None:
    publish_book(ring_name, BOOK * 10, size=layout.MIN_SEGMENT_SIZE)  # 80 records, 16 slots
    ring = dump_json(ring_name, "--records", 100)
    assert (ring["write_seq"], ring["oldest_seq"], ring["records_held"]) == (80, 65, 16)
    assert [r["seq"] for r in ring["records"]] == list(range(65, 81))
    assert ring["writers"][0]["state"] == "closed" and ring["writers"][0]["records"] == 80


def test_an_empty_ring(ring_name: str) -> None:
    SharedMemoryPublisher(buffer_name=ring_name).close()
    ring = dump_json(ring_name)
    assert (ring["write_seq"], ring["oldest_seq"], ring["records_held"], ring["records"]) == (0, 0, 0, [])
    assert ring["last_write_ns"] == 0 and ring["last_write_age_s"] is None


def test_a_killed_writer_shows_as_dead(ring_name: str) -> None:
    pid = kill_own_writer(ring_name)
    ring = dump_json(ring_name)
    assert [(w["pid"], w["state"]) for w in ring["writers"]] == [(pid, "dead")]
    assert ring["writer_state"] == "dead"


def test_human_output_and_not_a_byte_changed(ring_name: str) -> None:
    publish_book(ring_name)
    before = digest(SHM / ring_name)
    result = cli("dump", ring_name, "--records", 4)
    assert result.returncode == 0 and result.stderr == ""
    for text in (ring_name, "capacity", "2,331 records", "write seq", "writers", "closed", "NSE:INFY", "Depth",
                 "newest records (4 of 4 asked)", "1,501.95"):
        assert text in result.stdout, text
    assert "…" not in result.stdout, "piped output is not cut to 80 columns"
    dump_json(ring_name)
    assert digest(SHM / ring_name) == before


def test_missing_ring(ring_name: str) -> None:
    for args in ((), ("--json",)):
        assert_one_line_error(cli("dump", ring_name, *args), 4, f"no shared-memory ring named '{ring_name}'")
    assert not (SHM / ring_name).exists()


@pytest.mark.parametrize(
    ("damage", "code", "phrase"),
    [
        (lambda path: path.write_bytes(os.urandom(70000)), 5, "not a shmproxy ring"),
        (lambda path: path.write_bytes(b"tiny"), 5, "not a shmproxy ring"),
        (lambda path: patch(path, 8, (2).to_bytes(4, "little")), 5, "layout version 2"),
        (lambda path: patch(path, 24, (12345).to_bytes(8, "little")), 6, "corrupt"),
        (lambda path: patch(path, 0, b"\0" * 8), 6, "no ring header"),
    ],
)
def test_foreign_and_damaged_segments_are_refused_untouched(ring_name: str, damage, code: int, phrase: str) -> None:
    publish_book(ring_name)
    damage(SHM / ring_name)
    before = digest(SHM / ring_name)
    assert_one_line_error(cli("dump", ring_name, "--json"), code, phrase)
    assert digest(SHM / ring_name) == before


def test_bad_options(ring_name: str) -> None:
    publish_book(ring_name)
    assert_error(cli("dump", ring_name, "--records", -1), 2, "--records")
    assert_one_line_error(cli("dump", "bad/name"), 2, "SHM_BUFFER_NAME")

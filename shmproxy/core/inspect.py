"""Looking at rings without touching them: writer liveness, JSON-ready views, ``ls`` and ``dump``.

Nothing here writes to a segment: headers are read with ``pread`` (:func:`segment.read_info`) and
records through a read-only mapping. The views are plain dicts of JSON types, shared by the
commands' ``--json`` output and their human rendering.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import layout
from .errors import CorruptSegmentError, ForeignSegmentError, SegmentError
from .records import Tick
from .ring import RingReader
from .segment import SHM_DIR, RingInfo, Segment, WriterInfo, list_segment_names, pid_alive, read_info, segment_path
from .subscriber import NameDecoder

STALE_AFTER_S = 10.0
"""A writer whose heartbeat is older than this is not writing any more (hung, or its PID reused).
Writers refresh it at least every 100 ms while they publish; idle ones call ``heartbeat()``."""

WRITER_STATES = ("alive", "stale", "dead", "closed")  # also the order of precedence for a ring


def writer_state(writer: WriterInfo, now_ns: int) -> str:
    """"alive" (process running, heartbeat fresh), "stale", "dead" (process gone) or "closed"."""
    if writer.state == layout.WRITER_CLOSED:
        return "closed"
    if not pid_alive(writer.pid):
        return "dead"
    if now_ns - writer.heartbeat_ns > STALE_AFTER_S * 1e9:
        return "stale"
    return "alive"


def live_writers(info: RingInfo, now_ns: int | None = None) -> list[WriterInfo]:
    """Writers that are publishing into the ring now (see :func:`writer_state`)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    return [w for w in info.writers if writer_state(w, now_ns) == "alive"]


def looks_like_ring(header: bytes, file_size: int) -> bool:
    """True if ``header`` is a shmproxy ring's, even a damaged or half-created one.

    A creator writes the identity fields first and the magic last, so a ring whose creator died
    before finishing has a zero magic but recognisable fields; a segment of zeros does not qualify.
    """
    if len(header) < layout.IDENTITY.size:
        return False
    magic, version, header_size, slot_size, _, total_size, _, _ = layout.IDENTITY.unpack_from(header, 0)
    if magic == layout.MAGIC:
        return True
    return magic == b"\0" * 8 and (version, header_size, slot_size, total_size) == (
        layout.LAYOUT_VERSION, layout.HEADER_SIZE, layout.SLOT_SIZE, file_size
    )


# --- views ------------------------------------------------------------------------------------
def _iso(ns: int) -> str | None:
    if not ns:
        return None
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).astimezone().isoformat(timespec="milliseconds")


def _age_s(ns: int, now_ns: int) -> float | None:
    return None if not ns else round(max(0, now_ns - ns) / 1e9, 3)


def writer_view(writer: WriterInfo, now_ns: int) -> dict[str, Any]:
    return {
        "pid": writer.pid,
        "state": writer_state(writer, now_ns),
        "started_ns": writer.started_ns,
        "started": _iso(writer.started_ns),
        "heartbeat_ns": writer.heartbeat_ns,
        "heartbeat_age_s": _age_s(writer.heartbeat_ns, now_ns),
        "records": writer.records,
    }


def ring_view(info: RingInfo, now_ns: int | None = None, newest_ns: int = 0) -> dict[str, Any]:
    """Everything the header says about a ring, with ages computed at ``now_ns``.

    ``last_write_ns`` is the later of the header's last-write time (refreshed only every 100 ms)
    and ``newest_ns``, the publish time of the newest record when the caller read it.
    ``writer_state`` sums up the writers: the first of :data:`WRITER_STATES` that any writer is
    in, or "none" when no writer ever attached.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    writers = [writer_view(w, now_ns) for w in info.writers]
    states = {w["state"] for w in writers}
    last_write_ns = max(info.last_write_ns, newest_ns)
    return {
        "name": info.name,
        "path": str(segment_path(info.name)),
        "size": info.total_size,
        "layout_version": info.layout_version,
        "header_size": info.header_size,
        "slot_size": info.slot_size,
        "capacity": info.capacity,
        "generation": info.generation,
        "created_ns": info.created_ns,
        "created": _iso(info.created_ns),
        "created_age_s": _age_s(info.created_ns, now_ns),
        "write_seq": info.write_seq,
        "oldest_seq": info.oldest_seq,
        "records_held": info.write_seq - info.oldest_seq + 1 if info.write_seq else 0,
        "last_write_ns": last_write_ns,
        "last_write_age_s": _age_s(last_write_ns, now_ns),
        "counters": {"writer_attaches": info.writer_attaches, "rejected": info.rejected},
        "writer_state": next((s for s in WRITER_STATES if s in states), "none"),
        "writers": writers,
    }


def tick_view(tick: Tick) -> dict[str, Any]:
    """A record as OpenAlgo's ``market_data`` message (at the record's own mode), plus ``seq``."""
    return {
        "type": "market_data",
        "symbol": tick.symbol,
        "exchange": tick.exchange,
        "mode": tick.mode,
        "data": tick.to_dict(),
        "seq": tick.seq,
    }


# --- dump and ls ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RingDump:
    """A ring's header and its newest records, read without changing a byte."""

    info: RingInfo
    records: list[Tick]
    newest_ns: int  # publish time of the newest record (0 if none could be read)

    def view(self, now_ns: int | None = None, records: bool = True) -> dict[str, Any]:
        """:func:`ring_view`, plus the records as :func:`tick_view` dicts when ``records``."""
        view = ring_view(self.info, now_ns, self.newest_ns)
        if records:
            view["records"] = [tick_view(t) for t in self.records]
        return view


def dump_ring(name: str, records: int = 10) -> RingDump:
    """Read ``name``'s header and its last ``records`` records through a read-only mapping."""
    with Segment.attach(name) as segment:
        info = segment.info()
        ticks = last_records(segment, info, max(records, 1))
    return RingDump(info, ticks[-records:] if records > 0 else [], ticks[-1].publish_ns if ticks else 0)


def last_records(segment: Segment, info: RingInfo, count: int) -> list[Tick]:
    """The newest ``count`` records up to ``info.write_seq`` (fewer if writers overwrite them meanwhile)."""
    if count <= 0 or not info.write_seq:
        return []
    reader = RingReader(segment, max(info.oldest_seq, info.write_seq - count + 1))
    names = NameDecoder()
    ticks = []
    while reader.cursor <= info.write_seq:
        batch = reader.read(info.write_seq + 1 - reader.cursor)
        if not batch:
            break
        ticks += [Tick.from_slot(r, *names.decode(r)) for r in batch]
    return ticks


@dataclass(frozen=True)
class RingListing:
    """What ``ls`` found: readable rings, and shmproxy segments it could not read (name, why)."""

    rings: list[RingDump]  # each with its newest record only
    unreadable: list[tuple[str, str]]


def list_rings() -> RingListing:
    """Every shmproxy ring in /dev/shm. Segments that are not rings are left out, untouched."""
    rings, unreadable = [], []
    for name in list_segment_names():
        try:
            read_info(name)  # a quick, wait-free look first: most of /dev/shm is not ours
            rings.append(dump_ring(name, records=0))
        except (CorruptSegmentError, ForeignSegmentError) as exc:
            if _raw_looks_like_ring(name):
                unreadable.append((name, str(exc)))
        except SegmentError:
            continue  # vanished meanwhile, or another user's: not ours to report
    return RingListing(rings, unreadable)


def _raw_looks_like_ring(name: str) -> bool:
    try:
        fd = os.open(SHM_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return looks_like_ring(os.pread(fd, layout.IDENTITY.size, 0), os.fstat(fd).st_size)
    finally:
        os.close(fd)

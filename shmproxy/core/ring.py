"""The broadcast ring: a single-sequence, multi-writer, any-reader log in shared memory.

Writers serialise on a file lock (one record at a time), take the next sequence from the header,
and write the slot under a seqlock: the sequence goes into the slot's BEGIN marker first, then body
and END marker in one pack. A reader expecting sequence ``n`` reads END; ``END == n`` means the
record is complete. It copies the slot, then re-reads BEGIN: if that moved, a writer lapped it while
it copied and the copy is discarded. Readers never write, so any number can follow the ring, each
with its own cursor, and a reader that falls a ring behind skips ahead and counts what it missed.

Ordering relies on stores becoming visible in program order (x86-64's TSO), as CPython issues each
``pack_into`` as plain stores; see docs/shm-format.md.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Callable

from . import layout
from .segment import Segment, pid_alive
from .speedups import LAYOUT_FACTS, TickWriter, enabled
from .wakeup import WAKE_AFTER_GAP_NS, SequenceWaker

HEARTBEAT_INTERVAL_NS = 100_000_000  # writer heartbeats (and last-write time) at most every 100 ms

_HEADER = layout.HEADER_SIZE
_SLOT = layout.SLOT_SIZE
_END_AT = layout.SLOT_END_OFFSET
_SEQ = layout.WRITE_SEQ
_SEQ_AT = layout.WRITE_SEQ_OFFSET
_BEGIN = layout.SLOT_BEGIN
_READ = layout.SLOT_READ


class RingWriter:
    """Appends records to a ring. Safe across processes (file lock) and threads (a mutex)."""

    def __init__(self, segment: Segment) -> None:
        if not segment.writable:
            raise ValueError("RingWriter needs a segment opened for writing")
        self.segment = segment
        self._buf = segment.buf
        self._capacity = segment.capacity
        self._mutex = threading.Lock()
        self._records = 0
        self._last_beat = 0
        self._started = time.time_ns()
        self._last_write = 0
        self._waker = SequenceWaker(segment.fd)
        self._tick_writer: TickWriter | None = None
        self._entry = self._register()

    def write(self, body: list, depth: list | None) -> int:
        """Write one record and return its sequence.

        ``body`` holds the values of ``layout.BODY_FORMAT`` (``body[0]`` is the publish time in ns);
        ``depth`` the 30 depth values, or None to zero the depth area.
        """
        buf = self._buf
        segment = self.segment
        with self._mutex:
            segment.lock()
            try:
                seq = _SEQ.unpack_from(buf, _SEQ_AT)[0] + 1
                offset = _HEADER + (seq % self._capacity) * _SLOT
                while _BEGIN.unpack_from(buf, offset + _END_AT)[0] == seq:
                    # A writer died after completing ``seq`` but before publishing write_seq; readers
                    # may have delivered it, so publish it rather than reuse its sequence.
                    _SEQ.pack_into(buf, _SEQ_AT, seq)
                    seq += 1
                    offset = _HEADER + (seq % self._capacity) * _SLOT
                _BEGIN.pack_into(buf, offset, seq)
                if depth is None:
                    layout.SLOT_WRITE_NO_DEPTH.pack_into(buf, offset + 8, *body, seq)
                else:
                    layout.SLOT_WRITE_DEPTH.pack_into(buf, offset + 8, *body, *depth, seq)
                _SEQ.pack_into(buf, _SEQ_AT, seq)
            finally:
                segment.unlock()
            self._wrote(body[0])
        return seq

    def compiled_path(self, names: dict, modes: dict, quote_or_depth: object) -> TickWriter | None:
        """The compiled publish path on this writer (``_speedups.c``), or None when not built or turned off.

        It encodes LTP and Quote tick dicts itself (``names`` and ``modes`` are the publisher's lookup
        tables) and appends them under this writer's mutex, file lock and slot protocol, with the same
        bookkeeping as :meth:`write`. Closed with this writer.
        """
        if not enabled():
            return None
        segment = self.segment
        try:
            self._tick_writer = TickWriter(
                buf=segment.buf, fd=segment.fd, capacity=self._capacity, layout=LAYOUT_FACTS, names=names,
                modes=modes, quote_or_depth=quote_or_depth, mutex=self._mutex, beat=self._beat_by_reference(),
                beat_interval_ns=HEARTBEAT_INTERVAL_NS, wake_gap_ns=WAKE_AFTER_GAP_NS,
            )
        except ValueError:  # built for another layout version: a stale build, so stay on the Python path
            return None
        return self._tick_writer

    def heartbeat(self) -> None:
        """Refresh this writer's heartbeat, for writers that are alive but have nothing to publish."""
        with self._mutex:
            self.segment.lock()
            try:
                self._beat(time.time_ns(), idle=True)
            finally:
                self.segment.unlock()

    def count_rejected(self) -> None:
        """Count a record a publisher refused (bad input) in the ring's header."""
        with self._mutex:
            self.segment.lock()
            try:
                attaches, last_write, rejected = layout.COUNTERS.unpack_from(self._buf, layout.COUNTERS_OFFSET)
                layout.COUNTERS.pack_into(self._buf, layout.COUNTERS_OFFSET, attaches, last_write, rejected + 1)
            finally:
                self.segment.unlock()

    def close(self) -> None:
        """Mark this writer closed in the writer table (the segment itself stays)."""
        with self._mutex:
            self.segment.lock()
            try:
                self._store_entry(layout.WRITER_CLOSED, time.time_ns())
            finally:
                self.segment.unlock()
            self._waker.close()
            if self._tick_writer is not None:
                self._tick_writer.close()  # lets go of the mapping, which the segment's close unmaps

    @property
    def records(self) -> int:
        """Records this writer has written, through either path."""
        return self._records + (self._tick_writer.records if self._tick_writer is not None else 0)

    def _wrote(self, now: int) -> None:
        """Bookkeeping after a record (caller holds the mutex): count, heartbeat, wake parked readers."""
        self._records += 1
        if now - self._last_beat >= HEARTBEAT_INTERVAL_NS:
            self._locked_beat(now)
        if now - self._last_write > WAKE_AFTER_GAP_NS:
            self._waker.wake()  # first record after a lull: readers may be parked
        self._last_write = now

    def _beat_by_reference(self) -> Callable[[int], None]:
        """:meth:`_locked_beat` without a reference to this writer, so that the compiled path it is
        given to makes no cycle: a writer dropped without close() is freed (and unmapped) at once."""
        writer = weakref.ref(self)

        def beat(now: int) -> None:
            if (alive := writer()) is not None:
                alive._locked_beat(now)

        return beat

    def _locked_beat(self, now: int) -> None:
        self.segment.lock()
        try:
            self._beat(now)
        finally:
            self.segment.unlock()

    # --- writer table (caller holds the lock) ------------------------------------------------
    def _beat(self, now: int, idle: bool = False) -> None:
        self._last_beat = now
        self._store_entry(layout.WRITER_ACTIVE, now)
        if not idle:
            attaches, _, rejected = layout.COUNTERS.unpack_from(self._buf, layout.COUNTERS_OFFSET)
            layout.COUNTERS.pack_into(self._buf, layout.COUNTERS_OFFSET, attaches, now, rejected)

    def _store_entry(self, state: int, now: int) -> None:
        if self._entry >= 0:
            layout.WRITER_ENTRY.pack_into(
                self._buf, layout.writer_entry_offset(self._entry), os.getpid(), state, self._started, now, self.records
            )

    def _register(self) -> int:
        """Claim a writer-table entry: a free one, else a closed one, else one whose process died."""
        self.segment.lock()
        try:
            entries = [
                layout.WRITER_ENTRY.unpack_from(self._buf, layout.writer_entry_offset(i)) for i in range(layout.MAX_WRITERS)
            ]
            candidates = (
                [i for i, e in enumerate(entries) if e[1] == layout.WRITER_FREE]
                + [i for i, e in enumerate(entries) if e[1] == layout.WRITER_CLOSED]
                + [i for i, e in enumerate(entries) if e[1] == layout.WRITER_ACTIVE and not pid_alive(e[0])]
            )
            self._entry = candidates[0] if candidates else -1
            self._beat(self._started, idle=True)
            attaches, last_write, rejected = layout.COUNTERS.unpack_from(self._buf, layout.COUNTERS_OFFSET)
            layout.COUNTERS.pack_into(self._buf, layout.COUNTERS_OFFSET, attaches + 1, last_write, rejected)
        finally:
            self.segment.unlock()
        return self._entry


class RingReader:
    """Follows a ring with its own cursor. Never writes to the segment.

    ``cursor`` is the next sequence to read; ``delivered`` counts records returned and ``lost``
    records skipped because writers lapped this reader. Every sequence below ``cursor`` is counted
    in exactly one of the two.
    """

    def __init__(self, segment: Segment, start: str | int = "latest") -> None:
        self.segment = segment
        self._buf = segment.buf
        self._capacity = segment.capacity
        self.delivered = 0
        self.lost = 0
        self.laps = 0
        self.cursor = self._start_seq(start)

    def _start_seq(self, start: str | int) -> int:
        written = self.segment.write_seq()
        if start == "latest":
            return written + 1
        if start == "oldest":
            return max(1, written - self._capacity + 1)
        if isinstance(start, int) and start >= 1:
            return start
        raise ValueError(f"start must be 'latest', 'oldest' or a sequence >= 1, not {start!r}")

    def read(self, limit: int = 4096) -> list[tuple]:
        """Return up to ``limit`` complete records (``layout.SLOT_READ`` tuples) past the cursor."""
        buf = self._buf
        capacity = self._capacity
        cursor = self.cursor
        out: list[tuple] = []
        append = out.append
        while len(out) < limit:
            offset = _HEADER + (cursor % capacity) * _SLOT
            end = _BEGIN.unpack_from(buf, offset + _END_AT)[0]
            if end == cursor:
                record = _READ.unpack_from(buf, offset)
                begin = _BEGIN.unpack_from(buf, offset)[0]
                if record[0] == cursor and begin == cursor:
                    append(record)
                    cursor += 1
                    continue
                end = max(record[0], begin)
            if end <= cursor:
                break  # not written yet, or being written right now
            cursor = self._skip_lapped(cursor, end)
        self.delivered += len(out)
        self.cursor = cursor
        return out

    def advance(self, count: int) -> None:
        """Move past ``count`` complete records read elsewhere (the compiled reader), counting them delivered."""
        self.cursor += count
        self.delivered += count

    def ready(self) -> bool:
        """True when the record at the cursor is complete, or the cursor was lapped: a read will
        make progress. Reads only the slot's end marker."""
        offset = _HEADER + (self.cursor % self._capacity) * _SLOT + _END_AT
        return _BEGIN.unpack_from(self._buf, offset)[0] >= self.cursor

    def _skip_lapped(self, cursor: int, seen: int) -> int:
        """A writer has overwritten ``cursor``'s slot with ``seen``: resume at the oldest record left."""
        oldest = max(self.segment.write_seq(), seen) - self._capacity + 1
        oldest = max(oldest, cursor + 1)
        self.lost += oldest - cursor
        self.laps += 1
        return oldest

    def lag(self) -> int:
        """Records published but not yet read by this reader."""
        return max(0, self.segment.write_seq() - self.cursor + 1)

"""Byte layout of a shmproxy ring segment (layout version 1).

docs/shm-format.md specifies the same layout for readers written in other languages; keep the two
in step. All integers are little-endian. Offsets are absolute within the segment.

Segment = header (``HEADER_SIZE`` bytes) followed by ``capacity`` slots of ``SLOT_SIZE`` bytes.
"""

from __future__ import annotations

import struct

MAGIC = b"SHMPROXY"
LAYOUT_VERSION = 1
HEADER_SIZE = 4096

# Identity block, written once by the creator (magic last, so an attacher never trusts a half-made header).
IDENTITY = struct.Struct("<8sIIIIQQQ")  # magic, version, header_size, slot_size, capacity, total_size, generation, created_ns
IDENTITY_OFFSET = 0

# Write sequence: the number of the last published record (0 = none yet). Its own cache line.
WRITE_SEQ = struct.Struct("<Q")
WRITE_SEQ_OFFSET = 64

# Writer-side counters operators can read: writer attachments, last write time (updated at the
# heartbeat pace), records rejected by publishers' validation.
COUNTERS = struct.Struct("<QQQ")
COUNTERS_OFFSET = 128

# Writer table: one entry per publishing process.
WRITER_ENTRY = struct.Struct("<IIQQQ")  # pid, state, started_ns, heartbeat_ns, records
WRITER_TABLE_OFFSET = 256
MAX_WRITERS = 32
WRITER_FREE, WRITER_ACTIVE, WRITER_CLOSED = 0, 1, 2

# --- slots -------------------------------------------------------------------------------------
EXCHANGE_BYTES = 16
SYMBOL_BYTES = 40
DEPTH_LEVELS = 5

# A record body: timestamps, mode, lengths, names, prices and quantities.
BODY_FORMAT = (
    "qqBBB5x"  # publish_ns, exchange_ns, mode, exchange length, symbol length
    f"{EXCHANGE_BYTES}s{SYMBOL_BYTES}s"
    "7d"  # ltp, open, high, low, close, average_price, percent_change
    "6q"  # volume, last_quantity, last_trade_time, oi, total_buy_quantity, total_sell_quantity
)
DEPTH_FORMAT = "dqq" * (2 * DEPTH_LEVELS)  # buy levels then sell levels: price, quantity, orders
BODY_SIZE = struct.calcsize("<" + BODY_FORMAT)
DEPTH_SIZE = struct.calcsize("<" + DEPTH_FORMAT)
SLOT_SIZE = 448  # begin marker + body + depth + padding + end marker, a multiple of 64
_PAD = SLOT_SIZE - 16 - BODY_SIZE - DEPTH_SIZE
assert _PAD >= 0, "slot too small for its record"

# Seqlock: a writer stores the record's sequence in BEGIN, then body and END in one pack.
SLOT_BEGIN = struct.Struct("<Q")
# Body with depth, or with the depth area zeroed (pad bytes pack as zeros), then the end marker.
SLOT_WRITE_DEPTH = struct.Struct(f"<{BODY_FORMAT}{DEPTH_FORMAT}{_PAD}xQ")
SLOT_WRITE_NO_DEPTH = struct.Struct(f"<{BODY_FORMAT}{DEPTH_SIZE + _PAD}xQ")
# Whole slot as a reader copies it: begin, body, depth, end.
SLOT_READ = struct.Struct(f"<Q{BODY_FORMAT}{DEPTH_FORMAT}{_PAD}xQ")
SLOT_END_OFFSET = SLOT_SIZE - 8
assert SLOT_READ.size == SLOT_SIZE and SLOT_WRITE_DEPTH.size == SLOT_SIZE - 8

MIN_CAPACITY = 16
MIN_SEGMENT_SIZE = HEADER_SIZE + MIN_CAPACITY * SLOT_SIZE
MAX_SEGMENT_SIZE = 1 << 34  # 16 GiB: far past any market's need, short of a typo's damage


def capacity_for(total_size: int) -> int:
    """Number of slots a segment of ``total_size`` bytes holds.

    Not rounded to a power of two: Python's ``%`` costs the same as a mask, and rounding would waste
    up to half of ``SHM_BUFFER_SIZE``.
    """
    return (total_size - HEADER_SIZE) // SLOT_SIZE


def slot_offset(seq: int, capacity: int) -> int:
    """Offset of the slot that holds sequence ``seq`` (sequences start at 1)."""
    return HEADER_SIZE + (seq % capacity) * SLOT_SIZE


def writer_entry_offset(index: int) -> int:
    return WRITER_TABLE_OFFSET + index * WRITER_ENTRY.size


assert writer_entry_offset(MAX_WRITERS) <= HEADER_SIZE

"""Named POSIX shared-memory segments holding a shmproxy ring.

Segments live in ``/dev/shm`` (Linux), which is what ``shm_open(3)`` uses. They are opened with
``os.open`` + ``mmap`` rather than ``multiprocessing.shared_memory``: on Python < 3.13 the latter
registers every attached segment with the resource tracker, which unlinks it when the *reader*
exits. Nothing here ever unlinks a segment; only :func:`remove_segment` does, on explicit request.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import secrets
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from . import layout
from .errors import CorruptSegmentError, ForeignSegmentError, SegmentError, SegmentNotFoundError

SHM_DIR = Path("/dev/shm")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_INIT_WAIT_S = 1.0  # how long an attacher waits for a creator that is still writing the header


def validate_name(name: str) -> str:
    """Return ``name`` if it is a usable segment name, else raise :class:`SegmentError`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SegmentError(
            f"invalid buffer name {name!r}: use 1-200 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def segment_path(name: str) -> Path:
    return SHM_DIR / validate_name(name)


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class WriterInfo:
    """One entry of the ring's writer table."""

    index: int
    pid: int
    state: int
    started_ns: int
    heartbeat_ns: int
    records: int

    @property
    def alive(self) -> bool:
        return self.state == layout.WRITER_ACTIVE and pid_alive(self.pid)

    @property
    def status(self) -> str:
        if self.state == layout.WRITER_CLOSED:
            return "closed"
        return "alive" if self.alive else "dead"


@dataclass(frozen=True)
class RingInfo:
    """A snapshot of a ring's header, decoded from its bytes."""

    name: str
    total_size: int
    layout_version: int
    header_size: int
    slot_size: int
    capacity: int
    generation: int
    created_ns: int
    write_seq: int
    writer_attaches: int
    last_write_ns: int
    rejected: int
    writers: list[WriterInfo] = field(default_factory=list)

    @property
    def oldest_seq(self) -> int:
        """The oldest sequence still readable (0 when the ring is empty)."""
        if self.write_seq == 0:
            return 0
        return max(1, self.write_seq - self.capacity + 1)

    @property
    def live_writers(self) -> list[WriterInfo]:
        return [w for w in self.writers if w.alive]


def decode_header(name: str, header: bytes | memoryview, file_size: int) -> RingInfo:
    """Decode and validate a ring header; raise Foreign/Corrupt errors naming what differs."""
    if file_size < layout.HEADER_SIZE or len(header) < layout.HEADER_SIZE:
        raise ForeignSegmentError(
            f"segment '{name}' is not a shmproxy ring: {file_size} bytes, smaller than a ring header"
        )
    magic, version, header_size, slot_size, capacity, total_size, generation, created_ns = (
        layout.IDENTITY.unpack_from(header, layout.IDENTITY_OFFSET)
    )
    if magic == b"\0" * 8:
        raise CorruptSegmentError(
            f"segment '{name}' has no ring header: its creator died while creating it, or it is not a shmproxy ring"
        )
    if magic != layout.MAGIC:
        raise ForeignSegmentError(f"segment '{name}' is not a shmproxy ring (magic {magic!r}, expected {layout.MAGIC!r})")
    if version != layout.LAYOUT_VERSION:
        raise ForeignSegmentError(
            f"segment '{name}' has ring layout version {version}; this shmproxy reads version {layout.LAYOUT_VERSION}"
        )
    if header_size != layout.HEADER_SIZE or slot_size != layout.SLOT_SIZE:
        raise ForeignSegmentError(
            f"segment '{name}' has header {header_size} B / slot {slot_size} B; "
            f"this shmproxy uses {layout.HEADER_SIZE} B / {layout.SLOT_SIZE} B"
        )
    if total_size != file_size or capacity != layout.capacity_for(total_size) or capacity < layout.MIN_CAPACITY:
        raise CorruptSegmentError(
            f"segment '{name}' is corrupt: header says {total_size} B and {capacity} slots, the segment has {file_size} B"
        )
    (write_seq,) = layout.WRITE_SEQ.unpack_from(header, layout.WRITE_SEQ_OFFSET)
    attaches, last_write, rejected = layout.COUNTERS.unpack_from(header, layout.COUNTERS_OFFSET)
    writers = []
    for index in range(layout.MAX_WRITERS):
        pid, state, started, heartbeat, count = layout.WRITER_ENTRY.unpack_from(header, layout.writer_entry_offset(index))
        if state != layout.WRITER_FREE:
            writers.append(WriterInfo(index, pid, state, started, heartbeat, count))
    return RingInfo(
        name, total_size, version, header_size, slot_size, capacity, generation, created_ns,
        write_seq, attaches, last_write, rejected, writers,
    )


class Segment:
    """An open ring segment: file descriptor, mapping and validated geometry.

    Use :meth:`create_or_attach` (writers) or :meth:`attach` (readers, mapped read-only so a reader
    cannot change a byte).
    """

    def __init__(self, name: str, fd: int, writable: bool, created: bool) -> None:
        self.name = name
        self.path = segment_path(name)
        self.fd = fd
        self.writable = writable
        self.created = created
        size = os.fstat(fd).st_size
        info = decode_header(name, os.pread(fd, layout.HEADER_SIZE, 0), size)  # before mapping anything
        self._mmap = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        self.buf = memoryview(self._mmap)
        self.total_size = info.total_size
        self.capacity = info.capacity
        self.generation = info.generation
        self.created_ns = info.created_ns
        self.inode = os.fstat(fd).st_ino
        self._close_fd = weakref.finalize(self, os.close, fd)  # also when dropped without close()

    # --- opening ----------------------------------------------------------------------------
    @classmethod
    def attach(cls, name: str, writable: bool = False) -> Segment:
        """Open an existing ring; raise :class:`SegmentNotFoundError` when there is none."""
        fd = open_existing(name, writable)
        try:
            _wait_for_header(fd)
            return cls(name, fd, writable, created=False)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def create_or_attach(cls, name: str, size: int | None, default_size: int) -> Segment:
        """Create the ring (mode 0600) if absent, else attach to it for writing.

        ``size`` is what the caller asked for explicitly: attaching to a ring of another size is an
        error then. With ``size=None`` an existing ring is used at whatever size it has, and a new
        one gets ``default_size``.
        """
        want = default_size if size is None else size
        check_size(want)
        path = segment_path(name)
        if not SHM_DIR.is_dir():
            raise SegmentError(f"{SHM_DIR} does not exist: shmproxy needs Linux POSIX shared memory")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            segment = cls.attach(name, writable=True)
            if size is not None and segment.total_size != size:
                have = segment.total_size
                segment.close()
                raise SegmentError(
                    f"ring '{name}' exists with {have} bytes but {size} were asked for; "
                    f"use SHM_BUFFER_SIZE={have} or remove the old ring first (shmproxy clean {name})"
                )
            return segment
        except PermissionError:
            raise SegmentError(f"permission denied creating ring '{name}' in {SHM_DIR}") from None
        try:
            _initialise(fd, want)
            return cls(name, fd, writable=True, created=True)
        except OSError as exc:
            os.close(fd)
            os.unlink(path)  # ours: created above with O_EXCL and never published
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise SegmentError(f"not enough shared memory for a {want}-byte ring '{name}': {exc.strerror}") from None
            raise

    # --- header access ----------------------------------------------------------------------
    def info(self) -> RingInfo:
        return decode_header(self.name, self.buf, self.total_size)

    def write_seq(self) -> int:
        return layout.WRITE_SEQ.unpack_from(self.buf, layout.WRITE_SEQ_OFFSET)[0]

    def replaced(self) -> bool:
        """True when the name now points at another segment (re-created) or at nothing."""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    # --- writer lock --------------------------------------------------------------------------
    def lock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.buf.release()
        self._mmap.close()
        self._close_fd()
        self.fd = -1

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_size(size: int) -> None:
    if not layout.MIN_SEGMENT_SIZE <= size <= layout.MAX_SEGMENT_SIZE:
        raise SegmentError(
            f"ring size {size} bytes is out of range: {layout.MIN_SEGMENT_SIZE} to {layout.MAX_SEGMENT_SIZE}"
        )


def _initialise(fd: int, size: int) -> None:
    """Write a fresh header; the magic goes in last so attachers never trust a half-made header."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as mem:
            layout.IDENTITY.pack_into(
                mem, layout.IDENTITY_OFFSET, b"\0" * 8, layout.LAYOUT_VERSION, layout.HEADER_SIZE,
                layout.SLOT_SIZE, layout.capacity_for(size), size, secrets.randbits(63) | 1, time.time_ns(),
            )
            mem[0:8] = layout.MAGIC
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _wait_for_header(fd: int) -> None:
    """Give a creator that is still initialising (a segment changed within the last second) up to a
    second to finish; an older segment without a header will not get one, so do not wait for it."""
    deadline = time.monotonic() + _INIT_WAIT_S
    while time.monotonic() < deadline:
        status = os.fstat(fd)
        if status.st_size >= layout.HEADER_SIZE and os.pread(fd, 8, 0) != b"\0" * 8:
            return
        if time.time() - status.st_mtime > _INIT_WAIT_S:
            return
        time.sleep(0.01)


def open_existing(name: str, writable: bool = False) -> int:
    """A file descriptor on an existing segment, or the error that says why there is none."""
    path = segment_path(name)
    try:
        return os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SegmentNotFoundError(f"no shared-memory ring named '{name}' ({path} does not exist)") from None
    except PermissionError:
        raise SegmentError(f"permission denied opening ring '{name}' ({path}): it belongs to another user") from None
    except IsADirectoryError:
        raise ForeignSegmentError(f"'{name}' is a directory in {SHM_DIR}, not a shmproxy ring") from None


def read_info(name: str) -> RingInfo:
    """Read a ring's header without mapping it (what ``ls`` and ``clean`` need)."""
    fd = open_existing(name)
    try:
        size = os.fstat(fd).st_size
        return decode_header(name, os.pread(fd, layout.HEADER_SIZE, 0), size)
    finally:
        os.close(fd)


def list_segment_names() -> list[str]:
    """Names of every regular file in /dev/shm (rings or not), sorted."""
    if not SHM_DIR.is_dir():
        return []
    return sorted(p.name for p in SHM_DIR.iterdir() if p.is_file() and NAME_RE.match(p.name))


def remove_segment(name: str) -> None:
    """Unlink a segment by name. Callers decide whether they may (see the ``clean`` command)."""
    try:
        os.unlink(segment_path(name))
    except FileNotFoundError:
        raise SegmentNotFoundError(f"no shared-memory ring named '{name}'") from None

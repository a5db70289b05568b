"""Removing a ring on request (``shmproxy clean``), only when that cannot hurt anyone.

A ring may go when no live process is writing it: every writer in its table is closed, dead (PID
gone) or stale (heartbeat older than :data:`inspect.STALE_AFTER_S`). A damaged ring (a header
that says shmproxy but does not add up, or a creator that died half-way) goes only when forced.
A segment that is not a shmproxy ring is never removed, forced or not.

Deciding and removing are two steps, so a command can say what it is about to remove; the removal
re-checks under the ring's writer lock that the name still points at the same segment and, unless
forced, that still nobody writes it.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass, field

from . import layout
from .errors import CorruptSegmentError, ForeignSegmentError, SegmentError
from .inspect import live_writers, looks_like_ring
from .segment import RingInfo, WriterInfo, decode_header, open_existing, segment_path

_LOCK_WAIT_S = 2.0  # writers hold the lock for microseconds; longer means a writer is stuck in it


class RingInUseError(SegmentError):
    """``clean`` refused: a live process is writing the ring."""

    exit_code = 7


@dataclass(frozen=True)
class CleanPlan:
    """What removing ``name`` would remove, and what (without ``--force``) stands in the way."""

    name: str
    inode: int
    size: int
    info: RingInfo | None  # None when the header is damaged
    damage: str | None = None  # why the header cannot be read
    live: list[WriterInfo] = field(default_factory=list)

    def refusal(self) -> SegmentError | None:
        """The error to raise when removing without force, or None when removal is safe."""
        if self.live:
            now = time.time_ns()
            writers = ", ".join(f"pid {w.pid} (heartbeat {(now - w.heartbeat_ns) / 1e9:.1f} s ago)" for w in self.live)
            return RingInUseError(
                f"ring '{self.name}' is in use by live writer {writers}; stop it first, "
                f"or remove the ring anyway with: shmproxy clean {self.name} --force"
            )
        if self.damage:
            return CorruptSegmentError(
                f"{self.damage.rstrip('.')}; not removed without --force: shmproxy clean {self.name} --force"
            )
        return None


def plan_clean(name: str) -> CleanPlan:
    """Look at ``name`` and decide; raise SegmentNotFoundError, or ForeignSegmentError if not a ring."""
    fd = open_existing(name)
    try:
        return _plan(name, fd)
    finally:
        os.close(fd)


def remove_ring(plan: CleanPlan, force: bool = False) -> None:
    """Unlink the ring ``plan`` describes, re-checking under its writer lock.

    Raises the plan's refusal (unless ``force``), ForeignSegmentError if it is no longer a ring,
    and SegmentError if the name now points at another segment (re-created meanwhile).
    """
    fd = open_existing(plan.name)
    try:
        _lock(fd, plan.name)
        now = _plan(plan.name, fd)
        if now.inode != plan.inode:
            raise SegmentError(f"ring '{plan.name}' was re-created meanwhile; nothing removed, look again")
        refusal = now.refusal()
        if refusal is not None and not force:
            raise refusal
        os.unlink(segment_path(plan.name))  # still under the lock: no writer slips in between
    finally:
        os.close(fd)  # also drops the lock


def _plan(name: str, fd: int) -> CleanPlan:
    stat = os.fstat(fd)
    if os.stat(segment_path(name)).st_ino != stat.st_ino:
        raise SegmentError(f"ring '{name}' was re-created meanwhile; nothing removed, look again")
    header = os.pread(fd, layout.HEADER_SIZE, 0)
    try:
        info = decode_header(name, header, stat.st_size)
    except (CorruptSegmentError, ForeignSegmentError) as exc:
        if looks_like_ring(header, stat.st_size):
            return CleanPlan(name, stat.st_ino, stat.st_size, None, damage=str(exc))
        why = str(exc) if isinstance(exc, ForeignSegmentError) else f"segment '{name}' is not a shmproxy ring (no ring header)"
        raise ForeignSegmentError(f"{why}; clean only removes shmproxy rings") from None
    return CleanPlan(name, stat.st_ino, stat.st_size, info, live=live_writers(info))


def _lock(fd: int, name: str) -> None:
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RingInUseError(
                    f"ring '{name}' stays locked by a writer (more than {_LOCK_WAIT_S:g} s): a writer is stuck in it"
                ) from None
            time.sleep(0.01)


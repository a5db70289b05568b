"""Parking idle readers on a futex, so they cost nothing while the ring is quiet.

Readers that have seen no record for about a millisecond park in ``FUTEX_WAIT`` on the low 32 bits
of the header's write sequence. A writer whose previous record is older than ``WAKE_AFTER_GAP_NS``
issues ``FUTEX_WAKE`` after publishing: a reader only parks after a longer silence than that, so
every parked reader is woken by the first record after a lull, and a busy writer makes no system
call at all. Readers never write to the segment; they map its first page read-only for the wait.

Linux only (``syscall(SYS_futex)`` through ctypes); elsewhere :func:`futex_available` is False and
readers fall back to sleeping in short steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform
import weakref

from . import layout

WAKE_AFTER_GAP_NS = 500_000
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_WAKE_ALL = 0x7FFFFFFF
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_libc() -> ctypes.CDLL | None:
    if _SYS_FUTEX is None or platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


_libc = _load_libc()


def futex_available() -> bool:
    return _libc is not None


class SequenceWaiter:
    """A reader's handle to park on a ring's write sequence (maps the header page read-only)."""

    def __init__(self, fd: int) -> None:
        self._page = None
        if _libc is None:
            return
        address = _libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address not in (None, _MAP_FAILED):
            self._page = address
            self._unmap = weakref.finalize(self, _libc.munmap, address, mmap.PAGESIZE)  # also without close()

    @property
    def available(self) -> bool:
        return self._page is not None

    def wait(self, expected_seq: int, timeout: float) -> None:
        """Sleep until the write sequence moves past ``expected_seq``, a wake-up, or ``timeout``."""
        if self._page is None:
            return
        spec = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        _libc.syscall(
            _SYS_FUTEX, ctypes.c_void_p(self._page + layout.WRITE_SEQ_OFFSET), _FUTEX_WAIT,
            ctypes.c_uint32(expected_seq & 0xFFFFFFFF), ctypes.byref(spec), None, 0,
        )

    def close(self) -> None:
        if self._page is not None:
            self._unmap()
            self._page = None


class SequenceWaker:
    """A writer's handle to wake parked readers (maps the header page read-only for the address)."""

    def __init__(self, fd: int) -> None:
        self._waiter = SequenceWaiter(fd)

    def wake(self) -> None:
        page = self._waiter._page
        if page is not None:
            _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(page + layout.WRITE_SEQ_OFFSET), _FUTEX_WAKE, _WAKE_ALL, None, None, 0)

    def close(self) -> None:
        self._waiter.close()

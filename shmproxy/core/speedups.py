"""The optional compiled fast paths (``_speedups.c``), and the switch that turns them off.

``setup.py`` builds them where a C compiler is present; without one, or with
``SHMPROXY_PURE_PYTHON=1``, the Python paths (the reference, and equal byte for byte) do the work.
"""

from __future__ import annotations

import os

from . import layout

try:
    from ._speedups import TickReader, TickWriter
except ImportError:  # not built (no C compiler at install time)
    TickReader = TickWriter = None

PURE_PYTHON_ENV = "SHMPROXY_PURE_PYTHON"
# What the compiled code checks it was built for: header size, write_seq offset, slot size, END offset, body size.
LAYOUT_FACTS = (layout.HEADER_SIZE, layout.WRITE_SEQ_OFFSET, layout.SLOT_SIZE, layout.SLOT_END_OFFSET, layout.BODY_SIZE)


def built() -> bool:
    """True when the compiled paths were built at install time."""
    return TickWriter is not None


def enabled() -> bool:
    """True when new publishers and subscribers should use the compiled paths."""
    return built() and os.environ.get(PURE_PYTHON_ENV, "") in ("", "0")


def describe() -> str:
    """Which paths new publishers and subscribers take, for --version and benchmark reports."""
    if not built():
        return "pure Python: compiled fast paths not built"
    return "compiled fast paths" if enabled() else f"pure Python: {PURE_PYTHON_ENV} is set"

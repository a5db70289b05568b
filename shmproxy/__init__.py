"""shmproxy: local market-data fan-out over a POSIX shared-memory broadcast ring.

Public API::

    from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
"""

from ._version import __version__
from .core.errors import (
    CorruptSegmentError,
    ForeignSegmentError,
    RecordError,
    SegmentError,
    SegmentNotFoundError,
    SettingsError,
    ShmProxyError,
)
from .core.publisher import SharedMemoryPublisher
from .core.records import MODE_DEPTH, MODE_LTP, MODE_QUOTE, Tick
from .core.settings import Settings
from .core.subscriber import SharedMemorySubscriber

__all__ = [
    "__version__",
    "SharedMemoryPublisher",
    "SharedMemorySubscriber",
    "Tick",
    "Settings",
    "MODE_LTP",
    "MODE_QUOTE",
    "MODE_DEPTH",
    "ShmProxyError",
    "SettingsError",
    "SegmentError",
    "SegmentNotFoundError",
    "ForeignSegmentError",
    "CorruptSegmentError",
    "RecordError",
]

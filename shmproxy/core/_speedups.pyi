from typing import Any, Callable

from .records import Tick

class TickWriter:
    """The compiled publish path of a RingWriter (``_speedups.c``); see RingWriter.compiled_path."""

    records: int
    def __init__(self, *, buf: memoryview, fd: int, capacity: int, layout: tuple[int, int, int, int, int],
                 names: dict[Any, Any], modes: dict[Any, Any], quote_or_depth: object, mutex: Any,
                 beat: Callable[[int], None], beat_interval_ns: int, wake_gap_ns: int) -> None: ...
    def publish(self, symbol: object, data: object) -> int: ...
    def close(self) -> None: ...

class TickReader:
    """The compiled read path of a SharedMemorySubscriber (``_speedups.c``)."""

    def __init__(self, *, buf: memoryview, capacity: int, layout: tuple[int, int, int, int, int],
                 tick_type: type[Tick]) -> None: ...
    def read(self, cursor: int, limit: int) -> tuple[list[Tick], int]: ...
    def close(self) -> None: ...

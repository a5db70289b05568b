"""Where a compat adapter's ``publish_market_data`` calls go: the ring, counted, never raising.

The sink publishes through the publisher it was given (serve hands over its own), or else opens
the ring named by ``SHM_BUFFER_NAME`` on the first tick. It runs in the broker's threads, so it
never raises: a tick that cannot be recorded is counted and logged once per instrument (or per
topic, when not even the instrument is known), and so is a field that had to be left out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..core.publisher import SharedMemoryPublisher
from .convert import convert
from .topics import ACCOUNT_EVENT_SUFFIXES, instrument_of

log = logging.getLogger("shmproxy.compat")

_REPORT_LIMIT = 10_000  # distinct instruments or topics logged about; bounds memory under garbage topics


class RingSink:
    def __init__(self, owner: str) -> None:
        self.owner = owner  # the adapter's class name, for log lines
        self.published = 0
        self.rejected = 0  # ticks not written: bad topic or data, or the ring failed
        self.ignored = 0  # account events, and ticks after close()
        self.fields_dropped = 0  # fields left out of ticks that were written
        self._last_tick = 0.0
        self._publisher: SharedMemoryPublisher | None = None
        self._owned = False
        self._closed = False
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # broker adapters publish from several threads

    def use(self, publisher: SharedMemoryPublisher | None) -> None:
        """Publish through ``publisher`` (not closed by the sink); None: open the ring on demand."""
        with self._lock:
            self._release()
            self._publisher, self._owned, self._closed = publisher, False, False

    def close(self) -> None:
        """Close the ring if the sink opened it; ticks published afterwards are ignored."""
        with self._lock:
            self._release()
            self._closed = True

    def _release(self) -> None:
        if self._owned and self._publisher is not None:
            self._publisher.close()
        self._publisher, self._owned = None, False

    def publish(self, topic: Any, data: Any) -> None:
        """Record one upstream tick; see the module docstring for what happens to bad input."""
        if isinstance(topic, str) and topic.endswith(ACCOUNT_EVENT_SUFFIXES):
            self._count("ignored")
            return
        where = str(topic)
        try:
            instrument = instrument_of(topic, data)
            where = f"{instrument.exchange}:{instrument.symbol}"
            converted = convert(data)
            publisher = self._target()
            if publisher is None:
                self._count("ignored")
                return
            publisher.publish_market_data(
                instrument.symbol, {**converted.fields, "exchange": instrument.exchange, "mode": instrument.mode}
            )
        except Exception as exc:  # whatever it is, it must not reach the broker's thread
            self._count("rejected")
            self._report("rejected", where, "cannot record a tick of %s: %s", exc)
            return
        with self._lock:
            self.published += 1
            self.fields_dropped += len(converted.dropped)
            self._last_tick = time.monotonic()
        if converted.dropped:
            self._report("dropped", where, "left out fields of %s it cannot convert: %s", ", ".join(converted.dropped))

    def last_tick_age(self) -> float | None:
        return time.monotonic() - self._last_tick if self._last_tick else None

    def stats(self) -> dict[str, int]:
        return {"published": self.published, "rejected": self.rejected, "ignored": self.ignored,
                "fields_dropped": self.fields_dropped}

    def _target(self) -> SharedMemoryPublisher | None:
        """The publisher to write to, opening the ring on first use; None once closed."""
        with self._lock:
            if self._publisher is None and not self._closed:
                self._publisher, self._owned = SharedMemoryPublisher(), True
            return self._publisher

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def _report(self, kind: str, where: str, message: str, detail: Any) -> None:
        with self._lock:
            if (kind, where) in self._reported or len(self._reported) >= _REPORT_LIMIT:
                return
            self._reported.add((kind, where))
        log.warning("%s: " + message, self.owner, where, detail)

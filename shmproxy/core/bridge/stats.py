"""What a bridge reports: a snapshot of its counters, and the latency samples behind it."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from ..bench.stats import latency_summary_us

_SAMPLES = 65_536  # kept for the final percentiles: enough for a stable p99.9
_RECENT = 1024     # the newest samples, for the live status line
_SUMMARY_KEYS = ("samples", "p50_us", "p99_us", "p999_us", "max_us")


@dataclass(frozen=True)
class BridgeStats:
    """Where a bridge stands. ``lost``: for ``out``, ticks the ring overwrote before the bridge read
    them (or that NATS refused); for ``in``, messages missing from their subject's numbering."""

    direction: str  # "out" or "in"
    ring: str
    nats: str
    subject: str  # out: the prefix; in: the filter
    state: str    # connecting, connected, disconnected, closing, closed
    forwarded: int
    lost: int
    reconnects: int
    disconnects: int
    elapsed_s: float
    last_error: str = ""
    format: str | None = None         # out only
    invalid: int | None = None        # in only: messages that were not bridge ticks
    slow_consumer: int | None = None  # in only: of the lost, those nats-py dropped for reading too slowly
    latency_us: dict[str, float] | None = None  # in only: source publish -> written here (clocks must agree)
    recent_latency_ms: float | None = None      # in only: median of the newest samples

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``: every field that applies to this direction."""
        return {k: v for k, v in asdict(self).items() if v is not None and k != "recent_latency_ms"}


class LatencySampler:
    """Latency samples over a whole run in bounded memory: when full, keep every other sample and
    sample half as often from then on, so the kept ones stay spread evenly over the run."""

    def __init__(self) -> None:
        self._samples: list[int] = []
        self._recent: deque[int] = deque(maxlen=_RECENT)
        self._every = 1
        self._seen = 0

    def add(self, ns: int) -> None:
        self._recent.append(ns)
        self._seen += 1
        if self._seen % self._every:
            return
        self._samples.append(ns)
        if len(self._samples) >= _SAMPLES:
            del self._samples[::2]
            self._every *= 2

    def summary_us(self) -> dict[str, float]:
        """Sample count, p50, p99, p99.9 and max in microseconds."""
        summary = latency_summary_us(self._samples)
        return {key: summary[key] for key in _SUMMARY_KEYS}

    def recent_ms(self) -> float | None:
        return median(self._recent) / 1e6 if self._recent else None

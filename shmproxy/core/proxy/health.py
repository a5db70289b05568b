"""serve's health report: is the ring attached, are ticks flowing, who is connected, what was lost.

``ok``: serving. ``degraded``: serving, but clients hold subscriptions and no tick has arrived for
``SHMPROXY_STALE_SECONDS``, or an adapter is not connected. ``down``: the ring is gone or the server
is not accepting connections. Never includes API keys.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

from ..._version import __version__
from ..adapters.base import AdapterStatus
from ..segment import RingInfo
from .hub import Hub

OK, DEGRADED, DOWN = "ok", "degraded", "down"
EXIT_CODES = {OK: 0, DEGRADED: 1, DOWN: 2}


def _age(then_ns: int, now_ns: int) -> float | None:
    return round((now_ns - then_ns) / 1e9, 3) if then_ns else None


def ring_report(info: RingInfo | None, lag: int, laps: int, lost: int) -> dict[str, Any]:
    if info is None:
        return {"attached": False}
    now = time.time_ns()
    return {
        "attached": True, "name": info.name, "generation": info.generation, "capacity": info.capacity,
        "write_seq": info.write_seq, "lag": lag, "laps": laps, "lost": lost,
        "last_write_age_s": _age(info.last_write_ns, now),
        "writers": [{"pid": w.pid, "status": w.status, "heartbeat_age_s": _age(w.heartbeat_ns, now), "records": w.records}
                    for w in info.writers],
    }


def build(hub: Hub, ring: dict[str, Any], adapters: Iterable[AdapterStatus], accepting: bool,
          stale_after: float, started: float) -> dict[str, Any]:
    """The /health document."""
    now = time.monotonic()
    adapters = list(adapters)
    counters = hub.counters
    subscriptions = hub.registry.total
    tick_age = round(now - hub.last_tick, 3) if hub.last_tick is not None else None
    reasons = []
    if not ring.get("attached"):
        reasons.append("ring not attached")
    if not accepting:
        reasons.append("not accepting connections")
    status = DOWN if reasons else OK
    if status == OK:
        if subscriptions and (tick_age is None or tick_age > stale_after):
            reasons.append(f"no tick for over {stale_after:g}s while clients are subscribed")
        if subscriptions and ring.get("writers") is not None and not any(w["status"] == "alive" for w in ring["writers"]):
            reasons.append("no live writer on the ring")
        reasons += [f"adapter {a.name} is {a.state}" for a in adapters if a.state != "connected"]
        status = DEGRADED if reasons else OK
    return {
        "status": status, "reasons": reasons, "version": __version__, "pid": os.getpid(),
        "uptime_s": round(now - started, 1), "ring": ring,
        "feed": {"last_tick_age_s": tick_age, "ticks_in": counters.ticks_in, "stale_after_s": stale_after},
        "adapters": [a.to_dict() for a in adapters],
        "clients": {"connected": len(hub.clients), "authenticated": sum(c.authenticated for c in hub.clients.values())},
        "subscriptions": {"total": subscriptions, "instruments": len(hub.registry.upstream())},
        "counters": {
            "deliveries": counters.deliveries, "frames_encoded": counters.frames_encoded,
            "conflated": hub.conflated(), "dropped": counters.dropped, "slow_closed": counters.slow_closed,
            "auth_failures": counters.auth_failures, "rate_limited": counters.rate_limited,
            "request_errors": counters.errors, "lapped": ring.get("laps", 0), "lost": ring.get("lost", 0),
        },
    }

"""Prometheus metrics for serve, rendered with prometheus_client.

Counters and gauges are read from the same snapshot as /health at scrape time, so the hot path pays
nothing for them; only the fan-out batch time is observed as it happens (one histogram observation
per pump batch, not per tick).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (  # (metric, help, counters key)
    ("shmproxy_deliveries", "Frames written to clients.", "deliveries"),
    ("shmproxy_frames_encoded", "market_data frames encoded (once per tick and mode with subscribers).", "frames_encoded"),
    ("shmproxy_conflated", "Frames replaced by a newer tick before a slow client could take them.", "conflated"),
    ("shmproxy_dropped", "Frames discarded when a stuck client was closed.", "dropped"),
    ("shmproxy_slow_clients_closed", "Clients closed for staying backed up past the ping timeout.", "slow_closed"),
    ("shmproxy_auth_failures", "Failed authentications.", "auth_failures"),
    ("shmproxy_rate_limited", "Client requests refused for exceeding the request rate.", "rate_limited"),
    ("shmproxy_request_errors", "Client requests answered with an error frame.", "request_errors"),
    ("shmproxy_ring_lost", "Ring records the pump missed because writers lapped it.", "lost"),
    ("shmproxy_ring_laps", "Times the pump was lapped.", "lapped"),
)


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        health = self._snapshot()
        counters = health["counters"]
        ring = health["ring"]
        for name, help_text, key in _COUNTERS:
            yield CounterMetricFamily(name, help_text, value=counters[key])
        yield CounterMetricFamily("shmproxy_ticks_in", "Ticks read from the ring.", value=health["feed"]["ticks_in"])
        yield _gauge("shmproxy_up", "1 when serve is ok or degraded, 0 when down.", health["status"] != "down")
        yield _gauge("shmproxy_clients", "Connected clients.", health["clients"]["connected"])
        yield _gauge("shmproxy_subscriptions", "Client subscriptions (client, instrument, mode).", health["subscriptions"]["total"])
        yield _gauge("shmproxy_ring_attached", "1 when the ring is attached.", ring.get("attached", False))
        yield _gauge("shmproxy_ring_write_sequence", "The ring's write sequence.", ring.get("write_seq", 0))
        yield _gauge("shmproxy_ring_lag", "Records published but not yet read by the pump.", ring.get("lag", 0))
        age = health["feed"]["last_tick_age_s"]
        yield _gauge("shmproxy_last_tick_age_seconds", "Seconds since the last tick (-1: none yet).", -1 if age is None else age)
        connected = GaugeMetricFamily("shmproxy_adapter_connected", "1 when the adapter is connected.", labels=["adapter"])
        reconnects = CounterMetricFamily("shmproxy_adapter_reconnects", "Adapter reconnections.", labels=["adapter"])
        for adapter in health["adapters"]:
            connected.add_metric([adapter["name"]], adapter["state"] == "connected")
            reconnects.add_metric([adapter["name"]], adapter["reconnects"])
        yield connected
        yield reconnects
        yield from _worker_metrics(health.get("service", {}).get("workers", []))


def _worker_metrics(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    """With serve --workers: every worker's state, as its latest report to the supervisor says."""
    if not workers:
        return
    families = {
        "alive": GaugeMetricFamily("shmproxy_worker_up", "1 when the worker process is alive.", labels=["worker"]),
        "clients": GaugeMetricFamily("shmproxy_worker_clients", "Clients connected to the worker.", labels=["worker"]),
        "deliveries": CounterMetricFamily("shmproxy_worker_deliveries", "Frames the worker wrote.", labels=["worker"]),
        "restarts": CounterMetricFamily("shmproxy_worker_restarts", "Times the worker was restarted.", labels=["worker"]),
    }
    for worker in workers:
        for key, family in families.items():
            family.add_metric([str(worker["worker"])], float(worker[key]))
    yield from families.values()


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))


class ProxyMetrics:
    """A private registry (several servers may live in one process, e.g. in tests)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_seconds = Histogram(
            "shmproxy_fanout_batch_seconds", "Time to encode and write one pump batch to all its clients.",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Small statistics helpers for benchmark results."""

from __future__ import annotations


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_summary_us(samples_ns: list[int]) -> dict[str, float]:
    """p50/p99/p99.9/max in microseconds, and the sample count."""
    values = sorted(samples_ns)
    return {
        "samples": len(values),
        "p50_us": percentile(values, 0.50) / 1000,
        "p99_us": percentile(values, 0.99) / 1000,
        "p999_us": percentile(values, 0.999) / 1000,
        "max_us": (values[-1] / 1000) if values else 0.0,
    }

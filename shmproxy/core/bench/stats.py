"""Small statistics helpers for benchmark results."""

from __future__ import annotations

# Where the latency distribution is sampled: dense in the tail, where transports differ.
DISTRIBUTION_FRACTIONS = (
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995,
    0.9999, 1.0,
)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_summary_us(samples_ns: list[int]) -> dict:
    """p50/p99/p99.9/max in microseconds, the sample count, and the distribution as [fraction, us] pairs."""
    values = sorted(samples_ns)
    return {
        "samples": len(values),
        "p50_us": percentile(values, 0.50) / 1000,
        "p99_us": percentile(values, 0.99) / 1000,
        "p999_us": percentile(values, 0.999) / 1000,
        "max_us": (values[-1] / 1000) if values else 0.0,
        "distribution": [[f, percentile(values, f) / 1000] for f in DISTRIBUTION_FRACTIONS] if values else [],
    }

"""End-to-end benchmark: python benchmarks/e2e.py [--quick] [--json]

Publisher -> ring -> shmproxy serve -> 100 WebSocket clients (2 client processes), 50 symbols, every
client subscribed to every symbol at Quote: paced at 1,000 ticks/s (100,000 deliveries/s) and flat
out; then serve's idle CPU with 10 clients connected. Prints deliveries/s, publish -> client latency,
serve CPU and RSS. The same core as `shmproxy bench e2e`, which also runs an upstream-style ZeroMQ
proxy beside it (--compare-zmq). A benchmark, not a test: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json

from shmproxy.core.bench import e2e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    clients, seconds = (10, 1.0) if args.quick else (100, 5.0)
    results = {
        "paced": e2e.fan_out(clients=clients, seconds=seconds, rate=1000.0),
        "full_rate": e2e.fan_out(clients=clients, seconds=seconds, rate=None),
        "idle": e2e.idle_cpu(clients=10, seconds=1.0 if args.quick else 3.0),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name in ("paced", "full_rate"):
        r = results[name]
        print(f"{name:>9}: {r['published_per_second']:>9,.0f} ticks/s -> {r['deliveries_per_second']:>10,.0f} deliveries/s "
              f"({r['deliveries']:,} of {r['expected_deliveries']:,}); latency p50 {r['p50_us']:,.0f} us "
              f"p99 {r['p99_us']:,.0f} us; serve CPU {r['proxy_cpu_percent']:.0f}%, RSS {r['proxy_rss_mib']:.0f} MiB")
    idle = results["idle"]
    print(f"     idle: serve CPU {idle['serve_cpu_percent']:.2f}% with {idle['clients']} clients connected")


if __name__ == "__main__":
    main()

"""Ring benchmark: python benchmarks/ring.py [--quick] [--json]

Prints publish rate, delivered throughput with 1 and 3 reader processes, hop latency at a paced
20,000 ticks/s with a polling reader (the ring's floor) and a blocking one, and a parked reader's
wake-up latency and idle CPU use. The same core as `shmproxy bench ring`, which also compares
with ZeroMQ (--compare-zmq). A benchmark, not a test: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from shmproxy.core.bench import hop
from shmproxy.core.bench.ring import RingTransport, ring_transport
from shmproxy.core.bench.suite import WAKEUP_RATE, machine


def on_ring(measure: Callable[[RingTransport], dict[str, Any]]) -> dict[str, Any]:
    with ring_transport() as transport:
        return measure(transport)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 3.0
    results = {
        "machine": machine(),
        "publish": on_ring(lambda t: hop.publish_rate(t, seconds)),
        "throughput_1_reader": on_ring(lambda t: hop.throughput(t, 1, seconds)),
        "throughput_3_readers": on_ring(lambda t: hop.throughput(t, 3, seconds)),
        "hop_latency_polling": on_ring(lambda t: hop.latency(t, 20_000, seconds, spin=True)),
        "hop_latency_blocking": on_ring(lambda t: hop.latency(t, 20_000, seconds)),
        "wakeup": on_ring(lambda t: hop.latency(t, WAKEUP_RATE, seconds)),
        "idle": on_ring(lambda t: hop.idle_cpu(t, seconds)),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"publish_market_data (Quote):       {results['publish']['per_second']:>12,.0f} calls/s")
    for key in ("throughput_1_reader", "throughput_3_readers"):
        c = results[key]
        print(f"delivered, {c['readers']} reader(s):           {c['per_second']:>12,.0f} ticks/s "
              f"(publish {c['publish_per_second']:,.0f}/s, lost at most {c['lost_max']:,})")
    for key in ("hop_latency_polling", "hop_latency_blocking"):
        h = results[key]
        print(f"hop latency @ {h['rate']:,.0f}/s {key.rsplit('_', 1)[1]:>8}: p50 {h['p50_us']:.1f} us  "
              f"p99 {h['p99_us']:.1f} us  p99.9 {h['p999_us']:.1f} us  (reader CPU {h['reader_cpu_percent']:.0f}%)")
    w = results["wakeup"]
    print(f"parked reader: wake p50 {w['p50_us']:.0f} us  p99 {w['p99_us']:.0f} us; "
          f"idle CPU {results['idle']['cpu_percent']:.3f}%")


if __name__ == "__main__":
    main()

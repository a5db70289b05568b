"""Ring benchmark: python benchmarks/ring.py [--quick]

Prints publish rate, publish + consume rate with 1 and 3 reader processes, hop latency at a paced
20,000 ticks/s with a polling reader, and a parked reader's wake-up latency and idle CPU use.
A benchmark, not a test: numbers depend on the machine; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

from shmproxy.core.bench import ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    n = 30_000 if args.quick else 300_000
    seconds = 0.5 if args.quick else 3.0
    results = {
        "machine": {"python": sys.version.split()[0], "cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "publish": ring.publish_rate(n),
        "consume_1_reader": ring.publish_and_consume(1, n),
        "consume_3_readers": ring.publish_and_consume(3, n),
        "hop_latency_polling": ring.hop_latency(20_000, seconds, spin=True),
        "parked_reader": ring.parked_reader(seconds),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    p = results["publish"]
    print(f"publish_market_data (Quote):       {p['per_second']:>12,.0f} calls/s")
    for key in ("consume_1_reader", "consume_3_readers"):
        c = results[key]
        print(
            f"publish + consume, {c['readers']} reader(s):   {c['consume_per_second']:>12,.0f} records/s "
            f"(publish {c['publish_per_second']:,.0f}/s, lost at most {c['lost_max']:,})"
        )
    h = results["hop_latency_polling"]
    print(f"hop latency @ {h['rate']:,.0f}/s polling:   p50 {h['p50_us']:.1f} us  p99 {h['p99_us']:.1f} us  "
          f"p99.9 {h['p999_us']:.1f} us")
    k = results["parked_reader"]
    print(f"parked reader: wake p50 {k['p50_us']:.0f} us  p99 {k['p99_us']:.0f} us; idle CPU {k['idle_cpu_percent']:.2f}%")


if __name__ == "__main__":
    main()

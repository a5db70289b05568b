"""``shmproxy bench``: which measurements run, in which order, and the figures drawn from them.

A run is a list of steps, each one measurement on one target: the shared-memory ring ("shm") and,
with the ZeroMQ baseline, ZeroMQ over ipc and tcp ("zmq_ipc", "zmq_tcp"). Each measurement runs
on every target back to back, so a machine that gets busier mid-run skews one figure, not one side.
The report (a JSON-ready dict) holds the machine, the options, every raw result and the figures:
each figure's value per target and shmproxy's advantage over each baseline.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from importlib import metadata
from typing import Any, Callable, Iterator, Optional

from .. import speedups
from . import e2e, hop
from .extras import require
from .ring import ring_transport

WAKEUP_RATE = 50.0  # ticks/s: sparse enough that the reader is parked when each one comes


@dataclass(frozen=True)
class Options:
    duration: float = 2.0  # seconds each measurement publishes (or idles)
    clients: int = 100
    symbols: int = 50
    rate: float = 1000.0  # end-to-end ticks/s, each to every client
    hop_rate: float = 20_000.0  # ticks/s for the hop latency
    workers: int = 2  # serve --workers for the scale-out figure (1: skip it)


@dataclass(frozen=True)
class Step:
    section: str
    measurement: str
    target: str
    label: str
    run: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    higher_is_better: bool
    section: str
    measurement: str
    field: str


def plan(which: str, options: Options, compare_zmq: bool) -> list[Step]:
    """The steps of a run: ``which`` is "ring" (the hop from a publisher to reader processes), "e2e" or "all"."""
    if compare_zmq:
        require("zmq", "--compare-zmq")
    steps: list[Step] = []
    if which in ("ring", "all"):
        steps += _hop_steps(options, compare_zmq)
    if which in ("e2e", "all"):
        steps += _e2e_steps(options, compare_zmq)
    return steps


def _hop_steps(o: Options, compare_zmq: bool) -> list[Step]:
    transports: dict[str, Callable[[], Any]] = {"shm": ring_transport}
    if compare_zmq:
        from .zmq_baseline import zmq_transport
        transports.update(zmq_ipc=partial(zmq_transport, "ipc"), zmq_tcp=partial(zmq_transport, "tcp"))
    measurements = {
        "publish": ("publish rate", partial(hop.publish_rate, seconds=o.duration)),
        "throughput_1": ("hop throughput, 1 reader", partial(hop.throughput, readers=1, seconds=o.duration)),
        "throughput_3": ("hop throughput, 3 readers", partial(hop.throughput, readers=3, seconds=o.duration)),
        "latency": (f"hop latency at {o.hop_rate:,.0f} ticks/s", partial(hop.latency, rate=o.hop_rate, seconds=o.duration)),
        "latency_polling": (f"hop latency at {o.hop_rate:,.0f} ticks/s, polling",
                            partial(hop.latency, rate=o.hop_rate, seconds=o.duration, spin=True)),
        "wakeup": ("idle reader wake-up", partial(hop.latency, rate=WAKEUP_RATE, seconds=o.duration)),
        "idle": ("idle reader CPU", partial(hop.idle_cpu, seconds=o.duration)),
    }
    return [Step("hop", name, target, f"{label} ({target})", partial(_on_transport, open_transport, measure))
            for name, (label, measure) in measurements.items() for target, open_transport in transports.items()]


def _on_transport(open_transport: Callable[[], Any], measure: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    with open_transport() as transport:
        return measure(transport)


def _e2e_steps(o: Options, compare_zmq: bool) -> list[Step]:
    proxies: dict[str, Callable[..., dict[str, Any]]] = {"shm": e2e.fan_out}
    if compare_zmq:
        from . import zmq_baseline
        proxies["zmq_tcp"] = zmq_baseline.fan_out
    runs = {"paced": (f"end to end at {o.rate:,.0f} ticks/s", o.rate), "flat_out": ("end to end, publisher flat out", None)}
    steps = [Step("e2e", name, target, f"{label} ({target})",
                  partial(fan_out, clients=o.clients, symbols=o.symbols, seconds=o.duration, rate=rate))
             for name, (label, rate) in runs.items() for target, fan_out in proxies.items()]
    if o.workers > 1:  # scale-out: the same flat-out run with serve --workers
        steps.append(Step("e2e", "flat_out_workers", "shm", f"end to end, publisher flat out, {o.workers} serve workers",
                          partial(e2e.fan_out, clients=o.clients, symbols=o.symbols, seconds=o.duration, rate=None,
                                  workers=o.workers)))
    return steps


def run(steps: list[Step], options: Options, on_step: Optional[Callable[[Step], None]] = None) -> dict[str, Any]:
    """Run ``steps`` in order (calling ``on_step`` before each) and return the report."""
    started = time.time()
    report: dict[str, Any] = {"machine": machine(), "options": asdict(options), "results": {}}
    for step in steps:
        if on_step:
            on_step(step)
        report["results"].setdefault(step.section, {}).setdefault(step.measurement, {})[step.target] = step.run()
    report["seconds"] = time.time() - started
    report["figures"] = figures(report["results"], options)
    return report


def figure_list(o: Options) -> list[Figure]:
    """Every figure the table shows, in order; each names the result field it reads."""
    paced = f"at {o.rate:,.0f} ticks/s x {o.clients} clients"
    return [
        Figure("publish rate, nobody reading", "calls/s", True, "hop", "publish", "per_second"),
        Figure("hop throughput, 1 reader", "ticks/s", True, "hop", "throughput_1", "per_second"),
        Figure("hop throughput, 3 readers (slowest)", "ticks/s", True, "hop", "throughput_3", "per_second"),
        *(Figure(f"hop latency {p} at {o.hop_rate:,.0f} ticks/s, {how} reader", "us", False, "hop", measurement, f"{f}_us")
          for how, measurement in (("blocking", "latency"), ("polling", "latency_polling"))
          for p, f in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"))),
        *(Figure(f"idle reader wake-up {p}", "us", False, "hop", "wakeup", f"{p}_us") for p in ("p50", "p99")),
        Figure("idle reader CPU", "%", False, "hop", "idle", "cpu_percent"),
        Figure(f"end-to-end deliveries/s {paced}", "deliveries/s", True, "e2e", "paced", "deliveries_per_second"),
        *(Figure(f"tick-to-client latency {p} {paced}", "us", False, "e2e", "paced", f"{p}_us") for p in ("p50", "p99")),
        Figure(f"proxy CPU {paced}", "%", False, "e2e", "paced", "proxy_cpu_percent"),
        Figure("proxy CPU per delivery", "us", False, "e2e", "paced", "proxy_cpu_us_per_delivery"),
        Figure("proxy RSS", "MiB", False, "e2e", "paced", "proxy_rss_mib"),
        Figure(f"end-to-end deliveries/s, publisher flat out, {o.clients} clients", "deliveries/s", True,
               "e2e", "flat_out", "deliveries_per_second"),
        Figure(f"the same with {o.workers} serve workers", "deliveries/s", True,
               "e2e", "flat_out_workers", "deliveries_per_second"),
        Figure(f"serve CPU with {o.workers} workers, publisher flat out", "%", False,
               "e2e", "flat_out_workers", "proxy_cpu_percent"),
    ]


def figures(results: dict[str, Any], options: Options) -> list[dict[str, Any]]:
    """The figures of ``results``: value per target, and shmproxy's advantage over each other target.

    An advantage above 1 means shmproxy is better: its value over the baseline's for rates, the
    baseline's over its own for times, CPU and memory. None when the divisor is 0.
    """
    rows = []
    for figure in figure_list(options):
        measured = results.get(figure.section, {}).get(figure.measurement)
        if not measured:
            continue
        values = {target: result[figure.field] for target, result in measured.items()}
        rows.append({**asdict(figure), "values": values,
                     "advantage": {t: _advantage(values["shm"], v, figure.higher_is_better) for t, v in values.items() if t != "shm"}})
    return rows


def _advantage(ours: float, theirs: float, higher_is_better: bool) -> float | None:
    over, under = (ours, theirs) if higher_is_better else (theirs, ours)
    return over / under if under else None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": sys.version.split()[0],
        "platform": platform.platform(), "load_average": os.getloadavg(),
        "versions": dict(_versions()), "paths": speedups.describe(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def _versions() -> Iterator[tuple[str, str]]:
    for dist in ("shmproxy", "websockets", "pyzmq"):
        try:
            yield dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if "zmq" in sys.modules:
        yield "libzmq", sys.modules["zmq"].zmq_version()

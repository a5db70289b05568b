"""Latency distributions of a bench report, shared memory against ZeroMQ, as a PNG (matplotlib).

One panel per latency measurement in the report, each target one line: how many ticks took longer
than a given latency (a complementary CDF, both axes logarithmic), so medians and tails both show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAMES = {"shm": "shmproxy (shared memory)", "zmq_ipc": "ZeroMQ ipc", "zmq_tcp": "ZeroMQ tcp"}
_COLOURS = {"shm": "tab:green", "zmq_ipc": "tab:orange", "zmq_tcp": "tab:red"}


def _panels(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    o, results = report["options"], report["results"]
    wanted = [
        ("hop", "latency", f"hop: {o['hop_rate']:,.0f} ticks/s, blocking reader"),
        ("hop", "latency_polling", f"hop: {o['hop_rate']:,.0f} ticks/s, polling reader"),
        ("hop", "wakeup", "hop: idle reader waking for a sparse tick"),
        ("e2e", "paced", f"end to end: {o['rate']:,.0f} ticks/s to {o['clients']} clients"),
    ]
    return [(title, results[s][m]) for s, m, title in wanted if m in results.get(s, {})]


def draw(report: dict[str, Any], path: Path) -> None:
    """Write the report's latency distributions to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = _panels(report)
    figure, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.8), squeeze=False)
    for ax, (title, by_target) in zip(axes[0], panels):
        for target, result in by_target.items():
            floor = 1.0 / max(1, result["samples"])  # the slowest tick: finer fractions are not resolved
            points = [(us, max(1.0 - f, floor)) for f, us in result["distribution"] if 1.0 - f >= floor or f == 1.0]
            if points:
                ax.step(*zip(*points), where="post", label=NAMES[target], color=_COLOURS[target])
        ax.set(xscale="log", yscale="log", title=title, xlabel="latency", ylabel="fraction of ticks slower")
        low, high = ax.get_xlim()
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if high / low > 300 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda us, _: _duration(us)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.title.set_fontsize(9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = report["machine"]
    figure.suptitle(f"shmproxy bench: {m['cpu_model']}, {m['cpus']} cores, Python {m['python']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _duration(us: float) -> str:
    """A tick label: 50 µs, 2 ms, 1.5 s."""
    return f"{us:g} µs" if us < 1e3 else f"{us / 1e3:g} ms" if us < 1e6 else f"{us / 1e6:g} s"

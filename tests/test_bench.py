"""``shmproxy bench`` end to end with tiny sizes: well-formed JSON, every figure measured, nothing left behind.

No timing assertions: a benchmark's numbers belong to the machine; these tests check that every
figure is there and positive, that the ZeroMQ baseline and the plot work, and the missing-extra message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shmproxy.core import speedups

from conftest import SHM, run_cli

TINY = ("--duration", "0.2", "--clients", "4", "--symbols", "5", "--rate", "200", "--hop-rate", "2000")
HOP = {("publish", "per_second"), ("throughput_1", "per_second"), ("throughput_3", "per_second"),
       ("latency", "p50_us"), ("latency", "p99_us"), ("latency", "p999_us"), ("latency_polling", "p50_us"),
       ("latency_polling", "p99_us"), ("latency_polling", "p999_us"), ("wakeup", "p50_us"),
       ("wakeup", "p99_us"), ("idle", "cpu_percent")}
E2E = {("paced", "deliveries_per_second"), ("paced", "p50_us"), ("paced", "p99_us"), ("paced", "proxy_cpu_percent"),
       ("paced", "proxy_cpu_us_per_delivery"), ("paced", "proxy_rss_mib"), ("flat_out", "deliveries_per_second"),
       ("flat_out_workers", "deliveries_per_second"), ("flat_out_workers", "proxy_cpu_percent")}
SHM_ONLY = {"flat_out_workers"}  # serve --workers has no ZeroMQ counterpart


def bench_rings() -> set[str]:
    return {p.name for p in SHM.glob("shmproxy_bench_*")}


def run_bench(*args: str, **kwargs) -> dict:
    before = bench_rings()
    result = run_cli("bench", "all", "--json", *TINY, *args, timeout=120, **kwargs)
    assert result.returncode == 0, result.stderr
    assert bench_rings() <= before, "the benchmark left a ring behind"
    return json.loads(result.stdout)


def check_figures(report: dict, hop_targets: set[str], e2e_targets: set[str]) -> None:
    measured = {(f["section"], f["measurement"], f["field"]): f for f in report["figures"]}
    assert set(measured) == {("hop", *k) for k in HOP} | {("e2e", *k) for k in E2E}
    for (section, measurement, _), figure in measured.items():
        expected = hop_targets if section == "hop" else ({"shm"} if measurement in SHM_ONLY else e2e_targets)
        assert set(figure["values"]) == expected, figure["label"]
        for target, value in figure["values"].items():
            assert value > 0, f"{figure['label']} ({target}) = {value}"
        assert all(ratio > 0 for ratio in figure["advantage"].values()), figure["label"]
        assert figure["unit"] and figure["label"]
    assert report["machine"]["cpus"] > 0 and report["options"]["clients"] == 4
    assert report["machine"]["paths"] == speedups.describe()  # which paths the figures are for


def test_bench_with_zeromq_baseline_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "latency.png"
    report = run_bench("--compare-zmq", "--plot", str(plot))
    check_figures(report, {"shm", "zmq_ipc", "zmq_tcp"}, {"shm", "zmq_tcp"})
    assert report["machine"]["versions"]["pyzmq"]
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_shared_memory_only() -> None:
    report = run_bench()
    check_figures(report, {"shm"}, {"shm"})
    assert all(figure["advantage"] == {} for figure in report["figures"])


@pytest.mark.parametrize("module, option", [("zmq", "--compare-zmq"), ("matplotlib", "--plot")])
def test_missing_extra_is_one_line(tmp_path: Path, module: str, option: str) -> None:
    (tmp_path / f"{module}.py").write_text("raise ImportError('simulated: not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    args = ["--compare-zmq"] if option == "--compare-zmq" else ["--plot", str(tmp_path / "x.png")]
    result = run_cli("bench", *args, *TINY, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "pip install 'shmproxy[bench]'" in lines[0], result.stderr


def test_bad_option_is_refused() -> None:
    result = run_cli("bench", "--duration", "0")
    assert result.returncode == 2 and "--duration" in result.stderr

"""Shared fixtures: unique ring names in the real /dev/shm, removed after each test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import settings

from shmproxy.core.speedups import PURE_PYTHON_ENV

SHM = Path("/dev/shm")

# CI runs every property test on a fixed set of examples, so a red build is reproducible (and
# never a coin toss); developers' runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def ring_name() -> str:
    """A fresh ring name; whatever the test created under it is removed afterwards."""
    name = f"shmproxy_test_{uuid.uuid4().hex[:12]}"
    yield name
    (SHM / name).unlink(missing_ok=True)


@pytest.fixture(params=["compiled", "python"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the compiled fast paths and again on the Python paths (SHMPROXY_PURE_PYTHON=1).

    Where the compiled paths were not built, the first run is the Python path too.
    """
    if request.param == "python":
        monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    else:
        monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)
    return request.param


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop any shmproxy/OpenAlgo settings the developer's shell may carry."""
    for key in list(os.environ):
        if key.startswith(("SHM_", "WEBSOCKET_", "WS_", "MAX_", "SHMPROXY_", "ZMQ_", "ENABLE_")):
            monkeypatch.delenv(key)


def run_python(code: str, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a real, separate process)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def run_cli(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed ``shmproxy`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "shmproxy", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def wait_for(condition: Callable[[], object], timeout: float = 15, what: str = "condition",
             interval: float = 0.02) -> object:
    """Poll ``condition`` until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value

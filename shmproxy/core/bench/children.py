"""Benchmark child processes that never outlive the benchmark.

Readers, WebSocket client processes and proxies are started from here: each asks the kernel to
kill it when the benchmark process dies (``PR_SET_PDEATHSIG``), so even a benchmark killed with
SIGKILL leaves nothing running; the normal path joins them and kills any that overstay.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Iterable

CTX = mp.get_context("fork")  # children inherit the callables they run: closures and bound methods work
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # bound once: preexec_fn must not load libraries


def die_with_parent(parent: int) -> None:
    """In a child: be killed when process ``parent`` exits (or exit now if it already has)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _bootstrap(parent: int, target: Callable[..., Any], args: tuple) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    target(*args)


def start(target: Callable[..., Any], *args: Any) -> BaseProcess:
    """Run ``target(*args)`` in a forked child that dies with this process."""
    proc = CTX.Process(target=_bootstrap, args=(os.getpid(), target, args), daemon=True)
    proc.start()
    return proc


def stop(procs: Iterable[BaseProcess], timeout: float = 5.0) -> None:
    """Wait up to ``timeout`` seconds in all for ``procs`` to end, then kill the rest."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()

"""Reconnect delays: exponential back-off with full jitter, so many clients never retry in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """A delay drawn from [first/2, min(cap, first * 2**attempt)], growing with each call."""
        ceiling = min(self.cap, self.first * (2 ** self.attempt))
        self.attempt += 1
        return self._rng.uniform(min(self.first / 2, ceiling), ceiling)

    def reset(self) -> None:
        self.attempt = 0

"""API keys verified against OpenAlgo's database without its slowness reaching serve's event loop.

OpenAlgo hashes keys with Argon2, slow by design (0.1-0.2 s a check on a 2-core machine). So a check
runs in a worker thread, one at a time (it never takes both cores from the ring pump), clients
presenting the same key at once share one check, and results are cached under a keyed SHA-256 digest
of the key (never the key itself): an accepted key for ``ttl_s`` seconds, so a key regenerated in
OpenAlgo is refused at most that long after, and a refused one for a few seconds, so a client retrying
a wrong key costs one check per few seconds rather than one per attempt (serve's hub slows and closes
such clients too).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from typing import Callable

from .database import OpenAlgoUnavailable

log = logging.getLogger("shmproxy.auth")

REFUSED_TTL_S = 5.0
MAX_ENTRIES = 10_000
_MISS = object()


class ExpiringCache:
    """Values with a time to live each; bounded, the oldest entries dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[bytes, tuple[float, object]] = {}
        self._max = max_entries
        self._clock = clock

    def get(self, key: bytes) -> object:
        """The value, or ``_MISS`` when absent or expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return _MISS
        return entry[1]

    def put(self, key: bytes, value: object, ttl: float) -> None:
        self._entries.pop(key, None)  # re-inserted last: insertion order is age order
        self._entries[key] = (self._clock() + ttl, value)
        while len(self._entries) > self._max:
            del self._entries[next(iter(self._entries))]


class CachedKeyVerifier:
    """``await verify(api_key)`` -> the key owner's user id, or None; ``lookup`` does the slow check."""

    def __init__(self, lookup: Callable[[str], str | None], ttl_s: float, refused_ttl_s: float = REFUSED_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self.ttl_s = ttl_s
        self._refused_ttl_s = min(refused_ttl_s, ttl_s)
        self._cache = ExpiringCache(clock=clock)
        self._digest_key = secrets.token_bytes(32)  # per process: the digests mean nothing outside it
        self._pending: dict[bytes, asyncio.Future[str | None]] = {}
        self._one_at_a_time = asyncio.Semaphore(1)
        self.checks = 0  # slow checks run (the cache's effect, for tests and metrics)

    async def verify(self, api_key: str) -> str | None:
        digest = hmac.new(self._digest_key, api_key.encode(), hashlib.sha256).digest()
        cached = self._cache.get(digest)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        pending = self._pending.get(digest)
        if pending is None:
            pending = self._pending[digest] = asyncio.ensure_future(self._check(api_key, digest))
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        return await asyncio.shield(pending)  # a client leaving mid-check must not cancel it for the others

    async def _check(self, api_key: str, digest: bytes) -> str | None:
        async with self._one_at_a_time:
            self.checks += 1
            try:
                owner = await asyncio.to_thread(self._lookup, api_key)
            except OpenAlgoUnavailable as exc:
                log.warning("API key refused: %s", exc)
                return None  # not cached: the next attempt asks the database again
        self._cache.put(digest, owner, self.ttl_s if owner is not None else self._refused_ttl_s)
        return owner

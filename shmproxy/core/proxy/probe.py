"""Fetching a running serve's /health (what ``shmproxy status`` shows)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ..errors import ShmProxyError
from .health import DOWN


class ProbeError(ShmProxyError):
    exit_code = 2  # the same code as "down": nothing answered


def health_url(base: str) -> str:
    """``http://host:port`` (or ``ws://...``) -> ``http://host:port/health``."""
    base = base.strip().rstrip("/")
    if base.startswith("ws://"):
        base = "http://" + base[len("ws://"):]
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    return base if base.endswith("/health") else base + "/health"


def fetch_health(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """The /health document; a serve that answers 503 is reported as down, not as an error."""
    target = health_url(url)
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return json.load(exc)
        raise ProbeError(f"serve at {target} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProbeError(f"cannot reach serve at {target}: {reason}") from None
    except ValueError:
        raise ProbeError(f"{target} did not answer with JSON: is that a shmproxy serve?") from None


def unreachable(message: str) -> dict[str, Any]:
    """A minimal report for a serve that did not answer."""
    return {"status": DOWN, "reasons": [message]}

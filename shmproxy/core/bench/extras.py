"""Optional packages the benchmark needs for some options, and the one-line error when one is missing."""

from __future__ import annotations

import importlib

from ..errors import ShmProxyError

_PACKAGES = {"zmq": "pyzmq", "matplotlib": "matplotlib"}


class MissingExtraError(ShmProxyError):
    """An option needs a package from an optional extra that is not installed."""

    exit_code = 2


def require(module: str, option: str) -> None:
    """Import ``module`` now, or raise :class:`MissingExtraError` naming ``option`` and the extra to install."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{option} needs {_PACKAGES[module]}, from the optional extra 'bench': pip install 'shmproxy[bench]'"
        ) from None

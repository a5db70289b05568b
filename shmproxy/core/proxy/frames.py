"""Pre-built WebSocket frames written straight to a client's transport.

The fan-out encodes a tick once, wraps it in a server-to-client text frame once, and writes the
same bytes to every subscriber, joined with that client's other pending frames into a single
``transport.write`` per batch. This bypasses the websockets library's ``send()`` path, which is only
safe under the invariant this module owns (checked by :func:`writable`):

- the connection is OPEN (never after a close frame, never during the handshake);
- no extension is negotiated (serve disables permessage-deflate, whose per-connection compressor
  state a raw frame would corrupt);
- every frame is complete and unfragmented: the library also writes only whole frames
  (``Connection.send_data``), so raw frames and library frames interleave only at frame boundaries.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.protocol import State

_FIN_TEXT = 0x81  # FIN bit + opcode 1 (text); server frames are never masked (RFC 6455 5.1)
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # ASCII-escaped: echoed client strings may hold lone surrogates


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame carrying ``payload`` (UTF-8)."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN_TEXT, length))
    elif length < 65536:
        header = bytes((_FIN_TEXT, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((_FIN_TEXT, 127)) + length.to_bytes(8, "big")
    return header + payload


def json_frame(message: dict[str, Any]) -> bytes:
    """A text frame carrying ``message`` as compact JSON."""
    return text_frame(_dumps(message).encode())


def writable(connection: Any) -> bool:
    """True when raw frames may be written to ``connection`` (see the module docstring)."""
    protocol = connection.protocol
    return protocol.state is State.OPEN and not protocol.extensions and not connection.transport.is_closing()

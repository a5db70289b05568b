"""The OpenAlgo-compatible WebSocket proxy: protocol logic, subscriptions, fan-out and the server.

Protocol logic (``protocol``, ``registry``, ``session``) is pure and unit-testable; ``server`` only
moves bytes between the websockets library, the ring pump and the fan-out.
"""

"""Broker adapters: feeds that run inside serve and publish into the ring on demand.

See :mod:`.base` for the interface, :mod:`.registry` for how adapters are found (the
``shmproxy.adapters`` entry-point group) and :mod:`.manager` for how serve drives them.
"""

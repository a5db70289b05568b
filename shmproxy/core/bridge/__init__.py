"""``shmproxy bridge``: carry a ring to other hosts through NATS, and back into a ring there.

``bridge out`` follows a local ring and publishes each tick on ``ticks.<EXCHANGE>.<SYMBOL>.<MODE>``;
``bridge in`` subscribes (optionally to a subset, by subject wildcard) and republishes into its own
local ring, where serve, tail and scripts read it as usual. NATS does the networking, fan-out to
any number of hosts and reconnection; this package only converts, numbers and counts. The pure parts
(:mod:`.subjects`, :mod:`.codec`, :mod:`.streams`) need no NATS client; the runners need nats-py
(``pip install 'shmproxy[bridge]'``). docs/scaling.md describes the wire format and when to use it.
"""

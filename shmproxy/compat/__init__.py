"""OpenAlgo adapter compatibility: upstream broker adapters publish into the ring unchanged.

Port an upstream adapter by changing one import::

    from shmproxy.compat import BaseBrokerWebSocketAdapter   # was: from websocket_proxy.base_adapter import ...

and run it inside serve with one line, registered as an entry point or in SHMPROXY_EXTRA_ADAPTERS::

    MyBrokerAdapter = serve_adapter(MyBrokerWebSocketAdapter, name="mybroker")

See docs/adapters.md. Modules: :mod:`.base` (the upstream interface), :mod:`.topics` (topic parsing),
:mod:`.convert` (upstream data -> record fields), :mod:`.sink` (publishing, counted),
:mod:`.threaded` (the asyncio wrapper serve runs), :mod:`.worker` (its call thread).
"""

from ..core.adapters.base import Setting
from .base import BaseBrokerWebSocketAdapter
from .threaded import ThreadedAdapter, serve_adapter
from .topics import Instrument, TopicError, parse_topic

__all__ = ["BaseBrokerWebSocketAdapter", "serve_adapter", "Setting", "ThreadedAdapter", "parse_topic", "Instrument",
           "TopicError"]

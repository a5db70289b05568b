"""Publish a few ticks into a ring and read them back: the Python API in twenty lines.

Run: python examples/quickstart.py
"""

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber

with SharedMemoryPublisher(buffer_name="quickstart_demo") as pub, SharedMemorySubscriber(
    buffer_name="quickstart_demo", start="latest"
) as sub:
    pub.publish_market_data("NSE:RELIANCE", {"mode": "LTP", "ltp": 2950.5})
    pub.publish_market_data("INFY", {"exchange": "NSE", "mode": 2, "ltp": 1501.0, "close": 1490.0, "volume": 1200})
    pub.publish_market_data(
        "NSE:TCS",
        {"mode": "Depth", "ltp": 4100.0, "depth": {"buy": [{"price": 4099.95, "quantity": 10, "orders": 2}],
                                                     "sell": [{"price": 4100.05, "quantity": 7, "orders": 1}]}},
    )
    for tick in sub.wait(timeout=1.0):
        print(tick.seq, f"{tick.exchange}:{tick.symbol}", tick.mode_name, tick.to_dict())
    print("lost:", sub.lost)

"""The synthetic market: believable, deterministic ticks that the ring accepts as they are."""

from __future__ import annotations

from collections import Counter

import pytest

from shmproxy import SharedMemoryPublisher, SharedMemorySubscriber
from shmproxy.core.market import DEFAULT_SYMBOLS, MockMarket

def fixed_clock() -> float:
    return 1_800_000_000.5


def ticks(market: MockMarket, n: int) -> list[tuple[str, dict]]:
    return [market.next_tick() for _ in range(n)]


def on_grid(price: float) -> bool:
    return abs(price * 20 - round(price * 20)) < 1e-6


def test_default_list_is_liquid_nse_plus_derivatives() -> None:
    exchanges = Counter(key.split(":")[0] for key in DEFAULT_SYMBOLS)
    assert exchanges["NSE"] == 50 and exchanges["NFO"] >= 2 and exchanges["MCX"] >= 2
    assert len(set(DEFAULT_SYMBOLS)) == len(DEFAULT_SYMBOLS)
    assert MockMarket().symbols == DEFAULT_SYMBOLS


def test_same_seed_same_ticks_other_seed_other_ticks() -> None:
    first = ticks(MockMarket(seed=42, clock=fixed_clock), 2000)
    assert first == ticks(MockMarket(seed=42, clock=fixed_clock), 2000)
    assert first != ticks(MockMarket(seed=43, clock=fixed_clock), 2000)


def test_random_seed_is_reported_so_a_run_can_be_repeated() -> None:
    market = MockMarket(clock=fixed_clock)
    assert ticks(market, 50) == ticks(MockMarket(seed=market.seed, clock=fixed_clock), 50)


@pytest.mark.parametrize("mode", ["quote", "depth"])
def test_prices_volumes_and_times_are_believable(mode: str) -> None:
    clock = iter(range(1_800_000_000, 1_900_000_000)).__next__
    market = MockMarket(seed=1, mode=mode, clock=clock)
    last: dict[str, dict] = {}
    for key, data in ticks(market, 20_000):
        for field in ("ltp", "open", "high", "low", "close"):
            assert on_grid(data[field]) and data[field] > 0, (key, field, data[field])
        assert data["low"] <= data["ltp"] <= data["high"] and data["low"] <= data["open"] <= data["high"]
        assert data["percent_change"] == pytest.approx((data["ltp"] - data["close"]) / data["close"] * 100, abs=0.006)
        assert data["low"] <= data["average_price"] <= data["high"]
        before = last.get(key)
        if before:
            assert data["volume"] == before["volume"] + data["last_quantity"]
            assert data["last_trade_time"] >= before["last_trade_time"]
            assert data["close"] == before["close"] and data["open"] == before["open"]
            assert data["high"] >= before["high"] and data["low"] <= before["low"]
        last[key] = data
        if mode == "depth":
            buy, sell = data["depth"]["buy"], data["depth"]["sell"]
            assert len(buy) == len(sell) == 5
            assert buy[0]["price"] < sell[0]["price"] and buy[0]["price"] <= data["ltp"] <= sell[0]["price"]
            assert [b["price"] for b in buy] == sorted((b["price"] for b in buy), reverse=True)
            assert [s["price"] for s in sell] == sorted(s["price"] for s in sell)
            for level in buy + sell:
                assert on_grid(level["price"]) and level["price"] > 0
                assert level["quantity"] >= level["orders"] >= 1
    assert len(last) == len(DEFAULT_SYMBOLS), "every instrument trades"


def test_prices_stay_near_the_open_over_a_long_day() -> None:
    market = MockMarket(["NSE:INFY"], seed=2, mode="quote", clock=fixed_clock)
    moves = [abs(data["ltp"] / data["open"] - 1) for _, data in ticks(market, 100_000)]
    assert max(moves) < 0.02, "a pure random walk would wander ~5% in 100,000 trades"
    assert sum(moves) / len(moves) > 0.0005, "but prices do move"


def test_derivatives_carry_open_interest_in_lots() -> None:
    market = MockMarket(["NFO:NIFTY30DEC25FUT", "NSE:INFY"], seed=3, mode="quote", clock=fixed_clock)
    for key, data in ticks(market, 500):
        if key.startswith("NFO:"):
            assert data["oi"] > 0 and data["oi"] % 75 == 0 and data["last_quantity"] % 75 == 0
        else:
            assert data["oi"] == 0


def test_mixed_mode_mixes_and_fixed_modes_stay_fixed() -> None:
    modes = Counter(data["mode"] for _, data in ticks(MockMarket(seed=5), 10_000))
    assert 0.40 < modes[1] / 10_000 < 0.50 and 0.30 < modes[2] / 10_000 < 0.40 and 0.15 < modes[3] / 10_000 < 0.25
    assert {data["mode"] for _, data in ticks(MockMarket(seed=5, mode="ltp"), 200)} == {1}
    ltp = MockMarket(seed=5, mode="ltp").next_tick()[1]
    assert set(ltp) == {"mode", "ltp", "last_trade_time"}


def test_requested_instrument_ticks_do_not_depend_on_other_instruments() -> None:
    alone = MockMarket(["NSE:INFY"], seed=9, clock=fixed_clock)
    busy = MockMarket(seed=9, clock=fixed_clock)
    ticks(busy, 300)  # other instruments trading in between changes nothing for a new one
    for mode in (1, "Quote", "DEPTH", 2):
        assert alone.tick("BSE:SOMETHING", mode) == busy.tick("BSE:SOMETHING", mode)
    quote = busy.tick("NSE:UNLISTED", 2)
    assert 50 <= quote["close"] <= 5000 and "depth" not in quote
    assert "depth" in busy.tick("NSE:UNLISTED", 3)


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        (["RELIANCE"], "needs its exchange"),
        ([":RELIANCE"], "missing exchange"),
        (["NSE:" + "X" * 41], "symbol"),
        (["NSE:"], "symbol"),
        ([], "at least one symbol"),
    ],
)
def test_bad_symbols_are_refused_with_a_reason(symbols: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockMarket(symbols)


def test_bad_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="market mode"):
        MockMarket(mode="full")
    with pytest.raises(ValueError, match="mode"):
        MockMarket().tick("NSE:INFY", 4)


def test_every_tick_goes_into_the_ring_unchanged(ring_name: str) -> None:
    market = MockMarket(seed=11)
    sent = ticks(market, 1000)
    with SharedMemoryPublisher(buffer_name=ring_name, buffer_size=1 << 20) as pub, \
            SharedMemorySubscriber(ring_name, start="oldest") as sub:
        for key, data in sent:
            pub.publish_market_data(key, data)
        got = sub.poll()
    assert len(got) == len(sent)
    for tick, (key, data) in zip(got, sent):
        assert f"{tick.exchange}:{tick.symbol}" == key and tick.mode == data["mode"]
        for field, value in data.items():
            assert getattr(tick, field) == value, (key, field)

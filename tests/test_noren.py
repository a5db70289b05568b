"""The Noren protocol helpers, the symbol map and the Flattrade settings, without sockets."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from shmproxy.core.adapters import noren
from shmproxy.core.adapters.flattrade import FlattradeAdapter, FlattradeSettings
from shmproxy.core.adapters.symbolmap import BrokerKey, SymbolMap
from shmproxy.core.errors import SettingsError

from noren_sim import instrument_state

KEY = BrokerKey("NSE", "2885")


def test_login_message_has_the_current_shape() -> None:
    assert json.loads(noren.login_message("FT1", "FT1A", "tok")) == {
        "t": "a", "uid": "FT1", "actid": "FT1A", "source": "API", "accesstoken": "tok"}


@pytest.mark.parametrize("ack, refusal", [
    ({"t": "ak", "s": "OK"}, None),
    ({"t": "ak", "s": "ok"}, None),
    ({"t": "ak", "s": "NOT_OK", "emsg": "Invalid Session Key"}, "Invalid Session Key"),
    ({"t": "ak", "s": "NOT_OK"}, "status 'NOT_OK'"),
    ({"t": "ak"}, "status None"),
])
def test_login_refusal(ack, refusal) -> None:
    assert noren.login_refusal(ack) == refusal


def test_modes_map_to_touchline_or_depth() -> None:
    assert [noren.level_for(m) for m in (0, 1, 2, 3)] == [None, "t", "t", "d"]


def test_subscription_messages_join_keys_and_split_long_lists() -> None:
    keys = [BrokerKey("NSE", "22"), BrokerKey("NFO", "35001")]
    assert [json.loads(m) for m in noren.subscription_messages("t", keys)] == [{"t": "t", "k": "NSE|22#NFO|35001"}]
    assert json.loads(noren.subscription_messages("t", keys, subscribe=False)[0])["t"] == "u"
    assert json.loads(noren.subscription_messages("d", keys, subscribe=False)[0])["t"] == "ud"
    many = [BrokerKey("NSE", str(i)) for i in range(noren.KEYS_PER_MESSAGE + 1)]
    frames = noren.subscription_messages("d", many)
    assert len(frames) == 2 and json.loads(frames[1]) == {"t": "d", "k": f"NSE|{noren.KEYS_PER_MESSAGE}"}


def test_parse_and_feed_key() -> None:
    assert noren.parse("not json") is None and noren.parse("[1]") is None
    assert noren.feed_key({"t": "tf", "e": "NSE", "tk": "2885"}) == KEY
    assert noren.feed_key({"t": "hk"}) is None
    assert noren.feed_key({"t": "tf", "e": "NSE"}) is None


def test_touchline_feeds_never_publish_above_quote() -> None:
    assert noren.publish_mode(3, "tf") == 2 and noren.publish_mode(1, "tk") == 1
    assert noren.publish_mode(3, "df") == 3 and noren.publish_mode(2, "dk") == 2


def test_partial_updates_merge_into_the_snapshot() -> None:
    book = noren.FeedBook()
    book.merge(KEY, {"t": "dk", **instrument_state("NSE", "2885", "RELIANCE-EQ", 2950.0)})
    state = book.merge(KEY, {"t": "df", "e": "NSE", "tk": "2885", "lp": "2951.50", "bq1": "700"})
    tick = noren.to_tick(state, 3)
    assert tick["ltp"] == 2951.5 and tick["open"] == 2940.0 and tick["high"] == 2965.0
    assert tick["depth"]["buy"][0] == {"price": 2949.95, "quantity": 700, "orders": 1}
    assert tick["depth"]["sell"][4] == {"price": 2950.25, "quantity": 750, "orders": 6}
    book.forget(KEY)
    assert noren.to_tick(book.merge(KEY, {"t": "tf", "e": "NSE", "tk": "2885", "v": "5"}), 2) is None  # no price yet


def test_conversion_of_every_field() -> None:
    state = {"lp": "100.5", "o": "99", "h": "101", "l": "98", "c": "99.5", "ap": "100.1", "pc": "1.01",
             "v": "1000", "ltq": "5", "oi": "7", "tbq": "300", "tsq": "400", "ft": "1700000000",
             "ltt": "1699999999", "bp1": "100.45", "bq1": "10", "bo1": "2"}
    tick = noren.to_tick(state, 3)
    assert tick == {
        "mode": 3, "ltp": 100.5, "open": 99.0, "high": 101.0, "low": 98.0, "close": 99.5, "average_price": 100.1,
        "percent_change": 1.01, "volume": 1000, "last_quantity": 5, "oi": 7, "total_buy_quantity": 300,
        "total_sell_quantity": 400, "timestamp": 1_700_000_000_000, "last_trade_time": 1_699_999_999,
        "depth": {"buy": [{"price": 100.45, "quantity": 10, "orders": 2}] + [{"price": 0.0, "quantity": 0, "orders": 0}] * 4,
                  "sell": [{"price": 0.0, "quantity": 0, "orders": 0}] * 5},
    }
    assert "depth" not in noren.to_tick(state, 2) and noren.to_tick(state, 1)["mode"] == 1


@pytest.mark.parametrize("field, value, message", [
    ("lp", "abc", "lp='abc' is not a number"),
    ("h", "nan", "h='nan' is not a number"),
    ("v", "12.5", "v='12.5' is not a whole number"),
    ("bq3", "x", "bq3='x' is not a number"),
])
def test_bad_numbers_name_the_field(field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        noren.to_tick({"lp": "1", field: value}, 3)


def test_trade_time_forms() -> None:
    feed_time = int(datetime(2025, 3, 4, 10, 0, 5, tzinfo=noren.IST).timestamp())
    expected = int(datetime(2025, 3, 4, 9, 59, 58, tzinfo=noren.IST).timestamp())
    assert noren.trade_time("09:59:58", feed_time) == expected
    assert noren.trade_time("04-03-2025 09:59:58") == expected
    assert noren.trade_time(str(expected)) == expected
    assert noren.trade_time("yesterday") is None
    assert "last_trade_time" not in noren.to_tick({"lp": "1", "ltt": "soon"}, 2)  # the price still goes out


# --- the symbol map ------------------------------------------------------------------------------------
def test_symbol_map_loads_both_ways(tmp_path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("\ufeffExchange, Symbol ,Token,lotsize\nNSE,RELIANCE,2885,1\nNSE_INDEX,NIFTY,26000,1\n\n")
    symbols = SymbolMap.load(path, {"NSE_INDEX": "NSE"})
    assert len(symbols) == 2
    assert symbols.broker_key("NSE_INDEX", "NIFTY") == BrokerKey("NSE", "26000")
    assert symbols.instrument(BrokerKey("NSE", "2885")) == ("NSE", "RELIANCE")
    assert symbols.broker_key("NSE", "reliance") is None


@pytest.mark.parametrize("content, message", [
    ("symbol,token\nRELIANCE,2885\n", "missing: exchange"),
    ("exchange,symbol,token\nNSE,RELIANCE,\n", "line 2: no token"),
    ("exchange,symbol,token\nNSE,A,1\nNSE,A,2\n", "line 3: NSE:A is listed twice"),
    ("exchange,symbol,token\nNSE,A,1\nNSE,B,1\n", r"line 3: token NSE\|1 is already used on line 2"),
])
def test_symbol_map_errors_name_the_line(tmp_path, content, message) -> None:
    path = tmp_path / "map.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        SymbolMap.load(path)


# --- settings ---------------------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path) -> dict[str, str]:
    (tmp_path / "map.csv").write_text("exchange,symbol,token\nNSE,RELIANCE,2885\n")
    return {"FLATTRADE_USER_ID": "FT1", "FLATTRADE_AUTH_TOKEN": "tok", "FLATTRADE_SYMBOL_MAP": str(tmp_path / "map.csv")}


def test_settings_defaults(config) -> None:
    settings = FlattradeSettings.from_config(config)
    assert settings.account_id == "FT1" and settings.url.startswith("wss://piconnect.flattrade.in/")
    assert settings.heartbeat_s == 30 and settings.auth_retry_s == 60
    assert FlattradeAdapter.check(config) == []
    assert FlattradeSettings.from_config({**config, "FLATTRADE_ACCOUNT_ID": "ACC"}).account_id == "ACC"


@pytest.mark.parametrize("change, message", [
    ({"FLATTRADE_USER_ID": " "}, "FLATTRADE_USER_ID is not set"),
    ({"FLATTRADE_AUTH_TOKEN": ""}, "no token: set FLATTRADE_AUTH_TOKEN or FLATTRADE_TOKEN_FILE"),
    ({"FLATTRADE_TOKEN_FILE": "/nowhere/token"}, "set only one of"),
    ({"FLATTRADE_AUTH_TOKEN": "", "FLATTRADE_TOKEN_FILE": "/nowhere/token"},
     "FLATTRADE_TOKEN_FILE='/nowhere/token' cannot be read: No such file or directory"),
    ({"FLATTRADE_SYMBOL_MAP": ""}, "FLATTRADE_SYMBOL_MAP is not set"),
    ({"FLATTRADE_WS_URL": "https://example.com/"}, "FLATTRADE_WS_URL='https://example.com/' is not valid"),
    ({"FLATTRADE_HEARTBEAT_SECONDS": "0"}, "FLATTRADE_HEARTBEAT_SECONDS='0' is out of range: allowed 0.05 to 3600"),
    ({"FLATTRADE_AUTH_RETRY_SECONDS": "soon"}, "FLATTRADE_AUTH_RETRY_SECONDS='soon' is not valid"),
])
def test_bad_settings_are_named(config, change, message) -> None:
    with pytest.raises(SettingsError, match=message):
        FlattradeSettings.from_config({**config, **change})
    assert message.split("=")[0].split(":")[0] in FlattradeAdapter.check({**config, **change})[0]


def test_token_file_must_hold_the_token_alone(config, tmp_path) -> None:
    token_file = tmp_path / "token"
    config = {**config, "FLATTRADE_AUTH_TOKEN": "", "FLATTRADE_TOKEN_FILE": str(token_file)}
    for content, message in (("", "the file is empty"), ("a b\n", "expected the token alone")):
        token_file.write_text(content)
        with pytest.raises(SettingsError, match=message):
            FlattradeSettings.from_config(config)
    token_file.write_text("tok\n")
    assert FlattradeSettings.from_config(config).tokens.file == token_file

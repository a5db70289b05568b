"""Reading OpenAlgo's database without serve: where it is, what is read from it, and the key cache."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from shmproxy.core.adapters.session_token import TokenSource
from shmproxy.core.errors import SettingsError
from shmproxy.core.openalgo.database import NoSession, OpenAlgoDatabase, OpenAlgoUnavailable
from shmproxy.core.openalgo.keys import CachedKeyVerifier
from shmproxy.core.openalgo.location import anchored, database_path
from shmproxy.core.proxy.auth import CompositeVerifier, KeyVerifier
from shmproxy.core.settings import Settings, load_environment

pytest.importorskip("argon2", reason="the openalgo extra: pip install -e '.[test,openalgo]'")
from shmproxy.core.openalgo import crypto  # noqa: E402  (needs the extra)

from openalgo_install import OpenAlgoInstall, fernet_for, new_api_key  # noqa: E402


@pytest.fixture
def install(tmp_path) -> OpenAlgoInstall:
    return OpenAlgoInstall(tmp_path / "openalgo")


def open_db(install: OpenAlgoInstall, **config: str) -> OpenAlgoDatabase:
    return OpenAlgoDatabase.from_config({"DATABASE_URL": f"sqlite:///{install.db}", "API_KEY_PEPPER": install.pepper,
                                         "FERNET_SALT": install.fernet_salt, **config})


# --- where the database is --------------------------------------------------------------------------------
@pytest.mark.parametrize("url, path", [
    ("sqlite:///db/openalgo.db", "db/openalgo.db"),
    ("sqlite:////srv/openalgo/db/openalgo.db", "/srv/openalgo/db/openalgo.db"),
    ("sqlite+pysqlite:///openalgo.db?timeout=20", "openalgo.db"),
])
def test_database_path_reads_urls_as_sqlalchemy_does(url, path) -> None:
    assert database_path(url) == Path(path)


@pytest.mark.parametrize("url, message", [
    ("postgresql://u@h/openalgo", "is not a SQLite database"),
    ("sqlite://", "names no database file"),
    ("sqlite:///:memory:", "names no database file"),
])
def test_database_path_refuses_what_is_not_a_sqlite_file(url, message) -> None:
    with pytest.raises(SettingsError, match=message):
        database_path(url)


def test_a_relative_url_in_an_env_file_is_anchored_to_the_files_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text("DATABASE_URL = 'sqlite:///db/openalgo.db'\n")
    assert load_environment(tmp_path / ".env")["DATABASE_URL"] == f"sqlite:///{tmp_path}/db/openalgo.db"
    assert anchored("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert anchored("postgresql://u@h/db", tmp_path) == "postgresql://u@h/db"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///here.db")  # the environment wins, relative to where serve runs
    assert load_environment(tmp_path / ".env")["DATABASE_URL"] == "sqlite:///here.db"


def test_key_cache_seconds_setting() -> None:
    assert Settings().key_cache_seconds == 60
    with pytest.raises(SettingsError, match="SHMPROXY_KEY_CACHE_SECONDS='-1' is out of range"):
        Settings().with_overrides({"key_cache_seconds": -1})


# --- OpenAlgo's crypto contract ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, salt", [
    ("", None), ("abcd", None), ("z" * 32, None), ("ab" * 16, bytes.fromhex("ab" * 16)), (" " + "0f" * 20 + " ", bytes.fromhex("0f" * 20)),
])
def test_fernet_salt_falls_back_to_the_legacy_salt_as_openalgo_does(raw, salt) -> None:
    assert crypto.fernet_salt(raw) == salt


def test_fernet_salt_is_used_when_set(tmp_path) -> None:
    install = OpenAlgoInstall(tmp_path, fernet_salt="5e" * 32)
    install.set_session("alice", "flattrade", "tok-1")
    assert open_db(install).broker_session("flattrade").token == "tok-1"
    with pytest.raises(SettingsError, match="API_KEY_PEPPER does not match"):  # the legacy salt cannot read it
        open_db(install, FERNET_SALT="")


# --- API keys -----------------------------------------------------------------------------------------------
def test_key_owner_checks_every_stored_key(install) -> None:
    keys = {user: new_api_key() for user in ("alice", "bob")}
    for user, key in keys.items():
        install.set_api_key(user, key)
    database = open_db(install)
    assert {database.key_owner(key) for key in keys.values()} == {"alice", "bob"}
    assert database.key_owner(new_api_key()) is None
    install.execute("UPDATE api_keys SET api_key_hash = 'not an argon2 hash' WHERE user_id = 'alice'")
    assert database.key_owner(keys["alice"]) is None and database.key_owner(keys["bob"]) == "bob"


def test_an_empty_database_is_accepted_and_a_wrong_pepper_is_not(install) -> None:
    assert open_db(install, API_KEY_PEPPER="x" * 64) is not None  # nothing stored yet: nothing to tell by
    install.set_api_key("alice", new_api_key())
    with pytest.raises(SettingsError, match="API_KEY_PEPPER does not match"):
        open_db(install, API_KEY_PEPPER="x" * 64)


def test_not_configured_means_no_database(install) -> None:
    assert OpenAlgoDatabase.from_config({"DATABASE_URL": f"sqlite:///{install.db}"}) is None
    assert OpenAlgoDatabase.from_config({"API_KEY_PEPPER": install.pepper, "DATABASE_URL": " "}) is None


@pytest.mark.parametrize("change, message", [
    ("ALTER TABLE api_keys DROP COLUMN api_key_hash", "table 'api_keys' has no column 'api_key_hash'"),
    ("DROP TABLE api_keys", "has no table 'api_keys'"),
])
def test_missing_tables_and_columns_are_named(install, change, message) -> None:
    install.execute(change)
    with pytest.raises(SettingsError, match=message):
        open_db(install)


def test_a_file_that_is_not_a_database_is_named(install) -> None:
    install.db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SettingsError, match=f"cannot read OpenAlgo database {install.db}: file is not a database"):
        open_db(install)


# --- read-only ------------------------------------------------------------------------------------------------
def test_reads_follow_a_live_wal_database_and_cannot_write(install) -> None:
    install.set_api_key("alice", key := new_api_key())
    install.set_session("alice", "flattrade", "tok-1")
    with closing(sqlite3.connect(install.db)) as writer:  # OpenAlgo running in WAL mode, holding the file open
        writer.execute("PRAGMA journal_mode=WAL")
        database = open_db(install)
        assert database.key_owner(key) == "alice"
        install.set_session("alice", "flattrade", "tok-2")  # committed to the WAL, not yet to the main file
        assert database.broker_session("flattrade").token == "tok-2"
        with pytest.raises(OpenAlgoUnavailable, match="readonly database"):
            database._query("DELETE FROM auth")
    assert database.broker_session("flattrade").token == "tok-2"


def test_a_database_removed_while_running_is_unavailable_not_a_crash(install) -> None:
    database = open_db(install)
    install.db.unlink()
    with pytest.raises(OpenAlgoUnavailable, match="cannot read OpenAlgo database"):
        database.key_owner(new_api_key())
    assert not install.db.exists()  # mode=ro never creates the file


# --- broker sessions -----------------------------------------------------------------------------------------------
def test_broker_session_picks_the_live_row_of_the_broker_and_client(install) -> None:
    install.set_session("alice", "flattrade", "alice-token", feed_token="alice-feed", broker_user_id="FT1")
    install.set_session("bob", "flattrade", "bob-token", broker_user_id="FT2")
    install.set_session("carol", "zerodha", "carol-token")
    database = open_db(install)
    session = database.broker_session("flattrade", "ft1")
    assert (session.user, session.broker_user_id, session.token, session.feed_token) == ("alice", "FT1", "alice-token", "alice-feed")
    assert "alice-token" not in repr(session) and "alice-feed" not in repr(session)
    assert database.broker_session("FLATTRADE", "FT2").token == "bob-token"
    with pytest.raises(NoSession, match="OpenAlgo holds no flattrade session"):
        database.broker_session("flattrade", "FT3")  # only other clients' sessions
    install.set_session("dave", "flattrade", "dave-token")  # a row without a client id serves any
    assert database.broker_session("flattrade", "FT3").token == "dave-token"
    assert database.broker_session("flattrade", "FT1").token == "alice-token"  # the exact match first


def test_revoked_and_undecryptable_sessions_are_skipped(install) -> None:
    install.set_session("alice", "flattrade", "old-token", revoked=True)
    database = open_db(install)
    with pytest.raises(NoSession, match="OpenAlgo's flattrade session is revoked"):
        database.broker_session("flattrade")
    install.set_session("bob", "flattrade", "bob-token")
    install.execute("UPDATE auth SET auth = ? WHERE name = 'bob'", (_foreign_ciphertext("bob-token"),))
    with pytest.raises(NoSession, match="does not decrypt with API_KEY_PEPPER"):
        database.broker_session("flattrade")
    install.set_session("alice", "flattrade", "new-token")  # OpenAlgo's next login un-revokes the row
    assert database.broker_session("flattrade").token == "new-token"


def _foreign_ciphertext(value: str) -> str:
    """A token encrypted under another pepper (a row left over from before a pepper change)."""
    return fernet_for("another pepper " * 4).encrypt(value.encode()).decode()


def test_token_source_prefers_explicit_settings_and_reads_the_database_afresh(install, tmp_path) -> None:
    config = {"DATABASE_URL": f"sqlite:///{install.db}", "API_KEY_PEPPER": install.pepper}
    assert TokenSource.from_config({**config, "X_AUTH_TOKEN": "explicit"}, "X", "flattrade", "FT1").read().value == "explicit"
    source = TokenSource.from_config(config, "X", "flattrade", "FT1")
    assert source.changes and source.status().usable is False
    install.set_session("alice", "flattrade", "tok-1")
    assert (source.read().value, source.read().source) == ("tok-1", "OpenAlgo database (user alice)")
    install.set_session("alice", "flattrade", "tok-2")
    assert source.read().value == "tok-2" and "tok-2" not in repr(source.read())
    with pytest.raises(SettingsError, match="no token: set X_AUTH_TOKEN or X_TOKEN_FILE, or point at OpenAlgo's .env"):
        TokenSource.from_config({}, "X", "flattrade", "FT1")


# --- the key cache ----------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowLookup:
    """Counts lookups, records the threads they ran in, and can be held to overlap callers."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key: str) -> str | None:
        self.threads.add(threading.get_ident())
        self.gate.wait(5)
        self.calls.append(key)
        return self.owners.get(key)


def test_verified_keys_are_cached_for_the_ttl_and_refusals_briefly() -> None:
    async def scenario() -> None:
        clock, lookup = Clock(), SlowLookup({"good": "alice"})
        verifier = CachedKeyVerifier(lookup, ttl_s=60, refused_ttl_s=5, clock=clock)
        assert await verifier.verify("good") == "alice" and await verifier.verify("good") == "alice"
        assert await verifier.verify("bad") is None and await verifier.verify("bad") is None
        assert lookup.calls == ["good", "bad"]
        assert threading.get_ident() not in lookup.threads  # the slow check never runs on the event loop
        clock.now += 5.1
        lookup.owners["bad"] = "bob"  # a key created in OpenAlgo since
        assert await verifier.verify("bad") == "bob" and await verifier.verify("good") == "alice"
        clock.now += 55
        del lookup.owners["good"]  # regenerated: refused once the TTL has passed
        assert await verifier.verify("good") is None
        assert lookup.calls == ["good", "bad", "bad", "good"]

    asyncio.run(scenario())


def test_concurrent_checks_of_one_key_share_one_lookup_and_a_cancelled_client_does_not_cancel_it() -> None:
    async def scenario() -> None:
        lookup = SlowLookup({"good": "alice"})
        lookup.gate.clear()
        verifier = CachedKeyVerifier(lookup, ttl_s=60)
        waiting = [asyncio.ensure_future(verifier.verify("good")) for _ in range(20)]
        await asyncio.sleep(0.05)
        waiting[0].cancel()  # that client went away
        lookup.gate.set()
        results = await asyncio.gather(*waiting[1:])
        assert results == ["alice"] * 19 and lookup.calls == ["good"]

    asyncio.run(scenario())


def test_an_unavailable_database_refuses_without_caching_the_refusal() -> None:
    async def scenario() -> None:
        state = {"down": True}

        def lookup(key: str) -> str | None:
            if state["down"]:
                raise OpenAlgoUnavailable("cannot read OpenAlgo database /x: database is locked")
            return "alice"

        verifier = CachedKeyVerifier(lookup, ttl_s=60)
        assert await verifier.verify("good") is None
        state["down"] = False
        assert await verifier.verify("good") == "alice"

    asyncio.run(scenario())


def test_the_cache_never_holds_the_key_itself() -> None:
    async def scenario() -> CachedKeyVerifier:
        verifier = CachedKeyVerifier(SlowLookup({"k" * 64: "alice"}), ttl_s=60)
        await verifier.verify("k" * 64)
        await verifier.verify("wrong-key-123")
        return verifier

    verifier = asyncio.run(scenario())
    stored = repr(vars(verifier._cache)).encode() + b"".join(verifier._cache._entries)
    assert b"k" * 64 not in stored and b"wrong-key-123" not in stored


def test_composite_verifier_asks_each_in_turn() -> None:
    async def scenario() -> None:
        database = CachedKeyVerifier(SlowLookup({"db-key": "alice"}), ttl_s=60)
        verifier = CompositeVerifier([KeyVerifier(["env-key"]), database])
        assert await verifier.verify("env-key") == "shmproxy"
        assert await verifier.verify("db-key") == "alice"
        assert await verifier.verify("neither") is None

    asyncio.run(scenario())


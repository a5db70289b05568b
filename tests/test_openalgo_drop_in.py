"""serve pointed at an existing OpenAlgo install's .env, end to end with real processes and sockets:
OpenAlgo's API keys authenticate clients, and the Flattrade adapter takes OpenAlgo's broker session.

The install (tests/openalgo_install.py) has OpenAlgo's tables, keys hashed and tokens encrypted as
OpenAlgo does it; its .env names the database by OpenAlgo's default relative URL, so every test here
also proves that URL is found next to the .env file, whatever serve's working directory.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from conftest import run_cli
from noren_sim import GOOD_TOKEN, NorenSim, instrument_state
from openalgo_install import OpenAlgoInstall, new_api_key
from serve_harness import API_KEY, ServeProcess, request, subscribe
from test_flattrade import (RELIANCE, SYMBOL_MAP, USER, health_of_adapter, session_of_login, tick_with_ltp,
                            wait_for_status)

pytest.importorskip("argon2", reason="the openalgo extra: pip install -e '.[test,openalgo]'")

FRESH_TOKEN = "fresh-token-9b2e"  # what OpenAlgo's next daily broker login stores


@pytest.fixture
def install(tmp_path) -> OpenAlgoInstall:
    return OpenAlgoInstall(tmp_path / "openalgo")


def auth_reply(url: str, key: str) -> dict:
    with connect(url, open_timeout=10) as ws:
        return request(ws, {"action": "authenticate", "api_key": key}, timeout=15)


def serve(ring: str, install: OpenAlgoInstall, keys: str = "", **env: str) -> ServeProcess:
    return ServeProcess(ring, "--env-file", str(install.env_file), keys=keys, env=env)


# --- API keys ---------------------------------------------------------------------------------------------
def test_sdk_authenticates_with_the_openalgo_key_as_its_owner_and_other_keys_are_refused(ring_name, install) -> None:
    openalgo = pytest.importorskip("openalgo")
    key, bob_key = new_api_key(), new_api_key()
    install.set_api_key("alice", key)
    install.set_api_key("bob", bob_key)
    with serve(ring_name, install, keys=API_KEY) as server:
        client = openalgo.api(api_key=key, host="http://127.0.0.1:9", ws_url=server.url)
        try:
            assert client.connect() is True
        finally:
            client.disconnect()
        assert auth_reply(server.url, key)["user_id"] == "alice"
        assert auth_reply(server.url, bob_key)["user_id"] == "bob"
        assert auth_reply(server.url, API_KEY)["user_id"] == "shmproxy"  # SHMPROXY_API_KEYS still works beside it
        for wrong in (new_api_key(), key[:-1], key + install.pepper):
            reply = auth_reply(server.url, wrong)
            assert (reply["status"], reply["code"]) == ("error", "AUTHENTICATION_ERROR"), wrong
        stranger = openalgo.api(api_key=new_api_key(), host="http://127.0.0.1:9", ws_url=server.url)
        try:
            assert stranger.connect() is False
        finally:
            stranger.disconnect()
        logs = server.logs()
    assert "authenticated as alice" in logs and "auth failed" in logs
    for secret in (key, bob_key, install.pepper):
        assert secret not in logs


def test_a_regenerated_key_stops_working_within_the_cache_time(ring_name, install) -> None:
    old_key, new_key = new_api_key(), new_api_key()
    install.set_api_key("alice", old_key)
    with serve(ring_name, install, SHMPROXY_KEY_CACHE_SECONDS="1") as server:
        assert auth_reply(server.url, old_key)["status"] == "success"
        install.set_api_key("alice", new_key)  # "Regenerate API key" in OpenAlgo's web UI
        regenerated = time.monotonic()
        assert auth_reply(server.url, new_key)["user_id"] == "alice"  # the new key works at once
        while auth_reply(server.url, old_key)["status"] == "success":
            assert time.monotonic() - regenerated < 1 + 3, "the old key was still accepted past the cache time"
            time.sleep(0.1)
        assert auth_reply(server.url, new_key)["user_id"] == "alice"


def test_a_key_created_while_serve_runs_works_without_a_restart(ring_name, install) -> None:
    key = new_api_key()
    with serve(ring_name, install, SHMPROXY_KEY_CACHE_SECONDS="1") as server:  # no key anywhere yet
        assert auth_reply(server.url, key)["status"] == "error"
        install.set_api_key("alice", key)
        deadline = time.monotonic() + 1 + 3  # a refusal is remembered no longer than an acceptance
        while auth_reply(server.url, key)["status"] != "success":
            assert time.monotonic() < deadline, "a key created in OpenAlgo was not accepted"
            time.sleep(0.2)


@pytest.mark.parametrize("problem", ["wrong pepper", "wrong salt", "missing database", "missing table",
                                     "not sqlite", "extra not installed"])
def test_start_up_problems_are_one_line_errors(ring_name, install, tmp_path, problem) -> None:
    install.set_api_key("alice", new_api_key())
    env = {"PATH": "/usr/bin:/bin"}
    expected = {
        "wrong pepper": "API_KEY_PEPPER does not match OpenAlgo database",
        "wrong salt": "API_KEY_PEPPER or FERNET_SALT does not match OpenAlgo database",
        "missing database": f"OpenAlgo database {install.db} does not exist: check DATABASE_URL",
        "missing table": f"OpenAlgo database {install.db} has no table 'auth'",
        "not sqlite": "DATABASE_URL='postgresql://openalgo@localhost/openalgo' is not a SQLite database",
        "extra not installed": "DATABASE_URL and API_KEY_PEPPER are set: install shmproxy[openalgo] to read OpenAlgo's database",
    }[problem]
    if problem == "wrong pepper":
        install.write_env(API_KEY_PEPPER="f" * 64)
    elif problem == "wrong salt":
        install.write_env(FERNET_SALT="ab" * 16)
    elif problem == "missing database":
        install.db.unlink()
    elif problem == "missing table":
        install.execute("DROP TABLE auth")
    elif problem == "not sqlite":
        install.write_env(DATABASE_URL="postgresql://openalgo@localhost/openalgo")
    else:  # a Python without argon2-cffi: a module of that name that cannot be imported comes first
        (tmp_path / "argon2.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = str(tmp_path)
    before = install.db.read_bytes() if install.db.exists() else None
    result = run_cli("serve", "--buffer", ring_name, "--port", "0", "--env-file", str(install.env_file), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr, result.stderr
    assert install.pepper not in result.stderr
    assert (install.db.read_bytes() if install.db.exists() else None) == before  # never written to


# --- the broker session -----------------------------------------------------------------------------------
@pytest.fixture
def sim():
    with NorenSim({RELIANCE: instrument_state(*RELIANCE, "RELIANCE-EQ", 2950.0)},
                  tokens=(GOOD_TOKEN, FRESH_TOKEN)) as simulator:
        yield simulator


@pytest.fixture
def flattrade_env(sim, tmp_path) -> dict[str, str]:
    """Flattrade enabled with no token setting: the token comes from OpenAlgo's database."""
    (tmp_path / "symbols.csv").write_text(SYMBOL_MAP)
    return {"ENABLE_FLATTRADE": "true", "FLATTRADE_USER_ID": USER, "FLATTRADE_WS_URL": sim.url,
            "FLATTRADE_SYMBOL_MAP": str(tmp_path / "symbols.csv"), "FLATTRADE_HEARTBEAT_SECONDS": "0.5",
            "FLATTRADE_AUTH_RETRY_SECONDS": "0.5", "FLATTRADE_TOKEN_CHECK_SECONDS": "0.3"}


def login_tokens(sim: NorenSim) -> list[str]:
    return [m["accesstoken"] for m in sim.logins()]


def test_a_token_refreshed_while_serve_runs_reaches_the_flattrade_adapter(ring_name, install, sim, flattrade_env) -> None:
    key = new_api_key()
    install.set_api_key("alice", key)
    install.set_session("alice", "flattrade", GOOD_TOKEN, feed_token="feed-1")
    install.set_session("carol", "zerodha", "zerodha-token")  # another broker's session is never used
    with serve(ring_name, install, **flattrade_env) as server, connect(server.url, open_timeout=10) as ws:
        assert request(ws, {"action": "authenticate", "api_key": key})["status"] == "success"
        assert subscribe(ws, "RELIANCE")["status"] == "success"
        session_of_login(sim, 1)
        assert login_tokens(sim) == [GOOD_TOKEN]
        sim.update(*RELIANCE, lp="2951.00")
        tick_with_ltp(ws, "RELIANCE", 2951.0)

        install.set_session("alice", "flattrade", FRESH_TOKEN, feed_token="feed-2")  # the next morning's login
        sim.wait_for(lambda: FRESH_TOKEN in login_tokens(sim), timeout=10, what="a login with the fresh token")
        assert set(login_tokens(sim)) == {GOOD_TOKEN, FRESH_TOKEN}
        wait_for_status(ws, "connected")
        sim.update(*RELIANCE, lp="2952.00")
        tick_with_ltp(ws, "RELIANCE", 2952.0)  # served by the new session
        time.sleep(1)  # several token checks later: no further logins while the token stays the same
        assert len(sim.logins()) == 2
        logs = server.logs()
    assert "a new session token in the OpenAlgo database" in logs
    for secret in (GOOD_TOKEN, FRESH_TOKEN, "zerodha-token", key):
        assert secret not in logs


def test_a_revoked_session_is_skipped_until_openalgo_logs_in_again(ring_name, install, sim, flattrade_env) -> None:
    install.set_session("alice", "flattrade", GOOD_TOKEN, revoked=True)  # OpenAlgo's daily expiry
    with serve(ring_name, install, keys=API_KEY, **flattrade_env) as server, \
            connect(server.url, open_timeout=10) as ws:
        assert request(ws, {"action": "authenticate", "api_key": API_KEY})["status"] == "success"
        wait_for_status(ws, "auth_failed")
        assert health_of_adapter(server)["detail"] == "OpenAlgo's flattrade session is revoked: log in to flattrade through OpenAlgo again"
        time.sleep(1)  # two retries at the 0.5 s pace: the revoked token is never sent
        assert sim.logins() == []

        install.set_session("alice", "flattrade", FRESH_TOKEN)
        sim.wait_for(lambda: sim.logins(), timeout=10, what="a login after OpenAlgo's new session")
        assert login_tokens(sim) == [FRESH_TOKEN]
        wait_for_status(ws, "connected")


def test_adapters_command_shows_where_the_token_comes_from_never_the_token(install, flattrade_env) -> None:
    def flattrade_entry() -> dict:
        result = run_cli("adapters", "--json", "--env-file", str(install.env_file), env={"PATH": "/usr/bin:/bin", **flattrade_env})
        assert GOOD_TOKEN not in result.stdout and install.pepper not in result.stdout
        return next(a for a in json.loads(result.stdout) if a["name"] == "flattrade")

    no_session = flattrade_entry()
    assert (no_session["configured"], no_session["token_source"], no_session["token_usable"]) == (True, "OpenAlgo database", False)
    assert no_session["token_problem"] == "OpenAlgo holds no flattrade session: log in to flattrade through OpenAlgo"
    install.set_session("alice", "flattrade", GOOD_TOKEN)
    usable = flattrade_entry()
    assert (usable["token_source"], usable["token_usable"], usable["token_problem"]) == ("OpenAlgo database (user alice)", True, None)
    table = run_cli("adapters", "--env-file", str(install.env_file), env={"PATH": "/usr/bin:/bin", "COLUMNS": "250", **flattrade_env})
    assert "OpenAlgo database (user alice): usable" in table.stdout and GOOD_TOKEN not in table.stdout
    explicit = run_cli("adapters", "--json", "--env-file", str(install.env_file),
                       env={"PATH": "/usr/bin:/bin", **flattrade_env, "FLATTRADE_AUTH_TOKEN": "explicit-token"})
    entry = next(a for a in json.loads(explicit.stdout) if a["name"] == "flattrade")
    assert entry["token_source"] == "FLATTRADE_AUTH_TOKEN" and "explicit-token" not in explicit.stdout


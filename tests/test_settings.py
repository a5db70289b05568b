"""Settings from .env + environment + flags, with one-line errors naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shmproxy import Settings, SettingsError
from shmproxy.core import speedups

from conftest import run_cli


def test_defaults(clean_env: None) -> None:
    s = Settings.load()
    assert (s.shm_buffer_name, s.shm_buffer_size) == ("ws_proxy_buffer", 1048576)
    assert (s.websocket_host, s.websocket_port) == ("127.0.0.1", 8765)
    assert (s.ws_auth_grace_seconds, s.ws_max_queue, s.ws_ping_interval, s.ws_ping_timeout) == (15, 1024, 20, 20)
    assert s.max_symbols_per_websocket == 1000 and s.api_keys == ()


def test_env_file_then_environment_then_flags(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("SHM_BUFFER_NAME = 'from_file'\nWEBSOCKET_PORT='9000'  # inline comment\nWS_MAX_QUEUE=10\n"
                   "SHMPROXY_API_KEYS='k1, k2,,'\n")
    s = Settings.load(env)
    assert (s.shm_buffer_name, s.websocket_port, s.ws_max_queue, s.api_keys) == ("from_file", 9000, 10, ("k1", "k2"))
    monkeypatch.setenv("WEBSOCKET_PORT", "9100")
    assert Settings.load(env).websocket_port == 9100
    assert Settings.load(env, {"websocket_port": 9200, "shm_buffer_name": None}).websocket_port == 9200


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SHM_BUFFER_SIZE", "abc", "SHM_BUFFER_SIZE='abc' is not valid"),
        ("SHM_BUFFER_SIZE", "10", "SHM_BUFFER_SIZE='10' is out of range"),
        ("WEBSOCKET_PORT", "70000", "WEBSOCKET_PORT='70000' is out of range: allowed 0 to 65535"),
        ("SHM_BUFFER_NAME", "a/b", "SHM_BUFFER_NAME='a/b' is not valid"),
        ("WS_PING_TIMEOUT", "soon", "WS_PING_TIMEOUT='soon' is not valid"),
    ],
)
def test_bad_values_name_variable_value_and_range(clean_env: None, monkeypatch, variable, value, message) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        Settings.load()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_flag_value_is_checked_like_its_variable(clean_env: None) -> None:
    with pytest.raises(SettingsError, match="WEBSOCKET_PORT='-1' is out of range"):
        Settings.load(overrides={"websocket_port": -1})


def test_env_file_problems(clean_env: None, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(tmp_path / "missing.env")
    with pytest.raises(SettingsError, match="not a regular file"):
        Settings.load(tmp_path)
    binary = tmp_path / "bin.env"
    binary.write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        Settings.load(binary)


def test_cli_version_and_help() -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("shmproxy ")
    assert version.stdout.strip().endswith(f"({speedups.describe()})")
    pure = run_cli("--version", env={**os.environ, speedups.PURE_PYTHON_ENV: "1"})
    assert "pure Python" in pure.stdout
    assert run_cli("--help").returncode == 0

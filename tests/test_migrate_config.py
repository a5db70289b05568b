"""shmproxy migrate-config: ZMQ_* out, SHM_* in, every other byte kept, safely and idempotently."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmproxy.core import envfile
from shmproxy.core.envfile import Style
from shmproxy.core.errors import EnvFileWriteError
from shmproxy.core.migrate import MARKER, SHM_SETTINGS, plan
from shmproxy.core.safewrite import replace_content

from conftest import run_cli

CORPUS = Path(__file__).parent / "data" / "env"
SECRET_KEY = re.compile(r"KEY|SECRET|PEPPER|TOKEN|PASSWORD")


# ---------------------------------------------------------------- helpers


def lines_of(text: str) -> list[tuple[str, str]]:
    """(content, line ending) of each physical line, split where python-dotenv splits."""
    parts = re.split(r"(\r\n|\n|\r)", text)
    pairs = list(zip(parts[::2], parts[1::2] + [""]))
    return pairs[:-1] if pairs and pairs[-1] == ("", "") else pairs


def assert_same_lines(got: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    """Equal byte for byte, except that only the file as a whole decides the last line's ending."""
    assert [c for c, _ in got] == [c for c, _ in expected]
    assert [e for _, e in got][:-1] == [e for _, e in expected][:-1]


def read_env(path: Path, interpolate: bool = True) -> dict[str, str | None]:
    return dict(dotenv_values(path, interpolate=interpolate))


def secrets_in(data: bytes) -> set[str]:
    """Every part (split at :::) of the values of secret-looking keys."""
    text = data.decode("utf-8")
    values = [v for k, v in envfile.parse(text).last_setting().items() if SECRET_KEY.search(k) and v.value]
    return {part for v in values for part in v.value.split(":::") if len(part) >= 4}  # type: ignore[union-attr]


def copy_case(name: str, tmp_path: Path, mode: int = 0o640) -> tuple[Path, bytes]:
    target = tmp_path / name
    data = (CORPUS / name).read_bytes()
    target.write_bytes(data)
    target.chmod(mode)
    return target, data


def migrate(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli("migrate-config", *args, cwd=cwd, env=env)


def unprivileged(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI where file permissions apply, even as root (root loses its override capability)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: file permissions cannot bite")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    return subprocess.run([*prefix, sys.executable, "-m", "shmproxy", "migrate-config", *args],
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# ---------------------------------------------------------------- corpus through the CLI

# file -> (keys added, keys kept, words every warning list must hold, note)
CASES = {
    "openalgo_flattrade.env": (
        ["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE", "ENABLE_FLATTRADE", "FLATTRADE_USER_ID"], [], [], None),
    "crlf_bom_no_final_newline.env": (
        ["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE", "ENABLE_FLATTRADE", "FLATTRADE_USER_ID"], [], ["byte-order mark"], None),
    "export_double_quotes.env": (["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE"], [], [], None),
    "unquoted_zmq_last.env": (["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE"], [], [], "REDIRECT_URL names dhan"),
    "has_shm_settings.env": ([], ["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE"], [], None),
    "remote_zmq.env": (["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE"], [], ["ZMQ_HOST='192.168.1.20' is a remote"], None),
    "messy.env": (
        ["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE", "ENABLE_FLATTRADE", "FLATTRADE_USER_ID"], [],
        ["line 3: not KEY=VALUE", "line 4: DEBUG_MODE has no '='", "BROKER_API_KEY is set on lines 1, 9",
         "line 10: FEED_URL uses ${ZMQ_HOST}"], None),
    "zerodha.env": (["SHM_BUFFER_NAME", "SHM_BUFFER_SIZE"], [], [], "REDIRECT_URL names zerodha"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_migrates_keeping_every_other_byte(tmp_path: Path, name: str) -> None:
    added, kept, warnings, note = CASES[name]
    path, before = copy_case(name, tmp_path)
    result = migrate(str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    after = path.read_bytes()

    assert (report["status"], report["written"]) == ("migrated", True)
    assert [i["key"] for i in report["added"]] == added and [i["key"] for i in report["kept"]] == kept
    for words in warnings:
        assert any(words in w for w in report["warnings"]), (words, report["warnings"])
    assert (note is None and not report["notes"]) or any(note in n for n in report["notes"])
    assert not any(secret in result.stdout + result.stderr for secret in secrets_in(before))

    # Only ZMQ_* lines went, and only the block (marker + added settings) came, where the first one was.
    old, new = lines_of(before.decode()), lines_of(after.decode())
    zmq = [i for i, (c, _) in enumerate(old) if re.match(r"\s*(export\s+)?ZMQ_", c.removeprefix("\ufeff"))]
    rest = [line for i, line in enumerate(old) if i not in zmq]
    block = new[zmq[0] : zmq[0] + 1 + len(added)]
    assert_same_lines(new, rest[: zmq[0]] + block + rest[zmq[0] :])
    assert block[0][0].removeprefix("\ufeff").startswith(MARKER)
    assert [re.split(r"\s*=", c.removeprefix("export "))[0] for c, _ in block[1:]] == added
    assert after.endswith((b"\n", b"\r")) == before.endswith((b"\n", b"\r"))
    assert after.startswith(b"\xef\xbb\xbf") == before.startswith(b"\xef\xbb\xbf")

    # python-dotenv reads every untouched key as before, and the shared-memory settings as promised.
    assert Path(report["backup"]).read_bytes() == before
    interpolate = b"${ZMQ_" not in before  # such values lose their ZeroMQ part, as the report warns
    read_before, read_after = read_env(Path(report["backup"]), interpolate), read_env(path, interpolate)
    untouched = {k: v for k, v in read_before.items() if not k.lstrip("\ufeff").startswith("ZMQ_")}
    assert {k: read_after.get(k) for k in untouched} == untouched
    plain = {k.lstrip("\ufeff"): v for k, v in read_after.items()}
    for key, default in SHM_SETTINGS.items():
        assert plain[key] == (untouched.get(key) if key in kept else default)

    # Permissions carried over to the new file and the backup; no temporary file left behind.
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(Path(report["backup"]).stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, Path(report["backup"]).name])

    again = migrate(str(path))
    assert again.returncode == 0 and "already migrated" in again.stdout and path.read_bytes() == after
    assert len(list(tmp_path.iterdir())) == 2  # a run that changes nothing makes no backup either


def test_upstream_sample_migrates_to_the_exact_expected_file(tmp_path: Path) -> None:
    path, _ = copy_case("openalgo_flattrade.env", tmp_path)
    assert migrate(str(path), "--no-backup").returncode == 0
    assert path.read_bytes() == (CORPUS / "openalgo_flattrade.migrated.env").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["openalgo_flattrade.env"]


def test_new_lines_follow_the_files_own_style(tmp_path: Path) -> None:
    crlf, _ = copy_case("crlf_bom_no_final_newline.env", tmp_path)
    exported, _ = copy_case("export_double_quotes.env", tmp_path)
    unquoted, _ = copy_case("unquoted_zmq_last.env", tmp_path)
    for path in (crlf, exported, unquoted):
        assert migrate(str(path), "--no-backup").returncode == 0
    assert b"\r\nSHM_BUFFER_NAME = 'ws_proxy_buffer'\r\nSHM_BUFFER_SIZE = '1048576'\r\n" in crlf.read_bytes()
    assert b'\nexport SHM_BUFFER_NAME="ws_proxy_buffer"\nexport SHM_BUFFER_SIZE="1048576"\n' in exported.read_bytes()
    assert b'PRIVATE_KEY="-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----"\n' in exported.read_bytes()
    assert unquoted.read_bytes().endswith(b"\nSHM_BUFFER_NAME=ws_proxy_buffer\nSHM_BUFFER_SIZE=1048576")


@pytest.mark.parametrize(("name", "message"), [
    ("already_migrated.env", "already migrated"), ("no_zmq.env", "no ZMQ_* settings, nothing to migrate"),
])
def test_nothing_to_do_writes_nothing(tmp_path: Path, name: str, message: str) -> None:
    path, before = copy_case(name, tmp_path)
    for flags in ((), ("--check",)):
        result = migrate(str(path), *flags)
        assert result.returncode == 0 and message in result.stdout
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_default_file_is_dot_env_in_the_current_directory(tmp_path: Path) -> None:
    copy_case("remote_zmq.env", tmp_path)[0].rename(tmp_path / ".env")
    result = migrate(cwd=tmp_path)
    assert result.returncode == 0 and "Migrated .env" in result.stdout
    assert "SHM_BUFFER_NAME = 'ws_proxy_buffer'" in (tmp_path / ".env").read_text()


def test_serve_settings_read_the_migrated_file_as_python_dotenv_does(tmp_path: Path) -> None:
    path, _ = copy_case("has_shm_settings.env", tmp_path)
    assert migrate(str(path)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHM_", "WEBSOCKET_", "ZMQ_"))}
    code = "import sys; from shmproxy import Settings; s = Settings.load(sys.argv[1]); " \
           "print(s.shm_buffer_name, s.shm_buffer_size, s.websocket_port)"
    loaded = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    values = read_env(path)
    assert loaded.stdout.split() == [values["SHM_BUFFER_NAME"], values["SHM_BUFFER_SIZE"], values["WEBSOCKET_PORT"]]
    assert loaded.stdout.split() == ["my_ring", "4194304", "8765"]


# ---------------------------------------------------------------- flags


def test_dry_run_prints_a_masked_diff_and_writes_nothing(tmp_path: Path) -> None:
    path, before = copy_case("openalgo_flattrade.env", tmp_path)
    mtime = path.stat().st_mtime_ns
    result = migrate(str(path), "--dry-run")
    assert result.returncode == 0 and path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert len(list(tmp_path.iterdir())) == 1
    out = result.stdout
    assert f"--- {path}" in out and f"+++ {path} (migrated)" in out and "@@ -" in out
    assert "\n-ZMQ_HOST='****'\n" in out and "\n+SHM_BUFFER_NAME='ws_proxy_buffer'\n" in out
    assert "\n+ENABLE_FLATTRADE='true'\n" in out and "\n+FLATTRADE_USER_ID='****'\n" in out
    assert "\x1b[" not in out  # plain when piped
    assert not any(secret in out + result.stderr for secret in secrets_in(before))
    assert "needs migrating (nothing written)" in out


def test_dry_run_is_coloured_on_a_terminal(tmp_path: Path) -> None:
    path, _ = copy_case("zerodha.env", tmp_path)
    result = migrate(str(path), "--dry-run", env={**os.environ, "FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.returncode == 0
    assert re.search(r"\x1b\[[0-9;]*31m-ZMQ_HOST", result.stdout) and re.search(r"\x1b\[[0-9;]*32m\+SHM_", result.stdout)


def test_check_exits_1_when_needed_and_0_after(tmp_path: Path) -> None:
    path, before = copy_case("messy.env", tmp_path)
    needed = migrate(str(path), "--check")
    assert needed.returncode == 1 and "needs migrating" in needed.stdout and path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1
    assert migrate(str(path)).returncode == 0
    assert migrate(str(path), "--check").returncode == 0


def test_json_dry_run_reports_and_diffs_without_secrets(tmp_path: Path) -> None:
    path, before = copy_case("crlf_bom_no_final_newline.env", tmp_path)
    result = migrate(str(path), "--json", "--dry-run")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and path.read_bytes() == before
    assert (report["status"], report["changed"], report["written"], report["backup"]) == ("migrated", True, False, None)
    assert report["removed"] == [{"key": "ZMQ_HOST", "line": 6, "value": "****", "reason": ""},
                                 {"key": "ZMQ_PORT", "line": 7, "value": "****", "reason": ""}]
    assert {"key": "SHM_BUFFER_NAME", "line": 7, "value": "ws_proxy_buffer", "reason": "replaces ZeroMQ"} in report["added"]
    assert "+FLATTRADE_USER_ID = '****'" in report["diff"] and "-ZMQ_PORT = '****'" in report["diff"]
    assert not any(secret in result.stdout for secret in secrets_in(before))


def test_no_backup_and_symlink_kept(tmp_path: Path) -> None:
    real, _ = copy_case("zerodha.env", tmp_path, mode=0o600)
    link = tmp_path / ".env"
    link.symlink_to(real.name)
    result = migrate(str(link), "--no-backup")
    assert result.returncode == 0 and "(no backup)" in result.stdout
    assert link.is_symlink() and "SHM_BUFFER_SIZE" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "zerodha.env"]


def test_explicit_broker_and_user_id(tmp_path: Path) -> None:
    path, _ = copy_case("no_zmq.env", tmp_path)
    first = migrate(str(path), "--broker", "flattrade", "--user-id", "FT9999", "--no-backup")
    assert first.returncode == 0 and "ENABLE_FLATTRADE=true" in first.stdout and "FT9999" not in first.stdout
    assert path.read_text().endswith(
        "# shmproxy migrate-config: added ENABLE_FLATTRADE, FLATTRADE_USER_ID\n"
        "ENABLE_FLATTRADE='true'\nFLATTRADE_USER_ID='FT9999'\n"
    )
    again = migrate(str(path), "--broker", "flattrade", "--user-id", "OTHER1")
    assert again.returncode == 0 and "already migrated" in again.stdout
    assert "FLATTRADE_USER_ID is already set; left as it is" in again.stderr
    assert read_env(path)["FLATTRADE_USER_ID"] == "FT9999"


def test_flattrade_without_a_derivable_user_id_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("REDIRECT_URL=http://127.0.0.1:5000/flattrade/callback\nBROKER_API_KEY=nocolons\nZMQ_PORT=5555\n")
    result = migrate(str(path))
    assert result.returncode == 0 and "ENABLE_FLATTRADE" in path.read_text()
    assert "FLATTRADE_USER_ID could not be derived: add FLATTRADE_USER_ID=<your client id> or pass --user-id" in result.stderr


# ---------------------------------------------------------------- bad input: one line, own exit code, nothing written


@pytest.mark.parametrize(("make", "code", "words"), [
    (lambda d: d / "missing.env", 10, "does not exist"),
    (lambda d: d, 11, "is a directory"),
    (lambda d: Path("/dev/null"), 11, "is not a regular file"),
    (lambda d: (d / "latin1.env", (d / "latin1.env").write_bytes(b"PASS='caf\xe9'\n"))[0], 13, "not UTF-8 text"),
    (lambda d: (d / "utf16.env", (d / "utf16.env").write_bytes("A=1\n".encode("utf-16")))[0], 13, "not UTF-8 text"),
    (lambda d: (d / "blob.env", (d / "blob.env").write_bytes(b"A=1\n\x00\x00\x7fELF"))[0], 13, "looks binary"),
], ids=["missing", "directory", "device", "latin1", "utf16", "binary"])
def test_bad_files(tmp_path: Path, make, code: int, words: str) -> None:
    path = make(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    assert_one_line_error(migrate(str(path)), code, words)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


def test_unreadable_file(tmp_path: Path) -> None:
    path, before = copy_case("zerodha.env", tmp_path, mode=0o000)
    assert_one_line_error(unprivileged(str(path)), 12, "cannot be read: Permission denied")
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_unwritable_directory_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path, before = copy_case("zerodha.env", folder)
    folder.chmod(0o555)
    try:
        assert_one_line_error(unprivileged(str(path)), 14, "cannot write")
    finally:
        folder.chmod(0o755)
    assert path.read_bytes() == before and [p.name for p in folder.iterdir()] == ["zerodha.env"]


@pytest.mark.parametrize(("args", "words"), [
    (("--broker", "zerodha"), "--broker zerodha: shmproxy has no adapter for it"),
    (("--user-id", "FT1"), "--user-id needs --broker flattrade"),
    (("--broker", "flattrade", "--user-id", "x y"), "--user-id 'x y': use letters"),
])
def test_bad_options_exit_2(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    path, before = copy_case("zerodha.env", tmp_path)
    assert_one_line_error(migrate(str(path), *args), 2, words)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_help_teaches_with_examples_and_exit_codes() -> None:
    result = migrate("--help")
    assert result.returncode == 0
    for words in ("SHM_BUFFER_NAME=ws_proxy_buffer", "shmproxy migrate-config --dry-run", "--check", "13", "14"):
        assert words in result.stdout


def test_a_file_changed_during_migration_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"EDITED=1\n")
    with pytest.raises(EnvFileWriteError, match="changed while it was being migrated"):
        replace_content(path, b"ORIGINAL=1\n", b"NEW=1\n", backup=True)
    assert path.read_bytes() == b"EDITED=1\n" and [p.name for p in tmp_path.iterdir()] == [".env"]


# ---------------------------------------------------------------- property: generated OpenAlgo-like files


@dataclass(frozen=True)
class Doc:
    """A generated file: its lines with what each one is, and how it is laid out."""

    lines: tuple[tuple[str, str, Style | None], ...]  # (text, "zmq" | "other" | a SHM_* key, zmq line's style)
    eols: tuple[str, ...]
    bom: bool
    broker: str | None
    api_key: str | None

    @property
    def text(self) -> str:
        return ("\ufeff" if self.bom else "") + "".join(t + e for (t, _, _), e in zip(self.lines, self.eols))

    @property
    def zmq_style(self) -> Style:
        return next(style for _, tag, style in self.lines if tag == "zmq")  # type: ignore[return-value]


styles = st.builds(Style, st.booleans(), st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " "]),
                   st.sampled_from(["", "'", '"']))
value_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n'\"\\")
plain_keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda k: not k.startswith(("ZMQ_", "SHM_", "ENABLE_", "FLATTRADE_")) and k not in ("REDIRECT_URL", "BROKER_API_KEY")
)
comment_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), max_size=30)
inline_comments = st.sampled_from(["", "  # note", " # it's ::: fine", "\t#"])
trailing = st.sampled_from(["", " ", "   "])


def settings_lines(keys: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``KEY=value`` in any style, with or without an inline comment and trailing blanks."""
    return st.builds(lambda s, k, v, c, t: s.format(k, v) + c + t, styles, keys, values, inline_comments, trailing)


other_lines = st.one_of(
    st.sampled_from(["", "  ", "\t"]),
    comment_text.map(lambda t: "#" + t),
    st.sampled_from(["# SHM_SIZE = '512m'", "# ZMQ_HOST='10.0.0.1'", "# SHM_BUFFER_NAME=not_really"]),
    st.sampled_from(["this is not a setting", "= orphan value", "DEBUG_MODE"]),
    settings_lines(plain_keys, st.text(value_chars, max_size=20).filter(lambda v: not v[:1].isspace())),
    settings_lines(plain_keys, st.sampled_from(["FT1:::abc#def", "p@ss # not comment", "a ::: b"])),
).map(lambda t: (t, "other", None))


@st.composite
def env_docs(draw) -> Doc:
    lines = draw(st.lists(other_lines, max_size=12))

    def insert(line: tuple[str, str, Style | None]) -> None:
        lines.insert(draw(st.integers(0, len(lines))), line)

    for _ in range(draw(st.integers(0, 3))):
        style = draw(styles)
        key = draw(st.sampled_from(["ZMQ_HOST", "ZMQ_PORT", "ZMQ_HWM"]))
        insert((style.format(key, draw(st.sampled_from(["127.0.0.1", "5555", "10.1.2.3"]))) + draw(inline_comments), "zmq", style))
    for key in draw(st.sets(st.sampled_from(sorted(SHM_SETTINGS)))):
        insert((draw(settings_lines(st.just(key), st.sampled_from(["my_ring", "2097152"]))), key, None))
    broker = draw(st.sampled_from([None, "flattrade", "zerodha"]))
    api_key = draw(st.sampled_from([None, "FT123:::k3y", "nocolons"]))
    for key, value in (("REDIRECT_URL", broker and f"http://127.0.0.1:5000/{broker}/callback"), ("BROKER_API_KEY", api_key)):
        if value:
            insert((draw(settings_lines(st.just(key), st.just(value))), "other", None))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    eols = [draw(st.sampled_from(["\n", "\r\n"])) if newline == "mixed" else newline for _ in lines]
    if lines and lines[-1][0] and draw(st.booleans()):
        eols[-1] = ""  # no final newline
    return Doc(tuple(lines), tuple(eols), draw(st.booleans()), broker, api_key)


def expected_block(doc: Doc) -> list[str]:
    """The settings the block must hold, in the first ZeroMQ line's style, worked out from the generator."""
    present = {tag for _, tag, _ in doc.lines}
    wanted = [(k, v) for k, v in SHM_SETTINGS.items() if k not in present]
    if doc.broker == "flattrade":
        wanted.append(("ENABLE_FLATTRADE", "true"))
        if doc.api_key and ":::" in doc.api_key:
            wanted.append(("FLATTRADE_USER_ID", doc.api_key.split(":::")[0]))
    return [doc.zmq_style.format(k, v) for k, v in wanted]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=env_docs())
def test_generated_files_lose_only_zmq_lines_and_read_the_same(scratch: Path, doc: Doc) -> None:
    before = doc.text
    migration = plan(envfile.parse(before))
    after = migration.after.text
    zmq = [i for i, (_, tag, _) in enumerate(doc.lines) if tag == "zmq"]
    if not zmq:  # nothing to replace: not even a REDIRECT_URL naming a broker changes the file
        assert after == before and not migration.changed
        return

    # Byte for byte: the input without its ZeroMQ lines == the output without the migrated block.
    kept = [(t, e) for i, ((t, _, _), e) in enumerate(zip(doc.lines, doc.eols)) if i not in zmq]
    new = lines_of(after.removeprefix("\ufeff"))
    at, block = zmq[0], expected_block(doc)
    got_block = [t for t, _ in new[at : at + 1 + len(block)]]
    assert got_block[0].startswith(MARKER) and got_block[1:] == block
    newline = next(e for e in doc.eols if e) if any(doc.eols) else "\n"
    assert_same_lines(new, kept[:at] + [(t, newline) for t in got_block] + kept[at:])
    assert after.startswith("\ufeff") == doc.bom
    assert after.endswith(("\n", "\r")) == before.endswith(("\n", "\r"))

    # python-dotenv reads every untouched key as before (raw and interpolated).
    (scratch / "before.env").write_text(before, encoding="utf-8", newline="")
    (scratch / "after.env").write_text(after, encoding="utf-8", newline="")
    for interpolate in (False, "${ZMQ_" not in before):  # ${ZMQ_...} values lose that part (warned about)
        read_before = read_env(scratch / "before.env", interpolate)
        read_after = read_env(scratch / "after.env", interpolate)
        untouched = {k: v for k, v in read_before.items() if not k.lstrip("\ufeff").startswith("ZMQ_")}
        assert {k: read_after.get(k) for k in untouched} == untouched

    # Idempotent: the result needs nothing more.
    again = plan(migration.after)
    assert not again.changed and again.status == "already-migrated"

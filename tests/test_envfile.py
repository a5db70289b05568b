"""The lossless .env reader: every byte back, every key and value as python-dotenv reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmproxy.core import envfile, errors
from shmproxy.core.envfile import Kind, Style

CORPUS = sorted((Path(__file__).parent / "data" / "env").glob("*.env"))
# Characters that make .env grammar interesting: quotes, escapes, comments, "=", every line ending,
# whitespace python-dotenv knows (\x0b, \x0c, \x85, \u2028) and a BOM in odd places.
_TRICKY = "'\"\\#=:$ {}\t\r\n\x0b\x0c\x85\u2028\ufeffexportKEY_ab1é"
# Files are UTF-8: lone surrogates (category Cs) cannot occur in one, so they are not generated.
env_texts = st.text(
    alphabet=st.sampled_from(_TRICKY) | st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    max_size=200,
)


def read_like_dotenv(path: Path, text: str) -> dict[str, str | None]:
    """What python-dotenv reads from ``text`` once written to ``path`` (a BOM turns into part of a key)."""
    path.write_bytes(text.encode("utf-8"))
    return dict(dotenv_values(path, interpolate=False))


def as_read(env: envfile.EnvFile) -> dict[str, str | None]:
    return {key: entry.value for key, entry in env.last_setting().items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=env_texts)
def test_any_text_comes_back_byte_for_byte_and_reads_like_dotenv(tmp_path: Path, text: str) -> None:
    env = envfile.parse(text)
    assert env.text == text
    assert "".join(e.text + e.eol for e in env.entries) == text.removeprefix("\ufeff")
    # Keys as the user wrote them: python-dotenv would glue a BOM to the first key.
    assert as_read(env) == read_like_dotenv(tmp_path / "fuzz.env", text.removeprefix("\ufeff"))


@settings(max_examples=200, deadline=None)
@given(text=env_texts)
def test_entries_cover_consecutive_lines(text: str) -> None:
    entries, line = envfile.parse(text).entries, 1
    for i, entry in enumerate(entries):
        assert entry.line == line
        assert entry.eol or i == len(entries) - 1  # only the last line may lack a line ending
        line = entry.last_line + 1


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_round_trips_and_reads_like_dotenv(tmp_path: Path, path: Path) -> None:
    data = path.read_bytes()
    env = envfile.load(path)
    assert env.to_bytes() == data
    assert as_read(env) == read_like_dotenv(tmp_path / "copy.env", data.decode().removeprefix("\ufeff"))


def test_entry_kinds_styles_and_line_numbers() -> None:
    env = envfile.parse(
        "# c\r\n\r\nexport A = 'x y'  # note  \r\nB=\"1\"\r\nC=plain # c\r\nD\r\n"
        "not a setting\r\nE='multi\r\nline'\r\n  \r\n"
    )
    kinds = [(e.kind, e.line, e.key) for e in env.entries]
    assert kinds == [
        (Kind.COMMENT, 1, None), (Kind.BLANK, 2, None), (Kind.SETTING, 3, "A"), (Kind.SETTING, 4, "B"),
        (Kind.SETTING, 5, "C"), (Kind.SETTING, 6, "D"), (Kind.INVALID, 7, None), (Kind.SETTING, 8, "E"),
        (Kind.BLANK, 10, None),
    ]
    a, b, c, d, e = (env.last_setting()[k] for k in "ABCDE")
    assert a.style == Style(export=True, before=" ", after=" ", quote="'") and a.value == "x y"
    assert b.style == Style(quote='"') and c.style == Style() and c.value == "plain"
    assert d.value is None and d.value_span is None
    assert (e.value, e.where, e.eol) == ("multi\nline", "lines 8-9", "\r\n")
    assert env.newline == "\r\n" and env.ends_with_newline


def test_style_formats_lines_that_read_back() -> None:
    for style in (Style(), Style(True, " ", " ", "'"), Style(quote='"'), Style(before="\t", after="  ")):
        line = style.format("SHM_BUFFER_NAME", "ws_proxy_buffer")
        assert as_read(envfile.parse(line)) == {"SHM_BUFFER_NAME": "ws_proxy_buffer"}
        assert envfile.parse(line).entries[0].style == style


secrets = st.from_regex(r"SECRET[a-z0-9:#@/ ]{1,12}[a-z0-9]", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    secret=secrets,
    template=st.sampled_from([
        "KEY={v}", "KEY = '{v}'", 'export KEY="{v}"  # comment', "KEY='{v}'   ", "#KEY={v}", "# export KEY = '{v}'",
        "KEY='x\n{v}'", "broken '{v}", "KEY='{v}' trailing junk",
    ]),
)
def test_masking_hides_every_secret(secret: str, template: str) -> None:
    env = envfile.parse("A=1\n" + template.format(v=secret) + "\nSHM_BUFFER_NAME=shown\n")
    masked = "\n".join(env.masked_lines(lambda key: key.startswith("SHM_")))
    assert "SECRET" not in masked
    assert "SHM_BUFFER_NAME=shown" in masked and "A=****" in masked


def test_masking_keeps_layout_and_shown_values() -> None:
    env = envfile.parse("K = 'abc'  # why\nexport E=\nSHM_SIZE='512m'\n# SHM_X = '1'\n# plain words\n")
    assert env.masked_lines(lambda k: k.startswith("SHM_")) == [
        "K = '****'  # why", "export E=", "SHM_SIZE='512m'", "# SHM_X = '1'", "# plain words",
    ]


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, "EnvFileMissingError", "does not exist"),
        (b"A=\xff\n", "EnvFileNotTextError", "not UTF-8 text (byte 0xff at offset 2)"),
        (b"\xff\xfeA\x00=\x001\x00", "EnvFileNotTextError", "not UTF-8"),
        (b"A=1\n\x00\x01\x02", "EnvFileNotTextError", "looks binary (NUL byte at offset 4)"),
    ],
)
def test_load_refuses_what_is_not_an_env_file(tmp_path: Path, content: bytes | None, error: str, message: str) -> None:
    path = tmp_path / "x.env"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(getattr(errors, error), match=message.replace("(", r"\(").replace(")", r"\)")):
        envfile.load(path)


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.EnvFileNotFileError, match="is a directory"):
        envfile.load(tmp_path)

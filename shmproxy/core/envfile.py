"""A lossless reader of ``.env`` files: every byte kept, every key read as python-dotenv reads it.

The file is cut into :class:`Entry` items, one per logical line (a quoted value may span several
physical lines), each holding its exact source text and line ending, so ``EnvFile.text`` gives the
input back byte for byte: BOM, CRLF, quoting, ``export``, inline comments and trailing spaces.

Keys, values and which lines are malformed come from python-dotenv's own parser rather than a
second grammar: OpenAlgo loads these files with python-dotenv, so "what the file says" is whatever
python-dotenv reads, oddities included (an unclosed quote swallows the lines up to the next quote).
python-dotenv reads files with universal newlines, so it parses a copy with every line ending
turned into ``\\n``; physical lines correspond one to one, which maps its results back onto the
original text.
"""

from __future__ import annotations

import io
import re
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

from dotenv.parser import parse_stream

from .errors import EnvFileMissingError, EnvFileNotFileError, EnvFileNotTextError, EnvFileUnreadableError

BOM = "\ufeff"
MASK = "****"

_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r|$)")
_NEWLINE = re.compile(r"\r\n|\n|\r")  # the line endings python-dotenv knows
_LEADING_SPACE = re.compile(r"\s*")  # python-dotenv skips this before each binding, blank lines included
# The start of an assignment, in python-dotenv's grammar: indent, export, key, spaces, "=", spaces.
_HEAD = re.compile(r"[^\S\r\n]*(export[^\S\r\n]+)?(?:'[^']+'|[^=#\s]+)([^\S\r\n]*)(?:=([^\S\r\n]*))?")
_QUOTED = {"'": re.compile(r"'((?:\\'|[^'])*)'"), '"': re.compile(r'"((?:\\"|[^"])*)"')}
# A commented-out assignment such as "# BROKER_API_SECRET = 'x'": its value is masked like a live one.
_COMMENTED = re.compile(r"([^\S\r\n]*#+[^\S\r\n]*(?:export[^\S\r\n]+)?([A-Za-z_][\w.]*)[^\S\r\n]*=[^\S\r\n]*)(.*)", re.S)


class Kind(Enum):
    BLANK = "blank"
    COMMENT = "comment"
    SETTING = "setting"  # KEY=VALUE, or a bare KEY (value None)
    INVALID = "invalid"  # python-dotenv cannot parse it and skips it


@dataclass(frozen=True)
class Style:
    """How a file writes an assignment: ``export``, spaces around ``=``, quote character."""

    export: bool = False
    before: str = ""
    after: str = ""
    quote: str = ""

    def format(self, key: str, value: str) -> str:
        """``key=value`` in this style; ``value`` must need no escaping (shmproxy writes plain tokens)."""
        prefix = "export " if self.export else ""
        return f"{prefix}{key}{self.before}={self.after}{self.quote}{value}{self.quote}"


@dataclass(frozen=True)
class Entry:
    """One logical line: its exact text (inner line endings included) and final line ending."""

    kind: Kind
    text: str
    eol: str  # "\n", "\r\n", "\r", or "" for a last line without one
    line: int  # first physical line, 1-based
    key: str | None = None
    value: str | None = None  # as python-dotenv decodes it; None for a bare KEY
    value_span: tuple[int, int] | None = None  # the value's source in ``text``, inside any quotes
    style: Style | None = None

    @property
    def last_line(self) -> int:
        return self.line + len(_NEWLINE.findall(self.text))

    @property
    def where(self) -> str:
        """"line 7" or "lines 7-9", for messages."""
        last = self.last_line
        return f"line {self.line}" if last == self.line else f"lines {self.line}-{last}"

    def masked(self, shown: Callable[[str], bool]) -> str:
        """The text with every value hidden except those of keys for which ``shown(key)`` is true."""
        if self.kind is Kind.INVALID:
            return MASK  # no telling where a secret sits in a line python-dotenv cannot read
        if self.kind is Kind.COMMENT:
            match = _COMMENTED.fullmatch(self.text)
            if match and match.group(3) and not shown(match.group(2)):
                return match.group(1) + MASK
            return self.text
        if self.kind is Kind.SETTING and self.value_span and self.value_span[0] < self.value_span[1]:
            if not shown(self.key or ""):
                start, end = self.value_span
                return self.text[:start] + MASK + self.text[end:]
        return self.text


@dataclass(frozen=True)
class EnvFile:
    """A parsed ``.env`` file; ``text`` reproduces the source exactly."""

    entries: tuple[Entry, ...]
    bom: bool = False

    @property
    def text(self) -> str:
        return (BOM if self.bom else "") + "".join(e.text + e.eol for e in self.entries)

    def to_bytes(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def newline(self) -> str:
        """The line ending new lines should use: the file's first one, else ``\\n``."""
        return next((e.eol for e in self.entries if e.eol), "\n")

    @property
    def ends_with_newline(self) -> bool:
        return not self.entries or self.entries[-1].eol != ""

    def settings(self) -> list[Entry]:
        return [e for e in self.entries if e.kind is Kind.SETTING]

    def last_setting(self) -> dict[str, Entry]:
        """Key -> the entry python-dotenv takes its value from (the last one)."""
        return {e.key: e for e in self.settings() if e.key is not None}

    def masked_lines(self, shown: Callable[[str], bool]) -> list[str]:
        """Physical lines (without line endings) with values hidden as in :meth:`Entry.masked`."""
        return [line for e in self.entries for line in _NEWLINE.split(e.masked(shown))]


def parse(text: str) -> EnvFile:
    """Cut ``text`` (already decoded) into entries; ``parse(t).text == t`` for every string."""
    bom = text.startswith(BOM)
    physical = [(m.group(1), m.group(2)) for m in _iter_lines(text[1:] if bom else text)]
    normalized = "".join(content + ("\n" if eol else "") for content, eol in physical)
    entries: list[Entry] = []
    first = 0  # index of the physical line where the next binding starts
    for binding in parse_stream(io.StringIO(normalized)):
        source = binding.original.string
        span = source.count("\n") + (0 if source.endswith("\n") else 1)
        lead = _LEADING_SPACE.match(source).end()  # type: ignore[union-attr]
        blank = span if lead == len(source) else source[:lead].count("\n")
        entries += [Entry(Kind.BLANK, *_join(physical[i : i + 1]), i + 1) for i in range(first, first + blank)]
        if blank < span:
            lines, number = physical[first + blank : first + span], first + blank + 1
            if binding.error:
                entries.append(Entry(Kind.INVALID, *_join(lines), number))
            elif binding.key is None:
                entries.append(Entry(Kind.COMMENT, *_join(lines), number))
            else:
                entries.append(_setting(*_join(lines), number, binding.key, binding.value))
        first += span
    return EnvFile(tuple(entries), bom)


def load(path: Path) -> EnvFile:
    """Read and parse the file at ``path``; problems raise one-line :class:`EnvFileError` subclasses."""
    return parse(read_text(path))


def read_text(path: Path) -> str:
    """The file's text, refusing what is not a readable, regular, UTF-8 text file."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise EnvFileNotFileError(f"{path} is a directory, not an env file")
        if not stat.S_ISREG(mode):
            raise EnvFileNotFileError(f"{path} is not a regular file")
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise EnvFileMissingError(f"{path} does not exist") from None
    except OSError as exc:  # permission denied, I/O error
        raise EnvFileUnreadableError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvFileNotTextError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise EnvFileNotTextError(f"{path} looks binary (NUL byte at offset {data.index(0)}), not an env file")
    return text


def _iter_lines(text: str) -> Iterator[re.Match[str]]:
    """Physical lines of ``text``, split only where python-dotenv splits (``\\r\\n``, ``\\n``, ``\\r``)."""
    pos = 0
    while pos < len(text):
        match = _LINE.match(text, pos)
        assert match is not None  # the pattern matches anywhere, possibly empty
        yield match
        pos = match.end()


def _join(lines: list[tuple[str, str]]) -> tuple[str, str]:
    """(text, final line ending) of consecutive physical lines given as (content, line ending)."""
    return "".join(content + eol for content, eol in lines[:-1]) + lines[-1][0], lines[-1][1]


def _setting(text: str, eol: str, number: int, key: str, value: str | None) -> Entry:
    """A SETTING entry, with where its value sits and how it is written."""
    head = _HEAD.match(text)
    assert head is not None  # python-dotenv parsed this very text as an assignment
    export, before, after = head.group(1) is not None, head.group(2), head.group(3)
    span, quote = None, ""
    if after is not None:
        start = head.end()
        quote = text[start : start + 1] if text[start : start + 1] in _QUOTED else ""
        if quote:
            end = _QUOTED[quote].match(text, start).end()  # type: ignore[union-attr]
            span = (start + 1, end - 1)
        else:
            span = (start, start + len(value or ""))
    return Entry(Kind.SETTING, text, eol, number, key, value, span, Style(export, before, after or "", quote))

"""Exceptions raised by shmproxy's core.

Every error carries a one-line, human-readable message naming what is wrong, so the CLI can print
``str(exc)`` as-is and exit with the class's ``exit_code``.
"""

from __future__ import annotations


class ShmProxyError(Exception):
    """Base class of every error shmproxy raises on purpose."""

    exit_code = 1


class SettingsError(ShmProxyError, ValueError):
    """A setting (environment variable, .env entry or flag) has a value that is not allowed."""

    exit_code = 2


class SegmentError(ShmProxyError):
    """Something is wrong with a shared-memory segment."""

    exit_code = 3


class SegmentNotFoundError(SegmentError, FileNotFoundError):
    """The named segment does not exist."""

    exit_code = 4


class ForeignSegmentError(SegmentError):
    """The segment exists but is not a shmproxy ring (other magic, version or layout)."""

    exit_code = 5


class CorruptSegmentError(SegmentError):
    """The segment claims to be a shmproxy ring but its header is inconsistent."""

    exit_code = 6


class RecordError(ShmProxyError, ValueError):
    """A tick cannot be turned into a record (missing field, bad value, symbol too long)."""

    exit_code = 2


class EnvFileError(ShmProxyError):
    """A ``.env`` file cannot be used (``migrate-config``); each subclass has an exit code of its own."""


class EnvFileMissingError(EnvFileError):
    """The file does not exist."""

    exit_code = 10


class EnvFileNotFileError(EnvFileError):
    """The path is a directory or another non-regular file."""

    exit_code = 11


class EnvFileUnreadableError(EnvFileError):
    """The file exists but cannot be read (permissions, I/O error)."""

    exit_code = 12


class EnvFileNotTextError(EnvFileError):
    """The content is not UTF-8 text (another encoding, or binary)."""

    exit_code = 13


class EnvFileWriteError(EnvFileError):
    """The backup or the new file cannot be written; the original is left as it was."""

    exit_code = 14


class MigrateOptionError(ShmProxyError):
    """An option of ``migrate-config`` cannot be used (unknown broker, bad user id)."""

    exit_code = 2

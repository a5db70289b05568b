"""Replace a file's content safely: timestamped backup, temporary file + rename, same permissions.

Either the file holds the new content and (if asked) a backup holds the old, or nothing changed:
on any error the temporary file and the backup are removed again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import datetime
from pathlib import Path

from .errors import EnvFileWriteError


def replace_content(path: Path, old: bytes, new: bytes, *, backup: bool) -> Path | None:
    """Write ``new`` over ``path``, which must still hold ``old``; return the backup's path, if made.

    A symlink stays a symlink: the file it points to is replaced. Mode and (where allowed) owner
    of the original carry over to the new file and the backup, which hold secrets alike.
    """
    target = path.resolve()
    made: list[Path] = []
    try:
        st = target.stat()
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        made.append(Path(name))
        _fill(fd, new, st)
        if backup:
            made.append(_backup(target, old, st))
        if target.read_bytes() != old:  # edited since it was read: do not overwrite that edit
            raise EnvFileWriteError(f"{path} changed while it was being migrated; nothing written, run again")
        os.replace(made[0], target)
    except BaseException as exc:
        for leftover in made:
            leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise EnvFileWriteError(f"cannot write {path}: {exc.strerror or exc}; nothing changed") from None
        raise
    _sync_directory(target.parent)
    return made[1] if backup else None


def _backup(target: Path, data: bytes, st: os.stat_result) -> Path:
    """A new file ``<name>.bak-YYYYmmdd-HHMMSS`` (``-1``, ``-2``... when taken) beside ``target``."""
    stem = f"{target.name}.bak-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1000):
        candidate = target.with_name(stem if n == 0 else f"{stem}-{n}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            _fill(fd, data, st)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise EnvFileWriteError(f"cannot choose a backup name beside {target}: {stem}-1 to -999 exist")


def _fill(fd: int, data: bytes, st: os.stat_result) -> None:
    """Write ``data`` to the new file ``fd`` (created 0600), give it ``st``'s mode and owner, close it."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        with contextlib.suppress(PermissionError):  # only root may hand a file to another user
            os.fchown(f.fileno(), st.st_uid, st.st_gid)
        os.fchmod(f.fileno(), st.st_mode & 0o7777)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: not every filesystem allows fsync on a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Atomic file writes, ``fsync`` of folders, digests, and the error for unusable files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "sha256_file"]


class CheckpointError(ValueError):
    """A model file, checkpoint or run file that cannot be used; the message says why."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """``fsync`` a folder so that renames and new entries in it survive a crash."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | Callable[[Any], None]) -> Path:
    """Write ``path`` atomically: a reader sees the old file or the complete new one.

    ``data`` is the bytes to write, or a function that writes into the open binary
    file. The content goes to a temporary file in the same folder, is flushed and
    ``fsync``-ed, replaces ``path`` with ``os.replace``, and the folder is ``fsync``-ed.
    On any error (a full disk included) the temporary file is removed and ``path`` is
    left as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix="." + p.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results may be shared read-only
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(p.parent)
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

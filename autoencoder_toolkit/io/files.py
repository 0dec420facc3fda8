"""Atomic file writes, ``fsync`` of folders, digests, and the error for unusable files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["system_reason", "CheckpointError", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "sha256_file", "AtomicFile", "NpyWriter"]


_SYSTEM_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EROFS: "the storage is read-only", errno.EIO: "the storage reported an input/output error"}


def system_reason(err: OSError) -> str:
    """Why the system refused a file operation, in words (``"the disk is full"``, ...)."""
    return _SYSTEM_REASONS.get(err.errno or -1, err.strerror or " ".join(str(err).split()) or type(err).__name__)


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


class AtomicFile:
    """A file written piece by piece that appears at ``path`` whole, or not at all.

    The pieces go to a temporary file in the target's folder; :meth:`commit` ``fsync`` s it
    and moves it into place (``os.replace``), :meth:`discard` (or leaving the ``with`` block
    with an error) removes it and leaves ``path`` as it was. ``mode`` is ``"wb"`` or ``"w"``
    (UTF-8 text)::

        with AtomicFile("codes.csv", "w") as f:
            f.write("z1,z2\n")
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "wb") -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
        self.path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix="." + self.path.name + ".", suffix=".part")
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {}))

    def write(self, data: Any) -> None:
        """Append ``data`` (bytes or text, as the mode says)."""
        self._file.write(data)

    def reserve(self, n_bytes: int) -> None:
        """Reserve ``n_bytes`` for the file now (``posix_fallocate``), so that a disk without room fails at
        once with ``ENOSPC`` rather than half way."""
        self._file.flush()
        if hasattr(os, "posix_fallocate") and n_bytes > 0:
            os.posix_fallocate(self._file.fileno(), 0, n_bytes)

    def commit(self) -> Path:
        """Make the file durable and move it into place."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file; ``path`` is left as it was."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


class NpyWriter(AtomicFile):
    """Write a ``.npy`` array of known shape row block by row block, atomically (an :class:`AtomicFile`).

    The file's full size is reserved first (``posix_fallocate``), so a disk without room
    fails at once with ``ENOSPC`` rather than half way (and no sparse memory map can fault
    on a full disk)::

        with NpyWriter("codes.npy", (n, d), np.float32) as w:
            for block in blocks:
                w.write(block)
    """

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, ...], dtype: Any) -> None:
        super().__init__(path, "wb")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self._written = 0
        try:
            np.lib.format.write_array_header_1_0(self._file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                              "fortran_order": False, "shape": self.shape})
            self._file.flush()
            self.reserve(self._file.tell() + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)
        except BaseException:
            self.discard()
            raise

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` (of the array's trailing shape)."""
        block = np.ascontiguousarray(rows, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self._written + block.shape[0] > self.shape[0]:
            raise ValueError(f"rows: expected blocks of shape (k, {', '.join(map(str, self.shape[1:]))}) adding up "
                             f"to {self.shape[0]} rows, got {block.shape} after {self._written} rows")
        self._file.write(block.tobytes())
        self._written += block.shape[0]

    def commit(self) -> Path:
        """Check that every row was written, make the file durable and move it into place."""
        if self._written != self.shape[0]:
            raise ValueError(f"rows: {self._written} of {self.shape[0]} rows were written")
        return super().commit()

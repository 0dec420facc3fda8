"""The safetensors format, read strictly and written without torch.

A safetensors file is an 8-byte little-endian header length ``N``, a JSON header of ``N``
bytes (``{name: {"dtype", "shape", "data_offsets": [start, stop]}, "__metadata__":
{str: str}}``) and the raw little-endian tensor bytes. Nothing in it can execute code.

:func:`read_header` reads and checks the header alone (bounded: at most
:data:`MAX_HEADER` bytes), so that a caller can compare the declared tensors with what it
expects *before* reading or allocating anything else; :func:`read` then reads the data.
Every inconsistency (a foreign format such as a pickle, a truncated file, offsets that
overlap or leave gaps, a shape that does not match its bytes, an unsupported dtype) is a
:class:`~.files.CheckpointError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .files import CheckpointError

__all__ = ["DTYPES", "MAX_HEADER", "TensorEntry", "Header", "read_header", "read", "read_bytes", "encode",
           "numpy_entry", "to_numpy", "describe_foreign"]

#: safetensors dtype code -> (NumPy dtype name or None, bytes per element).
DTYPES: dict[str, tuple[str | None, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": (None, 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U8": ("uint8", 1), "BOOL": ("bool", 1),
}
#: The floating-point dtype codes.
FLOAT_CODES = ("F64", "F32", "F16", "BF16")
_CODES = {np.dtype(name): code for code, (name, _) in DTYPES.items() if name is not None}

#: Largest header accepted, in bytes (the format itself allows 100 MB; a model's header is
#: a few kilobytes, plus its architecture JSON in the metadata).
MAX_HEADER = 16 * 2**20
_MAX_RANK = 8


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a file: its dtype code, shape and byte range within the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int


@dataclass(frozen=True)
class Header:
    """A checked header: the tensors (in file order) and the string metadata."""

    path: Path
    entries: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int
    size: int


def describe_foreign(head: bytes) -> str | None:
    """Name the format of a file that is not safetensors, from its first bytes."""
    if head[:2] == b"PK":
        return "a zip archive (the format of torch.save)"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle (the format of torch.save with _use_new_zipfile_serialization=False)"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    return None


def _entry(name: Any, info: Any, path: Path, what: str) -> TensorEntry:
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{what}: '{path}' is corrupt (a tensor without a name)")
    try:
        dtype = info["dtype"]
        shape = tuple(info["shape"])
        start, stop = info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{what}: '{path}' is corrupt (bad header entry for tensor {name!r})") from None
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CheckpointError(f"{what}: '{path}': tensor {name!r} has unsupported dtype {dtype!r}")
    if len(shape) > _MAX_RANK or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise CheckpointError(f"{what}: '{path}' is corrupt (tensor {name!r} has shape {list(shape)!r:.80})")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (start, stop)) or stop < start:
        raise CheckpointError(f"{what}: '{path}' is corrupt (tensor {name!r} has offsets {[start, stop]!r:.80})")
    if stop - start != math.prod(shape) * DTYPES[dtype][1]:
        raise CheckpointError(f"{what}: '{path}' is corrupt (tensor {name!r}: shape {list(shape)} does not match "
                              f"its {stop - start} bytes)")
    return TensorEntry(name, dtype, shape, start, stop)


def read_header(path: str | os.PathLike[str], what: str = "model") -> Header:
    """Read and check the header of a safetensors file; the tensor data are not read.

    The tensors must tile the data section exactly (no gap, no overlap, nothing after
    the last one), so that the file's size bounds what reading it costs.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{what}: no such file: '{p}'")
    if p.is_dir():
        raise CheckpointError(f"{what}: expected a .safetensors file, got the directory '{p}'")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(9)
        foreign = None if head[8:9] == b"{" else describe_foreign(head[:8])
        if foreign is not None:
            raise CheckpointError(
                f"{what}: '{p}' is {foreign}, not a safetensors file; pickled files are never loaded "
                "(unpickling can run arbitrary code): re-save the weights with "
                "autoencoder_toolkit.checkpoints.save_model"
            )
        if size < 8:
            raise CheckpointError(f"{what}: '{p}' is truncated ({size} bytes, shorter than a safetensors header)")
        (n_header,) = struct.unpack("<Q", head[:8])
        if n_header > MAX_HEADER:
            raise CheckpointError(f"{what}: '{p}' is not a model file this library reads (a header of {n_header} "
                                  f"bytes; at most {MAX_HEADER} are accepted)")
        if 8 + n_header > size:
            raise CheckpointError(f"{what}: '{p}' is truncated: the header declares {n_header} bytes but the file "
                                  f"has {size - 8} after the length field")
        f.seek(8)
        raw_header = f.read(n_header)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: also an integer too long
        raise CheckpointError(f"{what}: '{p}' is corrupt or not a safetensors file (header: {err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what}: '{p}' is corrupt (the header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CheckpointError(f"{what}: '{p}' is corrupt (metadata must map strings to strings)")
    entries = {name: _entry(name, info, p, what) for name, info in header.items()}
    n_data = size - 8 - n_header
    end = 0
    for e in sorted(entries.values(), key=lambda e: (e.start, e.stop)):
        if e.start != end:
            problem = "overlaps another" if e.start < end else "leaves a gap before it"
            raise CheckpointError(f"{what}: '{p}' is corrupt (tensor {e.name!r} {problem})")
        end = e.stop
    if end > n_data:
        raise CheckpointError(f"{what}: '{p}' is truncated: its tensors need {end} bytes of data but only {n_data} "
                              "are present")
    if end != n_data:
        raise CheckpointError(f"{what}: '{p}' is corrupt ({n_data} data bytes, the header accounts for {end})")
    return Header(p, entries, metadata, 8 + n_header, size)


def _data(header: Header, what: str) -> bytes:
    """The data section of a checked file, read once; a file that changed size since is refused."""
    with open(header.path, "rb") as f:
        f.seek(header.data_start)
        data = f.read(header.size - header.data_start + 1)
    if len(data) != header.size - header.data_start:
        raise CheckpointError(f"{what}: '{header.path}' changed while it was read")
    return data


def to_numpy(raw: tuple[str, tuple[int, ...], bytes], name: str = "tensor") -> np.ndarray:
    """A raw tensor ``(dtype code, shape, little-endian bytes)`` as a new NumPy array (``bfloat16`` is refused)."""
    dtype, shape, data = raw
    np_name, _ = DTYPES[dtype]
    if np_name is None:
        raise CheckpointError(f"{name}: a {dtype} tensor, which NumPy cannot hold")
    arr = np.frombuffer(data, dtype=np.dtype(np_name).newbyteorder("<"), count=math.prod(shape))
    return arr.reshape(shape).astype(np_name, copy=True)


def read(header: Header, what: str = "model") -> dict[str, np.ndarray]:
    """The tensors of a checked file as NumPy arrays (a ``bfloat16`` tensor is refused)."""
    return {name: to_numpy(raw, f"{what}: '{header.path}': tensor {name!r}")
            for name, raw in read_bytes(header, what).items()}


def read_bytes(header: Header, what: str = "model") -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """The tensors of a checked file as ``(dtype code, shape, raw little-endian bytes)``."""
    data = _data(header, what)
    return {name: (e.dtype, e.shape, data[e.start:e.stop]) for name, e in header.entries.items()}


def encode(tensors: Mapping[str, tuple[str, tuple[int, ...], bytes]], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file holding ``tensors`` (``name: (dtype code, shape, raw bytes)``) and ``metadata``."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    blobs = []
    for name, (dtype, shape, raw) in tensors.items():
        if dtype not in DTYPES:
            raise ValueError(f"tensors: {name!r} has unsupported dtype {dtype!r}")
        if len(raw) != math.prod(shape) * DTYPES[dtype][1]:
            raise ValueError(f"tensors: {name!r} has {len(raw)} bytes for shape {list(shape)} of {dtype}")
        header[name] = {"dtype": dtype, "shape": [int(s) for s in shape], "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data start on an 8-byte boundary, as other writers do
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def numpy_entry(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """A NumPy array as ``(dtype code, shape, little-endian bytes)`` for :func:`encode`."""
    a = np.asarray(array)
    a = np.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray makes a 0-d array (1,)
    code = _CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"tensors: dtype {a.dtype} cannot be written to safetensors")
    return code, tuple(int(s) for s in a.shape), a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()

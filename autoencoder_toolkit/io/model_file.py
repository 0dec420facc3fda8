"""The one model file format, read by the torch loader and by the NumPy/CuPy inference loader.

A model file is one ``.safetensors`` file: the weights as tensors (named as in the
model's ``state_dict``) and, in its metadata,

``format``, ``format_version``
    ``"autoencoder_toolkit.model"`` and ``1``;
``config``, ``config_version``
    the architecture as JSON (:mod:`.architecture`) and ``1``;
``sha256``
    a SHA-256 digest over the configuration text and every tensor's name, dtype, shape
    and bytes (:func:`tensor_digest`);
``library_version`` (and ``torch_version`` when torch wrote it).

:func:`read_model` checks, in this order and before reading any tensor data: the header
(:func:`.safetensors.read_header`), the metadata, the configuration
(:func:`.architecture.check_config`: bounded depth and size, known node types and
arguments) and that the tensors it declares are exactly the file's, names and shapes.
Only then are the tensor bytes read (memory bounded by the file's size) and the digest
compared. Every failure is a :class:`~.files.CheckpointError` that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .. import __version__
from . import safetensors
from .safetensors import FLOAT_CODES
from .architecture import ArchitectureError, check_config, expected_tensors
from .files import CheckpointError, atomic_write_bytes

__all__ = ["MODEL_FORMAT", "FORMAT_VERSION", "CONFIG_VERSION", "tensor_digest", "encode_model", "write_model",
           "read_model", "config_text", "float_code"]

MODEL_FORMAT = "autoencoder_toolkit.model"
#: The metadata key of files written by ``FrozenModule.save`` of earlier versions (no longer read).
LEGACY_FROZEN_KEY = "autoencoder_toolkit.inference"
#: Version of the file layout written here.
FORMAT_VERSION = 1
#: Version of the architecture configuration format.
CONFIG_VERSION = 1

Raw = tuple[str, tuple[int, ...], bytes]


def config_text(config: Mapping[str, Any]) -> str:
    """The canonical JSON text of a configuration (what files store and digests cover)."""
    return json.dumps(config, ensure_ascii=False, sort_keys=True)


def tensor_digest(tensors: Mapping[str, Raw], text: str = "") -> str:
    """SHA-256 over ``text`` and the names, dtypes, shapes and bytes of ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    h.update(text.encode("utf-8") + b"\0")
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        h.update(name.encode("utf-8") + b"\0")
        h.update(f"{dtype}{list(shape)}".encode("ascii") + b"\0")
        h.update(raw)
    return h.hexdigest()


def encode_model(config: Mapping[str, Any], tensors: Mapping[str, Raw], extra: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a model file holding ``config`` and ``tensors`` (``name: (dtype, shape, bytes)``)."""
    text = config_text(config)
    metadata = {
        "format": MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config_version": str(CONFIG_VERSION),
        "config": text,
        "sha256": tensor_digest(tensors, text),
        "library_version": __version__,
        **dict(extra or {}),
    }
    return safetensors.encode(tensors, metadata)


def write_model(path: str | os.PathLike[str], config: Mapping[str, Any], tensors: Mapping[str, Raw],
                extra: Mapping[str, str] | None = None) -> Path:
    """Write a model file atomically (see :func:`encode_model`); returns the path."""
    return atomic_write_bytes(path, encode_model(config, tensors, extra))


def _compare(config: Mapping[str, Any], header: safetensors.Header, path: Path) -> None:
    expected = expected_tensors(config)
    missing = [k for k in expected if k not in header.entries]
    extra = [k for k in header.entries if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) the architecture needs (first: {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} tensor(s) the architecture lacks (first: {extra[0]!r})")
        raise CheckpointError(f"model: '{path}' does not match the architecture: {'; '.join(parts)}")
    for name, shape in expected.items():
        found = header.entries[name].shape
        if tuple(found) != tuple(shape):
            raise CheckpointError(f"model: '{path}' does not match the architecture: tensor {name!r} has shape "
                                  f"{tuple(found)}, the architecture expects {tuple(shape)}")
    for name, entry in header.entries.items():
        counter = name.rsplit(".", 1)[-1] == "num_batches_tracked"  # a normalisation's step count
        if (entry.dtype != "I64") if counter else (entry.dtype not in FLOAT_CODES):
            raise CheckpointError(f"model: '{path}' does not match the architecture: tensor {name!r} has dtype "
                                  f"{entry.dtype}, the architecture expects {'I64' if counter else 'a floating type'}")
    floating = sorted({e.dtype for e in header.entries.values() if e.dtype in FLOAT_CODES})
    if len(floating) > 1:
        raise CheckpointError(f"model: '{path}' mixes floating-point dtypes ({', '.join(floating)}); a model's "
                              "floating tensors share one dtype")


def float_code(tensors: Mapping[str, Raw]) -> str | None:
    """The one floating-point dtype code of a checked model file's tensors (``None``: none is floating)."""
    return next((dtype for dtype, _, _ in tensors.values() if dtype in FLOAT_CODES), None)


def read_model(path: str | os.PathLike[str], *, config: Mapping[str, Any] | None = None
               ) -> tuple[dict[str, Any], dict[str, Raw]]:
    """The checked configuration and raw tensors of a model file.

    ``config`` (optional) is the architecture the tensors must fit instead of the one
    stored in the file (which then need not be there). Raises :class:`CheckpointError`.
    """
    p = Path(path)
    header = safetensors.read_header(p, "model")
    meta = header.metadata
    if config is None:
        if LEGACY_FROZEN_KEY in meta:
            raise CheckpointError(f"model: '{p}' was written by FrozenModule.save of an earlier version of "
                                  "autoencoder_toolkit, in a layout this version no longer reads; save the trained "
                                  "torch model again with save_model (the one model file format, which "
                                  "inference.load and load_model both read)")
        if meta.get("format") != MODEL_FORMAT or "config" not in meta:
            raise CheckpointError(f"model: '{p}' is not a model written by autoencoder_toolkit: a safetensors file "
                                  "without this library's model metadata (an architecture configuration); pass "
                                  "the architecture as config=")
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise CheckpointError(f"model: '{p}' has format version {meta.get('format_version')!r}; this library "
                                  f"reads version {FORMAT_VERSION}")
        try:
            cfg = json.loads(meta["config"])
        except (ValueError, RecursionError) as err:  # ValueError: also an integer too long
            raise CheckpointError(f"model: '{p}' is corrupt (its architecture JSON does not parse: {err})") from None
    else:
        cfg = dict(config)
    try:
        check_config(cfg)
    except ArchitectureError as err:
        raise CheckpointError(f"model: '{p}': {err}") from None
    _compare(cfg, header, p)
    tensors = safetensors.read_bytes(header, "model")
    if "sha256" in meta and meta["sha256"] != tensor_digest(tensors, meta.get("config", "")):
        raise CheckpointError(f"model: '{p}' is corrupt (its tensors and architecture do not match the digest "
                              "stored with them)")
    if config is None and "sha256" not in meta:
        raise CheckpointError(f"model: '{p}' is corrupt (it has no digest of its tensors)")
    return cfg, tensors

r"""Safe model files and crash-proof training checkpoints, without pickle.

Model files
-----------
:func:`save_model` writes one ``.safetensors`` file: the weights as tensors, and in the
file's metadata the architecture (:func:`~autoencoder_toolkit.serialization.module_config`
as JSON) and a SHA-256 digest of that JSON and the tensors. :func:`load_model` rebuilds the
architecture from that JSON (:func:`~autoencoder_toolkit.serialization.module_from_config`),
then checks the stored tensors against it (names, shapes, dtypes) and against the
digest before copying them in. Nothing is ever unpickled: a ``torch.save`` file, a
pickle, a truncated or corrupt file, or weights of another architecture are refused
with a :class:`CheckpointError` that says which.

Checkpoints
-----------
A checkpoint is a folder of three files:

``model.safetensors``
    The model, as :func:`save_model` writes it (self-contained: it loads on its own).
``optimizer.safetensors``
    Every tensor of the optimizers' states (e.g. Adam's ``exp_avg``, ``exp_avg_sq``,
    ``step``) under ``"<optimizer>/<parameter index>/<key>"``, and the random-number
    generator states as ``uint8`` tensors under ``"rng/<name>"``
    (``torch.Generator.get_state()``).
``state.json``
    Written **last**. The SHA-256 digest and size of the two other files, the
    optimizers' parameter-group settings (learning rate, betas, ...) and non-tensor
    state, and the caller's JSON state (epoch, step, the NumPy generator's
    ``bit_generator.state``, the metric history).

Every file is written atomically: to a temporary file in the same folder, flushed and
``fsync``-ed, moved into place with ``os.replace``, then the folder is ``fsync``-ed.
A run directory holds the current checkpoint in ``checkpoint/``; :func:`save_checkpoint`
replaces it in five steps:

1. remove any ``checkpoint.tmp/`` (left by a save that was killed);
2. write the three files into a fresh ``checkpoint.tmp/``, ``state.json`` last;
3. if ``checkpoint/`` exists, remove any old ``checkpoint.prev/`` and rename
   ``checkpoint/`` to ``checkpoint.prev/``;
4. rename ``checkpoint.tmp/`` to ``checkpoint/``;
5. remove ``checkpoint.prev/``.

After each step the run directory is ``fsync``-ed. A process killed at any point
therefore leaves a complete set in ``checkpoint/`` (before step 3 and after step 4)
or in ``checkpoint.prev/`` (between steps 3 and 4). :func:`find_checkpoint` verifies
``checkpoint/`` and then ``checkpoint.prev/`` (``state.json`` present and valid, both
digests matching) and uses the first complete one; a half-written
``checkpoint.tmp/`` is never read.

Test hook: with the environment variable ``AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE`` set to
a number of seconds, :func:`save_checkpoint` prints ``checkpoint-save: <stage> <path>``
to stderr and sleeps that long after each stage (``model``, ``optimizer``, ``state``,
``rotated``, ``installed``), so that a test can kill the process mid-save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "STATE_FILE",
    "CHECKPOINT_DIR",
    "save_model",
    "load_model",
    "read_model_file",
    "save_checkpoint",
    "load_checkpoint",
    "find_checkpoint",
    "verify_checkpoint",
    "optimizer_state",
    "restore_optimizers",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoint"
_TMP_SUFFIX = ".tmp"
_PREV_SUFFIX = ".prev"

#: Version of the on-disk formats written here.
FORMAT_VERSION = 1
_MODEL_FORMAT = "autoencoder_toolkit.model"
_STATE_FORMAT = "autoencoder_toolkit.checkpoint"
PAUSE_ENV_VAR = "AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE"

# Largest safetensors header accepted (the format itself caps it at 100 MB).
_MAX_HEADER = 100_000_000

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A model file or checkpoint that cannot be used; the message says why."""


# ----------------------------------------------------------------------------------
# Atomic file writes
# ----------------------------------------------------------------------------------

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
        os.chmod(tmp, 0o644)
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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------
# safetensors reading and writing (strict)
# ----------------------------------------------------------------------------------

def _describe_foreign(head: bytes) -> str | None:
    """Name the format of a file that is not safetensors, from its first bytes."""
    if head[:2] == b"PK":
        return "a zip archive (the format of torch.save)"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle (the format of torch.save with _use_new_zipfile_serialization=False)"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    return None


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, with clear errors for anything else.

    The header is parsed here, so that truncated files, foreign formats (pickles in
    particular, which are never unpickled) and inconsistent offsets are reported
    precisely; the tensors are then decoded by the ``safetensors`` library.
    """
    if not path.exists():
        raise CheckpointError(f"{what}: no such file: '{path}'")
    if path.is_dir():
        raise CheckpointError(f"{what}: expected a .safetensors file, got the directory '{path}'")
    raw = path.read_bytes()
    # A safetensors file starts with an 8-byte header length, then a JSON object.
    foreign = None if raw[8:9] == b"{" else _describe_foreign(raw[:8])
    if foreign is not None:
        raise CheckpointError(
            f"{what}: '{path}' is {foreign}, not a safetensors file; pickled files are never loaded "
            "(unpickling can run arbitrary code): re-save the weights with "
            "autoencoder_toolkit.checkpoints.save_model or safetensors.torch.save_file"
        )
    if len(raw) < 8:
        raise CheckpointError(f"{what}: '{path}' is truncated ({len(raw)} bytes, shorter than a safetensors header)")
    (n_header,) = struct.unpack("<Q", raw[:8])
    if n_header > _MAX_HEADER:
        raise CheckpointError(f"{what}: '{path}' is not a safetensors file (header length {n_header} is implausible)")
    if 8 + n_header > len(raw):
        raise CheckpointError(
            f"{what}: '{path}' is truncated: the header declares {n_header} bytes but the file has "
            f"{len(raw) - 8} after the length field"
        )
    try:
        header = json.loads(raw[8:8 + n_header].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{what}: '{path}' is corrupt or not a safetensors file (header: {err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what}: '{path}' is corrupt (the header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    n_data = len(raw) - 8 - n_header
    end = 0
    for name, info in header.items():
        try:
            start, stop = (int(v) for v in info["data_offsets"])
            dtype_name = info["dtype"]
            shape = [int(s) for s in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{what}: '{path}' is corrupt (bad header entry for tensor {name!r})") from None
        if dtype_name not in _DTYPES:
            raise CheckpointError(f"{what}: '{path}': tensor {name!r} has unsupported dtype {dtype_name}")
        end = max(end, stop)
        if stop > n_data:
            raise CheckpointError(
                f"{what}: '{path}' is truncated: tensor {name!r} ends at byte {stop} of the data but only "
                f"{n_data} bytes are present"
            )
        n_expected = torch.tensor([], dtype=_DTYPES[dtype_name]).element_size()
        for s in shape:
            n_expected *= s
        if stop - start != n_expected:
            raise CheckpointError(f"{what}: '{path}' is corrupt (tensor {name!r}: shape {shape} does not match "
                                  f"its {stop - start} bytes)")
    if end != n_data:
        raise CheckpointError(f"{what}: '{path}' is corrupt ({n_data} data bytes, the header accounts for {end})")
    try:
        from safetensors.torch import load as _st_load

        tensors = _st_load(raw)
    except Exception as err:  # noqa: BLE001 - the library's own error types vary by version
        raise CheckpointError(f"{what}: '{path}' is corrupt ({err})") from None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{what}: '{path}' is corrupt (metadata must map strings to strings)")
    return tensors, metadata


def _safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    from safetensors.torch import save as _st_save

    return _st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=dict(metadata))


def _tensor_digest(tensors: Mapping[str, torch.Tensor], config_text: str = "") -> str:
    """SHA-256 over ``config_text`` and the names, dtypes, shapes and bytes of ``tensors`` (sorted)."""
    h = hashlib.sha256()
    h.update(config_text.encode("utf-8") + b"\0")
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode("utf-8") + b"\0")
        h.update(f"{_DTYPE_NAMES.get(t.dtype, str(t.dtype))}{list(t.shape)}".encode("ascii") + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------

def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):  # pragma: no cover - extra state
            raise TypeError(f"model: state entry {name!r} is not a tensor and cannot be saved as safetensors")
        key = t.data_ptr() if t.numel() else -len(out) - 1
        if key in seen:  # tied weights: safetensors refuses shared storage; store a copy
            t = t.clone()
        seen[key] = name
        out[name] = t
    return out


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model`` to one ``.safetensors`` file that :func:`load_model` rebuilds.

    The file holds the weights (``model.state_dict()``) as tensors and, in its metadata,
    the architecture as JSON (``config``, from
    :func:`~autoencoder_toolkit.serialization.module_config`) and a SHA-256 digest of
    that JSON and the tensors (``sha256``). It is written atomically. Returns the path.

    Raises
    ------
    TypeError
        If the architecture cannot be described (a layer outside the supported set).
    """
    from .. import __version__
    from ..models.config import CONFIG_VERSION, module_config

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    config_text = json.dumps(module_config(model), ensure_ascii=False, sort_keys=True)
    tensors = _model_tensors(model)
    metadata = {
        "format": _MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config_version": str(CONFIG_VERSION),
        "config": config_text,
        "sha256": _tensor_digest(tensors, config_text),
        "library_version": __version__,
        "torch_version": torch.__version__,
    }
    return atomic_write_bytes(path, _safetensors_bytes(tensors, metadata))


def _check_against(model: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) the architecture needs (first: {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} tensor(s) the architecture lacks (first: {extra[0]!r})")
        raise CheckpointError(f"{what}: '{path}' does not match the architecture: {'; '.join(parts)}")
    for name, ref in expected.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{what}: '{path}' does not match the architecture: tensor {name!r} has shape "
                f"{tuple(t.shape)}, the architecture expects {tuple(ref.shape)}"
            )
        if t.dtype != ref.dtype:
            raise CheckpointError(
                f"{what}: '{path}' does not match the architecture: tensor {name!r} has dtype "
                f"{t.dtype}, the architecture expects {ref.dtype}"
            )


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The architecture configuration and the verified tensors of a :func:`save_model` file."""
    p = Path(path)
    tensors, metadata = _read_safetensors(p, "model")
    if metadata.get("format") != _MODEL_FORMAT or "config" not in metadata:
        raise CheckpointError(
            f"model: '{p}' is a safetensors file without this library's model metadata (an architecture "
            "configuration); load its tensors with safetensors and pass config= to load_model"
        )
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"model: '{p}' is corrupt (its architecture JSON does not parse: {err})") from None
    if metadata.get("sha256") != _tensor_digest(tensors, metadata["config"]):
        raise CheckpointError(f"model: '{p}' is corrupt (its tensors and architecture do not match the digest "
                              "stored with them)")
    return config, tensors


def _resolve_model_path(path: Path) -> Path:
    if path.is_dir():
        if (path / MODEL_FILE).is_file() and (path / STATE_FILE).exists():
            return verify_checkpoint(path) / MODEL_FILE
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        return find_checkpoint(path) / MODEL_FILE
    return path


def load_model(path: str | os.PathLike[str], *, config: Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (no pickle involved).

    Parameters
    ----------
    path:
        A ``.safetensors`` file written by :func:`save_model`, a checkpoint folder, or a
        run directory (its latest complete checkpoint is used).
    config:
        Architecture to rebuild instead of the one stored in the file (a
        :func:`~autoencoder_toolkit.serialization.module_config` mapping). The stored
        tensors must then match it.
    device:
        Where to put the model.

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupt or foreign (e.g. pickled) file, or tensors whose
        names, shapes or dtypes differ from the architecture's.
    """
    from ..models.config import module_from_config

    p = _resolve_model_path(Path(path))
    if config is None:
        cfg, tensors = read_model_file(p)
    else:
        tensors, metadata = _read_safetensors(p, "model")
        if "sha256" in metadata and metadata["sha256"] != _tensor_digest(tensors, metadata.get("config", "")):
            raise CheckpointError(f"model: '{p}' is corrupt (its tensors and architecture do not match the "
                                  "digest stored with them)")
        cfg = dict(config)
    try:
        model = module_from_config(cfg)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"model: cannot rebuild the architecture of '{p}' ({err})") from None
    _check_against(model, tensors, p, "model")
    model.load_state_dict(tensors, strict=True)
    return model.to(device)


# ----------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------

def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{where}: cannot store a value of type {type(value).__name__} in a checkpoint")


def _unjson_float(value: Any) -> Any:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def optimizer_state(optimizers: Mapping[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split optimizers' ``state_dict()`` into tensors (for safetensors) and JSON.

    Tensors are named ``"<optimizer>/<parameter index>/<key>"``; the JSON holds, per
    optimizer, ``param_groups`` and the non-tensor per-parameter state.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        if "/" in name:
            raise ValueError(f"optimizers: names may not contain '/', got {name!r}")
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for key, value in st.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}/{idx}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = _jsonable(value, f"optimizer {name} state {key}")
        groups = [{k: _jsonable(v, f"optimizer {name} setting {k}") for k, v in g.items()} for g in sd["param_groups"]]
        meta[name] = {"class": type(opt).__name__, "param_groups": groups, "scalars": scalars}
    return tensors, meta


def restore_optimizers(optimizers: Mapping[str, torch.optim.Optimizer], tensors: Mapping[str, torch.Tensor],
                       meta: Mapping[str, Any], where: str = "optimizer") -> None:
    """Load states split by :func:`optimizer_state` back into freshly built optimizers."""
    for name, opt in optimizers.items():
        if name not in meta:
            raise CheckpointError(f"{where}: the checkpoint has no state for optimizer {name!r} "
                                  f"(it holds {sorted(meta)})")
        info = meta[name]
        if info.get("class") != type(opt).__name__:
            raise CheckpointError(f"{where}: optimizer {name!r} was a {info.get('class')}, now a {type(opt).__name__}")
        template = opt.state_dict()["param_groups"]
        groups = info["param_groups"]
        if len(groups) != len(template):
            raise CheckpointError(f"{where}: optimizer {name!r} has {len(template)} parameter group(s), "
                                  f"the checkpoint {len(groups)}")
        restored_groups = []
        for g, ref in zip(groups, template):
            if len(g.get("params", [])) != len(ref["params"]):
                raise CheckpointError(
                    f"{where}: optimizer {name!r} optimizes {len(ref['params'])} parameters, the checkpoint "
                    f"{len(g.get('params', []))}: a different architecture"
                )
            new = {}
            for k, v in g.items():
                v = _unjson_float(v)
                if isinstance(ref.get(k), tuple) and isinstance(v, list):
                    v = tuple(v)
                new[k] = v
            restored_groups.append(new)
        state: dict[int, dict[str, Any]] = {}
        prefix = name + "/"
        for key, t in tensors.items():
            if key.startswith(prefix):
                _, idx, sub = key.split("/", 2)
                state.setdefault(int(idx), {})[sub] = t
        for idx, sc in info.get("scalars", {}).items():
            for k, v in sc.items():
                state.setdefault(int(idx), {})[k] = _unjson_float(v)
        try:
            opt.load_state_dict({"state": state, "param_groups": restored_groups})
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{where}: cannot restore optimizer {name!r} ({err})") from None


# ----------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A verified checkpoint as read by :func:`load_checkpoint`.

    Attributes
    ----------
    path:
        The folder it was read from (``checkpoint/`` or, after a crash,
        ``checkpoint.prev/``).
    model:
        The rebuilt model with its weights (on the CPU unless a device was given).
    state:
        The caller's JSON state saved with it (epoch, step, history, ...).
    tensors:
        Extra tensors saved with it, e.g. ``"rng/torch"``: generator states.
    optimizer_tensors, optimizer_meta:
        Optimizer states; apply them with :meth:`restore_optimizers`.
    """

    path: Path
    model: nn.Module
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_meta: dict[str, Any] = field(default_factory=dict)

    def restore_optimizers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Load the saved states into ``optimizers`` (built over :attr:`model`'s parameters)."""
        restore_optimizers(optimizers, self.optimizer_tensors, self.optimizer_meta, f"checkpoint '{self.path}'")


def _pause(stage: str, path: Path) -> None:
    value = os.environ.get(PAUSE_ENV_VAR, "").strip()
    if not value:
        return
    try:
        seconds = float(value)
    except ValueError:
        return
    print(f"checkpoint-save: {stage} {path}", file=sys.stderr, flush=True)
    time.sleep(seconds)


#: Called after each stage of :func:`save_checkpoint` (tests replace it to simulate crashes).
_after_stage: Callable[[str, Path], None] = _pause


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def save_checkpoint(run_dir: str | os.PathLike[str], model: nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer],
                    state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None,
                    name: str = CHECKPOINT_DIR) -> Path:
    """Write a checkpoint into ``run_dir/<name>/`` by the crash-safe scheme of the module docstring.

    Parameters
    ----------
    model:
        Saved with :func:`save_model`.
    optimizers:
        Named optimizers, e.g. ``{"vae": opt.vae, "mi": opt.mi}``.
    state:
        JSON-serialisable state of the caller (epoch, step, NumPy generator state, ...).
    tensors:
        Extra tensors, e.g. ``{"rng/torch": generator.get_state()}``; stored in
        ``optimizer.safetensors``. Names must not clash with optimizer names.

    Returns the checkpoint folder.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    final, tmp, prev = run / name, run / (name + _TMP_SUFFIX), run / (name + _PREV_SUFFIX)

    # 1. a leftover of a save that was interrupted is incomplete by construction
    _rmtree(tmp)
    tmp.mkdir()
    # 2. the three files, state.json last
    save_model(model, tmp / MODEL_FILE)
    _after_stage("model", tmp)
    opt_tensors, opt_meta = optimizer_state(optimizers)
    extra = dict(tensors or {})
    for key in extra:
        if key in opt_tensors or key.split("/", 1)[0] in optimizers:
            raise ValueError(f"tensors: name {key!r} clashes with the optimizer states")
    atomic_write_bytes(tmp / OPTIMIZER_FILE, _safetensors_bytes({**opt_tensors, **extra},
                                                                {"format": _STATE_FORMAT}))
    _after_stage("optimizer", tmp)
    from .. import __version__

    files = {}
    for fname in (MODEL_FILE, OPTIMIZER_FILE):
        fp = tmp / fname
        files[fname] = {"sha256": _sha256_file(fp), "bytes": fp.stat().st_size}
    document = {
        "format": _STATE_FORMAT,
        "format_version": FORMAT_VERSION,
        "files": files,
        "optimizers": opt_meta,
        "extra_tensors": sorted(extra),
        "state": _jsonable(dict(state), "state"),
        "versions": {"autoencoder_toolkit": __version__, "torch": torch.__version__},
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(tmp / STATE_FILE, json.dumps(document, indent=1, sort_keys=True))
    fsync_dir(tmp)
    _after_stage("state", tmp)
    # 3. the current set becomes the previous one
    if final.exists():
        _rmtree(prev)
        fsync_dir(run)
        os.rename(final, prev)
        fsync_dir(run)
    _after_stage("rotated", run)
    # 4. install the new set
    os.rename(tmp, final)
    fsync_dir(run)
    _after_stage("installed", run)
    # 5. drop the previous set
    _rmtree(prev)
    fsync_dir(run)
    return final


def _read_state(folder: Path) -> dict[str, Any]:
    sp = folder / STATE_FILE
    if not sp.is_file():
        raise CheckpointError(f"checkpoint: '{folder}' has no {STATE_FILE} (an incomplete save)")
    try:
        doc = json.loads(sp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint: '{sp}' is corrupt ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"checkpoint: '{sp}' is not a checkpoint state file of this library")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint: '{sp}' has format version {doc.get('format_version')}, this "
                              f"library reads version {FORMAT_VERSION}")
    return doc


def verify_checkpoint(folder: str | os.PathLike[str]) -> Path:
    """Check that ``folder`` holds a complete checkpoint (``state.json`` and both digests).

    Returns the folder; raises :class:`CheckpointError` saying what is wrong.
    """
    f = Path(folder)
    if not f.is_dir():
        raise CheckpointError(f"checkpoint: no such folder: '{f}'")
    doc = _read_state(f)
    files = doc.get("files")
    if not isinstance(files, dict) or set(files) != {MODEL_FILE, OPTIMIZER_FILE}:
        raise CheckpointError(f"checkpoint: '{f / STATE_FILE}' is corrupt (no file digests)")
    for fname, info in files.items():
        fp = f / fname
        if not fp.is_file():
            raise CheckpointError(f"checkpoint: '{fp}' is missing")
        with open(fp, "rb") as fh:
            head = fh.read(9)
        foreign = None if head[8:9] == b"{" else _describe_foreign(head)
        if foreign is not None:
            raise CheckpointError(f"checkpoint: '{fp}' is {foreign}, not a safetensors file; pickled files are "
                                  "never loaded (unpickling can run arbitrary code)")
        size = fp.stat().st_size
        if size != info.get("bytes"):
            raise CheckpointError(f"checkpoint: '{fp}' has {size} bytes, {info.get('bytes')} were written "
                                  "(truncated or replaced)")
        if _sha256_file(fp) != info.get("sha256"):
            raise CheckpointError(f"checkpoint: '{fp}' is corrupt (its SHA-256 digest differs from the one "
                                  f"recorded in {STATE_FILE})")
    return f


def find_checkpoint(run_dir: str | os.PathLike[str], name: str = CHECKPOINT_DIR) -> Path:
    """The folder of the newest complete checkpoint of a run directory.

    ``run_dir/checkpoint/`` when it verifies, else ``run_dir/checkpoint.prev/`` (the
    previous set, present only after a crash in the middle of a save).

    Raises
    ------
    CheckpointError
        When neither verifies; the message gives the reason for each.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"checkpoint: no such run directory: '{run}'")
    reasons = []
    for folder in (run / name, run / (name + _PREV_SUFFIX)):
        if not folder.exists():
            continue
        try:
            return verify_checkpoint(folder)
        except CheckpointError as err:
            reasons.append(str(err))
    if not reasons:
        raise CheckpointError(f"checkpoint: '{run}' holds no checkpoint (no {name}/ folder)")
    raise CheckpointError("checkpoint: no complete checkpoint in " f"'{run}': " + "; ".join(reasons))


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                    config: Mapping[str, Any] | None = None) -> Checkpoint:
    """Read and verify a checkpoint: a run directory (newest complete set) or a checkpoint folder.

    ``config`` (optional) is the architecture the model must have, e.g. the one in a
    run's ``config.json``; a different stored architecture is refused.
    """
    p = Path(path)
    folder = verify_checkpoint(p) if (p / STATE_FILE).exists() else find_checkpoint(p)
    doc = _read_state(folder)
    stored_config, _ = read_model_file(folder / MODEL_FILE)
    if config is not None and _canonical(stored_config) != _canonical(config):
        raise CheckpointError(
            f"checkpoint: the model in '{folder / MODEL_FILE}' has a different architecture from the run's "
            "configuration (config.json); the checkpoint belongs to another run"
        )
    model = load_model(folder / MODEL_FILE, device=device)
    tensors, _ = _read_safetensors(folder / OPTIMIZER_FILE, "optimizer state")
    opt_names = set(doc.get("optimizers", {}))
    extra_names = set(doc.get("extra_tensors", []))
    opt_tensors = {k: v for k, v in tensors.items() if k.split("/", 1)[0] in opt_names}
    extra = {k: v for k, v in tensors.items() if k in extra_names}
    return Checkpoint(path=folder, model=model, state=doc.get("state", {}), tensors=extra,
                      optimizer_tensors=opt_tensors, optimizer_meta=doc.get("optimizers", {}))


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, ensure_ascii=False)


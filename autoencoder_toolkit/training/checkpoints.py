r"""Training checkpoints: the model, the optimizers and the training state, crash-safe, without pickle.

A checkpoint is a folder of three files (the layout and the crash-safe scheme that
replaces it are in :mod:`autoencoder_toolkit.io.checkpoint`):

``model.safetensors``
    The model, as :func:`save_model` writes it (self-contained: it loads on its own, with
    torch or with the NumPy inference models).
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

Model files (:func:`save_model`, :func:`load_model`) are those of
:mod:`autoencoder_toolkit.models.architecture`; they are re-exported here with the file
helpers of :mod:`autoencoder_toolkit.io`. Nothing is ever unpickled: a ``torch.save``
file, a pickle, a truncated or corrupt file, or weights of another architecture are
refused with a :class:`CheckpointError` that says which.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .. import __version__
from ..io import safetensors
from ..io.checkpoint import (CHECKPOINT_DIR, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, find_checkpoint, read_state,
                             verify_checkpoint, write_checkpoint)
from ..io.files import CheckpointError, atomic_write_bytes, atomic_write_text, fsync_dir
from ..io.model_file import encode_model, read_model
from ..models.checks import check_device
from ..models.architecture import (load_model, model_from_file, model_tensors, module_config, raw_to_tensor,
                                   save_model, tensor_to_raw)

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


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The architecture configuration and the verified tensors of a :func:`save_model` file."""
    config, raw = read_model(path)
    return config, {name: raw_to_tensor(r) for name, r in raw.items()}


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
        if not isinstance(meta, Mapping) or name not in meta:
            raise CheckpointError(f"{where}: the checkpoint has no state for optimizer {name!r} "
                                  f"(it holds {sorted(meta) if isinstance(meta, Mapping) else 'none'})")
        info = meta[name]
        if not isinstance(info, Mapping) or info.get("class") != type(opt).__name__:
            found = info.get("class") if isinstance(info, Mapping) else info
            raise CheckpointError(f"{where}: optimizer {name!r} was a {found}, now a {type(opt).__name__}")
        template = opt.state_dict()["param_groups"]
        groups = info.get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(template):
            raise CheckpointError(f"{where}: optimizer {name!r} has {len(template)} parameter group(s), "
                                  f"the checkpoint {len(groups) if isinstance(groups, list) else 'none'}")
        restored_groups = []
        for g, ref in zip(groups, template):
            if not isinstance(g, Mapping) or len(g.get("params", [])) != len(ref["params"]):
                raise CheckpointError(
                    f"{where}: optimizer {name!r} optimizes {len(ref['params'])} parameters, the checkpoint "
                    f"{len(g.get('params', [])) if isinstance(g, Mapping) else 'none'}: a different architecture"
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
        try:
            for key, t in tensors.items():
                if key.startswith(prefix):
                    _, idx, sub = key.split("/", 2)
                    state.setdefault(int(idx), {})[sub] = t
            for idx, sc in info.get("scalars", {}).items():
                for k, v in sc.items():
                    state.setdefault(int(idx), {})[k] = _unjson_float(v)
            opt.load_state_dict({"state": state, "param_groups": restored_groups})
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as err:
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


def save_checkpoint(run_dir: str | os.PathLike[str], model: nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer],
                    state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None,
                    name: str = CHECKPOINT_DIR) -> Path:
    """Write a checkpoint into ``run_dir/<name>/`` by the crash-safe scheme of :mod:`autoencoder_toolkit.io.checkpoint`.

    Parameters
    ----------
    model:
        Saved as :func:`save_model` saves it.
    optimizers:
        Named optimizers, e.g. ``{"vae": opt.vae, "mi": opt.mi}``.
    state:
        JSON-serialisable state of the caller (epoch, step, NumPy generator state, ...).
    tensors:
        Extra tensors, e.g. ``{"rng/torch": generator.get_state()}``; stored in
        ``optimizer.safetensors``. Names must not clash with optimizer names.

    Returns the checkpoint folder.
    """
    model_bytes = encode_model(module_config(model), model_tensors(model), {"torch_version": torch.__version__})
    opt_tensors, opt_meta = optimizer_state(optimizers)
    extra = dict(tensors or {})
    for key in extra:
        if key in opt_tensors or key.split("/", 1)[0] in optimizers:
            raise ValueError(f"tensors: name {key!r} clashes with the optimizer states")
    raw = {k: tensor_to_raw(t, f"tensors: {k!r}") for k, t in {**opt_tensors, **extra}.items()}
    opt_bytes = safetensors.encode(raw, {"format": "autoencoder_toolkit.checkpoint"})
    document = {
        "optimizers": opt_meta,
        "extra_tensors": sorted(extra),
        "state": _jsonable(dict(state), "state"),
        "versions": {"autoencoder_toolkit": __version__, "torch": torch.__version__},
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_checkpoint(run_dir, {MODEL_FILE: model_bytes, OPTIMIZER_FILE: opt_bytes}, document, name)


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, ensure_ascii=False)


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                    config: Mapping[str, Any] | None = None) -> Checkpoint:
    """Read and verify a checkpoint: a run directory (newest complete set) or a checkpoint folder.

    ``config`` (optional) is the architecture the model must have, e.g. the one in a
    run's ``config.json``; a different stored architecture is refused.
    """
    p = Path(path)
    folder = verify_checkpoint(p) if (p / STATE_FILE).exists() else find_checkpoint(p)
    doc = read_state(folder)
    stored_config, raw = read_model(folder / MODEL_FILE)
    if config is not None and _canonical(stored_config) != _canonical(config):
        raise CheckpointError(
            f"checkpoint: the model in '{folder / MODEL_FILE}' has a different architecture from the run's "
            "configuration (config.json); the checkpoint belongs to another run"
        )
    model = model_from_file(stored_config, raw, folder / MODEL_FILE).to(check_device(device))
    header = safetensors.read_header(folder / OPTIMIZER_FILE, "optimizer state")
    tensors = {k: raw_to_tensor(r) for k, r in safetensors.read_bytes(header, "optimizer state").items()}
    opt_meta = doc.get("optimizers", {})
    opt_names = set(opt_meta) if isinstance(opt_meta, Mapping) else set()
    extra_list = doc.get("extra_tensors", []) or []
    if not isinstance(extra_list, list) or not all(isinstance(k, str) for k in extra_list):
        raise CheckpointError(f"checkpoint: '{folder / STATE_FILE}' is corrupt (extra_tensors is not a list of "
                              "names)")
    extra_names = set(extra_list)
    opt_tensors = {k: v for k, v in tensors.items() if k.split("/", 1)[0] in opt_names}
    extra = {k: v for k, v in tensors.items() if k in extra_names}
    state = doc.get("state", {})
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint: '{folder / STATE_FILE}' is corrupt (its state is not a mapping)")
    return Checkpoint(path=folder, model=model, state=state, tensors=extra, optimizer_tensors=opt_tensors,
                      optimizer_meta=opt_meta)

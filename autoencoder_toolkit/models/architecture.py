"""The torch side of the architecture registry: modules to JSON configurations and back.

:func:`module_config` describes a model built from this package's layers and models and
from the torch layers of :data:`autoencoder_toolkit.io.architecture.TORCH_LAYERS`;
:func:`module_from_config` checks a configuration (:func:`~autoencoder_toolkit.io.
architecture.check_config`) and rebuilds an identical architecture with fresh weights.
The weights travel separately as safetensors (:func:`save_model`, :func:`load_model`,
in the one model file format of :mod:`autoencoder_toolkit.io.model_file`, which the
NumPy inference models read too). A module outside the supported set is refused with an
error that names it, rather than silently pickled.

Every model class of the package derives from :class:`Component`: a plain
``torch.nn.Module`` that knows its fields (the submodules its field constructor takes),
describes itself with :meth:`Component.config` and is registered by its class name, so
that a subclass defined by a user rebuilds from a configuration too (as long as it is
defined, i.e. its module imported, in the process that loads it).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from .. import inference
from ..io import model_file
from ..io.architecture import META_ATTRIBUTES, USER_LAYER, ArchitectureError, check_config
from ..io.checkpoint import resolve_model_path
from ..io.files import CheckpointError
from ..io.safetensors import DTYPES
from .checks import check_device

__all__ = ["CONFIG_VERSION", "Component", "LayerNotDescribed", "register_layer", "register_builder", "module_config", "child_config",
           "module_from_config",
           "register_composition", "compose", "tensor_to_raw", "raw_to_tensor", "model_tensors", "save_model",
           "load_model", "to_backend",
           "structure_dict", "model_from_file"]

CONFIG_VERSION = model_file.CONFIG_VERSION

#: type name -> ``builder(config, build) -> nn.Module`` for this package's layers (``Dense``, ``Chain``,
#: ...); ``build`` rebuilds a nested node.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
#: class name -> class, for every :class:`Component` subclass (filled as classes are defined).
_MODEL_CLASSES: dict[str, type] = {}


#: name -> (class, ``config(layer) -> constructor arguments``) of the layer classes users registered.
_USER_LAYERS: dict[str, tuple[type, Callable[[nn.Module], Mapping[str, Any]]]] = {}


def register_layer(cls: type, *, name: str | None = None,
                   config: Callable[[nn.Module], Mapping[str, Any]] | None = None) -> type:
    """Let models holding layers of the class ``cls`` (your own ``torch.nn.Module``) be saved and loaded.

    A saved layer records ``name`` (default: the class's name), its constructor arguments
    as plain JSON, and the names and shapes of its parameters and buffers; loading calls
    ``cls(**arguments)`` and copies the weights in, after checking them against the record.
    Nothing is pickled: a file naming a class that is not registered in the loading process
    is refused with a message saying how to register it.

    ``config(layer)`` returns the constructor arguments of an instance; by default the
    instance's ``get_config()`` method when the class has one, else ``{}`` (a class whose
    constructor needs no argument, such as an activation). Returns ``cls``, so it also works
    as a class decorator::

        @aet.register_layer
        class Swish(nn.Module):
            def forward(self, x):
                return x * torch.sigmoid(x)

    The NumPy/CuPy inference models cannot run such a layer (they refuse it by name).
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"cls: expected a torch.nn.Module subclass, got {cls!r}")
    key = cls.__name__ if name is None else name
    if not isinstance(key, str) or not key or len(key) > 64:
        raise ValueError(f"name: expected a class name of 1 to 64 characters, got {key!r}")
    held = _USER_LAYERS.get(key)
    if held is not None and (held[0].__module__, held[0].__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"name: {key!r} is registered for {held[0].__module__}.{held[0].__qualname__}; pass another "
                         "name=")
    if config is None:
        if callable(getattr(cls, "get_config", None)):
            config = lambda layer: layer.get_config()  # noqa: E731
        else:
            required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                        if p.name != "self" and p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                   p.KEYWORD_ONLY)]
            if required:
                raise TypeError(f"register_layer: {cls.__qualname__}'s constructor takes {', '.join(required)}; give "
                                "config=lambda layer: {...} returning them (or a get_config() method)")
            config = lambda layer: {}  # noqa: E731
    _USER_LAYERS[key] = (cls, config)
    return cls


def _user_layer_config(module: nn.Module) -> dict[str, Any] | None:
    for key, (cls, config) in _USER_LAYERS.items():
        if type(module) is cls:
            args = dict(config(module))
            try:
                json.dumps(args, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise TypeError(f"register_layer: the constructor arguments of {key} must be plain JSON values "
                                f"({err})") from None
            return {"type": USER_LAYER, "name": key, "args": args,
                    "tensors": {k: list(v.shape) for k, v in module.state_dict().items()}}
    return None


def _build_user_layer(config: Mapping[str, Any]) -> nn.Module:
    entry = _USER_LAYERS.get(config["name"])
    if entry is None:
        raise ArchitectureError(f"architecture: layer class {config['name']!r} is not registered in this process; "
                                f"define it (or import its module) and call autoencoder_toolkit.register_layer("
                                f"{config['name']}) before loading")
    cls = entry[0]
    try:
        module = cls(**config["args"])
    except Exception as err:  # noqa: BLE001 - the user's constructor, given the file's arguments
        raise ArchitectureError(f"architecture: {config['name']}({config['args']!r:.100}) failed: "
                                f"{type(err).__name__}: {err}") from None
    found = {k: list(v.shape) for k, v in module.state_dict().items()}
    if found != config["tensors"]:
        raise ArchitectureError(f"architecture: {config['name']} built from the file's arguments has tensors {found!r:.160}, "
                                f"the file records {config['tensors']!r:.160}")
    return module


def register_builder(type_name: str, builder: Callable[..., nn.Module]) -> None:
    """Rebuild nodes of ``type_name`` with ``builder(config, build)`` (the layers register themselves).

    ``build(node)`` rebuilds a nested node, for layers that hold others (``Chain``).
    """
    _BUILDERS[type_name] = builder


class Component(nn.Module):
    """Base of the package's models: a plain ``torch.nn.Module`` made of named fields.

    ``_config_fields`` names the submodules that define the model (its field
    constructor's arguments); :meth:`config` describes them, the meta attributes
    ``input_shape``, ``output_shape`` and ``latent_dim`` where the instance sets them, and,
    for an encoder or decoder, its structure. Defining a subclass registers it under its
    class name (or, when that name is taken, its module-qualified name).
    """

    #: Submodule fields that define the module (its field constructor's arguments).
    _config_fields: ClassVar[tuple[str, ...]] = ()
    #: The name under which the class is registered (set when the class is defined).
    _config_type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        holder = _MODEL_CLASSES.get(name)
        if holder is not None and (holder.__module__, holder.__qualname__) != (cls.__module__, cls.__qualname__):
            name = f"{cls.__module__}.{cls.__qualname__}"
        _MODEL_CLASSES[name] = cls
        cls._config_type = name

    def structure(self) -> dict[str, Any] | None:
        """How the fields make the output (encoders and decoders; see :mod:`autoencoder_toolkit.io.architecture`)."""
        return None

    def config(self) -> dict[str, Any]:
        """JSON description from which :func:`module_from_config` rebuilds this architecture."""
        cfg: dict[str, Any] = {"type": type(self)._config_type,
                               "fields": {f: child_config(getattr(self, f), f) for f in self._config_fields}}
        meta = {}
        for attr in META_ATTRIBUTES:
            value = self.__dict__.get(attr)
            if value is not None:
                meta[attr] = list(value) if isinstance(value, tuple) else value
        if meta:
            cfg["meta"] = meta
        structure = self.structure()
        if structure is not None:
            cfg["structure"] = structure
        return cfg

    def to_backend(self, backend: str = "numpy", *, device: Any = None) -> Any:
        """A frozen copy for inference on ``backend`` (``"numpy"``, ``"cupy"``): see :mod:`autoencoder_toolkit.inference`."""
        return to_backend(self, backend, device=device)


# ----------------------------------------------------------------------------------
# torch layers
# ----------------------------------------------------------------------------------

def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _conv_args(m: nn.Module) -> dict[str, Any]:
    args = {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
        "stride": list(m.stride), "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        args["output_padding"] = list(m.output_padding)
        if args["padding_mode"] == "zeros":
            args.pop("padding_mode")
    return args


def _attributes(*names: str) -> Callable[[nn.Module], dict[str, Any]]:
    return lambda m: {n: _listed(getattr(m, n)) for n in names}


_NORM_ARGS = _attributes("num_features", "eps", "momentum", "affine", "track_running_stats")
_POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode")
#: torch layer class -> constructor arguments read back from an instance.
_TORCH_ARGS: dict[type, Callable[[nn.Module], dict[str, Any]]] = {
    nn.Linear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    **{cls: _conv_args for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                                   nn.ConvTranspose3d)},
    **{cls: _NORM_ARGS for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)},
    nn.LayerNorm: lambda m: {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
                             "elementwise_affine": m.elementwise_affine,
                             **({"bias": m.bias is not None} if m.elementwise_affine else {})},
    nn.GroupNorm: _attributes("num_groups", "num_channels", "eps", "affine"),
    **{cls: _attributes() for cls in (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.SiLU)},
    nn.Softplus: _attributes("beta", "threshold"),
    nn.GELU: _attributes("approximate"),
    nn.ELU: _attributes("alpha"),
    nn.LeakyReLU: _attributes("negative_slope"),
    nn.Softmax: _attributes("dim"),
    nn.LogSoftmax: _attributes("dim"),
    nn.Flatten: _attributes("start_dim", "end_dim"),
    nn.Unflatten: _attributes("dim", "unflattened_size"),
    **{cls: _attributes("p") for cls in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                                         nn.FeatureAlphaDropout)},
    nn.MaxPool2d: _attributes(*_POOL_ARGS, "dilation", "return_indices"),
    nn.AvgPool2d: _attributes(*_POOL_ARGS, "count_include_pad", "divisor_override"),
    nn.Upsample: _attributes("size", "scale_factor", "mode"),
}
_TORCH_CLASSES = {f"torch.nn.{cls.__name__}": cls for cls in _TORCH_ARGS}


class LayerNotDescribed(TypeError):
    """A layer that no configuration describes; the message names its class and its place in the model."""

    def __init__(self, module: nn.Module, path: tuple[str, ...] = ()) -> None:
        self.module_type = type(module)
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        t = self.module_type
        where = ".".join(self.path) or "the model"
        return (f"cannot describe {where} ({t.__module__}.{t.__qualname__}) in a configuration; supported: this "
                f"package's layers and models, {', '.join(sorted(_TORCH_CLASSES))}, and your own layer classes once "
                f"registered: autoencoder_toolkit.register_layer({t.__qualname__})")

    def within(self, name: str) -> "LayerNotDescribed":
        """The same error one level up, at the child ``name``."""
        self.path = (name, *self.path)
        self.args = (self._message(),)
        return self


def module_config(module: nn.Module) -> dict[str, Any]:
    """A JSON-serialisable description of ``module``'s architecture.

    Raises
    ------
    TypeError
        If ``module`` (or a submodule) is neither one of this package's layers and models
        nor a supported torch layer; the message names the offending type and its place.
    """
    config = getattr(module, "config", None)
    if callable(config):
        return config()
    user = _user_layer_config(module)
    if user is not None:
        return user
    extract = _TORCH_ARGS.get(type(module))
    if extract is not None:
        return {"type": f"torch.nn.{type(module).__name__}", "args": extract(module)}
    if type(module) is nn.Sequential:
        return {"type": "Chain", "layers": [child_config(m, str(i)) for i, m in enumerate(module)]}
    raise LayerNotDescribed(module)


def child_config(module: nn.Module, name: str) -> dict[str, Any]:
    """:func:`module_config` of the child ``name`` of a model (an error then names the child's place)."""
    try:
        return module_config(module)
    except LayerNotDescribed as err:
        raise err.within(name) from None


def _build(config: Mapping[str, Any]) -> nn.Module:
    kind = config["type"]
    if kind == USER_LAYER:
        return _build_user_layer(config)
    if kind in _TORCH_CLASSES:
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.get("args", {}).items()}
        return _TORCH_CLASSES[kind](**args)
    builder = _BUILDERS.get(kind)
    if builder is not None:
        return builder(config, _build)
    cls = _MODEL_CLASSES.get(kind)
    if cls is None:
        raise ArchitectureError(
            f"architecture: unknown model class {kind!r}; a class of your own rebuilds only where it is defined: "
            "import the module that defines it before loading")
    module = cls(**{name: _build(c) for name, c in config["fields"].items()})
    for attr, value in config.get("meta", {}).items():
        try:
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        except AttributeError:  # a property of the class: the model derives it from its fields
            raise ArchitectureError(f"architecture: {kind}: meta {attr!r} cannot be given; the model derives it "
                                    "from its fields") from None
    return module


def module_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a module (freshly initialised) from :func:`module_config`'s description.

    The configuration is checked first (:func:`~autoencoder_toolkit.io.architecture.check_config`),
    so nothing is allocated for a malformed one.

    Raises
    ------
    ValueError
        For an unknown layer type or a malformed configuration, naming the entry.
    """
    check_config(config)
    try:
        return _build(config)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, ArchitectureError):
            raise
        raise ArchitectureError(f"architecture: cannot rebuild {config.get('type')!r} ({err})") from None


# ----------------------------------------------------------------------------------
# Composition: ``encoder * decoder``
# ----------------------------------------------------------------------------------

_COMPOSITIONS: list[tuple[type, type, Callable[[Any, Any], nn.Module]]] = []


def register_composition(encoder_type: type, decoder_type: type, make: Callable[[Any, Any], nn.Module]) -> None:
    """Make ``encoder * decoder`` give ``make(encoder, decoder)`` for these types (like a Julia ``*`` method)."""
    _COMPOSITIONS.append((encoder_type, decoder_type, make))


def compose(encoder: Any, decoder: Any) -> Any:
    """``make(encoder, decoder)`` for the first registered pair of types that fits, else ``NotImplemented``."""
    for enc_type, dec_type, make in _COMPOSITIONS:
        if isinstance(encoder, enc_type) and isinstance(decoder, dec_type):
            return make(encoder, decoder)
    return NotImplemented


# ----------------------------------------------------------------------------------
# Model files and export
# ----------------------------------------------------------------------------------

#: The torch dtype of each safetensors dtype code (:data:`~autoencoder_toolkit.io.safetensors.DTYPES`).
_TORCH_DTYPES = {code: getattr(torch, name or "bfloat16") for code, (name, _) in DTYPES.items()}
_DTYPE_CODES = {v: k for k, v in _TORCH_DTYPES.items()}


def tensor_to_raw(t: torch.Tensor, name: str = "tensor") -> tuple[str, tuple[int, ...], bytes]:
    """A tensor as ``(safetensors dtype code, shape, little-endian bytes)`` (copied to the CPU)."""
    if t.dtype not in _DTYPE_CODES:
        raise TypeError(f"{name}: dtype {t.dtype} cannot be written to safetensors")
    c = t.detach().to("cpu").contiguous()
    raw = c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b""
    return _DTYPE_CODES[t.dtype], tuple(c.shape), raw


def raw_to_tensor(raw: tuple[str, tuple[int, ...], bytes]) -> torch.Tensor:
    """The inverse of :func:`tensor_to_raw`: a new CPU tensor."""
    dtype, shape, data = raw
    if not data:
        return torch.zeros(shape, dtype=_TORCH_DTYPES[dtype])
    return torch.frombuffer(bytearray(data), dtype=_TORCH_DTYPES[dtype]).reshape(shape)


def model_tensors(model: nn.Module) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """The ``state_dict`` of ``model`` as raw tensors ``name: (dtype code, shape, bytes)``."""
    out = {}
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):  # pragma: no cover - extra state
            raise TypeError(f"model: state entry {name!r} is not a tensor and cannot be saved as safetensors")
        out[name] = tensor_to_raw(t, f"model: tensor {name!r}")
    return out


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model`` to one ``.safetensors`` file that :func:`load_model` (and ``inference.load``) rebuild.

    The file holds the weights (``model.state_dict()``) and, in its metadata, the
    architecture (:func:`module_config`) and a SHA-256 digest of both
    (:mod:`autoencoder_toolkit.io.model_file`). It is written atomically. Returns the path.

    Raises
    ------
    TypeError
        If the architecture cannot be described (a layer outside the supported set).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model_file.write_model(path, module_config(model), model_tensors(model),
                                  {"torch_version": torch.__version__})


def load_model(path: str | os.PathLike[str], *, config: Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (no pickle involved), ready to use: in eval mode.

    ``aet.load_model("runs/my-run").encode(x)`` gives the latent means of ``x``; call
    ``.train()`` on it to train it further (a run resumes with ``train --resume``).

    Parameters
    ----------
    path:
        A ``.safetensors`` model file, a checkpoint folder, or a run directory (its
        latest complete checkpoint is used).
    config:
        Architecture to rebuild instead of the one stored in the file (a
        :func:`module_config` mapping). The stored tensors must then match it.
    device:
        Where to put the model.

    The file's architecture and tensors are checked before anything is built (bounded
    memory and time for any file; see :mod:`autoencoder_toolkit.io.model_file`).

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupt or foreign (e.g. pickled) file, an architecture that
        is malformed or unknown, or tensors whose names, shapes or dtypes differ from it.
    """
    dev = check_device(device)
    p = resolve_model_path(path)
    cfg, raw = model_file.read_model(p, config=config)
    return model_from_file(cfg, raw, p).to(dev).eval()


def model_from_file(cfg: Mapping[str, Any], raw: Mapping[str, Any], p: Path) -> nn.Module:
    """The model a checked file describes (:func:`~autoencoder_toolkit.io.model_file.read_model`'s
    ``(configuration, tensors)``), built, put in its dtype and filled with the tensors (on the CPU)."""
    try:
        model = _build(cfg)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"model: cannot rebuild the architecture of '{p}' ({err})") from None
    code = model_file.float_code(raw)
    if code is not None and _TORCH_DTYPES[code] != torch.float32:
        model = model.to(_TORCH_DTYPES[code])  # a model saved in float64 (or half precision) loads as it was
    expected = model.state_dict()
    for name, ref in expected.items():
        if _TORCH_DTYPES[raw[name][0]] != ref.dtype:
            raise CheckpointError(f"model: '{p}' does not match the architecture: tensor {name!r} has dtype "
                                  f"{_TORCH_DTYPES[raw[name][0]]}, the architecture expects {ref.dtype}")
    model.load_state_dict({name: raw_to_tensor(r) for name, r in raw.items()}, strict=True)
    return model


def to_backend(module: nn.Module, backend: Any = "numpy", *, device: Any = None) -> Any:
    """A frozen copy of ``module`` for inference on ``backend`` (``"numpy"``, ``"cupy"``, ``"torch"``).

    The copy is built from the module's configuration and weights, as a model file is
    loaded (:func:`autoencoder_toolkit.inference.from_config`); training the module
    afterwards does not change it.

    Raises
    ------
    TypeError
        For a layer that cannot run there, naming its type and its place in the model.
    """
    if isinstance(module, inference.FrozenModule):
        return module.to_backend(backend, device=device)
    try:
        config = module_config(module)
    except TypeError as err:
        raise TypeError(f"to_backend: cannot export: {err}") from None
    arrays = {name: t.detach().clone() for name, t in module.state_dict().items()}
    return inference.from_config(config, arrays, backend, device=device)


def structure_dict(trunk: str | None, heads: tuple[str, ...], output: type | None, single_as_batch: bool) -> dict:
    """The ``structure`` entry of an encoder's or decoder's configuration."""
    return {"trunk": trunk, "heads": list(heads), "output": None if output is None else output.__name__,
            "single_as_batch": single_as_batch}


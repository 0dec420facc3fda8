"""The architecture registry: model configurations as JSON, checked without torch.

A model is saved as a JSON *configuration* (its architecture) and its tensors. One
configuration describes the model for both sides that run it: the torch models rebuild
it (:mod:`autoencoder_toolkit.models.architecture`) and the frozen NumPy/CuPy models
of :mod:`autoencoder_toolkit.inference` do. This module is where every node type is
declared: :func:`check_config` checks a configuration from outside (bounded depth and
size, known keys, sizes that make sense) and :func:`expected_tensors` gives the tensors
it declares, names and shapes, so that a loader compares them with a file's tensors
*before* anything is built or allocated.

Node types
----------
* this package's layers: ``Dense`` (``n_in``, ``n_out``, ``activation``, ``bias``),
  ``Chain`` (``layers``), ``Flatten``, ``Reshape`` (``shape``), ``ActivationOverDims``
  (``activation``, ``dim``);
* torch layers, ``{"type": "torch.nn.<Name>", "args": {...}}``, for the names of
  :data:`TORCH_LAYERS` with their constructor arguments;
* models, ``{"type": <class name>, "fields": {name: node}, "meta": {...},
  "structure": {...}}``: a model is made of its fields (submodules) and holds no tensor
  of its own. ``meta`` may give ``input_shape``, ``output_shape`` and ``latent_dim``.
  An encoder or a decoder also gives its ``structure``: ``heads`` (the fields whose
  outputs are the parameters of its output distribution), an optional ``trunk`` (a field
  applied first, whose output every head takes), ``output`` (the distribution's name in
  :mod:`autoencoder_toolkit.distributions`, or ``null`` for a deterministic network) and
  ``single_as_batch`` (one sample runs as a batch of one). Files written before the
  structure was recorded name one of the built-in classes of
  :data:`BUILTIN_STRUCTURES`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

__all__ = ["ArchitectureError", "TORCH_LAYERS", "BUILTIN_STRUCTURES", "MODEL_FIELDS", "MAX_DEPTH", "MAX_NODES",
           "META_ATTRIBUTES", "USER_LAYER", "check_config", "expected_tensors", "structure_of"]

#: Deepest nesting of nodes accepted.
MAX_DEPTH = 64
#: Most nodes accepted in one configuration.
MAX_NODES = 20_000
#: Most elements accepted in one declared tensor (a 64 GiB float32 tensor).
MAX_ELEMENTS = 2**34


class ArchitectureError(ValueError):
    """A configuration that does not describe a model; the message names where and why."""


# ----------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return _is_int(v) and 1 <= v <= MAX_ELEMENTS


def _nonneg(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= MAX_ELEMENTS


def _ints(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and 0 < len(v) <= 8 and all(ok(i) for i in v)


def _int_or_ints(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: ok(v) or _ints(ok)(v)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _optional(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


def _choice(*options: str) -> Callable[[Any], bool]:
    return lambda v: v in options


_bool = lambda v: isinstance(v, bool)  # noqa: E731
_int = lambda v: _is_int(v) and abs(v) <= 64  # noqa: E731 - an axis
_name = lambda v: isinstance(v, str) and 0 < len(v) <= 64  # noqa: E731

_CONV = {"in_channels": _positive, "out_channels": _positive, "kernel_size": _ints(_positive),
         "stride": _ints(_positive), "padding": lambda v: v in ("same", "valid") or _ints(_nonneg)(v),
         "dilation": _ints(_positive), "groups": _positive, "bias": _bool,
         "padding_mode": _choice("zeros", "reflect", "replicate", "circular")}
_CONV_T = {**{k: v for k, v in _CONV.items() if k != "padding"}, "padding": _ints(_nonneg),
           "output_padding": _ints(_nonneg)}
_NORM = {"num_features": _positive, "eps": _finite, "momentum": _optional(_finite), "affine": _bool,
         "track_running_stats": _bool}
_POOL = {"kernel_size": _int_or_ints(_positive), "stride": _optional(_int_or_ints(_positive)),
         "padding": _int_or_ints(_nonneg), "dilation": _int_or_ints(_positive), "ceil_mode": _bool}


def _conv_tensors(a: Mapping[str, Any], transposed: bool) -> dict[str, tuple[int, ...]]:
    cin, cout, groups = a["in_channels"], a["out_channels"], a.get("groups", 1)
    k = tuple(a["kernel_size"])
    w = (cin, cout // groups, *k) if transposed else (cout, cin // groups, *k)
    return {"weight": w, **({"bias": (cout,)} if a.get("bias", True) else {})}


def _norm_tensors(a: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    c = a["num_features"]
    out: dict[str, tuple[int, ...]] = {}
    if a.get("affine", True):
        out.update(weight=(c,), bias=(c,))
    if a.get("track_running_stats", True):
        out.update(running_mean=(c,), running_var=(c,), num_batches_tracked=())
    return out


def _no_tensors(a: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {}


#: torch layers a configuration may hold: ``torch.nn.<Name>`` -> (argument checks, declared tensors).
TORCH_LAYERS: dict[str, tuple[dict[str, Callable[[Any], bool]], Callable[[Mapping[str, Any]], dict]]] = {
    "Linear": ({"in_features": _positive, "out_features": _positive, "bias": _bool},
               lambda a: {"weight": (a["out_features"], a["in_features"]),
                          **({"bias": (a["out_features"],)} if a.get("bias", True) else {})}),
    **{f"Conv{n}d": (_CONV, lambda a: _conv_tensors(a, False)) for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": (_CONV_T, lambda a: _conv_tensors(a, True)) for n in (1, 2, 3)},
    **{f"BatchNorm{n}d": (_NORM, _norm_tensors) for n in (1, 2, 3)},
    "LayerNorm": ({"normalized_shape": _ints(_positive), "eps": _finite, "elementwise_affine": _bool, "bias": _bool},
                  lambda a: {**({"weight": tuple(a["normalized_shape"])} if a.get("elementwise_affine", True) else {}),
                             **({"bias": tuple(a["normalized_shape"])}
                                if a.get("elementwise_affine", True) and a.get("bias", True) else {})}),
    "GroupNorm": ({"num_groups": _positive, "num_channels": _positive, "eps": _finite, "affine": _bool},
                  lambda a: {"weight": (a["num_channels"],), "bias": (a["num_channels"],)}
                  if a.get("affine", True) else {}),
    **{name: ({}, _no_tensors) for name in ("ReLU", "Tanh", "Sigmoid", "Identity", "SiLU")},
    "Softplus": ({"beta": _finite, "threshold": _finite}, _no_tensors),
    "GELU": ({"approximate": _choice("none", "tanh")}, _no_tensors),
    "ELU": ({"alpha": _finite}, _no_tensors),
    "LeakyReLU": ({"negative_slope": _finite}, _no_tensors),
    "Softmax": ({"dim": _optional(_int)}, _no_tensors),
    "LogSoftmax": ({"dim": _optional(_int)}, _no_tensors),
    "Flatten": ({"start_dim": _int, "end_dim": _int}, _no_tensors),
    "Unflatten": ({"dim": _int, "unflattened_size": _ints(lambda v: _positive(v) or v == -1)}, _no_tensors),
    **{name: ({"p": lambda v: _finite(v) and 0 <= v <= 1}, _no_tensors)
       for name in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")},
    "MaxPool2d": ({**_POOL, "return_indices": _bool}, _no_tensors),
    "AvgPool2d": ({**{k: v for k, v in _POOL.items() if k != "dilation"}, "count_include_pad": _bool,
                   "divisor_override": _optional(_positive)}, _no_tensors),
    "Upsample": ({"size": _optional(_int_or_ints(_positive)), "scale_factor": _optional(_finite),
                  "mode": _choice("nearest", "linear", "bilinear", "bicubic", "trilinear")}, _no_tensors),
}

# arguments without which a torch layer cannot be built or its tensors known
_TORCH_REQUIRED = {
    "Linear": ("in_features", "out_features"),
    **{f"Conv{n}d": ("in_channels", "out_channels", "kernel_size") for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": ("in_channels", "out_channels", "kernel_size") for n in (1, 2, 3)},
    **{f"BatchNorm{n}d": ("num_features",) for n in (1, 2, 3)},
    "LayerNorm": ("normalized_shape",), "GroupNorm": ("num_groups", "num_channels"),
    "Unflatten": ("dim", "unflattened_size"), "MaxPool2d": ("kernel_size",), "AvgPool2d": ("kernel_size",),
}

# this package's layers: type -> (argument checks, declared tensors)
_LAYERS: dict[str, tuple[dict[str, Callable[[Any], bool]], Callable[[Mapping[str, Any]], dict]]] = {
    "Dense": ({"n_in": _positive, "n_out": _positive, "activation": _name, "bias": _bool},
              lambda a: {"weight": (a["n_out"], a["n_in"]), **({"bias": (a["n_out"],)} if a.get("bias", True) else {})}),
    "Flatten": ({}, _no_tensors),
    "Reshape": ({"shape": lambda v: _ints(lambda s: _positive(s) or s == -1)(v) and v.count(-1) <= 1}, _no_tensors),
    "ActivationOverDims": ({"activation": _name, "dim": _int}, _no_tensors),
}
_REQUIRED = {"Dense": ("n_in", "n_out", "activation"), "Reshape": ("shape",),
             "ActivationOverDims": ("activation", "dim")}

#: The node type of a layer class a user registered (``autoencoder_toolkit.register_layer``):
#: ``{"type": "UserLayer", "name": ..., "args": {...}, "tensors": {name: shape}}``. Its
#: constructor arguments are plain JSON; its tensors are recorded, so that they are checked
#: against the file before the class is constructed.
USER_LAYER = "UserLayer"


def _json_value(v: Any, depth: int = 0) -> bool:
    """A plain JSON value of bounded nesting (a user layer's constructor arguments)."""
    if depth > 8:
        return False
    if v is None or isinstance(v, (bool, str)) or _is_int(v):
        return not isinstance(v, str) or len(v) <= 1000
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return len(v) <= 10_000 and all(_json_value(i, depth + 1) for i in v)
    if isinstance(v, dict):
        return len(v) <= 1000 and all(isinstance(k, str) and _json_value(i, depth + 1) for k, i in v.items())
    return False


#: The fields of the built-in models that are not encoders or decoders.
MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "VAE": ("encoder", "decoder"),
    "InfoMaxVAE": ("vae", "mi"),
    "MutualInfoChain": ("data", "latent", "mlp"),
    "MMDVAE": ("vae",),
    "AE": ("encoder", "decoder"),
}

#: The structure of the built-in encoders and decoders (what their configurations record).
BUILTIN_STRUCTURES: dict[str, dict[str, Any]] = {
    "Encoder": {"trunk": None, "heads": ["encoder"], "output": None, "single_as_batch": False},
    "JointGaussianLogEncoder": {"trunk": "encoder", "heads": ["μ", "logσ"], "output": "GaussianLogParams",
                                "single_as_batch": False},
    "JointGaussianEncoder": {"trunk": "encoder", "heads": ["μ", "σ"], "output": "GaussianParams",
                             "single_as_batch": False},
    "Decoder": {"trunk": None, "heads": ["decoder"], "output": None, "single_as_batch": False},
    "SimpleGaussianDecoder": {"trunk": None, "heads": ["decoder"], "output": "GaussianMean",
                              "single_as_batch": False},
    "BernoulliDecoder": {"trunk": None, "heads": ["decoder"], "output": "Bernoulli", "single_as_batch": False},
    "CategoricalDecoder": {"trunk": None, "heads": ["decoder"], "output": "Categorical", "single_as_batch": True},
    "JointGaussianLogDecoder": {"trunk": "decoder", "heads": ["μ", "logσ"], "output": "GaussianLogParams",
                                "single_as_batch": False},
    "JointGaussianDecoder": {"trunk": "decoder", "heads": ["μ", "σ"], "output": "GaussianParams",
                             "single_as_batch": False},
    "SplitGaussianLogDecoder": {"trunk": None, "heads": ["μ", "logσ"], "output": "GaussianLogParams",
                                "single_as_batch": False},
    "SplitGaussianDecoder": {"trunk": None, "heads": ["μ", "σ"], "output": "GaussianParams",
                             "single_as_batch": False},
}
#: Built-in composite models whose shapes are properties of their fields, never recorded.
_DERIVED_META = ("VAE", "InfoMaxVAE", "MMDVAE", "AE")
#: The attributes a model node may record under ``meta``, and the check of each value.
META_ATTRIBUTES = {"input_shape": _ints(_positive), "output_shape": _ints(_positive), "latent_dim": _positive}


def structure_of(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The structure of an encoder or decoder node (recorded, or that of a built-in class); else ``None``."""
    found = config.get("structure")
    if found is None:
        found = BUILTIN_STRUCTURES.get(config.get("type"))
    return None if found is None else dict(found)


# ----------------------------------------------------------------------------------
# Checking a configuration
# ----------------------------------------------------------------------------------

class _Walk:
    """One pass over a configuration: counts nodes and reports where a problem is."""

    def __init__(self) -> None:
        self.nodes = 0

    def fail(self, where: str, message: str) -> ArchitectureError:
        return ArchitectureError(f"architecture: {where or 'the root'}: {message}")

    def args(self, node: Mapping[str, Any], schema: Mapping[str, Callable[[Any], bool]], where: str,
             required: tuple[str, ...] = ()) -> None:
        for key in required:
            if key not in node:
                raise self.fail(where, f"{node['type']} needs {key!r}")
        for key, value in node.items():
            if key == "type":
                continue
            check = schema.get(key)
            if check is None:
                raise self.fail(where, f"{node['type']} has no argument {key!r} (it takes "
                                       f"{', '.join(schema) or 'none'})")
            if not check(value):
                raise self.fail(where, f"{node['type']}: {key} = {value!r:.80} is not a valid value")

    def node(self, node: Any, where: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(where, f"more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise self.fail(where, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise self.fail(where, f"expected a mapping with a 'type' entry, got {node!r:.100}")
        kind = node["type"]
        if kind.startswith("torch.nn."):
            entry = TORCH_LAYERS.get(kind[len("torch.nn."):])
            if entry is None:
                raise self.fail(where, f"unknown torch layer {kind!r}")
            if set(node) - {"type", "args"}:
                raise self.fail(where, f"{kind} takes only 'args', got {sorted(set(node) - {'type'})}")
            args = node.get("args", {})
            if not isinstance(args, dict):
                raise self.fail(where, f"{kind}: 'args' must be a mapping")
            self.args({"type": kind, **args}, entry[0], where)
            self.torch_consistency(kind, args, where)
            return
        if kind == "Chain":
            layers = node.get("layers")
            if set(node) != {"type", "layers"} or not isinstance(layers, list):
                raise self.fail(where, "a Chain has exactly a 'layers' list")
            for i, child in enumerate(layers):
                self.node(child, f"{where}.{i}" if where else str(i), depth + 1)
            return
        if kind in _LAYERS:
            self.args(node, _LAYERS[kind][0], where, _REQUIRED.get(kind, ()))
            return
        if kind == USER_LAYER:
            self.user_layer(node, where)
            return
        self.model(node, where, depth)

    def user_layer(self, node: Mapping[str, Any], where: str) -> None:
        if set(node) != {"type", "name", "args", "tensors"}:
            raise self.fail(where, f"a {USER_LAYER} has exactly a name, args and tensors, got {sorted(node)}")
        if not _name(node["name"]):
            raise self.fail(where, f"{USER_LAYER}: name {node['name']!r:.60} is not a valid class name")
        if not isinstance(node["args"], dict) or not _json_value(node["args"]):
            raise self.fail(where, f"{node['name']}: args must be a mapping of plain JSON values")
        tensors = node["tensors"]
        ok = isinstance(tensors, dict) and len(tensors) <= 1000 and all(
            isinstance(k, str) and 0 < len(k) <= 200 and isinstance(v, list) and len(v) <= 8 and all(_nonneg(s) for s in v)
            for k, v in tensors.items())
        if not ok:
            raise self.fail(where, f"{node['name']}: tensors must map names to shapes")

    def torch_consistency(self, kind: str, args: Mapping[str, Any], where: str) -> None:
        name = kind[len("torch.nn."):]
        for key in _TORCH_REQUIRED.get(name, ()):
            if key not in args:
                raise self.fail(where, f"{kind} needs {key!r}")
        if "Conv" in name:
            spatial = int(name[-2])
            for key in ("kernel_size", "stride", "dilation", "output_padding", "padding"):
                if isinstance(args.get(key), list) and len(args[key]) != spatial:
                    raise self.fail(where, f"{kind}: {key} needs {spatial} value(s), got {args[key]!r}")
            stride = args.get("stride", 1)
            if args.get("padding") == "same" and any(v != 1 for v in (stride if isinstance(stride, list) else [stride])):
                raise self.fail(where, f"{kind}: padding 'same' needs stride 1, got stride {stride!r}")
            groups = args.get("groups", 1)
            if args["in_channels"] % groups or args["out_channels"] % groups:
                raise self.fail(where, f"{kind}: groups = {groups} does not divide the channels")
        if name == "GroupNorm" and args["num_channels"] % args["num_groups"]:
            raise self.fail(where, f"{kind}: num_groups does not divide num_channels")

    def model(self, node: Mapping[str, Any], where: str, depth: int) -> None:
        kind = node["type"]
        extra = set(node) - {"type", "fields", "meta", "structure"}
        if extra:
            raise self.fail(where, f"unknown node type {kind!r} (or a model with unexpected entries "
                                   f"{sorted(extra)})")
        fields = node.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise self.fail(where, f"unknown node type {kind!r}: not a layer, and no 'fields' of a model")
        for name in fields:
            if not _name(name):
                raise self.fail(where, f"{kind}: field name {name!r:.40} is not valid")
        meta = node.get("meta", {})
        if not isinstance(meta, dict):
            raise self.fail(where, f"{kind}: 'meta' must be a mapping")
        if meta and kind in _DERIVED_META:
            raise self.fail(where, f"{kind}: takes no 'meta' (it derives its shapes from its fields)")
        for key, value in meta.items():
            if key not in META_ATTRIBUTES:
                raise self.fail(where, f"{kind}: meta may give {', '.join(META_ATTRIBUTES)}, not {key!r:.40}")
            if not META_ATTRIBUTES[key](value):
                raise self.fail(where, f"{kind}: meta {key} = {value!r:.80} is not a valid value")
        expected = MODEL_FIELDS.get(kind)
        if expected is not None and set(fields) != set(expected):
            raise self.fail(where, f"{kind} has the fields {', '.join(expected)}, got {', '.join(fields)}")
        structure = structure_of(node)
        if "structure" in node or kind in BUILTIN_STRUCTURES:
            self.structure(kind, structure, fields, where)
        if kind in BUILTIN_STRUCTURES and structure != BUILTIN_STRUCTURES[kind]:
            raise self.fail(where, f"{kind}: the recorded structure {structure!r:.120} is not that of the class "
                                   f"({BUILTIN_STRUCTURES[kind]!r:.120})")
        for name, child in fields.items():
            self.node(child, f"{where}.{name}" if where else name, depth + 1)

    def structure(self, kind: str, s: Any, fields: Mapping[str, Any], where: str) -> None:
        if not isinstance(s, dict) or set(s) != {"trunk", "heads", "output", "single_as_batch"}:
            raise self.fail(where, f"{kind}: 'structure' needs trunk, heads, output and single_as_batch")
        heads, trunk = s["heads"], s["trunk"]
        if not isinstance(heads, list) or not heads or not all(isinstance(h, str) and h in fields for h in heads):
            raise self.fail(where, f"{kind}: structure heads {heads!r:.80} must name fields")
        if trunk is not None and (not isinstance(trunk, str) or trunk not in fields or trunk in heads):
            raise self.fail(where, f"{kind}: structure trunk {trunk!r:.40} must name another field")
        if set(fields) != set(heads) | ({trunk} if trunk else set()):
            raise self.fail(where, f"{kind}: its fields {', '.join(fields)} are not its trunk and heads")
        if not (s["output"] is None or _name(s["output"])) or not isinstance(s["single_as_batch"], bool):
            raise self.fail(where, f"{kind}: structure output must be a distribution name or null")
        if s["output"] is None and len(heads) != 1:
            raise self.fail(where, f"{kind}: a deterministic network has one head")


def check_config(config: Any) -> None:
    """Check a configuration from outside; :class:`ArchitectureError` says where it is wrong.

    Bounded: at most :data:`MAX_NODES` nodes nested at most :data:`MAX_DEPTH` deep, every
    size a positive integer, every declared tensor at most :data:`MAX_ELEMENTS` elements.
    """
    _Walk().node(config, "", 0)
    for name, shape in expected_tensors(config).items():
        if math.prod(shape) > MAX_ELEMENTS:
            raise ArchitectureError(f"architecture: tensor {name!r} would have shape {list(shape)}, over "
                                    f"{MAX_ELEMENTS} elements")


def expected_tensors(config: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """The tensors (``state_dict`` names and shapes) a checked configuration declares."""
    kind = config["type"]
    if kind.startswith("torch.nn."):
        own = TORCH_LAYERS[kind[len("torch.nn."):]][1](config.get("args", {}))
        return {prefix + k: tuple(v) for k, v in own.items()}
    if kind == "Chain":
        out: dict[str, tuple[int, ...]] = {}
        for i, child in enumerate(config["layers"]):
            out.update(expected_tensors(child, f"{prefix}{i}."))
        return out
    if kind in _LAYERS:
        return {prefix + k: tuple(v) for k, v in _LAYERS[kind][1](config).items()}
    if kind == USER_LAYER:
        return {prefix + k: tuple(v) for k, v in config["tensors"].items()}
    out = {}
    for name, child in config["fields"].items():
        out.update(expected_tensors(child, f"{prefix}{name}."))
    return out

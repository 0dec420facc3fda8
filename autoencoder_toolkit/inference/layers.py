"""The frozen layers: a trained layer's forward pass on NumPy, CuPy or torch arrays, without torch.

A frozen module holds static ``params`` (JSON), weight ``arrays`` of one backend
(:mod:`autoencoder_toolkit.backends`) and ``children``. Calling it converts its first
argument to the backend and the weights' floating dtype and runs :meth:`FrozenModule.forward`.
Every layer computes what the torch layer of the same name computes in ``eval()`` mode
(dropout off, batch-norm running statistics), within float32 rounding.

Layers: this package's ``Dense``, ``Chain``, ``Flatten``, ``Reshape`` and
``ActivationOverDims``; torch's ``Linear``, ``Conv1d``/``Conv2d`` and their transposes
(zero padding), ``BatchNorm1d/2d/3d``, ``LayerNorm``, ``GroupNorm``, ``MaxPool2d``,
``AvgPool2d`` (``ceil_mode=False``), ``Flatten``, ``Unflatten``, dropout (identity) and
the activations of :data:`~.activations.ACTIVATIONS`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import array_api_compat

from ..backends import get_backend
from ..backends.base import Backend
from ..io.architecture import USER_LAYER, check_config, expected_tensors
from ..io.model_file import write_model
from ..io.safetensors import numpy_entry
from .activations import ACTIVATIONS

__all__ = ["FrozenModule", "NotExportable", "Builder", "register", "register_default", "from_config",
           "SUPPORTED_LAYERS", "Activation", "Dense", "Chain", "Flatten", "TorchFlatten", "Unflatten", "Reshape",
           "ActivationOverDims", "Conv", "ConvTranspose", "Pool2d", "BatchNorm", "LayerNorm", "GroupNorm"]


class FrozenModule:
    """A node of a frozen model: static ``params`` (JSON), weight ``arrays``, sub-``children``.

    Calling a frozen module converts its first argument to the module's backend and
    dtype (NumPy arrays and nested lists are accepted everywhere) and runs
    :meth:`forward`. A module built from an architecture configuration
    (:func:`from_config`) keeps it: :meth:`config` returns it, and :meth:`save` writes
    the one model file format that ``load_model`` (torch) reads too.
    """

    def __init__(self, backend: Backend, params: dict | None = None, arrays: dict | None = None,
                 children: dict | None = None, source: dict | None = None) -> None:
        self.backend = backend
        self.params = dict(params or {})
        self.arrays = dict(arrays or {})
        self.children = dict(children or {})
        self.source = source
        self._setup()

    def _setup(self) -> None:
        """Derived state, computed once after construction."""

    # -- structure ----------------------------------------------------------------
    @property
    def xp(self) -> Any:
        """The array-API namespace of the backend."""
        return self.backend.xp

    @property
    def dtype(self) -> Any:
        """The floating dtype of the weights (float32 when the module has none)."""
        for _, a in self.named_arrays():
            kind = getattr(a.dtype, "kind", None)
            if kind == "f" or getattr(a.dtype, "is_floating_point", False):
                return a.dtype
        return self.backend.dtype("float32")

    def named_arrays(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(dotted name, array)`` for every weight of the tree (the torch ``state_dict`` names)."""
        for name, a in self.arrays.items():
            yield prefix + name, a
        for cname, child in self.children.items():
            yield from child.named_arrays(f"{prefix}{cname}.")

    def config(self) -> dict[str, Any]:
        """The architecture configuration the module was built from (weights excluded)."""
        if self.source is None:
            raise TypeError(f"{type(self).__name__} was built by hand, not from an architecture configuration")
        return self.source

    def __repr__(self) -> str:
        inner = ", ".join([f"{k}={v!r}" for k, v in self.params.items()]
                          + [f"{k}: {tuple(a.shape)}" for k, a in self.arrays.items() if k == "weight"])
        head = f"{type(self).__name__}({inner})"
        if not self.children:
            return head
        body = "\n".join(f"  ({k}): " + repr(c).replace("\n", "\n  ") for k, c in self.children.items())
        return f"{head} on {self.backend.name} [\n{body}\n]"

    # -- calling ------------------------------------------------------------------
    def _input(self, x: Any, name: str = "x") -> Any:
        """``x`` as an array of this backend with the weights' floating dtype."""
        if isinstance(x, (bool, int, float)) or x is None:
            raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
        dtype = self.dtype
        if self.backend.is_array(x) and x.dtype == dtype:
            return x
        arr = self.backend.asarray(x)
        kind = getattr(arr.dtype, "kind", None)
        if kind is None:  # torch dtypes
            floating = getattr(arr.dtype, "is_floating_point", False)
        else:
            floating = kind == "f"
        if not floating:
            raise TypeError(f"{name}: expected floating-point data, got dtype {arr.dtype}")
        return self.backend.asarray(arr, dtype=dtype)

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.forward(self._input(x), *args, **kwargs)

    def forward(self, x: Any) -> Any:  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    # -- moving and saving ----------------------------------------------------------
    def to_backend(self, backend: str | Backend, *, device: Any = None) -> "FrozenModule":
        """The same frozen model with its weights on another backend (or device)."""
        return from_config(self.config(), dict(self.named_arrays()), backend, device=device)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to one ``.safetensors`` model file (architecture in its metadata; no pickle).

        The file is the one model file format of :mod:`autoencoder_toolkit.io.model_file`:
        ``inference.load`` and the torch ``load_model`` both read it.
        """
        tensors = {name: numpy_entry(self.backend.to_numpy(a)) for name, a in self.named_arrays()}
        return write_model(path, self.config(), tensors)


# ----------------------------------------------------------------------------------
# Building from an architecture configuration
# ----------------------------------------------------------------------------------

class NotExportable(TypeError):
    """A layer that the frozen models cannot run; the message names it and its place."""


#: configuration type -> ``build(config, arrays, backend, children_builder, where) -> FrozenModule``.
_BUILDERS: dict[str, Callable[..., FrozenModule]] = {}
_DEFAULT_BUILDER: list[Callable[..., FrozenModule]] = []


def register(*type_names: str) -> Callable[[Callable[..., FrozenModule]], Callable[..., FrozenModule]]:
    """Build nodes of these configuration types with the decorated function (the frozen facet of the registry)."""
    def decorate(fn: Callable[..., FrozenModule]) -> Callable[..., FrozenModule]:
        for name in type_names:
            _BUILDERS[name] = fn
        return fn
    return decorate


def register_default(fn: Callable[..., FrozenModule]) -> Callable[..., FrozenModule]:
    """Build nodes of any other type (models of classes this side does not know) with ``fn``."""
    _DEFAULT_BUILDER[:] = [fn]
    return fn


class Builder:
    """One pass of :func:`from_config`: the arrays of every tensor, converted onto the target backend."""

    def __init__(self, arrays: Mapping[str, Any], backend: Backend, device: Any) -> None:
        self.arrays = arrays
        self.backend = backend
        self.device = device

    def unsupported(self, config: Mapping[str, Any], where: str, why: str = "") -> NotExportable:
        return NotExportable(f"to_backend: cannot run {where or 'the model'} ({config.get('type')}) on "
                             f"{self.backend.name}{why}; the frozen models run the layers of "
                             "autoencoder_toolkit.inference.SUPPORTED_LAYERS")

    def own(self, config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """The node's own tensors (those its configuration declares), on the target backend."""
        names = expected_tensors(config)
        return {name: self.backend.asarray(self.arrays[prefix + name], device=self.device) for name in names}

    def node(self, config: Mapping[str, Any], prefix: str = "", where: str = "") -> FrozenModule:
        if config["type"] == USER_LAYER:
            raise self.unsupported(config, where, f": {config['name']} is a layer class of your own, which runs in "
                                                  "torch only")
        builder = _BUILDERS.get(config["type"]) or (_DEFAULT_BUILDER[0] if _DEFAULT_BUILDER else None)
        if builder is None:
            raise self.unsupported(config, where)
        return builder(self, config, prefix, where)

    def child(self, config: Mapping[str, Any], prefix: str, where: str, name: str) -> FrozenModule:
        return self.node(config, f"{prefix}{name}.", f"{where}.{name}" if where else name)


def from_config(config: Mapping[str, Any], arrays: Mapping[str, Any], backend: str | Backend = "numpy", *,
                device: Any = None) -> FrozenModule:
    """The frozen model that an architecture configuration and its tensors describe.

    ``config`` is a configuration of :mod:`autoencoder_toolkit.io.architecture` (checked
    here); ``arrays`` maps every tensor it declares (the torch ``state_dict`` names) to
    an array of any backend, copied onto ``backend`` (and ``device``).

    Raises
    ------
    NotExportable
        (a ``TypeError``) for a layer the frozen models cannot run, naming it and its place.
    """
    check_config(config)
    missing = [name for name in expected_tensors(config) if name not in arrays]
    if missing:
        raise ValueError(f"arrays: missing {len(missing)} tensor(s) of the architecture (first: {missing[0]!r})")
    return Builder(arrays, get_backend(backend), device).node(config)


class Activation(FrozenModule):
    """An elementwise (or softmax-type) activation; ``params``: ``name`` and its parameters."""

    def _setup(self) -> None:
        p = dict(self.params)
        self._fn = ACTIVATIONS[p.pop("name")]
        self._kw = p

    def forward(self, x: Any) -> Any:  # noqa: D102
        return self._fn(self.xp, x, **self._kw)


class Dense(FrozenModule):
    """``activation(x Wᵀ + b)``; arrays ``weight`` ``(n_out, n_in)`` and optional ``bias``."""

    def _setup(self) -> None:
        act = dict(self.params.get("activation", {"name": "identity"}))
        self._fn = ACTIVATIONS[act.pop("name")]
        self._kw = act
        self._wt = self.xp.matrix_transpose(self.arrays["weight"])

    def forward(self, x: Any) -> Any:  # noqa: D102
        y = self.xp.matmul(x, self._wt)
        if "bias" in self.arrays:
            y = y + self.arrays["bias"]
        return self._fn(self.xp, y, **self._kw)


class Chain(FrozenModule):
    """Children ``"0"``, ``"1"``, ... applied in order."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        for layer in self.children.values():
            x = layer.forward(x)
        return x


class Flatten(FrozenModule):
    """This package's ``Flatten``: ``(B, ...) -> (B, n)``; a 1-D input ``(n,)`` becomes ``(n, 1)``."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        if x.ndim == 1:
            return self.xp.reshape(x, (-1, 1))
        return self.xp.reshape(x, (x.shape[0], -1))


class TorchFlatten(FrozenModule):
    """torch's ``Flatten(start_dim, end_dim)``."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        n = x.ndim
        s, e = self.params["start_dim"] % n, self.params["end_dim"] % n
        if s >= e:
            return x
        merged = 1
        for d in x.shape[s:e + 1]:
            merged *= int(d)
        return self.xp.reshape(x, tuple(x.shape[:s]) + (merged,) + tuple(x.shape[e + 1:]))


class Unflatten(FrozenModule):
    """torch's ``Unflatten(dim, unflattened_size)``."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        d = self.params["dim"] % x.ndim
        shape = tuple(x.shape[:d]) + tuple(self.params["sizes"]) + tuple(x.shape[d + 1:])
        return self.xp.reshape(x, shape)


class Reshape(FrozenModule):
    """Reshape to ``params["shape"]`` (C order; ``-1`` inferred)."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        return self.xp.reshape(x, tuple(self.params["shape"]))


class ActivationOverDims(FrozenModule):
    """Softmax or log-softmax over ``params["dim"]``."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        return ACTIVATIONS[self.params["name"]](self.xp, x, dim=self.params["dim"])


def _device_of(x: Any) -> Any:
    return array_api_compat.device(x)


def _pad2d(xp: Any, x: Any, pads: tuple[int, int, int, int], value: float = 0.0) -> Any:
    """Pad the last two axes by ``(top, bottom, left, right)`` with ``value``."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    b, c, h, w = x.shape
    out = xp.full((b, c, h + top + bottom, w + left + right), value, dtype=x.dtype, device=_device_of(x))
    out[:, :, top:top + h, left:left + w] = x
    return out


def _windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
             out_hw: tuple[int, int]) -> list[Any]:
    """The ``kh·kw`` strided views ``x[..., i·dh :: sh, j·dw :: sw]`` of shape ``(B, C, Ho, Wo)``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    return [x[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def _as_4d(xp: Any, x: Any, spatial: int) -> tuple[Any, bool, bool]:
    """``x`` as ``(B, C, H, W)``: adds a batch axis to one sample and an ``H = 1`` axis for 1-D layers."""
    unbatched = x.ndim == spatial + 1
    if unbatched:
        x = xp.expand_dims(x, axis=0)
    if spatial == 1:
        x = xp.expand_dims(x, axis=2)
    return x, unbatched, spatial == 1


def _from_4d(xp: Any, y: Any, unbatched: bool, one_d: bool) -> Any:
    if one_d:
        y = y[:, :, 0, :]
    return y[0] if unbatched else y


def _conv_weight(module: FrozenModule) -> Any:
    """A (transposed) convolution's weight as 4-D (a 1-D one gains a unit height); sets ``_spatial`` and ``_groups``."""
    w = module.arrays["weight"]
    module._spatial = int(module.params["spatial"])
    module._groups = int(module.params["groups"])
    return module.xp.expand_dims(w, axis=2) if module._spatial == 1 else w


class Conv(FrozenModule):
    """torch's ``Conv1d``/``Conv2d`` (zero padding) through im2col and one matrix product per group."""

    def _setup(self) -> None:
        w = _conv_weight(self)
        self._o, self._cg, self._kh, self._kw = (int(s) for s in w.shape)
        og = self._o // self._groups
        self._wmats = [self.xp.reshape(w[g * og:(g + 1) * og], (og, -1)) for g in range(self._groups)]

    def forward(self, x: Any) -> Any:  # noqa: D102
        xp, p = self.xp, self.params
        x, unbatched, one_d = _as_4d(xp, x, self._spatial)
        stride, dilation, pads = tuple(p["stride"]), tuple(p["dilation"]), tuple(p["pads"])
        x = _pad2d(xp, x, pads)
        b, _, h, w = x.shape
        kh, kw = self._kh, self._kw
        ho = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        cols = xp.stack(_windows(x, (kh, kw), stride, dilation, (ho, wo)), axis=2)  # (B, C, K, Ho, Wo)
        outs = []
        cg = self._cg
        for g, wmat in enumerate(self._wmats):
            cols_g = xp.reshape(cols[:, g * cg:(g + 1) * cg], (b, cg * kh * kw, ho * wo))
            outs.append(xp.matmul(wmat, cols_g))
        y = outs[0] if len(outs) == 1 else xp.concat(outs, axis=1)
        y = xp.reshape(y, (b, self._o, ho, wo))
        if "bias" in self.arrays:
            y = y + xp.reshape(self.arrays["bias"], (self._o, 1, 1))
        return _from_4d(xp, y, unbatched, one_d)


class ConvTranspose(FrozenModule):
    """torch's ``ConvTranspose1d``/``ConvTranspose2d``: one matrix product per group, then col2im."""

    def _setup(self) -> None:
        w = _conv_weight(self)
        self._cin, self._og, self._kh, self._kw = (int(s) for s in w.shape)
        cg = self._cin // self._groups
        self._wmats = [self.xp.matrix_transpose(self.xp.reshape(w[g * cg:(g + 1) * cg], (cg, -1)))
                       for g in range(self._groups)]

    def forward(self, x: Any) -> Any:  # noqa: D102
        xp, p = self.xp, self.params
        x, unbatched, one_d = _as_4d(xp, x, self._spatial)
        (sh, sw), (dh, dw) = tuple(p["stride"]), tuple(p["dilation"])
        (ph, pw), (oph, opw) = tuple(p["padding"]), tuple(p["output_padding"])
        b, _, h, w = x.shape
        kh, kw, og = self._kh, self._kw, self._og
        cg = self._cin // self._groups
        full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
        full_w = (w - 1) * sw + dw * (kw - 1) + 1 + opw
        groups = []
        for g, wmat in enumerate(self._wmats):
            xg = xp.reshape(x[:, g * cg:(g + 1) * cg], (b, cg, h * w))
            cols = xp.reshape(xp.matmul(wmat, xg), (b, og, kh, kw, h, w))
            out = xp.zeros((b, og, full_h, full_w), dtype=x.dtype, device=_device_of(x))
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
                    cols_ = slice(j * dw, j * dw + sw * (w - 1) + 1, sw)
                    out[:, :, rows, cols_] = out[:, :, rows, cols_] + cols[:, :, i, j]
            groups.append(out)
        y = groups[0] if len(groups) == 1 else xp.concat(groups, axis=1)
        y = y[:, :, ph:full_h - ph, pw:full_w - pw]
        if "bias" in self.arrays:
            y = y + xp.reshape(self.arrays["bias"], (og * self._groups, 1, 1))
        return _from_4d(xp, y, unbatched, one_d)


class Pool2d(FrozenModule):
    """torch's ``MaxPool2d`` and ``AvgPool2d`` (``ceil_mode=False``; average counts the padding)."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        xp, p = self.xp, self.params
        x, unbatched, _ = _as_4d(xp, x, 2)
        kernel, stride, dilation = tuple(p["kernel"]), tuple(p["stride"]), tuple(p["dilation"])
        (ph, pw) = tuple(p["padding"])
        is_max = p["mode"] == "max"
        x = _pad2d(xp, x, (ph, ph, pw, pw), -math.inf if is_max else 0.0)
        _, _, h, w = x.shape
        ho = (h - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wo = (w - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        views = _windows(x, kernel, stride, dilation, (ho, wo))
        acc = views[0]
        for v in views[1:]:
            acc = xp.maximum(acc, v) if is_max else acc + v
        if not is_max:
            acc = acc / (kernel[0] * kernel[1])
        return acc[0] if unbatched else acc


class BatchNorm(FrozenModule):
    """torch's ``BatchNorm1d/2d/3d`` in evaluation mode: ``x·scale + shift`` per channel (axis 1)."""

    def _setup(self) -> None:
        xp, a = self.xp, self.arrays
        inv = 1 / xp.sqrt(a["running_var"] + self.params["eps"])
        scale = a["weight"] * inv if "weight" in a else inv
        shift = (a["bias"] if "bias" in a else 0) - a["running_mean"] * scale
        self._scale, self._shift = scale, shift

    def forward(self, x: Any) -> Any:  # noqa: D102
        shape = (x.shape[1],) + (1,) * (x.ndim - 2)
        return x * self.xp.reshape(self._scale, shape) + self.xp.reshape(self._shift, shape)


class LayerNorm(FrozenModule):
    """torch's ``LayerNorm`` over the last ``len(normalized_shape)`` axes (biased variance)."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        xp = self.xp
        axes = tuple(range(x.ndim - len(self.params["normalized_shape"]), x.ndim))
        mean = xp.mean(x, axis=axes, keepdims=True)
        var = xp.mean((x - mean) ** 2, axis=axes, keepdims=True)
        y = (x - mean) / xp.sqrt(var + self.params["eps"])
        if "weight" in self.arrays:
            y = y * self.arrays["weight"]
        if "bias" in self.arrays:
            y = y + self.arrays["bias"]
        return y


class GroupNorm(FrozenModule):
    """torch's ``GroupNorm``: normalise each group of channels of each sample."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        xp = self.xp
        g = self.params["num_groups"]
        shape = tuple(x.shape)
        xg = xp.reshape(x, (shape[0], g, -1))
        mean = xp.mean(xg, axis=2, keepdims=True)
        var = xp.mean((xg - mean) ** 2, axis=2, keepdims=True)
        y = xp.reshape((xg - mean) / xp.sqrt(var + self.params["eps"]), shape)
        ch = (shape[1],) + (1,) * (len(shape) - 2)
        if "weight" in self.arrays:
            y = y * xp.reshape(self.arrays["weight"], ch)
        if "bias" in self.arrays:
            y = y + xp.reshape(self.arrays["bias"], ch)
        return y



# ----------------------------------------------------------------------------------
# The layers' builders
# ----------------------------------------------------------------------------------

def _activation_params(b: Builder, config: Mapping[str, Any], where: str, name: str, **params: Any) -> dict:
    if name not in ACTIVATIONS:
        raise b.unsupported(config, where, f": unknown activation {name!r:.40}")
    return {"name": name, **params}


@register("Dense")
def _dense(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    act = _activation_params(b, c, where, c["activation"])
    return Dense(b.backend, {"activation": act}, b.own(c, prefix), source=dict(c))


@register("torch.nn.Linear")
def _linear(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    return Dense(b.backend, {"activation": {"name": "identity"}}, b.own(c, prefix), source=dict(c))


@register("Chain")
def _chain(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    children = {str(i): b.child(layer, prefix, where, str(i)) for i, layer in enumerate(c["layers"])}
    return Chain(b.backend, children=children, source=dict(c))


@register("Flatten")
def _flatten(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    return Flatten(b.backend, source=dict(c))


@register("Reshape")
def _reshape(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    return Reshape(b.backend, {"shape": list(c["shape"])}, source=dict(c))


@register("ActivationOverDims")
def _over_dims(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    if c["activation"] not in ("softmax", "logsoftmax"):
        raise b.unsupported(c, where, f": activation {c['activation']!r:.40}")
    return ActivationOverDims(b.backend, {"name": c["activation"], "dim": c["dim"]}, source=dict(c))


_TORCH_ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Identity": "identity", "SiLU": "silu"}


@register(*(f"torch.nn.{n}" for n in _TORCH_ACTIVATIONS), "torch.nn.Softplus", "torch.nn.LeakyReLU", "torch.nn.ELU",
          "torch.nn.GELU", *(f"torch.nn.{n}" for n in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
                                                        "AlphaDropout", "FeatureAlphaDropout")))
def _torch_activation(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    name, a = c["type"][len("torch.nn."):], c.get("args", {})
    if name in _TORCH_ACTIVATIONS:
        params = {"name": _TORCH_ACTIVATIONS[name]}
    elif name == "Softplus":
        params = {"name": "softplus", "beta": float(a.get("beta", 1.0)), "threshold": float(a.get("threshold", 20.0))}
    elif name == "LeakyReLU":
        params = {"name": "leakyrelu", "negative_slope": float(a.get("negative_slope", 0.01))}
    elif name == "ELU":
        params = {"name": "elu", "alpha": float(a.get("alpha", 1.0))}
    elif name == "GELU":
        params = {"name": "gelu" if a.get("approximate", "none") == "tanh" else "gelu_erf"}
    else:  # dropout: the identity in evaluation
        params = {"name": "identity"}
    return Activation(b.backend, params, source=dict(c))


@register("torch.nn.Softmax", "torch.nn.LogSoftmax")
def _torch_softmax(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    dim = c.get("args", {}).get("dim")
    if dim is None:
        raise b.unsupported(c, where, ": dim=None (the implicit axis) is ambiguous; give dim")
    name = "softmax" if c["type"].endswith(".Softmax") else "logsoftmax"
    return ActivationOverDims(b.backend, {"name": name, "dim": dim}, source=dict(c))


@register("torch.nn.Flatten")
def _torch_flatten(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c.get("args", {})
    return TorchFlatten(b.backend, {"start_dim": a.get("start_dim", 1), "end_dim": a.get("end_dim", -1)},
                        source=dict(c))


@register("torch.nn.Unflatten")
def _torch_unflatten(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    return Unflatten(b.backend, {"dim": a["dim"], "sizes": [int(s) for s in a["unflattened_size"]]}, source=dict(c))


def _pair(value: Any, spatial: int, fill: int) -> list[int]:
    """A size of a 1-D or 2-D layer as two values (a 1-D layer runs as a 2-D one with H = 1)."""
    values = [int(value)] * spatial if isinstance(value, int) else [int(v) for v in value]
    return ([fill] if spatial == 1 else []) + values


@register("torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.ConvTranspose1d", "torch.nn.ConvTranspose2d")
def _conv(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    transposed = "Transpose" in c["type"]
    spatial = int(c["type"][-2])
    if a.get("padding_mode", "zeros") != "zeros":
        raise b.unsupported(c, where, f": padding_mode={a['padding_mode']!r} (only 'zeros' is supported)")
    k = _pair(a["kernel_size"], spatial, 1)
    stride, dilation = _pair(a.get("stride", 1), spatial, 1), _pair(a.get("dilation", 1), spatial, 1)
    params = {"spatial": spatial, "stride": stride, "dilation": dilation, "groups": int(a.get("groups", 1))}
    if transposed:
        params.update(padding=_pair(a.get("padding", 0), spatial, 0),
                      output_padding=_pair(a.get("output_padding", 0), spatial, 0))
        return ConvTranspose(b.backend, params, b.own(c, prefix), source=dict(c))
    padding = a.get("padding", 0)
    if padding == "valid":
        pads = [0, 0, 0, 0]
    elif padding == "same":  # stride 1: torch puts the extra element at the end
        th, tw = dilation[0] * (k[0] - 1), dilation[1] * (k[1] - 1)
        pads = [th // 2, th - th // 2, tw // 2, tw - tw // 2]
    else:
        p = _pair(padding, spatial, 0)
        pads = [p[0], p[0], p[1], p[1]]
    params["pads"] = pads
    return Conv(b.backend, params, b.own(c, prefix), source=dict(c))


@register("torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d")
def _batchnorm(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    if not a.get("track_running_stats", True):
        raise b.unsupported(c, where, ": without running statistics it normalises with batch statistics")
    return BatchNorm(b.backend, {"eps": float(a.get("eps", 1e-5))}, b.own(c, prefix), source=dict(c))


@register("torch.nn.LayerNorm")
def _layernorm(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    return LayerNorm(b.backend, {"normalized_shape": list(a["normalized_shape"]), "eps": float(a.get("eps", 1e-5))},
                     b.own(c, prefix), source=dict(c))


@register("torch.nn.GroupNorm")
def _groupnorm(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    return GroupNorm(b.backend, {"num_groups": a["num_groups"], "eps": float(a.get("eps", 1e-5))}, b.own(c, prefix),
                     source=dict(c))


@register("torch.nn.MaxPool2d", "torch.nn.AvgPool2d")
def _pool(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    a = c["args"]
    if a.get("ceil_mode", False):
        raise b.unsupported(c, where, ": ceil_mode=True")
    if a.get("return_indices", False):
        raise b.unsupported(c, where, ": return_indices=True")
    is_max = c["type"].endswith("MaxPool2d")
    if not is_max and (a.get("divisor_override") is not None
                       or (not a.get("count_include_pad", True) and any(_pair(a.get("padding", 0), 2, 0)))):
        raise b.unsupported(c, where, ": divisor_override or count_include_pad=False with padding")
    kernel = _pair(a["kernel_size"], 2, 1)
    stride = kernel if a.get("stride") is None else _pair(a["stride"], 2, 1)
    params = {"mode": "max" if is_max else "avg", "kernel": kernel, "stride": stride,
              "padding": _pair(a.get("padding", 0), 2, 0),
              "dilation": _pair(a.get("dilation", 1), 2, 1) if is_max else [1, 1]}
    return Pool2d(b.backend, params, source=dict(c))


#: The configuration types the frozen models run (models are built from their fields).
SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted(_BUILDERS))

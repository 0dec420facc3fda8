r"""Frozen inference models: a trained model's forward pass on NumPy or CuPy, without torch.

``model.to_backend("numpy")`` (or :func:`to_backend`) copies a trained
:class:`~autoencoder_toolkit.vaes.VAE`, :class:`~autoencoder_toolkit.infomaxvaes.InfoMaxVAE`,
encoder, decoder, critic or layer stack into a frozen model whose weights are arrays of
the chosen backend (``"numpy"``, ``"cupy"``, or ``"torch"``). It runs what a deployed
model runs: the forward pass, :meth:`FrozenVAE.encode` (the encoder's mean and spread),
:meth:`FrozenVAE.decode`, the log-likelihoods, the KL term and, for an InfoMax-VAE, the
mutual-information estimate, with the package's own formulas
(:mod:`autoencoder_toolkit.densities`). Its outputs match the torch model's within
float32 rounding (``1e-5`` relative). The frozen model always evaluates as torch's
``eval()`` mode does (dropout off, batch-norm running statistics).

:meth:`FrozenModule.save` writes one ``.safetensors`` file (the architecture as JSON in
the file's metadata, the weights as arrays; nothing is pickled) and :func:`load` reads
it back onto any backend. This module, and what it imports, never import torch: a
process that only serves predictions needs NumPy (and CuPy for the GPU)::

    from autoencoder_toolkit import inference

    model = inference.load("model.safetensors", backend="numpy")
    codes = model.encode(x).μ

Supported layers: this package's ``Dense``, ``Chain``, ``Flatten``, ``Reshape`` and
``ActivationOverDims``; torch's ``Linear``, ``Sequential``, ``Conv1d``, ``Conv2d``,
``ConvTranspose1d``, ``ConvTranspose2d`` (zero padding), ``BatchNorm1d/2d/3d`` (with
running statistics), ``LayerNorm``, ``GroupNorm``, ``MaxPool2d``, ``AvgPool2d``
(``ceil_mode=False``), ``Flatten``, ``Unflatten``, ``Dropout`` (all kinds; identity),
``Identity``, ``ReLU``, ``Sigmoid``, ``Tanh``, ``SiLU``, ``Softplus``, ``LeakyReLU``,
``ELU``, ``GELU``, ``Softmax`` and ``LogSoftmax`` (with ``dim``). Another layer, or a
custom activation, is refused with an error naming it and its place in the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import densities
from ..backends import get_backend
from ..backends.base import Backend
from ..outputs import (EncodedData, GaussianLogParams, GaussianMean, GaussianParams, InfoMaxVAEOutput, Probabilities,
                       VAEOutput)

__all__ = [
    "FORMAT_VERSION",
    "FrozenModule",
    "FrozenVAE",
    "FrozenInfoMaxVAE",
    "FrozenMutualInfoChain",
    "to_backend",
    "load",
    "SUPPORTED_TORCH_LAYERS",
]

#: Version of the saved file's layout.
FORMAT_VERSION = 1
_METADATA_KEY = "autoencoder_toolkit.inference"


# ----------------------------------------------------------------------------------
# Activations on arrays (torch's definitions, for any array-API namespace)
# ----------------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _zeros_like(xp: Any, x: Any) -> Any:
    return xp.zeros_like(x)


def _sigmoid(xp: Any, x: Any) -> Any:
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(xp: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    bx = x * beta
    smooth = (xp.log1p(xp.exp(-xp.abs(bx))) + xp.maximum(bx, _zeros_like(xp, bx))) / beta
    return xp.where(bx > threshold, x, smooth)


def _erf(xp: Any, x: Any) -> Any:
    fn = getattr(xp, "erf", None)
    if fn is not None:
        return fn(x)
    if type(x).__module__.startswith("cupy"):
        from cupyx.scipy.special import erf

        return erf(x)
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is a test dependency only
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x).astype(x.dtype, copy=False)


def _softmax(xp: Any, x: Any, dim: int = -1) -> Any:
    e = xp.exp(x - xp.max(x, axis=dim, keepdims=True))
    return e / xp.sum(e, axis=dim, keepdims=True)


def _logsoftmax(xp: Any, x: Any, dim: int = -1) -> Any:
    shifted = x - xp.max(x, axis=dim, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=dim, keepdims=True))


#: name -> f(xp, x, **params). The names of :mod:`autoencoder_toolkit.activations`, with
#: torch's parameters where its layers have them.
ACTIVATIONS = {
    "identity": lambda xp, x: x,
    "relu": lambda xp, x: xp.maximum(x, _zeros_like(xp, x)),
    "tanh": lambda xp, x: xp.tanh(x),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "elu": lambda xp, x, alpha=1.0: xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, _zeros_like(xp, x)))),
    "gelu": lambda xp, x: 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
    "gelu_erf": lambda xp, x: 0.5 * x * (1 + _erf(xp, x / math.sqrt(2.0))),
    "silu": lambda xp, x: x * _sigmoid(xp, x),
    "leakyrelu": lambda xp, x, negative_slope=0.01: xp.where(x >= 0, x, negative_slope * x),
    "softmax": _softmax,
    "logsoftmax": _logsoftmax,
}


# ----------------------------------------------------------------------------------
# The frozen module tree
# ----------------------------------------------------------------------------------

class FrozenModule:
    """A node of a frozen model: static ``params`` (JSON), weight ``arrays``, sub-``children``.

    Calling a frozen module converts its first argument to the module's backend and
    dtype (NumPy arrays and nested lists are accepted everywhere) and runs
    :meth:`forward`.
    """

    def __init__(self, backend: Backend, params: dict | None = None, arrays: dict | None = None,
                 children: dict | None = None) -> None:
        self.backend = backend
        self.params = dict(params or {})
        self.arrays = dict(arrays or {})
        self.children = dict(children or {})
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
            return a.dtype
        return self.backend.dtype("float32")

    def named_arrays(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(dotted name, array)`` for every weight of the tree."""
        for name, a in self.arrays.items():
            yield prefix + name, a
        for cname, child in self.children.items():
            yield from child.named_arrays(f"{prefix}{cname}.")

    def config(self) -> dict[str, Any]:
        """The architecture as JSON-serialisable data (weights excluded)."""
        cfg: dict[str, Any] = {"type": type(self).__name__}
        if self.params:
            cfg["params"] = self.params
        if self.arrays:
            cfg["arrays"] = list(self.arrays)
        if self.children:
            cfg["children"] = {k: c.config() for k, c in self.children.items()}
        return cfg

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
        target = get_backend(backend)
        arrays = {k: target.asarray(self.backend.to_numpy(a) if target.name != self.backend.name else a,
                                    device=device)
                  for k, a in self.named_arrays()}
        return _from_config(self.config(), arrays, target)

    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.safetensors`` file (architecture in its metadata; no pickle)."""
        from safetensors.numpy import save_file

        path = Path(path)
        arrays = {k: np.ascontiguousarray(self.backend.to_numpy(a)) for k, a in self.named_arrays()}
        meta = {_METADATA_KEY: json.dumps({"format": FORMAT_VERSION, "model": self.config()})}
        save_file(arrays, str(path), metadata=meta)
        return path


def _from_config(cfg: dict, arrays: dict[str, Any], backend: Backend, prefix: str = "") -> FrozenModule:
    kind = cfg.get("type")
    cls = _TYPES.get(kind)
    if cls is None:
        raise ValueError(f"model file: unknown frozen module type {kind!r} at {prefix or 'the root'}")
    own = {}
    for name in cfg.get("arrays", []):
        key = prefix + name
        if key not in arrays:
            raise ValueError(f"model file: missing array {key!r}")
        own[name] = arrays[key]
    children = {k: _from_config(c, arrays, backend, f"{prefix}{k}.") for k, c in cfg.get("children", {}).items()}
    return cls(backend, cfg.get("params"), own, children)


def load(path: str | Path, backend: str | Backend = "numpy", *, device: Any = None) -> FrozenModule:
    """Read a model written by :meth:`FrozenModule.save` onto ``backend`` (and ``device``)."""
    from safetensors import safe_open

    target = get_backend(backend)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if _METADATA_KEY not in meta:
            raise ValueError(f"{path}: not a model written by autoencoder_toolkit.inference (no architecture)")
        header = json.loads(meta[_METADATA_KEY])
        if header.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: file format {header.get('format')!r}, this version reads {FORMAT_VERSION}")
        arrays = {k: target.asarray(f.get_tensor(k), device=device) for k in f.keys()}
    return _from_config(header["model"], arrays, target)


# ----------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------

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
    import array_api_compat

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
# Models
# ----------------------------------------------------------------------------------

def _check_shape(x: Any, name: str, sample_shape: Any) -> bool:
    """Whether ``x`` is a batch; raises ``ValueError`` if it fits neither a batch nor one sample."""
    if sample_shape is None:
        return x.ndim >= 2
    shape, k = tuple(x.shape), len(sample_shape)
    if x.ndim == k + 1 and shape[1:] == tuple(sample_shape):
        return True
    if shape == tuple(sample_shape):
        return False
    dims = ", ".join(str(s) for s in sample_shape)
    raise ValueError(f"{name}: expected shape (B, {dims}) or one sample {tuple(sample_shape)}, got {shape}")


class _Model(FrozenModule):
    """A model node: checks its input against ``params["input_shape"]`` when known."""

    def _input(self, x: Any, name: str = "x") -> Any:
        arr = super()._input(x, name)
        _check_shape(arr, name, self.params.get("input_shape"))
        return arr


class FrozenEncoder(_Model):
    """A frozen encoder; ``params["kind"]``: ``"log"`` (μ, logσ), ``"linear"`` (μ, σ) or ``"deterministic"``."""

    def forward(self, x: Any) -> Any:  # noqa: D102
        kind = self.params["kind"]
        if kind == "deterministic":
            return self.children["encoder"].forward(x)
        h = self.children["encoder"].forward(x)
        mu = self.children["μ"].forward(h)
        if kind == "log":
            return GaussianLogParams(mu, self.children["logσ"].forward(h))
        return GaussianParams(mu, self.children["σ"].forward(h))

    def _variational(self) -> None:
        if self.params["kind"] == "deterministic":
            raise TypeError("a deterministic encoder has no distribution over codes")

    def encode(self, x: Any) -> EncodedData:
        """The encoder's mean ``μ`` and spread ``σ`` (``exp(logσ)`` for a log-scale encoder)."""
        self._variational()
        out = self(x)
        return EncodedData(out[0], self.xp.exp(out[1]) if self.params["kind"] == "log" else out[1])

    def reparameterize(self, output: Any, rng: Any = None, *, noise: Any = None) -> Any:
        """``μ + ε ⊙ σ`` with ``ε`` drawn from ``rng`` (see :meth:`Backend.standard_normal`) or given."""
        self._variational()
        mu, scale = output
        if noise is None:
            noise = self.backend.standard_normal(tuple(mu.shape), rng=rng, dtype=mu.dtype,
                                                 device=self.backend.device(mu))
        else:
            noise = self.backend.asarray(noise, dtype=mu.dtype)
            if tuple(noise.shape) != tuple(mu.shape):
                raise ValueError(f"noise: expected the shape of μ {tuple(mu.shape)}, got {tuple(noise.shape)}")
        return densities.reparameterize_with_noise(mu, scale, noise, log=self.params["kind"] == "log")

    def kl(self, output: Any) -> Any:
        """Per-sample KL divergence of the encoded Gaussian to ``N(0, I)``."""
        self._variational()
        return densities.gaussian_kl(output[0], output[1], log=self.params["kind"] == "log")

    def logposterior(self, z: Any, output: Any) -> Any:
        """``log q(z | x)`` under the encoded Gaussian."""
        self._variational()
        z = self.backend.asarray(z, dtype=output[0].dtype)
        return densities.gaussian_logdensity(z, output[0], output[1], log=self.params["kind"] == "log")


_DECODER_OUTPUTS = {"bernoulli": Probabilities, "categorical": Probabilities, "simple_gaussian": GaussianMean,
                    "joint_log": GaussianLogParams, "joint_linear": GaussianParams,
                    "split_log": GaussianLogParams, "split_linear": GaussianParams}


class FrozenDecoder(_Model):
    """A frozen decoder; ``params["kind"]`` names the output distribution."""

    def forward(self, z: Any) -> Any:  # noqa: D102
        kind, ch = self.params["kind"], self.children
        if kind == "deterministic":
            return ch["decoder"].forward(z)
        if kind == "categorical" and z.ndim == 1:
            return Probabilities(ch["decoder"].forward(self.xp.expand_dims(z, axis=0))[0])
        if kind in ("bernoulli", "categorical", "simple_gaussian"):
            return _DECODER_OUTPUTS[kind](ch["decoder"].forward(z))
        if kind in ("joint_log", "joint_linear"):
            h = ch["decoder"].forward(z)
            scale = ch["logσ" if kind == "joint_log" else "σ"]
            return _DECODER_OUTPUTS[kind](ch["μ"].forward(h), scale.forward(h))
        scale = ch["logσ" if kind == "split_log" else "σ"]
        return _DECODER_OUTPUTS[kind](ch["μ"].forward(z), scale.forward(z))

    def loglikelihood(self, x: Any, z: Any, output: Any, *, σ: float = 1.0, sigma: float | None = None) -> Any:
        """``log p(x | z)`` from the decoder ``output``: ``(B,)`` for a batch of codes, else a scalar.

        ``σ`` (alias ``sigma``) is the fixed standard deviation of a ``SimpleGaussianDecoder``.
        """
        kind = self.params["kind"]
        if kind == "deterministic":
            raise TypeError("a deterministic decoder has no likelihood")
        batched = getattr(z, "ndim", 1) >= 2
        ref = output[0]
        x = self.backend.asarray(x, dtype=ref.dtype)
        if kind == "bernoulli":
            return densities.bernoulli_loglikelihood(x, output.p, batched=batched)
        if kind == "categorical":
            return densities.categorical_loglikelihood(x, output.p, batched=batched)
        if kind == "simple_gaussian":
            s = float(sigma if sigma is not None else σ)
            if not s > 0:
                raise ValueError(f"σ: expected a positive number, got {s!r}")
            return densities.gaussian_loglikelihood(x, output.μ, kind="fixed", σ=s, batched=batched)
        form = "log" if kind.endswith("_log") else "linear"
        return densities.gaussian_loglikelihood(x, output[0], output[1], kind=form, batched=batched)


class FrozenMutualInfoChain(_Model):
    """The critic ``g(x, z) = mlp([data(x), latent(z)])``: ``(B,)`` values."""

    def __call__(self, x: Any, z: Any) -> Any:  # noqa: D102
        x = self._input(x, "x")
        z = FrozenModule._input(self, z, "z")
        if z.ndim != 2 or z.shape[0] != x.shape[0]:
            raise ValueError(f"z: expected a batch of codes ({x.shape[0]}, L), got shape {tuple(z.shape)}")
        return self.forward(x, z)

    def forward(self, x: Any, z: Any) -> Any:  # noqa: D102
        ch = self.children
        h = self.xp.concat([ch["data"].forward(x), ch["latent"].forward(z)], axis=-1)
        return self.xp.reshape(ch["mlp"].forward(h), (-1,))


class FrozenVAE(_Model):
    """A frozen VAE: ``model(x, latent=False, rng=None, noise=None)`` as the torch model's call."""

    @property
    def encoder(self) -> FrozenEncoder:
        """The frozen encoder."""
        return self.children["encoder"]

    @property
    def decoder(self) -> FrozenDecoder:
        """The frozen decoder."""
        return self.children["decoder"]

    def forward(self, x: Any, latent: bool = False, rng: Any = None, noise: Any = None) -> Any:  # noqa: D102
        enc = self.encoder.forward(x)
        z = self.encoder.reparameterize(enc, rng=rng, noise=noise)
        dec = self.decoder.forward(z)
        return VAEOutput(enc, z, dec) if latent else dec

    def encode(self, x: Any) -> EncodedData:
        """Latent means and spreads ``(μ, σ)`` of ``x``."""
        return self.encoder.encode(x)

    def decode(self, z: Any) -> Any:
        """The decoder's output for codes ``z`` (e.g. ``Probabilities(p)``)."""
        return self.decoder(z)

    def loglikelihood(self, x: Any, x_out: Any = None, *, rng: Any = None, noise: Any = None,
                      **kwargs: Any) -> Any:
        """Per-sample ``log p(x_out | z)`` with one draw ``z ~ q(z | x)`` (``x_out`` defaults to ``x``)."""
        x = self._input(x)
        out = self.forward(x, latent=True, rng=rng, noise=noise)
        target = x if x_out is None else x_out
        return self.decoder.loglikelihood(target, out.z, out.decoder, **kwargs)

    def kl(self, x: Any) -> Any:
        """Per-sample KL divergence of ``q(z | x)`` to the prior."""
        return self.encoder.kl(self.encoder(x))

    def logprior(self, z: Any) -> Any:
        """``log N(z; 0, I)`` per code."""
        return densities.spherical_logprior(self.backend.asarray(z, dtype=self.dtype))

    def loss(self, x: Any, x_out: Any = None, *, β: float = 1.0, beta: float | None = None,
             rng: Any = None, noise: Any = None) -> float:
        """The VAE loss ``−mean log p(x_out|z) + β mean KL`` (one draw), as a float."""
        β = β if beta is None else beta
        x = self._input(x)
        out = self.forward(x, latent=True, rng=rng, noise=noise)
        target = x if x_out is None else self.backend.asarray(x_out, dtype=self.dtype)
        ll = self.decoder.loglikelihood(target, out.z, out.decoder)
        kl = self.encoder.kl(out.encoder)
        xp = self.xp
        return float(-xp.mean(ll) + β * xp.mean(kl))


class FrozenInfoMaxVAE(_Model):
    """A frozen InfoMax-VAE: the VAE and its critic.

    ``model(x, latent=False, seed=None, rng=None, noise=None, permutation=None)`` as the
    torch model's call; with ``latent=True`` it returns ``InfoMaxVAEOutput(vae, mi)``.
    """

    @property
    def vae(self) -> FrozenVAE:
        """The frozen VAE."""
        return self.children["vae"]

    @property
    def mi(self) -> FrozenMutualInfoChain:
        """The frozen critic."""
        return self.children["mi"]

    def forward(self, x: Any, latent: bool = False, seed: int | None = None, rng: Any = None,
                noise: Any = None, permutation: Any = None) -> Any:  # noqa: D102
        if not latent:
            return self.vae.forward(x, rng=rng, noise=noise)
        vo = self.vae.forward(x, latent=True, rng=rng, noise=noise)
        return InfoMaxVAEOutput(vo, self._bound(x, vo.z, seed, rng, permutation))

    def _bound(self, x: Any, z: Any, seed: Any, rng: Any, permutation: Any, z_shuffle: Any = None) -> Any:
        if z.ndim != 2 or z.shape[0] < 2:
            raise ValueError(f"x: the mutual-information bound needs a batch of at least 2 samples, "
                             f"got codes of shape {tuple(z.shape)}")
        if z_shuffle is None:
            n = int(z.shape[0])
            if permutation is None:
                perm = self.backend.permutation(n, rng=rng, seed=seed, device=self.backend.device(z))
            else:
                perm = self.backend.asarray(permutation, dtype="int64")
                if tuple(perm.shape) != (n,):
                    raise ValueError(f"permutation: expected {n} indices, got shape {tuple(perm.shape)}")
            z_shuffle = self.xp.take(z, perm, axis=0)
        return densities.mutual_info_bound(self.mi.forward(x, z), self.mi.forward(x, z_shuffle))

    def mutual_info(self, x: Any, z: Any = None, z_shuffle: Any = None, *, seed: int | None = None,
                    rng: Any = None, noise: Any = None, permutation: Any = None) -> Any:
        """The variational MI estimate (0-d array).

        Without ``z``, ``x`` is encoded with one noise draw (``rng`` or ``noise``); the
        codes are shuffled with ``permutation`` if given (0-based indices; use the
        torch model's permutation for an exact comparison), else with Julia's
        ``MersenneTwister(seed)`` shuffle, else with ``rng``. ``z_shuffle`` overrides
        the shuffle altogether.
        """
        x = self._input(x)
        if z is None:
            z = self.vae.forward(x, latent=True, rng=rng, noise=noise).z
        else:
            z = self.backend.asarray(z, dtype=self.dtype)
        if z_shuffle is not None:
            z_shuffle = self.backend.asarray(z_shuffle, dtype=self.dtype)
        return self._bound(x, z, seed, rng, permutation, z_shuffle)

    def encode(self, x: Any) -> EncodedData:
        """Latent means and spreads ``(μ, σ)`` of ``x``."""
        return self.vae.encode(x)

    def decode(self, z: Any) -> Any:
        """The decoder's output for codes ``z``."""
        return self.vae.decode(z)

    def loglikelihood(self, x: Any, x_out: Any = None, **kwargs: Any) -> Any:
        """Per-sample reconstruction log-likelihood (see :meth:`FrozenVAE.loglikelihood`)."""
        return self.vae.loglikelihood(x, x_out, **kwargs)

    def kl(self, x: Any) -> Any:
        """Per-sample KL divergence of ``q(z | x)`` to the prior."""
        return self.vae.kl(x)

    def loss(self, x: Any, *, β: float = 1.0, α: float = 1.0, beta: float | None = None,
             alpha: float | None = None, seed: int | None = None, rng: Any = None, noise: Any = None,
             permutation: Any = None) -> float:
        """The InfoMax-VAE loss ``−LL + β KL − α MI`` (one draw, one permutation), as a float."""
        β = β if beta is None else beta
        α = α if alpha is None else alpha
        x = self._input(x)
        vo = self.vae.forward(x, latent=True, rng=rng, noise=noise)
        xp = self.xp
        ll = xp.mean(self.vae.decoder.loglikelihood(x, vo.z, vo.decoder))
        kl = xp.mean(self.vae.encoder.kl(vo.encoder))
        mi = self._bound(x, vo.z, seed, rng, permutation)
        return float(-ll + β * kl - α * mi)


_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Activation, Dense, Chain, Flatten, TorchFlatten, Unflatten, Reshape, ActivationOverDims, Conv, ConvTranspose,
    Pool2d, BatchNorm, LayerNorm, GroupNorm, FrozenEncoder, FrozenDecoder, FrozenMutualInfoChain, FrozenVAE,
    FrozenInfoMaxVAE)}


# ----------------------------------------------------------------------------------
# Export from torch (imports torch only when called)
# ----------------------------------------------------------------------------------

#: torch layer classes :func:`to_backend` exports (besides this package's own layers and models).
SUPPORTED_TORCH_LAYERS = ("Linear", "Sequential", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d",
                          "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "MaxPool2d",
                          "AvgPool2d", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d",
                          "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "Identity", "ReLU", "Sigmoid",
                          "Tanh", "SiLU", "Softplus", "LeakyReLU", "ELU", "GELU", "Softmax", "LogSoftmax")


class _Exporter:
    """Walks a torch module tree and builds the frozen tree on ``backend``."""

    def __init__(self, backend: Backend, device: Any) -> None:
        self.backend = backend
        self.device = device

    def array(self, t: Any) -> Any:
        return self.backend.asarray(t.detach().clone(), device=self.device)

    def unsupported(self, m: Any, path: str, why: str = "") -> TypeError:
        where = path or "the model"
        return TypeError(
            f"to_backend: cannot export {where} ({type(m).__module__}.{type(m).__qualname__}){why}. Supported: "
            "this package's Dense, Chain, Flatten, Reshape, ActivationOverDims, encoders, decoders, "
            f"MutualInfoChain, VAE and InfoMaxVAE, and torch.nn.{', torch.nn.'.join(SUPPORTED_TORCH_LAYERS)}"
        )

    def activation(self, act: Any, owner: Any, path: str) -> dict:
        if act.name is None:
            raise self.unsupported(owner, path, f": custom activation {act.torch_fn!r}; use a named activation")
        return {"name": act.name}

    def node(self, cls: type, params: dict | None = None, arrays: dict | None = None,
             children: dict | None = None) -> FrozenModule:
        return cls(self.backend, params, arrays, children)

    def meta(self, m: Any) -> dict:
        out = {}
        for attr in ("input_shape", "latent_dim"):
            v = getattr(m, attr, None)
            if v is not None:
                out[attr] = list(v) if isinstance(v, tuple) else v
        return out

    def freeze(self, m: Any, path: str = "") -> FrozenModule:  # noqa: C901 - one branch per layer type
        import torch.nn as nn

        from ..models import decoders as D
        from ..models import encoders as E
        from ..models import infomaxvaes as I
        from ..models import layers as L
        from ..models import vaes as V

        t = type(m)
        sub = (lambda name: f"{path}.{name}" if path else name)
        arrays = {n: self.array(p) for n, p in m.named_parameters(recurse=False) if p is not None}
        if t is L.Dense:
            return self.node(Dense, {"activation": self.activation(m.activation, m, path)}, arrays)
        if t is nn.Linear:
            return self.node(Dense, {"activation": {"name": "identity"}}, arrays)
        if t in (L.Chain, nn.Sequential):
            return self.node(Chain, children={str(i): self.freeze(c, sub(str(i))) for i, c in enumerate(m)})
        if t is L.Flatten:
            return self.node(Flatten)
        if t is L.Reshape:
            return self.node(Reshape, {"shape": list(m.shape)})
        if t is L.ActivationOverDims:
            if m.name is None:
                raise self.unsupported(m, path, ": a custom callable")
            return self.node(ActivationOverDims, {"name": m.name, "dim": m.dim})
        simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: "identity", nn.SiLU: "silu"}
        if t in simple:
            return self.node(Activation, {"name": simple[t]})
        if isinstance(m, nn.modules.dropout._DropoutNd) and t.__name__ in SUPPORTED_TORCH_LAYERS:
            return self.node(Activation, {"name": "identity"})
        if t is nn.Softplus:
            return self.node(Activation, {"name": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)})
        if t is nn.LeakyReLU:
            return self.node(Activation, {"name": "leakyrelu", "negative_slope": float(m.negative_slope)})
        if t is nn.ELU:
            return self.node(Activation, {"name": "elu", "alpha": float(m.alpha)})
        if t is nn.GELU:
            return self.node(Activation, {"name": "gelu" if m.approximate == "tanh" else "gelu_erf"})
        if t in (nn.Softmax, nn.LogSoftmax):
            if m.dim is None:
                raise self.unsupported(m, path, ": dim=None (the implicit axis) is ambiguous; give dim")
            return self.node(ActivationOverDims, {"name": "softmax" if t is nn.Softmax else "logsoftmax", "dim": m.dim})
        if t is nn.Flatten:
            return self.node(TorchFlatten, {"start_dim": m.start_dim, "end_dim": m.end_dim})
        if t is nn.Unflatten:
            return self.node(Unflatten, {"dim": m.dim, "sizes": [int(s) for s in m.unflattened_size]})
        if t in (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d):
            return self.conv(m, path, arrays)
        if t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            if m.running_mean is None or m.running_var is None:
                raise self.unsupported(m, path, ": without running statistics it normalises with batch statistics")
            arrays.update(running_mean=self.array(m.running_mean), running_var=self.array(m.running_var))
            return self.node(BatchNorm, {"eps": float(m.eps)}, arrays)
        if t is nn.LayerNorm:
            return self.node(LayerNorm, {"normalized_shape": list(m.normalized_shape), "eps": float(m.eps)}, arrays)
        if t is nn.GroupNorm:
            return self.node(GroupNorm, {"num_groups": m.num_groups, "eps": float(m.eps)}, arrays)
        if t in (nn.MaxPool2d, nn.AvgPool2d):
            return self.pool(m, path)
        if t in (E.JointGaussianLogEncoder, E.JointGaussianEncoder):
            scale = "logσ" if t is E.JointGaussianLogEncoder else "σ"
            children = {"encoder": self.freeze(m.encoder, sub("encoder")), "μ": self.freeze(m.μ, sub("μ")),
                        scale: self.freeze(getattr(m, scale), sub(scale))}
            params = {"kind": "log" if scale == "logσ" else "linear", **self.meta(m)}
            return self.node(FrozenEncoder, params, children=children)
        if t is E.Encoder:
            return self.node(FrozenEncoder, {"kind": "deterministic", **self.meta(m)},
                             children={"encoder": self.freeze(m.encoder, sub("encoder"))})
        decoder_kinds = {D.BernoulliDecoder: "bernoulli", D.CategoricalDecoder: "categorical",
                         D.SimpleGaussianDecoder: "simple_gaussian", D.Decoder: "deterministic",
                         D.JointGaussianLogDecoder: "joint_log", D.JointGaussianDecoder: "joint_linear",
                         D.SplitGaussianLogDecoder: "split_log", D.SplitGaussianDecoder: "split_linear"}
        if t in decoder_kinds:
            kind = decoder_kinds[t]
            fields = {"joint_log": ("decoder", "μ", "logσ"), "joint_linear": ("decoder", "μ", "σ"),
                      "split_log": ("μ", "logσ"), "split_linear": ("μ", "σ")}.get(kind, ("decoder",))
            children = {f: self.freeze(getattr(m, f), sub(f)) for f in fields}
            return self.node(FrozenDecoder, {"kind": kind, **self.meta(m)}, children=children)
        if t is I.MutualInfoChain:
            children = {f: self.freeze(getattr(m, f), sub(f)) for f in ("data", "latent", "mlp")}
            return self.node(FrozenMutualInfoChain, self.meta(m), children=children)
        if _is_mmdvae(m):  # at inference an MMD-VAE is its VAE (only its loss differs)
            return self.freeze(m.vae, sub("vae"))
        if t is V.VAE:
            children = {"encoder": self.freeze(m.encoder, sub("encoder")),
                        "decoder": self.freeze(m.decoder, sub("decoder"))}
            if not isinstance(children["encoder"], FrozenEncoder) or children["encoder"].params["kind"] == "deterministic":
                raise self.unsupported(m.encoder, sub("encoder"), ": a VAE needs a variational encoder")
            return self.node(FrozenVAE, self.meta(m), children=children)
        if t is I.InfoMaxVAE:
            children = {"vae": self.freeze(m.vae, sub("vae")), "mi": self.freeze(m.mi, sub("mi"))}
            return self.node(FrozenInfoMaxVAE, self.meta(m), children=children)
        raise self.unsupported(m, path)

    def conv(self, m: Any, path: str, arrays: dict) -> FrozenModule:
        import torch.nn as nn

        if m.padding_mode != "zeros":
            raise self.unsupported(m, path, f": padding_mode={m.padding_mode!r} (only 'zeros' is supported)")
        spatial = 1 if type(m) in (nn.Conv1d, nn.ConvTranspose1d) else 2
        def as2(v: Any, fill: int) -> list[int]:  # 1-D layers run as 2-D ones with H = 1
            return ([fill] if spatial == 1 else []) + [int(s) for s in v]

        k = as2(m.kernel_size, 1)
        stride, dilation = as2(m.stride, 1), as2(m.dilation, 1)
        params = {"spatial": spatial, "stride": stride, "dilation": dilation, "groups": int(m.groups)}
        if type(m) in (nn.ConvTranspose1d, nn.ConvTranspose2d):
            params.update(padding=as2(m.padding, 0), output_padding=as2(m.output_padding, 0))
            return self.node(ConvTranspose, params, arrays)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                pads = [0, 0, 0, 0]
            else:  # "same" (stride 1): torch puts the extra element at the end
                th, tw = dilation[0] * (k[0] - 1), dilation[1] * (k[1] - 1)
                pads = [th // 2, th - th // 2, tw // 2, tw - tw // 2]
        else:
            p = as2(m.padding, 0)
            pads = [p[0], p[0], p[1], p[1]]
        params["pads"] = pads
        return self.node(Conv, params, arrays)

    def pool(self, m: Any, path: str) -> FrozenModule:
        import torch.nn as nn

        pair = (lambda v: [int(v), int(v)] if isinstance(v, int) else [int(s) for s in v])
        if m.ceil_mode:
            raise self.unsupported(m, path, ": ceil_mode=True")
        is_max = type(m) is nn.MaxPool2d
        if is_max and m.return_indices:
            raise self.unsupported(m, path, ": return_indices=True")
        if not is_max and (m.divisor_override is not None or (not m.count_include_pad and any(pair(m.padding)))):
            raise self.unsupported(m, path, ": divisor_override or count_include_pad=False with padding")
        kernel = pair(m.kernel_size)
        stride = pair(m.stride) if m.stride is not None else kernel
        params = {"mode": "max" if is_max else "avg", "kernel": kernel, "stride": stride,
                  "padding": pair(m.padding), "dilation": pair(m.dilation) if is_max else [1, 1]}
        return self.node(Pool2d, params)


def _is_mmdvae(m: Any) -> bool:
    mod = __import__("sys").modules.get("autoencoder_toolkit.mmdvaes")
    cls = getattr(mod, "MMDVAE", None) if mod is not None else None
    return cls is not None and type(m) is cls


def to_backend(module: Any, backend: str | Backend = "numpy", *, device: Any = None) -> FrozenModule:
    """A frozen copy of a torch ``module`` whose weights are arrays of ``backend``.

    ``module`` is a VAE, an InfoMaxVAE, an encoder, a decoder, a ``MutualInfoChain`` or
    any stack of supported layers (see this module's documentation). The weights are
    copied: training the torch model afterwards does not change the frozen one.

    Raises
    ------
    TypeError
        For a layer that cannot be exported, naming its type and its place in the model.
    """
    target = get_backend(backend)
    if isinstance(module, FrozenModule):
        return module.to_backend(target, device=device)
    return _Exporter(target, device).freeze(module)

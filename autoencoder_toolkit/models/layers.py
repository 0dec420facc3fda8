"""Building blocks: a Flux-style ``Dense`` layer, ``Chain``, ``Flatten``, ``Reshape`` and
``ActivationOverDims``.

Layout: samples are in the FIRST axis. A batch of feature vectors is ``(B, D)``, an image
batch ``(B, C, H, W)``. A Julia array ``(D, B)`` or ``(W, H, C, B)`` (column-major) has
the same memory as these C-order arrays.

Each layer can describe itself with :meth:`config` (a JSON-serialisable dict) and be
rebuilt with :func:`autoencoder_toolkit.models.architecture.module_from_config`; no
pickling is involved.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .activations import Activation, ActivationLike, get_activation
from .architecture import child_config, register_builder, to_backend

__all__ = [
    "glorot_uniform",
    "glorot_normal",
    "zeros32",
    "Dense",
    "Chain",
    "Flatten",
    "Reshape",
    "ActivationOverDims",
    "INITIALISERS",
]


def glorot_uniform(n_out: int, n_in: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Glorot (Xavier) uniform weights of shape ``(n_out, n_in)``.

    Each entry is uniform on ``[-a, a)`` with ``a = sqrt(6 / (n_in + n_out))`` (gain 1),
    drawn from torch's generator (the global one unless ``generator`` is given).
    """
    a = math.sqrt(6.0 / (n_in + n_out))
    w = torch.rand((n_out, n_in), generator=generator, dtype=dtype)
    return (w - 0.5) * (2.0 * a)


def glorot_normal(n_out: int, n_in: int, *, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Glorot (Xavier) normal weights ``(n_out, n_in)``: ``N(0, 2 / (n_in + n_out))``."""
    std = math.sqrt(2.0 / (n_in + n_out))
    return torch.randn((n_out, n_in), generator=generator, dtype=dtype) * std


def zeros32(n_out: int, n_in: int, **_: Any) -> torch.Tensor:
    """All-zero ``(n_out, n_in)`` float32 weights (useful for tests and constant critics)."""
    return torch.zeros((n_out, n_in), dtype=torch.float32)


#: Initialisers that can be named in a configuration.
INITIALISERS: dict[str, Callable[..., torch.Tensor]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "zeros32": zeros32,
}


def _init_name(init: Callable[..., torch.Tensor] | str) -> tuple[str | None, Callable[..., torch.Tensor]]:
    if isinstance(init, str):
        if init not in INITIALISERS:
            raise ValueError(
                f"init: unknown initialiser {init!r}; expected one of {', '.join(INITIALISERS)} "
                "or a callable (n_out, n_in) -> Tensor"
            )
        return init, INITIALISERS[init]
    if not callable(init):
        raise TypeError(f"init: expected a callable (n_out, n_in) -> Tensor or a name, got {type(init).__name__}")
    for name, fn in INITIALISERS.items():
        if fn is init:
            return name, fn
    return None, init


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class Dense(nn.Linear):
    """A fully connected layer followed by its activation: ``y = σ(x Wᵀ + b)``.

    This is ``torch.nn.Linear`` with Flux's defaults: the weight has shape
    ``(n_out, n_in)`` (identical to Julia's ``Dense(n_in => n_out)``), is drawn with
    ``init`` (Glorot uniform by default) and the bias starts at zero.

    Parameters
    ----------
    n_in, n_out:
        Input and output features. The layer acts on the last axis, so ``(B, n_in)``
        becomes ``(B, n_out)`` and a single sample ``(n_in,)`` becomes ``(n_out,)``.
    activation:
        A name from :data:`autoencoder_toolkit.activations.ACTIVATION_NAMES` or a callable.
    init:
        ``(n_out, n_in) -> Tensor`` weight initialiser, or its name.
    bias:
        Whether the layer has a (zero-initialised) bias.
    """

    def __init__(self, n_in: int, n_out: int, activation: ActivationLike = "identity",
                 init: Callable[..., torch.Tensor] | str = glorot_uniform, *, bias: bool = True) -> None:
        n_in = _check_size(n_in, "n_in")
        n_out = _check_size(n_out, "n_out")
        super().__init__(n_in, n_out, bias=bias)
        self.init_name, init_fn = _init_name(init)
        self.activation: Activation = get_activation(activation)
        with torch.no_grad():
            w = init_fn(n_out, n_in)
            if tuple(w.shape) != (n_out, n_in):
                raise ValueError(
                    f"init: the initialiser must return shape ({n_out}, {n_in}), got {tuple(w.shape)}"
                )
            self.weight.copy_(w)
            if self.bias is not None:
                self.bias.zero_()

    @classmethod
    def from_weights(cls, weight: Any, bias: Any = None, activation: ActivationLike = "identity") -> "Dense":
        """A Dense layer with the given ``(n_out, n_in)`` weight and ``(n_out,)`` bias."""
        w = torch.as_tensor(weight, dtype=torch.float32)
        if w.ndim != 2:
            raise ValueError(f"weight: expected a 2-D (n_out, n_in) array, got shape {tuple(w.shape)}")
        layer = cls(w.shape[1], w.shape[0], activation, init=zeros32, bias=True)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias is not None:
                b = torch.as_tensor(bias, dtype=torch.float32)
                if tuple(b.shape) != (w.shape[0],):
                    raise ValueError(f"bias: expected shape ({w.shape[0]},), got {tuple(b.shape)}")
                layer.bias.copy_(b)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.activation.torch_fn(super().forward(x))

    def extra_repr(self) -> str:
        return f"{self.in_features} => {self.out_features}, {self.activation!r}"

    def config(self) -> dict[str, Any]:
        """JSON description from which :func:`module_from_config` rebuilds the layer."""
        return {
            "type": "Dense",
            "n_in": self.in_features,
            "n_out": self.out_features,
            "activation": _activation_config(self.activation, self),
            "bias": self.bias is not None,
        }


def _activation_config(act: Activation, owner: nn.Module) -> str:
    if act.name is None:
        raise TypeError(
            f"{type(owner).__name__} uses a custom activation {act.torch_fn!r} that cannot be "
            "written to a configuration; use one of the named activations "
            "(autoencoder_toolkit.activations.ACTIVATION_NAMES) to save this model"
        )
    return act.name


class Chain(nn.Sequential):
    """Layers applied in order, ``Chain(l1, l2, l3)(x) == l3(l2(l1(x)))`` (Flux's Chain)."""

    def extra_repr(self) -> str:
        return ""

    def to_backend(self, backend: str = "numpy", *, device: Any = None) -> Any:
        """A frozen copy for inference on ``backend`` (``"numpy"``, ``"cupy"``): see :mod:`autoencoder_toolkit.inference`."""
        return to_backend(self, backend, device=device)

    def config(self) -> dict[str, Any]:
        """JSON description from which :func:`module_from_config` rebuilds the chain."""
        return {"type": "Chain", "layers": [child_config(m, str(i)) for i, m in enumerate(self)]}


class Flatten(nn.Module):
    """Merge every axis except the first (the sample axis): ``(B, C, H, W) -> (B, C*H*W)``.

    A 2-D input is returned unchanged. As in Julia (where the last axis is kept), a 1-D
    input of length ``n`` is treated as ``n`` samples of one feature: ``(n,) -> (n, 1)``.
    The element order matches Julia's column-major flatten of the same memory.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.ndim == 1:
            return x.reshape(-1, 1)
        return x.reshape(x.shape[0], -1)

    def config(self) -> dict[str, Any]:
        return {"type": "Flatten"}


class Reshape(nn.Module):
    """Reshape to ``shape`` in C order; ``-1`` infers one size.

    The shape is written in this package's batch-first order, e.g. ``Reshape(-1, 64, 7, 7)``.
    A Julia ``Reshape(7, 7, 64, :)`` (column-major, batch last) is the same memory as
    ``Reshape.from_julia(7, 7, 64, ":")``, which reverses the axes for you.

    Julia's order written here by mistake, ``Reshape(7, 7, 64, -1)``, would put the batch
    last and mix samples silently; a shape whose inferred ``-1`` is the last of several
    sizes therefore gives a ``UserWarning`` naming the batch-first spelling, and Julia's
    ``":"`` is refused with the same advice.
    """

    def __init__(self, *shape: int) -> None:
        super().__init__()
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape:
            raise ValueError("shape: expected at least one size")
        if any(isinstance(s, str) for s in shape):
            raise ValueError(f"shape: expected positive integers or -1, got {shape!r}; for Julia's "
                             f"Reshape({', '.join(str(s) for s in shape)}) write "
                             f"Reshape.from_julia({', '.join(repr(s) if isinstance(s, str) else str(s) for s in shape)})")
        for s in shape:
            if isinstance(s, bool) or not isinstance(s, int) or (s < 1 and s != -1):
                raise ValueError(f"shape: expected positive integers or -1, got {shape!r}")
        if sum(1 for s in shape if s == -1) > 1:
            raise ValueError(f"shape: at most one size may be -1, got {shape!r}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) > 1 and self.shape[-1] == -1:
            batch_first = ", ".join(str(s) for s in (-1, *reversed(self.shape[:-1])))
            warnings.warn(
                f"Reshape{self.shape}: the inferred size -1 is last, where Julia puts the batch; here samples "
                f"come first, so this mixes samples. For Julia's Reshape({', '.join(map(str, self.shape[:-1]))}, :) "
                f"write Reshape({batch_first}) or Reshape.from_julia({', '.join(map(str, self.shape[:-1]))}, \":\")",
                UserWarning, stacklevel=2)

    @classmethod
    def from_julia(cls, *julia_shape: int | str) -> "Reshape":
        """The batch-first equivalent of Julia's column-major ``Reshape(julia_shape...)``.

        ``":"`` (or ``-1``) marks the inferred axis, as Julia's ``:``.
        """
        conv = [-1 if (s == ":" or s == -1) else s for s in julia_shape]
        return cls(*reversed(conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.reshape(self.shape)

    def extra_repr(self) -> str:
        return ", ".join(str(s) for s in self.shape)

    def config(self) -> dict[str, Any]:
        return {"type": "Reshape", "shape": list(self.shape)}


class ActivationOverDims(nn.Module):
    """Apply an activation that reduces over one axis, such as softmax over features.

    ``ActivationOverDims("softmax", dim=-1)`` normalises over the last axis. Julia's
    ``ActivationOverDims(softmax, 1)`` normalises over Julia's first axis, which is the
    LAST axis of the same memory in batch-first C order, hence the default ``dim=-1``.

    Parameters
    ----------
    activation:
        ``"softmax"``, ``"logsoftmax"``, or a callable ``f(x, dim=...)``.
    dim:
        The axis (Python numbering) to act over.
    """

    _NAMED: dict[str, Callable[..., torch.Tensor]] = {"softmax": torch.softmax, "logsoftmax": torch.log_softmax}

    def __init__(self, activation: str | Callable[..., torch.Tensor] = "softmax", dim: int = -1) -> None:
        super().__init__()
        if isinstance(activation, str):
            key = activation.lower()
            if key not in self._NAMED:
                raise ValueError(
                    f"activation: ActivationOverDims supports {', '.join(self._NAMED)} by name "
                    f"or a callable f(x, dim=...), got {activation!r}"
                )
            self.name: str | None = key
            self.fn = self._NAMED[key]
        elif isinstance(activation, Activation) and activation.name == "softmax":
            self.name, self.fn = "softmax", self._NAMED["softmax"]
        elif callable(activation):
            if activation is torch.softmax or activation is torch.nn.functional.softmax:
                self.name, self.fn = "softmax", self._NAMED["softmax"]
            elif activation is torch.log_softmax or activation is torch.nn.functional.log_softmax:
                self.name, self.fn = "logsoftmax", self._NAMED["logsoftmax"]
            else:
                self.name = None
                self.fn = functools.partial(_call_over_dim, activation)
        else:
            raise TypeError(f"activation: expected a name or a callable, got {type(activation).__name__}")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim: expected an integer axis, got {dim!r}")
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fn(x, dim=self.dim)

    def extra_repr(self) -> str:
        return f"{self.name or 'custom'}, dim={self.dim}"

    def config(self) -> dict[str, Any]:
        if self.name is None:
            raise TypeError("ActivationOverDims with a custom callable cannot be written to a configuration")
        return {"type": "ActivationOverDims", "activation": self.name, "dim": self.dim}


def _call_over_dim(fn: Callable[..., torch.Tensor], x: torch.Tensor, dim: int) -> torch.Tensor:
    return fn(x, dim=dim)


register_builder("Dense", lambda c, build: Dense(c["n_in"], c["n_out"], c["activation"], bias=c.get("bias", True)))
register_builder("Chain", lambda c, build: Chain(*(build(child) for child in c["layers"])))
register_builder("Flatten", lambda c, build: Flatten())
register_builder("Reshape", lambda c, build: Reshape(*c["shape"]))
register_builder("ActivationOverDims", lambda c, build: ActivationOverDims(c["activation"], c["dim"]))


def dense_chain(sizes: Sequence[int], activations: Sequence[ActivationLike],
                init: Callable[..., torch.Tensor] | str = glorot_uniform) -> list[Dense]:
    """``[Dense(sizes[0], sizes[1], activations[0]), Dense(sizes[1], sizes[2], activations[1]), ...]``."""
    if len(sizes) - 1 != len(activations):
        raise ValueError(
            f"expected {len(sizes) - 1} activations for {len(sizes) - 1} layers, got {len(activations)}"
        )
    return [Dense(sizes[i], sizes[i + 1], activations[i], init) for i in range(len(activations))]

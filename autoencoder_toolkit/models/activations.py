"""Activation functions by name, for torch modules and for plain array backends.

Every built-in layer stores the *name* of its activation, so a model can be written to a
JSON configuration and rebuilt without pickling. A name resolves to an
:class:`Activation`, which carries a torch implementation (used while training) and an
array-API implementation (used by the NumPy and CuPy inference backends).

Names and their definitions (``x`` is the pre-activation, applied elementwise unless
stated otherwise):

==============  ==========================================================
``identity``    ``x``
``relu``        ``max(x, 0)``
``tanh``        ``tanh(x)``
``sigmoid``     ``1 / (1 + exp(-x))``
``softplus``    ``log(1 + exp(-|x|)) + max(x, 0)``
``elu``         ``x`` if ``x > 0`` else ``exp(x) - 1``
``gelu``        tanh approximation ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``,
                the form Julia's NNlib uses
``gelu_erf``    exact ``x/2 (1 + erf(x / sqrt(2)))``
``silu``        ``x * sigmoid(x)`` (also called swish)
``leakyrelu``   ``x`` if ``x > 0`` else ``0.01 x``
``softmax``     ``exp(x - max) / sum(exp(x - max))`` over the last (feature) axis
==============  ==========================================================

A callable that is not one of these is accepted as a *custom* activation: it works in
torch, but a model that contains it cannot be saved as a configuration or exported to
another backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.nn.functional as F

__all__ = ["Activation", "ActivationLike", "get_activation", "ACTIVATION_NAMES"]


@dataclass(frozen=True)
class Activation:
    """A named activation with a torch and an array-API implementation.

    Attributes
    ----------
    name:
        The registry name, or ``None`` for a custom callable.
    torch_fn:
        ``torch.Tensor -> torch.Tensor``.
    array_fn:
        ``(xp, x) -> x`` written against an array-API namespace ``xp``; ``None`` for a
        custom callable.
    """

    name: str | None
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    array_fn: Callable[[Any, Any], Any] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.torch_fn(x)

    def __repr__(self) -> str:
        return self.name if self.name is not None else f"custom({self.torch_fn!r})"


ActivationLike = Union[str, Callable[..., Any], Activation, None]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _identity(x):
    return x


def _softmax_torch(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _gelu_tanh_torch(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# --- array-API forms (NumPy, CuPy, torch through array-api-compat) -----------------

def _a_relu(xp, x):
    return xp.maximum(x, xp.zeros_like(x))


def _a_tanh(xp, x):
    return xp.tanh(x)


def _a_sigmoid(xp, x):
    # Split by sign so that exp never overflows.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _a_softplus(xp, x):
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, xp.zeros_like(x))


def _a_elu(xp, x):
    return xp.where(x > 0, x, xp.expm1(xp.minimum(x, xp.zeros_like(x))))


def _a_gelu_tanh(xp, x):
    return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def _a_gelu_erf(xp, x):
    # The array API has no erf; use the backend's own where available.
    erf = getattr(xp, "erf", None)
    if erf is None:  # NumPy: math.erf vectorised through the ufunc-free path
        import numpy as np

        erf = np.vectorize(math.erf, otypes=[x.dtype])
    return 0.5 * x * (1 + erf(x / math.sqrt(2.0)))


def _a_silu(xp, x):
    return x * _a_sigmoid(xp, x)


def _a_leakyrelu(xp, x):
    return xp.where(x > 0, x, 0.01 * x)


def _a_softmax(xp, x):
    m = xp.max(x, axis=-1, keepdims=True)
    e = xp.exp(x - m)
    return e / xp.sum(e, axis=-1, keepdims=True)


_REGISTRY: dict[str, Activation] = {
    "identity": Activation("identity", _identity, lambda xp, x: x),
    "relu": Activation("relu", torch.relu, _a_relu),
    "tanh": Activation("tanh", torch.tanh, _a_tanh),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _a_sigmoid),
    "softplus": Activation("softplus", F.softplus, _a_softplus),
    "elu": Activation("elu", F.elu, _a_elu),
    "gelu": Activation("gelu", _gelu_tanh_torch, _a_gelu_tanh),
    "gelu_erf": Activation("gelu_erf", F.gelu, _a_gelu_erf),
    "silu": Activation("silu", F.silu, _a_silu),
    "leakyrelu": Activation("leakyrelu", F.leaky_relu, _a_leakyrelu),
    "softmax": Activation("softmax", _softmax_torch, _a_softmax),
}

#: Names accepted wherever an activation is expected.
ACTIVATION_NAMES: tuple[str, ...] = tuple(_REGISTRY)

_ALIASES = {"swish": "silu", "leaky_relu": "leakyrelu", "none": "identity", "linear": "identity"}

# Well-known callables map back to their names so that they can be saved.
_CALLABLE_NAMES: dict[Any, str] = {
    torch.relu: "relu",
    F.relu: "relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.softplus: "softplus",
    F.elu: "elu",
    F.gelu: "gelu_erf",
    F.silu: "silu",
    F.leaky_relu: "leakyrelu",
    _identity: "identity",
}
_MODULE_NAMES: dict[type, str] = {
    torch.nn.ReLU: "relu",
    torch.nn.Tanh: "tanh",
    torch.nn.Sigmoid: "sigmoid",
    torch.nn.Identity: "identity",
    torch.nn.SiLU: "silu",
}


def get_activation(activation: ActivationLike, *, argument: str = "activation") -> Activation:
    """Resolve a name, a known callable or a custom callable to an :class:`Activation`.

    Parameters
    ----------
    activation:
        One of :data:`ACTIVATION_NAMES` (case-insensitive), ``None`` (identity), an
        :class:`Activation`, a well-known torch function (``torch.relu``, ``F.softplus``,
        ...), or any other callable (kept as a custom activation).
    argument:
        The argument name used in error messages.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    TypeError
        For anything that is neither a string nor callable.
    """
    if activation is None:
        return _REGISTRY["identity"]
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = activation.strip().lower()
        key = _ALIASES.get(key, key)
        if key not in _REGISTRY:
            raise ValueError(
                f"{argument}: unknown activation {activation!r}; expected one of "
                f"{', '.join(ACTIVATION_NAMES)} or a callable"
            )
        return _REGISTRY[key]
    if callable(activation):
        try:
            name = _CALLABLE_NAMES.get(activation)
        except TypeError:  # unhashable callable
            name = None
        if name is None and type(activation) in _MODULE_NAMES:
            name = _MODULE_NAMES[type(activation)]
        if name is not None:
            return _REGISTRY[name]
        return Activation(None, activation, None)
    raise TypeError(
        f"{argument}: expected an activation name (one of {', '.join(ACTIVATION_NAMES)}) "
        f"or a callable, got {type(activation).__name__}"
    )

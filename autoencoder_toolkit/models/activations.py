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

from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.nn.functional as F

from ..inference.activations import ACTIVATIONS

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
        ``(xp, x) -> x`` written against an array-API namespace ``xp``
        (:data:`autoencoder_toolkit.inference.activations.ACTIVATIONS`); ``None`` for a
        custom callable.
    """

    name: str | None
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    array_fn: Callable[[Any, Any], Any] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.torch_fn(x)

    def __reduce__(self) -> Any:
        # a named activation pickles as its name (torch.save of a model), a custom one as itself
        if self.name is not None:
            return (get_activation, (self.name,))
        return (Activation, (None, self.torch_fn, self.array_fn))

    def __repr__(self) -> str:
        return self.name if self.name is not None else f"custom({self.torch_fn!r})"


ActivationLike = Union[str, Callable[..., Any], Activation, None]

def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _softmax_torch(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _gelu_tanh_torch(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_TORCH_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": _identity,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "elu": F.elu,
    "gelu": _gelu_tanh_torch,
    "gelu_erf": F.gelu,
    "silu": F.silu,
    "leakyrelu": F.leaky_relu,
    "softmax": _softmax_torch,
}
_REGISTRY: dict[str, Activation] = {name: Activation(name, fn, ACTIVATIONS[name]) for name, fn in _TORCH_FUNCTIONS.items()}

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

"""Activation functions on plain arrays (NumPy, CuPy, or torch through the array API).

Each is ``f(xp, x, **params)`` with ``xp`` an array-API namespace; the parameters are
those of the matching torch layer (``Softplus(beta, threshold)``, ``ELU(alpha)``,
``LeakyReLU(negative_slope)``, ``Softmax(dim)``). The torch layers of
:mod:`autoencoder_toolkit.models.activations` carry these as their array forms, and the
frozen inference models run them, so both compute the same definitions.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

__all__ = ["ACTIVATIONS"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _identity(xp: Any, x: Any) -> Any:
    return x


def _relu(xp: Any, x: Any) -> Any:
    return xp.maximum(x, xp.zeros_like(x))


def _tanh(xp: Any, x: Any) -> Any:
    return xp.tanh(x)


def _sigmoid(xp: Any, x: Any) -> Any:
    # split by sign so that exp never overflows
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(xp: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    bx = x * beta
    smooth = (xp.log1p(xp.exp(-xp.abs(bx))) + xp.maximum(bx, xp.zeros_like(bx))) / beta
    return xp.where(bx > threshold, x, smooth)


def _elu(xp: Any, x: Any, alpha: float = 1.0) -> Any:
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, xp.zeros_like(x))))


def _gelu_tanh(xp: Any, x: Any) -> Any:
    return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def _erf(xp: Any, x: Any) -> Any:
    fn = getattr(xp, "erf", None)
    if fn is not None:
        return fn(x)
    if type(x).__module__.startswith("cupy"):
        from cupyx.scipy.special import erf

        return erf(x)
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x).astype(x.dtype, copy=False)


def _gelu_erf(xp: Any, x: Any) -> Any:
    return 0.5 * x * (1 + _erf(xp, x / math.sqrt(2.0)))


def _silu(xp: Any, x: Any) -> Any:
    return x * _sigmoid(xp, x)


def _leakyrelu(xp: Any, x: Any, negative_slope: float = 0.01) -> Any:
    return xp.where(x >= 0, x, negative_slope * x)


def _softmax(xp: Any, x: Any, dim: int = -1) -> Any:
    e = xp.exp(x - xp.max(x, axis=dim, keepdims=True))
    return e / xp.sum(e, axis=dim, keepdims=True)


def _logsoftmax(xp: Any, x: Any, dim: int = -1) -> Any:
    shifted = x - xp.max(x, axis=dim, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=dim, keepdims=True))


#: name -> f(xp, x, **params): the names of :mod:`autoencoder_toolkit.models.activations`,
#: with torch's parameters where its layers have them, and ``logsoftmax``.
ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "identity": _identity,
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "elu": _elu,
    "gelu": _gelu_tanh,
    "gelu_erf": _gelu_erf,
    "silu": _silu,
    "leakyrelu": _leakyrelu,
    "softmax": _softmax,
    "logsoftmax": _logsoftmax,
}

"""When the formulas hand their arrays to fused kernels.

The formulas of :mod:`autoencoder_toolkit.densities` (log-likelihoods, KL terms, the MI
bound, the reparameterisation) ask :func:`fused_kernels` for a namespace of fused
implementations of themselves. Namespaces are registered per array kind:

* ``"cupy"``: :mod:`.cupy_kernels`, for CuPy arrays of one floating dtype (float32 or
  float64) with at least one element. On by default.
* ``"torch"``: the same kernels inside torch's autograd, for CUDA tensors
  (:mod:`.torch_bridge` registers itself when imported). Off by default; a loss or a
  training step called with ``kernels="cupy"`` turns it on for that call
  (:func:`use_fused_kernels`).

For every other input (NumPy arrays, CPU tensors, a switched-off kind) the cost is a
string comparison and the generic array-API code runs. Turn the CuPy kernels off, for
example to compare them with the generic code on the same arrays, with
``with use_cupy_kernels(False): ...``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from . import cupy_kernels

__all__ = ["cupy_kernels_enabled", "set_cupy_kernels", "use_cupy_kernels", "use_fused_kernels",
           "register_kernels", "fused_kernels"]

_NAMESPACE_KINDS = {"array_api_compat.cupy": "cupy", "cupy": "cupy", "array_api_compat.torch": "torch",
                    "torch": "torch"}
_enabled = {"cupy": True, "torch": False}
_registered: dict[str, Any] = {"cupy": cupy_kernels}


def register_kernels(kind: str, namespace: Any) -> None:
    """Register the fused formulas for arrays of ``kind`` (``"cupy"`` or ``"torch"``).

    ``namespace`` has ``supports(*arrays) -> bool`` and the formulas
    ``bernoulli_loglikelihood``, ``gaussian_loglikelihood``, ``gaussian_kl``,
    ``reparameterize`` and ``mutual_info_bound`` with the signatures of
    :mod:`.cupy_kernels`.
    """
    if kind not in _enabled:
        raise ValueError(f"kind: expected one of {', '.join(_enabled)}, got {kind!r}")
    _registered[kind] = namespace


def cupy_kernels_enabled() -> bool:
    """Whether CuPy arrays go to the fused kernels."""
    return _enabled["cupy"]


def set_cupy_kernels(enabled: bool) -> None:
    """Route CuPy arrays to the fused kernels (``True``, the default) or to the generic code."""
    _enabled["cupy"] = bool(enabled)


@contextmanager
def use_fused_kernels(kind: str, enabled: bool = True) -> Iterator[None]:
    """Within the block, arrays of ``kind`` use the fused kernels (or not); restored afterwards."""
    if kind not in _enabled:
        raise ValueError(f"kind: expected one of {', '.join(_enabled)}, got {kind!r}")
    before = _enabled[kind]
    _enabled[kind] = bool(enabled)
    try:
        yield
    finally:
        _enabled[kind] = before


def use_cupy_kernels(enabled: bool = True) -> Any:
    """Within the block, CuPy arrays use the fused kernels (or not); restored afterwards."""
    return use_fused_kernels("cupy", enabled)


def fused_kernels(xp: Any, *arrays: Any) -> Any:
    """The fused formulas for ``arrays`` (of namespace ``xp``) when they can take them, else ``None``."""
    kind = _NAMESPACE_KINDS.get(xp.__name__)
    if kind is None or not _enabled[kind]:
        return None
    namespace = _registered.get(kind)
    return namespace if namespace is not None and namespace.supports(*arrays) else None

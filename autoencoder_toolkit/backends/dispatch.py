"""When the pure functions hand CuPy arrays to the fused kernels of :mod:`.cupy_kernels`.

The pure functions (log-likelihoods, KL terms, the MI bound, the reparameterisation)
ask :func:`fused_kernels` for the kernel module. It answers only for CuPy arrays of one
floating dtype (float32 or float64) with at least one element, while the switch is on
(it is by default); for every other input, NumPy and torch included, the cost is one
string comparison and the generic array-API code runs.

Turn the kernels off, for example to compare them with the generic code on the same
CuPy arrays, with ``with use_cupy_kernels(False): ...``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["cupy_kernels_enabled", "set_cupy_kernels", "use_cupy_kernels", "fused_kernels"]

_CUPY_NAMESPACES = frozenset({"array_api_compat.cupy", "cupy"})
_state = {"enabled": True}


def cupy_kernels_enabled() -> bool:
    """Whether CuPy arrays go to the fused kernels."""
    return _state["enabled"]


def set_cupy_kernels(enabled: bool) -> None:
    """Route CuPy arrays to the fused kernels (``True``, the default) or to the generic code."""
    _state["enabled"] = bool(enabled)


@contextmanager
def use_cupy_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block, CuPy arrays use the fused kernels (or not); restored afterwards."""
    before = _state["enabled"]
    _state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _state["enabled"] = before


def fused_kernels(xp: Any, *arrays: Any) -> Any:
    """The :mod:`.cupy_kernels` module when ``arrays`` can take the fused path, else ``None``."""
    if xp.__name__ not in _CUPY_NAMESPACES or not _state["enabled"]:
        return None
    from . import cupy_kernels

    return cupy_kernels if cupy_kernels.supports(*arrays) else None

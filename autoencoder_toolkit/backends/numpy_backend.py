"""The NumPy backend: CPU arrays, no torch needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, as_numpy

__all__ = ["NumpyBackend"]


def _check_cpu(device: Any) -> None:
    if device is not None and str(device) != "cpu":
        raise ValueError(f"device: the numpy backend has only the 'cpu' device, got {device!r}")


class NumpyBackend(Backend):
    """NumPy arrays on the CPU; the namespace is ``array_api_compat.numpy``."""

    name = "numpy"

    def __init__(self) -> None:
        import array_api_compat.numpy as xnp

        self._xp = xnp

    @property
    def module(self) -> Any:  # noqa: D102
        return np

    @property
    def xp(self) -> Any:  # noqa: D102
        return self._xp

    def default_device(self) -> str:  # noqa: D102
        return "cpu"

    def device(self, a: Any) -> str:  # noqa: D102
        return "cpu"

    def to_device(self, a: Any, device: Any) -> Any:  # noqa: D102
        _check_cpu(device)
        return a

    def to_numpy(self, a: Any) -> np.ndarray:  # noqa: D102
        return as_numpy(a)

    def from_dlpack(self, a: Any) -> np.ndarray:  # noqa: D102
        return np.from_dlpack(a)

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> np.ndarray:  # noqa: D102
        _check_cpu(device)
        out = self.to_numpy(a)
        if dtype is not None:
            out = out.astype(self.dtype(dtype), copy=False)
        return out

    def default_rng(self, seed: int | None = None, *, device: Any = None) -> np.random.Generator:  # noqa: D102
        _check_cpu(device)
        return np.random.default_rng(seed)

    def _native_normal(self, rng: Any, shape: tuple[int, ...], dtype: str, device: Any) -> Any:
        _check_cpu(device)
        if rng is None:
            rng = np.random.default_rng()
        elif not isinstance(rng, np.random.Generator):
            return NotImplemented
        np_dtype = np.float64 if dtype == "float64" else np.float32
        return rng.standard_normal(shape, dtype=np_dtype).astype(dtype, copy=False)

    def _native_permutation(self, rng: Any, n: int, device: Any) -> Any:
        _check_cpu(device)
        if rng is None:
            rng = np.random.default_rng()
        elif not isinstance(rng, np.random.Generator):
            return NotImplemented
        return rng.permutation(n).astype(np.int64)

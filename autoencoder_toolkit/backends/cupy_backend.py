"""The CuPy backend: CUDA arrays without torch (optional: ``pip install cupy-cuda12x``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._namespace import array_kind
from .base import Backend, BackendUnavailableError, as_numpy

__all__ = ["CupyBackend", "cuda_unavailable_reason"]


def cuda_unavailable_reason() -> str | None:
    """``None`` when CuPy imports and sees a CUDA device, else why not (``"no CUDA device"``)."""
    try:
        import cupy
    except Exception as err:  # ImportError, or a broken CUDA installation
        return f"no CUDA device (CuPy is not importable: {type(err).__name__}: {err})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as err:  # noqa: BLE001 - no driver, insufficient driver, ...
        return f"no CUDA device ({type(err).__name__}: {err})"
    return None


def _device_id(device: Any) -> int | None:
    """A CUDA device number from ``None``, an int, ``"cuda:1"``, a cupy or torch device."""
    if device is None:
        return None
    if isinstance(device, int):
        return device
    dev_id = getattr(device, "id", None)
    if isinstance(dev_id, int):
        return dev_id
    index = getattr(device, "index", None)
    if getattr(device, "type", None) == "cuda":
        return int(index or 0)
    text = str(device)
    if text == "cuda":
        return 0
    if text.startswith("cuda:"):
        return int(text[5:])
    raise ValueError(f"device: expected a CUDA device (an int, 'cuda:N' or a cupy.cuda.Device), got {device!r}")


class CupyBackend(Backend):
    """CuPy arrays on a CUDA device; the namespace is ``array_api_compat.cupy``.

    Conversions from torch CUDA tensors share device memory through DLPack. The pure
    functions of the package run fused kernels (:mod:`.cupy_kernels`) on CuPy arrays.
    """

    name = "cupy"

    def __init__(self) -> None:
        why = cuda_unavailable_reason()
        if why is not None:
            raise BackendUnavailableError(f"the cupy backend is unavailable: {why}")
        import array_api_compat.cupy as xcupy
        import cupy

        self._cupy = cupy
        self._xp = xcupy

    @property
    def module(self) -> Any:  # noqa: D102
        return self._cupy

    @property
    def xp(self) -> Any:  # noqa: D102
        return self._xp

    def default_device(self) -> Any:  # noqa: D102
        return self._cupy.cuda.Device()

    def device(self, a: Any) -> Any:  # noqa: D102
        return a.device

    def to_device(self, a: Any, device: Any) -> Any:  # noqa: D102
        dev = _device_id(device)
        if dev is None or a.device.id == dev:
            return a
        with self._cupy.cuda.Device(dev):
            return self._cupy.asarray(a)

    def to_numpy(self, a: Any) -> np.ndarray:  # noqa: D102
        return as_numpy(a)

    def from_dlpack(self, a: Any) -> Any:  # noqa: D102
        return self._cupy.from_dlpack(a)

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:  # noqa: D102
        cp = self._cupy
        kind = array_kind(a)
        dev = _device_id(device)
        if kind == "torch" and a.device.type == "cuda":
            out = cp.from_dlpack(a.detach())
        elif kind == "torch":
            out = cp.asarray(as_numpy(a))
        elif kind == "cupy":
            out = a
        else:
            if dev is not None:
                with cp.cuda.Device(dev):
                    out = cp.asarray(np.asarray(a))
            else:
                out = cp.asarray(np.asarray(a))
        out = self.to_device(out, dev)
        if dtype is not None:
            out = out.astype(self.dtype(dtype), copy=False)
        return out

    def default_rng(self, seed: int | None = None, *, device: Any = None) -> Any:
        """A ``cupy.random.RandomState`` (it draws normals and permutations on the device)."""
        dev = _device_id(device)
        if dev is None:
            return self._cupy.random.RandomState(seed)
        with self._cupy.cuda.Device(dev):
            return self._cupy.random.RandomState(seed)

    def _native_normal(self, rng: Any, shape: tuple[int, ...], dtype: str, device: Any) -> Any:
        if rng is not None and not type(rng).__module__.startswith("cupy"):
            return NotImplemented
        source = self._cupy.random if rng is None else rng
        dev = _device_id(device)
        dt = "float64" if dtype == "float64" else "float32"
        if dev is None:
            return source.standard_normal(shape, dtype=dt).astype(dtype, copy=False)
        with self._cupy.cuda.Device(dev):
            return source.standard_normal(shape, dtype=dt).astype(dtype, copy=False)

    def _native_permutation(self, rng: Any, n: int, device: Any) -> Any:
        if rng is not None and not type(rng).__module__.startswith("cupy"):
            return NotImplemented
        source = self._cupy.random if rng is None else rng
        dev = _device_id(device)
        if dev is None:
            return source.permutation(n).astype(self._cupy.int64)
        with self._cupy.cuda.Device(dev):
            return source.permutation(n).astype(self._cupy.int64)

"""The torch backend: CPU and CUDA tensors (the backend models train on)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._namespace import array_kind
from .base import Backend, as_numpy

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """torch tensors; the namespace is ``array_api_compat.torch``.

    Conversions share memory through DLPack: a NumPy array becomes a CPU tensor over the
    same buffer and a CuPy array a CUDA tensor over the same device memory.
    """

    name = "torch"

    def __init__(self) -> None:
        import array_api_compat.torch as xtorch

        self._xp = xtorch

    @property
    def module(self) -> Any:  # noqa: D102
        return torch

    @property
    def xp(self) -> Any:  # noqa: D102
        return self._xp

    def default_device(self) -> torch.device:  # noqa: D102
        return torch.empty(0).device

    def device(self, a: Any) -> torch.device:  # noqa: D102
        return a.device

    def to_device(self, a: Any, device: Any) -> Any:  # noqa: D102
        return a if device is None else a.to(torch.device(device))

    def to_numpy(self, a: Any) -> np.ndarray:  # noqa: D102
        return as_numpy(a)

    def from_dlpack(self, a: Any) -> torch.Tensor:  # noqa: D102
        return torch.from_dlpack(a)

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> torch.Tensor:  # noqa: D102
        kind = array_kind(a)
        if kind == "torch":
            t = a
        elif kind == "cupy":
            t = torch.from_dlpack(a)
        elif kind == "numpy":
            t = torch.from_numpy(a) if a.flags.writeable else torch.from_numpy(np.array(a))
        else:
            t = torch.as_tensor(np.asarray(a))
        if dtype is not None:
            t = t.to(self.dtype(dtype))
        if device is not None:
            t = t.to(torch.device(device))
        return t

    def default_rng(self, seed: int | None = None, *, device: Any = None) -> torch.Generator:  # noqa: D102
        g = torch.Generator(device=torch.device(device) if device is not None else "cpu")
        if seed is None:
            g.seed()
        else:
            g.manual_seed(int(seed))
        return g

    def _native_normal(self, rng: Any, shape: tuple[int, ...], dtype: str, device: Any) -> Any:
        dev = torch.device(device) if device is not None else None
        if rng is None:
            return torch.randn(shape, dtype=self.dtype(dtype), device=dev)
        if isinstance(rng, torch.Generator):
            out = torch.randn(shape, dtype=self.dtype(dtype), generator=rng, device=rng.device)
            return out if dev is None else out.to(dev)
        return NotImplemented

    def _native_permutation(self, rng: Any, n: int, device: Any) -> Any:
        dev = torch.device(device) if device is not None else None
        if rng is None:
            return torch.randperm(n, device=dev)
        if isinstance(rng, torch.Generator):
            out = torch.randperm(n, generator=rng, device=rng.device)
            return out if dev is None else out.to(dev)
        return NotImplemented

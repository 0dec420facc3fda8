"""Random draws for every ``rng=`` argument of the package.

An ``rng`` may be

* ``None``: the library's default generator for the array kind (torch's global
  generator for tensors, a fresh ``numpy.random.default_rng()`` for NumPy arrays,
  CuPy's global generator for CuPy arrays);
* a ``torch.Generator``;
* a ``numpy.random.Generator``;
* a Julia-compatible stream from :mod:`autoencoder_toolkit.juliarng`
  (``MersenneTwister``, ``Xoshiro``, ``seed_``), which yields exactly the numbers Julia
  draws for the same seed: Gaussian noise as ``randn(Float32, L, B)`` and permutations as
  ``shuffle(rng, 1:B)``.

An integer ``seed`` for a permutation means ``MersenneTwister(seed)``, as in the
reference implementation's ``shuffle_latent(z; seed)``.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from .backends import array_kind

__all__ = ["RNGLike", "normal_like", "permutation_like", "check_rng", "is_julia_rng"]

RNGLike = Union[None, torch.Generator, np.random.Generator, Any]


def is_julia_rng(rng: Any) -> bool:
    """Whether ``rng`` is a stream from :mod:`autoencoder_toolkit.juliarng`."""
    if rng is None or isinstance(rng, (torch.Generator, np.random.Generator)):
        return False
    from . import juliarng

    return isinstance(rng, juliarng.JuliaRNG)


def check_rng(rng: Any, argument: str = "rng") -> None:
    """Raise ``TypeError`` unless ``rng`` is one of the accepted generator kinds."""
    if rng is None or isinstance(rng, (torch.Generator, np.random.Generator)) or is_julia_rng(rng):
        return
    if type(rng).__module__.startswith("cupy"):
        return
    hint = ""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        hint = (" (for a seeded stream pass torch.Generator().manual_seed(k), "
                "numpy.random.default_rng(k) or autoencoder_toolkit.juliarng.seed_(k))")
    raise TypeError(
        f"{argument}: expected None, a torch.Generator, a numpy.random.Generator or a "
        f"juliarng stream, got {type(rng).__name__}{hint}"
    )


def _julia_normal(rng: Any, shape: tuple[int, ...]) -> np.ndarray:
    from . import juliarng

    # Julia fills randn(Float32, dims...) column-major; the batch-first C-order array of
    # the reversed shape has the same memory, so a row-major fill of `shape` is exact.
    return juliarng.randn(rng, *shape, dtype=np.float32)


def normal_like(like: Any, rng: RNGLike = None) -> Any:
    """Standard normal draws with the shape, kind, dtype and device of ``like``."""
    shape = tuple(like.shape)
    kind = array_kind(like)
    if kind == "torch":
        if rng is None:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        if isinstance(rng, torch.Generator):
            if rng.device == like.device:
                return torch.randn(shape, dtype=like.dtype, device=like.device, generator=rng)
            return torch.randn(shape, dtype=like.dtype, device=rng.device, generator=rng).to(like.device)
        if isinstance(rng, np.random.Generator):
            return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(like.device, like.dtype)
        if is_julia_rng(rng):
            return torch.from_numpy(_julia_normal(rng, shape)).to(like.device, like.dtype)
    elif kind == "numpy":
        dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float32
        if rng is None:
            rng = np.random.default_rng()
        if isinstance(rng, np.random.Generator):
            return rng.standard_normal(shape, dtype=dtype)
        if isinstance(rng, torch.Generator):
            return torch.randn(shape, generator=rng, dtype=torch.float32).numpy().astype(dtype, copy=False)
        if is_julia_rng(rng):
            return _julia_normal(rng, shape).astype(dtype, copy=False)
    elif kind == "cupy":
        import cupy

        if rng is None:
            return cupy.random.standard_normal(shape, dtype=like.dtype)
        if is_julia_rng(rng):
            return cupy.asarray(_julia_normal(rng, shape), dtype=like.dtype)
        if isinstance(rng, np.random.Generator):
            return cupy.asarray(rng.standard_normal(shape, dtype=np.float32), dtype=like.dtype)
        if isinstance(rng, torch.Generator):
            return cupy.asarray(torch.randn(shape, generator=rng).numpy(), dtype=like.dtype)
        if hasattr(rng, "standard_normal"):
            return rng.standard_normal(shape, dtype=like.dtype)
    check_rng(rng)
    raise TypeError(f"cannot draw noise for an array of kind {kind!r}")


def _julia_permutation(n: int, rng: Any) -> np.ndarray:
    from . import juliarng

    return np.asarray(juliarng.shuffle(rng, range(n)), dtype=np.int64)


def permutation_like(n: int, like: Any, rng: RNGLike = None, seed: int | None = None) -> Any:
    """A uniformly random permutation of ``0..n-1`` as an index array of ``like``'s kind.

    With ``seed`` set, the permutation is Julia's ``shuffle(MersenneTwister(seed), 1:n)``
    (minus one), whatever ``rng`` is.
    """
    if seed is not None:
        from . import juliarng

        rng = juliarng.MersenneTwister(int(seed), julia=juliarng.DEFAULT_JULIA)
    kind = array_kind(like)
    if kind == "torch":
        device = like.device
        if rng is None:
            return torch.randperm(n, device=device)
        if isinstance(rng, torch.Generator):
            return torch.randperm(n, generator=rng, device=rng.device).to(device)
        if isinstance(rng, np.random.Generator):
            return torch.from_numpy(rng.permutation(n).astype(np.int64)).to(device)
        if is_julia_rng(rng):
            return torch.from_numpy(_julia_permutation(n, rng)).to(device)
    elif kind == "numpy":
        if rng is None:
            rng = np.random.default_rng()
        if isinstance(rng, np.random.Generator):
            return rng.permutation(n).astype(np.int64)
        if isinstance(rng, torch.Generator):
            return torch.randperm(n, generator=rng).numpy()
        if is_julia_rng(rng):
            return _julia_permutation(n, rng)
    elif kind == "cupy":
        import cupy

        if rng is None:
            return cupy.random.permutation(n).astype(cupy.int64)
        if is_julia_rng(rng):
            return cupy.asarray(_julia_permutation(n, rng))
        if isinstance(rng, np.random.Generator):
            return cupy.asarray(rng.permutation(n).astype(np.int64))
        if isinstance(rng, torch.Generator):
            return cupy.asarray(torch.randperm(n, generator=rng).numpy())
        if hasattr(rng, "permutation"):
            return rng.permutation(n).astype(cupy.int64)
    check_rng(rng)
    raise TypeError(f"cannot draw a permutation for an array of kind {kind!r}")

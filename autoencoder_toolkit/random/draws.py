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

from ..backends import array_kind

__all__ = ["RNGLike", "PresetDraws", "normal_like", "permutation_like", "shuffle_rows", "check_rng",
           "is_julia_rng"]

RNGLike = Union[None, torch.Generator, np.random.Generator, Any]


class PresetDraws:
    """A stream of given draws, consumed in order: noise arrays and permutations.

    ``rng=PresetDraws([noise_1, perm_1, noise_2, perm_2])`` makes a call use exactly
    these values where it would draw Gaussian noise (an array of the noise's shape) or a
    permutation (0-based indices), in the order the call draws them. Useful to replay
    draws made elsewhere (for example noise saved from a Julia run) and in tests. A draw
    of the wrong kind or shape raises ``ValueError``; so does running out of draws.
    """

    def __init__(self, draws: Any) -> None:
        self._draws = list(draws)
        self._next = 0

    @property
    def remaining(self) -> int:
        """Number of draws not yet consumed."""
        return len(self._draws) - self._next

    def _take(self, what: str) -> Any:
        if self._next >= len(self._draws):
            raise ValueError(f"rng: PresetDraws ran out of draws (needed a {what} after {self._next} draws)")
        value = self._draws[self._next]
        self._next += 1
        return value

    def noise(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next draw, which must be noise of ``shape``."""
        value = np.asarray(self._take(f"noise array of shape {shape}"))
        if tuple(value.shape) != tuple(shape) or not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"rng: PresetDraws expected noise of shape {shape}, got an array of shape "
                             f"{tuple(value.shape)} and dtype {value.dtype}")
        return value

    def permutation(self, n: int) -> np.ndarray:
        """The next draw, which must be a permutation of ``0..n-1``."""
        value = np.asarray(self._take(f"permutation of {n}"))
        if value.shape != (n,) or not np.array_equal(np.sort(value), np.arange(n)):
            raise ValueError(f"rng: PresetDraws expected a permutation of 0..{n - 1}, got {value!r:.120}")
        return value.astype(np.int64)


def _custom(rng: Any) -> bool:
    """Streams that implement ``noise(shape)`` and ``permutation(n)`` themselves."""
    return isinstance(rng, PresetDraws) or (hasattr(rng, "noise") and hasattr(rng, "permutation")
                                            and not isinstance(rng, (torch.Generator, np.random.Generator)))


def is_julia_rng(rng: Any) -> bool:
    """Whether ``rng`` is a stream from :mod:`autoencoder_toolkit.juliarng`."""
    if rng is None or isinstance(rng, (torch.Generator, np.random.Generator)):
        return False
    from . import juliarng

    return isinstance(rng, juliarng.JuliaRNG)


def check_rng(rng: Any, argument: str = "rng") -> None:
    """Raise ``TypeError`` unless ``rng`` is one of the accepted generator kinds."""
    if rng is None or isinstance(rng, (torch.Generator, np.random.Generator)) or is_julia_rng(rng) or _custom(rng):
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
    if rng is not None and not isinstance(rng, (torch.Generator, np.random.Generator)) and _custom(rng):
        return _as_kind(rng.noise(shape), like, float_dtype=True)
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
    if rng is not None and not isinstance(rng, (torch.Generator, np.random.Generator)) and _custom(rng):
        return _as_kind(rng.permutation(n), like, float_dtype=False)
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


def _as_kind(value: Any, like: Any, *, float_dtype: bool) -> Any:
    """``value`` as an array of ``like``'s kind and device (and dtype, for noise)."""
    kind = array_kind(like)
    if kind == "torch":
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        return t.to(device=like.device, dtype=like.dtype if float_dtype else torch.int64)
    if kind == "cupy":
        import cupy

        return cupy.asarray(value, dtype=like.dtype if float_dtype else cupy.int64)
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return arr.astype(like.dtype if float_dtype else np.int64, copy=False)


def shuffle_rows(z: Any, rng: RNGLike = None, seed: int | None = None) -> Any:
    """``z`` with its rows (samples) permuted: ``z[perm]``.

    A stream that shuffles codes itself (one with a ``shuffle_rows(z)`` method, such as
    the distributed stream that permutes across processes) does so unless ``seed`` is set.
    """
    if seed is None and rng is not None and hasattr(rng, "shuffle_rows"):
        return rng.shuffle_rows(z)
    return z[permutation_like(z.shape[0], z, rng=rng, seed=seed)]

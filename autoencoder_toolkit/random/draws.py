"""The random draws behind every ``rng=`` argument of the package, in one place.

An ``rng`` may be

* ``None``: the default generator of the array kind being drawn for (torch's global
  generator for tensors, a fresh ``numpy.random.default_rng()`` for NumPy arrays,
  CuPy's global generator for CuPy arrays; see
  :meth:`autoencoder_toolkit.backends.Backend.standard_normal`);
* a ``torch.Generator``, a ``numpy.random.Generator`` or a ``cupy.random`` generator;
* a Julia-compatible stream from :mod:`autoencoder_toolkit.random.juliarng`
  (``MersenneTwister``, ``Xoshiro``, ``seed_``), which yields exactly the numbers Julia
  draws for the same seed: Gaussian noise as ``randn(Float32, L, B)`` and permutations
  as ``shuffle(rng, 1:B)``;
* a stream of given draws, :class:`PresetDraws`, or any object with ``noise(shape)``
  and ``permutation(n)`` methods (the distributed stream of
  :mod:`autoencoder_toolkit.training.distributed` is one).

:func:`normal` and :func:`permutation` draw from such a generator in *its own* library
(a torch generator gives a tensor on its device, every other one a NumPy array); the
array backends convert the result to the kind, dtype and device asked for. The same
generator therefore gives the same numbers whatever array kind the draw is for. An
integer ``seed`` for a permutation means ``MersenneTwister(seed)``
(:func:`seeded_permutation`), as in the reference's ``shuffle_latent(z; seed)``.

This module imports neither torch nor CuPy.
"""

from __future__ import annotations

import sys
from typing import Any, Union

import numpy as np

from . import juliarng

__all__ = ["RNGLike", "PresetDraws", "check_rng", "check_seed", "is_julia_rng", "is_torch_generator",
           "is_stream", "normal", "permutation", "seeded_permutation"]

RNGLike = Union[None, np.random.Generator, Any]


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


def is_torch_generator(rng: Any) -> bool:
    """Whether ``rng`` is a ``torch.Generator`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(rng, torch.Generator)


def is_julia_rng(rng: Any) -> bool:
    """Whether ``rng`` is a stream from :mod:`autoencoder_toolkit.random.juliarng`."""
    return isinstance(rng, juliarng.JuliaRNG)


def _is_cupy_generator(rng: Any) -> bool:
    return type(rng).__module__.startswith("cupy")


def is_stream(rng: Any) -> bool:
    """Whether ``rng`` supplies its own draws (``noise(shape)`` and ``permutation(n)``)."""
    return (isinstance(rng, PresetDraws) or hasattr(rng, "noise") and hasattr(rng, "permutation")
            and not isinstance(rng, np.random.Generator) and not is_torch_generator(rng))


def check_rng(rng: Any, argument: str = "rng") -> None:
    """Raise ``TypeError`` unless ``rng`` is one of the accepted generator kinds."""
    if (rng is None or isinstance(rng, np.random.Generator) or is_torch_generator(rng) or is_julia_rng(rng)
            or is_stream(rng) or _is_cupy_generator(rng)):
        return
    hint = ""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        hint = (" (for a seeded stream pass torch.Generator().manual_seed(k), "
                "numpy.random.default_rng(k) or autoencoder_toolkit.juliarng.seed_(k))")
    raise TypeError(
        f"{argument}: expected None, a torch.Generator, a numpy.random.Generator or a "
        f"juliarng stream, got {type(rng).__name__}{hint}"
    )


def check_seed(seed: Any, argument: str = "seed") -> None:
    """Raise unless ``seed`` is ``None`` or a non-negative integer (a Julia ``MersenneTwister`` seed)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{argument}: expected an integer or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{argument}: expected a non-negative integer (Julia's MersenneTwister seeds), got {seed}")


def normal(rng: Any, shape: tuple[int, ...]) -> Any:
    """float32 standard normal draws of ``shape`` from ``rng``, in ``rng``'s own library.

    A torch generator gives a tensor on its device, a CuPy generator a CuPy array, every
    other generator a NumPy array. A Julia stream fills the C-order array row by row,
    which is Julia's column-major fill of ``randn(Float32, reversed(shape)...)``.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(rng, np.random.Generator):
        return rng.standard_normal(shape, dtype=np.float32)
    if is_julia_rng(rng):
        return juliarng.randn(rng, *shape, dtype=np.float32)
    if is_torch_generator(rng):
        torch = sys.modules["torch"]
        return torch.randn(shape, generator=rng, dtype=torch.float32, device=rng.device)
    if _is_cupy_generator(rng) and hasattr(rng, "standard_normal"):
        return rng.standard_normal(shape, dtype="float32")
    if is_stream(rng):
        return rng.noise(shape)
    check_rng(rng)
    raise TypeError(f"rng: {type(rng).__name__} cannot draw noise")


def permutation(rng: Any, n: int) -> Any:
    """A uniformly random permutation of ``0..n-1`` (int64) from ``rng``, in ``rng``'s own library."""
    n = int(n)
    if isinstance(rng, np.random.Generator):
        return rng.permutation(n).astype(np.int64)
    if is_julia_rng(rng):
        return np.asarray(juliarng.shuffle(rng, range(n)), dtype=np.int64)
    if is_torch_generator(rng):
        torch = sys.modules["torch"]
        return torch.randperm(n, generator=rng, device=rng.device)
    if _is_cupy_generator(rng) and hasattr(rng, "permutation"):
        return rng.permutation(n).astype("int64")
    if is_stream(rng):
        return rng.permutation(n)
    check_rng(rng)
    raise TypeError(f"rng: {type(rng).__name__} cannot draw a permutation")


def seeded_permutation(seed: int, n: int) -> np.ndarray:
    """Julia's ``shuffle(MersenneTwister(seed), 1:n)``, 0-based (the reference's ``shuffle_latent(z; seed)``)."""
    return permutation(juliarng.MersenneTwister(int(seed), julia=juliarng.DEFAULT_JULIA), n)

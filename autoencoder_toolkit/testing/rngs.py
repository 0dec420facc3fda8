"""Every kind of ``rng`` the package accepts, as a recipe that makes the same generator again.

A generator is consumed as it draws, so a check that compares two runs "with the same
rng" needs two generators in the same state. An :class:`RNGSpec` is that recipe: a kind
and a seed, and :meth:`RNGSpec.make` gives a fresh generator each time.

Kinds (:data:`RNG_KINDS`):

``"torch"``
    ``torch.Generator().manual_seed(seed)`` (on the device given to :meth:`~RNGSpec.make`);
``"numpy"``
    ``numpy.random.default_rng(seed)``;
``"julia-mersenne"``, ``"julia-xoshiro"``, ``"julia-global"``
    Julia's ``MersenneTwister(seed)``, ``Xoshiro(seed)`` and the global stream after
    ``Random.seed!(seed)``, from :mod:`autoencoder_toolkit.random.juliarng`: the very
    numbers Julia draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..random import juliarng

__all__ = ["RNG_KINDS", "RNGSpec", "DEFAULT_RNGS"]

RNG_KINDS = ("torch", "numpy", "julia-mersenne", "julia-xoshiro", "julia-global")


@dataclass(frozen=True)
class RNGSpec:
    """A kind of generator and its seed; :meth:`make` builds a fresh generator in that state."""

    kind: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in RNG_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(RNG_KINDS)}, got {self.kind!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")

    def make(self, device: Any = None) -> Any:
        """A new generator of this kind, seeded with :attr:`seed`."""
        if self.kind == "torch":
            return torch.Generator(device=device or "cpu").manual_seed(int(self.seed))
        if self.kind == "numpy":
            return np.random.default_rng(int(self.seed))
        if self.kind == "julia-mersenne":
            return juliarng.MersenneTwister(int(self.seed))
        if self.kind == "julia-xoshiro":
            return juliarng.Xoshiro(int(self.seed))
        return juliarng.seed_(int(self.seed))

    def __str__(self) -> str:
        return f"{self.kind} generator seeded {self.seed}"


#: What :func:`check_determinism` tries by default: a generator of each library, seeded 0 (Julia's global
#: stream is a Xoshiro stream, so ``"julia-xoshiro"`` stands for it).
DEFAULT_RNGS = tuple(RNGSpec(kind, 0) for kind in ("torch", "numpy", "julia-mersenne", "julia-xoshiro"))

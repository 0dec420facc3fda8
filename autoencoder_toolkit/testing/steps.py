"""Training steps as the checks see them, the optimizers they use, and draws the checks script.

A **step** is any callable ``step(model, x, opt, *, rng=None)`` that takes one training
step of ``model`` on the batch ``x`` with the optimizers ``opt``, drawing every random
number (noise, permutations) from ``rng``. It may return anything (the losses, or
nothing). :func:`library_step` gives this package's own ``train_`` in that form; a
hand-written step of your own, with the same signature, is checked the same way.

An **optimizer factory** ``make_optimizers(model) -> opt`` builds the optimizers of a
model: for an InfoMax-VAE a pair with fields ``vae`` and ``mi`` (as
:func:`autoencoder_toolkit.setup` gives), for a VAE one optimizer. The checks build
fresh optimizers for fresh copies of the model, so that a check never changes the model
it is given. :func:`default_optimizers` is Adam with a learning rate of ``1e-2``.

:class:`ScriptedDraws` is an ``rng`` whose draws the checks decide: Gaussian noise from a
seeded NumPy generator, and permutations that are random, the identity or a rotation by
one. It records every draw, so that a check can replay exactly what a step drew
(:class:`autoencoder_toolkit.random.draws.PresetDraws`).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..models import checks as model_checks
from ..models import infomaxvaes, vaes
from ..models.infomaxvaes import InfoMaxVAE
from ..models.optim import setup
from ..models.vaes import VAE

__all__ = ["Step", "library_step", "default_optimizers", "fresh_copy", "ScriptedDraws", "model_parts",
           "quiet_small_batches", "PERMUTATIONS"]

#: ``step(model, x, opt, *, rng=None)``: one training step, in place.
Step = Callable[..., Any]

#: The permutations a :class:`ScriptedDraws` can give.
PERMUTATIONS = ("random", "identity", "roll")


def library_step(*, fused: bool = False, **train_kwargs: Any) -> Step:
    """This package's ``train_`` as a step: ``step(model, x, opt, rng=None)``.

    An InfoMax-VAE is trained by :func:`autoencoder_toolkit.infomaxvaes.train_` (with
    ``fused``), a VAE by :func:`autoencoder_toolkit.vaes.train_`; ``train_kwargs`` (e.g.
    ``infomaxloss_kwargs={"β": 0.5}``) are passed on. The step returns the losses.
    """

    def step(model: nn.Module, x: Any, opt: Any, *, rng: Any = None) -> Any:
        if isinstance(model, InfoMaxVAE):
            return infomaxvaes.train_(model, x, opt, rng=rng, fused=fused, loss_return=True, **train_kwargs)
        if fused:
            raise TypeError(f"model: fused=True trains an InfoMaxVAE, got {type(model).__name__}")
        return vaes.train_(model, x, opt, rng=rng, loss_return=True, **train_kwargs)

    step.__name__ = step.__qualname__ = "train_ (fused)" if fused else "train_"
    return step


def default_optimizers(model: nn.Module) -> Any:
    """``setup(torch.optim.Adam, model, lr=1e-2)``: a pair ``(vae, mi)`` for an InfoMax-VAE, else one optimizer."""
    return setup(torch.optim.Adam, model, lr=1e-2)


def fresh_copy(model: nn.Module, make_optimizers: Callable[[nn.Module], Any] | None) -> tuple[nn.Module, Any]:
    """A deep copy of ``model`` and optimizers built for the copy (``None`` when no factory is given)."""
    twin = copy.deepcopy(model)
    return twin, (None if make_optimizers is None else make_optimizers(twin))


def model_parts(model: Any, check: str) -> tuple[VAE, Any]:
    """``(vae, critic)`` of an InfoMax-VAE, ``(vae, None)`` of a VAE; ``TypeError`` otherwise."""
    if isinstance(model, InfoMaxVAE):
        return model.vae, model.mi
    if isinstance(model, VAE):
        return model, None
    raise TypeError(f"model: {check} expected an InfoMaxVAE or a VAE, got {type(model).__name__}")


@contextmanager
def quiet_small_batches() -> Iterator[None]:
    """Silence the warning about small batches for the mutual-information bound (the checks use them on purpose).

    The warning is shown once per process; it stays due for the caller's own code.
    """
    due = model_checks._warned_small_batch
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*mutual-information estimate is poor.*")
            yield
    finally:
        model_checks._warned_small_batch = due


class ScriptedDraws:
    """An ``rng`` whose draws the caller scripts, recording each one.

    Noise comes from ``numpy.random.default_rng(seed)`` as float32 standard normals, in
    the order asked for; a permutation of ``0..n-1`` is ``permutations``:

    * ``"random"``: a uniformly random one from the same generator;
    * ``"identity"``: ``0, 1, ..., n-1`` (the shuffled codes equal the codes);
    * ``"roll"``: ``1, 2, ..., n-1, 0`` (every code moves).

    Two streams with the same seed give the same noise whatever their permutations, as
    long as the same draws are asked for in the same order. :attr:`draws` lists what
    was given, in order (noise arrays and 0-based permutations), ready for ``PresetDraws``.
    """

    def __init__(self, seed: int = 0, permutations: str = "random") -> None:
        if permutations not in PERMUTATIONS:
            raise ValueError(f"permutations: expected one of {', '.join(PERMUTATIONS)}, got {permutations!r}")
        self._noise = np.random.default_rng(seed)
        self._perms = np.random.default_rng([seed, 1])
        self.permutations = permutations
        self.draws: list[np.ndarray] = []

    @property
    def n_noise(self) -> int:
        """How many noise arrays were drawn."""
        return sum(1 for d in self.draws if d.dtype.kind == "f")

    @property
    def n_permutations(self) -> int:
        """How many permutations were drawn."""
        return sum(1 for d in self.draws if d.dtype.kind == "i")

    def noise(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normal float32 noise of ``shape``."""
        value = self._noise.standard_normal(tuple(shape), dtype=np.float32)
        self.draws.append(value)
        return value.copy()

    def permutation(self, n: int) -> np.ndarray:
        """A permutation of ``0..n-1`` as scripted."""
        if self.permutations == "identity":
            value = np.arange(n, dtype=np.int64)
        elif self.permutations == "roll":
            value = np.roll(np.arange(n, dtype=np.int64), -1)
        else:
            value = self._perms.permutation(n).astype(np.int64)
        self.draws.append(value)
        return value.copy()

    def __repr__(self) -> str:
        return f"ScriptedDraws(permutations={self.permutations!r}, {len(self.draws)} draws)"

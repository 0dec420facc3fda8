"""Determinism: the same ``rng`` gives the same numbers.

Every random number of a loss or a training step (the reparameterisation noise, the
permutation of the shuffled codes) must come from the ``rng`` argument. A model that
draws anything else from torch's global generator, from NumPy's or from Python's, gives
runs that cannot be repeated, and results (and Julia parity) that cannot be checked.
:func:`check_determinism` runs the losses and the training step twice per kind of
generator, with torch's global generator in two different states, and compares
everything bit for bit.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..models.infomaxvaes import infomaxloss
from ..models.vaes import loss as vae_loss
from .rngs import DEFAULT_RNGS, RNGSpec
from .state import differences, name_list, snapshot
from .steps import Step, default_optimizers, fresh_copy, library_step, model_parts, quiet_small_batches

__all__ = ["check_determinism"]


def _flat(value: Any) -> list[Any]:
    """The numbers of a result (a float, a tensor, a tuple of them), in order."""
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _flat(item)]
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu()]
    return [value]


def _same(a: Any, b: Any) -> bool:
    fa, fb = _flat(a), _flat(b)
    if len(fa) != len(fb):
        return False
    for u, v in zip(fa, fb):
        if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
            if not (isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and u.shape == v.shape
                    and torch.equal(torch.nan_to_num(u), torch.nan_to_num(v))):
                return False
        elif not (u == v or (u != u and v != v)):
            return False
    return True


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return torch.device("cpu") if p is None else p.device


def _global_state(seed: int, device: torch.device) -> None:
    """Put torch's global generators in a state of their own, which a deterministic run ignores."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


_ADVICE = ("draws random numbers that rng does not control (torch's global generator, NumPy's or Python's); draw "
           "every noise array and permutation from rng=")


def check_determinism(model: nn.Module, x: Any, *, step: Step | None = None,
                      make_optimizers: Callable[[nn.Module], Any] | None = None,
                      rngs: Sequence[RNGSpec] = DEFAULT_RNGS, steps: int = 1,
                      loss: Callable | None = None) -> None:
    """The same ``rng`` gives the same loss values, step results, parameters and optimizer states.

    ``model`` is an InfoMax-VAE or a VAE. For each generator recipe in ``rngs`` (by
    default torch's, NumPy's and Julia's MersenneTwister and Xoshiro, seeded 0), and with
    torch's global generator seeded differently each time:

    * ``loss`` (default: ``infomaxloss(model.vae, model.mi, x, rng=...)`` for an
      InfoMax-VAE, ``vaes.loss(model, x, rng=...)`` for a VAE; any ``loss(model, x,
      rng=...)`` of yours) is evaluated twice with fresh generators of the recipe: the
      values must be equal bit for bit;
    * on two fresh copies of ``model`` with fresh optimizers (``make_optimizers``,
      default Adam ``lr=1e-2``), ``steps`` calls of ``step(model, x, opt, rng=rng)``
      (default: the package's ``train_``) with one generator per copy must return the
      same values and leave the same parameters, buffers and optimizer states, bit for
      bit.

    Torch's global generator is restored afterwards.
    """
    vae, critic = model_parts(model, "check_determinism")
    step = library_step() if step is None else step
    make_optimizers = default_optimizers if make_optimizers is None else make_optimizers
    if loss is None:
        def loss(m: nn.Module, data: Any, rng: Any) -> torch.Tensor:
            return infomaxloss(vae, critic, data, rng=rng) if critic is not None else vae_loss(vae, data, rng=rng)
    device = _device(model)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), quiet_small_batches():
        for spec in rngs:
            values = []
            for global_seed in (11, 12):
                _global_state(global_seed, device)
                with torch.no_grad():
                    values.append(loss(model, x, rng=spec.make(device if spec.kind == "torch" else None)))
            if not _same(values[0], values[1]):
                raise AssertionError(f"with the same rng ({spec}), the loss gave {float(values[0]):.9g} and then "
                                     f"{float(values[1]):.9g}: it {_ADVICE}")
            runs = []
            for global_seed in (11, 12):
                _global_state(global_seed, device)
                twin, opt = fresh_copy(model, make_optimizers)
                rng = spec.make(device if spec.kind == "torch" else None)
                results = [step(twin, x, opt, rng=rng) for _ in range(steps)]
                runs.append((results, twin, opt))
            for k, (a, b) in enumerate(zip(runs[0][0], runs[1][0])):
                if not _same(a, b):
                    raise AssertionError(f"with the same rng ({spec}), step {k + 1} of two runs returned {a!r} and "
                                         f"{b!r}: the step {_ADVICE}")
            changed = differences(runs[1][1], runs[1][2], snapshot(runs[0][1], runs[0][2]))
            if changed:
                raise AssertionError(f"with the same rng ({spec}), {steps} step(s) of two runs left different "
                                     f"{name_list(changed)}: the step {_ADVICE}")

"""The checked parameter update shared by every ``train_``: all or nothing.

A training step reads its losses and checks that every gradient is finite in one device
synchronisation (:func:`read_step`), then updates through an :class:`Update`: each
optimizer's step is taken after a snapshot of its parameters and state, and the result is
checked. When an update overflows (a parameter or a state tensor such as Adam's second
moment becomes NaN or infinite), every optimizer stepped in the same :class:`Update` is
rolled back and ``FloatingPointError`` is raised, so a failing step leaves the model and
its optimizers exactly as they were.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Sequence

import torch

__all__ = ["all_finite", "read_step", "raise_non_finite_gradient", "Update"]

_ADVICE = "Lower the learning rate, check the data scale, or resume from the last checkpoint"


def _max_abs(tensors: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """The largest ``|x|`` over all elements of ``tensors`` as a 0-d float64 tensor (NaN if any is NaN).

    Exact: no sum is formed, so large finite values never overflow into a false alarm.
    ``None`` when there is no element to check.
    """
    ts = [t.detach() for t in tensors if t.is_floating_point() and t.numel() > 0]
    if not ts:
        return None
    norms = torch._foreach_norm(ts, float("inf"))
    return torch.stack([n.to(torch.float64) for n in norms]).amax()


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every floating tensor in ``tensors`` is finite (one sync)."""
    m = _max_abs(tensors)
    return True if m is None else math.isfinite(float(m))


def read_step(values: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> tuple[list[float], bool]:
    """The loss ``values`` as floats and whether every gradient of ``params`` is finite.

    One device synchronisation for all of it (on a GPU each read of a value waits for the
    device).
    """
    m = _max_abs(p.grad for p in params if p.grad is not None)
    device = values[0].device
    m = torch.zeros((), dtype=torch.float64, device=device) if m is None else m.to(device)
    out = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values] + [m]).tolist()
    return out[:-1], math.isfinite(out[-1])


def raise_non_finite_gradient(name: str) -> None:
    """The error for a finite loss whose gradient is NaN or infinite."""
    raise FloatingPointError(
        f"the gradient of {name} is not finite; no parameter or optimizer state was changed. {_ADVICE}"
    )


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


class _Snapshot:
    """A copy of one optimizer's parameters and state, to restore after a failed update."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.saved_params = [p.detach().clone() for p in self.params]
        self.saved_state = {
            p: {k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in s.items()}
            for p, s in optimizer.state.items()
        }

    def restore(self) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, self.saved_params):
                p.copy_(saved)
        state = self.optimizer.state
        for p in list(state.keys()):
            if p not in self.saved_state:
                del state[p]
        for p, s in self.saved_state.items():
            state[p] = s


class Update:
    """Optimizer steps that take effect together or not at all.

    ``update.step(opt, name)`` snapshots ``opt``'s parameters and state, steps it and
    checks that its parameters and state are still finite; if not, it rolls back every
    optimizer stepped so far in this update and raises ``FloatingPointError`` naming
    ``name``. :meth:`rollback` undoes all steps taken (a later failure of the same
    training step, e.g. the critic's loss after the VAE's update).
    """

    def __init__(self) -> None:
        self._snapshots: list[_Snapshot] = []

    def step(self, optimizer: torch.optim.Optimizer, name: str) -> None:
        """Step ``optimizer`` after a snapshot; roll back everything and raise if the result is not finite."""
        snapshot = _Snapshot(optimizer)
        self._snapshots.append(snapshot)
        optimizer.step()
        if not all_finite([*snapshot.params, *_state_tensors(optimizer)]):
            optimizer.zero_grad(set_to_none=True)
            self.rollback()
            raise FloatingPointError(
                f"the update of {name} is not finite (the optimizer's step overflowed); no parameter or "
                f"optimizer state was changed. {_ADVICE}"
            )

    def rollback(self) -> None:
        """Restore every optimizer stepped in this update, most recent first."""
        while self._snapshots:
            self._snapshots.pop().restore()

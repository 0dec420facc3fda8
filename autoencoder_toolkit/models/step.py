"""The one checked optimizer step, shared by every ``train_``: all or nothing.

A training step is a sequence of :class:`Stage` s. Each stage computes a loss (or a
surrogate whose gradient is the losses'), differentiates it with respect to its
parameters, reads the loss values and checks that they and every gradient are finite in
one device synchronisation (:func:`read_step`), then steps its optimizers through an
:class:`Update`, which snapshots each optimizer's parameters and state first and checks
the result: an update that overflows (a parameter or a state tensor such as Adam's
second moment becomes NaN or infinite) is undone.

:class:`Update`'s snapshot and check are skipped where they cannot matter: in the last
stage of a step (nothing can fail after it) when every optimizer is an Adam or AdamW whose
update is *provably* finite, from the gradients' norm, its hyperparameters and bounds on
the magnitudes it holds (:class:`_UpdateBound`: set exactly by a checked step, carried
forward step by step, void when anything else writes to the optimizer's tensors). Training
with Adam thus pays for a snapshot only on its first step, after a ``load_state_dict``, or
when a bound grows large; the guarantee below is the same.

:func:`run_step` runs the stages in order. If anything fails, a non-finite loss,
gradient or update, or an exception raised by a user's loss function after an earlier
stage updated its optimizer, every update of the step is rolled back and the error
propagates: a failing step leaves the model and its optimizers exactly as they were.

The single-optimizer steps (VAE, MMD-VAE) are one stage; the InfoMax-VAE's faithful step
is two (the VAE's, then the critic's on the updated VAE); its fused step is one stage
with two optimizers. Under data-parallel training (a :class:`ParallelModel`) the losses
run inside its DistributedDataParallel modules and the finiteness check is collective.
"""

from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .checks import check_finite

__all__ = ["all_finite", "read_step", "Update", "Stage", "run_step", "ParallelModel", "unwrap", "copy_tensors_",
           "optimizer_params"]

_ADVICE = "Lower the learning rate, check the data scale, or resume from the last checkpoint"


class ParallelModel:
    """A model wrapped for data-parallel training (see :mod:`autoencoder_toolkit.training.distributed`).

    ``module`` is the wrapped model; ``call(name, fn, *args, **kwargs)`` runs a loss
    function inside the DistributedDataParallel module named ``name`` (so that its
    backward pass averages the gradients across processes); ``all_finite(*values)``
    tells whether the values are finite on every process.
    """

    module: nn.Module

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def all_finite(self, *values: torch.Tensor) -> bool:  # pragma: no cover
        raise NotImplementedError


def unwrap(model: Any) -> tuple[Any, ParallelModel | None]:
    """``(model, None)``, or ``(the wrapped model, the wrapper)`` for a :class:`ParallelModel`."""
    if isinstance(model, ParallelModel):
        return model.module, model
    return model, None


def _float_tensors(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [t for t in tensors if t.is_floating_point() and t.numel() > 0]


@torch.no_grad()
def _norms(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The Euclidean norm of all of ``ts`` together, as a 0-d float64 tensor (one multi-tensor
    reduction per device and dtype). Finite exactly when every element is finite, except that
    very large finite values (beyond about 1e19 in float32) can overflow it;
    :func:`_exactly_finite` settles those."""
    norms = torch._foreach_norm(list(ts), 2)
    if len({n.dtype for n in norms}) > 1 or len({n.device for n in norms}) > 1:
        norms = [n.to(norms[0].device, torch.float64) for n in norms]
    return torch.stack(norms).to(torch.float64).square().sum().sqrt()


@torch.no_grad()
def _exactly_finite(ts: Sequence[torch.Tensor]) -> bool:
    """Whether every element is finite, whatever its size (the slow path, after a fast one failed)."""
    return all(bool(torch.isfinite(t).all()) for t in ts)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every floating tensor in ``tensors`` is finite (one sync)."""
    ts = _float_tensors(tensors)
    return not ts or math.isfinite(float(_norms(ts))) or _exactly_finite(ts)


def read_step(values: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> tuple[list[float], bool, float]:
    """The loss ``values`` as floats, whether every gradient of ``params`` is finite, and the
    gradients' Euclidean norm (``inf`` when one is not finite).

    One device synchronisation for all of it (on a GPU each read of a value waits for the
    device); one fused reduction over all gradients.
    """
    grads = _float_tensors(p.grad for p in params if p.grad is not None)
    device = values[0].device
    norm = _norms(grads).to(device) if grads else torch.zeros((), dtype=torch.float64, device=device)
    out = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values] + [norm]).tolist()
    if math.isfinite(out[-1]):
        return out[:-1], True, out[-1]
    return out[:-1], _exactly_finite(grads), math.inf


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter ``optimizer`` holds, in its parameter groups' order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


@torch.no_grad()
def copy_tensors_(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
    """``targets[i].copy_(sources[i])`` for every ``i``: one fused copy per device and dtype."""
    for group in _groups(targets):
        torch._foreach_copy_([targets[i] for i in group], [sources[i].detach() for i in group])


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


class _Snapshot:
    """A copy of one optimizer's parameters and state, to restore after a failed update.

    The copies live in buffers kept with the optimizer between steps (:data:`_BUFFERS`), so a
    snapshot is one fused copy per device and dtype, with no allocation once the state exists.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = optimizer_params(optimizer)
        state = optimizer.state
        self.keys = [(p, k) for p in self.params if p in state for k in state[p]]
        self.scalars = {(p, k): copy.deepcopy(state[p][k]) for p, k in self.keys
                        if not isinstance(state[p][k], torch.Tensor)}
        self.tensor_keys = [(p, k) for p, k in self.keys if isinstance(state[p][k], torch.Tensor)]
        self.tensors = [state[p][k] for p, k in self.tensor_keys]
        live = self.params + self.tensors
        cached = _BUFFERS.get(optimizer)
        if cached is None or len(cached) != len(live) or any(
                b.shape != t.shape or b.dtype != t.dtype or b.device != t.device for b, t in zip(cached, live)):
            cached = [torch.empty_like(t) for t in live]
            _BUFFERS[optimizer] = cached
        self.live, self.saved = live, cached
        copy_tensors_(cached, live)

    def restore(self) -> None:
        copy_tensors_(self.live, self.saved)
        state = self.optimizer.state
        kept = {p for p, _ in self.keys}
        for p in list(state.keys()):
            if p not in kept and any(p is q for q in self.params):
                del state[p]  # state the failed step created
        for (p, k), value in self.scalars.items():
            state[p][k] = value
        for (p, k), t in zip(self.tensor_keys, self.tensors):
            state[p][k] = t  # the restored tensor, should the step have replaced it

    def checked(self) -> list[torch.Tensor]:
        """The parameters and state tensors after the step (those that may have overflowed)."""
        return self.params + _state_tensors(self.optimizer)


#: Snapshot buffers per optimizer, reused from step to step.
_BUFFERS: "weakref.WeakKeyDictionary[torch.optim.Optimizer, list[torch.Tensor]]" = weakref.WeakKeyDictionary()


def _groups(tensors: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by device and dtype (a fused copy takes one group)."""
    out: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        out.setdefault((t.device, t.dtype), []).append(i)
    return list(out.values())


#: Optimizers whose update is bounded by their hyperparameters and the gradients (:class:`_UpdateBound`).
_BOUNDED = (torch.optim.Adam, torch.optim.AdamW)
#: Bounds beyond this send a step through the checked path (float32's largest value is 3.4e38).
_LIMIT = 1e30
#: Hyperparameter ranges within which the bound is used: ``0 < lr <= 1``, ``eps >= 1e-12``, ``0 <= weight_decay <= 1``.
_MIN_EPS = 1e-12


def _moment_tensors(optimizer: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Adam's first moments and its second moments (``max_exp_avg_sq`` too, with AMSGrad)."""
    first, second = [], []
    for state in optimizer.state.values():
        for key, value in state.items():
            if key == "exp_avg":
                first.append(value)
            elif key in ("exp_avg_sq", "max_exp_avg_sq"):
                second.append(value)
    return first, second


def _largest(ts: Sequence[torch.Tensor]) -> float:
    """The largest absolute value in ``ts`` (0 for none), ``inf`` if one is not finite."""
    ts = [t for t in ts if t.numel()]
    if not ts:
        return 0.0
    with torch.no_grad():
        norms = [n.to(torch.float64).cpu() for n in torch._foreach_norm(ts, math.inf)]
    value = float(torch.stack(norms).max())
    return value if math.isfinite(value) else math.inf


def _signature(optimizer: torch.optim.Optimizer) -> tuple:
    """Which tensors the optimizer holds and their in-place versions: it changes when anything but
    the optimizer's own step writes to its parameters or state (a ``load_state_dict``, an edit)."""
    return tuple((id(t), t._version) for t in optimizer_params(optimizer) + _state_tensors(optimizer))


@dataclass
class _UpdateBound:
    r"""Upper bounds on the magnitudes an Adam or AdamW optimizer holds: its parameters
    (``params``), first moments (``first``) and second moments (``second``).

    With the gradients' norm ``G`` (a bound on every gradient element), learning rate ``lr``,
    ``β1``, ``ε`` and weight decay ``λ`` of a parameter group, one step keeps

    * the gradient Adam uses, ``g + λp`` (or ``g`` for decoupled decay), below
      ``G' = G + λ·params``;
    * the first moment below ``max(first, G')`` and the second below ``max(second, G'²)``
      (each is an average of past values);
    * the parameters below ``params·(1 + lr·λ) + lr·m/((1 − β1)·ε)``, since the bias-corrected
      step ``lr·m̂/(\sqrt{v̂} + ε)`` is at most ``lr·|m|/((1 − β1^t)·ε)``.

    While every bound stays below :data:`_LIMIT`, far below float32's largest value, the
    update is finite without being checked, so it needs no snapshot to undo it. The bounds
    are set exactly by a checked step and carried forward by :meth:`after`; a write to the
    optimizer's tensors by anything else (``signature``) voids them.
    """

    params: float
    first: float
    second: float
    signature: tuple = ()

    @classmethod
    def measured(cls, optimizer: torch.optim.Optimizer) -> _UpdateBound | None:
        """The exact bounds of ``optimizer`` now (``None`` unless an Adam or AdamW within range)."""
        if not isinstance(optimizer, _BOUNDED):
            return None
        first, second = _moment_tensors(optimizer)
        bound = cls(_largest(optimizer_params(optimizer)), _largest(first),
                    _largest(second), _signature(optimizer))
        return bound if max(bound.params, bound.first, bound.second) <= _LIMIT else None

    def after(self, optimizer: torch.optim.Optimizer, grad_norm: float) -> _UpdateBound | None:
        """The bounds after one more step with gradients of norm ``grad_norm``, or ``None`` when
        they would pass :data:`_LIMIT` or a hyperparameter is out of the supported range."""
        params, first, second = self.params, self.first, self.second
        for group in optimizer.param_groups:
            lr, betas, eps, decay = group.get("lr"), group.get("betas"), group.get("eps"), group.get("weight_decay")
            numbers = (lr, eps, decay, *(betas or ()))
            if (len(numbers) != 5 or any(type(v) not in (float, int) for v in numbers) or group.get("differentiable")
                    or not (0 < lr <= 1 and eps >= _MIN_EPS and 0 <= decay <= 1 and 0 <= betas[0] < 1)):
                return None
            decoupled = group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
            grad = grad_norm + (0.0 if decoupled else decay * self.params)
            m = max(self.first, grad)
            first, second = max(first, m), max(second, grad * grad)
            params = max(params, self.params * (1 + lr * decay) + lr * m / ((1 - betas[0]) * eps))
        if not max(params, first, second) <= _LIMIT:
            return None
        return _UpdateBound(params, first, second)


#: The bounds of each Adam or AdamW stepped through :func:`run_step`.
_BOUNDS: "weakref.WeakKeyDictionary[torch.optim.Optimizer, _UpdateBound]" = weakref.WeakKeyDictionary()


def _bounded_updates(optimizers: Sequence[torch.optim.Optimizer], grad_norm: float) -> list[_UpdateBound] | None:
    """The bounds after this step of every optimizer, or ``None`` unless all of them are known
    to stay finite (then the step must be checked and be undoable)."""
    if not math.isfinite(grad_norm):
        return None
    out = []
    for opt in optimizers:
        bound = _BOUNDS.get(opt)
        if bound is None or bound.signature != _signature(opt):
            return None
        after = bound.after(opt, grad_norm)
        if after is None:
            return None
        out.append(after)
    return out


class Update:
    """Optimizer steps that take effect together or not at all.

    ``update.step(opt, name)`` snapshots ``opt``'s parameters and state, steps it and
    checks that its parameters and state are still finite; if not, it rolls back every
    optimizer stepped so far in this update and raises ``FloatingPointError`` naming
    ``name``. :meth:`rollback` undoes all steps taken.
    """

    def __init__(self) -> None:
        self._snapshots: list[_Snapshot] = []
        self._stepped: list[torch.optim.Optimizer] = []

    def step(self, optimizer: torch.optim.Optimizer, name: str) -> None:
        """Step ``optimizer`` after a snapshot; roll back everything and raise if the result is not finite."""
        snapshot = _Snapshot(optimizer)
        self._snapshots.append(snapshot)
        optimizer.step()
        if not all_finite(snapshot.checked()):
            optimizer.zero_grad(set_to_none=True)
            self.rollback()
            raise FloatingPointError(
                f"the update of {name} is not finite (the optimizer's step overflowed); no parameter or "
                f"optimizer state was changed. {_ADVICE}"
            )
        self._stepped.append(optimizer)

    def commit(self) -> None:
        """The step is complete: record the exact bounds of the optimizers stepped (see :class:`_UpdateBound`)."""
        for optimizer in self._stepped:
            bound = _UpdateBound.measured(optimizer)
            if bound is None:
                _BOUNDS.pop(optimizer, None)
            else:
                _BOUNDS[optimizer] = bound
        self._stepped.clear()

    def rollback(self) -> None:
        """Restore every optimizer stepped in this update, most recent first."""
        while self._snapshots:
            self._snapshots.pop().restore()
        for optimizer in self._stepped:
            _BOUNDS.pop(optimizer, None)
        self._stepped.clear()


@dataclass
class Stage:
    """One differentiate-check-update part of a training step.

    Attributes
    ----------
    compute:
        ``() -> (to_differentiate, values)``: the tensor to differentiate and the loss
        values to check and report (often the same single loss).
    optimizers:
        The optimizers stepped with the resulting gradients, named for messages.
    names:
        The names of ``values`` in messages (``"infomaxloss"``, ...).
    data:
        ``(tensor, name)`` pairs to blame in a clearer ``ValueError`` when a loss is not
        finite because the data are not.
    parallel:
        The :class:`ParallelModel` the losses ran in, for a collective finiteness check.
    """

    compute: Callable[[], tuple[torch.Tensor, Sequence[torch.Tensor]]]
    optimizers: Sequence[tuple[torch.optim.Optimizer, str]]
    names: Sequence[str]
    data: Sequence[tuple[torch.Tensor, str]] = ()
    parallel: ParallelModel | None = None
    params: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.params:
            self.params = [p for opt, _ in self.optimizers for p in optimizer_params(opt) if p.requires_grad]


def _not_finite(stage: Stage, values: Sequence[torch.Tensor]) -> FloatingPointError:
    """The error for non-finite losses: blaming the data when they are the cause.

    When this process's losses are all finite, another process's were not.
    """
    for tensor, name in stage.data:
        check_finite(tensor, name)  # a clearer ValueError
    for value, name in zip(values, stage.names):
        if not bool(torch.isfinite(value.detach()).all()):
            return FloatingPointError(f"{name} is {float(value.detach())} (not finite); no parameter or optimizer "
                                      f"state was changed. {_ADVICE}")
    what = "a loss" if len(stage.names) > 1 else stage.names[0]
    return FloatingPointError(f"{what} is not finite on another process; no parameter or optimizer state was "
                              f"changed. {_ADVICE}")


def _zero(stage: Stage) -> None:
    for p in stage.params:
        p.grad = None


def run_step(stages: Sequence[Stage], model: nn.Module | None = None) -> list[float]:
    """Run the stages of one training step; returns every stage's loss values, in order.

    Raises ``FloatingPointError`` (a non-finite loss, gradient or update) or whatever a
    loss function raised, in every case after rolling back all updates of the step, and
    ``model``'s buffers (a normalisation's running statistics, which a forward pass in
    training mode updates) to what they were.
    """
    update = Update()
    results: list[float] = []
    buffers = [b for b in model.buffers()] if model is not None else []
    saved = [b.detach().clone() for b in buffers]
    try:
        for stage in stages:
            target, values = stage.compute()
            if stage.parallel is not None and not stage.parallel.all_finite(*values):
                raise _not_finite(stage, values)
            _zero(stage)
            target.backward(inputs=stage.params)
            numbers, grads_ok, grad_norm = read_step(values, stage.params)  # the stage's one device sync
            if not all(math.isfinite(v) for v in numbers):
                _zero(stage)
                raise _not_finite(stage, values)
            if not grads_ok:
                _zero(stage)
                raise FloatingPointError(f"the gradient of {' or '.join(stage.names)} is not finite; no parameter "
                                         f"or optimizer state was changed. {_ADVICE}")
            bounds = (_bounded_updates([opt for opt, _ in stage.optimizers], grad_norm)
                      if stage is stages[-1] else None)
            if bounds is None:
                for opt, name in stage.optimizers:
                    update.step(opt, name)
            else:  # the last stage, and every update provably finite: nothing left to undo
                for (opt, _), bound in zip(stage.optimizers, bounds):
                    opt.step()
                    bound.signature = _signature(opt)
                    _BOUNDS[opt] = bound
            _zero(stage)
            results.extend(numbers)
        update.commit()
    except BaseException:
        update.rollback()
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)
        for stage in stages:
            _zero(stage)
        raise
    return results

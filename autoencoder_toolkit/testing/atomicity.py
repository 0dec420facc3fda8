"""Atomic training steps: a step that fails changes nothing.

A training step of an InfoMax-VAE updates two networks in turn; a VAE step updates one.
When anything goes wrong part-way (a loss that is NaN or infinite, a user's function
that raises), a correct step leaves every parameter and every optimizer state exactly
as it was, so the caller can lower the learning rate, skip the batch or resume; a
broken one keeps the VAE's update of a step whose critic update failed, or writes NaN
into a parameter or into Adam's moments, after which the model never recovers.

:func:`check_step_atomic` injects such failures into a real step, at every point the
step runs the model, and looks at what the step left behind.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .state import differences, name_list, non_finite, optimizers_of, snapshot
from .steps import ScriptedDraws, Step, default_optimizers, fresh_copy, library_step, model_parts, \
    quiet_small_batches

__all__ = ["InjectedFault", "FAULTS", "check_step_atomic"]

#: What :func:`check_step_atomic` injects: a NaN output, or an exception.
FAULTS = ("nan", "raise")


class InjectedFault(RuntimeError):
    """The exception :func:`check_step_atomic` raises inside a step, where a user's function could."""


def _components(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs every loss depends on, by the names messages use."""
    vae, critic = model_parts(model, "check_step_atomic")
    parts = [("the encoder", vae.encoder), ("the decoder", vae.decoder)]
    if critic is not None:
        latent = getattr(critic, "latent", None)
        parts.append(("the critic's latent layer", latent) if isinstance(latent, nn.Module) else ("the critic", critic))
    return parts


def _poisoned(out: Any) -> Any:
    """``out`` with every floating tensor turned to NaN (named tuples keep their type)."""
    if isinstance(out, torch.Tensor):
        return out + float("nan") if out.is_floating_point() else out
    if isinstance(out, tuple):
        items = [_poisoned(t) for t in out]
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


class _Injector:
    """Forward hooks on the model's components: count their calls, and fault the ``target``-th."""

    def __init__(self, model: nn.Module, opt: Any, target: int | None = None, fault: str = "nan") -> None:
        self.events: list[str] = []
        self.target, self.fault = target, fault
        self.stepped: list[str] = []  # optimizers stepped so far
        self.stage_starts: list[int] = []  # the index of the next call after each optimizer step
        self.stepped_at_fault: list[str] | None = None
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in _components(model)]
        for oname, o in optimizers_of(opt).items():
            o.step = self._counting(oname, o.step)

    def _counting(self, name: str, original: Callable) -> Callable:
        def step(*args: Any, **kwargs: Any) -> Any:
            self.stepped.append(name)
            self.stage_starts.append(len(self.events))
            return original(*args, **kwargs)
        return step

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            self.events.append(name)
            if self.target is not None and len(self.events) - 1 == self.target:
                self.stepped_at_fault = list(dict.fromkeys(self.stepped))
                if self.fault == "raise":
                    raise InjectedFault(f"fault injected at the {_ordinal(self.calls_of(name))} call of {name}")
                return _poisoned(output)
            return None
        return hook

    def calls_of(self, name: str) -> int:
        return self.events.count(name)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _targets(tracer: _Injector, fault: str) -> list[int]:
    """Where to inject ``fault``: NaN at every call; an exception at the first call of each stage of the step.

    A stage starts at the first call and after each optimizer step (an exception anywhere
    inside a stage unwinds the same updates as one at its start).
    """
    if fault == "nan":
        return list(range(len(tracer.events)))
    return sorted({0, *(i for i in tracer.stage_starts if i < len(tracer.events))})


def _run(step: Step, model: nn.Module, x: Any, opt: Any, seed: int) -> BaseException | None:
    try:
        step(model, x, opt, rng=ScriptedDraws(seed))
    except Exception as err:  # noqa: BLE001 - any failure of the step is what is being checked
        return err
    return None


def check_step_atomic(model: nn.Module, x: Any, *, step: Step | None = None,
                      make_optimizers: Callable[[nn.Module], Any] | None = None, seed: int = 0,
                      warmup_steps: int = 1, faults: Sequence[str] = FAULTS) -> None:
    """A step that fails leaves every parameter and optimizer state as it was.

    ``model`` is an InfoMax-VAE or a VAE; ``step(model, x, opt, *, rng)`` the step under
    test (default: the package's ``train_``), ``make_optimizers(model)`` its optimizers
    (default: Adam, ``lr=1e-2``). On a fresh copy of ``model``, ``warmup_steps`` steps
    are taken first (so that the optimizers have state to lose). Then, for every call a
    clean step makes to the encoder, the decoder and the critic's latent layer, one step
    is run on a copy with that call faulted:

    * ``"nan"`` (at every call): the output becomes NaN. If the step raises, nothing may
      have changed; if it returns, no parameter, buffer or optimizer state may hold a
      NaN or an infinity (a NaN in an output the losses do not use is harmless).
    * ``"raise"`` (at the first call, and at the first call after each optimizer step):
      the call raises :class:`InjectedFault`, as a user's loss or regularization
      function may. The step must raise, and must have changed nothing.

    Raises ``AssertionError`` saying which call was faulted, whether an optimizer had
    already stepped, and what the step changed.
    """
    for fault in faults:
        if fault not in FAULTS:
            raise ValueError(f"faults: expected a subset of {FAULTS}, got {fault!r}")
    step = library_step() if step is None else step
    make_optimizers = default_optimizers if make_optimizers is None else make_optimizers
    base, opt = fresh_copy(model, make_optimizers)
    with quiet_small_batches():
        for k in range(warmup_steps):
            err = _run(step, base, x, opt, seed + 1 + k)
            if err is not None:
                raise AssertionError(f"the step failed on the batch before any fault was injected: "
                                     f"{type(err).__name__}: {err}") from err
        probe, probe_opt = copy.deepcopy((base, opt))
        tracer = _Injector(probe, probe_opt)
        err = _run(step, probe, x, probe_opt, seed)
        tracer.remove()
        if err is not None:
            raise AssertionError(f"the step failed on the batch: {type(err).__name__}: {err}") from err
        if not tracer.events:
            raise AssertionError("the step never ran the model's encoder, decoder or critic")
        for fault in faults:
            for target in _targets(tracer, fault):
                twin, twin_opt = copy.deepcopy((base, opt))
                before = snapshot(twin, twin_opt)
                injector = _Injector(twin, twin_opt, target, fault)
                err = _run(step, twin, x, twin_opt, seed)
                injector.remove()
                component = tracer.events[target]
                nth = _ordinal(tracer.events[:target + 1].count(component))
                done = injector.stepped_at_fault or []
                when = (f"after {' and '.join(done)} had stepped" if done else "before any optimizer stepped")
                what = (f"{component} raised at its {nth} call in the step" if fault == "raise"
                        else f"{component}'s output was NaN at its {nth} call in the step")
                if err is None and fault == "raise":
                    raise AssertionError(f"the step swallowed an error: when {what} ({when}), it returned normally; "
                                         "a step must let the error through, after undoing its updates")
                if err is None:
                    bad = non_finite(twin, twin_opt)
                    if bad:
                        raise AssertionError(
                            f"the step is not atomic: when {what} ({when}), it returned normally and left NaN or "
                            f"infinite values in {name_list(bad)}; a step whose loss is not finite must raise and "
                            "change nothing")
                    continue
                changed = differences(twin, twin_opt, before)
                if changed:
                    raise AssertionError(
                        f"the step is not atomic: when {what} ({when}), it raised {type(err).__name__} but changed "
                        f"{len(changed)} thing(s): {name_list(changed)}; a step that fails must leave every "
                        "parameter and optimizer state as it was")

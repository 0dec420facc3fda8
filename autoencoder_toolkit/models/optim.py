"""Optimizers: ``setup`` mirrors ``Flux.Train.setup(rule, model)``, ``adjust_`` mirrors ``Flux.Optimisers.adjust!``.

A schedule loop translates line by line: Julia's
``Flux.Optimisers.adjust!(opt, step_scheduler(epoch, epochs, rates))`` is
``adjust_(opt, step_scheduler(epoch, epochs, rates))`` (or ``opt.adjust_(...)`` on an
:class:`~autoencoder_toolkit.outputs.OptimizerPair`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from ..distributions import julia_field_name
from ..outputs import JULIA_HYPERPARAMETERS, OptimizerPair, adjust_
from .checks import check_keywords
from .infomaxvaes import InfoMaxVAE
from .step import unwrap

__all__ = ["setup", "adjust_"]


def setup(optimizer_class: Callable[..., torch.optim.Optimizer], model: nn.Module,
          **optimizer_kwargs: Any) -> torch.optim.Optimizer | OptimizerPair:
    """Optimizers for a model: ``setup(torch.optim.Adam, model, lr=1e-3)``.

    For an :class:`~autoencoder_toolkit.infomaxvaes.InfoMaxVAE` the result is the named
    tuple ``OptimizerPair(vae=..., mi=...)`` of two independent optimizers with the same
    settings, one over the VAE's parameters and one over the critic's (as Flux's
    ``setup`` gives one state tree per field). For any other module it is one optimizer
    over all its parameters.

    ``optimizer_class`` is any ``torch.optim.Optimizer`` subclass (or a factory taking
    the parameters first). Note that ``torch.optim.Adam()``'s defaults (``lr=1e-3``,
    ``betas=(0.9, 0.999)``, ``eps=1e-8``) equal Flux's ``Adam()``. Optimisers.jl's names of
    the hyperparameters are accepted too (``η``/``eta`` for ``lr``, ``β`` for ``betas``,
    ``ϵ`` for ``eps``, ``λ`` for ``weight_decay``), and a keyword the optimizer does not take is refused with the
    list of those it takes.
    """
    if isinstance(optimizer_class, torch.optim.Optimizer):
        raise TypeError(
            "optimizer_class: expected an optimizer class such as torch.optim.Adam (the parameters are "
            "supplied by setup), got an optimizer instance"
        )
    if not callable(optimizer_class):
        raise TypeError(f"optimizer_class: expected an optimizer class, got {type(optimizer_class).__name__}")
    model, _ = unwrap(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    optimizer_kwargs = _optimizer_keywords(optimizer_class, optimizer_kwargs)
    if isinstance(model, InfoMaxVAE):
        return OptimizerPair(
            optimizer_class(model.vae.parameters(), **optimizer_kwargs),
            optimizer_class(model.mi.parameters(), **optimizer_kwargs),
        )
    return optimizer_class(model.parameters(), **optimizer_kwargs)


def _optimizer_keywords(optimizer_class: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with Julia's hyperparameter names translated, checked against the optimizer's signature."""
    try:
        params = list(inspect.signature(optimizer_class).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the optimizer checks its own keywords
        return kwargs
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return kwargs
    accepted = [p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        name = key if key in accepted else JULIA_HYPERPARAMETERS.get(julia_field_name(key), key)
        if name in out:
            raise TypeError(f"setup: {key!r} and another keyword both set {name!r}; pass only one")
        out[name] = value
    check_keywords(getattr(optimizer_class, "__name__", "optimizer"), out, accepted, "setup")
    return out

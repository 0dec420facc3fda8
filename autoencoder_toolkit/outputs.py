"""Named tuples returned by models: forward passes, optimizer pairs, encoded data.

Field names follow the Julia package: ``μ`` (U+03BC GREEK SMALL LETTER MU; the micro sign
``µ`` reaches the same field as an attribute, through ``getattr`` and in ``_asdict()``),
``σ``, ``z``, ``encoder``, ``decoder``, ``vae``, ``mi``. The distributions that encoders
and decoders return (``GaussianLogParams``, ``Probabilities``, ...) live in
:mod:`autoencoder_toolkit.distributions` and are re-exported here.

:func:`adjust_` changes hyperparameters of optimizers in place, as Julia's
``Flux.Optimisers.adjust!(opt_state, η)`` does: on one ``torch.optim.Optimizer`` or on an
:class:`OptimizerPair` (then on both, or on one field of it).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from .distributions import (Bernoulli, Categorical, GaussianLogParams, GaussianMean, GaussianParams, Probabilities,
                            julia_field_name, julia_fields)

__all__ = [
    "MutualInfoEstimate",
    "GaussianLogParams",
    "GaussianParams",
    "GaussianMean",
    "Probabilities",
    "Bernoulli",
    "Categorical",
    "VAEOutput",
    "InfoMaxVAEOutput",
    "AEOutput",
    "AEReconstruction",
    "OptimizerPair",
    "EncodedData",
    "adjust_",
]


@julia_fields
class VAEOutput(NamedTuple):
    """A VAE forward pass with ``latent=True``: encoder output, latent sample, decoder output."""

    encoder: Any
    z: Any
    decoder: Any


@julia_fields
class InfoMaxVAEOutput(NamedTuple):
    """An InfoMaxVAE forward pass with ``latent=True``: the VAE outputs and the MI estimate."""

    vae: VAEOutput
    mi: Any


@julia_fields
class AEOutput(NamedTuple):
    """An autoencoder's forward pass with ``latent=True``: the codes ``(B, L)`` and the reconstruction."""

    encoder: Any
    decoder: Any


@julia_fields
class AEReconstruction(NamedTuple):
    """An autoencoder's forward pass with ``latent=False``: the reconstruction only (Julia's ``(decoder=x̂,)``)."""

    decoder: Any


#: Julia's (Optimisers.jl) names of hyperparameters and torch's names for them.
JULIA_HYPERPARAMETERS = {"η": "lr", "eta": "lr", "β": "betas", "beta": "betas", "ϵ": "eps", "epsilon": "eps",
                         "ε": "eps", "λ": "weight_decay", "lambda_": "weight_decay"}


def _param_groups(opt: Any, name: str) -> list:
    groups = getattr(opt, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(f"{name}: expected a torch optimizer or an OptimizerPair (e.g. from "
                        f"autoencoder_toolkit.setup), got {type(opt).__name__}")
    return groups


def _settings(opt: Any, lr: Any, hyperparameters: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """The parameter groups of ``opt`` and the checked entries to set in them (nothing changed yet)."""
    groups = _param_groups(opt, "opt")
    settings: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        torch_key = JULIA_HYPERPARAMETERS.get(julia_field_name(key), key)
        if torch_key in settings:
            raise TypeError(f"adjust_: {key!r} and another keyword both set {torch_key!r}; pass only one")
        settings[torch_key] = value
    if lr is not None:
        if "lr" in settings:
            raise TypeError("adjust_: the learning rate was given twice (positionally and as a keyword)")
        settings["lr"] = lr
    if not settings:
        raise TypeError("adjust_: expected a learning rate or hyperparameter keywords, got neither")
    known = sorted({k for g in groups for k in g if k != "params"})
    for key, value in settings.items():
        if any(key not in g for g in groups):
            raise TypeError(f"adjust_() has no keyword {key!r} for a {type(opt).__name__}; accepted: "
                            f"{', '.join(known)} (and Julia's names {', '.join(sorted(JULIA_HYPERPARAMETERS))})")
        if key == "lr" and (isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0):
            raise ValueError(f"lr: expected a learning rate >= 0, got {value!r}")
    return groups, settings


def adjust_(opt: Any, lr: Any = None, **hyperparameters: Any) -> Any:
    """Set hyperparameters of optimizers in place, like Julia's ``Flux.Optimisers.adjust!``; returns ``opt``.

    ``adjust_(opt, 1e-4)`` or ``adjust_(opt, lr=1e-4)`` sets the learning rate of every
    parameter group; other keywords set other entries of the parameter groups (torch's
    names, ``betas``, ``eps``, ``weight_decay``, ..., or Optimisers.jl's ``η``/``eta``,
    ``β``/``beta``, ``ϵ``/``epsilon``, ``λ``). ``opt`` is a ``torch.optim.Optimizer``
    or an :class:`OptimizerPair` (both optimizers are adjusted; adjust one field for one of
    them, e.g. ``adjust_(opt.mi, 1e-4)``). Everything is checked before anything changes.

    Raises ``TypeError`` for a keyword that the optimizer does not have, listing those it has.
    """
    optimizers = tuple(opt) if isinstance(opt, OptimizerPair) else (opt,)
    plans = [_settings(o, lr, dict(hyperparameters)) for o in optimizers]
    for groups, settings in plans:
        for group in groups:
            group.update(settings)
    return opt


@julia_fields
class MutualInfoEstimate(NamedTuple):
    """The critic's estimate of :math:`I(x; z)` over several shuffles (nats): what
    :meth:`InfoMaxVAE.mutual_info <autoencoder_toolkit.infomaxvaes.InfoMaxVAE.mutual_info>` and
    :func:`~autoencoder_toolkit.metrics.mutual_info_estimate` return.

    Attributes
    ----------
    mean:
        Mean of the per-shuffle estimates.
    std:
        Their standard deviation (``ddof=1``; 0 for a single shuffle).
    values:
        ``(K,)`` ``float64``: one estimate per shuffle.
    joint:
        The matched-pair term :math:`\\overline{g(x, z)}`, shared by every shuffle.
    """

    mean: float
    std: float
    values: np.ndarray
    joint: float


class OptimizerPair(NamedTuple):
    """One optimizer for the VAE and one for the mutual-information network.

    ``opt.adjust_(lr=1e-4)`` sets hyperparameters of both in place (see :func:`adjust_`),
    as ``Flux.Optimisers.adjust!(opt_state, 1e-4)`` does on the state tree of an InfoMaxVAE.
    """

    vae: Any
    mi: Any

    def adjust_(self, lr: Any = None, **hyperparameters: Any) -> "OptimizerPair":
        """Set hyperparameters of both optimizers in place (see :func:`adjust_`); returns ``self``."""
        return adjust_(self, lr, **hyperparameters)


#: Latent means and spreads of a data set (see ``encode``): the Gaussian ``(μ, σ)`` of each input.
EncodedData = GaussianParams

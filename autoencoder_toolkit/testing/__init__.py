"""Property checks, Hypothesis strategies and pytest fixtures for testing your own models.

Install with ``pip install -e ".[testing]"`` in the package's folder (the strategies need
Hypothesis; the checks do not). The guide is ``docs/testing.md``.

Checks: plain functions that raise ``AssertionError`` with a message naming what broke,
callable from any test, with or without Hypothesis. ``x`` is a batch ``(B, *sample_shape)``.

=====================================  ==========================================================
:func:`check_shuffled_codes_detached`  the shuffled codes give the VAE no gradient
:func:`check_critic_loss_routing`      the critic's loss reaches the critic only
:func:`check_optimizer_routing`        each optimizer of a step gets its own loss's gradient
                                       and moves only its own network
:func:`check_gradient_routing`         the three above
:func:`check_step_atomic`              a step that fails (NaN, an exception) changes nothing
:func:`check_determinism`              the same ``rng`` gives the same numbers
:func:`check_losses_match_reference`   outputs and losses equal an independent float64 reference
:func:`check_export_agreement`         the NumPy export holds the model's tensors and computes
                                       what it computes
:func:`check_checkpoint_round_trip`    ``save_model``/``load_model`` give the model back
:func:`check_all`                      all of them
=====================================  ==========================================================

Helpers: :func:`example_batch` (a batch that fits a model), :func:`example_model`,
:func:`library_step` (the package's ``train_`` as a step), :func:`default_optimizers`,
:class:`ModelChecks`, :class:`RNGSpec`, :class:`ScriptedDraws`, :func:`snapshot`,
:func:`differences` and :func:`assert_unchanged`, :func:`assert_same_tensors`,
:func:`assert_close`, :class:`Reference`. Strategies: :mod:`autoencoder_toolkit.testing.strategies`.

Names load on first use, so that importing this package (as the pytest plugin does in
every test run) costs nothing until a check is used.
"""

import importlib
from typing import Any

_LAZY_NAMES = {
    "check_shuffled_codes_detached": "routing", "check_critic_loss_routing": "routing",
    "check_optimizer_routing": "routing", "check_gradient_routing": "routing",
    "check_step_atomic": "atomicity", "InjectedFault": "atomicity",
    "check_determinism": "determinism",
    "check_losses_match_reference": "agreement", "check_export_agreement": "agreement",
    "check_checkpoint_round_trip": "agreement",
    "check_all": "suite", "ModelChecks": "suite", "CHECKS": "suite",
    "example_batch": "data", "example_model": "data", "data_kind": "data", "sample_shape_of": "data",
    "library_step": "steps", "default_optimizers": "steps", "ScriptedDraws": "steps",
    "RNGSpec": "rngs", "RNG_KINDS": "rngs",
    "snapshot": "state", "differences": "state", "assert_unchanged": "state", "non_finite": "state",
    "assert_same_tensors": "state", "assert_close": "state",
    "Reference": "reference", "NotCovered": "reference",
}
_MODULES = ("agreement", "atomicity", "data", "determinism", "plugin", "reference", "rngs", "routing", "state",
            "steps", "strategies", "suite")


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted(_LAZY_NAMES) + ["strategies"]

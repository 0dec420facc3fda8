"""pytest fixtures for testing a model with :mod:`autoencoder_toolkit.testing`.

Registered as a pytest plugin (entry point ``pytest11``), so the fixtures exist in every
test run of an environment where the package is installed; they cost nothing unless a
test asks for them. Override the first four in your ``conftest.py`` to check your own
model and training:

``aet_model``
    The model under test (default: :func:`~autoencoder_toolkit.testing.example_model`).
``aet_batch``
    A batch for it (default: :func:`~autoencoder_toolkit.testing.example_batch` of 32 samples).
``aet_step``
    The training step ``step(model, x, opt, *, rng=None)`` (default: the package's ``train_``).
``aet_optimizers``
    The optimizer factory ``make_optimizers(model)`` (default: Adam, ``lr=1e-2``).
``aet_check``
    :class:`~autoencoder_toolkit.testing.ModelChecks` bound to the four:
    ``aet_check.gradient_routing()``, ``aet_check.atomicity()``, ..., ``aet_check.all()``.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from autoencoder_toolkit import testing as kit


@pytest.fixture
def aet_model() -> Any:
    """The model under test; override this fixture to check your own."""
    return kit.example_model()


@pytest.fixture
def aet_batch(aet_model: Any) -> Any:
    """A batch of 32 samples that fits ``aet_model``."""
    return kit.example_batch(aet_model, 32)


@pytest.fixture
def aet_step() -> Callable[..., Any]:
    """The training step under test: ``step(model, x, opt, *, rng=None)``."""
    return kit.library_step()


@pytest.fixture
def aet_optimizers() -> Callable[..., Any]:
    """The optimizer factory: ``make_optimizers(model) -> opt``."""
    return kit.default_optimizers


@pytest.fixture
def aet_check(aet_model: Any, aet_batch: Any, aet_step: Callable[..., Any], aet_optimizers: Callable[..., Any],
              tmp_path: Any) -> Any:
    """Every check of the kit, bound to ``aet_model``, ``aet_batch``, ``aet_step`` and ``aet_optimizers``."""
    return kit.ModelChecks(aet_model, aet_batch, aet_step, aet_optimizers, tmp_path)

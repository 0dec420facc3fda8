"""Every check on one model: :func:`check_all`, and :class:`ModelChecks`, the checks bound to a model.

:class:`ModelChecks` holds a model, a batch, a training step and an optimizer factory
and runs each check on them by name (``checks.gradient_routing()``, ...); it is what
the pytest fixture ``aet_check`` gives (:mod:`autoencoder_toolkit.testing.plugin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..models.infomaxvaes import InfoMaxVAE
from .agreement import check_checkpoint_round_trip, check_export_agreement, check_losses_match_reference
from .atomicity import check_step_atomic
from .determinism import check_determinism
from .routing import check_gradient_routing
from .steps import Step, default_optimizers, library_step

__all__ = ["ModelChecks", "check_all", "CHECKS"]

#: The checks :func:`check_all` runs, in order (routing is skipped for a plain VAE).
CHECKS = ("gradient_routing", "atomicity", "determinism", "reference", "export", "checkpoint")


@dataclass
class ModelChecks:
    """The checks of :mod:`autoencoder_toolkit.testing`, bound to a model and its training.

    Attributes
    ----------
    model:
        A VAE or an InfoMax-VAE (never changed: the checks work on copies).
    x:
        A batch for it, ``(B, *sample_shape)``.
    step:
        ``step(model, x, opt, *, rng=None)``; default: the package's ``train_``.
    make_optimizers:
        ``make_optimizers(model) -> opt``; default: Adam with ``lr=1e-2``.
    directory:
        Where the checkpoint round trip writes its file (a temporary folder by default).
    """

    model: nn.Module
    x: Any
    step: Step = field(default_factory=library_step)
    make_optimizers: Callable[[nn.Module], Any] = default_optimizers
    directory: str | Path | None = None

    def gradient_routing(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_gradient_routing` (an InfoMax-VAE only)."""
        check_gradient_routing(self.model, self.x, step=self.step, make_optimizers=self.make_optimizers, **kwargs)

    def atomicity(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_step_atomic`."""
        check_step_atomic(self.model, self.x, step=self.step, make_optimizers=self.make_optimizers, **kwargs)

    def determinism(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_determinism`."""
        check_determinism(self.model, self.x, step=self.step, make_optimizers=self.make_optimizers, **kwargs)

    def reference(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_losses_match_reference`."""
        check_losses_match_reference(self.model, self.x, **kwargs)

    def export(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_export_agreement`."""
        check_export_agreement(self.model, self.x, **kwargs)

    def checkpoint(self, **kwargs: Any) -> None:
        """:func:`~autoencoder_toolkit.testing.check_checkpoint_round_trip`."""
        kwargs.setdefault("directory", self.directory)
        check_checkpoint_round_trip(self.model, self.x, **kwargs)

    def all(self, skip: tuple[str, ...] = ()) -> None:
        """Every check of :data:`CHECKS` but those in ``skip`` (routing only for an InfoMax-VAE)."""
        unknown = [name for name in skip if name not in CHECKS]
        if unknown:
            raise ValueError(f"skip: expected names among {', '.join(CHECKS)}, got {', '.join(unknown)}")
        for name in CHECKS:
            if name in skip or (name == "gradient_routing" and not isinstance(self.model, InfoMaxVAE)):
                continue
            getattr(self, name)()


def check_all(model: nn.Module, x: Any, *, step: Step | None = None,
              make_optimizers: Callable[[nn.Module], Any] | None = None, skip: tuple[str, ...] = ()) -> None:
    """Run every check on ``model`` and the batch ``x`` (see :data:`CHECKS`; ``skip`` names some to leave out).

    ``step`` and ``make_optimizers`` as in :class:`ModelChecks`. Raises the first
    check's ``AssertionError``.
    """
    ModelChecks(model, x, library_step() if step is None else step,
                default_optimizers if make_optimizers is None else make_optimizers).all(skip)

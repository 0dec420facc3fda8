"""The shape shared by every encoder and decoder: an optional trunk, then heads, then an output type.

A :class:`Network` computes ``h = trunk(x)`` (or ``h = x`` without a trunk), applies each
head to ``h`` and returns the heads' outputs as the parameters of its output distribution
(a class of :mod:`autoencoder_toolkit.distributions`), or the single head's output for a
deterministic network. Subclasses declare the structure with class attributes::

    class JointGaussianLogDecoder(Network):   # h = decoder(z); GaussianLogParams(μ(h), logσ(h))
        _trunk = "decoder"
        _heads = ("μ", "logσ")
        output_type = GaussianLogParams

The structure is recorded in the model's configuration, so the frozen inference models
run a new encoder or decoder without knowing its class.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .architecture import Component, structure_dict

__all__ = ["Network"]


class Network(Component):
    """A module made of an optional trunk and one or more heads (see the module documentation)."""

    #: Field applied first, or ``None``.
    _trunk: ClassVar[str | None] = None
    #: Fields applied to the trunk's output; their outputs are the output's parameters.
    _heads: ClassVar[tuple[str, ...]] = ()
    #: The output distribution (a named tuple class), or ``None`` for a deterministic network.
    output_type: ClassVar[type | None] = None
    #: Whether one unbatched sample runs as a batch of one (for heads that reshape per batch).
    _single_as_batch: ClassVar[bool] = False

    def forward(self, x: torch.Tensor) -> Any:  # noqa: D102
        if self._single_as_batch and x.ndim == 1:
            out = self.forward(x.unsqueeze(0))
            return out[0] if self.output_type is None else self.output_type(*(f[0] for f in out))
        h = x if self._trunk is None else getattr(self, self._trunk)(x)
        outs = [getattr(self, head)(h) for head in self._heads]
        return outs[0] if self.output_type is None else self.output_type(*outs)

    def structure(self) -> dict[str, Any] | None:  # noqa: D102
        if not self._heads:
            return None
        return structure_dict(self._trunk, self._heads, self.output_type, self._single_as_batch)

    def distribution(self, output: Any) -> Any:
        """``output`` (any tuple of this network's output parameters) as its output distribution."""
        if self.output_type is None:
            raise TypeError(f"{type(self).__name__} is deterministic: it has no output distribution")
        return output if type(output) is self.output_type else self.output_type(*output)

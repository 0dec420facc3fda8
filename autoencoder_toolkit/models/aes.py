r"""Deterministic autoencoders: ``AE``, its mean-squared-error loss and ``train_``.

An autoencoder maps a sample to one code, ``z = encoder(x)`` (``(B, L)`` for a batch
``x`` of shape ``(B, ...)``), and the code back to a reconstruction ``x̂ = decoder(z)``
of ``x``'s shape. Its loss is the mean squared error over **every element** of the batch
(not a per-sample sum), plus an optional regulariser:

.. math::
    \mathcal L = \frac{1}{N}\sum_{i=1}^{N} (\hat x_i - x_i)^2 + \text{reg\_strength}\cdot\text{reg},
    \qquad N = B \cdot D

where ``D`` is the number of elements of one sample. This is Julia's ``Flux.mse``, so a
batch gives the reference's number.

``Encoder(...) * Decoder(...)`` builds an :class:`AE`, as in the Julia package. This
module is also reachable as ``autoencoder_toolkit.AEs`` (Julia's module name), which
holds ``Encoder`` and ``Decoder`` as Julia's ``AEs`` module does.

Difference from AutoEncoderToolkit.jl v0.1.2: its ``mse_loss`` passes the undefined
variable ``ae_outputs`` to ``reg_function`` (any regulariser raises ``UndefVarError``);
here ``reg_function`` receives the forward pass ``AEOutput(encoder=z, decoder=x̂)``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..outputs import AEOutput, AEReconstruction
from .architecture import Component, register_composition
from .checks import check_weight, keywords_checked, model_input, same_kind, split_train_args, target_input
from .decoders import AbstractDeterministicDecoder, Decoder
from .encoders import AbstractDeterministicEncoder, Encoder
from .step import unwrap
from .vaes import one_loss_step

__all__ = ["AE", "Encoder", "Decoder", "mse_loss", "train_"]


class AE(Component):
    """A deterministic autoencoder: ``AE(encoder, decoder)`` or ``encoder * decoder``.

    ``ae(x, latent=False)`` (a tensor ``x`` on the model's device) returns
    ``AEReconstruction(decoder=x̂)``; with ``latent=True`` it returns
    ``AEOutput(encoder=z, decoder=x̂)`` (Julia's NamedTuples ``(decoder=x̂,)`` and
    ``(encoder=z, decoder=x̂)``).

    For data of any kind (NumPy, torch, CuPy), checked and without gradient:
    :meth:`encode`, :meth:`decode`, :meth:`reconstruct`.
    """

    _config_fields = ("encoder", "decoder")

    def __init__(self, encoder: AbstractDeterministicEncoder, decoder: AbstractDeterministicDecoder) -> None:
        super().__init__()
        if not isinstance(encoder, AbstractDeterministicEncoder):
            raise TypeError(f"encoder: expected a deterministic encoder (Encoder or a subclass of "
                            f"AbstractDeterministicEncoder), got {type(encoder).__name__}")
        if not isinstance(decoder, AbstractDeterministicDecoder):
            raise TypeError(f"decoder: expected a deterministic decoder (Decoder or a subclass of "
                            f"AbstractDeterministicDecoder), got {type(decoder).__name__}")
        le, ld = encoder.latent_dim, decoder.latent_dim
        if le is not None and ld is not None and le != ld:
            raise ValueError(f"decoder: expects {ld} latent dimensions but the encoder produces {le}")
        self.encoder = encoder
        self.decoder = decoder

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the data, when the encoder knows it."""
        return self.encoder.input_shape

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions, when known."""
        return self.encoder.latent_dim or self.decoder.latent_dim

    def forward(self, x: torch.Tensor, latent: bool = False) -> Any:  # noqa: D102
        z = self.encoder(x)
        x_hat = self.decoder(z)
        return AEOutput(z, x_hat) if latent else AEReconstruction(x_hat)

    @torch.no_grad()
    def encode(self, x: Any) -> Any:
        """The codes ``z = encoder(x)``: ``(B, L)`` (one sample: ``(L,)``), of ``x``'s array kind."""
        return same_kind(self.encoder(model_input(self, x, "x")), x)

    @torch.no_grad()
    def decode(self, z: Any) -> Any:
        """The reconstructions ``decoder(z)`` of codes ``z``, of ``z``'s array kind."""
        return same_kind(self.decoder(model_input(self.decoder, z, "z")), z)

    @torch.no_grad()
    def reconstruct(self, x: Any) -> Any:
        """``decoder(encoder(x))``, of ``x``'s array kind."""
        return same_kind(self.forward(model_input(self, x, "x")).decoder, x)


register_composition(AbstractDeterministicEncoder, AbstractDeterministicDecoder, AE)

_MSE_KEYWORDS = ("reg_function", "reg_kwargs", "reg_strength")


def _mse_loss(ae: AE, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *,
              reg_function: Callable | None = None, reg_kwargs: Mapping[str, Any] | None = None,
              reg_strength: Any = 1.0) -> torch.Tensor:
    """:func:`mse_loss` on data already converted and checked (its keywords are checked here)."""
    reg_strength = check_weight(reg_strength, "reg_strength")
    if reg_function is not None and not callable(reg_function):
        raise TypeError(f"reg_function: expected a function, got {type(reg_function).__name__}")
    if reg_kwargs is not None and not isinstance(reg_kwargs, Mapping):
        raise TypeError(f"reg_kwargs: expected a mapping of keyword arguments, got {type(reg_kwargs).__name__}")
    target = x_in if x_out is None else x_out
    out = ae.forward(x_in, latent=True)
    if tuple(out.decoder.shape) != tuple(target.shape):
        name = "x" if x_out is None else "x_out"
        raise ValueError(f"{name}: expected the shape of the reconstruction {tuple(out.decoder.shape)}, "
                         f"got {tuple(target.shape)}")
    value = torch.mean((out.decoder - target) ** 2)
    if reg_function is not None:
        value = value + reg_strength * reg_function(out, **dict(reg_kwargs or {}))
    return value


@keywords_checked
def mse_loss(ae: AE, x_in: Any, x_out: Any = None, *, reg_function: Callable | None = None,
             reg_kwargs: Mapping[str, Any] | None = None, reg_strength: float = 1.0) -> torch.Tensor:
    """The autoencoder's loss: the mean squared error over all elements, as a 0-d tensor.

    ``mse_loss(ae, x)`` scores the reconstruction of ``x`` against ``x``;
    ``mse_loss(ae, x_in, x_out)`` encodes ``x_in`` and scores against ``x_out`` (same
    shape as the reconstruction). ``reg_function(AEOutput, **reg_kwargs)`` is added times
    ``reg_strength`` when given.
    """
    if not isinstance(ae, AE):
        raise TypeError(f"ae: expected an AE (Encoder * Decoder), got {type(ae).__name__}")
    x_in_t = model_input(ae, x_in, "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else target_input(ae, x_out, x_in_t)
    return _mse_loss(ae, x_in_t, x_out_t, reg_function=reg_function, reg_kwargs=reg_kwargs,
                     reg_strength=reg_strength)


@keywords_checked
def train_(ae: AE, x: Any, *args: Any, loss_function: Callable = mse_loss,
           loss_kwargs: Mapping[str, Any] | None = None, verbose: bool = False,
           loss_return: bool = False) -> float | None:
    """One optimisation step of an autoencoder, in place: ``train_(ae, x, opt)`` or ``train_(ae, x_in, x_out, opt)``.

    Computes ``loss_function(ae, x, **loss_kwargs)`` (or with ``x_in, x_out``), its
    gradient with respect to the autoencoder's parameters, and takes one step of ``opt``
    (a ``torch.optim.Optimizer``, e.g. ``autoencoder_toolkit.setup(torch.optim.Adam, ae)``),
    through the checked step of :mod:`autoencoder_toolkit.models.step`.

    Returns the loss before the step as a float when ``loss_return`` (nothing printed);
    otherwise prints ``Loss: ...`` when ``verbose`` and returns ``None``.

    Raises
    ------
    FloatingPointError
        If the loss, its gradient or the update is NaN or infinite; parameters and
        optimizer state are then unchanged.
    """
    x_out, opt = split_train_args(args, "train_")
    model, parallel = unwrap(ae)
    if not isinstance(model, AE):
        raise TypeError(f"ae: expected an AE (Encoder * Decoder), got {type(model).__name__}")
    return one_loss_step(model, model, x, x_out, opt, "ae", loss_function, mse_loss, _mse_loss, _MSE_KEYWORDS,
                         loss_kwargs, None, "the AE loss", loss_return, verbose, parallel)

r"""Encoders and the encoder-side densities: prior, posterior and KL divergence.

Layout: ``x`` is ``(B, *sample_shape)`` or one sample ``sample_shape``; latent codes are
``(B, L)`` or one code ``(L,)``. A 1-D code means one sample and gives a scalar; a 2-D
code gives one value per sample.

Densities (``log2π`` is the float32 ``log(2π) ≈ 1.837877``):

* standard normal prior: :math:`\log p(z) = -\tfrac12\sum_i z_i^2 - \tfrac{L}{2}\log 2\pi`
* Gaussian posterior with log scale:
  :math:`\log q(z|x) = -\tfrac12\sum_i (z_i-μ_i)^2 e^{-2\logσ_i} - \sum_i \logσ_i - \tfrac{L}{2}\log 2\pi`
* KL to the prior:
  :math:`\mathrm{KL} = \tfrac12\sum_i \big(e^{2\logσ_i} + μ_i^2 - 1 - 2\logσ_i\big)`

These functions accept NumPy, torch and CuPy arrays (through the array API) and return
the same kind.
"""

from __future__ import annotations

from typing import Any, Callable, overload

import numpy as np
import torch
from torch import nn

# The formulas on plain arrays live in the torch-free module ``densities`` (the NumPy
# inference models use them without torch); they are re-exported here.
from ..densities import LOG2PI, gaussian_kl, gaussian_logdensity, spherical_logprior
from ..distributions import GaussianLogParams, GaussianParams
from .activations import ActivationLike
from .architecture import compose
from .construction import (as_activation_list, as_int_list, as_sample_shape, bind_arguments, bind_trunk_and_heads,
                           check_module, is_field_form, leading_linear_in, trailing_linear_out)
from .layers import Chain, Dense, Flatten, dense_chain, glorot_uniform
from .network import Network

__all__ = [
    "LOG2PI",
    "AbstractEncoder",
    "AbstractDeterministicEncoder",
    "AbstractVariationalEncoder",
    "AbstractGaussianEncoder",
    "AbstractGaussianLinearEncoder",
    "AbstractGaussianLogEncoder",
    "Encoder",
    "JointGaussianLogEncoder",
    "JointGaussianEncoder",
    "spherical_logprior",
    "gaussian_logdensity",
    "gaussian_kl",
    "encoder_logposterior",
    "encoder_kl",
]

# ----------------------------------------------------------------------------------
# Type tree
# ----------------------------------------------------------------------------------

class AbstractEncoder(Network):
    """Base of every encoder.

    ``encoder * decoder`` builds the model the pair makes, as Julia's ``*`` does: a
    variational encoder and decoder give a :class:`~autoencoder_toolkit.vaes.VAE`, a
    deterministic pair an :class:`~autoencoder_toolkit.aes.AE` (the pairs are registered
    with :func:`~autoencoder_toolkit.models.architecture.register_composition`).
    """

    #: Number of latent dimensions, when known.
    latent_dim: int | None = None
    #: Per-sample shape of the data, when known.
    input_shape: tuple[int, ...] | None = None

    def __mul__(self, decoder: Any) -> Any:
        model = compose(self, decoder)
        if model is NotImplemented and isinstance(decoder, nn.Module):
            raise TypeError(
                f"encoder * decoder: a variational encoder (JointGaussianLogEncoder, ...) and a variational "
                f"decoder make a VAE, an Encoder and a Decoder make an AE; got {type(self).__name__} * "
                f"{type(decoder).__name__}"
            )
        return model


class AbstractDeterministicEncoder(AbstractEncoder):
    """An encoder that maps each input to one code."""


class AbstractVariationalEncoder(AbstractEncoder):
    """An encoder that outputs the parameters of a distribution over codes.

    With an :attr:`output_type` (a distribution of :mod:`autoencoder_toolkit.distributions`
    with ``rsample``, ``kl`` and ``log_prob``), :meth:`reparameterize`, :meth:`kl` and
    :meth:`logposterior` come from it; a subclass may instead override the three. The
    free functions :func:`encoder_kl`, :func:`encoder_logposterior` and
    :func:`autoencoder_toolkit.vaes.reparameterize` call them, so a user-defined
    encoder plugs into every loss by subclassing.
    """

    def reparameterize(self, output: Any, rng: Any = None, *, noise: Any = None) -> Any:
        """A differentiable latent sample from ``output`` (noise from ``rng``, or the given ``noise``)."""
        if self.output_type is None:
            raise NotImplementedError(f"{type(self).__name__} does not implement reparameterize")
        return self.distribution(output).rsample(rng, noise=noise)

    def kl(self, output: Any) -> Any:
        """Per-sample KL divergence of the encoded distribution to the prior."""
        if self.output_type is None:
            raise NotImplementedError(f"{type(self).__name__} does not implement kl")
        return self.distribution(output).kl()

    def logposterior(self, z: Any, output: Any) -> Any:
        """``log q(z | x)`` for the encoded distribution (``(B,)`` for a batch of codes)."""
        if self.output_type is None:
            raise NotImplementedError(f"{type(self).__name__} does not implement logposterior")
        return self.distribution(output).log_prob(z, batched=z.ndim >= 2)


class AbstractGaussianEncoder(AbstractVariationalEncoder):
    """A diagonal-Gaussian encoder."""


class AbstractGaussianLogEncoder(AbstractGaussianEncoder):
    """A diagonal-Gaussian encoder whose output is ``GaussianLogParams(μ, logσ)``: ``z = μ + ε ⊙ exp(logσ)``."""

    output_type = GaussianLogParams


class AbstractGaussianLinearEncoder(AbstractGaussianEncoder):
    """A diagonal-Gaussian encoder whose output is ``GaussianParams(μ, σ)`` with ``σ > 0``: ``z = μ + ε ⊙ σ``."""

    output_type = GaussianParams


# ----------------------------------------------------------------------------------
# Concrete encoders
# ----------------------------------------------------------------------------------

_DEFAULT_NAMES = ("n_input", "n_latent", "encoder_neurons", "encoder_activation", "latent_activation")


def _hidden_chain(cls_name: str, n_input: Any, neurons: Any, activations: Any, init: Any,
                  neurons_name: str = "encoder_neurons",
                  activation_name: str = "encoder_activation") -> tuple[Chain, tuple[int, ...]]:
    shape = as_sample_shape(n_input, "n_input")
    neurons = as_int_list(neurons, neurons_name)
    acts = as_activation_list(activations, len(neurons), activation_name, neurons_name)
    n_in = int(np.prod(shape))
    layers: list[nn.Module] = [Flatten()] if len(shape) > 1 else []
    layers += dense_chain([n_in, *neurons], acts, init)
    return Chain(*layers), shape


def _latent_pair(latent_activation: Any) -> tuple[ActivationLike, ActivationLike]:
    if isinstance(latent_activation, (list, tuple)):
        if len(latent_activation) != 2:
            raise ValueError(
                "latent_activation: expected one activation or a pair (for μ and for the scale), "
                f"got {len(latent_activation)} entries"
            )
        return latent_activation[0], latent_activation[1]
    return latent_activation, latent_activation


class Encoder(AbstractDeterministicEncoder):
    """A deterministic encoder ``x -> z`` (the reference's ``Encoder``).

    Forms: ``Encoder(encoder)`` with any module, or
    ``Encoder(n_input, n_latent, encoder_neurons, encoder_activation, latent_activation, init=glorot_uniform)``
    which builds ``Chain(Dense(n_input, n1, a1), ..., Dense(n_k, n_latent, latent_activation))``.
    It is not a variational encoder: ``Encoder * Decoder`` gives an autoencoder
    (:class:`~autoencoder_toolkit.aes.AE`), not a VAE.
    """

    _config_fields = ("encoder",)
    _heads = ("encoder",)

    @overload
    def __init__(self, encoder: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, encoder_neurons: list[int],
                 encoder_activation: list[ActivationLike], latent_activation: ActivationLike, *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        super().__init__()
        if is_field_form(args, kwargs, ("encoder",)):
            b = bind_arguments("Encoder", args, kwargs, ("encoder",), 1)
            self.encoder = check_module(b["encoder"], "Encoder", "encoder")
            n = leading_linear_in(self.encoder)
            self.input_shape = (n,) if n is not None else None
            self.latent_dim = trailing_linear_out(self.encoder)
            self._build_args = None
            return
        b = bind_arguments("Encoder", args, kwargs, _DEFAULT_NAMES, 5)
        hidden, shape = _hidden_chain("Encoder", b["n_input"], b["encoder_neurons"], b["encoder_activation"], init)
        n_latent = as_sample_shape(b["n_latent"], "n_latent")[0]
        last = hidden[-1].out_features
        self.encoder = Chain(*hidden, Dense(last, n_latent, b["latent_activation"], init))
        self.input_shape = shape
        self.latent_dim = n_latent


class _JointGaussianBase:
    """Shared constructor of the joint Gaussian encoders: a trunk and two heads."""

    _scale_field: str

    def _construct(self, cls_name: str, args: tuple, kwargs: dict, init: Any) -> None:
        fields = ("encoder", "μ", self._scale_field)
        if is_field_form(args, kwargs, fields + ("mu", "logsigma", "sigma")):
            trunk, mu, scale = bind_trunk_and_heads(cls_name, args, kwargs, "encoder", self._scale_field,
                                                    "encoder", "latent dimensions")
            m_out = trailing_linear_out(mu)
            n_in = leading_linear_in(trunk)
            input_shape = (n_in,) if n_in is not None else None
            latent_dim = m_out
        else:
            b = bind_arguments(cls_name, args, kwargs, _DEFAULT_NAMES, 5)
            trunk, input_shape = _hidden_chain(cls_name, b["n_input"], b["encoder_neurons"],
                                               b["encoder_activation"], init)
            latent_dim = as_sample_shape(b["n_latent"], "n_latent")[0]
            a_mu, a_scale = _latent_pair(b["latent_activation"])
            h = trunk[-1].out_features
            mu = Dense(h, latent_dim, a_mu, init)
            scale = Dense(h, latent_dim, a_scale, init)
        self.encoder = trunk
        self.μ = mu
        setattr(self, self._scale_field, scale)
        self.input_shape = input_shape
        self.latent_dim = latent_dim

    @property
    def mu(self) -> nn.Module:
        """Alias of the ``μ`` head."""
        return self.μ


class JointGaussianLogEncoder(_JointGaussianBase, AbstractGaussianLogEncoder):
    """Gaussian encoder with a shared trunk and two heads, returning ``(μ, logσ)``.

    Forms:

    * ``JointGaussianLogEncoder(encoder, μ, logσ)`` with any modules: ``h = encoder(x)``,
      then ``μ(h)`` and ``logσ(h)``;
    * ``JointGaussianLogEncoder(n_input, n_latent, encoder_neurons, encoder_activation,
      latent_activation, init=glorot_uniform)``: the trunk is
      ``Chain(Dense(n_input, n1, a1), ..., Dense(n_{k-1}, n_k, a_k))`` and each head is
      ``Dense(n_k, n_latent, ·)``. ``latent_activation`` is one activation for both heads
      or a pair ``(μ activation, logσ activation)``. ``n_input`` may be a sample shape
      such as ``(1, 28, 28)``; the input is then flattened first.

    Calling it on ``x`` of shape ``(B, D)`` returns ``GaussianLogParams(μ, logσ)``, each
    ``(B, L)``; one sample ``(D,)`` gives ``(L,)`` fields. A batch of one stays a batch.
    """

    _config_fields = ("encoder", "μ", "logσ")
    _trunk = "encoder"
    _heads = ("μ", "logσ")
    _scale_field = "logσ"

    @overload
    def __init__(self, encoder: nn.Module, μ: nn.Module, logσ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, encoder_neurons: list[int],
                 encoder_activation: list[ActivationLike],
                 latent_activation: ActivationLike | tuple[ActivationLike, ActivationLike], *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLogEncoder.__init__(self)
        self._construct("JointGaussianLogEncoder", args, kwargs, init)

    @property
    def logsigma(self) -> nn.Module:
        """Alias of the ``logσ`` head."""
        return self.logσ


class JointGaussianEncoder(_JointGaussianBase, AbstractGaussianLinearEncoder):
    """Gaussian encoder with a shared trunk and two heads, returning ``(μ, σ)``.

    Same forms as :class:`JointGaussianLogEncoder`; the second head gives the standard
    deviation directly, so its activation must be positive (e.g.
    ``latent_activation=("identity", "softplus")``). Unlike the Julia package, this
    encoder works inside a VAE: it has a reparameterisation and a KL divergence.
    """

    _config_fields = ("encoder", "μ", "σ")
    _trunk = "encoder"
    _heads = ("μ", "σ")
    _scale_field = "σ"

    @overload
    def __init__(self, encoder: nn.Module, μ: nn.Module, σ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, encoder_neurons: list[int],
                 encoder_activation: list[ActivationLike],
                 latent_activation: ActivationLike | tuple[ActivationLike, ActivationLike], *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLinearEncoder.__init__(self)
        self._construct("JointGaussianEncoder", args, kwargs, init)

    @property
    def sigma(self) -> nn.Module:
        """Alias of the ``σ`` head."""
        return self.σ


# ----------------------------------------------------------------------------------
# Free functions dispatching on the encoder
# ----------------------------------------------------------------------------------

def _require_variational(encoder: Any, name: str = "encoder") -> None:
    if not isinstance(encoder, AbstractVariationalEncoder):
        raise TypeError(
            f"{name}: expected a variational encoder (e.g. JointGaussianLogEncoder), "
            f"got {type(encoder).__name__}"
        )


def encoder_logposterior(z: Any, encoder: AbstractVariationalEncoder, encoder_output: Any,
                         index: int | None = None) -> Any:
    """``log q(z | x)`` under the encoder's output distribution.

    ``z`` ``(L,)`` with a single-sample output gives a scalar; ``z`` ``(B, L)`` gives
    ``(B,)``. With ``index``, ``z`` is one code ``(L,)`` and the density is that of sample
    ``index`` of a batched ``encoder_output``.
    """
    _require_variational(encoder)
    if index is not None:
        if getattr(z, "ndim", None) != 1:
            raise ValueError(f"z: the index form expects one code of shape (L,), got {tuple(z.shape)}")
        encoder_output = type(encoder_output)(*(f[index] for f in encoder_output))
    return encoder.logposterior(z, encoder_output)


def encoder_kl(encoder: AbstractVariationalEncoder, encoder_output: Any) -> Any:
    """KL divergence from the encoded distribution to the standard normal prior.

    ``(B,)`` for a batch; a scalar for one sample (the Julia package returns a
    one-element vector there).
    """
    _require_variational(encoder)
    return encoder.kl(encoder_output)

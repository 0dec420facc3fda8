r"""Decoders and their log-likelihoods.

Layout: latent codes are ``(B, L)`` (a batch) or ``(L,)`` (one sample); data are
``(B, *sample_shape)`` or ``sample_shape``. Each log-likelihood sums over every axis of a
sample and returns ``(B,)`` for a batch or a scalar for one sample. ``D`` is the number
of elements per sample and ``ε = eps(float32) = 1.1920929e-7``.

* Bernoulli: :math:`\sum [x\log(p+ε) + (1-x)\log(1-p+ε)]` (ε added on both sides, as
  the reference's binary cross-entropy does)
* Categorical: :math:`\sum x\log(p+ε)`
* Gaussian with fixed σ (``SimpleGaussianDecoder``):
  :math:`-\tfrac12\sum (x-μ)^2/σ^2 - \tfrac{D}{2}(2\logσ + \log 2\pi)`, ``σ = 1`` in the losses
* Gaussian with log scale: :math:`-\tfrac12\sum (x-μ)^2 e^{-2\logσ} - \sum\logσ - \tfrac{D}{2}\log 2\pi`
* Gaussian with scale: :math:`-\tfrac12\sum ((x-μ)/σ)^2 - \sum\logσ - \tfrac{D}{2}\log 2\pi`

The array-level functions (``bernoulli_loglikelihood`` and friends) accept NumPy, torch
and CuPy arrays; :func:`decoder_loglikelihood` dispatches on the decoder through its
``loglikelihood`` method, so a user subclass extends it.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, overload

import numpy as np
import torch
from torch import nn

# The log-likelihoods on plain arrays live in the torch-free module ``densities`` (the
# NumPy inference models use them without torch); they are re-exported here.
from ..densities import EPS_FLOAT32, bernoulli_loglikelihood, categorical_loglikelihood, gaussian_loglikelihood
from ..distributions import Bernoulli, Categorical, GaussianLogParams, GaussianMean, GaussianParams
from .activations import ActivationLike, get_activation
from .construction import (as_activation_list, as_int_list, as_sample_shape, bind_arguments, bind_trunk_and_heads,
                           check_module, is_field_form, leading_linear_in, trailing_linear_out)
from .layers import ActivationOverDims, Chain, Dense, Reshape, dense_chain, glorot_uniform
from .network import Network

__all__ = [
    "EPS_FLOAT32",
    "AbstractDecoder",
    "AbstractDeterministicDecoder",
    "AbstractVariationalDecoder",
    "AbstractGaussianDecoder",
    "AbstractGaussianLogDecoder",
    "AbstractGaussianLinearDecoder",
    "Decoder",
    "SimpleGaussianDecoder",
    "JointGaussianLogDecoder",
    "JointGaussianDecoder",
    "SplitGaussianLogDecoder",
    "SplitGaussianDecoder",
    "BernoulliDecoder",
    "CategoricalDecoder",
    "bernoulli_loglikelihood",
    "categorical_loglikelihood",
    "gaussian_loglikelihood",
    "decoder_loglikelihood",
]

# ----------------------------------------------------------------------------------
# Type tree
# ----------------------------------------------------------------------------------

class AbstractDecoder(Network):
    """Base of every decoder."""

    #: Per-sample shape of the codes the decoder takes (``(L,)``), when known.
    input_shape: tuple[int, ...] | None = None
    #: Per-sample shape of the decoded data, when known.
    output_shape: tuple[int, ...] | None = None

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions the decoder expects, when known."""
        return self.input_shape[0] if self.input_shape else None


class AbstractDeterministicDecoder(AbstractDecoder):
    """A decoder that maps a code to one reconstruction."""


class AbstractVariationalDecoder(AbstractDecoder):
    """A decoder that outputs the parameters of a distribution over data.

    With an :attr:`output_type` (a distribution of :mod:`autoencoder_toolkit.distributions`),
    :meth:`loglikelihood` is that distribution's ``log_prob``; a subclass may override it.
    """

    def loglikelihood(self, x: Any, z: Any, output: Any, **kwargs: Any) -> Any:
        """``log p(x | z)`` from the decoder ``output``: ``(B,)`` for a batch of codes ``z``, else a scalar."""
        if self.output_type is None:
            raise NotImplementedError(f"{type(self).__name__} does not implement loglikelihood")
        _no_kwargs(type(self).__name__, kwargs)
        return self.distribution(output).log_prob(x, batched=_batched(z))


class AbstractGaussianDecoder(AbstractVariationalDecoder):
    """A diagonal-Gaussian decoder."""


class AbstractGaussianLogDecoder(AbstractGaussianDecoder):
    """A Gaussian decoder whose output is ``GaussianLogParams(μ, logσ)``."""

    output_type = GaussianLogParams


class AbstractGaussianLinearDecoder(AbstractGaussianDecoder):
    """A Gaussian decoder whose output is ``GaussianParams(μ, σ)``."""

    output_type = GaussianParams


def _batched(z: Any) -> bool:
    return getattr(z, "ndim", 1) >= 2


def _no_kwargs(owner: str, kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"{owner}.loglikelihood: unexpected keyword argument(s) {', '.join(kwargs)}")


# ----------------------------------------------------------------------------------
# Constructors
# ----------------------------------------------------------------------------------

_DEFAULT_NAMES = ("n_input", "n_latent", "decoder_neurons", "decoder_activation", "output_activation")


def _latent_shape_of(module: nn.Module) -> tuple[int, ...] | None:
    n = leading_linear_in(module)
    return (n,) if n is not None else None


def _hidden(n_latent: Any, neurons: Any, activations: Any, init: Any,
            neurons_name: str = "decoder_neurons", act_name: str = "decoder_activation") -> tuple[list[Dense], int]:
    n_latent = as_sample_shape(n_latent, "n_latent")
    if len(n_latent) != 1:
        raise ValueError(f"n_latent: expected an integer, got {n_latent}")
    neurons = as_int_list(neurons, neurons_name)
    acts = as_activation_list(activations, len(neurons), act_name, neurons_name)
    return dense_chain([n_latent[0], *neurons], acts, init), n_latent[0]


def _output_pair(output_activation: Any) -> tuple[Any, Any]:
    if isinstance(output_activation, (list, tuple)):
        if len(output_activation) != 2:
            raise ValueError(
                "output_activation: expected one activation or a pair (for μ and for the scale), "
                f"got {len(output_activation)} entries"
            )
        return output_activation[0], output_activation[1]
    return output_activation, output_activation


class Decoder(AbstractDeterministicDecoder):
    """A deterministic decoder ``z -> x̂`` (the reference's ``Decoder``); not usable in a VAE.

    Forms: ``Decoder(decoder)`` or
    ``Decoder(n_input, n_latent, decoder_neurons, decoder_activation, output_activation, init=glorot_uniform)``.
    """

    _config_fields = ("decoder",)
    _heads = ("decoder",)

    @overload
    def __init__(self, decoder: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike], output_activation: ActivationLike, *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        super().__init__()
        if is_field_form(args, kwargs, ("decoder",)):
            b = bind_arguments("Decoder", args, kwargs, ("decoder",), 1)
            self.decoder = check_module(b["decoder"], "Decoder", "decoder")
            self.input_shape = _latent_shape_of(self.decoder)
            return
        b = bind_arguments("Decoder", args, kwargs, _DEFAULT_NAMES, 5)
        n_input = as_sample_shape(b["n_input"], "n_input")
        hidden, n_latent = _hidden(b["n_latent"], b["decoder_neurons"], b["decoder_activation"], init)
        out = Dense(hidden[-1].out_features, int(np.prod(n_input)), b["output_activation"], init)
        layers: list[nn.Module] = [*hidden, out]
        if len(n_input) > 1:
            layers.append(Reshape(-1, *n_input))
        self.decoder = Chain(*layers)
        self.input_shape = (n_latent,)
        self.output_shape = n_input


class _SingleChainDecoder:
    """Constructor shared by decoders made of one chain ending in the output layer."""

    _heads = ("decoder",)

    def _construct_chain(self, cls_name: str, args: tuple, kwargs: dict, init: Any) -> Any:
        if is_field_form(args, kwargs, ("decoder",)):
            b = bind_arguments(cls_name, args, kwargs, ("decoder",), 1)
            self.decoder = check_module(b["decoder"], cls_name, "decoder")
            self.input_shape = _latent_shape_of(self.decoder)
            n_out = trailing_linear_out(self.decoder)
            self.output_shape = (n_out,) if n_out is not None else None
            return None
        b = bind_arguments(cls_name, args, kwargs, _DEFAULT_NAMES, 5)
        n_input = as_sample_shape(b["n_input"], "n_input")
        hidden, n_latent = _hidden(b["n_latent"], b["decoder_neurons"], b["decoder_activation"], init)
        out = Dense(hidden[-1].out_features, int(np.prod(n_input)), b["output_activation"], init)
        layers: list[nn.Module] = [*hidden, out]
        if len(n_input) > 1:
            layers.append(Reshape(-1, *n_input))
        self.decoder = Chain(*layers)
        self.input_shape = (n_latent,)
        self.output_shape = n_input
        return b["output_activation"]


class SimpleGaussianDecoder(_SingleChainDecoder, AbstractGaussianDecoder):
    """Gaussian decoder with a fixed standard deviation: the network gives only ``μ``.

    Forms: ``SimpleGaussianDecoder(decoder)`` or ``SimpleGaussianDecoder(n_input,
    n_latent, decoder_neurons, decoder_activation, output_activation, init=...)`` which
    builds ``Chain(Dense(L, h1, a1), ..., Dense(h_k, n_input, output_activation))``.
    Output: ``GaussianMean(μ)``. Its log-likelihood takes a keyword ``σ`` (default 1).
    """

    _config_fields = ("decoder",)
    output_type = GaussianMean

    @overload
    def __init__(self, decoder: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike], output_activation: ActivationLike, *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianDecoder.__init__(self)
        self._construct_chain("SimpleGaussianDecoder", args, kwargs, init)

    def loglikelihood(self, x: Any, z: Any, output: Any, *, σ: float = 1.0, sigma: float | None = None) -> Any:
        """Gaussian log-likelihood with the fixed standard deviation ``σ`` (alias ``sigma``)."""
        if sigma is not None:
            σ = sigma
        if isinstance(σ, bool) or not isinstance(σ, (int, float)) or not σ > 0:
            raise ValueError(f"σ: expected a positive number, got {σ!r}")
        return self.distribution(output).log_prob(x, batched=_batched(z), σ=float(σ))


def _warn_bad_bernoulli_activation(act: Any) -> None:
    activation = get_activation(act, argument="output_activation")
    grid = torch.arange(-50, 51, dtype=torch.float64) / 10.0
    try:
        values = activation.torch_fn(grid.float())
    except Exception:  # noqa: BLE001 - a custom callable we cannot probe
        return
    if bool(((values < 0) | (values > 1)).any()):
        warnings.warn(
            f"output_activation: {activation!r} gives values outside [0, 1] on [-5, 5]; a Bernoulli "
            "decoder needs probabilities (use 'sigmoid')",
            UserWarning,
            stacklevel=3,
        )


class BernoulliDecoder(_SingleChainDecoder, AbstractVariationalDecoder):
    """Bernoulli decoder: the network gives the probability ``p`` of each element being 1.

    Forms as :class:`SimpleGaussianDecoder`; the output activation should map into
    ``[0, 1]`` (``"sigmoid"``), and a warning is issued when it does not on ``[-5, 5]``.
    Output: ``Bernoulli(p)`` (a ``Probabilities``).
    """

    _config_fields = ("decoder",)
    output_type = Bernoulli

    @overload
    def __init__(self, decoder: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike], output_activation: ActivationLike, *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractVariationalDecoder.__init__(self)
        act = self._construct_chain("BernoulliDecoder", args, kwargs, init)
        if act is not None:
            _warn_bad_bernoulli_activation(act)


class CategoricalDecoder(AbstractVariationalDecoder):
    """Categorical decoder: probabilities over the LAST axis of each sample.

    Forms: ``CategoricalDecoder(decoder)`` or ``CategoricalDecoder(size_input, n_latent,
    decoder_neurons, decoder_activation, output_activation="softmax", init=...)``, which
    builds ``Chain(Dense(L, h1, a1), ..., Dense(h_k, prod(size_input), identity),
    [Reshape(-1, *size_input)], ActivationOverDims(output_activation, -1))``.
    ``size_input`` is an int (one categorical variable with that many classes) or a
    per-sample shape in this package's order whose last axis holds the classes (Julia's
    ``[K, M]`` is ``(M, K)`` here). Output: ``Categorical(p)`` (a ``Probabilities``).
    """

    _config_fields = ("decoder",)
    _heads = ("decoder",)
    output_type = Categorical
    _single_as_batch = True  # one code runs as a batch of one, so that reshaping keeps a batch axis

    @overload
    def __init__(self, decoder: nn.Module) -> None: ...

    @overload
    def __init__(self, size_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike], output_activation: ActivationLike = "softmax", *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        super().__init__()
        if is_field_form(args, kwargs, ("decoder",)):
            b = bind_arguments("CategoricalDecoder", args, kwargs, ("decoder",), 1)
            self.decoder = check_module(b["decoder"], "CategoricalDecoder", "decoder")
            self.input_shape = _latent_shape_of(self.decoder)
            return
        names = ("size_input", "n_latent", "decoder_neurons", "decoder_activation", "output_activation")
        if len(args) < 5 and "output_activation" not in kwargs:
            kwargs = dict(kwargs, output_activation="softmax")
        b = bind_arguments("CategoricalDecoder", args, kwargs, names, 5)
        size = as_sample_shape(b["size_input"], "size_input")
        hidden, n_latent = _hidden(b["n_latent"], b["decoder_neurons"], b["decoder_activation"], init)
        layers: list[nn.Module] = [*hidden, Dense(hidden[-1].out_features, int(np.prod(size)), "identity", init)]
        if len(size) > 1:
            layers.append(Reshape(-1, *size))
        layers.append(ActivationOverDims(b["output_activation"], -1))
        self.decoder = Chain(*layers)
        self.input_shape = (n_latent,)
        self.output_shape = size


class _JointDecoderBase:
    """A trunk and two heads (``μ`` and a scale)."""

    _scale_field: str

    def _construct_joint(self, cls_name: str, args: tuple, kwargs: dict, init: Any) -> None:
        fields = ("decoder", "μ", self._scale_field)
        if is_field_form(args, kwargs, fields + ("mu", "logsigma", "sigma")):
            trunk, mu, scale = bind_trunk_and_heads(cls_name, args, kwargs, "decoder", self._scale_field,
                                                    "decoder", "features")
            m_out = trailing_linear_out(mu)
            self.input_shape = _latent_shape_of(trunk)
            self.output_shape = (m_out,) if m_out is not None else None
        else:
            b = bind_arguments(cls_name, args, kwargs, _DEFAULT_NAMES, 5)
            n_input = as_sample_shape(b["n_input"], "n_input")
            hidden, n_latent = _hidden(b["n_latent"], b["decoder_neurons"], b["decoder_activation"], init)
            a_mu, a_scale = _output_pair(b["output_activation"])
            h = hidden[-1].out_features
            n_out = int(np.prod(n_input))
            heads = []
            for act in (a_mu, a_scale):
                layers: list[nn.Module] = [Dense(h, n_out, act, init)]
                if len(n_input) > 1:
                    layers.append(Reshape(-1, *n_input))
                heads.append(layers[0] if len(layers) == 1 else Chain(*layers))
            trunk, mu, scale = Chain(*hidden), heads[0], heads[1]
            self.input_shape = (n_latent,)
            self.output_shape = n_input
        self.decoder = trunk
        self.μ = mu
        setattr(self, self._scale_field, scale)

    @property
    def mu(self) -> nn.Module:
        """Alias of the ``μ`` head."""
        return self.μ


class JointGaussianLogDecoder(_JointDecoderBase, AbstractGaussianLogDecoder):
    """Gaussian decoder with a shared trunk and heads ``μ`` and ``logσ``.

    Forms: ``JointGaussianLogDecoder(decoder, μ, logσ)`` or
    ``JointGaussianLogDecoder(n_input, n_latent, decoder_neurons, decoder_activation,
    output_activation, init=...)`` with one output activation or a pair. Output:
    ``GaussianLogParams(μ, logσ)``.
    """

    _config_fields = ("decoder", "μ", "logσ")
    _trunk = "decoder"
    _heads = ("μ", "logσ")
    _scale_field = "logσ"

    @overload
    def __init__(self, decoder: nn.Module, μ: nn.Module, logσ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike],
                 output_activation: ActivationLike | tuple[ActivationLike, ActivationLike], *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLogDecoder.__init__(self)
        self._construct_joint("JointGaussianLogDecoder", args, kwargs, init)


class JointGaussianDecoder(_JointDecoderBase, AbstractGaussianLinearDecoder):
    """Gaussian decoder with a shared trunk and heads ``μ`` and ``σ`` (``σ > 0``).

    Same forms as :class:`JointGaussianLogDecoder`; e.g.
    ``output_activation=("identity", "softplus")``. Output: ``GaussianParams(μ, σ)``.
    """

    _config_fields = ("decoder", "μ", "σ")
    _trunk = "decoder"
    _heads = ("μ", "σ")
    _scale_field = "σ"

    @overload
    def __init__(self, decoder: nn.Module, μ: nn.Module, σ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, decoder_neurons: list[int],
                 decoder_activation: list[ActivationLike],
                 output_activation: ActivationLike | tuple[ActivationLike, ActivationLike], *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLinearDecoder.__init__(self)
        self._construct_joint("JointGaussianDecoder", args, kwargs, init)


class _SplitDecoderBase:
    """Two independent chains from the code: one for ``μ``, one for the scale."""

    _scale_field: str

    def _construct_split(self, cls_name: str, args: tuple, kwargs: dict, init: Any) -> None:
        s = self._scale_field
        fields = ("μ", s)
        if is_field_form(args, kwargs, fields + ("mu", "logsigma", "sigma")):
            kwargs = {("μ" if k == "mu" else s if k in ("logsigma", "sigma") else k): v for k, v in kwargs.items()}
            b = bind_arguments(cls_name, args, kwargs, fields, 2)
            mu = check_module(b["μ"], cls_name, "μ")
            scale = check_module(b[s], cls_name, s)
            l1, l2 = leading_linear_in(mu), leading_linear_in(scale)
            if l1 is not None and l2 is not None and l1 != l2:
                raise ValueError(f"{cls_name}: the μ network takes {l1} latent dimensions but the {s} network takes {l2}")
            o1, o2 = trailing_linear_out(mu), trailing_linear_out(scale)
            if o1 is not None and o2 is not None and o1 != o2:
                raise ValueError(f"{cls_name}: the μ network outputs {o1} features but the {s} network outputs {o2}")
            self.input_shape = (l1,) if l1 is not None else ((l2,) if l2 is not None else None)
            self.output_shape = (o1,) if o1 is not None else None
        else:
            ascii_s = "logσ" if s == "logσ" else "σ"
            names = ("n_input", "n_latent", "μ_neurons", "μ_activation", f"{ascii_s}_neurons", f"{ascii_s}_activation")
            aliases = {"mu_neurons": "μ_neurons", "mu_activation": "μ_activation",
                       "logsigma_neurons": "logσ_neurons", "logsigma_activation": "logσ_activation",
                       "sigma_neurons": "σ_neurons", "sigma_activation": "σ_activation"}
            kwargs = {aliases.get(k, k): v for k, v in kwargs.items()}
            b = bind_arguments(cls_name, args, kwargs, names, 6)
            n_input = as_sample_shape(b["n_input"], "n_input")
            n_out = int(np.prod(n_input))
            n_latent = as_sample_shape(b["n_latent"], "n_latent")
            if len(n_latent) != 1:
                raise ValueError(f"n_latent: expected an integer, got {n_latent}")
            branches = []
            for key in ("μ", ascii_s):
                neurons = as_int_list(b[f"{key}_neurons"], f"{key}_neurons")
                acts = as_activation_list(b[f"{key}_activation"], len(neurons), f"{key}_activation", f"{key}_neurons")
                if neurons[-1] != n_out:
                    # The last layer of each branch produces the data; its size is set to
                    # the data size (the caller's list is left untouched).
                    neurons = [*neurons[:-1], n_out]
                layers: list[nn.Module] = dense_chain([n_latent[0], *neurons], acts, init)
                if len(n_input) > 1:
                    layers.append(Reshape(-1, *n_input))
                branches.append(Chain(*layers))
            mu, scale = branches
            self.input_shape = n_latent
            self.output_shape = n_input
        self.μ = mu
        setattr(self, s, scale)

    @property
    def mu(self) -> nn.Module:
        """Alias of the ``μ`` network."""
        return self.μ


class SplitGaussianLogDecoder(_SplitDecoderBase, AbstractGaussianLogDecoder):
    """Gaussian decoder with separate networks for ``μ`` and ``logσ``.

    Forms: ``SplitGaussianLogDecoder(μ, logσ)`` or ``SplitGaussianLogDecoder(n_input,
    n_latent, μ_neurons, μ_activation, logσ_neurons, logσ_activation, init=...)``; each
    branch is ``Chain(Dense(L, n1, a1), ..., Dense(n_{k-1}, n_input, a_k))``: the last size
    of each list is replaced by ``n_input`` (the list you pass is not modified).
    """

    _config_fields = ("μ", "logσ")
    _heads = ("μ", "logσ")
    _scale_field = "logσ"

    @overload
    def __init__(self, μ: nn.Module, logσ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, μ_neurons: list[int],
                 μ_activation: list[ActivationLike], logσ_neurons: list[int], logσ_activation: list[ActivationLike],
                 *, init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLogDecoder.__init__(self)
        self._construct_split("SplitGaussianLogDecoder", args, kwargs, init)


class SplitGaussianDecoder(_SplitDecoderBase, AbstractGaussianLinearDecoder):
    """Gaussian decoder with separate networks for ``μ`` and ``σ`` (``σ > 0``).

    Forms as :class:`SplitGaussianLogDecoder` with ``σ_neurons``, ``σ_activation``.
    """

    _config_fields = ("μ", "σ")
    _heads = ("μ", "σ")
    _scale_field = "σ"

    @overload
    def __init__(self, μ: nn.Module, σ: nn.Module) -> None: ...

    @overload
    def __init__(self, n_input: int | tuple[int, ...], n_latent: int, μ_neurons: list[int],
                 μ_activation: list[ActivationLike], σ_neurons: list[int], σ_activation: list[ActivationLike],
                 *, init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        AbstractGaussianLinearDecoder.__init__(self)
        self._construct_split("SplitGaussianDecoder", args, kwargs, init)


# ----------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------

def decoder_loglikelihood(x: Any, z: Any, decoder: AbstractVariationalDecoder, decoder_output: Any,
                          index: int | None = None, **kwargs: Any) -> Any:
    """``log p(x | z)`` from a decoder's output, dispatching on the decoder type.

    ``z`` selects the form: a 1-D code is one sample (scalar result), a 2-D batch gives
    one value per sample ``(B,)``. ``z`` itself enters no formula. With ``index``, the
    log-likelihood of sample ``index`` of a batch is returned (a scalar); ``z`` may then
    be that sample's code ``(L,)`` (the reference's form) or the whole batch ``(B, L)``.
    Keywords go to the decoder's ``loglikelihood`` (``σ`` for :class:`SimpleGaussianDecoder`).
    """
    if not isinstance(decoder, AbstractVariationalDecoder):
        raise TypeError(f"decoder: expected a variational decoder (e.g. BernoulliDecoder), got {type(decoder).__name__}")
    if index is not None:
        x = x[index]
        if _batched(z):
            z = z[index]
        decoder_output = type(decoder_output)(*(f[index] for f in decoder_output))
    return decoder.loglikelihood(x, z, decoder_output, **kwargs)

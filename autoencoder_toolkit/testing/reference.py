r"""An independent float64 reference for a model's outputs and losses.

This module recomputes, in NumPy float64, what a VAE or an InfoMax-VAE built from the
standard layer types computes: the encoder's Gaussian, the reparameterised codes, the
decoder's output and log-likelihood, the KL term, the critic, the mutual-information
bound and the losses. It is written from the formulas of the InfoMax-VAE (the
reference semantics of AutoEncoderToolkit.jl), not from this package's code: it reads
a model's *structure* (which layers, in which order, their weights and the names of
their activations) and evaluates every formula itself. It never calls the package's
layers, densities, distributions or losses, so a bug there shows as a disagreement.

Layout: data are ``(B, *sample_shape)``, codes ``(B, L)``, weights ``(n_out, n_in)``
with ``y = x Wᵀ + b``; "per sample" sums run over every axis but the first. Constants:
``log 2π`` in float64 and ``ε = 2⁻²³`` (float32's machine epsilon) in the Bernoulli and
categorical log-likelihoods.

Formulas (bars are means over the batch):

* codes: ``z = μ + ε ⊙ exp(logσ)`` (log-scale encoder) or ``z = μ + ε ⊙ σ``;
* ``KL = ½ Σ (σ² + μ² − 1 − 2 log σ)`` per sample, ``log σ = logσ`` for a log-scale encoder;
* Bernoulli: ``Σ x log(p + ε) + (1 − x) log(1 − p + ε)``; categorical: ``Σ x log(p + ε)``;
* Gaussian with σ = 1: ``−½ Σ (x − μ)² − ½ D log 2π``; with a log scale:
  ``−½ Σ (x − μ)² e^{−2 logσ} − Σ logσ − ½ D log 2π``; with a scale σ:
  ``−½ Σ ((x − μ)/σ)² − Σ log σ − ½ D log 2π``;
* critic ``g(x, z) = mlp([data(x), latent(z)])``, bound
  ``Î = mean g(x, z) − mean exp(g(x, z[perm]) − 1)``;
* ``infomaxloss = −mean LL + β mean KL − α Î``; ``miloss = −Î`` (fresh noise and
  permutation); the VAE loss ``−mean LL + β mean KL``.

Covered layers: this package's ``Dense``, ``Chain``, ``Flatten``, ``Reshape`` and
``ActivationOverDims``; ``torch.nn``'s ``Linear``, ``Sequential``, ``Flatten``,
``Identity``, ``Dropout`` (in evaluation mode) and the elementwise and softmax
activation modules; the encoders ``JointGaussianLogEncoder`` and
``JointGaussianEncoder``; the seven variational decoders; ``MutualInfoChain``. Anything
else raises :class:`NotCovered` naming the layer and where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from ..models.decoders import (BernoulliDecoder, CategoricalDecoder, JointGaussianDecoder, JointGaussianLogDecoder,
                               SimpleGaussianDecoder, SplitGaussianDecoder, SplitGaussianLogDecoder)
from ..models.encoders import JointGaussianEncoder, JointGaussianLogEncoder
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.layers import ActivationOverDims, Dense, Flatten, Reshape
from ..models.vaes import VAE

__all__ = ["LOG_2PI", "EPS", "ACTIVATIONS", "NotCovered", "Reference", "LossTerms", "layer_function", "to_float64"]

LOG_2PI = math.log(2.0 * math.pi)
EPS = 2.0 ** -23

Array = np.ndarray


def to_float64(a: Any) -> Array:
    """A tensor or array as a float64 NumPy array (on the CPU)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------

def _sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    bx = beta * x
    smooth = (np.log1p(np.exp(-np.abs(bx))) + np.maximum(bx, 0.0)) / beta
    return np.where(bx > threshold, x, smooth)


def _elu(x: Array, alpha: float = 1.0) -> Array:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu_erf(x: Array) -> Array:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _leaky(x: Array, slope: float = 0.01) -> Array:
    return np.where(x > 0, x, slope * x)


def _softmax(x: Array, axis: int = -1) -> Array:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: Array, axis: int = -1) -> Array:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


#: Activation name -> float64 function (``softmax`` over the last axis).
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "elu": _elu,
    "gelu": _gelu_tanh,
    "gelu_erf": _gelu_erf,
    "silu": lambda x: x * _sigmoid(x),
    "leakyrelu": _leaky,
    "softmax": _softmax,
}


# ----------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------

class NotCovered(TypeError):
    """A layer or model the float64 reference does not cover; the message names it and where it is."""


def _chain(fns: list[Callable[[Array], Array]]) -> Callable[[Array], Array]:
    def run(x: Array) -> Array:
        for f in fns:
            x = f(x)
        return x
    return run


def _affine(weight: Array, bias: Array | None, act: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def run(x: Array) -> Array:
        y = x @ weight.T
        return act(y if bias is None else y + bias)
    return run


def _flatten(start: int, end: int) -> Callable[[Array], Array]:
    def run(x: Array) -> Array:
        if x.ndim == 1 and start == 1:  # one feature per sample, as this package's Flatten treats a 1-D input
            return x.reshape(-1, 1)
        s, e = start % x.ndim, end % x.ndim
        return x.reshape(*x.shape[:s], -1, *x.shape[e + 1:])
    return run


def _elementwise_module(module: nn.Module) -> Callable[[Array], Array] | None:
    if isinstance(module, (nn.Identity,)):
        return ACTIVATIONS["identity"]
    if isinstance(module, nn.Dropout):
        return ACTIVATIONS["identity"] if (not module.training or module.p == 0) else None
    if isinstance(module, nn.ReLU):
        return ACTIVATIONS["relu"]
    if isinstance(module, nn.Tanh):
        return np.tanh
    if isinstance(module, nn.Sigmoid):
        return _sigmoid
    if isinstance(module, nn.SiLU):
        return ACTIVATIONS["silu"]
    if isinstance(module, nn.ELU):
        return lambda x, a=float(module.alpha): _elu(x, a)
    if isinstance(module, nn.LeakyReLU):
        return lambda x, s=float(module.negative_slope): _leaky(x, s)
    if isinstance(module, nn.Softplus):
        return lambda x, b=float(module.beta), t=float(module.threshold): _softplus(x, b, t)
    if isinstance(module, nn.GELU):
        return _gelu_tanh if module.approximate == "tanh" else _gelu_erf
    if isinstance(module, nn.Softmax):
        return lambda x, d=module.dim: _softmax(x, -1 if d is None else d)
    if isinstance(module, nn.LogSoftmax):
        return lambda x, d=module.dim: _log_softmax(x, -1 if d is None else d)
    return None


def layer_function(module: nn.Module, where: str = "model") -> Callable[[Array], Array]:
    """The float64 function of a module made of covered layers (see the module documentation).

    Raises :class:`NotCovered` for any other layer, naming its type and ``where`` it is.
    """
    if isinstance(module, Dense):
        name = module.activation.name
        if name is None or name not in ACTIVATIONS:
            raise NotCovered(f"{where}: the float64 reference covers the named activations "
                             f"({', '.join(ACTIVATIONS)}); this Dense layer has {module.activation!r}")
        bias = None if module.bias is None else to_float64(module.bias)
        return _affine(to_float64(module.weight), bias, ACTIVATIONS[name])
    if isinstance(module, nn.Linear):
        bias = None if module.bias is None else to_float64(module.bias)
        return _affine(to_float64(module.weight), bias, ACTIVATIONS["identity"])
    if isinstance(module, nn.Sequential):  # this package's Chain too
        return _chain([layer_function(m, f"{where}.{i}") for i, m in enumerate(module)])
    if isinstance(module, Flatten):
        return _flatten(1, -1)
    if isinstance(module, nn.Flatten):
        return _flatten(module.start_dim, module.end_dim)
    if isinstance(module, Reshape):
        shape = tuple(module.shape)
        return lambda x: x.reshape(shape)
    if isinstance(module, ActivationOverDims):
        fns = {"softmax": _softmax, "logsoftmax": _log_softmax}
        if module.name not in fns:
            raise NotCovered(f"{where}: the float64 reference covers ActivationOverDims with softmax or "
                             f"logsoftmax, got a custom function")
        return lambda x, f=fns[module.name], d=module.dim: f(x, d)
    fn = _elementwise_module(module)
    if fn is not None:
        return fn
    raise NotCovered(f"{where}: the float64 reference does not cover {type(module).__module__}."
                     f"{type(module).__qualname__} (it covers Dense/Linear, Chain/Sequential, Flatten, Reshape, "
                     "ActivationOverDims, Identity, Dropout in evaluation mode and the activation modules)")


# ----------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------

class LossTerms(NamedTuple):
    """A loss and its terms, batch means: ``value = −loglikelihood + β kl − α mutual_info``."""

    value: float
    loglikelihood: float
    kl: float
    mutual_info: float


@dataclass
class _Encoder:
    trunk: Callable[[Array], Array]
    mu: Callable[[Array], Array]
    scale: Callable[[Array], Array]
    log_scale: bool


@dataclass
class _Decoder:
    kind: str  # "bernoulli", "categorical", "gaussian", "gaussian-log", "gaussian-scale"
    run: Callable[[Array], tuple[Array, ...]]


def _encoder_of(encoder: nn.Module, where: str) -> _Encoder:
    if isinstance(encoder, JointGaussianLogEncoder):
        return _Encoder(layer_function(encoder.encoder, f"{where}.encoder"), layer_function(encoder.μ, f"{where}.μ"),
                        layer_function(encoder.logσ, f"{where}.logσ"), True)
    if isinstance(encoder, JointGaussianEncoder):
        return _Encoder(layer_function(encoder.encoder, f"{where}.encoder"), layer_function(encoder.μ, f"{where}.μ"),
                        layer_function(encoder.σ, f"{where}.σ"), False)
    raise NotCovered(f"{where}: the float64 reference covers JointGaussianLogEncoder and JointGaussianEncoder, "
                     f"got {type(encoder).__name__}")


def _decoder_of(decoder: nn.Module, where: str) -> _Decoder:
    single = {BernoulliDecoder: "bernoulli", CategoricalDecoder: "categorical", SimpleGaussianDecoder: "gaussian"}
    for cls, kind in single.items():
        if isinstance(decoder, cls):
            f = layer_function(decoder.decoder, f"{where}.decoder")
            return _Decoder(kind, lambda z, f=f: (f(z),))
    joint = {JointGaussianLogDecoder: ("gaussian-log", "logσ"), JointGaussianDecoder: ("gaussian-scale", "σ")}
    for cls, (kind, field) in joint.items():
        if isinstance(decoder, cls):
            trunk = layer_function(decoder.decoder, f"{where}.decoder")
            mu = layer_function(decoder.μ, f"{where}.μ")
            scale = layer_function(getattr(decoder, field), f"{where}.{field}")

            def run(z: Array, trunk=trunk, mu=mu, scale=scale) -> tuple[Array, ...]:
                h = trunk(z)
                return mu(h), scale(h)
            return _Decoder(kind, run)
    split = {SplitGaussianLogDecoder: ("gaussian-log", "logσ"), SplitGaussianDecoder: ("gaussian-scale", "σ")}
    for cls, (kind, field) in split.items():
        if isinstance(decoder, cls):
            mu = layer_function(decoder.μ, f"{where}.μ")
            scale = layer_function(getattr(decoder, field), f"{where}.{field}")
            return _Decoder(kind, lambda z, mu=mu, scale=scale: (mu(z), scale(z)))
    raise NotCovered(f"{where}: the float64 reference covers the seven variational decoders (Bernoulli, Categorical, "
                     f"SimpleGaussian, JointGaussianLog, JointGaussian, SplitGaussianLog, SplitGaussian), got "
                     f"{type(decoder).__name__}")


def _per_sample(a: Array) -> Array:
    return a.reshape(a.shape[0], -1).sum(axis=1)


class Reference:
    """The float64 reference of a VAE or an InfoMax-VAE (read once, from its current weights).

    ``Reference(model)``; every method takes data as tensors or arrays (converted to
    float64) and returns float64 NumPy arrays or floats. Batches only: ``x`` is
    ``(B, *sample_shape)``, noise ``(B, L)``, a permutation ``B`` 0-based indices.
    """

    def __init__(self, model: nn.Module) -> None:
        if isinstance(model, InfoMaxVAE):
            vae, critic, prefix = model.vae, model.mi, "vae"
        elif isinstance(model, VAE):
            vae, critic, prefix = model, None, ""
        else:
            raise NotCovered(f"model: the float64 reference covers VAE and InfoMaxVAE models, got "
                             f"{type(model).__name__}")
        dot = f"{prefix}." if prefix else ""
        self._encoder = _encoder_of(vae.encoder, f"{dot}encoder")
        self._decoder = _decoder_of(vae.decoder, f"{dot}decoder")
        self.decoder_kind = self._decoder.kind
        self._critic = None
        if critic is not None:
            if not isinstance(critic, MutualInfoChain):
                raise NotCovered(f"mi: the float64 reference covers MutualInfoChain, got {type(critic).__name__}")
            self._critic = (layer_function(critic.data, "mi.data"), layer_function(critic.latent, "mi.latent"),
                            layer_function(critic.mlp, "mi.mlp"))

    # -- pieces ------------------------------------------------------------------------
    def encode(self, x: Any) -> tuple[Array, Array]:
        """The encoder's ``(μ, logσ)`` (log-scale encoder) or ``(μ, σ)``, each ``(B, L)``."""
        h = self._encoder.trunk(to_float64(x))
        return self._encoder.mu(h), self._encoder.scale(h)

    def log_sigma(self, encoded: tuple[Array, Array]) -> Array:
        """``log σ`` of an encoder output."""
        return encoded[1] if self._encoder.log_scale else np.log(encoded[1])

    def codes(self, encoded: tuple[Array, Array], noise: Any) -> Array:
        """``z = μ + noise ⊙ σ``."""
        mu, second = encoded
        sigma = np.exp(second) if self._encoder.log_scale else second
        return mu + to_float64(noise) * sigma

    def kl(self, encoded: tuple[Array, Array]) -> Array:
        """``½ Σ (σ² + μ² − 1 − 2 log σ)`` per sample, ``(B,)``."""
        mu, log_sigma = encoded[0], self.log_sigma(encoded)
        return 0.5 * _per_sample(np.exp(2.0 * log_sigma) + mu ** 2 - 1.0 - 2.0 * log_sigma)

    def decode(self, z: Any) -> tuple[Array, ...]:
        """The decoder's output fields: ``(p,)``, ``(μ,)``, ``(μ, logσ)`` or ``(μ, σ)``."""
        return self._decoder.run(to_float64(z))

    def loglikelihood(self, x: Any, decoded: tuple[Array, ...]) -> Array:
        """``log p(x | z)`` per sample, ``(B,)``, from the decoder's output."""
        x = to_float64(x)
        kind = self._decoder.kind
        if kind in ("bernoulli", "categorical"):
            p = decoded[0].reshape(x.shape)
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(x == 0, 0.0, x * np.log(p + EPS))
                if kind == "bernoulli":
                    terms = terms + np.where(x == 1, 0.0, (1.0 - x) * np.log(1.0 - p + EPS))
            return _per_sample(terms)
        mu = decoded[0].reshape(x.shape)
        d = float(np.prod(x.shape[1:]))
        if kind == "gaussian":
            return -0.5 * _per_sample((x - mu) ** 2) - 0.5 * d * LOG_2PI
        if kind == "gaussian-log":
            log_sigma = decoded[1].reshape(x.shape)
            return (-0.5 * _per_sample((x - mu) ** 2 * np.exp(-2.0 * log_sigma)) - _per_sample(log_sigma)
                    - 0.5 * d * LOG_2PI)
        sigma = decoded[1].reshape(x.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -0.5 * _per_sample(((x - mu) / sigma) ** 2) - _per_sample(np.log(sigma)) - 0.5 * d * LOG_2PI

    def critic(self, x: Any, z: Any) -> Array:
        """The critic's values ``g(x, z)``, one per sample (``mlp`` outputs flattened sample by sample)."""
        if self._critic is None:
            raise NotCovered("model: a VAE has no critic")
        data, latent, mlp = self._critic
        h = np.concatenate([data(to_float64(x)), latent(to_float64(z))], axis=-1)
        return mlp(h).reshape(-1)

    def mutual_info(self, x: Any, z: Any, perm: Any) -> float:
        """``mean g(x, z) − mean exp(g(x, z[perm]) − 1)``."""
        z = to_float64(z)
        shuffled = z[np.asarray(perm, dtype=np.int64)]
        return float(np.mean(self.critic(x, z)) - np.mean(np.exp(self.critic(x, shuffled) - 1.0)))

    # -- losses ------------------------------------------------------------------------
    def vae_loss(self, x: Any, noise: Any, *, β: float = 1.0) -> LossTerms:
        """``−mean log p(x|z) + β mean KL`` with ``z`` from ``noise``."""
        encoded = self.encode(x)
        z = self.codes(encoded, noise)
        ll = float(np.mean(self.loglikelihood(x, self.decode(z))))
        kl = float(np.mean(self.kl(encoded)))
        return LossTerms(-ll + β * kl, ll, kl, 0.0)

    def infomaxloss(self, x: Any, noise: Any, perm: Any, *, β: float = 1.0, α: float = 1.0) -> LossTerms:
        """``−mean log p(x|z) + β mean KL − α Î(x; z)`` with ``z`` from ``noise`` and the shuffle ``perm``."""
        encoded = self.encode(x)
        z = self.codes(encoded, noise)
        ll = float(np.mean(self.loglikelihood(x, self.decode(z))))
        kl = float(np.mean(self.kl(encoded)))
        mi = self.mutual_info(x, z, perm)
        return LossTerms(-ll + β * kl - α * mi, ll, kl, mi)

    def miloss(self, x: Any, noise: Any, perm: Any) -> float:
        """``−Î(x; z)`` with ``z`` from ``noise`` and the shuffle ``perm``."""
        z = self.codes(self.encode(x), noise)
        return -self.mutual_info(x, z, perm)

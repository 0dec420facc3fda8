"""Hypothesis strategies: random valid models of this package, batches that fit them, every kind of ``rng``.

Models
    :func:`encoders`, :func:`decoders` (every decoder type), :func:`vaes`,
    :func:`mutual_info_chains` and :func:`infomaxvaes` draw models built with the
    constructors' default form: sizes that fit together (the encoder's input is the
    decoder's output and the critic's data, the latent size is shared), hidden layers
    with any named activation, output activations each decoder needs (``sigmoid`` for
    Bernoulli, softmax for categorical, a positive ``softplus`` scale for the Gaussian
    decoders with ``σ``), and small random biases so that every tensor matters. Scales
    stay moderate: log-scale heads end in ``tanh`` (``|logσ| ≤ 1``) and the encoder's
    ``σ`` head in a sigmoid, so that codes and likelihoods stay where float32 rounding is
    far below the checks' tolerances (an unbounded ``logσ`` of a random network reaches
    ``exp(±30)``, where float32 results computed two ways differ in their fifth digit). A
    categorical decoder's samples are ``(M, K)`` (``M`` variables of ``K`` classes) or
    ``(K,)``; every other model's samples are ``(D,)``.

Data
    :func:`batches` draws float32 batches ``(B, *sample_shape)`` for a given model, with
    values its decoder scores (binary, one-hot or real); :func:`batch_sizes` includes the
    mutual-information bound's edge cases (2, its smallest batch, and 64, below which
    the package warns); :func:`infomaxvaes_and_batches` and :func:`vaes_and_batches` draw
    a model and a batch for it together.

Randomness
    :func:`rng_specs` (recipes: kind and seed, see :class:`~autoencoder_toolkit.testing.rngs.RNGSpec`),
    :func:`rngs` (fresh generators: torch, NumPy, Julia's MersenneTwister, Xoshiro and
    global stream) and :func:`seeds` (integers for ``seed=`` arguments).

Sizes are small by default, so that building a model and running a property takes
milliseconds: at most :data:`SMALL` (6 features, 3 latent dimensions, 2 hidden layers of
8 units, batches of 8 besides the edge cases). Pass ``sizes=Sizes(...)`` for larger ones.

Everything drawn is a function of Hypothesis's choices alone: models are initialised
from a drawn seed with torch's global generator saved and restored around them, so a
derandomized profile (such as the ``ci`` profile of this project's tests) tries the
same models every run.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from ..models.decoders import (BernoulliDecoder, CategoricalDecoder, Decoder, JointGaussianDecoder,
                               JointGaussianLogDecoder, SimpleGaussianDecoder, SplitGaussianDecoder,
                               SplitGaussianLogDecoder)
from ..models.encoders import JointGaussianEncoder, JointGaussianLogEncoder
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.vaes import VAE
from .data import as_batch, data_kind, random_biases, sample_shape_of
from .rngs import RNG_KINDS, RNGSpec

__all__ = ["Sizes", "SMALL", "HIDDEN_ACTIVATIONS", "ENCODER_KINDS", "DECODER_KINDS", "ALL_DECODER_KINDS",
           "activations", "encoders", "decoders", "vaes", "mutual_info_chains", "infomaxvaes", "batch_sizes",
           "batches", "vaes_and_batches", "infomaxvaes_and_batches", "rng_specs", "rngs", "seeds"]


@dataclass(frozen=True)
class Sizes:
    """Upper bounds of the drawn sizes.

    Attributes
    ----------
    max_features:
        Features per sample ``D`` (and the classes ``K`` of a categorical decoder, at
        least 2).
    max_latent:
        Latent dimensions ``L``.
    max_hidden:
        Units per hidden layer.
    max_depth:
        Hidden layers per network.
    max_batch:
        Batch sizes drawn besides the edge cases 2 and 64.
    """

    max_features: int = 6
    max_latent: int = 3
    max_hidden: int = 8
    max_depth: int = 2
    max_batch: int = 8

    def __post_init__(self) -> None:
        for name in ("max_features", "max_latent", "max_hidden", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 2:
            raise ValueError(f"max_batch: expected an integer of at least 2, got {self.max_batch!r}")


#: The default sizes: models that build and run in about a millisecond.
SMALL = Sizes()

#: The activations drawn for hidden layers (every named activation but softmax).
HIDDEN_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "elu", "gelu", "gelu_erf", "silu",
                      "leakyrelu")
ENCODER_KINDS = ("JointGaussianLogEncoder", "JointGaussianEncoder")
#: The variational decoders: those a VAE can use.
DECODER_KINDS = ("BernoulliDecoder", "CategoricalDecoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder",
                 "JointGaussianDecoder", "SplitGaussianLogDecoder", "SplitGaussianDecoder")
#: Every decoder type, the deterministic ``Decoder`` included.
ALL_DECODER_KINDS = DECODER_KINDS + ("Decoder",)

_SEEDS = st.integers(0, 2**31 - 1)


def _kinds(kinds: Sequence[str], known: Sequence[str], name: str) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in known]
    if not kinds or unknown:
        raise ValueError(f"{name}: expected a non-empty subset of {', '.join(known)}, got {kinds!r}")
    return kinds


@contextmanager
def _seeded(seed: int) -> Iterator[torch.Generator]:
    """Torch's global generator seeded for a model's initialisation, and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator the constructors draw from
        yield torch.Generator().manual_seed(seed + 1)


def activations(names: Sequence[str] = HIDDEN_ACTIVATIONS) -> st.SearchStrategy[str]:
    """Activation names for hidden layers."""
    return st.sampled_from(tuple(names))


@st.composite
def _hidden(draw: Any, sizes: Sizes) -> tuple[list[int], list[str]]:
    depth = draw(st.integers(1, sizes.max_depth))
    neurons = [draw(st.integers(1, sizes.max_hidden)) for _ in range(depth)]
    return neurons, [draw(activations()) for _ in range(depth)]


def _size(value: Any, strategy: st.SearchStrategy, name: str) -> st.SearchStrategy:
    if value is None:
        return strategy
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (int, tuple)):
        return st.just(value)
    raise TypeError(f"{name}: expected an integer, a shape, a strategy or None, got {type(value).__name__}")


def _sample_shape(draw: Any, decoder_kind: str, sizes: Sizes) -> tuple[int, ...]:
    if decoder_kind == "CategoricalDecoder":
        k = draw(st.integers(2, max(2, sizes.max_features)))
        m = draw(st.integers(1, max(1, min(3, sizes.max_features // k))))
        return (m, k) if m > 1 else (k,)
    return (draw(st.integers(1, sizes.max_features)),)


def _as_arg(shape: tuple[int, ...]) -> int | tuple[int, ...]:
    return shape[0] if len(shape) == 1 else shape


def _build_encoder(draw: Any, kind: str, shape: tuple[int, ...], latent: int, sizes: Sizes) -> nn.Module:
    neurons, acts = draw(_hidden(sizes))
    if kind == "JointGaussianLogEncoder":
        return JointGaussianLogEncoder(_as_arg(shape), latent, neurons, acts, ("identity", "tanh"))
    return JointGaussianEncoder(_as_arg(shape), latent, neurons, acts, ("identity", "sigmoid"))


def _build_decoder(draw: Any, kind: str, shape: tuple[int, ...], latent: int, sizes: Sizes) -> nn.Module:
    neurons, acts = draw(_hidden(sizes))
    n = _as_arg(shape)
    if kind == "BernoulliDecoder":
        return BernoulliDecoder(n, latent, neurons, acts, "sigmoid")
    if kind == "CategoricalDecoder":
        return CategoricalDecoder(n, latent, neurons, acts)
    if kind == "SimpleGaussianDecoder":
        return SimpleGaussianDecoder(n, latent, neurons, acts, "identity")
    if kind == "JointGaussianLogDecoder":
        return JointGaussianLogDecoder(n, latent, neurons, acts, ("identity", "tanh"))
    if kind == "JointGaussianDecoder":
        return JointGaussianDecoder(n, latent, neurons, acts, ("identity", "softplus"))
    if kind == "Decoder":
        return Decoder(n, latent, neurons, acts, "identity")
    scale_neurons, scale_acts = draw(_hidden(sizes))
    # the last size of each branch becomes the data size; its activation acts on the output
    if kind == "SplitGaussianLogDecoder":
        return SplitGaussianLogDecoder(n, latent, neurons, acts[:-1] + ["identity"], scale_neurons,
                                       scale_acts[:-1] + ["tanh"])
    return SplitGaussianDecoder(n, latent, neurons, acts[:-1] + ["identity"], scale_neurons,
                                scale_acts[:-1] + ["softplus"])


@st.composite
def encoders(draw: Any, n_input: Any = None, n_latent: Any = None, *, kinds: Sequence[str] = ENCODER_KINDS,
             sizes: Sizes = SMALL) -> nn.Module:
    """Gaussian encoders: ``JointGaussianLogEncoder`` (a tanh ``logσ``), ``JointGaussianEncoder`` (a sigmoid ``σ``).

    ``n_input`` (an int, a sample shape or a strategy of them) and ``n_latent`` (an int
    or a strategy) fix the sizes; by default they are drawn up to ``sizes``.
    """
    kind = draw(st.sampled_from(_kinds(kinds, ENCODER_KINDS, "kinds")))
    shape = draw(_size(n_input, st.integers(1, sizes.max_features), "n_input"))
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    latent = draw(_size(n_latent, st.integers(1, sizes.max_latent), "n_latent"))
    with _seeded(draw(_SEEDS)) as g:
        return random_biases(_build_encoder(draw, kind, shape, latent, sizes), g)


@st.composite
def decoders(draw: Any, n_input: Any = None, n_latent: Any = None, *, kinds: Sequence[str] = DECODER_KINDS,
             sizes: Sizes = SMALL) -> nn.Module:
    """Decoders of every type in ``kinds`` (default: the seven variational ones; see :data:`ALL_DECODER_KINDS`).

    ``n_input`` fixes the data's sample shape (for a categorical decoder its last axis
    holds the classes); ``n_latent`` the latent size.
    """
    kind = draw(st.sampled_from(_kinds(kinds, ALL_DECODER_KINDS, "kinds")))
    if n_input is None:
        shape = _sample_shape(draw, kind, sizes)
    else:
        drawn = draw(_size(n_input, st.integers(1, sizes.max_features), "n_input"))
        shape = (drawn,) if isinstance(drawn, int) else tuple(drawn)
    latent = draw(_size(n_latent, st.integers(1, sizes.max_latent), "n_latent"))
    with _seeded(draw(_SEEDS)) as g:
        return random_biases(_build_decoder(draw, kind, shape, latent, sizes), g)


@st.composite
def mutual_info_chains(draw: Any, n_input: Any = None, n_latent: Any = None, *, sizes: Sizes = SMALL) -> nn.Module:
    """Critics ``MutualInfoChain(size_input, n_latent, mlp_neurons, mlp_activation, "identity")``."""
    shape = draw(_size(n_input, st.integers(1, sizes.max_features), "n_input"))
    latent = draw(_size(n_latent, st.integers(1, sizes.max_latent), "n_latent"))
    neurons, acts = draw(_hidden(sizes))
    with _seeded(draw(_SEEDS)) as g:
        return random_biases(MutualInfoChain(shape, latent, neurons, acts, "identity"), g)


@st.composite
def _vae_parts(draw: Any, encoder_kinds: Sequence[str], decoder_kinds: Sequence[str],
               sizes: Sizes) -> tuple[VAE, tuple[int, ...], int]:
    decoder_kind = draw(st.sampled_from(_kinds(decoder_kinds, DECODER_KINDS, "decoder_kinds")))
    encoder_kind = draw(st.sampled_from(_kinds(encoder_kinds, ENCODER_KINDS, "encoder_kinds")))
    shape = _sample_shape(draw, decoder_kind, sizes)
    latent = draw(st.integers(1, sizes.max_latent))
    with _seeded(draw(_SEEDS)) as g:
        encoder = _build_encoder(draw, encoder_kind, shape, latent, sizes)
        decoder = _build_decoder(draw, decoder_kind, shape, latent, sizes)
        return random_biases(encoder * decoder, g), shape, latent


def vaes(*, encoder_kinds: Sequence[str] = ENCODER_KINDS, decoder_kinds: Sequence[str] = DECODER_KINDS,
         sizes: Sizes = SMALL) -> st.SearchStrategy[VAE]:
    """VAEs ``encoder * decoder`` whose encoder takes the decoder's data and shares its latent size."""
    return _vae_parts(encoder_kinds, decoder_kinds, sizes).map(lambda parts: parts[0])


@st.composite
def infomaxvaes(draw: Any, *, encoder_kinds: Sequence[str] = ENCODER_KINDS,
                decoder_kinds: Sequence[str] = DECODER_KINDS, sizes: Sizes = SMALL) -> InfoMaxVAE:
    """InfoMax-VAEs: a VAE of :func:`vaes` and a critic on the same data shape and latent size."""
    vae, shape, latent = draw(_vae_parts(encoder_kinds, decoder_kinds, sizes))
    critic = draw(mutual_info_chains(_as_arg(shape), latent, sizes=sizes))
    return InfoMaxVAE(vae, critic)


def batch_sizes(*, sizes: Sizes = SMALL, edge_cases: bool = True, min_size: int = 2) -> st.SearchStrategy[int]:
    """Batch sizes from ``min_size`` to ``sizes.max_batch``, and (``edge_cases``) 2 and 64.

    The mutual-information bound needs 2 samples at least (``min_size=1`` adds the
    invalid single-sample batch, which the losses must refuse); 64 is the size below
    which the package warns that the estimate is poor.
    """
    drawn = st.integers(min_size, max(min_size, sizes.max_batch))
    return st.one_of(st.sampled_from((2, 64)), drawn) if edge_cases else drawn


def _values(kind: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    if kind == "binary":
        return hnp.arrays(np.float32, shape, elements=st.sampled_from((0.0, 1.0)))
    if kind == "one-hot":
        classes = hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1))
        return classes.map(lambda c: np.eye(shape[-1], dtype=np.float32)[c])
    return hnp.arrays(np.float32, shape, elements=st.floats(-3.0, 3.0, width=32))


def batches(model: nn.Module, *, batch_size: Any = None, sizes: Sizes = SMALL, kind: str = "torch",
            sample_shape: tuple[int, ...] | None = None) -> st.SearchStrategy[Any]:
    """Float32 batches ``(B, *sample_shape)`` for ``model``, valued for its decoder.

    Binary values for a Bernoulli decoder, one-hot rows over the last axis for a
    categorical one, reals in ``[-3, 3]`` for a Gaussian one. ``batch_size`` is an int,
    a strategy, or ``None`` for :func:`batch_sizes`; ``kind`` is ``"torch"`` (CPU
    tensors) or ``"numpy"``; ``sample_shape`` defaults to the model's own.
    """
    shape = tuple(sample_shape) if sample_shape is not None else sample_shape_of(model)
    what = data_kind(model)
    sizes_strategy = _size(batch_size, batch_sizes(sizes=sizes), "batch_size")
    return sizes_strategy.flatmap(lambda b: _values(what, (b, *shape))).map(lambda a: as_batch(a, kind=kind))


def vaes_and_batches(**kwargs: Any) -> st.SearchStrategy[tuple[VAE, Any]]:
    """``(vae, x)``: a VAE of :func:`vaes` (same keywords, plus ``kind``) and a batch for it."""
    kind = kwargs.pop("kind", "torch")
    sizes = kwargs.get("sizes", SMALL)
    return vaes(**kwargs).flatmap(lambda m: batches(m, sizes=sizes, kind=kind).map(lambda x: (m, x)))


def infomaxvaes_and_batches(**kwargs: Any) -> st.SearchStrategy[tuple[InfoMaxVAE, Any]]:
    """``(model, x)``: an InfoMax-VAE of :func:`infomaxvaes` (same keywords, plus ``kind``) and a batch for it."""
    kind = kwargs.pop("kind", "torch")
    sizes = kwargs.get("sizes", SMALL)
    return infomaxvaes(**kwargs).flatmap(lambda m: batches(m, sizes=sizes, kind=kind).map(lambda x: (m, x)))


def rng_specs(kinds: Sequence[str] = RNG_KINDS) -> st.SearchStrategy[RNGSpec]:
    """Recipes of generators (kind and seed): ``spec.make()`` gives a fresh generator, as often as needed."""
    return st.builds(RNGSpec, st.sampled_from(_kinds(kinds, RNG_KINDS, "kinds")), _SEEDS)


def rngs(kinds: Sequence[str] = RNG_KINDS) -> st.SearchStrategy[Any]:
    """Fresh generators of every kind the package accepts as ``rng`` (see :mod:`~autoencoder_toolkit.testing.rngs`)."""
    return rng_specs(kinds).map(lambda spec: spec.make())


def seeds() -> st.SearchStrategy[int]:
    """Integers for ``seed=`` arguments (Julia's ``MersenneTwister(seed)`` shuffles)."""
    return _SEEDS

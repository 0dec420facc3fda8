"""Named tuples returned by models: forward passes, optimizer pairs, encoded data.

Field names follow the Julia package: ``μ`` (U+03BC GREEK SMALL LETTER MU; Python folds
the micro sign ``µ`` into it), ``σ``, ``z``, ``encoder``, ``decoder``, ``vae``, ``mi``.
The distributions that encoders and decoders return (``GaussianLogParams``,
``Probabilities``, ...) live in :mod:`autoencoder_toolkit.distributions` and are
re-exported here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .distributions import Bernoulli, Categorical, GaussianLogParams, GaussianMean, GaussianParams, Probabilities

__all__ = [
    "GaussianLogParams",
    "GaussianParams",
    "GaussianMean",
    "Probabilities",
    "Bernoulli",
    "Categorical",
    "VAEOutput",
    "InfoMaxVAEOutput",
    "OptimizerPair",
    "EncodedData",
]


class VAEOutput(NamedTuple):
    """A VAE forward pass with ``latent=True``: encoder output, latent sample, decoder output."""

    encoder: Any
    z: Any
    decoder: Any


class InfoMaxVAEOutput(NamedTuple):
    """An InfoMaxVAE forward pass with ``latent=True``: the VAE outputs and the MI estimate."""

    vae: VAEOutput
    mi: Any


class OptimizerPair(NamedTuple):
    """One optimizer for the VAE and one for the mutual-information network."""

    vae: Any
    mi: Any


#: Latent means and spreads of a data set (see ``encode``): the Gaussian ``(μ, σ)`` of each input.
EncodedData = GaussianParams

"""Named tuples returned by encoders, decoders and models.

Field names follow the Julia package: ``μ`` (U+03BC GREEK SMALL LETTER MU; Python folds
the micro sign ``µ`` into it), ``logσ``, ``σ`` and ``p``. ASCII aliases ``mu``,
``logsigma`` and ``sigma`` are provided as read-only properties.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "GaussianLogParams",
    "GaussianParams",
    "GaussianMean",
    "Probabilities",
    "VAEOutput",
    "InfoMaxVAEOutput",
    "OptimizerPair",
    "EncodedData",
]


class GaussianLogParams(NamedTuple):
    """Diagonal Gaussian given by its mean and log standard deviation."""

    μ: Any
    logσ: Any

    @property
    def mu(self) -> Any:
        """Alias of ``μ``."""
        return self.μ

    @property
    def logsigma(self) -> Any:
        """Alias of ``logσ``."""
        return self.logσ


class GaussianParams(NamedTuple):
    """Diagonal Gaussian given by its mean and standard deviation."""

    μ: Any
    σ: Any

    @property
    def mu(self) -> Any:
        """Alias of ``μ``."""
        return self.μ

    @property
    def sigma(self) -> Any:
        """Alias of ``σ``."""
        return self.σ


class GaussianMean(NamedTuple):
    """Gaussian with unit (or externally fixed) standard deviation: only the mean."""

    μ: Any

    @property
    def mu(self) -> Any:
        """Alias of ``μ``."""
        return self.μ


class Probabilities(NamedTuple):
    """Bernoulli or categorical probabilities ``p``."""

    p: Any


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


class EncodedData(NamedTuple):
    """Latent means and spreads of a data set (see ``encode``)."""

    μ: Any
    σ: Any

    @property
    def mu(self) -> Any:
        """Alias of ``μ``."""
        return self.μ

    @property
    def sigma(self) -> Any:
        """Alias of ``σ``."""
        return self.σ

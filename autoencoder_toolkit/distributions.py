r"""The output distributions of encoders and decoders, written once for every array kind.

An encoder maps a sample to a distribution over codes and a decoder maps a code to a
distribution over data. Each distribution here is a named tuple of its parameters, with
the Julia package's field names (``μ``, ``logσ``, ``σ``, ``p``) and ASCII aliases (``mu``,
``logsigma``, ``sigma``), and the operations the losses need. ``μ`` is U+03BC GREEK SMALL
LETTER MU; the micro sign ``µ`` (U+00B5, what Julia sources and many keyboards produce) names
the same field everywhere: ``out.µ`` (Python folds it), ``getattr(out, "µ")`` and
``out._asdict()["µ"]`` (see :func:`julia_field_name`).

=====================  ==================  ==========================================================
distribution           fields              ``log_prob(x)`` per sample (sum over a sample's elements)
=====================  ==================  ==========================================================
``GaussianLogParams``  ``μ, logσ``         :math:`-\tfrac12\sum (x-μ)^2 e^{-2\logσ} - \sum\logσ - \tfrac n2\log 2π`
``GaussianParams``     ``μ, σ``            :math:`-\tfrac12\sum ((x-μ)/σ)^2 - \sum\logσ - \tfrac n2\log 2π`
``GaussianMean``       ``μ``               :math:`-\tfrac12\sum (x-μ)^2/σ^2 - \tfrac n2(2\logσ + \log 2π)`, fixed ``σ`` (default 1)
``Bernoulli``          ``p``               :math:`\sum x\log(p+ε) + (1-x)\log(1-p+ε)`
``Categorical``        ``p``               :math:`\sum x\log(p+ε)` (probabilities over the last axis)
=====================  ==================  ==========================================================

The two Gaussians with a scale also have ``kl()``, the KL divergence to the standard
normal prior :math:`\tfrac12\sum (σ^2 + μ^2 - 1 - 2\logσ)`, and ``rsample(rng)``, a
reparameterised draw :math:`μ + ε ⊙ σ` with ``ε ~ N(0, I)`` from ``rng`` (a constant for
gradients). ``ε = eps(float32)`` and ``log 2π`` is its float32 value, as in the
reference.

Layout: batch-first. ``log_prob(x, batched=True)`` gives ``(B,)`` for a batch and a
scalar for one sample (``batched=False``); ``kl()`` reads the batch from ``μ`` (a 1-D
``μ`` is one code). The fields are NumPy arrays, torch tensors or CuPy arrays; every
method returns the same kind (the formulas are in :mod:`autoencoder_toolkit.densities`,
which also routes CuPy arrays and, under ``kernels="cupy"``, CUDA tensors to fused
kernels). ``Bernoulli`` and ``Categorical`` are both ``Probabilities``: a decoder knows
which one its ``p`` means.

A new output type is a named tuple with ``log_prob`` (and ``kl``/``rsample`` for a code
distribution) registered with :func:`register_distribution`; a decoder that returns it
then trains, saves and exports without further changes (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import densities
from .backends import array_namespace, normal_like

__all__ = [
    "julia_field_name",
    "FieldDict",
    "julia_fields",
    "GaussianLogParams",
    "GaussianParams",
    "GaussianMean",
    "Probabilities",
    "Bernoulli",
    "Categorical",
    "register_distribution",
    "distribution_class",
    "DISTRIBUTIONS",
]

#: Registered output distributions by class name (what model files record).
DISTRIBUTIONS: dict[str, type] = {}


def register_distribution(cls: type) -> type:
    """Register an output distribution class under its name (a decorator); returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"register_distribution: expected a named tuple class, got {cls!r}")
    if not callable(getattr(cls, "log_prob", None)):
        raise TypeError(f"register_distribution: {cls.__name__} has no log_prob method")
    DISTRIBUTIONS[cls.__name__] = cls
    return cls


def distribution_class(name: str) -> type:
    """The registered distribution class called ``name``; ``ValueError`` listing the known ones."""
    cls = DISTRIBUTIONS.get(name)
    if cls is None:
        raise ValueError(f"unknown output distribution {name!r}; registered: {', '.join(sorted(DISTRIBUTIONS))} "
                         "(register a new one with autoencoder_toolkit.distributions.register_distribution)")
    return cls


#: The micro sign, which Julia folds into the Greek mu in identifiers.
MICRO_SIGN = "\u00b5"
#: The Greek small letter mu of the field names.
GREEK_MU = "\u03bc"


def julia_field_name(name: str) -> str:
    """``name`` with every micro sign ``µ`` (U+00B5) replaced by the Greek ``μ`` (U+03BC).

    Julia's parser treats the two as one identifier (so ``out.µ`` and ``out.μ`` are the
    same field there), and Python folds them in source code but not in strings.
    """
    return name.replace(MICRO_SIGN, GREEK_MU) if isinstance(name, str) else name


class FieldDict(dict):
    """The ``_asdict()`` of an output: a ``dict`` whose keys may also be spelled with ``µ``."""

    def __missing__(self, key: Any) -> Any:
        folded = julia_field_name(key)
        if folded != key and dict.__contains__(self, folded):
            return dict.__getitem__(self, folded)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or dict.__contains__(self, julia_field_name(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


def _field_getattr(self: Any, name: str) -> Any:
    folded = julia_field_name(name)
    if folded != name:
        return getattr(self, folded)
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _field_asdict(self: Any) -> FieldDict:
    return FieldDict(zip(self._fields, self))


def julia_fields(cls: type) -> type:
    """Let a named tuple class take ``µ`` for ``μ`` in ``getattr`` and in its ``_asdict()`` (a decorator).

    ``typing.NamedTuple`` forbids defining ``_asdict`` in the class body, hence a decorator.
    """
    cls.__getattr__ = _field_getattr
    cls._asdict = _field_asdict
    return cls


def _draw(μ: Any, rng: Any, noise: Any) -> Any:
    """The noise of a reparameterised draw: given (checked against ``μ``) or drawn from ``rng``."""
    if noise is None:
        noise = normal_like(μ, rng)
    elif tuple(noise.shape) != tuple(μ.shape):
        raise ValueError(f"noise: expected the shape of μ {tuple(μ.shape)}, got {tuple(noise.shape)}")
    detach = getattr(noise, "detach", None)  # a constant for gradients
    return detach() if detach is not None else noise


@register_distribution
@julia_fields
class GaussianLogParams(NamedTuple):
    """Diagonal Gaussian given by its mean and log standard deviation: ``N(μ, diag exp(2 logσ))``."""

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

    @property
    def σ(self) -> Any:
        """The standard deviation ``exp(logσ)``."""
        return array_namespace(self.logσ, names=("logσ",)).exp(self.logσ)

    sigma = σ
    mean = mu

    def log_prob(self, x: Any, *, batched: bool | None = None) -> Any:
        """Log density of ``x`` (codes or data of ``μ``'s shape); ``batched`` defaults to ``μ.ndim >= 2``."""
        return densities.gaussian_loglikelihood(x, self.μ, self.logσ, kind="log",
                                                batched=self.μ.ndim >= 2 if batched is None else batched)

    def kl(self) -> Any:
        """KL divergence to ``N(0, I)``: ``½ Σ (exp(2 logσ) + μ² − 1 − 2 logσ)`` per sample."""
        return densities.gaussian_kl(self.μ, self.logσ, log=True)

    def rsample(self, rng: Any = None, *, noise: Any = None) -> Any:
        """A reparameterised draw ``μ + ε ⊙ exp(logσ)``, ``ε`` from ``rng`` (or the given ``noise``)."""
        return densities.reparameterize_with_noise(self.μ, self.logσ, _draw(self.μ, rng, noise), log=True)


@register_distribution
@julia_fields
class GaussianParams(NamedTuple):
    """Diagonal Gaussian given by its mean and standard deviation (``σ > 0``)."""

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

    mean = mu

    def log_prob(self, x: Any, *, batched: bool | None = None) -> Any:
        """Log density of ``x``; ``batched`` defaults to ``μ.ndim >= 2``."""
        return densities.gaussian_loglikelihood(x, self.μ, self.σ, kind="linear",
                                                batched=self.μ.ndim >= 2 if batched is None else batched)

    def kl(self) -> Any:
        """KL divergence to ``N(0, I)``: ``½ Σ (σ² + μ² − 1 − 2 log σ)`` per sample."""
        return densities.gaussian_kl(self.μ, self.σ, log=False)

    def rsample(self, rng: Any = None, *, noise: Any = None) -> Any:
        """A reparameterised draw ``μ + ε ⊙ σ``, ``ε`` from ``rng`` (or the given ``noise``)."""
        return densities.reparameterize_with_noise(self.μ, self.σ, _draw(self.μ, rng, noise), log=False)


@register_distribution
@julia_fields
class GaussianMean(NamedTuple):
    """Gaussian with a fixed standard deviation (default 1): only the mean ``μ``."""

    μ: Any

    @property
    def mu(self) -> Any:
        """Alias of ``μ``."""
        return self.μ

    mean = mu

    def log_prob(self, x: Any, *, batched: bool | None = None, σ: float = 1.0) -> Any:
        """Log density of ``x`` with the fixed standard deviation ``σ``."""
        return densities.gaussian_loglikelihood(x, self.μ, kind="fixed", σ=σ,
                                                batched=self.μ.ndim >= 2 if batched is None else batched)


@julia_fields
class Probabilities(NamedTuple):
    """Probabilities ``p`` of a Bernoulli or categorical variable (which one, the decoder knows)."""

    p: Any

    @property
    def mean(self) -> Any:
        """The mean of the distribution: ``p``."""
        return self.p


@register_distribution
class Bernoulli(Probabilities):
    """Independent Bernoulli variables, each 1 with probability ``p``."""

    __slots__ = ()

    def log_prob(self, x: Any, *, batched: bool | None = None) -> Any:
        """``Σ x log(p+ε) + (1−x) log(1−p+ε)``; ``batched`` defaults to ``p.ndim >= 2``."""
        return densities.bernoulli_loglikelihood(x, self.p, batched=self.p.ndim >= 2 if batched is None else batched)


@register_distribution
class Categorical(Probabilities):
    """Categorical variables with class probabilities over the last axis of ``p``."""

    __slots__ = ()

    def log_prob(self, x: Any, *, batched: bool | None = None) -> Any:
        """``Σ x log(p+ε)`` for one-hot (or soft) ``x``; ``batched`` defaults to ``p.ndim >= 2``."""
        return densities.categorical_loglikelihood(x, self.p,
                                                   batched=self.p.ndim >= 2 if batched is None else batched)

r"""The package's formulas on plain arrays: priors, posteriors, KL terms, log-likelihoods,
the reparameterisation and the mutual-information bound.

Each function is written once against the array API and accepts NumPy, torch and CuPy
arrays (all arguments of one kind; mixing kinds raises ``TypeError``), returning an
array of the same kind. Each formula asks :func:`~autoencoder_toolkit.backends.dispatch.fused_kernels`
for a fused implementation of itself: CuPy arrays of float32 or float64 go to the kernels
of :mod:`autoencoder_toolkit.backends.cupy_kernels`, and CUDA tensors to the same kernels
inside autograd when a loss runs with ``kernels="cupy"``. This module does not import
torch, so the NumPy inference models (:mod:`autoencoder_toolkit.inference`) use it in
processes without torch. The distributions of :mod:`autoencoder_toolkit.distributions`
are built on these formulas.

Layout: batch-first. A batched argument ``(B, ...)`` gives one value per sample
``(B,)``; one sample gives a scalar (a 0-d array). Sums run over every element of a
sample. ``log2π`` is the float32 value of ``log(2π)`` and ``ε`` is ``eps(float32)``.

* standard normal prior: :math:`\log p(z) = -\tfrac12\sum z^2 - \tfrac n2\log 2π`
* diagonal Gaussian, log scale ``s``:
  :math:`-\tfrac12\sum (z-μ)^2 e^{-2s} - \sum s - \tfrac n2\log 2π`; with scale ``σ``:
  :math:`-\tfrac12\sum ((z-μ)/σ)^2 - \sum\logσ - \tfrac n2\log 2π`; with a fixed scalar
  ``σ``: :math:`-\tfrac12\sum (z-μ)^2/σ^2 - \tfrac n2(2\logσ + \log 2π)`
* KL to ``N(0, I)``: :math:`\tfrac12\sum e^{2s} + μ^2 - 1 - 2s` (or with ``σ``:
  :math:`\tfrac12\sum σ^2 + μ^2 - 1 - 2\logσ`)
* Bernoulli: :math:`\sum x\log(p+ε) + (1-x)\log(1-p+ε)`; categorical: :math:`\sum x\log(p+ε)`
* reparameterisation with given noise: :math:`μ + ε ⊙ e^{s}` or :math:`μ + ε ⊙ σ`
* MI bound from critic values: :math:`\overline{g} - \overline{\exp(\tilde g - 1)}`
"""

from __future__ import annotations

import math
from typing import Any

from .backends import array_namespace
from .backends.base import same_shape
from .backends.dispatch import fused_kernels
from .constants import EPS_FLOAT32, LOG2PI

__all__ = [
    "LOG2PI",
    "EPS_FLOAT32",
    "sample_sum",
    "n_per_sample",
    "same_shape",
    "spherical_logprior",
    "gaussian_logdensity",
    "gaussian_kl",
    "bernoulli_loglikelihood",
    "categorical_loglikelihood",
    "gaussian_loglikelihood",
    "reparameterize_with_noise",
    "mutual_info_bound",
]

def sample_sum(xp: Any, a: Any, batched: bool) -> Any:
    """Sum over every axis but the first (``batched``) or over everything (one sample)."""
    if batched:
        return xp.sum(xp.reshape(a, (a.shape[0], -1)), axis=1)
    return xp.sum(a)


def n_per_sample(a: Any, batched: bool) -> int:
    """Number of elements in one sample of ``a``."""
    n = 1
    for s in (a.shape[1:] if batched else a.shape):
        n *= int(s)
    return n


# ----------------------------------------------------------------------------------
# Encoder side
# ----------------------------------------------------------------------------------

def spherical_logprior(z: Any) -> Any:
    """Log density of the standard normal prior, ``log N(z; 0, I)``.

    ``z`` of shape ``(L,)`` gives a scalar; ``(B, L)`` gives ``(B,)``.
    """
    xp = array_namespace(z, names=("z",))
    batched = z.ndim >= 2
    return -0.5 * sample_sum(xp, z * z, batched) - 0.5 * n_per_sample(z, batched) * LOG2PI


def gaussian_logdensity(z: Any, μ: Any, scale: Any, *, log: bool = True) -> Any:
    """Log density of a diagonal Gaussian at ``z``.

    ``scale`` is ``logσ`` when ``log=True`` and ``σ`` otherwise. Shapes as
    :func:`spherical_logprior`; ``z``, ``μ`` and ``scale`` must have equal shapes. This is
    :func:`gaussian_loglikelihood` with the batch read from ``z`` (2-D or more: a batch).
    """
    return _gaussian(z, μ, scale, kind="log" if log else "linear", σ=1.0, batched=z.ndim >= 2,
                     names=("z", "μ", "logσ" if log else "σ"))


def gaussian_kl(μ: Any, scale: Any, *, log: bool = True) -> Any:
    """KL divergence from ``N(μ, diag σ²)`` to ``N(0, I)``, one value per sample.

    ``scale`` is ``logσ`` (``log=True``) or ``σ``. ``(L,)`` gives a scalar, ``(B, L)``
    gives ``(B,)``.
    """
    xp = array_namespace(μ, scale, names=("μ", "logσ" if log else "σ"))
    same_shape(("μ", μ), ("logσ" if log else "σ", scale))
    batched = μ.ndim >= 2
    kernels = fused_kernels(xp, μ, scale)
    if kernels is not None:
        return kernels.gaussian_kl(μ, scale, log=log, batched=batched)
    if log:
        terms = xp.exp(2 * scale) + μ * μ - 1 - 2 * scale
    else:
        terms = scale * scale + μ * μ - 1 - 2 * xp.log(scale)
    return 0.5 * sample_sum(xp, terms, batched)


def reparameterize_with_noise(μ: Any, scale: Any, noise: Any, *, log: bool = True) -> Any:
    """``μ + noise ⊙ exp(scale)`` when ``log`` (``scale`` is ``logσ``), else ``μ + noise ⊙ scale``.

    The three arrays must have equal shapes.
    """
    xp = array_namespace(μ, scale, noise, names=("μ", "logσ" if log else "σ", "noise"))
    same_shape(("μ", μ), ("logσ" if log else "σ", scale), ("noise", noise))
    kernels = fused_kernels(xp, μ, scale, noise)
    if kernels is not None:
        return kernels.reparameterize(μ, scale, noise, log=log)
    return μ + noise * (xp.exp(scale) if log else scale)


# ----------------------------------------------------------------------------------
# Decoder side
# ----------------------------------------------------------------------------------

def bernoulli_loglikelihood(x: Any, p: Any, *, batched: bool = True) -> Any:
    """``Σ x log(p+ε) + (1−x) log(1−p+ε)`` per sample (``batched``) or in total."""
    xp = array_namespace(x, p, names=("x", "p"))
    same_shape(("p", p), ("x", x))
    kernels = fused_kernels(xp, x, p)
    if kernels is not None:
        return kernels.bernoulli_loglikelihood(x, p, batched)
    terms = x * xp.log(p + EPS_FLOAT32) + (1 - x) * xp.log(1 - p + EPS_FLOAT32)
    return sample_sum(xp, terms, batched)


def categorical_loglikelihood(x: Any, p: Any, *, batched: bool = True) -> Any:
    """``Σ x log(p+ε)`` per sample (``batched``) or in total; ``x`` is one-hot (or soft)."""
    xp = array_namespace(x, p, names=("x", "p"))
    same_shape(("p", p), ("x", x))
    return sample_sum(xp, x * xp.log(p + EPS_FLOAT32), batched)


def gaussian_loglikelihood(x: Any, μ: Any, scale: Any = None, *, kind: str = "log",
                           σ: float = 1.0, batched: bool = True) -> Any:
    """Diagonal Gaussian log-likelihood of ``x``.

    Parameters
    ----------
    kind:
        ``"log"`` (``scale`` is ``logσ``), ``"linear"`` (``scale`` is ``σ``) or
        ``"fixed"`` (no ``scale``; the scalar ``σ`` is used for every element).
    """
    if kind not in ("log", "linear", "fixed"):
        raise ValueError(f"kind: expected 'log', 'linear' or 'fixed', got {kind!r}")
    return _gaussian(x, μ, scale, kind=kind, σ=σ, batched=batched,
                     names=("x", "μ", {"log": "logσ", "linear": "σ", "fixed": "scale"}[kind]))


def _gaussian(x: Any, μ: Any, scale: Any, *, kind: str, σ: float, batched: bool, names: tuple[str, str, str]) -> Any:
    """The one diagonal-Gaussian log density; ``names`` label ``x``, ``μ`` and ``scale`` in errors."""
    x_name, mu_name, scale_name = names
    xp = array_namespace(x, μ, None if kind == "fixed" else scale, names=(x_name, mu_name, scale_name))
    if x_name == "z":  # a density of codes: shapes are checked against the codes
        same_shape((x_name, x), (mu_name, μ), (scale_name, scale))
    else:  # a likelihood of data: against the decoder's mean
        same_shape((mu_name, μ), (x_name, x))
        if kind != "fixed":
            same_shape((mu_name, μ), (scale_name, scale))
    kernels = fused_kernels(xp, x, μ, None if kind == "fixed" else scale)
    if kernels is not None:
        return kernels.gaussian_loglikelihood(x, μ, None if kind == "fixed" else scale, kind=kind, σ=σ,
                                              batched=batched)
    d = x - μ
    n = n_per_sample(μ, batched)
    if kind == "fixed":
        quad = sample_sum(xp, d * d, batched) / (σ * σ)
        return -0.5 * quad - 0.5 * n * (2 * math.log(σ) + LOG2PI)
    if kind == "log":
        quad = d * d / xp.exp(2 * scale)
        logdet = sample_sum(xp, scale, batched)
    else:
        if x_name == "z":  # codes: (z - μ)² / σ², as the encoder's log-posterior has always computed it
            quad = d * d / (scale * scale)
        else:  # data: ((x - μ) / σ)², the reference decoder's batched form
            r = d / scale
            quad = r * r
        logdet = sample_sum(xp, xp.log(scale), batched)
    return -0.5 * sample_sum(xp, quad, batched) - logdet - 0.5 * n * LOG2PI


# ----------------------------------------------------------------------------------
# The mutual-information bound
# ----------------------------------------------------------------------------------

def mutual_info_bound(g_joint: Any, g_shuffled: Any) -> Any:
    """The MI lower bound from critic values: ``mean(g_joint) − mean(exp(g_shuffled − 1))``.

    ``g_joint`` are critic values on matched pairs ``(x_b, z_b)`` and ``g_shuffled`` on
    mismatched pairs ``(x_b, z̃_b)``. NumPy, torch and CuPy arrays are accepted.
    """
    xp = array_namespace(g_joint, g_shuffled, names=("g_joint", "g_shuffled"))
    if tuple(g_joint.shape) == tuple(g_shuffled.shape):
        kernels = fused_kernels(xp, g_joint, g_shuffled)
        if kernels is not None:
            return kernels.mutual_info_bound(g_joint, g_shuffled)
    return xp.mean(g_joint) - xp.mean(xp.exp(g_shuffled - 1))

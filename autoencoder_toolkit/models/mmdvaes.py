r"""MMD-VAE (InfoVAE): a VAE whose codes are also matched to the prior by a kernel MMD.

InfoVAE (Zhao, Song & Ermon, 2018, `arXiv:1706.02262 <https://arxiv.org/abs/1706.02262>`_)
reweights the two divergences of the evidence lower bound and adds a divergence between
the *aggregated* posterior :math:`q(z) = \mathbb E_x\, q(z|x)` and the prior
:math:`p(z) = N(0, I)`, estimated with the maximum mean discrepancy (MMD). On a batch
``x`` (``(B, ...)``) with one reparameterised code ``z_b ~ q(z|x_b)`` per sample and
``M = n_latent_samples`` prior draws ``p_1..p_M ~ N(0, I)``:

.. math::
    \mathcal L = -\frac1B\sum_b \log p(x_b|z_b)
                 + (1-α)\,\frac1B\sum_b \mathrm{KL}\big(q(z|x_b)\,\|\,p(z)\big)
                 + (λ+α-1)\,\mathrm{MMD}^2\big(\{z_b\}_{b\le B}, \{p_m\}_{m\le M}\big)

``λ = 1, α = 0`` (the defaults) give the plain VAE loss: the MMD term then has weight 0
(it is still evaluated, and its prior samples still drawn). ``α = 1`` drops the KL term
and weighs the MMD by ``λ``: the "MMD-VAE" of the paper, usually trained with a large
``λ`` (tens to thousands).

Kernel and divergence (pure functions, NumPy, torch and CuPy arrays):

* :func:`gaussian_kernel`: ``K[i, j] = exp(-‖x_i − y_j‖² / (ρ² D))`` for points
  ``x`` ``(n, D)`` and ``y`` ``(m, D)``, giving ``(n, m)``. ``D`` is the number of
  coordinates of a point (the latent dimension ``L`` in the loss). ``dim_exponent=p``
  divides by ``ρ² Dᵖ`` instead: ``p = 2`` is the kernel of the InfoMax-VAE authors'
  MMD-VAE code, ``p = 0`` the textbook ``exp(-‖x − y‖² / ρ²)``; the loss takes it
  through ``kernel_kwargs={"dim_exponent": 2}``.
* :func:`mmd_div`: the biased (V-statistic) estimate of the squared MMD,
  ``mean(K(x, x)) + mean(K(y, y)) − 2 mean(K(x, y))``, where every mean runs over all
  pairs, the diagonal ``i = j`` included. It is ``≥ 0`` for a positive-definite kernel
  (it is the squared RKHS distance of the two empirical mean embeddings) and exactly 0
  for ``x = y``.

Layout. Samples are in the first axis: ``x`` is ``(B, D)`` (or ``(B, C, H, W)``), codes
``z`` are ``(B, L)`` and the prior draws are ``(M, L)``, the same memory as Julia's
``(L, B)`` and ``(L, M)``. Julia's ``gaussian_kernel(x, y; dims=2)`` (points in the
columns of a column-major matrix) is ``gaussian_kernel(x, y, dims=0)`` here (points in
the rows of the C-order matrix of the same memory), the default of both; Julia's
``dims=1`` (points in rows) is ``dims=1`` here (points in columns).

Random draws, in order, per :func:`loss` call (a ``juliarng`` stream as ``rng`` then
draws exactly what the reference draws from Julia's global generator):

1. the reparameterisation noise ``ε`` of shape ``(B, L)`` (Julia: ``randn(Float32, L, B)``);
2. the prior sample of shape ``(M, L)`` (Julia: ``randn(Float32, L, M)``), a constant
   for gradients.

:func:`logP_mmd_ratio` draws the same two, with ``M = 100`` by default; :func:`train_`
makes one :func:`loss` call, so one step draws noise, then prior samples.

Differences from AutoEncoderToolkit.jl v0.1.2 (its ``MMDVAEs`` module), each decided
here: the port does what the documentation promises where the code raises, and matches
the numbers where the code works.

1. ``loss`` and ``logP_mmd_ratio`` splat ``kernel_kwargs`` into ``mmd_div``'s own
   keywords, which has none of the kernel's, so any non-empty ``kernel_kwargs`` (for
   example ``(ρ=2f0,)``) raises a keyword ``MethodError``. Here they reach the kernel, as
   documented.
2. ``loss``'s documented signature lists ``σ::Number=1.0f0``, but the method has no such
   keyword (``MethodError``); earlier versions used it as the standard deviation of a
   fixed-scale Gaussian decoder. Here ``σ`` (alias ``sigma``) is accepted and, when given,
   passed to the reconstruction log-likelihood as ``σ=`` (the fixed standard deviation
   of a :class:`~autoencoder_toolkit.decoders.SimpleGaussianDecoder`, whose default is
   1); decoders without a fixed scale refuse it. Left out (``None``), nothing is passed:
   the reference's numbers.
3. ``gaussian_kernel``'s docstring gives ``exp(-‖x−y‖²/ρ²)``; the code (CPU and CUDA)
   also divides by ``size(x, 1)``, the number of coordinates of a point on the default
   ``dims=2`` path. The port matches the code there. With ``dims=1`` the same
   ``size(x, 1)`` is the number of *points* of ``x``, so the kernel's scale changes with
   the batch size and ``K(x, y) ≠ K(y, x)ᵀ``; the port divides by the number of
   coordinates in both layouts.
4. A single unbatched sample (a vector ``x``), and a batch of one (the reference's
   encoders drop the size-1 batch axis), give a vector of codes, which reaches
   ``Distances.pairwise`` next to a matrix with a ``dims`` keyword: a ``MethodError``.
   Here a single sample's code is a set of one point, and a batch of one stays ``(1, L)``.
5. ``kernel_kwargs`` and ``loss_kwargs`` are declared ``NamedTuple`` on the CPU path
   (``TypeError`` for a ``Dict``; the CUDA methods take both). Any mapping works here.
6. The CUDA extension's ``gaussian_kernel`` takes no ``dims`` keyword, only a ``Float32``
   ``ρ``, and does not clamp the rounding error of ``‖x‖² + ‖y‖² − 2x·y`` at 0. Here one
   implementation serves every array kind: the same expansion, clamped at 0 as
   ``Distances.pairwise`` does.
7. A ``Float64`` ``ρ`` promotes Julia's kernel, MMD and loss to ``Float64``; here they
   keep the data's dtype.
8. Documentation slips with no effect on the numbers: ``loss``'s docstring says ``λ``
   weighs "the KL divergence between q(z) and π(z)" (it weighs the MMD term, together
   with ``α``); ``train!``'s mentions a ``β`` keyword, which ``loss`` does not accept
   (here too: ``TypeError``).

This module is also reachable as ``autoencoder_toolkit.MMDVAEs`` (Julia's module name),
which, like Julia's ``MMDVAEs``, holds the encoder and decoder types and ``VAE``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..backends import array_namespace, normal_like
from ..random.draws import check_rng
from .architecture import Component
from .checks import keywords_checked, merge_alias, model_input, split_train_args, target_input
# The names Julia's MMDVAEs module brings into scope (``MMDVAEs.JointGaussianLogEncoder``, ...).
from .decoders import (BernoulliDecoder, JointGaussianDecoder, JointGaussianLogDecoder, SimpleGaussianDecoder,
                       SplitGaussianDecoder, SplitGaussianLogDecoder, decoder_loglikelihood)
from .encoders import JointGaussianLogEncoder, encoder_kl, encoder_logposterior, spherical_logprior
from .layers import Flatten
from .vaes import VAE, WithVAE, one_loss_step, reparameterize

__all__ = ["MMDVAE", "gaussian_kernel", "mmd_div", "logP_mmd_ratio", "loss", "train_",
           # Julia's MMDVAEs module holds these too
           "JointGaussianLogEncoder", "BernoulliDecoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder",
           "SplitGaussianLogDecoder", "JointGaussianDecoder", "SplitGaussianDecoder", "VAE", "Flatten",
           "reparameterize", "decoder_loglikelihood", "spherical_logprior", "encoder_logposterior", "encoder_kl"]


# ----------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------

def _as_real(value: Any, name: str) -> float:
    """A finite real number (Python, NumPy or one-element tensor/array)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
            value = float(value)
        elif isinstance(value, np.ndarray) and value.size == 1 and np.isrealobj(value):
            value = float(value)
        else:
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return v


def _resolve_real(primary: Any, alias: Any, primary_name: str, alias_name: str, default: float) -> float:
    value, name = merge_alias(primary, alias, primary_name, alias_name)
    return default if value is None else _as_real(value, name)


def _resolve_positive(primary: Any, alias: Any, primary_name: str, alias_name: str,
                      default: float | None) -> float | None:
    value, name = merge_alias(primary, alias, primary_name, alias_name)
    if value is None:
        return default
    v = _as_real(value, name)
    if not v > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return v


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_kernel(kernel: Any, kernel_kwargs: Any) -> dict[str, Any]:
    if not callable(kernel):
        raise TypeError(f"kernel: expected a function k(x, y, **kernel_kwargs) -> (n, m) array, "
                        f"got {type(kernel).__name__}")
    if kernel_kwargs is None:
        return {}
    if not isinstance(kernel_kwargs, Mapping):
        raise TypeError(f"kernel_kwargs: expected a mapping of keyword arguments for the kernel, "
                        f"got {type(kernel_kwargs).__name__}")
    return dict(kernel_kwargs)


def _point_axis(dims: Any) -> int:
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or int(dims) not in (0, 1, -1, -2):
        raise ValueError(
            "dims: expected the axis that indexes the points, 0 (points in rows, the batch-first "
            f"layout; Julia's dims=2) or 1 (points in columns; Julia's dims=1), got {dims!r}"
        )
    return int(dims) % 2


def _check_points(xp: Any, a: Any, name: str, axis: int) -> None:
    layout = "(n, D)" if axis == 0 else "(D, n)"
    if getattr(a, "ndim", None) != 2:
        raise ValueError(f"{name}: expected a 2-D array of points {layout} (dims={axis}), "
                         f"got shape {tuple(a.shape)}")
    if not xp.isdtype(a.dtype, "real floating"):
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    if a.shape[axis] == 0:
        raise ValueError(f"{name}: expected at least one point, got shape {tuple(a.shape)}")


# ----------------------------------------------------------------------------------
# Kernel and divergence (pure functions on arrays)
# ----------------------------------------------------------------------------------

@keywords_checked
def gaussian_kernel(x: Any, y: Any, *, ρ: Any = None, dims: int = 0, rho: Any = None,
                    dim_exponent: Any = 1) -> Any:
    r"""The Gaussian kernel matrix between two sets of points.

    .. math::
        K_{ij} = \exp\!\Big(-\frac{\lVert x_i - y_j\rVert^2}{ρ^2\,D^p}\Big),
        \qquad p = \text{dim\_exponent} \;(\text{default } 1)

    Parameters
    ----------
    x, y:
        Points as the rows of ``(n, D)`` and ``(m, D)`` arrays (``dims=0``, the batch-first
        layout: a batch of codes ``z`` is a set of points), or as the columns of ``(D, n)``
        and ``(D, m)`` arrays (``dims=1``). NumPy, torch or CuPy, of one kind.
    rho (ρ):
        Bandwidth, a positive number (default 1). Larger ``ρ`` gives a smoother kernel.
    dims:
        The axis that indexes the points: 0 (default; Julia's ``dims=2`` on the same
        memory) or 1 (Julia's ``dims=1``).
    dim_exponent:
        The power ``p >= 0`` of the number of coordinates ``D`` in the denominator.
        1 (default) is AutoEncoderToolkit.jl's kernel. 2 is the kernel of the InfoMax-VAE
        authors' MMD-VAE scripts, which average the squared coordinate differences and
        divide by ``D`` once more, ``exp(-mean_k (x_ik − y_jk)² / D)``; for codes of
        ``D`` dimensions it is a kernel ``D`` times wider. 0 gives the plain
        ``exp(-‖x_i − y_j‖² / ρ²)``.

    Returns
    -------
    The ``(n, m)`` kernel matrix, of the inputs' kind and (promoted) dtype.

    ``D`` is the number of coordinates of a point, in either layout. The squared distances
    are computed as ``‖x_i‖² + ‖y_j‖² − 2 x_i·y_j`` (one matrix product) and clamped at 0,
    so that rounding never yields a kernel value above 1.
    """
    xp = array_namespace(x, y, names=("x", "y"))
    ρ = _resolve_positive(ρ, rho, "ρ", "rho", 1.0)
    power = _as_real(dim_exponent, "dim_exponent")
    if power < 0:
        raise ValueError(f"dim_exponent: expected a number >= 0, got {dim_exponent!r}")
    axis = _point_axis(dims)
    _check_points(xp, x, "x", axis)
    _check_points(xp, y, "y", axis)
    if axis == 1:
        x, y = x.T, y.T
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"y: expected points with the {x.shape[1]} coordinates of x's points, got "
                         f"{y.shape[1]} (shapes {tuple(x.shape)} and {tuple(y.shape)}, dims={axis})")
    if x.dtype != y.dtype:
        dtype = xp.result_type(x, y)
        x, y = xp.astype(x, dtype), xp.astype(y, dtype)
    n_coords = int(x.shape[1])
    # ρ² in the data's precision (Julia squares a Float32 ρ in Float32).
    rho2 = float(np.float32(ρ) * np.float32(ρ)) if x.dtype == xp.float32 else ρ * ρ
    sx = xp.sum(x * x, axis=1)
    sy = xp.sum(y * y, axis=1)
    d2 = (sx[:, None] + sy[None, :]) - 2 * (x @ y.T)
    d2 = xp.clip(d2, min=0)
    scale = n_coords if power == 1 else n_coords ** power
    return xp.exp(-d2 / rho2 / scale)


@keywords_checked
def mmd_div(x: Any, y: Any, *, kernel: Callable[..., Any] = gaussian_kernel,
            kernel_kwargs: Mapping[str, Any] | None = None) -> Any:
    r"""The maximum mean discrepancy between two samples (biased estimate of MMD²).

    .. math::
        \mathrm{MMD}^2(x, y) = \overline{K(x, x)} + \overline{K(y, y)} - 2\,\overline{K(x, y)}

    where a bar is the mean over *all* entries of the kernel matrix, its diagonal
    included (the V-statistic). The value is ``≥ 0`` for a positive-definite kernel and
    exactly 0 when ``x`` and ``y`` are the same array.

    Parameters
    ----------
    x, y:
        Two sets of points, ``(n, D)`` and ``(m, D)`` for the default kernel (see
        :func:`gaussian_kernel` for ``dims``). NumPy, torch or CuPy, of one kind.
    kernel:
        ``kernel(a, b, **kernel_kwargs)`` returning the ``(len(a), len(b))`` kernel
        matrix; default :func:`gaussian_kernel`. It is called on ``(x, x)``, ``(y, y)``
        and ``(x, y)``, in that order.
    kernel_kwargs:
        Keyword arguments for ``kernel``, e.g. ``{"ρ": 2.0}``.

    Returns
    -------
    A 0-d array (scalar) of the inputs' kind.
    """
    xp = array_namespace(x, y, names=("x", "y"))
    kw = _check_kernel(kernel, kernel_kwargs)
    kxx = kernel(x, x, **kw)
    kyy = kernel(y, y, **kw)
    kxy = kernel(x, y, **kw)
    return xp.mean(kxx) + xp.mean(kyy) - 2 * xp.mean(kxy)


# ----------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------

class MMDVAE(WithVAE, Component):
    """An MMD-VAE (InfoVAE): ``MMDVAE(vae)`` around a :class:`~autoencoder_toolkit.vaes.VAE`.

    The model is the VAE itself; only the loss differs (:func:`loss`).
    ``mmdvae(x, latent=False, rng=None)`` (a tensor ``x``) is the VAE's forward pass: the
    decoder's output, or with ``latent=True`` the named tuple ``VAEOutput(encoder, z,
    decoder)``. One noise draw of ``z``'s shape is taken from ``rng``. :meth:`encode`,
    :meth:`decode`, :meth:`reconstruct` and :meth:`sample` are the VAE's.

    ``autoencoder_toolkit.setup(torch.optim.Adam, mmdvae)`` gives one optimizer over all
    the VAE's parameters.
    """

    _config_fields = ("vae",)

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"vae: expected a VAE (encoder * decoder), got {type(vae).__name__}")
        self.vae = vae

    def forward(self, x: torch.Tensor, latent: bool = False, rng: Any = None) -> Any:  # noqa: D102
        return self.vae.forward(x, latent=latent, rng=rng)


def _check_model(mmdvae: Any) -> None:
    if not isinstance(mmdvae, MMDVAE):
        hint = " (wrap it: MMDVAE(vae))" if isinstance(mmdvae, VAE) else ""
        raise TypeError(f"mmdvae: expected an MMDVAE, got {type(mmdvae).__name__}{hint}")


def _as_point_set(z: torch.Tensor) -> torch.Tensor:
    """Codes as a set of points ``(n, L)``: one unbatched code ``(L,)`` is one point."""
    if z.ndim == 1:
        return z.reshape(1, -1)
    if z.ndim > 2:
        return z.reshape(z.shape[0], -1)
    return z


def _prior_sample(q: torch.Tensor, n: int, rng: Any) -> torch.Tensor:
    """``n`` standard normal points of ``q``'s dimension, dtype and device (no gradient)."""
    like = torch.empty((n, q.shape[1]), dtype=q.dtype, device=q.device)
    return normal_like(like, rng).detach()


def _forward_terms(mmdvae: MMDVAE, x_in: torch.Tensor, x_out: torch.Tensor, n_latent_samples: int,
                   kernel: Callable, kernel_kwargs: dict, reconstruction_loglikelihood: Callable,
                   ll_kwargs: dict, rng: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Forward pass (noise draw), mean log-likelihood, prior draw and MMD, in that order."""
    vae = mmdvae.vae
    out = vae.forward(x_in, latent=True, rng=rng)
    ll = torch.mean(reconstruction_loglikelihood(x_out, out.z, vae.decoder, out.decoder, **ll_kwargs))
    q = _as_point_set(out.z)
    p = _prior_sample(q, n_latent_samples, rng)
    mmd = mmd_div(q, p, kernel=kernel, kernel_kwargs=kernel_kwargs)
    return out, ll, mmd


# ----------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------

@keywords_checked
def logP_mmd_ratio(mmdvae: MMDVAE, x: Any, *, n_latent_samples: int = 100,
                   kernel: Callable[..., Any] = gaussian_kernel,
                   kernel_kwargs: Mapping[str, Any] | None = None,
                   reconstruction_loglikelihood: Callable = decoder_loglikelihood,
                   rng: Any = None) -> torch.Tensor:
    r"""``|⟨log p(x|z)⟩ / MMD²(z, p)|``: the scale of the reconstruction term against the MMD.

    One forward pass (noise ``(B, L)``), the batch mean of the reconstruction
    log-likelihood, then ``n_latent_samples`` prior draws ``(M, L)`` and the MMD between
    the codes and them (:func:`mmd_div`). A guide for choosing ``λ`` so that the MMD term
    is not swamped by the reconstruction term. Returns a 0-d tensor (``inf`` when the
    MMD estimate is 0).
    """
    _check_model(mmdvae)
    x_t = model_input(mmdvae, x, "x")
    n = _check_count(n_latent_samples, "n_latent_samples")
    kw = _check_kernel(kernel, kernel_kwargs)
    check_rng(rng)
    _, ll, mmd = _forward_terms(mmdvae, x_t, x_t, n, kernel, kw, reconstruction_loglikelihood, {}, rng)
    return torch.abs(ll / mmd)


def _loss_impl(mmdvae: MMDVAE, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *,
               σ: Any = None, λ: Any = None, α: Any = None, n_latent_samples: int = 50,
               kernel: Callable[..., Any] = gaussian_kernel, kernel_kwargs: Mapping[str, Any] | None = None,
               reconstruction_loglikelihood: Callable = decoder_loglikelihood,
               kl_divergence: Callable = encoder_kl, rng: Any = None,
               sigma: Any = None, lambda_: Any = None, alpha: Any = None) -> torch.Tensor:
    """:func:`loss` on data already converted and checked (keywords are still checked)."""
    λ = _resolve_real(λ, lambda_, "λ", "lambda_", 1.0)
    α = _resolve_real(α, alpha, "α", "alpha", 0.0)
    σ = _resolve_positive(σ, sigma, "σ", "sigma", None)
    n = _check_count(n_latent_samples, "n_latent_samples")
    kw = _check_kernel(kernel, kernel_kwargs)
    check_rng(rng)
    ll_kwargs = {} if σ is None else {"σ": σ}
    out, ll, mmd = _forward_terms(mmdvae, x_in, x_in if x_out is None else x_out, n, kernel, kw,
                                  reconstruction_loglikelihood, ll_kwargs, rng)
    kl = torch.mean(kl_divergence(mmdvae.vae.encoder, out.encoder))
    return -ll + (1 - α) * kl + (λ + α - 1) * mmd


_LOSS_KEYWORDS = ("σ", "sigma", "λ", "lambda_", "α", "alpha", "n_latent_samples", "kernel", "kernel_kwargs",
                  "reconstruction_loglikelihood", "kl_divergence", "rng")


@keywords_checked
def loss(mmdvae: MMDVAE, x_in: Any, x_out: Any = None, *, σ: float | None = None,
         λ: float | None = None, α: float | None = None, n_latent_samples: int = 50,
         kernel: Callable[..., Any] = gaussian_kernel, kernel_kwargs: Mapping[str, Any] | None = None,
         reconstruction_loglikelihood: Callable = decoder_loglikelihood,
         kl_divergence: Callable = encoder_kl, rng: Any = None,
         sigma: float | None = None, lambda_: float | None = None,
         alpha: float | None = None) -> torch.Tensor:
    r"""The InfoVAE loss of an MMD-VAE on a batch, as a 0-d tensor.

    .. math::
        \mathcal L = -\overline{\log p(x_{out}|z)} + (1-α)\,\overline{\mathrm{KL}(q(z|x_{in})\,\|\,p(z))}
                     + (λ+α-1)\,\mathrm{MMD}^2(z, p)

    Bars are means over the batch; ``z`` ``(B, L)`` is one reparameterised code per
    sample of ``x_in``; ``p`` ``(M, L)`` are ``M = n_latent_samples`` standard normal draws
    (constants for gradients); the MMD is :func:`mmd_div` with ``kernel``. ``loss(mmdvae,
    x)`` reconstructs ``x``; ``loss(mmdvae, x_in, x_out)`` scores against ``x_out``. One
    unbatched sample ``x`` (``input_shape``) counts as a batch of one.

    Parameters
    ----------
    lambda_ (λ):
        With ``α``, the weight ``λ + α − 1`` of the MMD term; default 1.
    alpha (α):
        Moves weight from the KL term (``1 − α``) to the MMD term; default 0. Any finite
        real numbers are accepted, as in the reference (``1 − α`` or ``λ + α − 1`` may be
        negative).
    sigma (σ):
        When given, passed as ``σ=`` to ``reconstruction_loglikelihood``: the fixed
        standard deviation of a ``SimpleGaussianDecoder``. Default: not passed.
    n_latent_samples:
        Number ``M`` of prior draws for the MMD (default 50).
    kernel, kernel_kwargs:
        As in :func:`mmd_div` (default :func:`gaussian_kernel`; e.g. ``{"ρ": 2.0}``, or
        ``{"dim_exponent": 2}`` for the InfoMax-VAE authors' ``exp(-‖z − p‖² / L²)``).
    reconstruction_loglikelihood:
        ``f(x, z, decoder, decoder_output, **kw) -> (B,)``; default
        :func:`~autoencoder_toolkit.decoders.decoder_loglikelihood`.
    kl_divergence:
        ``f(encoder, encoder_output) -> (B,)``; default :func:`~autoencoder_toolkit.encoders.encoder_kl`.
    rng:
        Source of the draws, in order: the noise ``(B, L)``, then the prior sample
        ``(M, L)`` (see :mod:`autoencoder_toolkit.random.draws`).
    """
    _check_model(mmdvae)
    x_in_t = model_input(mmdvae, x_in, "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else target_input(mmdvae.vae, x_out, x_in_t)
    return _loss_impl(mmdvae, x_in_t, x_out_t, σ=σ, λ=λ, α=α, n_latent_samples=n_latent_samples,
                      kernel=kernel, kernel_kwargs=kernel_kwargs,
                      reconstruction_loglikelihood=reconstruction_loglikelihood,
                      kl_divergence=kl_divergence, rng=rng, sigma=sigma, lambda_=lambda_, alpha=alpha)


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

@keywords_checked
def train_(mmdvae: MMDVAE, x: Any, *args: Any, loss_function: Callable = loss,
           loss_kwargs: Mapping[str, Any] | None = None, verbose: bool = False,
           loss_return: bool = False, rng: Any = None) -> float | None:
    """One optimisation step of an MMD-VAE, in place: ``train_(mmdvae, x, opt)`` or
    ``train_(mmdvae, x_in, x_out, opt)``.

    Computes ``loss_function(mmdvae, x, **loss_kwargs)`` (or with ``x_in, x_out``), its
    gradient with respect to every parameter of the model, and takes one step of ``opt``
    (a ``torch.optim.Optimizer``, e.g. ``autoencoder_toolkit.setup(torch.optim.Adam,
    mmdvae)``). ``loss_kwargs`` is any mapping (e.g. ``{"λ": 100.0, "α": 1.0}``);
    ``rng``, if given, is passed to the loss unless ``loss_kwargs`` names one.

    Returns the loss before the step as a float when ``loss_return`` (nothing printed);
    otherwise prints ``Loss: ...`` when ``verbose`` and returns ``None``.

    Raises
    ------
    FloatingPointError
        If the loss or its gradient is NaN or infinite; parameters and optimizer state are
        unchanged.
    """
    x_out, opt = split_train_args(args, "train_")
    _check_model(mmdvae)
    return one_loss_step(mmdvae, mmdvae.vae, x, x_out, opt, "mmdvae", loss_function, loss, _loss_impl,
                         _LOSS_KEYWORDS, loss_kwargs, rng, "the MMD-VAE loss", loss_return, verbose)

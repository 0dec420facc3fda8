r"""InfoMax VAE: a VAE trained to keep its codes informative about the data.

A critic network :math:`g(x, z)` (:class:`MutualInfoChain`) gives the f-divergence
(NWJ) lower bound on the mutual information between data and codes,

.. math::
    \hat I(x; z) = \frac1B\sum_b g(x_b, z_b) - \frac1B\sum_b \exp\big(g(x_b, \tilde z_b) - 1\big),

where :math:`\tilde z` is ``z`` with its samples permuted across the batch
(:func:`shuffle_latent`). Two losses are minimised in turn:

* the VAE loss :math:`-\overline{\log p(x|z)} + β\,\overline{\mathrm{KL}} - α\,\hat I
  + \text{reg\_strength}\cdot\text{reg}` (:func:`infomaxloss`), with respect to the
  encoder and decoder only. The shuffled codes are a constant: the second term of
  :math:`\hat I` changes the loss value but gives the VAE no gradient;
* the critic loss :math:`-\hat I` (:func:`miloss`), with respect to the critic only.

:func:`train_` takes one step of each, in the reference's order: the VAE step first,
then the critic step on a fresh forward pass of the updated VAE.

Layout: ``x`` is ``(B, *sample_shape)``, ``z`` is ``(B, L)``; the MI bound needs a
batch (at least 2 samples, 64 or more recommended).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..random import draws as _random
from .construction import (CheckedModule, as_activation_list, as_int_list, as_sample_shape, bind_arguments,
                           call_unchecked, leading_linear_in, trailing_linear_out)
from .checks import as_model_input, check_finite, check_mi_batch, check_weight, module_device_dtype, n_samples_of
from ..backends import array_namespace
from .decoders import decoder_loglikelihood
from ..densities import mutual_info_bound
from .encoders import encoder_kl
from .layers import Chain, Dense, Flatten, dense_chain, glorot_uniform
from ..outputs import InfoMaxVAEOutput, OptimizerPair, VAEOutput
from .step import Update, raise_non_finite_gradient, read_step
from .vaes import VAE, _data, _split_train_args, _target, check_loss_value, resolve_weight

__all__ = [
    "MutualInfoChain",
    "InfoMaxVAE",
    "shuffle_latent",
    "mutual_info_bound",
    "variational_mutual_info",
    "infomaxloss",
    "miloss",
    "train_",
]


# ----------------------------------------------------------------------------------
# The critic
# ----------------------------------------------------------------------------------

class MutualInfoChain(CheckedModule):
    """The critic ``g(x, z) = mlp([data(x), latent(z)])``, one value per sample.

    Forms:

    * ``MutualInfoChain(data, latent, mlp)`` with any modules: ``data`` maps ``x`` to
      ``(B, d)`` features, ``latent`` maps ``z`` to ``(B, l)``, and ``mlp`` maps their
      concatenation ``(B, d + l)`` to ``(B, 1)``;
    * ``MutualInfoChain(size_input, n_latent, mlp_neurons, mlp_activation,
      output_activation, init=glorot_uniform)``: ``data = Dense(n, n)`` with
      ``n = prod(size_input)`` (preceded by ``Flatten()`` when ``size_input`` is a shape
      such as ``(1, 28, 28)``), ``latent = Dense(n_latent, n_latent)`` (identity
      activations, trainable affine maps), and ``mlp = Chain(Dense(n + n_latent, m1, a1),
      ..., Dense(m_k, 1, output_activation))``.

    ``mi(x, z)`` returns ``(B,)`` critic values. An ``mlp`` ending in ``k > 1`` units
    gives ``(B*k,)`` values, flattened sample by sample.
    """

    _config_fields = ("data", "latent", "mlp")

    def __init__(self, *args: Any, init: Callable[..., torch.Tensor] | str = glorot_uniform, **kwargs: Any) -> None:
        super().__init__()
        if any(k in ("data", "latent", "mlp") for k in kwargs) or (args and isinstance(args[0], nn.Module)):
            b = bind_arguments("MutualInfoChain", args, kwargs, ("data", "latent", "mlp"), 3)
            for field in ("data", "latent", "mlp"):
                if not isinstance(b[field], nn.Module):
                    raise TypeError(f"MutualInfoChain: field {field!r} must be a torch.nn.Module, "
                                    f"got {type(b[field]).__name__}")
            data, latent, mlp = b["data"], b["latent"], b["mlp"]
            d_out, l_out, m_in = trailing_linear_out(data), trailing_linear_out(latent), leading_linear_in(mlp)
            if d_out is not None and l_out is not None and m_in is not None and d_out + l_out != m_in:
                raise ValueError(
                    f"MutualInfoChain: mlp expects {m_in} input features but data and latent layers "
                    f"give {d_out} + {l_out} = {d_out + l_out}"
                )
            n_in = leading_linear_in(data)
            self.input_shape = (n_in,) if n_in is not None else None
            n_lat = leading_linear_in(latent)
            self.latent_dim = n_lat
        else:
            names = ("size_input", "n_latent", "mlp_neurons", "mlp_activation", "output_activation")
            b = bind_arguments("MutualInfoChain", args, kwargs, names, 5)
            shape = as_sample_shape(b["size_input"], "size_input")
            n_latent = as_sample_shape(b["n_latent"], "n_latent")
            if len(n_latent) != 1:
                raise ValueError(f"n_latent: expected an integer, got {b['n_latent']!r}")
            n_latent_i = n_latent[0]
            neurons = as_int_list(b["mlp_neurons"], "mlp_neurons")
            acts = as_activation_list(b["mlp_activation"], len(neurons), "mlp_activation", "mlp_neurons")
            n_in = int(np.prod(shape))
            # Built in the reference's order: mlp, then data layer, then latent layer.
            mlp = Chain(*dense_chain([n_in + n_latent_i, *neurons], acts, init),
                        Dense(neurons[-1], 1, b["output_activation"], init))
            data_dense = Dense(n_in, n_in, "identity", init)
            data = data_dense if len(shape) == 1 else Chain(Flatten(), data_dense)
            latent = Dense(n_latent_i, n_latent_i, "identity", init)
            self.input_shape = shape
            self.latent_dim = n_latent_i
        self.data = data
        self.latent = latent
        self.mlp = mlp

    def __call__(self, x: Any, z: Any) -> torch.Tensor:  # type: ignore[override]
        x_t = self._check_input(x, "x")
        device, dtype = module_device_dtype(self)
        z_t = as_model_input(z, "z", device, dtype)
        if z_t.ndim != 2:
            raise ValueError(f"z: expected a batch of codes (B, L), got shape {tuple(z_t.shape)}")
        if self.latent_dim is not None and z_t.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected {self.latent_dim} latent dimensions, got shape {tuple(z_t.shape)}")
        if x_t.shape[0] != z_t.shape[0]:
            raise ValueError(f"z: expected {x_t.shape[0]} codes (one per sample of x), got {z_t.shape[0]}")
        check_finite(z_t, "z")
        return nn.Module.__call__(self, x_t, z_t)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.cat([call_unchecked(self.data, x), call_unchecked(self.latent, z)], dim=-1)
        return call_unchecked(self.mlp, h).reshape(-1)

    def to_backend(self, backend: str = "numpy", *, device: Any = None) -> Any:
        """A frozen copy for inference on ``backend`` (``"numpy"``, ``"cupy"``): see :mod:`autoencoder_toolkit.inference`."""
        from ..inference.frozen import to_backend

        return to_backend(self, backend, device=device)


# ----------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------

class InfoMaxVAE(CheckedModule):
    """A VAE with its mutual-information critic: ``InfoMaxVAE(vae, mi)``.

    ``model(x, latent=False, seed=None, rng=None)`` runs the VAE and returns the
    decoder's output; with ``latent=True`` it returns ``InfoMaxVAEOutput(vae, mi)``: the
    VAE's ``(encoder, z, decoder)`` outputs and the MI estimate on a shuffle of ``z``.
    """

    _config_fields = ("vae", "mi")

    def __init__(self, vae: VAE, mi: MutualInfoChain) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"vae: expected a VAE (encoder * decoder), got {type(vae).__name__}")
        if not isinstance(mi, MutualInfoChain):
            raise TypeError(f"mi: expected a MutualInfoChain, got {type(mi).__name__}")
        lv, lm = vae.latent_dim, mi.latent_dim
        if lv is not None and lm is not None and lv != lm:
            raise ValueError(f"mi: the critic takes {lm} latent dimensions but the VAE produces {lv}")
        sv, sm = vae.input_shape, mi.input_shape
        if sv is not None and sm is not None and int(np.prod(sv)) != int(np.prod(sm)):
            raise ValueError(f"mi: the critic takes inputs of shape {sm} but the VAE encodes {sv}")
        self.vae = vae
        self.mi = mi

    @property
    def input_shape(self) -> tuple[int, ...] | None:  # type: ignore[override]
        """Per-sample shape of the data, when known."""
        return self.vae.input_shape

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions, when known."""
        return self.vae.latent_dim

    def to_backend(self, backend: str = "numpy", *, device: Any = None) -> Any:
        """A frozen copy for inference on ``backend`` (``"numpy"``, ``"cupy"``): see :mod:`autoencoder_toolkit.inference`."""
        from ..inference.frozen import to_backend

        return to_backend(self, backend, device=device)

    def __call__(self, x: Any, latent: bool = False, seed: int | None = None, rng: Any = None) -> Any:  # type: ignore[override]
        x_t = self._check_input(x)
        _random.check_rng(rng)
        if latent:
            check_mi_batch(n_samples_of(x_t, self.input_shape))
        return nn.Module.__call__(self, x_t, latent=latent, seed=seed, rng=rng)

    def forward(self, x: torch.Tensor, latent: bool = False, seed: int | None = None, rng: Any = None) -> Any:  # noqa: D102
        if not latent:
            return self.vae.forward(x, latent=False, rng=rng)
        vo = self.vae.forward(x, latent=True, rng=rng)
        z_shuffle = _shuffle(vo.z.detach(), seed, rng)
        mi = _mi_from_critic(self.mi, x, vo.z, z_shuffle)
        return InfoMaxVAEOutput(vo, mi)


# ----------------------------------------------------------------------------------
# Shuffles and the bound
# ----------------------------------------------------------------------------------

def _shuffle(z: Any, seed: Any, rng: Any) -> Any:
    return _random.shuffle_rows(z, rng=rng, seed=seed)


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")


def shuffle_latent(z: Any, seed: int | None = None, rng: Any = None) -> Any:
    """Permute the samples of a batch of codes, keeping each code whole.

    ``z`` is ``(B, L)``; the result is ``z[perm]`` for a uniformly random permutation
    ``perm`` of ``0..B-1``. A code may stay in place (this is not a derangement).

    With ``seed=k`` the permutation is Julia's ``shuffle(MersenneTwister(k), 1:B)`` (made
    0-based), so the same seed gives the permutation the reference was meant to give;
    otherwise it is drawn from ``rng`` (see :mod:`autoencoder_toolkit._random`). NumPy,
    torch and CuPy arrays are accepted; the result is a new array of the same kind.
    """
    array_namespace(z, names=("z",))
    if getattr(z, "ndim", None) != 2:
        raise ValueError(
            f"z: expected a batch of codes (B, L) to shuffle across samples, got shape {tuple(z.shape)}"
        )
    _check_seed(seed)
    _random.check_rng(rng)
    return _shuffle(z, seed, rng)


def _mi_from_critic(mi: MutualInfoChain, x: torch.Tensor, z: torch.Tensor, z_shuffle: torch.Tensor,
                    bound: Callable = mutual_info_bound) -> torch.Tensor:
    return bound(call_unchecked(mi, x, z), call_unchecked(mi, x, z_shuffle))


def variational_mutual_info(model: Any, x: Any, z: Any = None, z_shuffle: Any = None, *,
                            seed: int | None = None, rng: Any = None) -> torch.Tensor:
    """The variational (NWJ) lower bound on the mutual information between ``x`` and ``z``.

    Forms:

    * ``variational_mutual_info(mi, x, z, z_shuffle)`` with a :class:`MutualInfoChain`;
    * ``variational_mutual_info(model, x, z, z_shuffle)`` with an :class:`InfoMaxVAE`
      (its critic is used);
    * ``variational_mutual_info(model, x, seed=None, rng=None)``: encodes ``x`` with the
      model's VAE (one noise draw), shuffles the codes (one permutation) and evaluates
      the bound.

    Returns a 0-d tensor.
    """
    _check_seed(seed)
    _random.check_rng(rng)
    if isinstance(model, InfoMaxVAE):
        critic = model.mi
    elif isinstance(model, MutualInfoChain):
        critic = model
    else:
        raise TypeError(f"model: expected a MutualInfoChain or an InfoMaxVAE, got {type(model).__name__}")
    if z is None and z_shuffle is None:
        if not isinstance(model, InfoMaxVAE):
            raise TypeError("variational_mutual_info(mi, x) needs codes: pass (mi, x, z, z_shuffle), "
                            "or an InfoMaxVAE to encode x itself")
        x_t = _data(model.vae, x, "x")
        check_mi_batch(n_samples_of(x_t, model.vae.input_shape))
        vo = model.vae.forward(x_t, latent=True, rng=rng)
        return _mi_from_critic(critic, x_t, vo.z, _shuffle(vo.z.detach(), seed, rng))
    if z is None or z_shuffle is None:
        raise TypeError("variational_mutual_info: pass both z and z_shuffle, or neither")
    device, dtype = module_device_dtype(critic)
    x_t = critic._check_input(x, "x")
    z_t = as_model_input(z, "z", device, dtype)
    zs_t = as_model_input(z_shuffle, "z_shuffle", device, dtype)
    if tuple(zs_t.shape) != tuple(z_t.shape):
        raise ValueError(f"z_shuffle: expected the shape of z {tuple(z_t.shape)}, got {tuple(zs_t.shape)}")
    if z_t.ndim != 2 or z_t.shape[0] != x_t.shape[0]:
        raise ValueError(f"z: expected a batch of codes ({x_t.shape[0]}, L) matching x, got {tuple(z_t.shape)}")
    check_mi_batch(z_t.shape[0], "z")
    return _mi_from_critic(critic, x_t, z_t, zs_t)


# ----------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------

def _check_pair(vae: Any, mi: Any) -> None:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
    if not isinstance(mi, MutualInfoChain):
        raise TypeError(f"mi: expected a MutualInfoChain, got {type(mi).__name__}")


def _check_n_samples(n_samples: Any) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
    return int(n_samples)


def _infomaxloss_impl(vae: VAE, mi: MutualInfoChain, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *,
                      β: Any = None, α: Any = None, n_samples: int = 1,
                      reconstruction_loglikelihood: Callable = decoder_loglikelihood,
                      kl_divergence: Callable = encoder_kl, regularization: Callable | None = None,
                      reg_strength: Any = 1.0, seed: int | None = None, rng: Any = None,
                      beta: Any = None, alpha: Any = None, kernels: Any = None) -> torch.Tensor:
    β = resolve_weight(β, beta, "β", "beta", 1.0)
    α = resolve_weight(α, alpha, "α", "alpha", 1.0)
    reg_strength = check_weight(reg_strength, "reg_strength")
    n_samples = _check_n_samples(n_samples)
    _check_seed(seed)
    _random.check_rng(rng)
    x_out = x_in if x_out is None else x_out
    # One permutation stream for all latent draws: MersenneTwister(seed) when seeded.
    shuffle_rng = rng
    if seed is not None:
        from ..random import juliarng

        shuffle_rng = juliarng.MersenneTwister(int(seed), julia=juliarng.DEFAULT_JULIA)
    bound = mutual_info_bound
    if kernels is not None:  # the per-sample terms and the bound through the fused CuPy kernels
        from ..backends.torch_bridge import kernel_functions

        kf = kernel_functions(kernels, x_in, x_out, reconstruction_loglikelihood=reconstruction_loglikelihood,
                              kl_divergence=kl_divergence)
        reconstruction_loglikelihood, kl_divergence, bound = kf.loglikelihood, kf.kl, kf.bound
    enc = call_unchecked(vae.encoder, x_in)
    kl = torch.mean(kl_divergence(vae.encoder, enc))
    ll_total = 0.0
    mi_total = 0.0
    reg_total = 0.0
    for _ in range(n_samples):
        z = vae.encoder.reparameterize(enc, rng=rng) if kernels is None else kf.reparameterize(vae.encoder, enc, rng)
        dec = call_unchecked(vae.decoder, z)
        ll_total = ll_total + torch.mean(reconstruction_loglikelihood(x_out, z, vae.decoder, dec))
        z_shuffle = _shuffle(z.detach(), None, shuffle_rng)
        mi_total = mi_total + _mi_from_critic(mi, x_in, z, z_shuffle, bound)
        if regularization is not None:
            reg_total = reg_total + regularization(VAEOutput(enc, z, dec))
    value = -ll_total / n_samples + β * kl - α * (mi_total / n_samples)
    if regularization is not None:
        value = value + reg_strength * (reg_total / n_samples)
    return value


def infomaxloss(vae: VAE, mi: MutualInfoChain, x_in: Any, x_out: Any = None, *,
                β: float | None = None, α: float | None = None, n_samples: int = 1,
                reconstruction_loglikelihood: Callable = decoder_loglikelihood,
                kl_divergence: Callable = encoder_kl, regularization: Callable | None = None,
                reg_strength: float = 1.0, seed: int | None = None, rng: Any = None,
                beta: float | None = None, alpha: float | None = None, kernels: str | None = None) -> torch.Tensor:
    r"""The InfoMax-VAE loss of the VAE, as a 0-d tensor.

    .. math::
        \mathcal L = -\frac1S\sum_s \overline{\log p(x_{out}|z_s)} + β\,\overline{\mathrm{KL}}
                     - α\,\frac1S\sum_s \hat I(x_{in}; z_s) + \text{reg\_strength}\cdot\text{reg}

    where bars are means over the batch, ``z_s`` are ``S = n_samples`` reparameterised
    draws (each followed by its own permutation for :math:`\hat I`), and the MI term
    always uses ``x_in``. ``infomaxloss(vae, mi, x)`` reconstructs ``x``;
    ``infomaxloss(vae, mi, x_in, x_out)`` scores against ``x_out``.

    Parameters
    ----------
    β (``beta``), α (``alpha``):
        Weights of the KL and MI terms (default 1).
    n_samples:
        Number of latent draws averaged over (default 1, the reference's only case).
    reconstruction_loglikelihood, kl_divergence:
        As in :func:`autoencoder_toolkit.vaes.loss`.
    regularization, reg_strength:
        Optional ``regularization(VAEOutput) -> scalar``, averaged over the draws.
    seed:
        Shuffle with Julia's ``MersenneTwister(seed)``; ``rng`` then only gives the noise.
    rng:
        Source of the noise and (without ``seed``) of the permutations. Per draw the
        order is: noise, then permutation.
    kernels:
        ``None`` or ``"cupy"``: the reparameterisation, log-likelihood, KL and MI bound
        run as fused CuPy kernels inside autograd (the model must be on CUDA); see
        :mod:`autoencoder_toolkit.backends.torch_bridge`.

    The critic is treated as fixed by :func:`train_`, which differentiates with respect
    to the VAE only; the shuffled codes are detached, so their term gives no gradient.
    """
    _check_pair(vae, mi)
    x_in_t = _data(vae, x_in, "x_in" if x_out is not None else "x")
    check_mi_batch(n_samples_of(x_in_t, vae.input_shape), "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else _target(vae, x_out, x_in_t)
    return _infomaxloss_impl(vae, mi, x_in_t, x_out_t, β=β, α=α, n_samples=n_samples,
                             reconstruction_loglikelihood=reconstruction_loglikelihood,
                             kl_divergence=kl_divergence, regularization=regularization,
                             reg_strength=reg_strength, seed=seed, rng=rng, beta=beta, alpha=alpha,
                             kernels=kernels)


def _miloss_impl(vae: VAE, mi: MutualInfoChain, x: torch.Tensor, *, regularization: Callable | None = None,
                 reg_strength: Any = 1.0, seed: int | None = None, rng: Any = None,
                 kernels: Any = None) -> torch.Tensor:
    reg_strength = check_weight(reg_strength, "reg_strength")
    _check_seed(seed)
    _random.check_rng(rng)
    with torch.no_grad():
        vo = vae.forward(x, latent=True, rng=rng)
    z_shuffle = _shuffle(vo.z, seed, rng)
    bound = mutual_info_bound
    if kernels is not None:
        from ..backends.torch_bridge import kernel_functions

        bound = kernel_functions(kernels, x).bound
    value = -_mi_from_critic(mi, x, vo.z, z_shuffle, bound)
    if regularization is not None:
        value = value + reg_strength * regularization(vo)
    return value


def miloss(vae: VAE, mi: MutualInfoChain, x: Any, *, regularization: Callable | None = None,
           reg_strength: float = 1.0, seed: int | None = None, rng: Any = None,
           kernels: str | None = None) -> torch.Tensor:
    """The critic's loss ``−Î(x; z)`` (plus an optional regulariser), as a 0-d tensor.

    Runs a fresh forward pass of the VAE (one noise draw; the VAE is a constant here,
    evaluated without gradient), shuffles the codes (one permutation) and returns the
    negative bound, so that minimising it tightens the bound. ``regularization`` receives
    the ``VAEOutput`` of that forward pass. ``seed``, ``rng`` and ``kernels`` as in
    :func:`infomaxloss`.
    """
    _check_pair(vae, mi)
    x_t = _data(vae, x, "x")
    check_mi_batch(n_samples_of(x_t, vae.input_shape))
    return _miloss_impl(vae, mi, x_t, regularization=regularization, reg_strength=reg_strength,
                        seed=seed, rng=rng, kernels=kernels)


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _check_optimizers(opt: Any) -> OptimizerPair:
    vae_opt, mi_opt = getattr(opt, "vae", None), getattr(opt, "mi", None)
    if not isinstance(vae_opt, torch.optim.Optimizer) or not isinstance(mi_opt, torch.optim.Optimizer):
        raise TypeError(
            "opt: expected a pair of optimizers with fields vae and mi, as returned by "
            f"autoencoder_toolkit.setup(torch.optim.Adam, model); got {type(opt).__name__}"
        )
    return OptimizerPair(vae_opt, mi_opt)


def train_(model: InfoMaxVAE, x: Any, *args: Any,
           infomaxloss_function: Callable = infomaxloss, infomaxloss_kwargs: Mapping[str, Any] | None = None,
           miloss_function: Callable = miloss, miloss_kwargs: Mapping[str, Any] | None = None,
           loss_return: bool = False, verbose: bool = False, rng: Any = None,
           fused: bool = False, kernels: str | None = None) -> tuple[float, float] | None:
    """One training step of an InfoMaxVAE, in place.

    ``train_(model, x, opt)`` or ``train_(model, x_in, x_out, opt)``, with ``opt`` the
    pair from :func:`autoencoder_toolkit.setup`. In order:

    1. ``L_vae = infomaxloss_function(model.vae, model.mi, x, **infomaxloss_kwargs)``
       (or with ``x_in, x_out``), differentiated with respect to the VAE only; one step
       of ``opt.vae``. The critic gets neither gradient nor update.
    2. ``L_mi = miloss_function(model.vae, model.mi, x_in, **miloss_kwargs)`` on a fresh
       forward pass of the *updated* VAE (new noise, new permutation), differentiated
       with respect to the critic only; one step of ``opt.mi``.

    ``rng`` (if given) is passed to both losses unless their kwargs name one; it is
    consumed in the reference's order: noise, permutation, noise, permutation.

    Returns ``(L_vae, L_mi)`` as floats when ``loss_return`` (nothing printed); otherwise
    prints both when ``verbose`` and returns ``None``.

    ``fused=True`` selects the fast path of :mod:`autoencoder_toolkit.fused` (one VAE
    forward pass shared by both steps); see its documentation for how it differs.

    ``kernels="cupy"`` runs the per-sample terms as fused CuPy kernels inside autograd
    (model and data on CUDA): it is passed to both losses; with ``fused=True`` the
    log-likelihood and KL terms are fused (see :mod:`autoencoder_toolkit.backends.torch_bridge`).

    Raises
    ------
    FloatingPointError
        If either loss or its gradient is NaN or infinite. Every parameter and optimizer
        state is then exactly as before the call.
    """
    x_out, opt = _split_train_args(args, "train_")
    ddp = None
    if not isinstance(model, InfoMaxVAE):
        from ..training.distributed import DistributedInfoMaxVAE

        if not isinstance(model, DistributedInfoMaxVAE):
            raise TypeError(f"model: expected an InfoMaxVAE, got {type(model).__name__}")
        ddp, model = model, model.module
    opt = _check_optimizers(opt)
    for name, kw in (("infomaxloss_kwargs", infomaxloss_kwargs), ("miloss_kwargs", miloss_kwargs)):
        if kw is not None and not isinstance(kw, Mapping):
            raise TypeError(f"{name}: expected a mapping of keyword arguments, got {type(kw).__name__}")
    _random.check_rng(rng)
    vae, mi = model.vae, model.mi
    x_t = _data(vae, x, "x_in" if x_out is not None else "x", finite=False)
    check_mi_batch(n_samples_of(x_t, vae.input_shape), "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else _target(vae, x_out, x_t, finite=False)
    vae_kwargs = dict(infomaxloss_kwargs or {})
    mi_kwargs = dict(miloss_kwargs or {})
    if rng is not None:
        vae_kwargs.setdefault("rng", rng)
        mi_kwargs.setdefault("rng", rng)
    if kernels is not None and fused:
        from ..backends.torch_bridge import kernel_functions

        kf = kernel_functions(kernels, x_t, reconstruction_loglikelihood=vae_kwargs.get("reconstruction_loglikelihood"),
                              kl_divergence=vae_kwargs.get("kl_divergence"))
        vae_kwargs.update(reconstruction_loglikelihood=kf.loglikelihood, kl_divergence=kf.kl)
    elif kernels is not None:
        vae_kwargs.setdefault("kernels", kernels)
        mi_kwargs.setdefault("kernels", kernels)
    if fused:
        from .fused import fused_train_step

        l_vae, l_mi = fused_train_step(model, x_t, x_out_t, opt, vae_kwargs, mi_kwargs,
                                       infomaxloss_function, miloss_function, ddp=ddp)
    else:
        l_vae, l_mi = _faithful_step(model, x_t, x_out_t, opt, vae_kwargs, mi_kwargs,
                                     infomaxloss_function, miloss_function, ddp=ddp)
    if loss_return:
        return l_vae, l_mi
    if verbose:
        print(f"InfoMax Loss: {l_vae}")
        print(f"MutualInfoChain Loss: {l_mi}")
    return None


def _direct_call(name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def losses_finite(ddp: Any, *values: torch.Tensor) -> bool:
    """Whether the losses are finite (on every process, when training is distributed)."""
    if ddp is not None and ddp.context.enabled:
        return ddp.all_finite(*values)
    return all(bool(torch.isfinite(v).all()) for v in values)


def raise_non_finite(named: Sequence[tuple[torch.Tensor, str]], data: torch.Tensor, data_name: str) -> None:
    """Raise the error for non-finite losses: this process's own, or another process's."""
    for value, name in named:
        check_loss_value(value, name, data, data_name)
    raise FloatingPointError(
        "a loss is not finite on another process; no parameter or optimizer state was changed. Lower the "
        "learning rate, check the data scale, or resume from the last checkpoint"
    )


def _faithful_step(model: InfoMaxVAE, x: torch.Tensor, x_out: torch.Tensor | None, opt: OptimizerPair,
                   vae_kwargs: dict, mi_kwargs: dict, infomaxloss_function: Callable,
                   miloss_function: Callable, ddp: Any = None) -> tuple[float, float]:
    vae, mi = model.vae, model.mi
    call = ddp.call if ddp is not None else _direct_call
    data_args = (x,) if x_out is None else (x, x_out)
    target, target_name = (x, "x") if x_out is None else (x_out, "x_out")
    vae_params = [p for p in vae.parameters() if p.requires_grad]
    mi_params = [p for p in mi.parameters() if p.requires_grad]

    # Step 1: the VAE on infomaxloss; the critic is a constant.
    fn = _infomaxloss_impl if infomaxloss_function is infomaxloss else infomaxloss_function
    l_vae = call("vae", fn, vae, mi, *data_args, **vae_kwargs)
    if ddp is not None and not losses_finite(ddp, l_vae):
        raise_non_finite([(l_vae, "infomaxloss")], target, target_name)
    opt.vae.zero_grad(set_to_none=True)
    l_vae.backward(inputs=vae_params)
    (v_vae,), grads_ok = read_step([l_vae], vae_params)  # one device sync per update
    if not math.isfinite(v_vae) or not grads_ok:
        opt.vae.zero_grad(set_to_none=True)
        if not math.isfinite(v_vae):
            raise_non_finite([(l_vae, "infomaxloss")], target, target_name)
        raise_non_finite_gradient("infomaxloss")
    update = Update()  # the VAE's step is undone if the critic's step then fails
    update.step(opt.vae, "the VAE (infomaxloss)")
    opt.vae.zero_grad(set_to_none=True)

    # Step 2: the critic on miloss, with a fresh pass of the updated VAE.
    fn = _miloss_impl if miloss_function is miloss else miloss_function
    l_mi = call("mi", fn, vae, mi, x, **mi_kwargs)
    if ddp is not None and not losses_finite(ddp, l_mi):
        update.rollback()
        raise_non_finite([(l_mi, "miloss")], x, "x")
    opt.mi.zero_grad(set_to_none=True)
    l_mi.backward(inputs=mi_params)
    (v_mi,), grads_ok = read_step([l_mi], mi_params)
    if not math.isfinite(v_mi) or not grads_ok:
        opt.mi.zero_grad(set_to_none=True)
        update.rollback()
        if not math.isfinite(v_mi):
            raise_non_finite([(l_mi, "miloss")], x, "x")
        raise_non_finite_gradient("miloss")
    update.step(opt.mi, "the critic (miloss)")
    opt.mi.zero_grad(set_to_none=True)
    return v_vae, v_mi

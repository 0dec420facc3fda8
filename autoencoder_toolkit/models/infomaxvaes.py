r"""InfoMax VAE: a VAE trained to keep its codes informative about the data.

A critic network :math:`g(x, z)` (:class:`MutualInfoChain`) gives the f-divergence
(NWJ) lower bound on the mutual information between data and codes,

.. math::
    \hat I(x; z) = \frac1B\sum_b g(x_b, z_b) - \frac1B\sum_b \exp\big(g(x_b, \tilde z_b) - 1\big),

where :math:`\tilde z` is ``z`` with its samples permuted across the batch
(:func:`shuffle_latent`). Two losses are minimised in turn:

* the VAE loss :math:`-\overline{\log p(x|z)} + β\,\overline{\mathrm{KL}} - α\,\hat I
  + \text{reg\_strength}\cdot\text{reg}` (:func:`infomaxloss`), with respect to the
  encoder and decoder only. By default (as in AutoEncoderToolkit.jl) the shuffled codes
  are a constant: the second term of :math:`\hat I` changes the loss value but gives the
  VAE no gradient. With ``shuffled_gradient=True`` (as in the InfoMax-VAE authors' code)
  :math:`\tilde z` stays a function of the encoder, which then also receives the
  gradient of that term (see :func:`infomaxloss`);
* the critic loss :math:`-\hat I` (:func:`miloss`), with respect to the critic only.

:func:`train_` takes one step of each, in the reference's order: the VAE step first,
then the critic step on a fresh forward pass of the updated VAE.

Layout: ``x`` is ``(B, *sample_shape)``, ``z`` is ``(B, L)``; the MI bound needs a
batch (at least 2 samples, 64 or more recommended).

This module is also reachable as ``autoencoder_toolkit.InfoMaxVAEs`` (Julia's module
name). Like Julia's ``InfoMaxVAEs`` module, it holds the names it is built from:
``InfoMaxVAEs.JointGaussianLogEncoder``, ``InfoMaxVAEs.SimpleGaussianDecoder`` (and the
other variational decoders), ``InfoMaxVAEs.VAE``, ``InfoMaxVAEs.Flatten``,
``InfoMaxVAEs.reparameterize`` and the encoder/decoder densities.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, overload

import numpy as np
import torch
from torch import nn

from ..backends import array_namespace, permutation_like, shuffle_rows
from ..backends.torch_bridge import check_kernels, fused_kernels_for
from ..densities import mutual_info_bound  # written once for NumPy, torch and CuPy arrays
from ..outputs import InfoMaxVAEOutput, MutualInfoEstimate, OptimizerPair, VAEOutput
from ..random import juliarng
from ..random.draws import check_rng, check_seed
from .activations import ActivationLike
from .architecture import Component
from .checks import (as_model_input, check_finite, check_flag, check_keywords, check_mi_batch,
                     check_shuffled_gradient, check_weight, keywords_checked, model_input, module_device_dtype,
                     n_samples_of, resolve_weight, split_train_args, target_input)
from .construction import (as_activation_list, as_int_list, as_sample_shape, bind_arguments, leading_linear_in,
                           trailing_linear_out)
# The names Julia's InfoMaxVAEs module brings into scope (``InfoMaxVAEs.JointGaussianLogEncoder``, ...).
from .decoders import (AbstractGaussianDecoder, AbstractGaussianLinearDecoder, AbstractGaussianLogDecoder,
                       AbstractVariationalDecoder, BernoulliDecoder, JointGaussianDecoder, JointGaussianLogDecoder,
                       SimpleGaussianDecoder, SplitGaussianDecoder, SplitGaussianLogDecoder, decoder_loglikelihood)
from .encoders import (AbstractGaussianEncoder, AbstractGaussianLogEncoder, AbstractVariationalEncoder,
                       JointGaussianLogEncoder, encoder_kl, encoder_logposterior, spherical_logprior)
from .fused import fused_stage
from .layers import Chain, Dense, Flatten, dense_chain, glorot_uniform
from .step import Stage, run_step, unwrap
from .vaes import VAE, WithVAE, check_optimizer, reparameterize

__all__ = [
    "MutualInfoChain",
    "InfoMaxVAE",
    "shuffle_latent",
    "mutual_info_bound",
    "variational_mutual_info",
    "infomaxloss",
    "miloss",
    "train_",
    # Julia's InfoMaxVAEs module holds these too
    "JointGaussianLogEncoder", "BernoulliDecoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder",
    "SplitGaussianLogDecoder", "JointGaussianDecoder", "SplitGaussianDecoder", "VAE", "Flatten", "reparameterize",
    "decoder_loglikelihood", "spherical_logprior", "encoder_logposterior", "encoder_kl",
    "AbstractVariationalEncoder", "AbstractGaussianEncoder", "AbstractGaussianLogEncoder",
    "AbstractVariationalDecoder", "AbstractGaussianDecoder", "AbstractGaussianLogDecoder",
    "AbstractGaussianLinearDecoder",
]


# ----------------------------------------------------------------------------------
# The critic
# ----------------------------------------------------------------------------------

class MutualInfoChain(Component):
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

    ``mi(x, z)`` (tensors) returns ``(B,)`` critic values. An ``mlp`` ending in ``k > 1``
    units gives ``(B*k,)`` values, flattened sample by sample.
    """

    _config_fields = ("data", "latent", "mlp")
    input_shape: tuple[int, ...] | None = None
    latent_dim: int | None = None

    @overload
    def __init__(self, data: nn.Module, latent: nn.Module, mlp: nn.Module) -> None: ...

    @overload
    def __init__(self, size_input: int | tuple[int, ...], n_latent: int, mlp_neurons: list[int],
                 mlp_activation: list[ActivationLike], output_activation: ActivationLike, *,
                 init: Callable[..., torch.Tensor] | str = glorot_uniform) -> None: ...

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
            self.latent_dim = leading_linear_in(latent)
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

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.cat([self.data(x), self.latent(z)], dim=-1)
        return self.mlp(h).reshape(-1)


# ----------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------

class InfoMaxVAE(WithVAE, Component):
    """A VAE with its mutual-information critic: ``InfoMaxVAE(vae, mi)``.

    ``model(x, latent=False, seed=None, rng=None)`` (a tensor ``x``) runs the VAE and
    returns the decoder's output; with ``latent=True`` it returns
    ``InfoMaxVAEOutput(vae, mi)``: the VAE's ``(encoder, z, decoder)`` outputs and the MI
    estimate on a shuffle of ``z``. :meth:`encode`, :meth:`decode`, :meth:`reconstruct`
    and :meth:`sample` are the VAE's.
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

    def forward(self, x: torch.Tensor, latent: bool = False, seed: int | None = None, rng: Any = None) -> Any:  # noqa: D102
        if not latent:
            return self.vae.forward(x, latent=False, rng=rng)
        vo = self.vae.forward(x, latent=True, rng=rng)
        z_shuffle = shuffle_rows(vo.z.detach(), rng=rng, seed=seed)
        return InfoMaxVAEOutput(vo, _bound(self.mi, x, vo.z, z_shuffle))

    @torch.no_grad()
    def mutual_info(self, x: Any, *, n_shuffles: int = 10, batch_size: int = 1024,
                    rng: Any = None) -> MutualInfoEstimate:
        r"""The critic's estimate of :math:`I(x; z)` on the data ``x``, with its spread over shuffles.

        One code :math:`z_n \sim q(z \mid x_n)` is drawn per input; for each of ``K =
        n_shuffles`` permutations :math:`\pi_k` of all ``N`` inputs,

        .. math::
            \hat I_k = \frac1N \sum_n g(x_n, z_n) - \frac1N \sum_n \exp\big(g(x_n, z_{\pi_k(n)}) - 1\big),

        the bound the critic ``g`` is trained on, with the mismatched codes drawn from the
        whole of ``x`` rather than from one batch. ``x`` is ``(N, *input_shape)`` of any
        array kind (or anything sliced by rows, such as a memory map), ``N >= 2``, read and
        run ``batch_size`` rows at a time; ``rng`` (any generator the package accepts) draws
        the codes and then the permutations.

        Returns :class:`~autoencoder_toolkit.outputs.MutualInfoEstimate`: the mean and
        standard deviation (``ddof=1``) of the :math:`\hat I_k`, the ``(K,)`` values and the
        matched-pair term.
        """
        if isinstance(n_shuffles, bool) or not isinstance(n_shuffles, (int, np.integer)) or n_shuffles < 1:
            raise ValueError(f"n_shuffles: expected a positive integer, got {n_shuffles!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        check_rng(rng)
        if not hasattr(x, "shape"):  # nested lists
            x = model_input(self.vae, x, "x")
        shape, sample = tuple(x.shape), self.vae.input_shape
        n = shape[0] if shape else 0
        if n < 2 or (sample is not None and len(shape) == len(sample)):
            raise ValueError(f"x: the estimate pairs inputs with other inputs' codes, so it needs a batch of at least "
                             f"2 samples, got shape {shape}")
        blocks = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

        def rows(b: slice) -> torch.Tensor:
            return model_input(self.vae, x[b], "x")

        z = torch.cat([self.vae.encoder.reparameterize(self.vae.encoder(rows(b)), rng=rng) for b in blocks])
        perms = [permutation_like(n, z, rng=rng) for _ in range(int(n_shuffles))]
        joint = 0.0
        marginal = np.zeros(int(n_shuffles))
        for b in blocks:
            xb = rows(b)
            joint += float(self.mi(xb, z[b]).double().sum())
            for k, perm in enumerate(perms):
                marginal[k] += float(torch.exp(self.mi(xb, z[perm[b]]).double() - 1).sum())
        joint, marginal = joint / n, marginal / n
        values = joint - marginal
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        return MutualInfoEstimate(float(values.mean()), std, values, joint)


# ----------------------------------------------------------------------------------
# Shuffles and the bound
# ----------------------------------------------------------------------------------

@keywords_checked
def shuffle_latent(z: Any, seed: int | None = None, rng: Any = None) -> Any:
    """Permute the samples of a batch of codes, keeping each code whole.

    ``z`` is ``(B, L)``; the result is ``z[perm]`` for a uniformly random permutation
    ``perm`` of ``0..B-1``. A code may stay in place (this is not a derangement).

    With ``seed=k`` the permutation is Julia's ``shuffle(MersenneTwister(k), 1:B)`` (made
    0-based), so the same seed gives the permutation the reference was meant to give;
    otherwise it is drawn from ``rng`` (see :mod:`autoencoder_toolkit.random.draws`). NumPy,
    torch and CuPy arrays are accepted; the result is a new array of the same kind.
    """
    array_namespace(z, names=("z",))
    if getattr(z, "ndim", None) != 2:
        raise ValueError(
            f"z: expected a batch of codes (B, L) to shuffle across samples, got shape {tuple(z.shape)}"
        )
    check_seed(seed)
    check_rng(rng)
    return shuffle_rows(z, rng=rng, seed=seed)


def _bound(mi: MutualInfoChain, x: torch.Tensor, z: torch.Tensor, z_shuffle: torch.Tensor) -> torch.Tensor:
    return mutual_info_bound(mi(x, z), mi(x, z_shuffle))


@keywords_checked
def variational_mutual_info(model: Any, x: Any, z: Any = None, z_shuffle: Any = None, *,
                            seed: int | None = None, rng: Any = None,
                            shuffled_gradient: bool = False) -> torch.Tensor:
    """The variational (NWJ) lower bound on the mutual information between ``x`` and ``z``.

    Forms:

    * ``variational_mutual_info(mi, x, z, z_shuffle)`` with a :class:`MutualInfoChain`;
    * ``variational_mutual_info(model, x, z, z_shuffle)`` with an :class:`InfoMaxVAE`
      (its critic is used);
    * ``variational_mutual_info(model, x, seed=None, rng=None, shuffled_gradient=False)``:
      encodes ``x`` with the model's VAE (one noise draw), shuffles the codes (one
      permutation) and evaluates the bound. The shuffled codes are detached (a constant
      for the encoder's gradient) unless ``shuffled_gradient=True`` (see
      :func:`infomaxloss`). In the first two forms the codes are used as given, so
      ``shuffled_gradient`` does not apply there and must stay ``False``.

    Returns a 0-d tensor.
    """
    check_seed(seed)
    check_rng(rng)
    shuffled_gradient = check_shuffled_gradient(shuffled_gradient, rng, seed)
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
        x_t = model_input(model.vae, x, "x")
        check_mi_batch(n_samples_of(x_t, model.vae.input_shape))
        vo = model.vae.forward(x_t, latent=True, rng=rng)
        to_shuffle = vo.z if shuffled_gradient else vo.z.detach()
        return _bound(critic, x_t, vo.z, shuffle_rows(to_shuffle, rng=rng, seed=seed))
    if z is None or z_shuffle is None:
        raise TypeError("variational_mutual_info: pass both z and z_shuffle, or neither")
    if shuffled_gradient:
        raise ValueError("shuffled_gradient: applies when the model encodes x itself; given z and z_shuffle are "
                         "used as they are (keep z_shuffle attached to the encoder to let it carry a gradient)")
    device, dtype = module_device_dtype(critic)
    x_t = model_input(critic, x, "x")
    z_t = as_model_input(z, "z", device, dtype)
    zs_t = as_model_input(z_shuffle, "z_shuffle", device, dtype)
    if tuple(zs_t.shape) != tuple(z_t.shape):
        raise ValueError(f"z_shuffle: expected the shape of z {tuple(z_t.shape)}, got {tuple(zs_t.shape)}")
    if z_t.ndim != 2 or z_t.shape[0] != x_t.shape[0]:
        raise ValueError(f"z: expected a batch of codes ({x_t.shape[0]}, L) matching x, got {tuple(z_t.shape)}")
    if critic.latent_dim is not None and z_t.shape[1] != critic.latent_dim:
        raise ValueError(f"z: expected {critic.latent_dim} latent dimensions, got shape {tuple(z_t.shape)}")
    check_finite(z_t, "z")
    check_finite(zs_t, "z_shuffle")
    check_mi_batch(z_t.shape[0], "z")
    return _bound(critic, x_t, z_t, zs_t)


# ----------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------

def _check_pair(vae: Any, mi: Any) -> None:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
    if not isinstance(mi, MutualInfoChain):
        raise TypeError(f"mi: expected a MutualInfoChain, got {type(mi).__name__}")
    if vae.latent_dim is not None and mi.latent_dim is not None and vae.latent_dim != mi.latent_dim:
        raise ValueError(f"mi: the critic takes {mi.latent_dim} latent dimensions but the VAE produces "
                         f"{vae.latent_dim}")


def _check_n_samples(n_samples: Any) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
    return int(n_samples)


INFOMAXLOSS_KEYWORDS = ("β", "beta", "α", "alpha", "n_samples", "reconstruction_loglikelihood", "kl_divergence",
                        "regularization", "reg_strength", "seed", "rng", "shuffled_gradient")
MILOSS_KEYWORDS = ("regularization", "reg_strength", "seed", "rng")


def _infomaxloss(vae: VAE, mi: MutualInfoChain, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *,
                 β: Any = None, α: Any = None, n_samples: int = 1,
                 reconstruction_loglikelihood: Callable = decoder_loglikelihood,
                 kl_divergence: Callable = encoder_kl, regularization: Callable | None = None,
                 reg_strength: Any = 1.0, seed: int | None = None, rng: Any = None,
                 beta: Any = None, alpha: Any = None, shuffled_gradient: bool = False) -> torch.Tensor:
    """:func:`infomaxloss` on data already converted and checked (its keywords are checked here)."""
    β = resolve_weight(β, beta, "β", "beta", 1.0)
    α = resolve_weight(α, alpha, "α", "alpha", 1.0)
    reg_strength = check_weight(reg_strength, "reg_strength")
    n_samples = _check_n_samples(n_samples)
    check_seed(seed)
    check_rng(rng)
    shuffled_gradient = check_shuffled_gradient(shuffled_gradient, rng, seed)
    x_out = x_in if x_out is None else x_out
    # One permutation stream for all latent draws: MersenneTwister(seed) when seeded.
    shuffle_rng = rng if seed is None else juliarng.MersenneTwister(int(seed), julia=juliarng.DEFAULT_JULIA)
    enc = vae.encoder(x_in)
    kl = torch.mean(kl_divergence(vae.encoder, enc))
    ll_total = 0.0
    mi_total = 0.0
    reg_total = 0.0
    for _ in range(n_samples):
        z = vae.encoder.reparameterize(enc, rng=rng)
        dec = vae.decoder(z)
        ll_total = ll_total + torch.mean(reconstruction_loglikelihood(x_out, z, vae.decoder, dec))
        to_shuffle = z if shuffled_gradient else z.detach()
        mi_total = mi_total + _bound(mi, x_in, z, shuffle_rows(to_shuffle, rng=shuffle_rng))
        if regularization is not None:
            reg_total = reg_total + regularization(VAEOutput(enc, z, dec))
    value = -ll_total / n_samples + β * kl - α * (mi_total / n_samples)
    if regularization is not None:
        value = value + reg_strength * (reg_total / n_samples)
    return value


@keywords_checked
def infomaxloss(vae: VAE, mi: MutualInfoChain, x_in: Any, x_out: Any = None, *,
                β: float | None = None, α: float | None = None, n_samples: int = 1,
                reconstruction_loglikelihood: Callable = decoder_loglikelihood,
                kl_divergence: Callable = encoder_kl, regularization: Callable | None = None,
                reg_strength: float = 1.0, seed: int | None = None, rng: Any = None,
                beta: float | None = None, alpha: float | None = None, kernels: str | None = None,
                shuffled_gradient: bool = False) -> torch.Tensor:
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
    beta, alpha (β, α):
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
    shuffled_gradient:
        Whether the shuffled codes :math:`\tilde z_s = z_s[\pi_s]` stay differentiable
        (default ``False``, AutoEncoderToolkit.jl's loss). See below.

    The critic is treated as fixed by :func:`train_`, which differentiates with respect
    to the VAE only. Write :math:`\theta` for the encoder's parameters, ``z_b =
    μ_θ(x_b) + σ_θ(x_b)·ε_b`` and :math:`\pi` the permutation of one draw. The MI term's
    contribution to the gradient is, by default (the shuffled codes detached, a
    constant),

    .. math::
        -\frac{α}{B}\sum_b \nabla_z g(x_b, z)\big|_{z=z_b} \cdot \frac{\partial z_b}{\partial\theta},

    so the encoder learns to raise the critic on matched pairs only. With
    ``shuffled_gradient=True`` (the InfoMax-VAE authors' training scripts, which permute
    ``z`` without detaching it) the mismatched pairs add

    .. math::
        +\frac{α}{B}\sum_b \exp\big(g(x_b, z_{\pi(b)}) - 1\big)\,
        \nabla_z g(x_b, z)\big|_{z=z_{\pi(b)}} \cdot \frac{\partial z_{\pi(b)}}{\partial\theta}:

    the encoder also learns to lower the critic on mismatched pairs. The value of the
    loss, the decoder's gradient and the critic's loss (:func:`miloss`) are the same
    either way.
    """
    _check_pair(vae, mi)
    x_in_t = model_input(vae, x_in, "x_in" if x_out is not None else "x")
    check_mi_batch(n_samples_of(x_in_t, vae.input_shape), "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else target_input(vae, x_out, x_in_t)
    with fused_kernels_for(kernels, x_in_t):
        return _infomaxloss(vae, mi, x_in_t, x_out_t, β=β, α=α, n_samples=n_samples,
                            reconstruction_loglikelihood=reconstruction_loglikelihood, kl_divergence=kl_divergence,
                            regularization=regularization, reg_strength=reg_strength, seed=seed, rng=rng,
                            beta=beta, alpha=alpha, shuffled_gradient=shuffled_gradient)


def _miloss(vae: VAE, mi: MutualInfoChain, x: torch.Tensor, *, regularization: Callable | None = None,
            reg_strength: Any = 1.0, seed: int | None = None, rng: Any = None) -> torch.Tensor:
    """:func:`miloss` on data already converted and checked (its keywords are checked here)."""
    reg_strength = check_weight(reg_strength, "reg_strength")
    check_seed(seed)
    check_rng(rng)
    with torch.no_grad():
        vo = vae.forward(x, latent=True, rng=rng)
    value = -_bound(mi, x, vo.z, shuffle_rows(vo.z, rng=rng, seed=seed))
    if regularization is not None:
        value = value + reg_strength * regularization(vo)
    return value


@keywords_checked
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
    x_t = model_input(vae, x, "x")
    check_mi_batch(n_samples_of(x_t, vae.input_shape))
    with fused_kernels_for(kernels, x_t):
        return _miloss(vae, mi, x_t, regularization=regularization, reg_strength=reg_strength, seed=seed, rng=rng)


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _check_optimizers(opt: Any, model: InfoMaxVAE) -> OptimizerPair:
    vae_opt, mi_opt = getattr(opt, "vae", None), getattr(opt, "mi", None)
    if not isinstance(vae_opt, torch.optim.Optimizer) or not isinstance(mi_opt, torch.optim.Optimizer):
        raise TypeError(
            "opt: expected a pair of optimizers with fields vae and mi, as returned by "
            f"autoencoder_toolkit.setup(torch.optim.Adam, model); got {type(opt).__name__}"
        )
    check_optimizer(vae_opt, model.vae, "model.vae", "opt.vae")
    check_optimizer(mi_opt, model.mi, "model.mi", "opt.mi")
    return OptimizerPair(vae_opt, mi_opt)


def _check_default_keywords(kwargs: Mapping[str, Any], function: str, argument: str) -> None:
    """Check the keywords of a default loss before any update (values too: they are cheap to check)."""
    accepted = INFOMAXLOSS_KEYWORDS if function == "infomaxloss" else MILOSS_KEYWORDS
    check_keywords(function, kwargs, accepted, argument)
    if function == "infomaxloss":
        resolve_weight(kwargs.get("β"), kwargs.get("beta"), "β", "beta", 1.0)
        resolve_weight(kwargs.get("α"), kwargs.get("alpha"), "α", "alpha", 1.0)
        _check_n_samples(kwargs.get("n_samples", 1))
        check_shuffled_gradient(kwargs.get("shuffled_gradient", False), kwargs.get("rng"), kwargs.get("seed"))
    check_weight(kwargs.get("reg_strength", 1.0), "reg_strength")
    check_seed(kwargs.get("seed"))
    check_rng(kwargs.get("rng"))
    for key in ("regularization", "reconstruction_loglikelihood", "kl_divergence"):
        if kwargs.get(key) is not None and not callable(kwargs[key]):
            raise TypeError(f"{argument}: {key} must be a function, got {type(kwargs[key]).__name__}")


@keywords_checked
def train_(model: InfoMaxVAE, x: Any, *args: Any,
           infomaxloss_function: Callable = infomaxloss, infomaxloss_kwargs: Mapping[str, Any] | None = None,
           miloss_function: Callable = miloss, miloss_kwargs: Mapping[str, Any] | None = None,
           loss_return: bool = False, verbose: bool = False, rng: Any = None,
           fused: bool = False, kernels: str | None = None,
           shuffled_gradient: bool = False, compile: bool = False) -> tuple[float, float] | None:
    r"""One training step of an InfoMaxVAE, in place.

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

    ``fused=True`` selects the fast path of :mod:`autoencoder_toolkit.models.fused` (one
    VAE forward pass shared by both steps); see its documentation for how it differs.

    ``compile=True`` (with ``fused=True``) runs the fused step's forward and backward passes
    compiled by ``torch.compile`` (on CUDA as a CUDA graph); the noise and the permutation
    are drawn before the compiled part, from the same stream in the same order, so a seed
    or a Julia stream gives the eager step's draws, and the losses and gradients equal the
    eager step's within float32 rounding. The first step compiles (tens of seconds; again
    for a new batch size); see :func:`autoencoder_toolkit.models.fused.compiled_forward`.
    It does not combine with ``kernels`` or data-parallel training.

    ``kernels="cupy"`` runs the per-sample terms as fused CuPy kernels inside autograd
    (model and data on CUDA; see :mod:`autoencoder_toolkit.backends.torch_bridge`).

    ``shuffled_gradient=True`` lets the shuffled codes :math:`\tilde z = z[\pi]` of the
    VAE's loss carry the encoder's gradient, as in the InfoMax-VAE authors' training
    scripts: the encoder's update then also includes the term
    :math:`+\frac{α}{B}\sum_b \exp(g(x_b, \tilde z_b) - 1)\,\nabla_z g(x_b, \tilde z_b)\,
    \partial\tilde z_b/\partial\theta` (it learns to lower the critic on mismatched pairs
    as well as to raise it on matched ones; see :func:`infomaxloss`). The loss values, the
    decoder's gradient and the critic's step are unchanged. The default ``False`` is
    AutoEncoderToolkit.jl's step (the shuffled codes are a constant). It works with both
    the faithful and the fused step; it is the same as ``infomaxloss_kwargs=
    {"shuffled_gradient": True}`` and configures the default ``infomaxloss`` only.

    Every argument is checked before anything changes.

    Raises
    ------
    FloatingPointError
        If either loss, its gradient or an update is NaN or infinite. Every parameter and
        optimizer state is then exactly as before the call; the same holds when a loss
        function raises (the VAE's update, taken before the critic's loss, is undone).
    """
    x_out, opt = split_train_args(args, "train_")
    model_, parallel = unwrap(model)
    if not isinstance(model_, InfoMaxVAE):
        raise TypeError(f"model: expected an InfoMaxVAE, got {type(model_).__name__}")
    opt = _check_optimizers(opt, model_)
    for name, kw in (("infomaxloss_kwargs", infomaxloss_kwargs), ("miloss_kwargs", miloss_kwargs)):
        if kw is not None and not isinstance(kw, Mapping):
            raise TypeError(f"{name}: expected a mapping of keyword arguments, got {type(kw).__name__}")
    for name, fn in (("infomaxloss_function", infomaxloss_function), ("miloss_function", miloss_function)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")
    check_rng(rng)
    shuffled_gradient = check_flag(shuffled_gradient, "shuffled_gradient")
    compile = check_flag(compile, "compile")
    if compile and not fused:
        raise ValueError("compile: compile=True compiles the fused step; give fused=True as well")
    if compile and parallel is not None:
        raise ValueError("compile: the compiled step does not run under data-parallel training; train without "
                         "compile=True there")
    if shuffled_gradient and infomaxloss_function is not infomaxloss:
        raise ValueError("shuffled_gradient: train_'s shuffled_gradient=True configures the default infomaxloss; "
                         "a custom infomaxloss_function forms its own shuffled codes (pass such an option in "
                         "infomaxloss_kwargs if it takes one)")
    vae = model_.vae
    x_t = model_input(vae, x, "x_in" if x_out is not None else "x", finite=False)
    check_mi_batch(n_samples_of(x_t, vae.input_shape), "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else target_input(vae, x_out, x_t, finite=False)
    vae_kwargs = dict(infomaxloss_kwargs or {})
    mi_kwargs = dict(miloss_kwargs or {})
    if shuffled_gradient:
        given = vae_kwargs.get("shuffled_gradient", True)
        if not check_flag(given, "infomaxloss_kwargs['shuffled_gradient']"):
            raise ValueError("shuffled_gradient: train_ was given shuffled_gradient=True but infomaxloss_kwargs "
                             "holds shuffled_gradient=False; give it in one place")
        vae_kwargs["shuffled_gradient"] = True
    kernels = vae_kwargs.pop("kernels", mi_kwargs.pop("kernels", kernels))
    check_kernels(kernels, x_t)
    if compile and kernels is not None:
        raise ValueError(f"kernels: compile=True runs torch's own compiled kernels; got kernels={kernels!r} as well")
    if rng is not None:
        vae_kwargs.setdefault("rng", rng)
        mi_kwargs.setdefault("rng", rng)
    target = (x_t, "x") if x_out_t is None else (x_out_t, "x_out")
    if fused:
        if infomaxloss_function is not infomaxloss or miloss_function is not miloss:
            raise ValueError("fused=True computes infomaxloss and miloss itself; custom infomaxloss_function or "
                             "miloss_function need fused=False")
        _check_default_keywords(vae_kwargs, "infomaxloss", "infomaxloss_kwargs")
        _check_default_keywords(mi_kwargs, "miloss", "miloss_kwargs")
        stages = [fused_stage(model_, x_t, x_out_t, opt, vae_kwargs, mi_kwargs, parallel, [target], compile)]
    else:
        stages = _faithful_stages(model_, x_t, x_out_t, opt, vae_kwargs, mi_kwargs, infomaxloss_function,
                                  miloss_function, parallel, target)
    with fused_kernels_for(kernels, x_t):
        l_vae, l_mi = run_step(stages, model_)
    if loss_return:
        return l_vae, l_mi
    if verbose:
        print(f"InfoMax Loss: {l_vae}")
        print(f"MutualInfoChain Loss: {l_mi}")
    return None


def _faithful_stages(model: InfoMaxVAE, x: torch.Tensor, x_out: torch.Tensor | None, opt: OptimizerPair,
                     vae_kwargs: dict, mi_kwargs: dict, infomaxloss_function: Callable, miloss_function: Callable,
                     parallel: Any, target: tuple[torch.Tensor, str]) -> list[Stage]:
    """The reference's order: the VAE's step on infomaxloss, then the critic's on a fresh pass of the updated VAE."""
    vae, mi = model.vae, model.mi
    vae_fn, mi_fn = infomaxloss_function, miloss_function
    if infomaxloss_function is infomaxloss:
        _check_default_keywords(vae_kwargs, "infomaxloss", "infomaxloss_kwargs")
        vae_fn = _infomaxloss
    if miloss_function is miloss:
        _check_default_keywords(mi_kwargs, "miloss", "miloss_kwargs")
        mi_fn = _miloss
    data = (x,) if x_out is None else (x, x_out)

    def call(name: str, fn: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        return fn(*args, **kwargs) if parallel is None else parallel.call(name, fn, *args, **kwargs)

    def vae_loss() -> tuple[torch.Tensor, list[torch.Tensor]]:
        value = call("vae", vae_fn, vae, mi, *data, **vae_kwargs)
        return value, [value]

    def critic_loss() -> tuple[torch.Tensor, list[torch.Tensor]]:
        value = call("mi", mi_fn, vae, mi, x, **mi_kwargs)
        return value, [value]

    return [Stage(vae_loss, [(opt.vae, "the VAE (infomaxloss)")], ["infomaxloss"], [target], parallel,
                  [p for p in vae.parameters() if p.requires_grad]),
            Stage(critic_loss, [(opt.mi, "the critic (miloss)")], ["miloss"], [(x, "x")], parallel,
                  [p for p in mi.parameters() if p.requires_grad])]



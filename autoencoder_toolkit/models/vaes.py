r"""Variational autoencoders: the reparameterisation trick, ``VAE``, ``loss`` and ``train_``.

The loss of a VAE on a batch ``x`` (``(B, ...)``), with ``z ~ q(z|x)`` drawn once per
sample by reparameterisation, is

.. math::
    \mathcal{L} = -\frac1B\sum_b \log p(x_b | z_b) + β\,\frac1B\sum_b \mathrm{KL}(q(z|x_b)\,\|\,p(z))
                  + \text{reg\_strength}\cdot\text{reg}

Reductions: each log-likelihood and KL term is summed over a sample's elements, then
averaged over the batch. ``β`` weighs the KL term (``β = 1``: the ELBO; ``β > 1``: a
β-VAE).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..random import draws as _random
from .step import Update, raise_non_finite_gradient, read_step
from .construction import CheckedModule, call_unchecked
from .checks import as_model_input, check_finite, check_sample_shape, check_weight, module_device_dtype
from ..backends import array_namespace
from .decoders import AbstractVariationalDecoder, decoder_loglikelihood
from ..densities import reparameterize_with_noise
from .encoders import AbstractVariationalEncoder, encoder_kl
from ..outputs import VAEOutput

__all__ = ["reparameterize", "VAE", "loss", "train_", "resolve_weight"]


def reparameterize(*args: Any, log: bool = True, rng: Any = None, noise: Any = None) -> Any:
    """A differentiable Gaussian sample by the reparameterisation trick.

    Forms:

    * ``reparameterize(μ, σ, log=True, rng=None)``: ``μ + ε ⊙ exp(σ)`` when ``log`` (then
      ``σ`` holds ``logσ``), else ``μ + ε ⊙ σ``, with ``ε ~ N(0, I)`` of ``μ``'s shape;
    * ``reparameterize(encoder, encoder_output, rng=None)``: the encoder's own rule.

    ``ε`` is drawn from ``rng`` (see :mod:`autoencoder_toolkit._random`; a
    ``juliarng`` stream gives Julia's ``randn(Float32, L, B)``), or taken from
    ``noise`` when given. It is a constant for gradients. NumPy, torch and CuPy arrays
    are accepted.
    """
    if len(args) == 2 and isinstance(args[0], AbstractVariationalEncoder):
        return args[0].reparameterize(args[1], rng=rng, noise=noise)
    if len(args) != 2:
        raise TypeError("reparameterize: expected (μ, σ) or (encoder, encoder_output)")
    μ, σ = args
    xp = array_namespace(μ, σ, noise, names=("μ", "σ", "noise"))
    if tuple(μ.shape) != tuple(σ.shape):
        raise ValueError(f"σ: expected the shape of μ {tuple(μ.shape)}, got {tuple(σ.shape)}")
    if noise is None:
        noise = _random.normal_like(μ, rng)
    elif tuple(noise.shape) != tuple(μ.shape):
        raise ValueError(f"noise: expected the shape of μ {tuple(μ.shape)}, got {tuple(noise.shape)}")
    if isinstance(noise, torch.Tensor):
        noise = noise.detach()
    return reparameterize_with_noise(μ, σ, noise, log=log)


def resolve_weight(primary: Any, alias: Any, primary_name: str, alias_name: str, default: float) -> float:
    """Merge a Unicode keyword (``β``) with its ASCII alias (``beta``) and validate it."""
    name = primary_name
    if alias is not None:
        if primary is not None and primary is not alias:
            raise TypeError(f"{primary_name} and {alias_name} are the same keyword; pass only one of them")
        primary, name = alias, alias_name
    if primary is None:
        primary = default
    return check_weight(primary, name)


class VAE(CheckedModule):
    """A variational autoencoder: ``VAE(encoder, decoder)`` or ``encoder * decoder``.

    Calling ``vae(x, latent=False, rng=None)`` encodes ``x``, draws one latent sample
    ``z`` and decodes it. It returns the decoder's output (e.g. ``Probabilities(p)``), or
    with ``latent=True`` the named tuple ``VAEOutput(encoder, z, decoder)``.
    """

    _config_fields = ("encoder", "decoder")

    def __init__(self, encoder: AbstractVariationalEncoder, decoder: AbstractVariationalDecoder) -> None:
        super().__init__()
        if not isinstance(encoder, AbstractVariationalEncoder):
            raise TypeError(
                f"encoder: expected a variational encoder (JointGaussianLogEncoder, JointGaussianEncoder or a "
                f"subclass of AbstractVariationalEncoder), got {type(encoder).__name__}"
            )
        if not isinstance(decoder, AbstractVariationalDecoder):
            raise TypeError(
                f"decoder: expected a variational decoder (BernoulliDecoder, SimpleGaussianDecoder, ... or a "
                f"subclass of AbstractVariationalDecoder), got {type(decoder).__name__}"
            )
        le, ld = getattr(encoder, "latent_dim", None), decoder.latent_dim
        if le is not None and ld is not None and le != ld:
            raise ValueError(f"decoder: expects {ld} latent dimensions but the encoder produces {le}")
        self.encoder = encoder
        self.decoder = decoder

    @property
    def input_shape(self) -> tuple[int, ...] | None:  # type: ignore[override]
        """Per-sample shape of the data, when the encoder knows it."""
        return getattr(self.encoder, "input_shape", None)

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions, when known."""
        return getattr(self.encoder, "latent_dim", None) or self.decoder.latent_dim

    def to_backend(self, backend: str = "numpy", *, device: Any = None) -> Any:
        """A frozen copy for inference on ``backend`` (``"numpy"``, ``"cupy"``): see :mod:`autoencoder_toolkit.inference`."""
        from ..inference.frozen import to_backend

        return to_backend(self, backend, device=device)

    def forward(self, x: torch.Tensor, latent: bool = False, rng: Any = None) -> Any:  # noqa: D102
        enc = call_unchecked(self.encoder, x)
        z = self.encoder.reparameterize(enc, rng=rng)
        dec = call_unchecked(self.decoder, z)
        if latent:
            return VAEOutput(enc, z, dec)
        return dec


def _data(model: nn.Module, x: Any, name: str, *, finite: bool = True) -> torch.Tensor:
    """Boundary conversion and checks of a data argument against ``model``'s input shape."""
    device, dtype = module_device_dtype(model)
    t = as_model_input(x, name, device, dtype)
    check_sample_shape(t, name, getattr(model, "input_shape", None))
    if finite:
        check_finite(t, name)
    return t


def _target(vae: VAE, x_out: Any, x_in: torch.Tensor, name: str = "x_out", *, finite: bool = True) -> torch.Tensor:
    device, dtype = module_device_dtype(vae)
    t = as_model_input(x_out, name, device, dtype)
    out_shape = getattr(vae.decoder, "output_shape", None)
    batched_in = x_in.ndim >= 2 if vae.input_shape is None else x_in.ndim == len(vae.input_shape) + 1
    if out_shape is not None:
        check_sample_shape(t, name, out_shape)
    if batched_in and (t.ndim == 0 or t.shape[0] != x_in.shape[0]):
        raise ValueError(f"{name}: expected {x_in.shape[0]} samples like x_in, got shape {tuple(t.shape)}")
    if finite:
        check_finite(t, name)
    return t


def _loss_core(vae: VAE, x_in: torch.Tensor, x_out: torch.Tensor, β: float,
               reconstruction_loglikelihood: Callable, kl_divergence: Callable,
               reg_function: Callable | None, reg_kwargs: Mapping[str, Any], reg_strength: float,
               rng: Any, kernels: Any = None) -> torch.Tensor:
    if kernels is None:
        out = vae.forward(x_in, latent=True, rng=rng)
    else:  # the per-sample terms through the fused CuPy kernels
        from ..backends.torch_bridge import kernel_functions

        kf = kernel_functions(kernels, x_in, x_out, reconstruction_loglikelihood=reconstruction_loglikelihood,
                              kl_divergence=kl_divergence)
        reconstruction_loglikelihood, kl_divergence = kf.loglikelihood, kf.kl
        enc = call_unchecked(vae.encoder, x_in)
        z = kf.reparameterize(vae.encoder, enc, rng)
        out = VAEOutput(enc, z, call_unchecked(vae.decoder, z))
    ll = reconstruction_loglikelihood(x_out, out.z, vae.decoder, out.decoder)
    kl = kl_divergence(vae.encoder, out.encoder)
    value = -torch.mean(ll) + β * torch.mean(kl)
    if reg_function is not None:
        value = value + reg_strength * reg_function(out, **dict(reg_kwargs))
    return value


def loss(vae: VAE, x_in: Any, x_out: Any = None, *, β: float | None = None,
         reconstruction_loglikelihood: Callable = decoder_loglikelihood,
         kl_divergence: Callable = encoder_kl,
         reg_function: Callable | None = None, reg_kwargs: Mapping[str, Any] | None = None,
         reg_strength: float = 1.0, rng: Any = None, beta: float | None = None,
         kernels: str | None = None) -> torch.Tensor:
    """The VAE loss (negative ELBO with weight ``β``) on a batch, as a 0-d tensor.

    ``loss(vae, x)`` reconstructs ``x``; ``loss(vae, x_in, x_out)`` encodes ``x_in`` and
    scores the reconstruction against ``x_out``.

    Parameters
    ----------
    β (alias ``beta``):
        Weight of the KL term, default 1.
    reconstruction_loglikelihood:
        ``f(x, z, decoder, decoder_output) -> (B,)``; default :func:`decoder_loglikelihood`.
    kl_divergence:
        ``f(encoder, encoder_output) -> (B,)``; default :func:`encoder_kl`.
    reg_function, reg_kwargs, reg_strength:
        Optional regulariser ``reg_function(vae_output, **reg_kwargs)`` called with the
        ``VAEOutput`` of the forward pass; its value is added times ``reg_strength``.
    rng:
        Source of the reparameterisation noise.
    kernels:
        ``None`` (torch's own operations) or ``"cupy"``: the reparameterisation, the
        log-likelihood and the KL term run as fused CuPy kernels inside autograd
        (:mod:`autoencoder_toolkit.backends.torch_bridge`); needs the model on CUDA.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
    x_in_t = _data(vae, x_in, "x_in" if x_out is not None else "x")
    x_out_t = x_in_t if x_out is None else _target(vae, x_out, x_in_t)
    return _loss_impl(vae, x_in_t, x_out_t, β=β, beta=beta,
                      reconstruction_loglikelihood=reconstruction_loglikelihood,
                      kl_divergence=kl_divergence, reg_function=reg_function, reg_kwargs=reg_kwargs,
                      reg_strength=reg_strength, rng=rng, kernels=kernels)


def _loss_impl(vae: VAE, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *, β: Any = None,
               reconstruction_loglikelihood: Callable = decoder_loglikelihood,
               kl_divergence: Callable = encoder_kl, reg_function: Callable | None = None,
               reg_kwargs: Mapping[str, Any] | None = None, reg_strength: Any = 1.0, rng: Any = None,
               beta: Any = None, kernels: Any = None) -> torch.Tensor:
    """:func:`loss` on data already converted and checked (keywords are still checked)."""
    β = resolve_weight(β, beta, "β", "beta", 1.0)
    reg_strength = check_weight(reg_strength, "reg_strength")
    if reg_kwargs is not None and not isinstance(reg_kwargs, Mapping):
        raise TypeError(f"reg_kwargs: expected a mapping of keyword arguments, got {type(reg_kwargs).__name__}")
    _random.check_rng(rng)
    return _loss_core(vae, x_in, x_in if x_out is None else x_out, β, reconstruction_loglikelihood,
                      kl_divergence, reg_function, reg_kwargs or {}, reg_strength, rng, kernels)


def _split_train_args(args: tuple, fname: str) -> tuple[Any, Any]:
    if len(args) == 1:
        return None, args[0]
    if len(args) == 2:
        return args[0], args[1]
    raise TypeError(f"{fname}: expected (model, x, opt) or (model, x_in, x_out, opt), got {len(args) + 1} positional arguments")


def check_loss_value(value: torch.Tensor, name: str, data: torch.Tensor, data_name: str) -> None:
    """Raise ``FloatingPointError`` if a loss is NaN or infinite, blaming the data if it is."""
    if bool(torch.isfinite(value).all()):
        return
    check_finite(data, data_name)  # a clearer ValueError when the data are the cause
    raise FloatingPointError(
        f"{name} is {float(value.detach())} (not finite); no parameter or optimizer state was changed. "
        "Lower the learning rate, check the data scale, or resume from the last checkpoint"
    )


def train_(vae: VAE, x: Any, *args: Any, loss_function: Callable = loss,
           loss_kwargs: Mapping[str, Any] | None = None, verbose: bool = False,
           loss_return: bool = False, rng: Any = None, kernels: str | None = None) -> float | None:
    """One optimisation step of a VAE, in place: ``train_(vae, x, opt)`` or ``train_(vae, x_in, x_out, opt)``.

    Computes ``loss_function(vae, x, **loss_kwargs)`` (or with ``x_in, x_out``), its
    gradient with respect to the VAE's parameters, and takes one step of ``opt`` (a
    ``torch.optim.Optimizer``, e.g. from :func:`autoencoder_toolkit.setup`).

    ``kernels="cupy"`` is passed to the loss (see :func:`loss`).

    Returns the loss before the step as a float when ``loss_return`` (nothing is
    printed then); otherwise prints ``Loss: ...`` when ``verbose`` and returns ``None``.

    Raises
    ------
    FloatingPointError
        If the loss or its gradient is NaN or infinite; parameters and optimizer state are
        unchanged.
    """
    x_out, opt = _split_train_args(args, "train_")
    ddp = None
    if not isinstance(vae, VAE):
        from ..training.distributed import DistributedInfoMaxVAE

        if not (isinstance(vae, DistributedInfoMaxVAE) and isinstance(vae.module, VAE)):
            raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
        ddp, vae = vae, vae.module
    kwargs, data_args = prepare_step(vae, vae, x, x_out, opt, loss_kwargs, "vae", rng=rng, kernels=kernels)
    fn = _loss_impl if loss_function is loss else loss_function
    result = optimizer_step(vae, fn, data_args, kwargs, opt, "the VAE loss", ddp=ddp)
    return report_step(result, loss_return, verbose)


def prepare_step(model: nn.Module, vae: VAE, x: Any, x_out: Any, opt: Any, loss_kwargs: Any, owner: str,
                 **defaults: Any) -> tuple[dict[str, Any], tuple]:
    """The checked keyword arguments and data of a single-optimizer ``train_`` call.

    Checks ``opt`` (named after ``owner`` in the message) and ``loss_kwargs``; each of
    ``defaults`` that is not ``None`` is added to the keywords unless ``loss_kwargs`` names
    it. The data are read through ``model`` and the target (``x_out``) through ``vae``.
    Shared by the VAE and MMD-VAE ``train_``.
    """
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"opt: expected a torch.optim.Optimizer (e.g. setup(torch.optim.Adam, {owner})), "
                        f"got {type(opt).__name__}")
    if loss_kwargs is not None and not isinstance(loss_kwargs, Mapping):
        raise TypeError(f"loss_kwargs: expected a mapping of keyword arguments, got {type(loss_kwargs).__name__}")
    kwargs = dict(loss_kwargs or {})
    for key, value in defaults.items():
        if value is not None:
            kwargs.setdefault(key, value)
    x_t = _data(model, x, "x_in" if x_out is not None else "x", finite=False)
    data_args = (x_t,) if x_out is None else (x_t, _target(vae, x_out, x_t, finite=False))
    return kwargs, data_args


def report_step(result: float, loss_return: bool, verbose: bool) -> float | None:
    """What a ``train_`` call gives back: the loss when ``loss_return``, else ``None`` (printing it when ``verbose``)."""
    if loss_return:
        return result
    if verbose:
        print(f"Loss: {result}")
    return None


def optimizer_step(model: nn.Module, loss_fn: Callable, data_args: tuple, kwargs: Mapping[str, Any],
                   opt: torch.optim.Optimizer, name: str, ddp: Any = None) -> float:
    """``loss_fn(model, *data_args, **kwargs)``, checked, differentiated, and one step of ``opt``.

    Shared by the single-optimizer ``train_`` functions (VAE, MMD-VAE). Raises
    ``FloatingPointError`` (naming ``name``), changing nothing, if the loss, its gradient
    or the update is not finite; with ``ddp`` (a distributed wrapper) the loss runs inside its DDP module
    and the finiteness check is collective. Returns the loss as a float.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if ddp is not None:
        value = ddp.call("vae", loss_fn, model, *data_args, **kwargs)
        if not ddp.all_finite(value):
            _raise_for_loss(value, name, data_args)
    else:
        value = loss_fn(model, *data_args, **kwargs)
    opt.zero_grad(set_to_none=True)
    value.backward(inputs=params)
    (result,), grads_ok = read_step([value], params)
    if not math.isfinite(result) or not grads_ok:
        opt.zero_grad(set_to_none=True)
        if not math.isfinite(result):
            _raise_for_loss(value, name, data_args)
        raise_non_finite_gradient(name)
    Update().step(opt, name)
    opt.zero_grad(set_to_none=True)
    return result


def _raise_for_loss(value: torch.Tensor, name: str, data_args: tuple) -> None:
    if len(data_args) == 2:
        check_finite(data_args[0], "x_in")  # a clearer ValueError when the data are the cause
    check_loss_value(value, name, data_args[-1], "x" if len(data_args) == 1 else "x_out")
    raise FloatingPointError(f"{name} is not finite on another process; no parameter or optimizer state "
                             "was changed. Lower the learning rate, check the data scale, or resume from "
                             "the last checkpoint")

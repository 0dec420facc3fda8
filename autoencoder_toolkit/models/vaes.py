r"""Variational autoencoders: the reparameterisation trick, ``VAE``, ``loss`` and ``train_``.

The loss of a VAE on a batch ``x`` (``(B, ...)``), with ``z ~ q(z|x)`` drawn once per
sample by reparameterisation, is

.. math::
    \mathcal{L} = -\frac1B\sum_b \log p(x_b | z_b) + β\,\frac1B\sum_b \mathrm{KL}(q(z|x_b)\,\|\,p(z))
                  + \text{reg\_strength}\cdot\text{reg}

Reductions: each log-likelihood and KL term is summed over a sample's elements, then
averaged over the batch. ``β`` weighs the KL term (``β = 1``: the ELBO; ``β > 1``: a
β-VAE).

This module is also reachable as ``autoencoder_toolkit.VAEs`` (Julia's module name). Like
Julia's ``VAEs`` module, it holds the encoder and decoder types a VAE is built from
(``VAEs.JointGaussianLogEncoder``, ``VAEs.SimpleGaussianDecoder``, ...) and the
encoder/decoder densities.
"""

from __future__ import annotations

import math
import weakref

from typing import Any, Callable, Mapping

import torch

from ..backends import array_namespace, float_dtype_name, normal_like
from ..backends.torch_bridge import check_kernels, fused_kernels_for
from ..distributions import GaussianLogParams, GaussianParams
from ..outputs import VAEOutput
from ..random.draws import check_rng
from .architecture import Component, register_composition
from .checks import (check_keywords, check_weight, keywords_checked, model_input, resolve_weight, same_kind,
                     split_train_args, target_input)
# The encoder and decoder names Julia's VAEs module brings into scope (``VAEs.JointGaussianLogEncoder``).
from .decoders import (AbstractGaussianDecoder, AbstractGaussianLinearDecoder, AbstractGaussianLogDecoder,
                       AbstractVariationalDecoder, BernoulliDecoder, JointGaussianDecoder, JointGaussianLogDecoder,
                       SimpleGaussianDecoder, SplitGaussianDecoder, SplitGaussianLogDecoder, decoder_loglikelihood)
from .encoders import (AbstractGaussianEncoder, AbstractGaussianLogEncoder, AbstractVariationalEncoder,
                       JointGaussianLogEncoder, encoder_kl, encoder_logposterior)
from .step import Stage, optimizer_params, run_step, unwrap

__all__ = ["reparameterize", "VAE", "WithVAE", "loss", "train_", "resolve_weight", "report_step", "check_optimizer",
           "one_loss_step",
           # Julia's VAEs module holds these too
           "JointGaussianLogEncoder", "BernoulliDecoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder",
           "SplitGaussianLogDecoder", "JointGaussianDecoder", "SplitGaussianDecoder", "encoder_kl",
           "encoder_logposterior", "decoder_loglikelihood", "AbstractVariationalEncoder", "AbstractGaussianEncoder",
           "AbstractGaussianLogEncoder", "AbstractVariationalDecoder", "AbstractGaussianDecoder",
           "AbstractGaussianLogDecoder", "AbstractGaussianLinearDecoder"]

@keywords_checked
def reparameterize(*args: Any, log: bool = True, T: Any = None, rng: Any = None, noise: Any = None) -> Any:
    """A differentiable Gaussian sample by the reparameterisation trick.

    Forms:

    * ``reparameterize(μ, σ, log=True, T=None, rng=None)``: ``μ + ε ⊙ exp(σ)`` when ``log``
      (then ``σ`` holds ``logσ``), else ``μ + ε ⊙ σ``, with ``ε ~ N(0, I)`` of ``μ``'s shape;
    * ``reparameterize(encoder, encoder_output, rng=None)``: the encoder's own rule.

    ``ε`` is drawn from ``rng`` (see :mod:`autoencoder_toolkit.random.draws`; a
    ``juliarng`` stream gives Julia's ``randn(Float32, L, B)``), or taken from
    ``noise`` when given. It is a constant for gradients. NumPy, torch and CuPy arrays
    are accepted.

    ``T`` is the floating type of ``ε`` (Julia's keyword of the same name; default: the
    dtype of ``μ``), given as ``"Float64"``, ``torch.float64``, ``np.float64``, ...; the
    result's dtype follows the usual promotion of ``μ``, ``σ`` and ``ε``, as in Julia
    (``T=Float64`` with float32 ``μ`` gives a float64 sample).
    """
    if len(args) == 2 and isinstance(args[0], AbstractVariationalEncoder):
        if T is not None:
            raise TypeError("reparameterize: T applies to the (μ, σ) form; the encoder form draws in the "
                            "encoder's dtype")
        return args[0].reparameterize(args[1], rng=rng, noise=noise)
    if len(args) != 2:
        raise TypeError("reparameterize: expected (μ, σ) or (encoder, encoder_output)")
    μ, σ = args
    if tuple(getattr(μ, "shape", ())) != tuple(getattr(σ, "shape", ())):
        raise ValueError(f"σ: expected the shape of μ {tuple(μ.shape)}, got {tuple(σ.shape)}")
    check_rng(rng)
    if T is not None and noise is None:
        xp = array_namespace(μ, σ, names=("μ", "σ"))
        noise = normal_like(xp.astype(μ, getattr(xp, float_dtype_name(T))), rng)
    return (GaussianLogParams(μ, σ) if log else GaussianParams(μ, σ)).rsample(rng, noise=noise)


class VAE(Component):
    """A variational autoencoder: ``VAE(encoder, decoder)`` or ``encoder * decoder``.

    ``vae(x, latent=False, rng=None)`` (a tensor ``x`` on the model's device) encodes
    ``x``, draws one latent sample ``z`` and decodes it. It returns the decoder's output
    (e.g. ``Bernoulli(p)``), or with ``latent=True`` the named tuple
    ``VAEOutput(encoder, z, decoder)``.

    For data of any kind (a NumPy array, a tensor, a CuPy array), checked and without
    gradient: :meth:`encode`, :meth:`decode`, :meth:`reconstruct` and :meth:`sample`.
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
        shape_in, shape_out = getattr(encoder, "input_shape", None), getattr(decoder, "output_shape", None)
        if shape_in is not None and shape_out is not None and math.prod(shape_in) != math.prod(shape_out):
            raise ValueError(f"decoder: produces samples of shape {tuple(shape_out)} but the encoder takes samples "
                             f"of shape {tuple(shape_in)}; their sizes must agree")
        self.encoder = encoder
        self.decoder = decoder

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the data, when the encoder knows it."""
        return getattr(self.encoder, "input_shape", None)

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions, when known."""
        return getattr(self.encoder, "latent_dim", None) or self.decoder.latent_dim

    def forward(self, x: torch.Tensor, latent: bool = False, rng: Any = None) -> Any:  # noqa: D102
        enc = self.encoder(x)
        z = self.encoder.reparameterize(enc, rng=rng)
        dec = self.decoder(z)
        if latent:
            return VAEOutput(enc, z, dec)
        return dec

    # -- using a trained model (checked input, no gradient, the input's array kind out) ------------
    def _codes(self, x: Any, sample: bool, rng: Any) -> torch.Tensor:
        t = model_input(self, x, "x")
        check_rng(rng)
        out = self.encoder(t)
        return self.encoder.reparameterize(out, rng=rng) if sample else self.encoder.distribution(out).mean

    @torch.no_grad()
    def encode(self, x: Any, *, sample: bool = False, rng: Any = None) -> Any:
        """The latent means ``μ(x)``, ``(B, L)`` (one sample: ``(L,)``); with ``sample=True`` a draw ``z ~ q(z|x)``."""
        return same_kind(self._codes(x, sample, rng), x)

    @torch.no_grad()
    def posterior(self, x: Any) -> GaussianParams:
        """The encoder's distribution ``q(z | x) = N(μ, diag σ²)`` as ``GaussianParams(μ, σ)``, each
        ``(B, L)`` (one sample: ``(L,)``), of ``x``'s array kind, for either encoder parameterisation."""
        t = model_input(self, x, "x")
        q = self.encoder.distribution(self.encoder(t))
        return GaussianParams(same_kind(q.mean, x), same_kind(q.σ, x))

    @torch.no_grad()
    def decode(self, z: Any) -> Any:
        """The decoder's output distribution for codes ``z`` (its fields of ``z``'s array kind)."""
        t = model_input(self.decoder, z, "z")
        out = self.decoder(t)
        return type(out)(*(same_kind(f, z) for f in out))

    @torch.no_grad()
    def reconstruct(self, x: Any, *, sample: bool = False, rng: Any = None) -> Any:
        """The mean of ``p(x | z)`` at the latent mean ``z = μ(x)`` (with ``sample=True``, at a draw of ``z``)."""
        z = self._codes(x, sample, rng)
        return same_kind(self.decoder.distribution(self.decoder(z)).mean, x)

    @torch.no_grad()
    def sample(self, n: int, *, rng: Any = None) -> torch.Tensor:
        """``n`` samples from the model: the decoder's mean at ``n`` codes drawn from the prior ``N(0, I)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive number of samples, got {n!r}")
        if self.latent_dim is None:
            raise TypeError("sample: the latent dimension of this model is not known")
        check_rng(rng)
        p = next(iter(self.parameters()))
        z = normal_like(torch.empty((n, self.latent_dim), dtype=p.dtype, device=p.device), rng)
        return self.decoder.distribution(self.decoder(z)).mean


register_composition(AbstractVariationalEncoder, AbstractVariationalDecoder, VAE)


class WithVAE:
    """The user-data methods of a model built around a :class:`VAE` field ``vae`` (InfoMax-VAE, MMD-VAE)."""

    vae: VAE

    def encode(self, x: Any, *, sample: bool = False, rng: Any = None) -> Any:
        """The VAE's :meth:`~autoencoder_toolkit.vaes.VAE.encode`."""
        return self.vae.encode(x, sample=sample, rng=rng)

    def posterior(self, x: Any) -> GaussianParams:
        """The VAE's :meth:`~autoencoder_toolkit.vaes.VAE.posterior`."""
        return self.vae.posterior(x)

    def decode(self, z: Any) -> Any:
        """The VAE's :meth:`~autoencoder_toolkit.vaes.VAE.decode`."""
        return self.vae.decode(z)

    def reconstruct(self, x: Any, *, sample: bool = False, rng: Any = None) -> Any:
        """The VAE's :meth:`~autoencoder_toolkit.vaes.VAE.reconstruct`."""
        return self.vae.reconstruct(x, sample=sample, rng=rng)

    def sample(self, n: int, *, rng: Any = None) -> torch.Tensor:
        """The VAE's :meth:`~autoencoder_toolkit.vaes.VAE.sample`."""
        return self.vae.sample(n, rng=rng)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the data, when known."""
        return self.vae.input_shape

    @property
    def latent_dim(self) -> int | None:
        """Number of latent dimensions, when known."""
        return self.vae.latent_dim


_LOSS_KEYWORDS = ("β", "beta", "reconstruction_loglikelihood", "kl_divergence", "reg_function", "reg_kwargs",
                  "reg_strength", "rng")


def _loss(vae: VAE, x_in: torch.Tensor, x_out: torch.Tensor | None = None, *, β: Any = None,
          reconstruction_loglikelihood: Callable = decoder_loglikelihood, kl_divergence: Callable = encoder_kl,
          reg_function: Callable | None = None, reg_kwargs: Mapping[str, Any] | None = None,
          reg_strength: Any = 1.0, rng: Any = None, beta: Any = None) -> torch.Tensor:
    """:func:`loss` on data already converted and checked (its keywords are checked here)."""
    β = resolve_weight(β, beta, "β", "beta", 1.0)
    reg_strength = check_weight(reg_strength, "reg_strength")
    if reg_kwargs is not None and not isinstance(reg_kwargs, Mapping):
        raise TypeError(f"reg_kwargs: expected a mapping of keyword arguments, got {type(reg_kwargs).__name__}")
    check_rng(rng)
    out = vae.forward(x_in, latent=True, rng=rng)
    ll = reconstruction_loglikelihood(x_in if x_out is None else x_out, out.z, vae.decoder, out.decoder)
    kl = kl_divergence(vae.encoder, out.encoder)
    value = -torch.mean(ll) + β * torch.mean(kl)
    if reg_function is not None:
        value = value + reg_strength * reg_function(out, **dict(reg_kwargs or {}))
    return value


@keywords_checked
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
    beta (β):
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

    Notes
    -----
    The value is computed in the model's precision: for extreme inputs (codes whose
    ``exp(logσ)`` passes the float32 range) it can be infinite or NaN.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
    x_in_t = model_input(vae, x_in, "x_in" if x_out is not None else "x")
    x_out_t = None if x_out is None else target_input(vae, x_out, x_in_t)
    with fused_kernels_for(kernels, x_in_t):
        return _loss(vae, x_in_t, x_out_t, β=β, beta=beta, reconstruction_loglikelihood=reconstruction_loglikelihood,
                     kl_divergence=kl_divergence, reg_function=reg_function, reg_kwargs=reg_kwargs,
                     reg_strength=reg_strength, rng=rng)


def report_step(result: float, loss_return: bool, verbose: bool) -> float | None:
    """What a ``train_`` call gives back: the loss when ``loss_return``, else ``None`` (printing it when ``verbose``)."""
    if loss_return:
        return result
    if verbose:
        print(f"Loss: {result}")
    return None


def _held_signature(opt: torch.optim.Optimizer) -> tuple:
    """Which parameter lists ``opt`` holds, cheaply: it changes with ``add_param_group`` or a new list."""
    return tuple((id(g["params"]), len(g["params"])) for g in opt.param_groups)


#: Optimizers already checked against a model: ``{optimizer: (weakref to the model, _held_signature)}``.
_CHECKED: "weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[Any, tuple]]" = weakref.WeakKeyDictionary()


def check_optimizer(opt: Any, model: torch.nn.Module, owner: str, name: str = "opt") -> torch.optim.Optimizer:
    """``opt`` if it is a torch optimizer over ``model``'s parameters; else a clear error.

    Every parameter it holds must belong to ``model`` (an optimizer of another model, or of
    the other half of an InfoMax-VAE, would train nothing of this one), and it must hold at
    least one of ``model``'s trainable parameters. A subset is fine (training the decoder
    alone), and so are frozen parameters it holds. The check runs once per optimizer and
    model, and again when the optimizer's parameter groups change (a training loop calls
    this every step).
    """
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{name}: expected a torch.optim.Optimizer (e.g. setup(torch.optim.Adam, {owner})), "
                        f"got {type(opt).__name__}")
    held_now = _held_signature(opt)
    checked = _CHECKED.get(opt)
    if checked is not None and checked[0]() is model and checked[1] == held_now:
        return opt
    held = {id(p) for p in optimizer_params(opt)}
    own = {id(p) for p in model.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    foreign = len(held - own)
    if foreign or not held & trainable:
        what = (f"{foreign} of its {len(held)} parameters are not parameters of this {owner}" if foreign else
                f"it holds none of the {len(trainable)} trainable parameters of this {owner}")
        raise ValueError(f"{name}: the optimizer does not belong to this {owner} ({what}); build it with "
                         f"setup(torch.optim.Adam, {owner})")
    _CHECKED[opt] = (weakref.ref(model), held_now)
    return opt


@keywords_checked
def train_(vae: VAE, x: Any, *args: Any, loss_function: Callable = loss,
           loss_kwargs: Mapping[str, Any] | None = None, verbose: bool = False,
           loss_return: bool = False, rng: Any = None, kernels: str | None = None) -> float | None:
    """One optimisation step of a VAE, in place: ``train_(vae, x, opt)`` or ``train_(vae, x_in, x_out, opt)``.

    Computes ``loss_function(vae, x, **loss_kwargs)`` (or with ``x_in, x_out``), its
    gradient with respect to the VAE's parameters, and takes one step of ``opt`` (a
    ``torch.optim.Optimizer``, e.g. from :func:`autoencoder_toolkit.setup`).

    ``kernels="cupy"`` runs the loss's per-sample terms as fused CuPy kernels (see :func:`loss`).

    Returns the loss before the step as a float when ``loss_return`` (nothing is
    printed then); otherwise prints ``Loss: ...`` when ``verbose`` and returns ``None``.

    Raises
    ------
    FloatingPointError
        If the loss, its gradient or the update is NaN or infinite; parameters and
        optimizer state are unchanged.
    """
    x_out, opt = split_train_args(args, "train_")
    model, parallel = unwrap(vae)
    if not isinstance(model, VAE):
        raise TypeError(f"vae: expected a VAE, got {type(model).__name__}")
    return one_loss_step(model, model, x, x_out, opt, "vae", loss_function, loss, _loss, _LOSS_KEYWORDS,
                         loss_kwargs, rng, "the VAE loss", loss_return, verbose, parallel, kernels)


def one_loss_step(model: torch.nn.Module, vae: VAE, x: Any, x_out: Any, opt: Any, owner: str,
                  loss_function: Callable, default: Callable, default_impl: Callable, keywords: tuple[str, ...],
                  loss_kwargs: Any, rng: Any, name: str, loss_return: bool, verbose: bool, parallel: Any = None,
                  kernels: Any = None) -> float | None:
    """The ``train_`` of a model with one loss and one optimizer (the VAE, the MMD-VAE).

    Checks every argument (``owner`` names the model in messages; ``vae`` checks
    ``x_out``), then takes one :func:`~autoencoder_toolkit.models.step.run_step` stage on
    ``loss_function`` (``default_impl`` when it is the public ``default``, whose keywords
    are checked against ``keywords``).
    """
    check_optimizer(opt, model, owner)
    if not callable(loss_function):
        raise TypeError(f"loss_function: expected a function, got {type(loss_function).__name__}")
    if loss_kwargs is not None and not isinstance(loss_kwargs, Mapping):
        raise TypeError(f"loss_kwargs: expected a mapping of keyword arguments, got {type(loss_kwargs).__name__}")
    check_rng(rng)
    kwargs = dict(loss_kwargs or {})
    if rng is not None:
        kwargs.setdefault("rng", rng)
    fn = loss_function
    if loss_function is default:
        kernels = kwargs.pop("kernels", kernels)
        check_keywords(default.__name__, kwargs, keywords, "loss_kwargs")
        fn = default_impl
    x_t = model_input(model, x, "x_in" if x_out is not None else "x", finite=False)
    data = (x_t,) if x_out is None else (x_t, target_input(vae, x_out, x_t, finite=False))
    check_kernels(kernels, x_t)

    def compute() -> tuple[torch.Tensor, list[torch.Tensor]]:
        value = fn(model, *data, **kwargs) if parallel is None else parallel.call("vae", fn, model, *data, **kwargs)
        return value, [value]

    blame = [(data[0], "x_in")] if x_out is not None else []
    blame.append((data[-1], "x" if x_out is None else "x_out"))
    with fused_kernels_for(kernels, x_t):
        (result,) = run_step([Stage(compute, [(opt, name)], [name], blame, parallel)], model)
    return report_step(result, loss_return, verbose)

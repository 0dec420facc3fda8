r"""The fast InfoMax-VAE training step: ``infomaxvaes.train_(model, x, opt, fused=True)``.

The faithful step (the reference's order) runs the VAE twice per call: once for the VAE
update on ``infomaxloss``, then again, after that update, for the critic update on
``miloss``, and it evaluates the critic four times (matched and shuffled codes in each
loss), recomputing the data features every time. The fused step computes the same two
losses from **one** forward pass and takes **one** backward pass:

1. one encoder pass, one noise draw ``ε``, ``z = μ + ε·σ``, one decoder pass;
2. one permutation ``perm`` of the batch;
3. the critic's data branch ``data(x)`` and, when the critic's MLP starts with a dense
   layer ``W = [W_x | W_z]`` acting on ``[data(x); latent(z)]``, its data half
   ``W_x·data(x) + b`` are computed once and shared by the matched codes ``z`` and the
   shuffled codes ``z[perm]``; the small latent half ``W_z·latent(·)`` is one product on
   both code sets stacked (``2B`` rows), and so is the rest of the MLP;
4. with ``I = mean g(x, z) − mean exp(g(x, z[perm]) − 1)``, the two losses are
   ``L_vae = −LL + β·KL − α·I (+ reg)`` and ``L_mi = −I (+ reg)``;
5. one backward pass of the surrogate ``S = −LL + β·KL − mean g(x, z) + mean exp(g(x,
   z̃) − 1)`` in which the codes enter the critic through an identity whose gradient is
   scaled by ``α``, and the shuffled codes are detached. The VAE parameters thus receive
   exactly ``∇L_vae`` (the critic's matched term scaled by ``α``; the shuffled term gives
   them nothing) and the critic parameters exactly ``∇L_mi``. With
   ``shuffled_gradient=True`` the shuffled codes are the permuted output of that same
   scaled identity, ``z̃ = z_α[perm]``, so the VAE parameters also receive ``α`` times the
   gradient of ``mean exp(g(x, z̃) − 1)``: again exactly ``∇L_vae`` of
   ``infomaxloss(..., shuffled_gradient=True)``, and the critic's gradient is unchanged;
6. both optimizers step.

With the default log-likelihood and a :class:`~autoencoder_toolkit.decoders.BernoulliDecoder`
whose network ends in a sigmoid, the reconstruction term is computed from the decoder's
pre-activation ``a``: ``Σ x·a − log(1 + e^a)``, the Bernoulli log-likelihood itself, in
fewer operations than the reference's ``Σ x·log(p + ε) + (1 − x)·log(1 − p + ε)`` on
``p = σ(a)``. The two differ by about ``ε/p`` per pixel: nothing where the decoder is not
confidently wrong, while on a pixel with ``x = 1`` and ``p < ε`` the reference's term stops at
``log ε ≈ −15.9`` (and its gradient vanishes) where this one keeps falling (gradient
``x − p``). The faithful step and the losses keep the reference's form.

``compile=True`` (:func:`compiled_forward`) runs :func:`_forward` through ``torch.compile``
with the noise and the permutation drawn before it, so the draws are the eager step's.

How it differs from the faithful order: the critic step sees the VAE *before* its
update, with the same noise and permutation as the VAE step (the faithful step draws a
second noise and a second permutation after the VAE update). Per call, the random
stream gives one noise draw then one permutation (faithful: noise, permutation, noise,
permutation). Its gradients equal those of ``infomaxloss`` (for the VAE) and ``miloss``
(for the critic) evaluated at the same noise, permutation and parameters; both losses
are checked for NaN/Inf before anything is updated.

Supported keywords: ``infomaxloss_kwargs`` may hold ``β``/``beta``, ``α``/``alpha``,
``reconstruction_loglikelihood``, ``kl_divergence``, ``regularization``,
``reg_strength``, ``seed``, ``rng``, ``shuffled_gradient`` and ``n_samples=1``; ``miloss_kwargs`` may hold
``regularization`` (it receives the VAE outputs detached) and ``reg_strength``, and the
same ``seed``/``rng`` as the VAE step (one draw serves both). Custom loss functions need
the faithful step.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backends import array_namespace, normal_like, permutation_like, shuffle_rows
from ..outputs import OptimizerPair, VAEOutput
from ..random.draws import check_rng
from .checks import check_shuffled_gradient, check_weight, resolve_weight
from .decoders import BernoulliDecoder, decoder_loglikelihood
from .encoders import encoder_kl
from .layers import Dense
from .step import ParallelModel, Stage

__all__ = ["FusedLosses", "fused_losses", "fused_stage"]

_VAE_KEYS = {"β", "beta", "α", "alpha", "reconstruction_loglikelihood", "kl_divergence", "regularization",
             "reg_strength", "seed", "rng", "n_samples", "shuffled_gradient"}
_MI_KEYS = {"regularization", "reg_strength", "seed", "rng"}


class FusedLosses(NamedTuple):
    """The fused step's surrogate (to differentiate) and the two loss values."""

    surrogate: torch.Tensor
    vae_loss: torch.Tensor
    mi_loss: torch.Tensor


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad * ctx.scale, None


def _split_first_layer(mlp: nn.Module) -> tuple[nn.Linear, Callable, nn.Module] | None:
    """``(first_linear, its_activation, rest)`` when ``mlp`` is a Sequential starting with a Linear."""
    if not isinstance(mlp, nn.Sequential) or len(mlp) == 0 or not isinstance(mlp[0], nn.Linear):
        return None
    first = mlp[0]
    act = first.activation.torch_fn if hasattr(first, "activation") else (lambda t: t)
    return first, act, mlp[1:]


def _batch_dependent(module: nn.Module) -> bool:
    """Whether ``module`` mixes the samples of a batch (a batch normalisation does)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class _CriticPlan(NamedTuple):
    split: tuple[nn.Linear, Callable, nn.Module] | None
    stack_codes: bool


#: How each critic is evaluated (its structure is read once, not at every step).
_PLANS: "weakref.WeakKeyDictionary[nn.Module, _CriticPlan]" = weakref.WeakKeyDictionary()


def _plan(mi: nn.Module) -> _CriticPlan:
    plan = _PLANS.get(mi)
    if plan is None or (plan.split is not None and plan.split[0] is not getattr(mi.mlp, "0", None)):
        plan = _CriticPlan(_split_first_layer(mi.mlp), not _batch_dependent(mi.latent))
        _PLANS[mi] = plan
    return plan


def _critic_pair(mi: nn.Module, x: torch.Tensor, z_joint: torch.Tensor,
                 z_shuffled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic values on matched and shuffled codes, sharing the data-dependent work.

    The codes of both sets go through the latent branch (and the latent half of the first
    dense layer) as one stacked batch of ``2B`` rows, unless that branch normalises over
    the batch.
    """
    plan = _plan(mi)
    d = mi.data(x)
    batch = d.shape[0]
    if plan.stack_codes:
        codes = mi.latent(torch.cat([z_joint, z_shuffled]))
    else:
        codes = torch.cat([mi.latent(z_joint), mi.latent(z_shuffled)])
    if plan.split is None:
        out = mi.mlp(torch.cat([torch.cat([d, d]), codes], dim=-1))
    else:
        first, act, rest = plan.split
        n_d = d.shape[-1]
        shared = F.linear(d, first.weight[:, :n_d], first.bias)
        pre = F.linear(codes, first.weight[:, n_d:]).view(2, batch, -1) + shared
        h = act(pre.view(2 * batch, -1))
        out = rest(h) if len(rest) else h
    return out[:batch].reshape(-1), out[batch:].reshape(-1)


def _check_keys(kwargs: Mapping[str, Any], allowed: set, name: str) -> None:
    extra = set(kwargs) - allowed
    if extra:
        raise ValueError(
            f"{name}: fused=True does not support {', '.join(sorted(extra))}; accepted: "
            f"{', '.join(sorted(allowed))} (use fused=False for other keywords)"
        )


class _Settings(NamedTuple):
    """The fused step's options, read from the two keyword mappings."""

    α: float
    β: float
    loglik: Callable
    kl_fn: Callable
    reg_vae: Callable | None
    reg_vae_strength: float
    reg_mi: Callable | None
    reg_mi_strength: float
    shuffled_gradient: bool


def _settings(vae_kwargs: Mapping[str, Any], mi_kwargs: Mapping[str, Any]) -> tuple[_Settings, Any, Any]:
    """``(settings, rng, seed)`` from ``infomaxloss_kwargs`` and ``miloss_kwargs``, checked."""
    _check_keys(vae_kwargs, _VAE_KEYS, "infomaxloss_kwargs")
    _check_keys(mi_kwargs, _MI_KEYS, "miloss_kwargs")
    if vae_kwargs.get("n_samples", 1) != 1:
        raise ValueError("n_samples: fused=True draws one latent sample; use fused=False for n_samples > 1")
    for key in ("seed", "rng"):
        if key in mi_kwargs and mi_kwargs[key] is not vae_kwargs.get(key):
            raise ValueError(
                f"miloss_kwargs: fused=True uses one noise draw and one permutation for both steps; give "
                f"{key} in infomaxloss_kwargs (or train_'s rng) only"
            )
    rng, seed = vae_kwargs.get("rng"), vae_kwargs.get("seed")
    check_rng(rng)
    settings = _Settings(
        α=resolve_weight(vae_kwargs.get("α"), vae_kwargs.get("alpha"), "α", "alpha", 1.0),
        β=resolve_weight(vae_kwargs.get("β"), vae_kwargs.get("beta"), "β", "beta", 1.0),
        loglik=vae_kwargs.get("reconstruction_loglikelihood", decoder_loglikelihood),
        kl_fn=vae_kwargs.get("kl_divergence", encoder_kl),
        reg_vae=vae_kwargs.get("regularization"),
        reg_vae_strength=check_weight(vae_kwargs.get("reg_strength", 1.0), "reg_strength"),
        reg_mi=mi_kwargs.get("regularization"),
        reg_mi_strength=check_weight(mi_kwargs.get("reg_strength", 1.0), "reg_strength"),
        shuffled_gradient=check_shuffled_gradient(vae_kwargs.get("shuffled_gradient", False), rng, seed),
    )
    return settings, rng, seed


class _Logits(NamedTuple):
    """A Bernoulli decoder ending in a sigmoid, split before it: ``body``, then ``last`` (a Dense
    layer whose sigmoid is left out, or ``None`` when the sigmoid is a module of its own)."""

    body: tuple[nn.Module, ...]
    last: nn.Module | None
    sigmoid: nn.Module


#: How each decoder's Bernoulli term is computed (``None``: from its output, as the reference).
_DECODER_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Logits | None]" = weakref.WeakKeyDictionary()


def _logits_plan(decoder: nn.Module) -> _Logits | None:
    """The split of ``decoder`` before its final sigmoid, when it is a plain :class:`BernoulliDecoder`."""
    cls = type(decoder)
    chain = getattr(decoder, "decoder", None)
    if (not isinstance(decoder, BernoulliDecoder) or cls.forward is not BernoulliDecoder.forward
            or cls.loglikelihood is not BernoulliDecoder.loglikelihood or not isinstance(chain, nn.Sequential)
            or len(chain) == 0):
        return None
    end = chain[len(chain) - 1]
    body = tuple(chain[i] for i in range(len(chain) - 1))
    if isinstance(end, Dense) and type(end).forward is Dense.forward and end.activation.name == "sigmoid":
        return _Logits(body, end, end)
    if type(end) is nn.Sigmoid:
        return _Logits(body, None, end)
    return None


def _decoder_plan(decoder: nn.Module) -> _Logits | None:
    if decoder in _DECODER_PLANS:
        plan = _DECODER_PLANS[decoder]
        chain = getattr(decoder, "decoder", None)
        if plan is None or (isinstance(chain, nn.Sequential) and len(chain) and chain[len(chain) - 1] is plan.sigmoid):
            return plan
    plan = _logits_plan(decoder)
    _DECODER_PLANS[decoder] = plan
    return plan


def _bernoulli_from_logits(plan: _Logits, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(a, ll)``: the decoder's pre-activation ``a`` at ``z`` and the Bernoulli log-likelihood
    per sample, :math:`\sum x a - \log(1 + e^{a}) = \sum x\log σ(a) + (1-x)\log σ(-a)`."""
    h = z
    for layer in plan.body:
        h = layer(h)
    a = F.linear(h, plan.last.weight, plan.last.bias) if plan.last is not None else h
    return a, (x * a - F.softplus(a)).flatten(1).sum(1)


class _Draws:
    """The eager step's draws, in the stream's order: the noise inside ``reparameterize``, then
    the permutation (a stream that shuffles codes itself, as the distributed one, does so)."""

    def __init__(self, vae: nn.Module, rng: Any, seed: Any) -> None:
        self.vae, self.rng, self.seed = vae, rng, seed

    def noise(self, enc: Any) -> torch.Tensor:
        """The latent codes, their noise drawn now."""
        return self.vae.encoder.reparameterize(enc, rng=self.rng)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return shuffle_rows(codes, rng=self.rng, seed=self.seed)


def _forward(model: nn.Module, x: torch.Tensor, x_out: torch.Tensor, s: _Settings, noise: torch.Tensor | None,
             shuffle: _Draws | torch.Tensor) -> FusedLosses:
    """The losses at the given noise and permutation of the batch (``shuffle``), or, with
    ``noise=None``, with both drawn on the way by ``shuffle``, a :class:`_Draws`."""
    vae, mi = model.vae, model.mi
    enc = vae.encoder(x)
    z = vae.encoder.reparameterize(enc, noise=noise) if noise is not None else shuffle.noise(enc)
    logits = _decoder_plan(vae.decoder) if s.loglik is decoder_loglikelihood else None
    if logits is None:
        dec = vae.decoder(z)
        ll = torch.mean(s.loglik(x_out, z, vae.decoder, dec))
    else:
        a, ll_each = _bernoulli_from_logits(logits, z, x_out)
        ll = torch.mean(ll_each)
        dec = vae.decoder.output_type(torch.sigmoid(a)) if s.reg_vae is not None or s.reg_mi is not None else None
    kl = torch.mean(s.kl_fn(vae.encoder, enc))
    z_critic = _ScaleGradient.apply(z, s.α)
    to_shuffle = z_critic if s.shuffled_gradient else z.detach()
    shuffled = to_shuffle[shuffle] if isinstance(shuffle, torch.Tensor) else shuffle(to_shuffle)
    g_joint, g_marg = _critic_pair(mi, x, z_critic, shuffled)
    mean_joint = torch.mean(g_joint)
    mean_marg = torch.mean(torch.exp(g_marg - 1))
    info = mean_joint - mean_marg

    vae_loss = -ll + s.β * kl - s.α * info
    mi_loss = -info
    surrogate = -ll + s.β * kl - mean_joint + mean_marg
    if s.reg_vae is not None:
        r = s.reg_vae_strength * s.reg_vae(VAEOutput(enc, z, dec))
        vae_loss = vae_loss + r
        surrogate = surrogate + r
    if s.reg_mi is not None:
        detached = VAEOutput(type(enc)(*(t.detach() for t in enc)), z.detach(),
                             type(dec)(*(t.detach() for t in dec)))
        r = s.reg_mi_strength * s.reg_mi(detached)
        mi_loss = mi_loss + r
        surrogate = surrogate + r
    return FusedLosses(surrogate, vae_loss, mi_loss)


def fused_losses(model: nn.Module, x: torch.Tensor, x_out: torch.Tensor | None = None,
                 vae_kwargs: Mapping[str, Any] | None = None,
                 mi_kwargs: Mapping[str, Any] | None = None, *, compile: bool = False) -> FusedLosses:
    """The fused step's losses from one forward pass (see the module documentation).

    ``x`` (and ``x_out``) must already be tensors on the model's device; this function
    does no boundary checks. ``surrogate.backward()`` gives the VAE parameters the
    gradient of ``vae_loss`` and the critic parameters the gradient of ``mi_loss``.

    ``compile=True`` runs the forward pass (and so the backward pass) compiled by
    ``torch.compile`` (:func:`compiled_forward`); the noise and the permutation are drawn
    before it, eagerly, from the same stream in the same order, so the draws are those of
    the eager step.
    """
    s, rng, seed = _settings(dict(vae_kwargs or {}), dict(mi_kwargs or {}))
    x_out = x if x_out is None else x_out
    if not compile:
        return _forward(model, x, x_out, s, None, _Draws(model.vae, rng, seed))
    if seed is None and rng is not None and hasattr(rng, "shuffle_rows"):
        raise ValueError("compile: the compiled step draws its permutation within the process; it does not run "
                         "with the data-parallel stream (train on one process, or without compile)")
    noise = normal_like(x.new_empty((x.shape[0], _latent_dim(model, x))), rng)
    perm = permutation_like(x.shape[0], x, rng=rng, seed=seed)
    return compiled_forward(x.device)(model, x, x_out, s, noise, perm)


#: The latent size of each model whose encoder does not state it (read from one forward pass).
_LATENT: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()


def _latent_dim(model: nn.Module, x: torch.Tensor) -> int:
    n = getattr(model.vae.encoder, "latent_dim", None)
    if isinstance(n, int):
        return n
    if model not in _LATENT:
        with torch.no_grad():
            _LATENT[model] = int(model.vae.encoder(x[:1]).μ.shape[-1])
    return _LATENT[model]


#: One compiled forward pass per device type (torch.compile caches a graph per model structure).
_COMPILED: dict[str, Callable[..., FusedLosses]] = {}

#: Inductor's options for the step: its pattern matcher fails on the critic's split first layer
#: (``BackendCompilerFailed ... slice_shape``, torch 2.13 on CPU).
COMPILE_OPTIONS: dict[str, Any] = {"pattern_matcher": False}


def compiled_forward(device: torch.device) -> Callable[..., FusedLosses]:
    """The fused forward pass compiled with ``torch.compile`` for ``device``.

    On CPU: inductor's default mode with :data:`COMPILE_OPTIONS`. On CUDA:
    ``mode="reduce-overhead"``, which replays the step's kernels as a CUDA graph. Compiling
    takes tens of seconds on the first step (and again for a new batch size or model
    structure); the later steps reuse the result.
    """
    kind = torch.device(device).type
    fn = _COMPILED.get(kind)
    if fn is None:
        array_namespace(torch.empty(0))  # known before tracing: the densities' lookup is then a constant
        if kind == "cuda":
            fn = torch.compile(_forward, mode="reduce-overhead", dynamic=False)
        else:
            fn = torch.compile(_forward, dynamic=False, options=dict(COMPILE_OPTIONS))
        _COMPILED[kind] = fn
    return fn


def fused_stage(model: nn.Module, x: torch.Tensor, x_out: torch.Tensor | None, opt: OptimizerPair,
                vae_kwargs: Mapping[str, Any], mi_kwargs: Mapping[str, Any], parallel: ParallelModel | None,
                data: Sequence[tuple[torch.Tensor, str]], compile: bool = False) -> Stage:
    """The fused step as one stage of :func:`~autoencoder_toolkit.models.step.run_step`.

    One forward pass, both losses checked, one backward pass of the surrogate, both
    optimizers stepped. With ``parallel`` (data-parallel training) the forward pass runs
    inside its DistributedDataParallel module, so the backward pass averages the
    gradients across processes.
    """
    _check_keys(vae_kwargs, _VAE_KEYS, "infomaxloss_kwargs")
    _check_keys(mi_kwargs, _MI_KEYS, "miloss_kwargs")

    def compute() -> tuple[torch.Tensor, list[torch.Tensor]]:
        if parallel is not None:
            losses = parallel.call("fused", fused_losses, model, x, x_out, vae_kwargs, mi_kwargs)
        else:
            losses = fused_losses(model, x, x_out, vae_kwargs, mi_kwargs, compile=compile)
        return losses.surrogate, [losses.vae_loss, losses.mi_loss]

    return Stage(compute, [(opt.vae, "the VAE (infomaxloss)"), (opt.mi, "the critic (miloss)")],
                 ["infomaxloss", "miloss"], list(data), parallel)

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
   shuffled codes ``z[perm]`` (only the small latent half ``W_z·latent(z)`` is evaluated
   per code set); the rest of the MLP runs on both sets stacked in one batch;
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

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backends import shuffle_rows
from ..outputs import OptimizerPair, VAEOutput
from ..random.draws import check_rng
from .checks import check_shuffled_gradient, check_weight, resolve_weight
from .decoders import decoder_loglikelihood
from .encoders import encoder_kl
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


def _critic_pair(mi: nn.Module, x: torch.Tensor, z_joint: torch.Tensor,
                 z_shuffled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic values on matched and shuffled codes, sharing the data-dependent work."""
    d = mi.data(x)
    l_joint = mi.latent(z_joint)
    l_marg = mi.latent(z_shuffled)
    split = _split_first_layer(mi.mlp)
    batch = d.shape[0]
    if split is None:
        h = torch.cat([torch.cat([d, l_joint], dim=-1), torch.cat([d, l_marg], dim=-1)], dim=0)
        out = mi.mlp(h)
    else:
        first, act, rest = split
        n_d = d.shape[-1]
        w = first.weight
        shared = F.linear(d, w[:, :n_d], first.bias)
        w_z = w[:, n_d:]
        h = torch.cat([act(shared + F.linear(l_joint, w_z)), act(shared + F.linear(l_marg, w_z))], dim=0)
        out = rest(h) if len(rest) else h
    return out[:batch].reshape(-1), out[batch:].reshape(-1)


def _check_keys(kwargs: Mapping[str, Any], allowed: set, name: str) -> None:
    extra = set(kwargs) - allowed
    if extra:
        raise ValueError(
            f"{name}: fused=True does not support {', '.join(sorted(extra))}; accepted: "
            f"{', '.join(sorted(allowed))} (use fused=False for other keywords)"
        )


def fused_losses(model: nn.Module, x: torch.Tensor, x_out: torch.Tensor | None = None,
                 vae_kwargs: Mapping[str, Any] | None = None,
                 mi_kwargs: Mapping[str, Any] | None = None) -> FusedLosses:
    """The fused step's losses from one forward pass (see the module documentation).

    ``x`` (and ``x_out``) must already be tensors on the model's device; this function
    does no boundary checks. ``surrogate.backward()`` gives the VAE parameters the
    gradient of ``vae_loss`` and the critic parameters the gradient of ``mi_loss``.
    """
    vae_kwargs = dict(vae_kwargs or {})
    mi_kwargs = dict(mi_kwargs or {})
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
    β = resolve_weight(vae_kwargs.get("β"), vae_kwargs.get("beta"), "β", "beta", 1.0)
    α = resolve_weight(vae_kwargs.get("α"), vae_kwargs.get("alpha"), "α", "alpha", 1.0)
    reg_vae = vae_kwargs.get("regularization")
    reg_vae_strength = check_weight(vae_kwargs.get("reg_strength", 1.0), "reg_strength")
    reg_mi = mi_kwargs.get("regularization")
    reg_mi_strength = check_weight(mi_kwargs.get("reg_strength", 1.0), "reg_strength")
    loglik = vae_kwargs.get("reconstruction_loglikelihood", decoder_loglikelihood)
    kl_fn = vae_kwargs.get("kl_divergence", encoder_kl)
    rng = vae_kwargs.get("rng")
    seed = vae_kwargs.get("seed")
    check_rng(rng)
    shuffled_gradient = check_shuffled_gradient(vae_kwargs.get("shuffled_gradient", False), rng, seed)

    vae, mi = model.vae, model.mi
    x_out = x if x_out is None else x_out
    enc = vae.encoder(x)
    z = vae.encoder.reparameterize(enc, rng=rng)
    dec = vae.decoder(z)

    ll = torch.mean(loglik(x_out, z, vae.decoder, dec))
    kl = torch.mean(kl_fn(vae.encoder, enc))
    z_critic = _ScaleGradient.apply(z, α)
    to_shuffle = z_critic if shuffled_gradient else z.detach()
    g_joint, g_marg = _critic_pair(mi, x, z_critic, shuffle_rows(to_shuffle, rng=rng, seed=seed))
    mean_joint = torch.mean(g_joint)
    mean_marg = torch.mean(torch.exp(g_marg - 1))
    info = mean_joint - mean_marg

    vae_loss = -ll + β * kl - α * info
    mi_loss = -info
    surrogate = -ll + β * kl - mean_joint + mean_marg
    if reg_vae is not None:
        r = reg_vae_strength * reg_vae(VAEOutput(enc, z, dec))
        vae_loss = vae_loss + r
        surrogate = surrogate + r
    if reg_mi is not None:
        detached = VAEOutput(type(enc)(*(t.detach() for t in enc)), z.detach(),
                             type(dec)(*(t.detach() for t in dec)))
        r = reg_mi_strength * reg_mi(detached)
        mi_loss = mi_loss + r
        surrogate = surrogate + r
    return FusedLosses(surrogate, vae_loss, mi_loss)


def fused_stage(model: nn.Module, x: torch.Tensor, x_out: torch.Tensor | None, opt: OptimizerPair,
                vae_kwargs: Mapping[str, Any], mi_kwargs: Mapping[str, Any], parallel: ParallelModel | None,
                data: Sequence[tuple[torch.Tensor, str]]) -> Stage:
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
            losses = fused_losses(model, x, x_out, vae_kwargs, mi_kwargs)
        return losses.surrogate, [losses.vae_loss, losses.mi_loss]

    return Stage(compute, [(opt.vae, "the VAE (infomaxloss)"), (opt.mi, "the critic (miloss)")],
                 ["infomaxloss", "miloss"], list(data), parallel)

r"""The fused InfoMax-VAE step written by hand in plain PyTorch: the benchmark's variant (e).

The same algorithm as ``infomaxvaes.train_(model, x, opt, fused=True)`` on the same
networks (:mod:`benchmarks.authors_baseline`'s modules, whose shapes are the library's),
written as directly as plain PyTorch allows, without any of the library's checks:

1. ``ε ~ N(0, 1)`` and a permutation ``perm`` of the batch are drawn;
2. one encoder pass, ``z = μ + ε·exp(logσ)``, one decoder pass up to its pre-activation;
3. the critic's first dense layer ``W = [W_x | W_z]`` acting on ``[data(x); latent(z)]``:
   its data half ``W_x·data(x) + b`` is computed once, its latent half by one product on the
   stacked codes ``[z_α; z.detach()[perm]]`` (``z_α`` equals ``z`` and carries ``α`` times
   the gradient), the rest of the MLP on both stacked halves;
4. one backward pass of ``S = −LL + β·KL − mean g(x, z) + mean exp(g(x, z̃) − 1)``, which
   gives the VAE ``∇L_vae`` and the critic ``∇L_mi``;
5. both Adam steps; the two loss values are read in one host synchronisation.

The Bernoulli log-likelihood is computed from the decoder's pre-activation ``a`` as
``Σ x·a − log(1 + e^a)``, as the library's fused step does, so the two compute the same
numbers; only what the library adds around the algorithm (boundary checks, the finiteness
checks of losses, gradients and updates, the bookkeeping that lets a failed update be
undone) is absent here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .authors_baseline import BaselineModel, kl_term

__all__ = ["handwritten_losses", "handwritten_step"]


def handwritten_losses(model: BaselineModel, x: torch.Tensor, noise: torch.Tensor,
                       perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(surrogate, L_vae, L_mi)`` of the fused step at the given noise and permutation."""
    vae, critic, alpha, beta = model.vae, model.critic, model.alpha, model.beta
    mu, logsigma = vae.encode(x)
    z = mu + noise * torch.exp(logsigma)
    a = vae.logits(z)
    loglik = torch.sum(x * a - F.softplus(a), dim=1).mean()
    kl = kl_term(mu, logsigma)
    z_alpha = z if alpha == 1.0 else z + (alpha - 1.0) * (z - z.detach())
    first, n = critic.mlp[0], x.shape[0]
    n_x = x.shape[1]
    shared = F.linear(critic.data(x), first.weight[:, :n_x], first.bias)
    codes = critic.latent(torch.cat([z_alpha, z.detach()[perm]]))
    h = torch.relu(F.linear(codes, first.weight[:, n_x:]).view(2, n, -1) + shared).view(2 * n, -1)
    for layer in critic.mlp[1:-1]:
        h = torch.relu(layer(h))
    g = critic.mlp[-1](h).view(2, n)
    mean_joint, mean_marg = g[0].mean(), torch.exp(g[1] - 1.0).mean()
    info = mean_joint - mean_marg
    surrogate = -loglik + beta * kl - mean_joint + mean_marg
    return surrogate, -loglik + beta * kl - alpha * info, -info


def handwritten_step(model: BaselineModel, x: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[float, float]:
    """One fused training step (both updates); returns ``(L_vae, L_mi)`` as floats."""
    n = x.shape[0]
    noise = torch.randn((n, model.vae.mu.out_features), generator=generator, device=x.device, dtype=x.dtype)
    perm = torch.randperm(n, generator=generator, device=x.device)
    surrogate, l_vae, l_mi = handwritten_losses(model, x, noise, perm)
    model.vae_optimizer.zero_grad(set_to_none=True)
    model.critic_optimizer.zero_grad(set_to_none=True)
    surrogate.backward()
    model.vae_optimizer.step()
    model.critic_optimizer.step()
    values = torch.stack([l_vae.detach(), l_mi.detach()]).tolist()
    return values[0], values[1]

r"""A plain-PyTorch InfoMax-VAE trained the way the paper authors' code trains it.

The step follows the training loop of the InfoMax-VAE reference implementation
(Rezaabad & Vishwanath, "Learning Representations by Maximizing Mutual Information in
Variational Autoencoders", ISIT 2020; their PyTorch code, ``train_infomax``):

1. one forward pass of the VAE, ``x -> (μ, logσ) -> z -> p``;
2. two critic calls, on ``(x, z)`` and on ``(x, z̃)`` with ``z̃`` a permutation of
   ``z`` over the batch, both built on that single forward;
3. ``vae_optimizer.zero_grad(); L_vae.backward(retain_graph=True); vae_optimizer.step()``;
4. ``critic_optimizer.zero_grad(); L_mi.backward(inputs=critic parameters);
   critic_optimizer.step()`` on the retained graph.

So both updates share one forward pass, and the critic is trained on codes from the VAE
*before* its update (the library's faithful ``train_`` runs a fresh forward of the
updated VAE instead). The first backward differentiates every leaf, the critic's too;
those critic gradients are thrown away by the critic optimizer's ``zero_grad``, so each
optimizer steps on its own loss only. The second backward is restricted to the critic's
parameters, so it never reaches (or changes the gradients of) the encoder.

Networks and loss are those of the library's benchmark workload, so the FLOPs can be
compared (see :mod:`benchmarks.flops`):

* encoder: ``Linear(D, h1), relu, Linear(h1, h2), relu`` then heads ``μ = Linear(h2, L)``,
  ``logσ = Linear(h2, L)``; ``z = μ + ε ⊙ exp(logσ)``;
* decoder: ``Linear(L, h1), relu, Linear(h1, h2), relu, Linear(h2, D), sigmoid``;
* critic: ``g(x, z) = mlp(cat[data(x), latent(z)])`` with ``data = Linear(D, D)``,
  ``latent = Linear(L, L)``, ``mlp = Linear(D+L, c1), relu, Linear(c1, c2), relu,
  Linear(c2, 1)``;
* ``L_vae = -mean_b Σ_d [x log(p+ε) + (1-x) log(1-p+ε)] + β mean_b KL - α I`` with
  ``ε = eps(float32)``, ``KL = ½ Σ (exp(2 logσ) + μ² - 1 - 2 logσ)`` and the bound
  ``I = mean g(x, z) - mean exp(g(x, z̃) - 1)``, ``z̃`` detached (a constant);
* ``L_mi = -I``.

Where the authors' code differs (deliberately not reproduced, to keep the FLOPs and the
loss equal to the library's):

* their critic concatenates the raw ``x`` and ``z`` and feeds an MLP
  ``(D+L) -> 1000 -> 400 -> 100 -> 1``; here it is the library's ``MutualInfoChain``
  (``data`` and ``latent`` Dense layers first, hidden widths of the workload);
* their MLP encoder/decoder are deeper and wider (1000-2000 units, 7 layers), and the
  encoder has one head of ``2L`` outputs split into ``μ`` and ``log σ²``; here two
  heads ``μ`` and ``log σ`` of the workload's size (same FLOPs as one ``2L`` head);
* their ``z̃ = z[randperm]`` is not detached, so the VAE also gets a gradient through
  the ``exp(g(x, z̃) - 1)`` term; here ``z̃`` is a constant, as in the library;
* their reconstruction term is ``F.binary_cross_entropy`` (logs clamped at -100)
  summed over pixels and averaged over the batch; here ``log(p + ε)`` as the library;
* their weights are ``alpha`` on the KL and ``gamma = 20`` on the MI term, and the
  critic's Adam has ``lr = 1e-5``; here ``β = α = 1`` and ``lr = 1e-3`` for both, the
  library's defaults;
* their layers use PyTorch's default initialisation; here Glorot-uniform weights and
  zero biases (as the library). Speed does not depend on it;
* their loop keeps the loss tensors; :func:`baseline_step` returns them as floats, as
  ``train_(..., loss_return=True)`` does (one host synchronisation per step, like the
  library).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

__all__ = ["BaselineVAE", "BaselineCritic", "BaselineModel", "build_baseline", "baseline_losses",
           "baseline_step", "vae_terms", "kl_term", "EPS"]

#: ``eps(Float32)``: the constant added inside the Bernoulli log-likelihood's logs.
EPS: float = float(torch.finfo(torch.float32).eps)


def _linear(n_in: int, n_out: int, generator: torch.Generator | None) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    a = math.sqrt(6.0 / (n_in + n_out))
    with torch.no_grad():
        layer.weight.copy_((torch.rand((n_out, n_in), generator=generator) * 2.0 - 1.0) * a)
        layer.bias.zero_()
    return layer


class BaselineVAE(nn.Module):
    """Gaussian encoder (trunk + ``μ``/``logσ`` heads) and Bernoulli decoder."""

    def __init__(self, n_input: int, n_latent: int, encoder_hidden: Sequence[int],
                 decoder_hidden: Sequence[int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        sizes = [n_input, *encoder_hidden]
        self.trunk = nn.ModuleList(_linear(a, b, generator) for a, b in zip(sizes[:-1], sizes[1:]))
        self.mu = _linear(sizes[-1], n_latent, generator)
        self.logsigma = _linear(sizes[-1], n_latent, generator)
        sizes = [n_latent, *decoder_hidden, n_input]
        self.decoder = nn.ModuleList(_linear(a, b, generator) for a, b in zip(sizes[:-1], sizes[1:]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for layer in self.trunk:
            h = torch.relu(layer(h))
        return self.mu(h), self.logsigma(h)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's pre-activation ``a`` (``p = sigmoid(a)``)."""
        h = z
        for layer in self.decoder[:-1]:
            h = torch.relu(layer(h))
        return self.decoder[-1](h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, logsigma = self.encode(x)
        z = mu + noise * torch.exp(logsigma)
        return self.decode(z), mu, logsigma, z


class BaselineCritic(nn.Module):
    """``g(x, z) = mlp(cat[data(x), latent(z)])``, one value per sample."""

    def __init__(self, n_input: int, n_latent: int, hidden: Sequence[int],
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        sizes = [n_input + n_latent, *hidden]
        self.mlp = nn.ModuleList([*(_linear(a, b, generator) for a, b in zip(sizes[:-1], sizes[1:])),
                                  _linear(sizes[-1], 1, generator)])
        self.data = _linear(n_input, n_input, generator)
        self.latent = _linear(n_latent, n_latent, generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.data(x), self.latent(z)], dim=1)
        for layer in self.mlp[:-1]:
            h = torch.relu(layer(h))
        return self.mlp[-1](h).reshape(-1)


@dataclass
class BaselineModel:
    """The two networks and their two optimizers."""

    vae: BaselineVAE
    critic: BaselineCritic
    vae_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    alpha: float = 1.0
    beta: float = 1.0


def build_baseline(n_input: int, n_latent: int, encoder_hidden: Sequence[int], decoder_hidden: Sequence[int],
                   critic_hidden: Sequence[int], *, seed: int = 0, device: str | torch.device = "cpu",
                   lr: float = 1e-3, critic_lr: float | None = None, alpha: float = 1.0,
                   beta: float = 1.0, adam_kwargs: dict | None = None) -> BaselineModel:
    """Build the VAE, the critic and one Adam optimizer for each (float32, on ``device``).

    ``adam_kwargs`` go to both ``torch.optim.Adam`` (e.g. ``{"fused": True}``).
    """
    adam_kwargs = dict(adam_kwargs or {})
    gen = torch.Generator().manual_seed(seed)
    vae = BaselineVAE(n_input, n_latent, encoder_hidden, decoder_hidden, gen).to(device)
    critic = BaselineCritic(n_input, n_latent, critic_hidden, gen).to(device)
    opt_vae = torch.optim.Adam(vae.parameters(), lr=lr, **adam_kwargs)
    opt_critic = torch.optim.Adam(critic.parameters(), lr=lr if critic_lr is None else critic_lr, **adam_kwargs)
    return BaselineModel(vae, critic, opt_vae, opt_critic, alpha, beta)


def vae_terms(vae: BaselineVAE, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z, mean log p(x|z), mean KL)`` of one VAE forward pass at ``noise`` (the library's Bernoulli and KL terms)."""
    p, mu, logsigma, z = vae(x, noise)
    loglik = torch.sum(x * torch.log(p + EPS) + (1.0 - x) * torch.log(1.0 - p + EPS), dim=1).mean()
    return z, loglik, kl_term(mu, logsigma)


def kl_term(mu: torch.Tensor, logsigma: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of ``KL(N(μ, σ²) || N(0, 1))`` summed over the latent axis."""
    return 0.5 * torch.sum(torch.exp(2.0 * logsigma) + mu * mu - 1.0 - 2.0 * logsigma, dim=1).mean()


def baseline_losses(model: BaselineModel, x: torch.Tensor, noise: torch.Tensor,
                    perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_vae, L_mi)`` on one shared forward pass, with the given noise and permutation."""
    z, loglik, kl = vae_terms(model.vae, x, noise)
    z_shuffled = z.detach()[perm]
    g_joint = model.critic(x, z)
    g_shuffled = model.critic(x, z_shuffled)
    mi = g_joint.mean() - torch.exp(g_shuffled - 1.0).mean()
    return -loglik + model.beta * kl - model.alpha * mi, -mi


def baseline_step(model: BaselineModel, x: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[float, float]:
    """One training step (both updates); returns ``(L_vae, L_mi)`` as floats.

    ``generator`` (on ``x``'s device) draws the noise and the permutation; torch's
    global generator when ``None``.
    """
    n = x.shape[0]
    latent = model.vae.mu.out_features
    noise = torch.randn((n, latent), generator=generator, device=x.device, dtype=x.dtype)
    perm = torch.randperm(n, generator=generator, device=x.device)
    l_vae, l_mi = baseline_losses(model, x, noise, perm)

    model.vae_optimizer.zero_grad(set_to_none=True)
    l_vae.backward(retain_graph=True)
    model.vae_optimizer.step()

    model.critic_optimizer.zero_grad(set_to_none=True)
    l_mi.backward(inputs=list(model.critic.parameters()))
    model.critic_optimizer.step()
    return float(l_vae.detach()), float(l_mi.detach())

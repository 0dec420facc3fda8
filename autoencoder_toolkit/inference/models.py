r"""The frozen models: encoders, decoders, the critic, the VAE and the InfoMax-VAE, without torch.

An encoder or a decoder is a :class:`FrozenNetwork`: the structure recorded in its
configuration (an optional trunk, heads, an output distribution of
:mod:`autoencoder_toolkit.distributions`; see :mod:`autoencoder_toolkit.io.architecture`)
says how it runs, so a new encoder or decoder class needs nothing here. The VAE, the
InfoMax-VAE (an MMD-VAE is its VAE at inference) and the critic have their own nodes.
They run what a deployed model runs: the forward pass, :meth:`FrozenVAE.encode` (the
encoder's mean and spread), :meth:`FrozenVAE.decode`, the log-likelihoods, the KL term
and, for an InfoMax-VAE, the mutual-information estimate, with the package's own
formulas. Their outputs match the torch model's within float32 rounding.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from .. import densities
from ..distributions import distribution_class
from ..io.architecture import structure_of
from ..outputs import GaussianParams, InfoMaxVAEOutput, VAEOutput
from .layers import Builder, FrozenModule, register, register_default

__all__ = ["FrozenNetwork", "FrozenMutualInfoChain", "FrozenVAE", "FrozenInfoMaxVAE"]


def _check_shape(x: Any, name: str, sample_shape: Any) -> bool:
    """Whether ``x`` is a batch; raises ``ValueError`` if it fits neither a batch nor one sample."""
    if sample_shape is None:
        return x.ndim >= 2
    shape, k = tuple(x.shape), len(sample_shape)
    if x.ndim == k + 1 and shape[1:] == tuple(sample_shape):
        return True
    if shape == tuple(sample_shape):
        return False
    dims = ", ".join(str(s) for s in sample_shape)
    raise ValueError(f"{name}: expected shape (B, {dims}) or one sample {tuple(sample_shape)}, got {shape}")


class _Model(FrozenModule):
    """A model node: checks its input against its input shape when known."""

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the input, when known."""
        shape = self.params.get("input_shape")
        return None if shape is None else tuple(shape)

    def _input(self, x: Any, name: str = "x") -> Any:
        arr = super()._input(x, name)
        _check_shape(arr, name, self.input_shape)
        return arr


class FrozenNetwork(_Model):
    """A frozen encoder or decoder: ``out = Output(*(head(trunk(x)) for head in heads))``.

    ``params``: ``trunk`` (a child name or ``None``), ``heads``, ``output`` (a distribution
    name, or ``None`` for a deterministic network) and ``single_as_batch``.
    """

    def _setup(self) -> None:
        name = self.params.get("output")
        self._output = None if name is None else distribution_class(name)

    def forward(self, x: Any) -> Any:  # noqa: D102
        p = self.params
        if p.get("single_as_batch") and x.ndim == 1:
            out = self.forward(self.xp.expand_dims(x, axis=0))
            return out[0] if self._output is None else self._output(*(f[0] for f in out))
        h = x if p.get("trunk") is None else self.children[p["trunk"]].forward(x)
        outs = [self.children[head].forward(h) for head in p["heads"]]
        return outs[0] if self._output is None else self._output(*outs)

    def distribution(self, output: Any) -> Any:
        """``output`` as this network's output distribution."""
        if self._output is None:
            raise TypeError("a deterministic network has no distribution")
        return output if type(output) is self._output else self._output(*output)

    # -- encoders --------------------------------------------------------------------
    def posterior(self, x: Any) -> GaussianParams:
        """The encoder's mean ``μ`` and spread ``σ`` (``exp(logσ)`` for a log-scale encoder)."""
        out = self.distribution(self(x))
        return GaussianParams(out.μ, out.σ)

    def reparameterize(self, output: Any, rng: Any = None, *, noise: Any = None) -> Any:
        """A draw ``μ + ε ⊙ σ``, ``ε`` from ``rng`` (see :meth:`Backend.standard_normal`) or given."""
        dist = self.distribution(output)
        if noise is not None:
            noise = self.backend.asarray(noise, dtype=dist.μ.dtype)
        return dist.rsample(rng, noise=noise)

    def kl(self, output: Any) -> Any:
        """Per-sample KL divergence of the encoded distribution to ``N(0, I)``."""
        return self.distribution(output).kl()

    def logposterior(self, z: Any, output: Any) -> Any:
        """``log q(z | x)`` under the encoded distribution."""
        dist = self.distribution(output)
        z = self.backend.asarray(z, dtype=dist[0].dtype)
        return dist.log_prob(z, batched=z.ndim >= 2)

    # -- decoders --------------------------------------------------------------------
    def loglikelihood(self, x: Any, z: Any, output: Any, *, σ: float = 1.0, sigma: float | None = None) -> Any:
        """``log p(x | z)`` from the decoder ``output``: ``(B,)`` for a batch of codes, else a scalar.

        ``σ`` (alias ``sigma``) is the fixed standard deviation of a ``SimpleGaussianDecoder``.
        """
        dist = self.distribution(output)
        batched = getattr(z, "ndim", 1) >= 2
        x = self.backend.asarray(x, dtype=dist[0].dtype)
        if "σ" in inspect.signature(type(dist).log_prob).parameters:
            s = float(sigma if sigma is not None else σ)
            if not s > 0:
                raise ValueError(f"σ: expected a positive number, got {s!r}")
            return dist.log_prob(x, batched=batched, σ=s)
        return dist.log_prob(x, batched=batched)


class FrozenMutualInfoChain(_Model):
    """The critic ``g(x, z) = mlp([data(x), latent(z)])``: ``(B,)`` values."""

    def __call__(self, x: Any, z: Any) -> Any:  # noqa: D102
        x = self._input(x, "x")
        z = FrozenModule._input(self, z, "z")
        if z.ndim != 2 or z.shape[0] != x.shape[0]:
            raise ValueError(f"z: expected a batch of codes ({x.shape[0]}, L), got shape {tuple(z.shape)}")
        return self.forward(x, z)

    def forward(self, x: Any, z: Any) -> Any:  # noqa: D102
        ch = self.children
        h = self.xp.concat([ch["data"].forward(x), ch["latent"].forward(z)], axis=-1)
        return self.xp.reshape(ch["mlp"].forward(h), (-1,))


class FrozenVAE(_Model):
    """A frozen VAE: ``model(x, latent=False, rng=None, noise=None)`` as the torch model's call."""

    @property
    def input_shape(self) -> tuple[int, ...] | None:  # noqa: D102
        return self.encoder.input_shape

    @property
    def encoder(self) -> FrozenNetwork:
        """The frozen encoder."""
        return self.children["encoder"]

    @property
    def decoder(self) -> FrozenNetwork:
        """The frozen decoder."""
        return self.children["decoder"]

    def forward(self, x: Any, latent: bool = False, rng: Any = None, noise: Any = None) -> Any:  # noqa: D102
        enc = self.encoder.forward(x)
        z = self.encoder.reparameterize(enc, rng=rng, noise=noise)
        dec = self.decoder.forward(z)
        return VAEOutput(enc, z, dec) if latent else dec

    def encode(self, x: Any, *, sample: bool = False, rng: Any = None, noise: Any = None) -> Any:
        """The latent means ``μ(x)``, ``(B, L)`` (one sample: ``(L,)``); with ``sample=True`` a draw
        ``z ~ q(z | x)`` (noise from ``rng``, or given). As the torch model's ``encode``."""
        out = self.encoder(self._input(x))
        return self.encoder.reparameterize(out, rng=rng, noise=noise) if sample else self.encoder.distribution(out).μ

    def posterior(self, x: Any) -> GaussianParams:
        """``q(z | x)`` as ``GaussianParams(μ, σ)``, as the torch model's ``posterior``."""
        return self.encoder.posterior(self._input(x))

    def decode(self, z: Any) -> Any:
        """The decoder's output distribution for codes ``z`` (e.g. ``Bernoulli(p)``)."""
        return self.decoder(self.backend.asarray(z, dtype=self.dtype))

    def reconstruct(self, x: Any, *, sample: bool = False, rng: Any = None, noise: Any = None) -> Any:
        """The mean of ``p(x | z)`` at ``z = μ(x)`` (with ``sample=True``, at a draw of ``z``)."""
        z = self.encode(x, sample=sample, rng=rng, noise=noise)
        return self.decoder.distribution(self.decoder(z)).mean

    def sample(self, n: int, *, rng: Any = None, noise: Any = None) -> Any:
        """``n`` samples: the decoder's mean at ``n`` codes drawn from the prior ``N(0, I)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive number of samples, got {n!r}")
        latent = self.decoder.input_shape
        if noise is None:
            if not latent:
                raise TypeError("sample: the latent dimension of this model is not known")
            noise = self.backend.standard_normal((n, *latent), rng=rng, dtype=self.dtype)
        z = self.backend.asarray(noise, dtype=self.dtype)
        return self.decoder.distribution(self.decoder(z)).mean

    def loglikelihood(self, x: Any, x_out: Any = None, *, rng: Any = None, noise: Any = None,
                      **kwargs: Any) -> Any:
        """Per-sample ``log p(x_out | z)`` with one draw ``z ~ q(z | x)`` (``x_out`` defaults to ``x``)."""
        x = self._input(x)
        out = self.forward(x, latent=True, rng=rng, noise=noise)
        target = x if x_out is None else x_out
        return self.decoder.loglikelihood(target, out.z, out.decoder, **kwargs)

    def kl(self, x: Any) -> Any:
        """Per-sample KL divergence of ``q(z | x)`` to the prior."""
        return self.encoder.kl(self.encoder(x))

    def logprior(self, z: Any) -> Any:
        """``log N(z; 0, I)`` per code."""
        return densities.spherical_logprior(self.backend.asarray(z, dtype=self.dtype))

    def loss(self, x: Any, x_out: Any = None, *, β: float = 1.0, beta: float | None = None,
             rng: Any = None, noise: Any = None) -> float:
        """The VAE loss ``−mean log p(x_out|z) + β mean KL`` (one draw), as a float."""
        β = β if beta is None else beta
        x = self._input(x)
        out = self.forward(x, latent=True, rng=rng, noise=noise)
        target = x if x_out is None else self.backend.asarray(x_out, dtype=self.dtype)
        ll = self.decoder.loglikelihood(target, out.z, out.decoder)
        kl = self.encoder.kl(out.encoder)
        xp = self.xp
        return float(-xp.mean(ll) + β * xp.mean(kl))


class FrozenInfoMaxVAE(_Model):
    """A frozen InfoMax-VAE: the VAE and its critic.

    ``model(x, latent=False, seed=None, rng=None, noise=None, permutation=None)`` as the
    torch model's call; with ``latent=True`` it returns ``InfoMaxVAEOutput(vae, mi)``.
    """

    @property
    def input_shape(self) -> tuple[int, ...] | None:  # noqa: D102
        return self.vae.input_shape

    @property
    def vae(self) -> FrozenVAE:
        """The frozen VAE."""
        return self.children["vae"]

    @property
    def mi(self) -> FrozenMutualInfoChain:
        """The frozen critic."""
        return self.children["mi"]

    def forward(self, x: Any, latent: bool = False, seed: int | None = None, rng: Any = None,
                noise: Any = None, permutation: Any = None) -> Any:  # noqa: D102
        if not latent:
            return self.vae.forward(x, rng=rng, noise=noise)
        vo = self.vae.forward(x, latent=True, rng=rng, noise=noise)
        return InfoMaxVAEOutput(vo, self._bound(x, vo.z, seed, rng, permutation))

    def _bound(self, x: Any, z: Any, seed: Any, rng: Any, permutation: Any, z_shuffle: Any = None) -> Any:
        if z.ndim != 2 or z.shape[0] < 2:
            raise ValueError(f"x: the mutual-information bound needs a batch of at least 2 samples, "
                             f"got codes of shape {tuple(z.shape)}")
        if z_shuffle is None:
            n = int(z.shape[0])
            if permutation is None:
                perm = self.backend.permutation(n, rng=rng, seed=seed, device=self.backend.device(z))
            else:
                perm = self.backend.asarray(permutation, dtype="int64")
                if tuple(perm.shape) != (n,):
                    raise ValueError(f"permutation: expected {n} indices, got shape {tuple(perm.shape)}")
            z_shuffle = self.xp.take(z, perm, axis=0)
        return densities.mutual_info_bound(self.mi.forward(x, z), self.mi.forward(x, z_shuffle))

    def mutual_info(self, x: Any, z: Any = None, z_shuffle: Any = None, *, seed: int | None = None,
                    rng: Any = None, noise: Any = None, permutation: Any = None) -> Any:
        """The variational MI estimate (0-d array).

        Without ``z``, ``x`` is encoded with one noise draw (``rng`` or ``noise``); the
        codes are shuffled with ``permutation`` if given (0-based indices; use the
        torch model's permutation for an exact comparison), else with Julia's
        ``MersenneTwister(seed)`` shuffle, else with ``rng``. ``z_shuffle`` overrides
        the shuffle altogether.
        """
        x = self._input(x)
        if z is None:
            z = self.vae.forward(x, latent=True, rng=rng, noise=noise).z
        else:
            z = self.backend.asarray(z, dtype=self.dtype)
        if z_shuffle is not None:
            z_shuffle = self.backend.asarray(z_shuffle, dtype=self.dtype)
        return self._bound(x, z, seed, rng, permutation, z_shuffle)

    def encode(self, x: Any, *, sample: bool = False, rng: Any = None, noise: Any = None) -> Any:
        """The VAE's :meth:`FrozenVAE.encode`."""
        return self.vae.encode(x, sample=sample, rng=rng, noise=noise)

    def posterior(self, x: Any) -> GaussianParams:
        """The VAE's :meth:`FrozenVAE.posterior`."""
        return self.vae.posterior(x)

    def decode(self, z: Any) -> Any:
        """The VAE's :meth:`FrozenVAE.decode`."""
        return self.vae.decode(z)

    def reconstruct(self, x: Any, *, sample: bool = False, rng: Any = None, noise: Any = None) -> Any:
        """The VAE's :meth:`FrozenVAE.reconstruct`."""
        return self.vae.reconstruct(x, sample=sample, rng=rng, noise=noise)

    def sample(self, n: int, *, rng: Any = None, noise: Any = None) -> Any:
        """The VAE's :meth:`FrozenVAE.sample`."""
        return self.vae.sample(n, rng=rng, noise=noise)

    def loglikelihood(self, x: Any, x_out: Any = None, **kwargs: Any) -> Any:
        """Per-sample reconstruction log-likelihood (see :meth:`FrozenVAE.loglikelihood`)."""
        return self.vae.loglikelihood(x, x_out, **kwargs)

    def kl(self, x: Any) -> Any:
        """Per-sample KL divergence of ``q(z | x)`` to the prior."""
        return self.vae.kl(x)

    def loss(self, x: Any, *, β: float = 1.0, α: float = 1.0, beta: float | None = None,
             alpha: float | None = None, seed: int | None = None, rng: Any = None, noise: Any = None,
             permutation: Any = None) -> float:
        """The InfoMax-VAE loss ``−LL + β KL − α MI`` (one draw, one permutation), as a float."""
        β = β if beta is None else beta
        α = α if alpha is None else alpha
        x = self._input(x)
        vo = self.vae.forward(x, latent=True, rng=rng, noise=noise)
        xp = self.xp
        ll = xp.mean(self.vae.decoder.loglikelihood(x, vo.z, vo.decoder))
        kl = xp.mean(self.vae.encoder.kl(vo.encoder))
        mi = self._bound(x, vo.z, seed, rng, permutation)
        return float(-ll + β * kl - α * mi)


# ----------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------

def _meta(c: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.get("meta", {}).items() if k in ("input_shape", "latent_dim")}


def _fields(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> dict[str, FrozenModule]:
    return {name: b.child(child, prefix, where, name) for name, child in c["fields"].items()}


@register("VAE")
def _vae(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    children = _fields(b, c, prefix, where)
    if not isinstance(children["encoder"], FrozenNetwork) or children["encoder"].params.get("output") is None:
        raise b.unsupported(c["fields"]["encoder"], f"{where}.encoder" if where else "encoder",
                            ": a VAE needs a variational encoder")
    return FrozenVAE(b.backend, _meta(c), children=children, source=dict(c))


@register("InfoMaxVAE")
def _infomax(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    return FrozenInfoMaxVAE(b.backend, _meta(c), children=_fields(b, c, prefix, where), source=dict(c))


@register("MutualInfoChain")
def _critic(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    return FrozenMutualInfoChain(b.backend, _meta(c), children=_fields(b, c, prefix, where), source=dict(c))


@register("MMDVAE")
def _mmdvae(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    # at inference an MMD-VAE is its VAE (only its loss differs)
    return b.child(c["fields"]["vae"], prefix, where, "vae")


@register_default
def _network(b: Builder, c: Mapping[str, Any], prefix: str, where: str) -> FrozenModule:
    structure = structure_of(c) if "fields" in c else None
    if structure is None:
        raise b.unsupported(c, where, ": a model without a recorded structure (its class is not an encoder or "
                                      "decoder of this package)")
    if structure["output"] is not None:
        try:
            distribution_class(structure["output"])
        except ValueError as err:
            raise b.unsupported(c, where, f": {err}") from None
    return FrozenNetwork(b.backend, {**structure, **_meta(c)}, children=_fields(b, c, prefix, where),
                         source=dict(c))

r"""Analytic FLOP counts of one InfoMax-VAE training step, per variant.

Only the matrix products of the Dense layers are counted; activations, the losses,
the reparameterisation, the permutation and the optimizer updates are element-wise
and left out (for the workloads here they are a few percent of the total at most).

Counting rules, for a Dense layer ``in => out`` applied to ``B`` rows:

* forward: ``2·B·in·out`` (``x @ Wᵀ``);
* backward, input gradient: ``2·B·in·out`` (``∂y @ W``), computed only when something
  below the layer needs it;
* backward, weight gradient: ``2·B·in·out`` (``∂yᵀ @ x``), computed only when the
  layer's parameters are differentiated in that pass.

So a layer whose input and weights both need gradients costs 2× its forward in the
backward pass, and the first layer of a network (whose input is data) costs 1×.

The networks (``Workload``):

* encoder: trunk ``Dense(D => h1, relu), Dense(h1 => h2, relu)`` and two heads
  ``Dense(h2 => L)`` (``μ`` and ``logσ``);
* Bernoulli decoder: ``Dense(L => h1, relu), Dense(h1 => h2, relu), Dense(h2 => D, sigmoid)``;
* critic ``g(x, z) = mlp([data(x), latent(z)])`` with ``data = Dense(D => D)``,
  ``latent = Dense(L => L)``, ``mlp = Dense(D+L => c1, relu), Dense(c1 => c2, relu),
  Dense(c2 => 1)``. One critic *call* evaluates ``data``, ``latent`` and ``mlp`` on B
  pairs; the MI bound uses two calls, on ``(x, z)`` and on ``(x, z̃)``.

The variants' schedules (what each really runs; :func:`schedule` builds them):

(a) ``train_(model, x, opt)``, faithful to the reference. Step 1: VAE forward, two
    critic calls, backward to the VAE parameters only: the whole VAE, plus the input
    gradients through the critic's ``mlp`` and ``latent`` layers on the ``(x, z)`` call
    (``z̃`` is a constant, critic weights are not differentiated). Step 2: a fresh VAE
    forward (encoder and decoder, without gradient), two critic calls, backward to the
    critic weights on both calls.
(b) ``train_(..., fused=True)`` (``autoencoder_toolkit.fused``): one VAE forward and one
    backward for both updates, with the critic's data-dependent work shared by the two
    code sets. ``data(x)`` is computed once; the ``mlp``'s first layer ``W = [W_x | W_z]``
    is split, ``W_x·data(x)`` is computed once and ``W_z·latent(·)`` once per code set
    (``z`` and ``z̃``); the rest of the ``mlp`` runs on both sets stacked (``2B`` rows).
    The single backward gives the VAE gradients (the gradient to ``z`` is scaled by
    ``α``) and the critic weight gradients. These are the *useful* FLOPs.
(c) the authors' pattern (:mod:`benchmarks.authors_baseline`): one VAE forward and two
    full critic calls (no sharing); ``L_vae.backward(retain_graph=True)`` differentiates
    every leaf, so it runs the VAE backward and the critic backward on both calls with
    weight gradients (then discarded) and the gradient to ``z``; then
    ``L_mi.backward(inputs=critic parameters)`` runs the critic's weight backward on both
    calls a second time. Same networks as (b), more FLOPs: the unshared critic calls and
    the repeated critic backward.

:func:`count_matmul_flops` cross-checks these counts with
``torch.utils.flop_counter.FlopCounterMode`` on a real step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

__all__ = [
    "Layer",
    "Gemm",
    "Workload",
    "Schedule",
    "WORKLOADS",
    "VARIANT_NAMES",
    "vae_forward",
    "vae_backward",
    "critic_forward",
    "critic_backward",
    "critic_pair_forward_shared",
    "critic_pair_backward_shared",
    "schedule",
    "useful_flops",
    "count_matmul_flops",
]

GEMM_KINDS = ("fwd", "bwd_in", "bwd_w")


@dataclass(frozen=True)
class Layer:
    """A Dense layer ``n_in => n_out``."""

    name: str
    n_in: int
    n_out: int

    def flops(self, rows: int) -> int:
        """FLOPs of one product of this layer on ``rows`` rows: ``2·rows·n_in·n_out``."""
        return 2 * rows * self.n_in * self.n_out


@dataclass(frozen=True)
class Gemm:
    """One matrix product: ``kind`` is ``fwd``, ``bwd_in`` (input grad) or ``bwd_w`` (weight grad)."""

    layer: Layer
    kind: str
    rows: int
    step: str = ""

    def __post_init__(self) -> None:
        if self.kind not in GEMM_KINDS:
            raise ValueError(f"kind: expected one of {GEMM_KINDS}, got {self.kind!r}")

    @property
    def flops(self) -> int:
        return self.layer.flops(self.rows)

    @property
    def mkn(self) -> tuple[int, int, int]:
        """``(M, K, N)`` of the product ``(M×K) @ (K×N)`` as torch runs it."""
        b, i, o = self.rows, self.layer.n_in, self.layer.n_out
        if self.kind == "fwd":
            return (b, i, o)      # x (B×in) @ Wᵀ (in×out)
        if self.kind == "bwd_in":
            return (b, o, i)      # ∂y (B×out) @ W (out×in)
        return (o, b, i)          # ∂yᵀ (out×B) @ x (B×in)


@dataclass(frozen=True)
class Workload:
    """Sizes of an InfoMax-VAE: data dimension, latent dimension and hidden widths."""

    name: str
    n_input: int
    n_latent: int
    encoder_hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    description: str = ""

    # Layers, in forward order ---------------------------------------------------
    def encoder_trunk(self) -> list[Layer]:
        sizes = [self.n_input, *self.encoder_hidden]
        return [Layer(f"enc{i + 1}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def encoder_heads(self) -> list[Layer]:
        h = self.encoder_hidden[-1]
        return [Layer("enc_mu", h, self.n_latent), Layer("enc_logsigma", h, self.n_latent)]

    def decoder(self) -> list[Layer]:
        sizes = [self.n_latent, *self.decoder_hidden, self.n_input]
        return [Layer(f"dec{i + 1}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def critic_data(self) -> Layer:
        return Layer("mi_data", self.n_input, self.n_input)

    def critic_latent(self) -> Layer:
        return Layer("mi_latent", self.n_latent, self.n_latent)

    def critic_mlp(self) -> list[Layer]:
        sizes = [self.n_input + self.n_latent, *self.critic_hidden, 1]
        return [Layer(f"mi_mlp{i + 1}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def critic_mlp_split(self) -> tuple[Layer, Layer]:
        """The two column blocks of the ``mlp``'s first layer: ``W_x`` (data) and ``W_z`` (latent)."""
        c1 = self.critic_hidden[0]
        return Layer("mi_mlp1[data]", self.n_input, c1), Layer("mi_mlp1[latent]", self.n_latent, c1)

    def layers(self) -> list[Layer]:
        return [*self.encoder_trunk(), *self.encoder_heads(), *self.decoder(),
                self.critic_data(), self.critic_latent(), *self.critic_mlp()]

    def n_parameters(self) -> dict[str, int]:
        def count(ls: Iterable[Layer]) -> int:
            return sum(l.n_in * l.n_out + l.n_out for l in ls)
        vae = count([*self.encoder_trunk(), *self.encoder_heads(), *self.decoder()])
        mi = count([self.critic_data(), self.critic_latent(), *self.critic_mlp()])
        return {"vae": vae, "mi": mi, "total": vae + mi}

    def config(self) -> dict:
        return {"name": self.name, "n_input": self.n_input, "n_latent": self.n_latent,
                "encoder_hidden": list(self.encoder_hidden), "decoder_hidden": list(self.decoder_hidden),
                "critic_hidden": list(self.critic_hidden), "description": self.description,
                "parameters": self.n_parameters()}


#: The benchmark workloads.
WORKLOADS: dict[str, Workload] = {
    "mnist-mlp": Workload("mnist-mlp", 784, 20, (400, 400), (400, 400), (400, 400),
                          "MNIST-sized MLP: D=784, hidden [400, 400] relu, latent 20, Bernoulli decoder, "
                          "critic hidden [400, 400]"),
    "digits-mlp": Workload("digits-mlp", 64, 8, (128, 128), (128, 128), (128, 128),
                           "scikit-learn digits-sized MLP: D=64 (8×8), hidden [128, 128] relu, latent 8, "
                           "Bernoulli decoder, critic hidden [128, 128]"),
    "tiny-mlp": Workload("tiny-mlp", 16, 2, (16,), (16,), (16,),
                         "a tiny MLP (D=16, hidden [16], latent 2, critic hidden [16]): the step's fixed cost"),
}

VARIANT_NAMES: dict[str, str] = {
    "a": "train_ (faithful two-pass)",
    "b": "train_(fused=True)",
    "c": "authors' pattern (plain PyTorch)",
    "e": "fused step by hand (plain PyTorch)",
    "f": "train_(fused=True, compile=True)",
}


# ----------------------------------------------------------------------------------
# Passes
# ----------------------------------------------------------------------------------

def vae_forward(w: Workload, rows: int, step: str = "") -> list[Gemm]:
    """Encoder trunk, both heads and the decoder on ``rows`` samples."""
    return [Gemm(l, "fwd", rows, step) for l in [*w.encoder_trunk(), *w.encoder_heads(), *w.decoder()]]


def vae_backward(w: Workload, rows: int, step: str = "") -> list[Gemm]:
    """Gradients of every VAE parameter.

    Decoder: weight and input gradients of every layer (the first layer's input gradient
    is the gradient to ``z``). Heads: weight and input gradients. Trunk: weight gradients
    of every layer, input gradients of all but the first (its input is data).
    """
    out: list[Gemm] = []
    for l in reversed(w.decoder()):
        out += [Gemm(l, "bwd_in", rows, step), Gemm(l, "bwd_w", rows, step)]
    for l in w.encoder_heads():
        out += [Gemm(l, "bwd_in", rows, step), Gemm(l, "bwd_w", rows, step)]
    trunk = w.encoder_trunk()
    for i, l in reversed(list(enumerate(trunk))):
        if i > 0:
            out.append(Gemm(l, "bwd_in", rows, step))
        out.append(Gemm(l, "bwd_w", rows, step))
    return out


def critic_forward(w: Workload, rows: int, step: str = "") -> list[Gemm]:
    """One critic call on ``rows`` pairs: ``data``, ``latent`` and the ``mlp``."""
    return [Gemm(l, "fwd", rows, step) for l in [w.critic_data(), w.critic_latent(), *w.critic_mlp()]]


def critic_backward(w: Workload, rows: int, *, weights: bool, code_grad: bool, step: str = "") -> list[Gemm]:
    """Backward through one critic call.

    ``weights``: differentiate the critic's parameters. ``code_grad``: propagate the
    gradient to the code ``z`` (through the ``latent`` layer's input). The ``mlp`` input
    gradients are needed whenever either is asked for; the ``data`` layer's input is the
    data, so it never gets an input gradient.
    """
    if not (weights or code_grad):
        return []
    out: list[Gemm] = []
    for l in reversed(w.critic_mlp()):
        out.append(Gemm(l, "bwd_in", rows, step))
        if weights:
            out.append(Gemm(l, "bwd_w", rows, step))
    if weights:
        out += [Gemm(w.critic_data(), "bwd_w", rows, step), Gemm(w.critic_latent(), "bwd_w", rows, step)]
    if code_grad:
        out.append(Gemm(w.critic_latent(), "bwd_in", rows, step))
    return out


def critic_pair_forward_shared(w: Workload, rows: int, step: str = "") -> list[Gemm]:
    """Both critic calls with the data-dependent work shared (the fused step's forward): the
    data half once, the latent branch and the latent half on both code sets stacked."""
    mlp = w.critic_mlp()
    wx, wz = w.critic_mlp_split()
    out = [Gemm(w.critic_data(), "fwd", rows, step)]
    out += [Gemm(w.critic_latent(), "fwd", 2 * rows, step)]
    out += [Gemm(wx, "fwd", rows, step), Gemm(wz, "fwd", 2 * rows, step)]
    out += [Gemm(l, "fwd", 2 * rows, step) for l in mlp[1:]]
    return out


def critic_pair_backward_shared(w: Workload, rows: int, step: str = "") -> list[Gemm]:
    """Backward of :func:`critic_pair_forward_shared`: all critic weights, and the code grad of ``z``."""
    mlp = w.critic_mlp()
    wx, wz = w.critic_mlp_split()
    out: list[Gemm] = []
    for l in reversed(mlp[1:]):
        out += [Gemm(l, "bwd_in", 2 * rows, step), Gemm(l, "bwd_w", 2 * rows, step)]
    out += [Gemm(wz, "bwd_in", 2 * rows, step), Gemm(wz, "bwd_w", 2 * rows, step)]  # W_z on [z; z̃]
    out += [Gemm(wx, "bwd_in", rows, step), Gemm(wx, "bwd_w", rows, step)]
    out += [Gemm(w.critic_data(), "bwd_w", rows, step)]
    out += [Gemm(w.critic_latent(), "bwd_w", 2 * rows, step)]
    out += [Gemm(w.critic_latent(), "bwd_in", 2 * rows, step)]   # to [z; z̃] (the z̃ half is discarded)
    return out


@dataclass
class Schedule:
    """The matrix products of one training step of a variant."""

    variant: str
    workload: Workload
    batch: int
    description: str
    gemms: list[Gemm] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(g.flops for g in self.gemms)

    @property
    def forward(self) -> int:
        return sum(g.flops for g in self.gemms if g.kind == "fwd")

    @property
    def backward(self) -> int:
        return sum(g.flops for g in self.gemms if g.kind != "fwd")

    def by_step(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.gemms:
            out[g.step] = out.get(g.step, 0) + g.flops
        return out

    def summary(self) -> dict:
        return {"variant": self.variant, "batch": self.batch, "description": self.description,
                "flops": self.total, "forward": self.forward, "backward": self.backward,
                "by_pass": self.by_step(), "n_gemms": len(self.gemms)}


_DESCRIPTIONS = {
    "a": ("2 VAE forwards + 4 critic calls; backward 1: VAE + critic input grads on (x, z); "
          "backward 2: critic weights on both calls"),
    "b": ("1 VAE forward + 2 critic calls sharing data(x) and W_x·data(x) (rest of the mlp on 2B rows); "
          "one backward: VAE + critic weights + grad to z"),
    "c": ("1 VAE forward + 2 critic calls; backward 1 (all leaves): VAE + critic weights + grads to z; "
          "backward 2 (critic only): critic weights on both calls again"),
    "e": "as (b), written by hand in plain PyTorch without the library's checks",
    "f": "as (b), forward and backward compiled by torch.compile (draws and optimizer steps outside)",
}


def schedule(variant: str, w: Workload, batch: int) -> Schedule:
    """The counted schedule of ``variant`` at batch size ``batch``.

    ``e`` (the fused step by hand) and ``f`` (the compiled fused step) run the products of ``b``.
    """
    B = batch
    if variant in ("e", "f"):
        return Schedule(variant, w, B, _DESCRIPTIONS[variant], schedule("b", w, B).gemms)
    g: list[Gemm] = []
    if variant == "a":
        s1, s2 = "vae step", "mi step"
        g += vae_forward(w, B, s1) + critic_forward(w, B, s1) + critic_forward(w, B, s1)
        g += critic_backward(w, B, weights=False, code_grad=True, step=s1)   # (x, z) call
        g += vae_backward(w, B, s1)                                          # (x, z̃): no gradient
        g += vae_forward(w, B, s2) + critic_forward(w, B, s2) + critic_forward(w, B, s2)
        g += critic_backward(w, B, weights=True, code_grad=False, step=s2)
        g += critic_backward(w, B, weights=True, code_grad=False, step=s2)
    elif variant == "b":
        s = "fused forward + backward"
        g += vae_forward(w, B, s) + critic_pair_forward_shared(w, B, s)
        g += critic_pair_backward_shared(w, B, s) + vae_backward(w, B, s)
    elif variant == "c":
        s, s2 = "shared forward + backward (all leaves)", "critic backward (retained graph)"
        g += vae_forward(w, B, s) + critic_forward(w, B, s) + critic_forward(w, B, s)
        g += critic_backward(w, B, weights=True, code_grad=True, step=s)     # (x, z) call
        g += critic_backward(w, B, weights=True, code_grad=False, step=s)    # (x, z̃) call
        g += vae_backward(w, B, s)
        g += critic_backward(w, B, weights=True, code_grad=False, step=s2)
        g += critic_backward(w, B, weights=True, code_grad=False, step=s2)
    else:
        raise ValueError(f"variant: expected one of a, b, c, e, f, got {variant!r}")
    return Schedule(variant, w, B, _DESCRIPTIONS[variant], g)


def useful_flops(w: Workload, batch: int) -> int:
    """The useful FLOPs of a step: those of the fused step, variant (b)'s schedule."""
    return schedule("b", w, batch).total


def count_matmul_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products ``fn()`` runs, counted by ``FlopCounterMode``.

    The counter counts ``2·M·K·N`` per product (bias additions excluded), the same rule
    as this module, so for a correct schedule the two numbers agree exactly.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


if __name__ == "__main__":  # pragma: no cover - a quick printout
    for wl in WORKLOADS.values():
        for b in (64, 256, 1024, 4096):
            row = ", ".join(f"({v}) {schedule(v, wl, b).total / 1e9:.3f}" for v in "abc")
            print(f"{wl.name} B={b}: GFLOP/step {row}")

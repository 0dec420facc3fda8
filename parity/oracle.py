"""Independent float64 NumPy oracle for the InfoMaxVAE reference computations.

This module recomputes, in float64 NumPy, what AutoEncoderToolkit.jl v0.1.2
(Flux 0.14, Optimisers 0.3) computes for the InfoMaxVAE code paths: Dense
chains, the Gaussian encoders, every variational decoder log-likelihood, the
KL term, the mutual-information critic, the losses, their gradients and one
Adam training step.  It does not import ``autoencoder_toolkit`` or ``torch``;
it is written from the reference's formulas so that it can serve as a second,
independent implementation in the parity suite.

Layout convention (batch-first, C order)
----------------------------------------
Every array handed to or returned by this module uses the *Python* layout:

* a data batch is ``(B, D)`` (an image batch ``(B, C, H, W)``), a latent batch
  is ``(B, L)``; a single sample is a 1-D array ``(D,)`` or ``(L,)`` (the
  reference's "vector" methods);
* a reference (Julia) array of size ``(n1, ..., nk)`` is the same memory as a
  C-order array of shape ``(nk, ..., n1)``; :func:`from_julia_layout` and
  :func:`to_julia_layout` convert between the two views (they reverse the
  axes);
* consequently the reference's "axis 1" (the feature axis) is the *last*
  Python axis and its sample axis (the last Julia axis) is Python axis 0.
  "Sum over dims 1:ndims-1" becomes "sum over all axes but axis 0", "shuffle
  columns" becomes "permute rows";
* Dense weights are ``(out, in)`` in *index* order, exactly as in the
  reference (and as in ``torch.nn.Linear``): ``y = x @ W.T + b``;
* permutations are 0-based index arrays: ``shuffle_latent(z, perm)[j] ==
  z[perm[j]]`` (the reference's ``z[:, p]`` with ``p = perm + 1``);
* reparameterisation noise has the shape of the encoder mean ``mu`` in this
  layout: ``(B, L)`` for a batch.  The reference fills ``randn(Float32, L, B)``
  in column-major order, which is the row-major fill of a ``(B, L)`` array.

All randomness is passed in explicitly, in the order in which the reference
draws it (reference semantics, section 6.10): for one InfoMaxVAE ``train!``
call, noise (VAE step), permutation (VAE step), noise (MI step), permutation
(MI step).

Models are plain nested dictionaries of float64 arrays:

* a layer is ``{"kind": "dense", "weight": W, "bias": b, "activation": name}``
  or ``{"kind": "flatten"}``; a chain is a list of layers; a field of a model
  is either one layer or a chain;
* an encoder is ``{"type": "JointGaussianLogEncoder", "encoder": chain,
  "mu": layer, "logsigma": layer}`` (``"sigma"`` instead of ``"logsigma"``
  for ``JointGaussianEncoder``);
* a decoder is ``{"type": T, ...}`` with the fields of the reference type:
  ``decoder`` (Simple/Bernoulli/Categorical), ``decoder``+``mu``+``logsigma``
  (JointGaussianLog), ``decoder``+``mu``+``sigma`` (JointGaussian),
  ``mu``+``logsigma`` chains (SplitGaussianLog), ``mu``+``sigma`` chains
  (SplitGaussian);
* a VAE is ``{"encoder": ..., "decoder": ...}`` and the critic is
  ``{"data": layer-or-chain, "latent": layer-or-chain, "mlp": chain}``.

The activation ``"softmax"`` on a Dense layer stands for the reference's
``Dense(..., identity)`` followed by ``ActivationOverDims(softmax, 1)`` (the
CategoricalDecoder output), i.e. a softmax over the feature axis.

Parameters are addressed by dotted paths (``"encoder.encoder.0.weight"``,
``"mu.bias"``, ``"mlp.2.weight"``); :func:`flat_params` and
:func:`with_params` convert between trees and flat dictionaries.  Gradients
and Adam states use the same paths.

Gradients are computed by a small reverse-mode differentiator over NumPy
arrays (class :class:`Var`): each primitive below carries its hand-written
vector-Jacobian product.  The test-suite checks every gradient against
central finite differences.

One computation has no counterpart in the reference: the port's fused InfoMax-VAE step
(:func:`infomax_train_fused_step`), whose documented semantics are written here from
their definition (both gradients at the same draws and the same parameters), not from
the port's single-pass implementation.

Where the reference raises, the oracle raises :class:`ReferenceRaises`,
naming the defect of the reference semantics document (D1, D3, D4, D6, D8,
D9, D18, ...).  The one deliberate extension is
:func:`infomaxloss_n_samples`: the documented-but-unimplemented ``n_samples``
average (defect D3), defined as

    loss = -mean_s mean_b LL_s + beta * mean_b KL - alpha * mean_s I_s

where, for s = 1..n, the noise ``noise_s`` and then the permutation
``perm_s`` are drawn (draw order noise_1, perm_1, noise_2, perm_2, ...), the
reconstruction term uses the decoder output at ``z_s = mu + noise_s *
exp(logsigma)``, and ``I_s`` is the variational mutual information with ``z_s``
and ``z_s[perm_s]``.  The KL term does not depend on the latent sample.  With
n = 1 it equals :func:`infomaxloss`.

Numerical constants: ``log(2*pi)`` is used in float64 (the reference uses the
float32 value of ``log(2.0f0*pi)``; the difference is below 1e-7 relative) and
the cross-entropy epsilon is ``eps(Float32) = 2**-23`` exactly, as Flux adds it
for float32 predictions.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "LOG2PI", "EPS_F32", "ACTIVATIONS", "ReferenceRaises", "Var",
    "from_julia_layout", "to_julia_layout", "perm_to_julia", "perm_from_julia",
    "activation", "activation_grad", "dense_layer", "flatten_layer",
    "glorot_uniform", "flatten", "dense", "apply_module",
    "encoder_forward", "decoder_forward", "spherical_logprior",
    "encoder_logposterior", "encoder_kl", "decoder_loglikelihood",
    "reparameterize", "shuffle_latent", "mi_forward", "variational_mutual_info",
    "vae_forward", "infomaxvae_forward", "variational_mutual_info_model",
    "infomaxloss", "infomaxloss_grad", "infomaxloss_fixed_shuffle",
    "infomaxloss_fixed_shuffle_grad", "infomaxloss_n_samples",
    "infomaxloss_n_samples_grad", "miloss", "miloss_grad", "vae_loss",
    "vae_loss_grad", "flat_params", "with_params", "adam_init", "adam_update",
    "infomax_train_step", "infomax_train", "infomax_train_fused_step", "infomax_train_fused",
    "vae_train_step", "vae_train",
    "value_and_grad", "make_mlp_chain", "as_array", "iter_param_paths", "backward",
    "DECODER_FAMILIES",
]

LOG2PI = math.log(2.0 * math.pi)
EPS_F32 = 2.0 ** -23  # eps(Float32) = 1.1920929f-7
LEAKYRELU_SLOPE = 0.01
GELU_LAMBDA = math.sqrt(2.0 / math.pi)
GELU_ALPHA = 0.044715


class ReferenceRaises(Exception):
    """The reference implementation raises on this path.

    ``defect`` names the entry of the reference semantics document (for
    example ``"D1"``); ``exception`` is the Julia exception type the reference
    throws there.
    """

    def __init__(self, defect: str, exception: str, message: str):
        super().__init__(f"[{defect}] reference raises {exception}: {message}")
        self.defect = defect
        self.exception = exception


# ---------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------

def from_julia_layout(a) -> np.ndarray:
    """Julia-shaped array ``(n1, ..., nk)`` -> batch-first C-order ``(nk, ..., n1)``."""
    return np.ascontiguousarray(np.transpose(np.asarray(a)))


def to_julia_layout(a) -> np.ndarray:
    """Batch-first C-order ``(nk, ..., n1)`` -> Fortran-order view shaped ``(n1, ..., nk)``."""
    return np.asfortranarray(np.transpose(np.asarray(a)))


def perm_to_julia(perm) -> np.ndarray:
    """0-based permutation -> the reference's 1-based permutation."""
    return np.asarray(perm, dtype=np.int64) + 1


def perm_from_julia(perm) -> np.ndarray:
    """The reference's 1-based permutation -> 0-based permutation."""
    return np.asarray(perm, dtype=np.int64) - 1


# ---------------------------------------------------------------------------
# Reverse-mode differentiation over NumPy arrays
# ---------------------------------------------------------------------------

class Var:
    """A node of the computation graph: a float64 value and its parents.

    ``parents`` is a tuple of ``(parent, vjp)`` pairs, where ``vjp`` maps the
    cotangent of this node to the cotangent contribution of ``parent``.
    Leaves (parameters being differentiated) have no parents.  Plain NumPy
    arrays are constants.
    """

    __slots__ = ("value", "parents")

    def __init__(self, value, parents=()):
        self.value = np.asarray(value, dtype=np.float64)
        self.parents = parents

    @property
    def shape(self):
        return self.value.shape

    @property
    def ndim(self):
        return self.value.ndim


def _v(a):
    return a.value if isinstance(a, Var) else a


def _f(a):
    """Inputs become float64 arrays; graph nodes pass through."""
    if isinstance(a, Var):
        return a
    return np.asarray(a, dtype=np.float64)


def _node(value, *links):
    live = tuple((p, f) for p, f in links if isinstance(p, Var))
    if live:
        return Var(value, live)
    return value


def _unbroadcast(g, shape):
    shape = tuple(shape)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g.reshape(shape)


def backward(out: Var, leaves: Sequence[Var]) -> list:
    """Cotangents of the scalar ``out`` with respect to each of ``leaves``."""
    if not isinstance(out, Var):
        return [np.zeros_like(leaf.value) for leaf in leaves]
    order, seen = [], set()
    stack = [(out, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent, _ in node.parents:
            if id(parent) not in seen:
                stack.append((parent, False))
    grads = {id(out): np.ones_like(out.value)}
    leaf_grads = {}
    for node in reversed(order):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if not node.parents:
            leaf_grads[id(node)] = g
            continue
        for parent, vjp in node.parents:
            gp = vjp(g)
            if id(parent) in grads:
                grads[id(parent)] = grads[id(parent)] + gp
            else:
                grads[id(parent)] = gp
    return [leaf_grads.get(id(leaf), np.zeros_like(leaf.value)) for leaf in leaves]


def _add(a, b):
    av, bv = _v(a), _v(b)
    sa, sb = np.shape(av), np.shape(bv)
    return _node(av + bv, (a, lambda g: _unbroadcast(g, sa)),
                 (b, lambda g: _unbroadcast(g, sb)))


def _sub(a, b):
    av, bv = _v(a), _v(b)
    sa, sb = np.shape(av), np.shape(bv)
    return _node(av - bv, (a, lambda g: _unbroadcast(g, sa)),
                 (b, lambda g: _unbroadcast(-g, sb)))


def _mul(a, b):
    av, bv = _v(a), _v(b)
    sa, sb = np.shape(av), np.shape(bv)
    return _node(av * bv, (a, lambda g: _unbroadcast(g * bv, sa)),
                 (b, lambda g: _unbroadcast(g * av, sb)))


def _div(a, b):
    av, bv = _v(a), _v(b)
    sa, sb = np.shape(av), np.shape(bv)
    return _node(av / bv, (a, lambda g: _unbroadcast(g / bv, sa)),
                 (b, lambda g: _unbroadcast(-g * av / (bv * bv), sb)))


def _scale(a, c: float):
    return _node(_v(a) * c, (a, lambda g: g * c))


def _exp(a):
    out = np.exp(_v(a))
    return _node(out, (a, lambda g: g * out))


def _log(a):
    av = _v(a)
    if np.any(av < 0):
        raise ReferenceRaises("sec0.6", "DomainError", "log of a negative number")
    with np.errstate(divide="ignore"):
        out = np.log(av)
    return _node(out, (a, lambda g: g / av))


def _square(a):
    av = _v(a)
    return _node(av * av, (a, lambda g: 2.0 * av * g))


def _sum(a, axis=None):
    av = _v(a)
    out = np.sum(av, axis=axis)
    shape = av.shape

    def vjp(g):
        if axis is None:
            return np.broadcast_to(g, shape).copy()
        axes = axis if isinstance(axis, tuple) else (axis,)
        axes = tuple(ax % len(shape) for ax in axes)
        gg = np.asarray(g)
        for ax in sorted(axes):
            gg = np.expand_dims(gg, ax)
        return np.broadcast_to(gg, shape).copy()

    return _node(np.asarray(out), (a, vjp))


def _mean(a):
    n = np.size(_v(a))
    return _scale(_sum(a), 1.0 / n)


def _reshape(a, shape):
    av = _v(a)
    old = av.shape
    return _node(av.reshape(shape), (a, lambda g: g.reshape(old)))


def _take_rows(a, idx):
    av = _v(a)
    idx = np.asarray(idx, dtype=np.int64)

    def vjp(g):
        out = np.zeros_like(av)
        np.add.at(out, idx, g)
        return out

    return _node(av[idx], (a, vjp))


def _concat_last(a, b):
    av, bv = _v(a), _v(b)
    if av.ndim != bv.ndim or av.shape[:-1] != bv.shape[:-1]:
        raise ReferenceRaises("vcat", "DimensionMismatch",
                              f"cannot stack {av.shape} and {bv.shape} along the feature axis")
    n = av.shape[-1]
    out = np.concatenate([av, bv], axis=-1)
    return _node(out, (a, lambda g: g[..., :n]), (b, lambda g: g[..., n:]))


def _matmul_wt(x, w):
    """``x @ w.T`` over the last axis of ``x`` (a Dense layer's affine map)."""
    xv, wv = _v(x), _v(w)
    out = xv @ wv.T

    def vjp_x(g):
        return g @ wv

    def vjp_w(g):
        g2 = g.reshape(-1, g.shape[-1])
        x2 = xv.reshape(-1, xv.shape[-1])
        return g2.T @ x2

    return _node(out, (x, vjp_x), (w, vjp_w))


def _xlogy(c, b):
    """``xlogy.(c, b)`` with ``c`` a constant: ``c*log(b)``, exactly 0 where c == 0."""
    if isinstance(c, Var):
        raise TypeError("xlogy: the first argument must be a constant")
    bv = _v(b)
    c = np.asarray(c, dtype=np.float64)
    if np.any(bv < 0):
        raise ReferenceRaises("sec0.6", "DomainError", "xlogy with a negative argument")
    with np.errstate(divide="ignore", invalid="ignore"):
        prod = c * np.log(bv)
    out = np.where(c == 0, 0.0, prod)
    sb = np.shape(bv)
    return _node(out, (b, lambda g: _unbroadcast(g * c / bv, sb)))


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------

def _sigmoid_np(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _act_identity(x):
    return x, np.ones_like(x)


def _act_relu(x):
    return np.where(x < 0, 0.0, x), (x > 0).astype(np.float64)


def _act_tanh(x):
    y = np.tanh(x)
    return y, 1.0 - y * y


def _act_sigmoid(x):
    y = _sigmoid_np(x)
    return y, y * (1.0 - y)


def _act_softplus(x):
    # NNlib form: log1p(exp(-|x|)) + max(x, 0)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0), _sigmoid_np(x)


def _act_elu(x):
    return np.where(x >= 0, x, np.expm1(np.minimum(x, 0.0))), \
        np.where(x >= 0, 1.0, np.exp(np.minimum(x, 0.0)))


def _act_gelu(x):
    # NNlib's gelu is the tanh approximation
    u = GELU_LAMBDA * (x + GELU_ALPHA * x ** 3)
    t = np.tanh(u)
    y = 0.5 * x * (1.0 + t)
    dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_LAMBDA * (1.0 + 3.0 * GELU_ALPHA * x * x)
    return y, dy


def _act_swish(x):
    s = _sigmoid_np(x)
    return x * s, s + x * s * (1.0 - s)


def _act_leakyrelu(x):
    return np.where(x > 0, x, LEAKYRELU_SLOPE * x), np.where(x > 0, 1.0, LEAKYRELU_SLOPE)


_ELEMENTWISE = {
    "identity": _act_identity,
    "relu": _act_relu,
    "tanh": _act_tanh,
    "sigmoid": _act_sigmoid,
    "softplus": _act_softplus,
    "elu": _act_elu,
    "gelu": _act_gelu,
    "swish": _act_swish,
    "silu": _act_swish,
    "leakyrelu": _act_leakyrelu,
}
ACTIVATIONS = tuple(sorted(_ELEMENTWISE)) + ("softmax",)


def _softmax_np(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def activation(name: str, x):
    """Apply the named activation (``softmax``: over the last, feature axis)."""
    xv = _v(x)
    if name == "softmax":
        y = _softmax_np(xv)
        return _node(y, (x, lambda g: y * (g - np.sum(g * y, axis=-1, keepdims=True))))
    try:
        fn = _ELEMENTWISE[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {ACTIVATIONS}") from None
    y, dy = fn(np.asarray(xv, dtype=np.float64))
    return _node(y, (x, lambda g: g * dy))


def activation_grad(name: str, x) -> np.ndarray:
    """Elementwise derivative of an elementwise activation (not softmax)."""
    return _ELEMENTWISE[name](np.asarray(x, dtype=np.float64))[1]


# ---------------------------------------------------------------------------
# Layers and model construction helpers
# ---------------------------------------------------------------------------

def dense_layer(weight, bias=None, activation: str = "identity") -> dict:
    """A Dense layer with weight ``(out, in)`` and bias ``(out,)``."""
    w = np.array(weight, dtype=np.float64)
    b = np.zeros(w.shape[0]) if bias is None else np.array(bias, dtype=np.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"bad Dense shapes {w.shape}, {b.shape}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return {"kind": "dense", "weight": w, "bias": b, "activation": activation}


def flatten_layer() -> dict:
    """The reference's ``Flatten()`` layer (keeps the sample axis)."""
    return {"kind": "flatten"}


def glorot_uniform(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """Uniform(-a, a) with a = sqrt(6/(in+out)), rounded to float32 values."""
    a = math.sqrt(6.0 / (n_in + n_out))
    w = rng.uniform(-a, a, size=(n_out, n_in))
    return w.astype(np.float32).astype(np.float64)


def make_mlp_chain(rng: np.random.Generator, sizes: Sequence[int],
                   activations: Sequence[str], bias_scale: float = 0.1) -> list:
    """A chain of Dense layers ``sizes[0] -> sizes[1] -> ...`` with small random biases.

    The biases are random (not zero as in the reference's initialiser) so that
    parity checks exercise them; all values are float32-representable.
    """
    if len(activations) != len(sizes) - 1:
        raise ValueError("one activation per layer")
    layers = []
    for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations):
        w = glorot_uniform(rng, n_out, n_in)
        b = (bias_scale * rng.standard_normal(n_out)).astype(np.float32).astype(np.float64)
        layers.append(dense_layer(w, b, act))
    return layers


def flatten(x):
    """The reference's ``flatten``: merge every axis but the sample axis.

    Batch-first: ``(B, C, H, W) -> (B, C*H*W)``; a matrix is unchanged; a
    1-D array of length n becomes ``(n, 1)`` (the reference's ``1 x n``).
    """
    xv = _v(x)
    if xv.ndim == 1:
        return _reshape(x, (xv.shape[0], 1))
    return _reshape(x, (xv.shape[0], int(np.prod(xv.shape[1:]))))


def dense(layer: Mapping, x):
    """Dense forward ``act(x @ W.T + b)`` on the last (feature) axis of ``x``."""
    w, b = layer["weight"], layer["bias"]
    xv = _v(x)
    if xv.ndim == 0 or xv.shape[-1] != _v(w).shape[1]:
        raise ReferenceRaises("Flux", "DimensionMismatch",
                              f"Dense expects {_v(w).shape[1]} features, got shape {xv.shape}")
    return activation(layer["activation"], _add(_matmul_wt(x, w), b))


def _apply_layer(layer: Mapping, x):
    kind = layer["kind"]
    if kind == "dense":
        return dense(layer, x)
    if kind == "flatten":
        return flatten(x)
    raise ValueError(f"unknown layer kind {kind!r}")


def apply_module(module, x):
    """Apply one layer (a dict) or a chain (a list of layers)."""
    x = _f(x)
    if isinstance(module, (list, tuple)):
        for layer in module:
            x = _apply_layer(layer, x)
        return x
    return _apply_layer(module, x)


# ---------------------------------------------------------------------------
# Encoders, prior, posterior, KL
# ---------------------------------------------------------------------------

_ENCODER_SECOND = {"JointGaussianLogEncoder": "logsigma", "JointGaussianEncoder": "sigma"}


def _squeeze(a):
    av = _v(a)
    return _reshape(a, tuple(s for s in av.shape if s != 1))


def encoder_forward(encoder: Mapping, x) -> dict:
    """Encoder outputs ``{"mu", "logsigma"}`` (or ``{"mu", "sigma"}``).

    Every size-1 axis is dropped from both outputs, as the reference's
    ``dropdims`` does: a batch of one gives 1-D outputs.
    """
    kind = encoder["type"]
    second = _ENCODER_SECOND.get(kind)
    if second is None:
        raise ValueError(f"unknown encoder type {kind!r}")
    h = apply_module(encoder["encoder"], x)
    return {"mu": _squeeze(apply_module(encoder["mu"], h)),
            second: _squeeze(apply_module(encoder[second], h))}


def _shape_julia_compatible(sa, sb) -> bool:
    n = max(len(sa), len(sb))
    pa = (1,) * (n - len(sa)) + tuple(sa)
    pb = (1,) * (n - len(sb)) + tuple(sb)
    return pa == pb


def _jsub(a, b):
    """Julia's non-broadcasting ``a - b``: equal shapes up to trailing (Julia) size-1 axes."""
    sa, sb = np.shape(_v(a)), np.shape(_v(b))
    if not _shape_julia_compatible(sa, sb):
        raise ReferenceRaises("sec0.5", "DimensionMismatch",
                              f"a - b with shapes {sa} and {sb} (batch-first)")
    return _sub(a, b)


def spherical_logprior(z):
    """Standard-normal log density: scalar for 1-D ``z``, ``(B,)`` for ``(B, L)``."""
    z = _f(z)
    zv = _v(z)
    if zv.ndim == 1:
        return _sub(_scale(_sum(_square(z)), -0.5), 0.5 * zv.shape[0] * LOG2PI)
    if zv.ndim == 2:
        return _sub(_scale(_sum(_square(z), axis=-1), -0.5), 0.5 * zv.shape[-1] * LOG2PI)
    raise ReferenceRaises("dispatch", "MethodError", "spherical_logprior takes a vector or a matrix")


def encoder_logposterior(z, encoder_output: Mapping, index: int | None = None):
    """Diagonal-Gaussian log density of ``z`` under the encoder output.

    1-D ``z``: scalar; ``(B, L)`` ``z``: ``(B,)``.  ``index`` (0-based) selects
    row ``index`` of a batched output for a single ``z`` (the reference's
    ``µ[:, i]`` with ``i = index + 1``).
    """
    mu, logsigma = _f(encoder_output["mu"]), _f(encoder_output["logsigma"])
    z = _f(z)
    zv = _v(z)
    if index is not None:
        if zv.ndim != 1:
            raise ReferenceRaises("dispatch", "MethodError", "the index form takes a vector z")
        if _v(mu).ndim != 2:
            raise ReferenceRaises("index", "BoundsError", "the index form needs a matrix encoder output")
        mu, logsigma = _take_rows(mu, index), _take_rows(logsigma, index)
    var = _exp(_scale(logsigma, 2.0))
    quad = _div(_square(_jsub(z, mu)), var)
    if zv.ndim == 1:
        val = _sub(_sub(_scale(_sum(quad), -0.5), _sum(logsigma)), 0.5 * zv.size * LOG2PI)
        return val
    if zv.ndim == 2:
        return _sub(_sub(_scale(_sum(quad, axis=-1), -0.5), _sum(logsigma, axis=-1)),
                    0.5 * zv.shape[-1] * LOG2PI)
    raise ReferenceRaises("dispatch", "MethodError", "encoder_logposterior takes a vector or a matrix z")


def encoder_kl(encoder_output: Mapping, encoder: Mapping | None = None):
    """KL(q(z|x) || N(0, I)) per sample.

    ``(B, L)`` outputs give ``(B,)``; 1-D outputs give a one-element array
    (defect D13).  Only the log-scale encoder has a KL method (D8).
    """
    if encoder is not None and encoder.get("type") != "JointGaussianLogEncoder":
        raise ReferenceRaises("D8", "MethodError", "encoder_kl exists only for AbstractGaussianLogEncoder")
    if "logsigma" not in encoder_output:
        raise ReferenceRaises("D8", "MethodError", "encoder_kl needs (mu, logsigma) outputs")
    mu, logsigma = _f(encoder_output["mu"]), _f(encoder_output["logsigma"])
    two_ls = _scale(logsigma, 2.0)
    terms = _sub(_sub(_add(_exp(two_ls), _square(mu)), 1.0), two_ls)
    lv = _v(logsigma)
    if lv.ndim == 0:
        return _reshape(_scale(terms, 0.5), (1,))
    if lv.ndim == 1:
        return _reshape(_scale(_sum(terms), 0.5), (1,))
    summed = _scale(_sum(terms, axis=-1), 0.5)
    return _reshape(summed, (-1,))


# ---------------------------------------------------------------------------
# Decoders and their log-likelihoods
# ---------------------------------------------------------------------------

DECODER_FAMILIES = {
    "SimpleGaussianDecoder": "simple_gaussian",
    "BernoulliDecoder": "bernoulli",
    "CategoricalDecoder": "categorical",
    "JointGaussianLogDecoder": "gaussian_log",
    "SplitGaussianLogDecoder": "gaussian_log",
    "JointGaussianDecoder": "gaussian_linear",
    "SplitGaussianDecoder": "gaussian_linear",
}


def decoder_forward(decoder: Mapping, z) -> dict:
    """Decoder outputs: ``{"mu"}``, ``{"p"}``, ``{"mu","logsigma"}`` or ``{"mu","sigma"}``."""
    kind = decoder["type"]
    if kind == "SimpleGaussianDecoder":
        return {"mu": apply_module(decoder["decoder"], z)}
    if kind in ("BernoulliDecoder", "CategoricalDecoder"):
        return {"p": apply_module(decoder["decoder"], z)}
    if kind in ("JointGaussianLogDecoder", "JointGaussianDecoder"):
        second = "logsigma" if kind == "JointGaussianLogDecoder" else "sigma"
        h = apply_module(decoder["decoder"], z)
        return {"mu": apply_module(decoder["mu"], h), second: apply_module(decoder[second], h)}
    if kind in ("SplitGaussianLogDecoder", "SplitGaussianDecoder"):
        second = "logsigma" if kind == "SplitGaussianLogDecoder" else "sigma"
        return {"mu": apply_module(decoder["mu"], z), second: apply_module(decoder[second], z)}
    raise ValueError(f"unknown decoder type {kind!r}")


def _sum_per_sample(a):
    """Sum over every axis but the sample axis (axis 0), giving ``(B,)``."""
    av = _v(a)
    if av.ndim < 2:
        raise ValueError("per-sample sums need a batch axis")
    return _sum(a, axis=tuple(range(1, av.ndim)))


def _row(a, index):
    return _take_rows(a, index)


def decoder_loglikelihood(x, z, decoder, decoder_output: Mapping, *,
                          sigma: float | None = None, index: int | None = None,
                          dims: int | None = None):
    """Log-likelihood of ``x`` under the decoder output.

    ``decoder`` is a decoder dict or its type name.  A 1-D ``z`` (one sample)
    gives a scalar, a 2-D ``z`` (a batch) a ``(B,)`` array; ``z`` only selects
    the method.  ``sigma`` is the SimpleGaussianDecoder keyword (default 1);
    ``index`` (0-based) selects sample ``index`` of batched ``x`` and outputs
    (the reference's index form).  ``dims`` is the Categorical vector-form
    keyword (its value does not change the sum).
    """
    kind = decoder if isinstance(decoder, str) else decoder["type"]
    family = DECODER_FAMILIES.get(kind)
    if family is None:
        raise ValueError(f"unknown decoder type {kind!r}")
    zv = _v(z)
    if zv.ndim not in (1, 2):
        raise ReferenceRaises("dispatch", "MethodError", "z must be a vector or a matrix")
    single = zv.ndim == 1
    if index is not None and not single:
        raise ReferenceRaises("dispatch", "MethodError", "the index form takes a vector z")
    if sigma is not None and family != "simple_gaussian":
        raise ReferenceRaises("kwarg", "MethodError", "only SimpleGaussianDecoder takes sigma")
    if dims is not None and (family != "categorical" or not single):
        raise ReferenceRaises("D18", "MethodError", "dims is accepted only by the Categorical vector form")

    x = _f(x)
    out = {k: _f(v) for k, v in decoder_output.items()}
    if index is not None:
        x = _row(x, index)
        out = {k: _row(v, index) for k, v in out.items()}

    def total(a):
        return _sum(a) if single else _sum_per_sample(a)

    if family in ("bernoulli", "categorical"):
        p = out["p"]
        if not _shape_julia_compatible(np.shape(_v(p)), np.shape(_v(x))):
            raise ReferenceRaises("Flux", "DimensionMismatch", "loss function size check")
        xv = np.asarray(_v(x), dtype=np.float64)
        ll = _xlogy(xv, _add(p, EPS_F32))
        if family == "bernoulli":
            ll = _add(ll, _xlogy(1.0 - xv, _add(_scale(p, -1.0), 1.0 + EPS_F32)))
        if single:
            return _sum(ll)
        pv = _v(p)
        return _reshape(_sum(ll, axis=tuple(range(1, pv.ndim))), (-1,))

    mu = out["mu"]
    diff = _jsub(x, mu)
    xv = _v(x)
    if single:
        n_elem = float(np.size(xv))
    else:
        n_elem = float(np.prod(np.shape(_v(mu))[1:]))

    if family == "simple_gaussian":
        s = 1.0 if sigma is None else float(sigma)
        if s < 0:
            raise ReferenceRaises("sec0.6", "DomainError", "log of a negative sigma")
        with np.errstate(divide="ignore"):
            inv_var = np.float64(1.0) / np.float64(s * s)
            const = 0.5 * n_elem * (2.0 * np.log(np.float64(s)) + LOG2PI)
        quad = _scale(_square(diff), inv_var)
        return _sub(_scale(total(quad), -0.5), const)

    if family == "gaussian_log":
        logsigma = out["logsigma"]
        quad = _div(_square(diff), _exp(_scale(logsigma, 2.0)))
        return _sub(_sub(_scale(total(quad), -0.5), total(logsigma)), 0.5 * n_elem * LOG2PI)

    # gaussian_linear
    sig = out["sigma"]
    if single:
        quad = _div(_square(diff), _square(sig))
    else:
        quad = _square(_div(diff, sig))
    return _sub(_sub(_scale(total(quad), -0.5), total(_log(sig))), 0.5 * n_elem * LOG2PI)


# ---------------------------------------------------------------------------
# Sampling, shuffling, critic
# ---------------------------------------------------------------------------

def reparameterize(mu, sigma, noise, *, log: bool = True):
    """``mu + noise * exp(sigma)`` (``log=True``) or ``mu + noise * sigma``.

    ``noise`` is the reference's ``randn(Float32, size(mu)...)`` in the
    batch-first layout; it must have the shape of ``mu``.
    """
    noise = np.asarray(noise, dtype=np.float64)
    mu, sigma = _f(mu), _f(sigma)
    if noise.shape != np.shape(_v(mu)):
        raise ValueError(f"noise shape {noise.shape} != mu shape {np.shape(_v(mu))}")
    scale = _exp(sigma) if log else sigma
    return _add(mu, _mul(noise, scale))


def _check_perm(perm, n):
    perm = np.asarray(perm, dtype=np.int64)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"not a permutation of range({n}): {perm}")
    return perm


def shuffle_latent(z, perm, *, seed=None):
    """Permute the samples of ``z`` (``(B, L)``): row j of the result is ``z[perm[j]]``."""
    if seed is not None:
        raise ReferenceRaises("D1", "UndefVarError", "MersenneTwister is not defined")
    z = _f(z)
    zv = _v(z)
    if zv.ndim != 2:
        raise ReferenceRaises("D9", "MethodError", "shuffle_latent accepts only a matrix")
    return _take_rows(z, _check_perm(perm, zv.shape[0]))


def mi_forward(mi: Mapping, x, z):
    """The critic ``g(x, z) = vec(mlp([data(x); latent(z)]))``; ``(B,)`` for a batch."""
    h = _concat_last(apply_module(mi["data"], x), apply_module(mi["latent"], z))
    return _reshape(apply_module(mi["mlp"], h), (-1,))


def variational_mutual_info(mi: Mapping, x, z, z_shuffle):
    """``mean g(x, z) - mean exp(g(x, z_shuffle) - 1)``."""
    return _sub(_mean(mi_forward(mi, x, z)),
                _mean(_exp(_sub(mi_forward(mi, x, z_shuffle), 1.0))))


# ---------------------------------------------------------------------------
# VAE / InfoMaxVAE forward passes
# ---------------------------------------------------------------------------

def _latent_sample(vae: Mapping, enc: Mapping, noise):
    if vae["encoder"]["type"] != "JointGaussianLogEncoder":
        raise ReferenceRaises("D8", "MethodError",
                              "reparameterize exists only for AbstractGaussianLogEncoder")
    return reparameterize(enc["mu"], enc["logsigma"], noise, log=True)


def vae_forward(vae: Mapping, x, noise, *, latent: bool = False):
    """VAE forward: decoder outputs, or ``{"encoder", "z", "decoder"}`` when ``latent``."""
    enc = encoder_forward(vae["encoder"], x)
    z = _latent_sample(vae, enc, noise)
    dec = decoder_forward(vae["decoder"], z)
    if latent:
        return {"encoder": enc, "z": z, "decoder": dec}
    return dec


def infomaxvae_forward(vae: Mapping, mi: Mapping, x, noise, perm=None, *,
                       latent: bool = False, seed=None):
    """InfoMaxVAE forward; with ``latent`` returns ``{"vae": {...}, "mi": I}``."""
    if not latent:
        return vae_forward(vae, x, noise)
    vo = vae_forward(vae, x, noise, latent=True)
    z_shuffle = _v(shuffle_latent(_v(vo["z"]), perm, seed=seed))
    return {"vae": vo, "mi": variational_mutual_info(mi, x, vo["z"], z_shuffle)}


def variational_mutual_info_model(vae: Mapping, mi: Mapping, x, noise, perm, *, seed=None):
    """``variational_mutual_info(imv, x)``: a VAE forward, one shuffle, the estimate."""
    z = vae_forward(vae, x, noise, latent=True)["z"]
    z_shuffle = _v(shuffle_latent(_v(z), perm, seed=seed))
    return variational_mutual_info(mi, x, z, z_shuffle)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------

def _default_ll(x, z, decoder, decoder_output):
    return decoder_loglikelihood(x, z, decoder, decoder_output)


def _default_kl(encoder, encoder_output):
    return encoder_kl(encoder_output, encoder)


def _infomax_graph(vae, mi, x_in, x_out, noises, perms, beta, alpha, regularization=None,
                   reg_strength=1.0, z_shuffles=None, reconstruction_loglikelihood=None,
                   kl_divergence=None):
    if len(noises) != len(perms) or not noises:
        raise ValueError("need one permutation per noise draw, at least one")
    ll_fn = reconstruction_loglikelihood or _default_ll
    kl_fn = kl_divergence or _default_kl
    x_in, x_out = _f(x_in), _f(x_out)
    lls, mis = [], []
    kl = None
    for s, (noise, perm) in enumerate(zip(noises, perms)):
        vo = vae_forward(vae, x_in, noise, latent=True)
        lls.append(_mean(ll_fn(x_out, vo["z"], vae["decoder"], vo["decoder"])))
        if kl is None:
            kl = _mean(kl_fn(vae["encoder"], vo["encoder"]))
        if z_shuffles is not None:
            z_shuffle = np.asarray(z_shuffles[s], dtype=np.float64)
        else:
            z_shuffle = _v(shuffle_latent(_v(vo["z"]), perm))  # a gradient constant
        mis.append(variational_mutual_info(mi, x_in, vo["z"], z_shuffle))
    n = len(noises)
    ll = lls[0]
    info = mis[0]
    for extra in lls[1:]:
        ll = _add(ll, extra)
    for extra in mis[1:]:
        info = _add(info, extra)
    if n > 1:
        ll, info = _scale(ll, 1.0 / n), _scale(info, 1.0 / n)
    loss = _sub(_add(_scale(ll, -1.0), _scale(kl, beta)), _scale(info, alpha))
    if regularization is not None:
        reg = float(regularization(_strip_vars(vo)))
        loss = _add(loss, reg_strength * reg)
    return loss, {"loglikelihood": ll, "kl": kl, "mutual_info": info}


def _terms_out(loss, terms, return_terms):
    if not return_terms:
        return float(_v(loss))
    out = {k: float(_v(v)) for k, v in terms.items()}
    out["loss"] = float(_v(loss))
    return out


def infomaxloss(vae: Mapping, mi: Mapping, x, x_out=None, *, noise, perm,
                beta: float = 1.0, alpha: float = 1.0, seed=None, n_samples=None,
                reconstruction_loglikelihood: Callable | None = None,
                kl_divergence: Callable | None = None,
                regularization: Callable | None = None, reg_strength: float = 1.0,
                return_terms: bool = False):
    """The reference ``infomaxloss`` (one or two data arguments).

    ``-mean_b LL(x_out) + beta*mean_b KL - alpha*I(x_in, z, z[perm])`` with
    ``z = mu + noise*exp(logsigma)``.  ``reconstruction_loglikelihood(x, z,
    decoder, decoder_output)`` and ``kl_divergence(encoder, encoder_output)``
    replace the default terms, with the reference's argument order (they
    receive graph nodes when differentiated, so build them from this module's
    functions).  ``regularization`` (value only) is called with the VAE
    outputs ``{"encoder", "z", "decoder"}``.  With ``return_terms`` a dict with
    ``loss``, ``loglikelihood`` (batch mean), ``kl`` (batch mean) and
    ``mutual_info`` is returned.
    """
    if seed is not None:
        raise ReferenceRaises("D1", "UndefVarError", "MersenneTwister is not defined")
    if n_samples is not None:
        raise ReferenceRaises("D3", "MethodError", "infomaxloss has no keyword n_samples")
    x_out = x if x_out is None else x_out
    loss, terms = _infomax_graph(vae, mi, x, x_out, [noise], [perm], beta, alpha,
                                 regularization, reg_strength,
                                 reconstruction_loglikelihood=reconstruction_loglikelihood,
                                 kl_divergence=kl_divergence)
    return _terms_out(loss, terms, return_terms)


def infomaxloss_fixed_shuffle(vae: Mapping, mi: Mapping, x, x_out=None, *, noise, z_shuffle,
                              beta: float = 1.0, alpha: float = 1.0) -> float:
    """``infomaxloss`` with the shuffled codes ``z_shuffle`` given as a constant.

    This is the function of the VAE parameters whose gradient the reference
    takes (the shuffle sits under ``@ignore_derivatives``): perturbing the VAE
    changes ``z`` but not ``z_shuffle``.  With ``z_shuffle = z[perm]`` its value
    equals :func:`infomaxloss`.
    """
    x_out = x if x_out is None else x_out
    loss, _ = _infomax_graph(vae, mi, x, x_out, [noise], [None], beta, alpha,
                             z_shuffles=[z_shuffle])
    return float(_v(loss))


def infomaxloss_n_samples(vae: Mapping, mi: Mapping, x, x_out=None, *, noises, perms,
                          beta: float = 1.0, alpha: float = 1.0, return_terms: bool = False):
    """The documented ``n_samples`` average (the reference raises, defect D3).

    ``noises[s]`` and ``perms[s]`` are drawn in the order noise_1, perm_1,
    noise_2, perm_2, ...; the loss is
    ``-mean_s mean_b LL_s + beta*mean_b KL - alpha*mean_s I_s``.
    """
    x_out = x if x_out is None else x_out
    loss, terms = _infomax_graph(vae, mi, x, x_out, list(noises), list(perms), beta, alpha)
    return _terms_out(loss, terms, return_terms)


def miloss(vae: Mapping, mi: Mapping, x, *, noise, perm, seed=None,
           regularization: Callable | None = None):
    """The reference ``miloss``: ``-I(x, z, z[perm])`` after a fresh VAE forward."""
    if seed is not None:
        raise ReferenceRaises("D1", "UndefVarError", "MersenneTwister is not defined")
    if regularization is not None:
        raise ReferenceRaises("D4", "UndefVarError", "outputs not defined")
    return float(_v(_miloss_graph(vae, mi, x, noise, perm)))


def _miloss_graph(vae, mi, x, noise, perm):
    x = _f(x)
    z = _v(vae_forward(vae, x, noise, latent=True)["z"])  # the VAE is a constant here
    z_shuffle = _v(shuffle_latent(z, perm))
    return _scale(variational_mutual_info(mi, x, z, z_shuffle), -1.0)


def _vae_loss_graph(vae, x_in, x_out, noise, beta, reconstruction_loglikelihood=None,
                    kl_divergence=None):
    x_in, x_out = _f(x_in), _f(x_out)
    ll_fn = reconstruction_loglikelihood or _default_ll
    kl_fn = kl_divergence or _default_kl
    vo = vae_forward(vae, x_in, noise, latent=True)
    ll = _mean(ll_fn(x_out, vo["z"], vae["decoder"], vo["decoder"]))
    kl = _mean(kl_fn(vae["encoder"], vo["encoder"]))
    return _add(_scale(ll, -1.0), _scale(kl, beta)), {"loglikelihood": ll, "kl": kl}


def vae_loss(vae: Mapping, x, x_out=None, *, noise, beta: float = 1.0,
             reconstruction_loglikelihood: Callable | None = None,
             kl_divergence: Callable | None = None,
             reg_function: Callable | None = None, return_terms: bool = False):
    """``VAEs.loss``: ``-mean_b LL(x_out) + beta*mean_b KL`` (custom terms as in
    :func:`infomaxloss`)."""
    if reg_function is not None:
        raise ReferenceRaises("D6", "UndefVarError", "vae_outputs not defined")
    x_out = x if x_out is None else x_out
    loss, terms = _vae_loss_graph(vae, x, x_out, noise, beta, reconstruction_loglikelihood,
                                  kl_divergence)
    return _terms_out(loss, terms, return_terms)


# ---------------------------------------------------------------------------
# Parameter trees and gradients
# ---------------------------------------------------------------------------

_PARAM_KEYS = ("weight", "bias")


def _walk(tree, prefix, visit):
    if isinstance(tree, Mapping):
        if tree.get("kind") == "dense":
            for key in _PARAM_KEYS:
                visit(f"{prefix}{key}", tree, key)
            return
        for key, val in tree.items():
            if isinstance(val, (Mapping, list, tuple)):
                _walk(val, f"{prefix}{key}.", visit)
    elif isinstance(tree, (list, tuple)):
        for i, val in enumerate(tree):
            _walk(val, f"{prefix}{i}.", visit)


def flat_params(tree, prefix: str = "") -> dict:
    """``{dotted path: array}`` for every weight and bias of a model tree."""
    out = {}
    _walk(tree, prefix, lambda path, layer, key: out.__setitem__(path, _v(layer[key])))
    return out


def with_params(tree, params: Mapping, prefix: str = ""):
    """A deep copy of ``tree`` whose arrays are replaced by ``params[path]`` where given."""
    new = copy.deepcopy(_strip_vars(tree))

    def visit(path, layer, key):
        if path in params:
            val = params[path]
            layer[key] = val if isinstance(val, Var) else np.array(val, dtype=np.float64)

    _walk(new, prefix, visit)
    return new


def _strip_vars(tree):
    if isinstance(tree, Var):
        return tree.value
    if isinstance(tree, Mapping):
        return {k: _strip_vars(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_strip_vars(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_strip_vars(v) for v in tree)
    return tree


def _lift(tree):
    leaves = {path: Var(val) for path, val in flat_params(tree).items()}
    return with_params(tree, leaves), leaves


def value_and_grad(fn: Callable, tree) -> tuple[float, dict]:
    """Value of ``fn(lifted_tree)`` and its gradient w.r.t. every parameter of ``tree``."""
    lifted, leaves = _lift(tree)
    out = fn(lifted)
    paths = list(leaves)
    grads = backward(out, [leaves[p] for p in paths]) if isinstance(out, Var) else \
        [np.zeros_like(leaves[p].value) for p in paths]
    return float(_v(out)), dict(zip(paths, grads))


def infomaxloss_grad(vae, mi, x, x_out=None, *, noise, perm, beta=1.0, alpha=1.0,
                     reconstruction_loglikelihood=None, kl_divergence=None):
    """``infomaxloss`` and its gradient w.r.t. the VAE parameters (critic constant)."""
    x_out = x if x_out is None else x_out
    return value_and_grad(
        lambda v: _infomax_graph(v, mi, x, x_out, [noise], [perm], beta, alpha,
                                 reconstruction_loglikelihood=reconstruction_loglikelihood,
                                 kl_divergence=kl_divergence)[0], vae)


def infomaxloss_fixed_shuffle_grad(vae, mi, x, x_out=None, *, noise, z_shuffle, beta=1.0,
                                   alpha=1.0):
    """:func:`infomaxloss_fixed_shuffle` and its gradient w.r.t. the VAE parameters."""
    x_out = x if x_out is None else x_out
    return value_and_grad(
        lambda v: _infomax_graph(v, mi, x, x_out, [noise], [None], beta, alpha,
                                 z_shuffles=[z_shuffle])[0], vae)


def infomaxloss_n_samples_grad(vae, mi, x, x_out=None, *, noises, perms, beta=1.0, alpha=1.0):
    """:func:`infomaxloss_n_samples` and its gradient w.r.t. the VAE parameters."""
    x_out = x if x_out is None else x_out
    return value_and_grad(
        lambda v: _infomax_graph(v, mi, x, x_out, list(noises), list(perms), beta, alpha)[0], vae)


def miloss_grad(vae, mi, x, *, noise, perm):
    """``miloss`` and its gradient w.r.t. the critic parameters (VAE constant)."""
    return value_and_grad(lambda m: _miloss_graph(vae, m, x, noise, perm), mi)


def vae_loss_grad(vae, x, x_out=None, *, noise, beta=1.0, reconstruction_loglikelihood=None,
                  kl_divergence=None):
    """``VAEs.loss`` and its gradient w.r.t. the VAE parameters."""
    x_out = x if x_out is None else x_out
    return value_and_grad(lambda v: _vae_loss_graph(v, x, x_out, noise, beta,
                                                    reconstruction_loglikelihood,
                                                    kl_divergence)[0], vae)


# ---------------------------------------------------------------------------
# Adam (Optimisers.jl form) and training steps
# ---------------------------------------------------------------------------

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def adam_init(params: Mapping, betas=ADAM_BETAS) -> dict:
    """Fresh Adam state per parameter: ``m = v = 0``, ``beta_pow = betas``, ``step = 0``."""
    return {k: {"m": np.zeros_like(v), "v": np.zeros_like(v),
                "beta_pow": (float(betas[0]), float(betas[1])), "step": 0}
            for k, v in params.items()}


def adam_update(params: Mapping, grads: Mapping, state: Mapping, *, eta: float = 1e-3,
                betas=ADAM_BETAS, eps: float = ADAM_EPS) -> tuple[dict, dict]:
    """One Adam step (Optimisers.jl): returns ``(new_params, new_state)``.

    ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
    ``x <- x - eta * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``.  A parameter
    whose gradient is missing (``None``) keeps its value and state.
    """
    b1, b2 = betas
    new_params, new_state = {}, {}
    for k, x in params.items():
        g = grads.get(k)
        st = state[k]
        if g is None:
            new_params[k] = np.array(x, dtype=np.float64)
            new_state[k] = copy.deepcopy(st)
            continue
        g = np.asarray(g, dtype=np.float64)
        m = b1 * st["m"] + (1.0 - b1) * g
        v = b2 * st["v"] + (1.0 - b2) * g * g
        b1t, b2t = st["beta_pow"]
        step = m / (1.0 - b1t) / (np.sqrt(v / (1.0 - b2t)) + eps) * eta
        new_params[k] = np.asarray(x, dtype=np.float64) - step
        new_state[k] = {"m": m, "v": v, "beta_pow": (b1t * b1, b2t * b2), "step": st["step"] + 1}
    return new_params, new_state


def infomax_train_step(vae, mi, x, x_out=None, *, noise_vae, perm_vae, noise_mi, perm_mi,
                       opt_state=None, eta=1e-3, betas=ADAM_BETAS, eps=ADAM_EPS,
                       beta=1.0, alpha=1.0) -> dict:
    """One InfoMaxVAE ``train!`` call with Adam.

    1. VAE step: ``infomaxloss`` (with ``x_out`` if given) and its gradient
       w.r.t. the VAE only, using ``noise_vae`` then ``perm_vae``; Adam update
       of the VAE.
    2. MI step: ``miloss`` on ``x`` (the input data) with a fresh forward of the
       *updated* VAE using ``noise_mi`` then ``perm_mi``; gradient w.r.t. the
       critic; Adam update of the critic.

    Returns ``{"loss_vae", "loss_mi", "vae", "mi", "opt_state"}``; ``loss_vae``
    is evaluated before the VAE update, ``loss_mi`` with the updated VAE and
    the critic before its update.  ``opt_state`` is ``{"vae": ..., "mi": ...}``
    (fresh when None).
    """
    if opt_state is None:
        opt_state = {"vae": adam_init(flat_params(vae), betas),
                     "mi": adam_init(flat_params(mi), betas)}
    loss_vae, g_vae = infomaxloss_grad(vae, mi, x, x_out, noise=noise_vae, perm=perm_vae,
                                       beta=beta, alpha=alpha)
    p_vae, s_vae = adam_update(flat_params(vae), g_vae, opt_state["vae"], eta=eta,
                               betas=betas, eps=eps)
    vae_new = with_params(vae, p_vae)
    loss_mi, g_mi = miloss_grad(vae_new, mi, x, noise=noise_mi, perm=perm_mi)
    p_mi, s_mi = adam_update(flat_params(mi), g_mi, opt_state["mi"], eta=eta,
                             betas=betas, eps=eps)
    return {"loss_vae": loss_vae, "loss_mi": loss_mi, "vae": vae_new,
            "mi": with_params(mi, p_mi), "opt_state": {"vae": s_vae, "mi": s_mi},
            "grads": {"vae": g_vae, "mi": g_mi}}


def infomax_train(vae, mi, x, x_out=None, *, draws: Sequence, opt_state=None, eta=1e-3,
                  betas=ADAM_BETAS, eps=ADAM_EPS, beta=1.0, alpha=1.0) -> dict:
    """Several ``train!`` calls; ``draws`` is the flat stream
    ``[noise, perm, noise, perm] * steps`` in the reference's draw order.

    Returns ``{"loss_vae": [..], "loss_mi": [..], "vae", "mi", "opt_state"}``.
    """
    if len(draws) % 4:
        raise ValueError("draws must hold 4 arrays per train! call")
    losses_vae, losses_mi = [], []
    for i in range(0, len(draws), 4):
        res = infomax_train_step(vae, mi, x, x_out, noise_vae=draws[i], perm_vae=draws[i + 1],
                                 noise_mi=draws[i + 2], perm_mi=draws[i + 3],
                                 opt_state=opt_state, eta=eta, betas=betas, eps=eps,
                                 beta=beta, alpha=alpha)
        vae, mi, opt_state = res["vae"], res["mi"], res["opt_state"]
        losses_vae.append(res["loss_vae"])
        losses_mi.append(res["loss_mi"])
    return {"loss_vae": losses_vae, "loss_mi": losses_mi, "vae": vae, "mi": mi,
            "opt_state": opt_state}


def infomax_train_fused_step(vae, mi, x, x_out=None, *, noise, perm, opt_state=None, eta=1e-3,
                             betas=ADAM_BETAS, eps=ADAM_EPS, beta=1.0, alpha=1.0) -> dict:
    """One fused InfoMax-VAE step (the port's ``train_(..., fused=True)``; the reference
    has no such step, so this is the port's documented semantics, not the reference's).

    One noise draw and one permutation serve both updates, and both gradients are taken
    at the parameters ``(θ, φ)`` before the step.  With ``z(θ) = μ_θ(x) + noise ⊙
    exp(logσ_θ(x))`` and the shuffled codes ``z̃ = z(θ)[perm]`` held constant,

        I(θ, φ)  = mean_b g_φ(x_b, z_b(θ)) − mean_b exp(g_φ(x_b, z̃_b) − 1)
        L_vae(θ) = −mean_b LL(x_out | dec_θ(z(θ))) + β·mean_b KL(q_θ(·|x_b)) − α·I(θ, φ)
        L_mi(φ)  = −I(θ, φ)

    (``x_out = x`` unless given; the critic always sees ``x``).  The VAE steps with
    ``∇_θ L_vae`` (the critic fixed) and the critic with ``∇_φ L_mi`` (the VAE fixed, the
    same ``z``), each by Adam with its own state.  Where the faithful step
    (:func:`infomax_train_step`) evaluates the critic's loss on the *updated* VAE with a
    second noise draw and permutation, this step reuses the first ones and the VAE
    before its update.  ``loss_vae`` and ``loss_mi`` are both values before the step.

    Returns ``{"loss_vae", "loss_mi", "vae", "mi", "opt_state", "grads"}`` as
    :func:`infomax_train_step` does.
    """
    if opt_state is None:
        opt_state = {"vae": adam_init(flat_params(vae), betas),
                     "mi": adam_init(flat_params(mi), betas)}
    loss_vae, g_vae = infomaxloss_grad(vae, mi, x, x_out, noise=noise, perm=perm,
                                       beta=beta, alpha=alpha)
    loss_mi, g_mi = miloss_grad(vae, mi, x, noise=noise, perm=perm)
    p_vae, s_vae = adam_update(flat_params(vae), g_vae, opt_state["vae"], eta=eta,
                               betas=betas, eps=eps)
    p_mi, s_mi = adam_update(flat_params(mi), g_mi, opt_state["mi"], eta=eta,
                             betas=betas, eps=eps)
    return {"loss_vae": loss_vae, "loss_mi": loss_mi, "vae": with_params(vae, p_vae),
            "mi": with_params(mi, p_mi), "opt_state": {"vae": s_vae, "mi": s_mi},
            "grads": {"vae": g_vae, "mi": g_mi}}


def infomax_train_fused(vae, mi, x, x_out=None, *, draws: Sequence, opt_state=None, eta=1e-3,
                        betas=ADAM_BETAS, eps=ADAM_EPS, beta=1.0, alpha=1.0) -> dict:
    """Several fused steps; ``draws`` is the flat stream ``[noise, perm] * steps``.

    Returns ``{"loss_vae": [..], "loss_mi": [..], "vae", "mi", "opt_state", "grads"}``,
    ``grads`` being those of the last step.
    """
    if len(draws) % 2 or not draws:
        raise ValueError("draws must hold 2 arrays (noise, permutation) per fused step")
    losses_vae, losses_mi, grads = [], [], None
    for i in range(0, len(draws), 2):
        res = infomax_train_fused_step(vae, mi, x, x_out, noise=draws[i], perm=draws[i + 1],
                                       opt_state=opt_state, eta=eta, betas=betas, eps=eps,
                                       beta=beta, alpha=alpha)
        vae, mi, opt_state, grads = res["vae"], res["mi"], res["opt_state"], res["grads"]
        losses_vae.append(res["loss_vae"])
        losses_mi.append(res["loss_mi"])
    return {"loss_vae": losses_vae, "loss_mi": losses_mi, "vae": vae, "mi": mi,
            "opt_state": opt_state, "grads": grads}


def vae_train_step(vae, x, x_out=None, *, noise, opt_state=None, eta=1e-3,
                   betas=ADAM_BETAS, eps=ADAM_EPS, beta=1.0) -> dict:
    """One ``VAEs.train!`` call: ``VAEs.loss`` gradient and one Adam update."""
    if opt_state is None:
        opt_state = adam_init(flat_params(vae), betas)
    loss, g = vae_loss_grad(vae, x, x_out, noise=noise, beta=beta)
    p, s = adam_update(flat_params(vae), g, opt_state, eta=eta, betas=betas, eps=eps)
    return {"loss": loss, "vae": with_params(vae, p), "opt_state": s, "grads": g}


def vae_train(vae, x, x_out=None, *, draws: Sequence, opt_state=None, eta=1e-3,
              betas=ADAM_BETAS, eps=ADAM_EPS, beta=1.0) -> dict:
    """Several ``VAEs.train!`` calls, one noise array per call."""
    losses = []
    for noise in draws:
        res = vae_train_step(vae, x, x_out, noise=noise, opt_state=opt_state, eta=eta,
                             betas=betas, eps=eps, beta=beta)
        vae, opt_state = res["vae"], res["opt_state"]
        losses.append(res["loss"])
    return {"loss": losses, "vae": vae, "opt_state": opt_state}


def as_array(a) -> np.ndarray:
    """The float64 value of an oracle result (a :class:`Var` or an array)."""
    return np.asarray(_v(a), dtype=np.float64)


def iter_param_paths(tree, prefix: str = "") -> Iterable[str]:
    """The dotted parameter paths of a tree, in traversal order."""
    return list(flat_params(tree, prefix))

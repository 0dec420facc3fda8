r"""Run every parity case through ``autoencoder_toolkit`` and compare (``python -m parity``).

For each case file in ``parity/cases/`` the runner

1. rebuilds the case's models in ``autoencoder_toolkit`` from the stored float32
   weights (``Dense.from_weights`` and the field constructors of the encoder, decoder
   and critic types);
2. runs the case's operation with ``rng=juliarng.seed_(julia_seed)``, so that the
   package draws the noise and the permutations itself, from its Julia-compatible
   stream, in its own order (and ``seed=k`` shuffles from ``MersenneTwister(k)``);
3. replays the case's list of draws twice, with the oracle's own Julia streams
   (:mod:`parity.julia_streams`, written separately from the package) and with the
   package's :mod:`autoencoder_toolkit.random.juliarng`, and checks bit for bit that
   the stored ``draw_values``, the oracle's draws and the package's draws are the same,
   and that the operation consumed exactly those draws (the next value of the
   operation's stream equals the next value of the oracle's stream after the list):
   row ``draws``;
4. compares every expected quantity with the package's value, on every backend:
   ``torch`` always, ``numpy`` (and ``cupy`` where a CUDA device and CuPy exist) for
   the pure array functions and, through ``model.to_backend(name)`` when the package
   provides it, for the forward passes of the models.  Losses, gradients and training
   need autograd and run on ``torch`` only;
5. with Julia outputs present (``parity/julia_outputs/`` or ``--julia-outputs DIR``,
   written by ``parity/julia/make_cases.jl``) also compares with the reference's own
   numbers, and checks that the reference raised exactly where the case says it does.

Tolerance
---------
An element passes when ``|a - b| <= atol + rtol * |b|`` (``a`` the package's float32
value, ``b`` the float64 expectation), with

* ``rtol = 1e-5``: the package computes in float32 (unit roundoff ``u = 2**-24 ≈
  6e-8``) and the oracle in float64.  A value that is a sum of ``n`` rounded terms
  carries a relative error that grows like ``sqrt(n) * u`` for random rounding (at
  worst ``n * u``); the reductions here have ``n`` up to 257 samples times a few
  features, after two to four Dense layers, so ``sqrt(n) * u`` is ``1e-6`` and a few
  hundred ulps is ``1e-5``.  A formula error (a sum for a mean, a missing factor 2, a
  wrong permutation or draw order, a dropped ``ε`` where a probability is exactly 0 or
  1) changes values far more than that (``1e-3`` relative at least, often by orders
  of magnitude), so ``1e-5`` separates the two.
* ``atol = 1e-6 * scale`` for values and updated parameters, ``5e-6 * scale`` for
  gradients and Adam moments, ``scale`` being the largest ``|b|`` of the quantity.  An
  element that is small only because of cancellation (a gradient entry, a
  log-likelihood near zero, a centred code) inherits the absolute rounding error of the
  terms it came from, which is ``u`` times *their* magnitude, not its own; ``1e-6 *
  scale`` is 16 ulps of the largest element.  Measured on the fixtures (float32 torch
  on CPU against the oracle), the largest ``|a - b| / scale`` is ``7e-7`` for values
  (a decoder mean after reparameterisation and three layers), ``9e-8`` for updated
  parameters, ``1.3e-6`` for gradients (sums over the batch of backpropagated
  products, up to 257 samples; ``2.6e-6`` on a second machine, another x86 CPU with
  torch 2.11, where CuPy also ran the array functions) and ``1.7e-6`` for Adam moments
  (``m = 0.1 g`` and ``v = 0.001 g^2``, whose relative error is twice that of ``g``).
  The worst element of every quantity stays below 1/5 of the combined bound on both
  machines (``err/tol`` column).  The parameter update ``eta * m / (sqrt(v) + eps)`` is
  insensitive to relative errors of ``g`` unless ``|g|`` is near ``eps = 1e-8``.
* against Julia outputs (both sides float32) both bounds are doubled.

The summary under the table gives the worst error of each quantity type (values,
gradients, Adam moments, parameters); ``--verbose`` lists every quantity separately.  A case file may set ``tolerance: {"rtol", "atol"}`` to
override both (``atol`` then absolute).

Exit status: 0 when every comparison passes, 1 when any fails, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import cases_io as C
from . import julia_streams as S

PARITY_DIR = Path(__file__).resolve().parent
CASES_DIR = PARITY_DIR / "cases"
JULIA_DIR = PARITY_DIR / "julia_outputs"

RTOL = 1e-5
ATOL_SCALE = {"value": 1e-6, "params": 1e-6, "grad": 5e-6, "adam": 5e-6}
JULIA_FACTOR = 2.0

BACKENDS = ("torch", "numpy", "cupy")

# ops whose computation is a pure array function (run on every backend directly)
PURE_OPS = {"spherical_logprior", "encoder_kl", "encoder_logposterior", "decoder_loglikelihood",
            "reparameterize", "shuffle_latent"}
# the port's own operations, with no counterpart in the reference: compared with the
# oracle's definition of them; Julia outputs for them hold only the draws
PORT_ONLY_OPS = {"infomax_train_fused"}
# forward passes of models (run on other backends through model.to_backend)
FORWARD_OPS = {"chain_forward", "encoder_forward", "decoder_forward", "mi_forward",
               "variational_mutual_info", "vae_forward", "infomaxvae_forward",
               "variational_mutual_info_model"}


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table: a quantity (or a group of them) of a case on a backend."""

    case: str
    quantity: str
    backend: str
    versus: str = "oracle"
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    ratio: float = float("nan")
    rtol: float = float("nan")
    atol: float = float("nan")
    status: str = "PASS"
    note: str = ""
    members: int = 1

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped_backends: dict[str, str] = field(default_factory=dict)
    cases: int = 0
    seconds: float = 0.0

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.failed]

    @property
    def ok(self) -> bool:
        return not self.failures


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------

def _cupy_status() -> tuple[bool, str]:
    try:
        import cupy  # noqa: F401
    except Exception as err:  # pragma: no cover - depends on the machine
        return False, f"CuPy is not installed ({type(err).__name__})"
    try:  # pragma: no cover - needs a GPU
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA device"
    except Exception as err:  # pragma: no cover
        return False, f"no CUDA device ({type(err).__name__})"
    return True, ""  # pragma: no cover


def model_backends_available() -> tuple[bool, str]:
    """Whether models can be exported to another backend (``to_backend``)."""
    import autoencoder_toolkit as aet

    if hasattr(aet.Dense, "to_backend") or hasattr(aet.VAE, "to_backend"):
        return True, ""
    return False, ("autoencoder_toolkit models have no to_backend(); model forward passes run "
                   "on torch only")


class Backend:
    """Conversion of arrays to and from one array library."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "cupy":  # pragma: no cover - needs a GPU
            import cupy

            self._xp = cupy

    def asarray(self, a: np.ndarray):
        a = np.asarray(a)
        if self.name == "torch":
            import torch

            return torch.from_numpy(np.ascontiguousarray(a).copy())
        if self.name == "numpy":
            return np.array(a)
        return self._xp.asarray(a)  # pragma: no cover

    @staticmethod
    def to_numpy(a) -> np.ndarray:
        if hasattr(a, "detach"):
            return a.detach().cpu().numpy().astype(np.float64)
        if type(a).__module__.startswith("cupy"):  # pragma: no cover
            import cupy

            return cupy.asnumpy(a).astype(np.float64)
        return np.asarray(a, dtype=np.float64)


# ---------------------------------------------------------------------------
# Models from the case specification
# ---------------------------------------------------------------------------

FIELD_NAMES = {"μ": "mu", "logσ": "logsigma", "σ": "sigma", "p": "p"}


def _build_layer(spec: Mapping, params: Mapping, name: str, registry: dict):
    import autoencoder_toolkit as aet

    if spec["kind"] == "flatten":
        return aet.Flatten()
    if spec["kind"] != "dense":
        raise ValueError(f"{name}: unknown layer kind {spec['kind']!r}")
    w = params[f"{name}.weight"]
    b = params[f"{name}.bias"]
    if w.shape != (spec["out"], spec["in"]):
        raise ValueError(f"{name}.weight has shape {w.shape}, the spec says {(spec['out'], spec['in'])}")
    layer = aet.Dense.from_weights(np.asarray(w, np.float32), np.asarray(b, np.float32),
                                   activation=spec["activation"])
    registry[name] = layer
    return layer


def build_module(spec: Mapping, params: Mapping, name: str, registry: dict):
    """A Dense/Flatten layer or a Chain; Dense layers are recorded in ``registry``."""
    import autoencoder_toolkit as aet

    if spec["kind"] == "chain":
        return aet.Chain(*[_build_layer(s, params, f"{name}.{i}", registry)
                           for i, s in enumerate(spec["layers"])])
    return _build_layer(spec, params, name, registry)


def _types() -> dict:
    import autoencoder_toolkit as aet
    from autoencoder_toolkit import infomaxvaes

    return {
        "JointGaussianLogEncoder": aet.JointGaussianLogEncoder,
        "JointGaussianEncoder": aet.JointGaussianEncoder,
        "SimpleGaussianDecoder": aet.SimpleGaussianDecoder,
        "BernoulliDecoder": aet.BernoulliDecoder,
        "CategoricalDecoder": aet.CategoricalDecoder,
        "JointGaussianLogDecoder": aet.JointGaussianLogDecoder,
        "JointGaussianDecoder": aet.JointGaussianDecoder,
        "SplitGaussianLogDecoder": aet.SplitGaussianLogDecoder,
        "SplitGaussianDecoder": aet.SplitGaussianDecoder,
        "MutualInfoChain": infomaxvaes.MutualInfoChain,
    }


def build_typed(spec: Mapping, params: Mapping, name: str, registry: dict):
    """An encoder, decoder or critic from its fields, in the reference's field order."""
    cls = _types()[spec["type"]]
    parts = [build_module(spec[f], params, f"{name}.{f}", registry)
             for f in C.MODEL_FIELDS[spec["type"]]]
    return cls(*parts)


def build_models(case: Mapping) -> tuple[dict, dict]:
    """``({"vae", "mi", "encoder", "decoder", "chain"}: module, {param prefix: Dense})``."""
    from autoencoder_toolkit import vaes

    spec = case.get("model") or {}
    params = C.decode_section(case, "params")
    registry: dict = {}
    models: dict = {}
    if "vae" in spec:
        enc = build_typed(spec["vae"]["encoder"], params, "vae.encoder", registry)
        dec = build_typed(spec["vae"]["decoder"], params, "vae.decoder", registry)
        models["vae"] = vaes.VAE(enc, dec)
    for key in ("mi", "encoder", "decoder"):
        if key in spec:
            models[key] = build_typed(spec[key], params, key, registry)
    if "chain" in spec:
        models["chain"] = build_module(spec["chain"], params, "chain", registry)
    return models, registry


def _dummy_encoder():
    import autoencoder_toolkit as aet

    return aet.JointGaussianLogEncoder(aet.Chain(aet.Dense(1, 1)), aet.Dense(1, 1), aet.Dense(1, 1))


def _dummy_decoder(kind: str):
    import autoencoder_toolkit as aet

    cls = _types()[kind]
    if kind in ("SimpleGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder"):
        return cls(aet.Chain(aet.Dense(1, 1)))
    if kind in ("JointGaussianLogDecoder", "JointGaussianDecoder"):
        return cls(aet.Chain(aet.Dense(1, 1)), aet.Dense(1, 1), aet.Dense(1, 1))
    return cls(aet.Chain(aet.Dense(1, 1)), aet.Chain(aet.Dense(1, 1)))


_DECODER_OUTPUT = {
    "SimpleGaussianDecoder": ("GaussianMean", ("mu",)),
    "BernoulliDecoder": ("Probabilities", ("p",)),
    "CategoricalDecoder": ("Probabilities", ("p",)),
    "JointGaussianLogDecoder": ("GaussianLogParams", ("mu", "logsigma")),
    "SplitGaussianLogDecoder": ("GaussianLogParams", ("mu", "logsigma")),
    "JointGaussianDecoder": ("GaussianParams", ("mu", "sigma")),
    "SplitGaussianDecoder": ("GaussianParams", ("mu", "sigma")),
}


def _named(prefix: str, nt) -> dict:
    return {f"{prefix}{FIELD_NAMES.get(k, k)}": v for k, v in nt._asdict().items()}


# ---------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------

def replay_draws(case: Mapping):
    """Replay a case's draws with the package's ``juliarng``: ``({name: value}, global
    stream after the draws)``."""
    from autoencoder_toolkit import juliarng

    rng = juliarng.seed_(int(case["julia_seed"]), julia=C.REFERENCE["julia"])
    values = {}
    for d in case.get("draws") or []:
        if d["kind"] == "randn":
            values[d["name"]] = juliarng.randn(rng, *d["shape"], dtype=np.float32)
        elif d.get("rng"):
            spec = d["rng"]
            if spec.get("type") != "MersenneTwister":
                raise ValueError(f"unknown draw generator {spec!r}")
            mt = juliarng.MersenneTwister(int(spec["seed"]), julia=C.REFERENCE["julia"])
            values[d["name"]] = juliarng.shuffle(mt, range(int(d["n"])))
        else:
            values[d["name"]] = juliarng.shuffle(rng, range(int(d["n"])))
    return values, rng


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == np.float32:
        return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    return bool(np.array_equal(a, b))


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0))


def check_draws(case: Mapping, op_rng) -> Row:
    """The draws of a case, bit for bit, against the oracle's own Julia streams.

    Three sources must agree on every draw: the stored ``draw_values``, the oracle's
    streams (:func:`parity.julia_streams.replay`) and the package's ``juliarng``
    (:func:`replay_draws`).  With ``op_rng``, the package's stream after the operation,
    its next value must also equal the next value of the oracle's stream after the
    list: the operation consumed exactly the listed draws.
    """
    from autoencoder_toolkit import juliarng

    row = Row(case["name"], "draws", "-", versus="oracle", rtol=0.0, atol=0.0)
    stored = C.decode_section(case, "draw_values")
    oracle, oracle_after = S.replay(case.get("draws") or [], int(case["julia_seed"]),
                                    julia=C.REFERENCE["julia"])
    package, _ = replay_draws(case)
    worst = 0.0
    problems = []
    for name, want in oracle.items():
        if name not in stored:
            problems.append(f"{name} not stored")
        elif not _same_bits(stored[name], want):
            worst = max(worst, _gap(stored[name], want))
            problems.append(f"{name} differs from the oracle's streams (stored value)")
        got = package.get(name)
        if got is None or not _same_bits(np.asarray(got), want):
            worst = max(worst, _gap(np.asarray(got), want) if got is not None else float("inf"))
            problems.append(f"the package's juliarng gives another {name} than the oracle's streams")
    if op_rng is not None and juliarng.rand(op_rng) != oracle_after.rand():
        problems.append("the operation did not consume exactly the listed draws")
    row.max_abs = worst
    row.max_rel = 0.0 if worst == 0.0 else float("inf")
    row.ratio = 0.0 if not problems else float("inf")
    row.members = len(oracle)
    if problems:
        row.status = "FAIL"
        row.note = "; ".join(problems)
    else:
        row.note = ("stored = oracle streams = package juliarng, bit for bit; stream position "
                    "matches" if op_rng is not None else
                    "stored = oracle streams = package juliarng, bit for bit")
    return row


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------

def _zero_regularization(*_args, **_kwargs):
    return 0.0


def _loss_kwargs(kw: Mapping) -> dict:
    out = {}
    if "beta" in kw:
        out["β"] = float(kw["beta"])
    if "alpha" in kw:
        out["α"] = float(kw["alpha"])
    if kw.get("n_samples") is not None:
        out["n_samples"] = int(kw["n_samples"])
    if kw.get("seed") is not None:
        out["seed"] = int(kw["seed"])
    return out


def _grads(registry: Mapping, top: str, prefix: str = "grad.") -> dict:
    import torch

    out = {}
    for name, layer in registry.items():
        if not name.startswith(top + "."):
            continue
        for pname in ("weight", "bias"):
            p = getattr(layer, pname)
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            out[f"{prefix}{name}.{pname}"] = g
    return out


def _record_applied_gradients(optimizer, store: dict):
    """Record, on every ``optimizer.step()``, the gradient each parameter is stepped with.

    ``train_`` clears the gradients after its update; this pre-step hook keeps a copy of
    the last ones it applied, keyed by ``id(parameter)``.  Returns the hook's handle.
    """
    def hook(opt, _args, _kwargs):
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    store[id(p)] = p.grad.detach().clone()

    return optimizer.register_step_pre_hook(hook)


def _applied_grads(registry: Mapping, top: str, store: Mapping) -> dict:
    import torch

    out = {}
    for name, layer in registry.items():
        if name.startswith(top + "."):
            for pname in ("weight", "bias"):
                p = getattr(layer, pname)
                out[f"grad.{name}.{pname}"] = store.get(id(p), torch.zeros_like(p))
    return out


def _params(registry: Mapping, top: str) -> dict:
    out = {}
    for name, layer in registry.items():
        if name.startswith(top + "."):
            out[f"params.{name}.weight"] = layer.weight
            out[f"params.{name}.bias"] = layer.bias
    return out


def _adam(registry: Mapping, top: str, optimizer) -> dict:
    import torch

    out = {}
    for name, layer in registry.items():
        if not name.startswith(top + "."):
            continue
        for pname in ("weight", "bias"):
            p = getattr(layer, pname)
            state = optimizer.state.get(p, {})
            out[f"adam.{name}.{pname}.m"] = state.get("exp_avg", torch.zeros_like(p))
            out[f"adam.{name}.{pname}.v"] = state.get("exp_avg_sq", torch.zeros_like(p))
    return out


def run_torch(case: Mapping, rng) -> dict:
    """The case's operation in ``autoencoder_toolkit`` on torch: ``{quantity: array}``."""
    import torch

    import autoencoder_toolkit as aet
    from autoencoder_toolkit import infomaxvaes, vaes

    op = case["op"]
    kw = dict(case.get("kwargs") or {})
    models, registry = build_models(case)
    bk = Backend("torch")
    inp = {k: bk.asarray(v) for k, v in C.decode_section(case, "inputs").items()}
    x, x_out = inp.get("x"), inp.get("x_out")
    data = (x,) if x_out is None else (x, x_out)
    out: dict = {}

    if op in PURE_OPS:
        return run_pure(case, bk, rng)
    if op == "chain_forward":
        out["y"] = models["chain"](x)
    elif op == "encoder_forward":
        out.update(_named("", models["encoder"](x)))
    elif op == "decoder_forward":
        out.update(_named("", models["decoder"](inp["z"])))
    elif op == "mi_forward":
        out["g"] = models["mi"](x, inp["z"])
    elif op == "variational_mutual_info":
        out["mi"] = infomaxvaes.variational_mutual_info(models["mi"], x, inp["z"], inp["z_shuffle"])
    elif op == "vae_forward":
        vo = models["vae"](x, latent=True, rng=rng)
        out.update(_named("encoder.", vo.encoder))
        out["z"] = vo.z
        out.update(_named("decoder.", vo.decoder))
    elif op == "infomaxvae_forward":
        imv = infomaxvaes.InfoMaxVAE(models["vae"], models["mi"])
        res = imv(x, latent=True, seed=kw.get("seed"), rng=rng)
        out.update(_named("encoder.", res.vae.encoder))
        out["z"] = res.vae.z
        out.update(_named("decoder.", res.vae.decoder))
        out["mi"] = res.mi
    elif op == "variational_mutual_info_model":
        imv = infomaxvaes.InfoMaxVAE(models["vae"], models["mi"])
        out["mi"] = infomaxvaes.variational_mutual_info(imv, x, seed=kw.get("seed"), rng=rng)
    elif op in ("infomaxloss", "infomaxloss_gradient"):
        loss = infomaxvaes.infomaxloss(models["vae"], models["mi"], *data, rng=rng, **_loss_kwargs(kw))
        out["loss"] = loss
        if op == "infomaxloss_gradient":
            loss.backward()
            out.update(_grads(registry, "vae"))
    elif op in ("miloss", "miloss_gradient"):
        reg = _zero_regularization if kw.get("regularization") == "zero" else None
        loss = infomaxvaes.miloss(models["vae"], models["mi"], x, regularization=reg,
                                  seed=kw.get("seed"), rng=rng)
        out["loss"] = loss
        if op == "miloss_gradient":
            loss.backward()
            out.update(_grads(registry, "mi"))
    elif op in ("vae_loss", "vae_loss_gradient"):
        reg = _zero_regularization if kw.get("reg_function") == "zero" else None
        loss = vaes.loss(models["vae"], *data, β=float(kw.get("beta", 1.0)), reg_function=reg, rng=rng)
        out["loss"] = loss
        if op == "vae_loss_gradient":
            loss.backward()
            out.update(_grads(registry, "vae"))
    elif op in ("infomax_train", "infomax_train_fused"):
        fused = op == "infomax_train_fused"
        imv = infomaxvaes.InfoMaxVAE(models["vae"], models["mi"])
        opt = aet.setup(torch.optim.Adam, imv, lr=float(kw.get("eta", 1e-3)))
        lkw = {"β": float(kw.get("beta", 1.0)), "α": float(kw.get("alpha", 1.0))}
        applied: dict = {}
        hooks = [_record_applied_gradients(o, applied) for o in (opt.vae, opt.mi)] if fused else []
        losses_vae, losses_mi = [], []
        try:
            for _ in range(int(kw.get("steps", 1))):
                l_vae, l_mi = infomaxvaes.train_(imv, *data, opt, infomaxloss_kwargs=lkw,
                                                 loss_return=True, rng=rng, fused=fused)
                losses_vae.append(l_vae)
                losses_mi.append(l_mi)
        finally:
            for h in hooks:
                h.remove()
        out["loss_vae"] = np.array(losses_vae)
        out["loss_mi"] = np.array(losses_mi)
        if fused:
            out.update(_applied_grads(registry, "vae", applied))
            out.update(_applied_grads(registry, "mi", applied))
        out.update(_params(registry, "vae"))
        out.update(_params(registry, "mi"))
        out.update(_adam(registry, "vae", opt.vae))
        out.update(_adam(registry, "mi", opt.mi))
    elif op == "vae_train":
        vae = models["vae"]
        opt = aet.setup(torch.optim.Adam, vae, lr=float(kw.get("eta", 1e-3)))
        losses = [vaes.train_(vae, *data, opt, loss_kwargs={"β": float(kw.get("beta", 1.0))},
                              loss_return=True, rng=rng)
                  for _ in range(int(kw.get("steps", 1)))]
        out["loss"] = np.array(losses)
        out.update(_params(registry, "vae"))
        out.update(_adam(registry, "vae", opt))
    else:
        raise ValueError(f"the runner does not know op {op!r}")
    return {k: Backend.to_numpy(v) for k, v in out.items()}


def run_pure(case: Mapping, bk: Backend, rng) -> dict:
    """The pure array functions, on the arrays of backend ``bk``."""
    from autoencoder_toolkit import decoders, encoders, infomaxvaes, outputs, vaes

    op = case["op"]
    kw = dict(case.get("kwargs") or {})
    inp = {k: bk.asarray(v) for k, v in C.decode_section(case, "inputs").items()}
    out: dict = {}
    if op == "spherical_logprior":
        out["logprior"] = encoders.spherical_logprior(inp["z"])
    elif op == "encoder_kl":
        enc_out = outputs.GaussianLogParams(inp["mu"], inp["logsigma"])
        out["kl"] = encoders.encoder_kl(_dummy_encoder(), enc_out)
    elif op == "encoder_logposterior":
        enc_out = outputs.GaussianLogParams(inp["mu"], inp["logsigma"])
        out["logposterior"] = encoders.encoder_logposterior(inp["z"], _dummy_encoder(), enc_out,
                                                            index=kw.get("index"))
    elif op == "decoder_loglikelihood":
        kind = kw["decoder_type"]
        tname, fields = _DECODER_OUTPUT[kind]
        dec_out = getattr(outputs, tname)(*(inp[f] for f in fields))
        extra = {"σ": float(kw["sigma"])} if kw.get("sigma") is not None else {}
        if kw.get("dims") is not None:
            extra["dims"] = int(kw["dims"])
        out["loglikelihood"] = decoders.decoder_loglikelihood(
            inp["x"], inp["z"], _dummy_decoder(kind), dec_out, index=kw.get("index"), **extra)
    elif op == "reparameterize":
        use_log = bool(kw.get("log", True))
        scale = inp["logsigma"] if use_log else inp["sigma"]
        out["z"] = vaes.reparameterize(inp["mu"], scale, log=use_log, rng=rng)
    elif op == "shuffle_latent":
        out["z_shuffle"] = infomaxvaes.shuffle_latent(inp["z"], seed=kw.get("seed"), rng=rng)
    else:  # pragma: no cover - PURE_OPS lists the ops above
        raise ValueError(op)
    return {k: Backend.to_numpy(v) for k, v in out.items()}


def run_exported(case: Mapping, bk: Backend, rng) -> dict:
    """Model forward passes on another backend through ``model.to_backend(name)``."""
    op = case["op"]
    kw = dict(case.get("kwargs") or {})
    models, _ = build_models(case)
    missing = [k for k, m in models.items() if not hasattr(m, "to_backend")]
    if missing:
        raise NotImplementedError(f"{', '.join(missing)} has no to_backend()")
    exported = {k: m.to_backend(bk.name) for k, m in models.items()}
    inp = {k: bk.asarray(v) for k, v in C.decode_section(case, "inputs").items()}
    x = inp.get("x")
    out: dict = {}
    if op == "chain_forward":
        out["y"] = exported["chain"](x)
    elif op == "encoder_forward":
        out.update(_named("", exported["encoder"](x)))
    elif op == "decoder_forward":
        out.update(_named("", exported["decoder"](inp["z"])))
    elif op == "mi_forward":
        out["g"] = exported["mi"](x, inp["z"])
    elif op == "variational_mutual_info":
        from autoencoder_toolkit import infomaxvaes

        g = exported["mi"](x, inp["z"])
        gs = exported["mi"](x, inp["z_shuffle"])
        out["mi"] = infomaxvaes.mutual_info_bound(g, gs)
    elif op == "vae_forward":
        vo = exported["vae"](x, latent=True, rng=rng)
        out.update(_named("encoder.", vo.encoder))
        out["z"] = vo.z
        out.update(_named("decoder.", vo.decoder))
    elif op in ("infomaxvae_forward", "variational_mutual_info_model"):
        from autoencoder_toolkit import infomaxvaes

        vo = exported["vae"](x, latent=True, rng=rng)
        z = vo.z
        zs = infomaxvaes.shuffle_latent(z, seed=kw.get("seed"), rng=rng)
        out["mi"] = infomaxvaes.mutual_info_bound(exported["mi"](x, z), exported["mi"](x, zs))
        if op == "infomaxvae_forward":
            out.update(_named("encoder.", vo.encoder))
            out["z"] = z
            out.update(_named("decoder.", vo.decoder))
    else:  # pragma: no cover - FORWARD_OPS lists the ops above
        raise ValueError(op)
    return {k: Backend.to_numpy(v) for k, v in out.items()}


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def quantity_kind(name: str) -> str:
    """``grad``, ``adam``, ``params`` or ``value``: selects the absolute floor."""
    head = name.split(".", 1)[0]
    return head if head in ("grad", "adam", "params") else "value"


def quantity_group(name: str) -> str:
    """Per-parameter quantities are grouped: ``grad.vae.*``, ``adam.mi.*.m``, ``params.vae.*``."""
    m = re.match(r"^(grad|params)\.(vae|mi)\.", name)
    if m:
        return f"{m.group(1)}.{m.group(2)}.*"
    m = re.match(r"^adam\.(vae|mi)\..*\.(m|v)$", name)
    if m:
        return f"adam.{m.group(1)}.*.{m.group(2)}"
    return name


def tolerance_for(case: Mapping, name: str, expected: np.ndarray, factor: float = 1.0) -> tuple[float, float]:
    """``(rtol, atol)`` for one quantity (see the module docstring)."""
    tol = case.get("tolerance") or {}
    if "rtol" in tol or "atol" in tol:
        return float(tol.get("rtol", RTOL)) * factor, float(tol.get("atol", 0.0)) * factor
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max()) if finite.size else 0.0
    return RTOL * factor, ATOL_SCALE[quantity_kind(name)] * scale * factor


def compare(case: Mapping, name: str, actual, expected: np.ndarray, backend: str,
            versus: str = "oracle", factor: float = 1.0) -> Row:
    """One comparison row (elementwise ``|a - b| <= atol + rtol |b|``)."""
    row = Row(case["name"], name, backend, versus=versus)
    expected = np.asarray(expected, dtype=np.float64)
    row.rtol, row.atol = tolerance_for(case, name, expected, factor)
    if actual is None:
        row.status, row.note = "FAIL", "missing from the package's outputs"
        return row
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        if actual.size == expected.size and \
                [s for s in actual.shape if s != 1] == [s for s in expected.shape if s != 1]:
            # singleton axes: the reference drops them (encoder outputs) or keeps a
            # one-element vector (encoder_kl of one sample, D13); values are compared
            row.note = f"shape {actual.shape} vs {expected.shape} (singleton axes; documented)"
            actual = actual.reshape(expected.shape)
        else:
            row.status = "FAIL"
            row.note = f"shape {actual.shape}, expected {expected.shape}"
            return row
    same_nonfinite = (~np.isfinite(expected) & (actual == expected)) | \
        (np.isnan(expected) & np.isnan(actual))
    diff = np.where(same_nonfinite, 0.0, np.abs(actual - expected))
    diff = np.where(np.isnan(diff), np.inf, diff)
    bound = row.atol + row.rtol * np.abs(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(expected != 0, diff / np.abs(expected), np.where(diff == 0, 0.0, np.inf))
        ratio = np.where(bound > 0, diff / bound, np.where(diff == 0, 0.0, np.inf))
    row.max_abs = float(diff.max(initial=0.0))
    row.max_rel = float(rel.max(initial=0.0))
    row.ratio = float(ratio.max(initial=0.0))
    if not np.all(diff <= bound):
        row.status = "FAIL"
        n_bad = int(np.sum(~(diff <= bound)))
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
        idx = tuple(int(i) for i in worst)
        row.note = (f"{n_bad} of {diff.size} elements outside; worst at {idx}: "
                    f"got {float(actual[idx])!r}, expected {float(expected[idx])!r}")
    return row


def group_rows(rows: Sequence[Row]) -> list[Row]:
    """Merge the rows of one case/backend/reference that share a group (worst member shown)."""
    merged: dict[tuple, Row] = {}
    order = []
    for r in rows:
        key = (r.case, quantity_group(r.quantity), r.backend, r.versus)
        if key not in merged:
            merged[key] = Row(**{**r.__dict__, "quantity": key[1], "members": 0})
            order.append(key)
            m = merged[key]
            if r.status not in ("PASS", "FAIL"):  # SKIP / NOT COMPARED rows stand alone
                continue
            m.max_abs = m.max_rel = m.ratio = -1.0
            m.status, m.note = "PASS", ""
        m = merged[key]
        m.members += r.members
        if r.max_abs > m.max_abs or math.isnan(r.max_abs):
            m.max_abs = r.max_abs
        if r.max_rel > m.max_rel or math.isnan(r.max_rel):
            m.max_rel = r.max_rel
        if r.ratio > m.ratio or math.isnan(r.ratio) or (r.failed and not m.failed):
            m.ratio, m.rtol, m.atol = r.ratio, r.rtol, r.atol
            if r.note:
                m.note = r.note if key[1] == r.quantity else f"{r.quantity}: {r.note}"
        if r.failed:
            m.status = "FAIL"
    return [merged[k] for k in order]


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def _select_backends(requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    skipped: dict[str, str] = {}
    ok, why = _cupy_status()
    if requested:
        for b in requested:
            if b not in BACKENDS:
                raise UsageError(f"unknown backend {b!r}; expected one of {', '.join(BACKENDS)}")
        if "cupy" in requested and not ok:
            raise UsageError(f"backend cupy is not available: {why}")
        return list(dict.fromkeys(requested)), skipped
    backends = ["torch", "numpy"]
    if ok:  # pragma: no cover - needs a GPU
        backends.append("cupy")
    else:
        skipped["cupy"] = why
    return backends, skipped


def load_cases(directory: Path, patterns: Sequence[str] | None = None) -> list[dict]:
    """The case files of ``directory`` whose names match one of ``patterns`` (globs)."""
    paths = C.iter_cases(directory)
    if not paths:
        raise UsageError(f"no case files in {directory}")
    cases = []
    for path in paths:
        name = path.stem
        if patterns and not any(fnmatch.fnmatchcase(name, p) or p in name for p in patterns):
            continue
        cases.append(C.read_case(path))
    if not cases:
        raise UsageError(f"no case matches {', '.join(patterns or [])}")
    return cases


def _reference_row(case: Mapping, backend: str = "-") -> Row:
    err = case["reference_error"]
    row = Row(case["name"], "(reference raises)", backend, versus="-", status="NOT COMPARED")
    row.note = f"{err.get('defect')}: {err.get('exception')}; see the differences table"
    return row


def run_case(case: Mapping, backends: Sequence[str], *, model_export: bool,
             julia: Mapping | None = None) -> list[Row]:
    """Every row of one case."""
    from autoencoder_toolkit import juliarng

    rows: list[Row] = []
    expected = C.decode_section(case, "expected")
    ref_err = case.get("reference_error")
    op = case["op"]
    if ref_err and not expected:
        rows.append(_reference_row(case))
        if julia is not None:
            rows.append(_julia_error_row(case, julia))
        return rows
    seed = int(case["julia_seed"])
    uses_rng = bool(case.get("draws"))
    torch_rng = None
    for backend in backends:
        if backend != "torch" and op not in PURE_OPS and op not in FORWARD_OPS:
            continue  # losses, gradients and training: torch (autograd) only
        if backend != "torch" and op in FORWARD_OPS and not model_export:
            continue
        rng = juliarng.seed_(seed, julia=C.REFERENCE["julia"]) if uses_rng else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small-batch notes, log(0) in broken formulas
                if backend == "torch":
                    actual = run_torch(case, rng)
                    torch_rng = rng
                elif op in PURE_OPS:
                    actual = run_pure(case, Backend(backend), rng)
                else:
                    actual = run_exported(case, Backend(backend), rng)
        except (TypeError, NotImplementedError) as err:
            if backend != "torch" and op in FORWARD_OPS:
                rows.append(Row(case["name"], "(all)", backend, status="SKIP",
                                note=f"the exported model does not support this call: {err}"))
                continue
            rows.append(Row(case["name"], "(all)", backend, status="FAIL",
                            note=f"{type(err).__name__}: {err}"))
            continue
        except Exception as err:  # noqa: BLE001 - reported as a failing row
            rows.append(Row(case["name"], "(all)", backend, status="FAIL",
                            note=f"{type(err).__name__}: {err}"))
            continue
        for name, exp in expected.items():
            rows.append(compare(case, name, actual.get(name), exp, backend))
        if julia is not None and backend == "torch":
            rows.extend(_julia_rows(case, julia, actual))
    if uses_rng:
        rows.insert(0, check_draws(case, torch_rng))
    if ref_err:  # the reference raises here; the oracle's value is the documented intent
        for r in rows:
            if r.versus == "oracle":
                r.versus = f"intent {ref_err.get('defect')}"
    return rows


def _julia_error_row(case: Mapping, julia: Mapping) -> Row:
    err = julia.get("error")
    expect = case.get("reference_error")
    row = Row(case["name"], "(reference error)", "-", versus="julia")
    if expect and err:
        row.status = "PASS"
        row.note = f"raised {err.get('exception')} as expected ({expect.get('defect')})"
    elif expect and not err:
        row.status = "FAIL"
        row.note = f"the case expects the reference to raise ({expect.get('defect')}) but it did not"
    elif err:
        row.status = "FAIL"
        row.note = f"the reference raised {err.get('exception')}: {err.get('message', '')[:200]}"
    else:
        row.note = "no error, as expected"
    return row


def _julia_rows(case: Mapping, julia: Mapping, actual: Mapping) -> list[Row]:
    rows = []
    port_only = case["op"] in PORT_ONLY_OPS
    if not port_only and (case.get("reference_error") or julia.get("error")):
        rows.append(_julia_error_row(case, julia))
        if julia.get("error"):
            return rows
    stored = C.decode_section(case, "draw_values")
    jdraws = julia.get("draw_values") or {}
    if jdraws:
        bad = [k for k, v in jdraws.items()
               if k not in stored or stored[k].shape != v.shape or not np.array_equal(stored[k], v)]
        rows.append(Row(case["name"], "draws", "-", versus="julia", max_abs=0.0 if not bad else float("inf"),
                        max_rel=0.0 if not bad else float("inf"), ratio=0.0 if not bad else float("inf"),
                        rtol=0.0, atol=0.0, status="FAIL" if bad else "PASS",
                        note=("Julia's draws differ: " + ", ".join(bad)) if bad else "Julia's draws identical",
                        members=len(jdraws)))
    if port_only:  # the reference has no such operation: only its draws are compared
        return rows
    for name, value in (julia.get("outputs") or {}).items():
        rows.append(compare(case, name, actual.get(name), value, "torch", versus="julia",
                            factor=JULIA_FACTOR))
    return rows


def run(cases: Sequence[Mapping], backends: Sequence[str], *, julia_dir: Path | None = None,
        skipped: Mapping[str, str] | None = None) -> Report:
    """Run cases on backends; Julia outputs from ``julia_dir`` are compared where present."""
    start = time.perf_counter()
    report = Report(skipped_backends=dict(skipped or {}), cases=len(cases))
    model_export, why = model_backends_available()
    non_torch = [b for b in backends if b != "torch"]
    if non_torch and not model_export:
        for b in non_torch:
            report.skipped_backends[f"{b} (model forward passes)"] = why
    for case in cases:
        julia = None
        if julia_dir is not None:
            path = Path(julia_dir) / f"{case['name']}.json"
            if path.exists():
                julia = C.read_julia_output(path)
        report.rows.extend(run_case(case, backends, model_export=model_export, julia=julia))
    report.seconds = time.perf_counter() - start
    return report


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf"
    return f"{v:.2e}"


def format_table(rows: Sequence[Row]) -> str:
    head = ("case", "quantity", "backend", "vs", "max abs err", "max rel err", "rtol", "atol",
            "err/tol", "result")
    body = []
    for r in rows:
        q = r.quantity if r.members <= 1 or r.quantity == "draws" else f"{r.quantity} ({r.members})"
        if r.quantity == "draws" and r.members > 1:
            q = f"draws ({r.members})"
        body.append((r.case, q, r.backend, r.versus, _fmt(r.max_abs), _fmt(r.max_rel),
                     _fmt(r.rtol), _fmt(r.atol), _fmt(r.ratio), r.status))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r, b in zip(rows, body):
        line = "  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip()
        if r.status in ("FAIL", "SKIP", "NOT COMPARED") and r.note:
            line += f"   <- {r.note}"
        lines.append(line)
    return "\n".join(lines)


def summary(report: Report) -> str:
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    compared = [r for r in report.rows if r.status in ("PASS", "FAIL") and r.quantity != "draws"
                and r.versus != "-"]
    worst: dict[str, Row] = {}
    for r in compared:
        k = quantity_kind(r.quantity)
        if k not in worst or r.ratio > worst[k].ratio:
            worst[k] = r
    lines = [f"{report.cases} cases, {len(report.rows)} rows: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
             + f"  ({report.seconds:.1f} s)"]
    for k in ("value", "grad", "adam", "params"):
        if k in worst:
            r = worst[k]
            lines.append(f"  worst {k:6s}: err/tol {_fmt(r.ratio)}, max rel {_fmt(r.max_rel)}, "
                         f"max abs {_fmt(r.max_abs)} ({r.case}: {r.quantity}, {r.backend})")
    for b, why in report.skipped_backends.items():
        lines.append(f"  backend skipped: {b}: {why}")
    lines.append("RESULT: " + ("PASS" if report.ok else f"FAIL ({len(report.failures)} rows)"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity",
        description="Compare autoencoder_toolkit with the parity cases (AutoEncoderToolkit.jl v0.1.2).")
    parser.add_argument("--case", action="append", metavar="PATTERN",
                        help="run only cases whose name matches (glob or substring); repeatable")
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help=f"run only this backend ({', '.join(BACKENDS)}); repeatable")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="one row per quantity (default: per-parameter quantities grouped)")
    parser.add_argument("--julia-outputs", metavar="DIR", type=Path, default=None,
                        help="compare also with Julia outputs from DIR (default: parity/julia_outputs "
                             "when it holds any)")
    parser.add_argument("--cases-dir", metavar="DIR", type=Path, default=CASES_DIR,
                        help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        cases = load_cases(args.cases_dir, args.case)
        backends, skipped = _select_backends(args.backend)
        julia_dir = args.julia_outputs
        if julia_dir is not None and not Path(julia_dir).is_dir():
            raise UsageError(f"--julia-outputs: {julia_dir} is not a directory")
        if julia_dir is None and JULIA_DIR.is_dir() and any(JULIA_DIR.glob("*.json")):
            julia_dir = JULIA_DIR
    except UsageError as err:
        print(f"python -m parity: error: {err}", file=sys.stderr)
        return 2
    report = run(cases, backends, julia_dir=julia_dir, skipped=skipped)
    rows = report.rows if args.verbose else group_rows(report.rows)
    print(format_table(rows))
    print()
    if julia_dir is None:
        print("Julia outputs: none (nothing compared with Julia's own output: the package is compared "
              "with the float64 oracle and the oracle's Julia streams; see README to regenerate)")
    else:
        print(f"Julia outputs: {julia_dir}")
    print(summary(report))
    return 0 if report.ok else 1

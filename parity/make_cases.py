"""Build the parity fixtures, ``parity/cases/*.json``.

Run from the repository root::

    python -m parity.make_cases            # rewrite every case file
    python -m parity.make_cases --check    # only report files that would change
    python -m parity.make_cases --out DIR  # write somewhere else

Every case is deterministic: the weights and data of a case come from a NumPy
generator seeded with the CRC-32 of the case's name (so adding a case changes
no other file), and the random draws of the operation are the ones Julia's
global generator gives after ``Random.seed!(julia_seed)``, reproduced with
the oracle's own Julia streams (:mod:`parity.julia_streams`, Julia 1.11
behaviour).  The expected outputs come from the independent float64 oracle
(:mod:`parity.oracle`).  Nothing here imports ``autoencoder_toolkit``.

Where the reference raises but documents an intent (a ``seed`` keyword, D1;
``n_samples``, D3; a regularization in ``miloss`` or ``VAEs.loss``, D4/D6),
the case records ``reference_error`` and ``expected`` holds the oracle's value
of the documented intent.  Where the reference raises and no intent can be
computed (D2, D8) ``expected`` is empty: the runner lists the case and does
not compare it.

Sizes: data D = 5 features (an image case uses 1 x 3 x 4 pixels), L = 2 latent
dimensions, hidden layers of 3 to 6 units; batches of 2, 64 and 257 samples.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import cases_io as C
from . import julia_streams as S
from . import oracle as O

CASES_DIR = Path(__file__).resolve().parent / "cases"
JULIA = "1.11"

D = 5            # features per sample
L = 2            # latent dimensions
IMAGE = (1, 3, 4)  # (C, H, W) of the image cases; Julia (W, H, C, B)
N_IMAGE = int(np.prod(IMAGE))

DECODERS = ("SimpleGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder",
            "JointGaussianLogDecoder", "JointGaussianDecoder", "SplitGaussianLogDecoder",
            "SplitGaussianDecoder")
SHORT = {
    "SimpleGaussianDecoder": "simplegaussian",
    "BernoulliDecoder": "bernoulli",
    "CategoricalDecoder": "categorical",
    "JointGaussianLogDecoder": "jointgaussianlog",
    "JointGaussianDecoder": "jointgaussian",
    "SplitGaussianLogDecoder": "splitgaussianlog",
    "SplitGaussianDecoder": "splitgaussian",
}


# ---------------------------------------------------------------------------
# Deterministic sources
# ---------------------------------------------------------------------------

def _crc(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def data_rng(name: str) -> np.random.Generator:
    """The NumPy generator of a case's weights and data."""
    return np.random.default_rng(_crc(name))


def julia_seed_of(name: str) -> int:
    """The Julia seed of a case: a small non-negative integer fixed by its name."""
    return 1 + _crc("julia:" + name) % 99_991


class DrawPlan:
    """The random draws of one operation, in the reference's order.

    ``randn(shape)`` is Julia's ``randn(Float32, reverse(shape)...)`` on the global
    generator; ``shuffle(n)`` is ``shuffle(1:n)`` on the global generator, or on a fresh
    ``MersenneTwister(seed)`` when ``seed`` is given (the reference's ``seed`` keyword).
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, str, Any, int | None]] = []

    def randn(self, name: str, shape: Sequence[int]) -> "DrawPlan":
        self.items.append((name, "randn", tuple(int(s) for s in shape), None))
        return self

    def shuffle(self, name: str, n: int, seed: int | None = None) -> "DrawPlan":
        self.items.append((name, "shuffle", int(n), seed))
        return self

    def specs(self) -> list[dict]:
        """The plan as a case's ``draws`` list."""
        out = []
        for name, kind, arg, seed in self.items:
            if kind == "randn":
                out.append({"name": name, "kind": kind, "shape": list(arg)})
            else:
                spec = {"name": name, "kind": kind, "n": arg}
                if seed is not None:
                    spec["rng"] = {"type": "MersenneTwister", "seed": int(seed)}
                out.append(spec)
        return out

    def values(self, julia_seed: int) -> list[tuple[str, str, np.ndarray]]:
        """``(name, kind, value)`` for :func:`parity.cases_io.make_case`, from the
        oracle's Julia streams (:func:`parity.julia_streams.replay`)."""
        values, _ = S.replay(self.specs(), julia_seed, julia=JULIA)
        return [(name, kind, values[name]) for name, kind, _, _ in self.items]

    def annotate(self, case: dict) -> None:
        """Record which shuffles use ``MersenneTwister(seed)`` instead of the global RNG."""
        for spec, (_, kind, _, seed) in zip(case["draws"], self.items):
            if kind == "shuffle" and seed is not None:
                spec["rng"] = {"type": "MersenneTwister", "seed": int(seed)}


def vae_draws(batch: int, latent_shape: Sequence[int] | None = None, steps: int = 1,
              shuffles: bool = True, seed: int | None = None, tag: str = "") -> DrawPlan:
    """Noise (and a permutation) per forward pass, ``steps`` times."""
    plan = DrawPlan()
    shape = tuple(latent_shape) if latent_shape is not None else (batch, L)
    for s in range(steps):
        plan.randn(f"noise.{s}{tag}", shape)
        if shuffles:
            plan.shuffle(f"perm.{s}{tag}", batch, seed)
    return plan


def train_draws(batch: int, steps: int) -> DrawPlan:
    """Per ``train!`` call: noise and permutation of the VAE step, then of the MI step."""
    plan = DrawPlan()
    for s in range(steps):
        plan.randn(f"noise.{s}.vae", (batch, L)).shuffle(f"perm.{s}.vae", batch)
        plan.randn(f"noise.{s}.mi", (batch, L)).shuffle(f"perm.{s}.mi", batch)
    return plan


def fused_draws(batch: int, steps: int) -> DrawPlan:
    """Per fused step (``train_(..., fused=True)``): one noise draw, then one permutation."""
    plan = DrawPlan()
    for s in range(steps):
        plan.randn(f"noise.{s}", (batch, L)).shuffle(f"perm.{s}", batch)
    return plan


# ---------------------------------------------------------------------------
# Models (oracle trees; every number is float32-representable)
# ---------------------------------------------------------------------------

def chain(rng, sizes, acts, bias_scale=0.3):
    return O.make_mlp_chain(rng, sizes, acts, bias_scale=bias_scale)


def dense(rng, n_in, n_out, act="identity", bias_scale=0.3):
    return chain(rng, [n_in, n_out], [act], bias_scale)[0]


def log_encoder(rng, d=D, image=False):
    trunk = chain(rng, [d, 4, 3], ["relu", "tanh"])
    if image:
        trunk = [O.flatten_layer()] + chain(rng, [d, 5, 3], ["relu", "tanh"])
    return {"type": "JointGaussianLogEncoder", "encoder": trunk,
            "mu": dense(rng, 3, L), "logsigma": dense(rng, 3, L)}


def linear_encoder(rng, d=D):
    return {"type": "JointGaussianEncoder", "encoder": chain(rng, [d, 4, 3], ["relu", "tanh"]),
            "mu": dense(rng, 3, L), "sigma": dense(rng, 3, L, "softplus")}


def decoder(rng, kind, d=D):
    if kind == "SimpleGaussianDecoder":
        return {"type": kind, "decoder": chain(rng, [L, 4, 3, d], ["elu", "gelu", "identity"])}
    if kind == "BernoulliDecoder":
        return {"type": kind, "decoder": chain(rng, [L, 4, d], ["swish", "sigmoid"])}
    if kind == "CategoricalDecoder":
        return {"type": kind, "decoder": chain(rng, [L, 4, d], ["leakyrelu", "softmax"])}
    if kind == "JointGaussianLogDecoder":
        return {"type": kind, "decoder": chain(rng, [L, 4, 3], ["relu", "tanh"]),
                "mu": dense(rng, 3, d), "logsigma": dense(rng, 3, d, "tanh")}
    if kind == "JointGaussianDecoder":
        return {"type": kind, "decoder": chain(rng, [L, 4, 3], ["relu", "tanh"]),
                "mu": dense(rng, 3, d), "sigma": dense(rng, 3, d, "softplus")}
    if kind == "SplitGaussianLogDecoder":
        return {"type": kind, "mu": chain(rng, [L, 4, d], ["softplus", "identity"]),
                "logsigma": chain(rng, [L, 3, d], ["tanh", "identity"])}
    if kind == "SplitGaussianDecoder":
        return {"type": kind, "mu": chain(rng, [L, 4, d], ["sigmoid", "identity"]),
                "sigma": chain(rng, [L, 3, d], ["tanh", "softplus"])}
    raise ValueError(kind)


def critic(rng, d=D, image=False):
    data = dense(rng, d, d)
    if image:
        data = [O.flatten_layer(), dense(rng, d, d)]
    return {"type": "MutualInfoChain", "data": data, "latent": dense(rng, L, L),
            "mlp": chain(rng, [d + L, 4, 3, 1], ["relu", "tanh", "identity"])}


def data_for(rng, kind, batch, d=D):
    """Data that suits a decoder family: binary-ish for Bernoulli, one-hot for
    Categorical, Gaussian otherwise."""
    if kind == "BernoulliDecoder":
        x = rng.uniform(0.0, 1.0, size=(batch, d))
        x[rng.uniform(size=x.shape) < 0.3] = 0.0
        x[rng.uniform(size=x.shape) < 0.3] = 1.0
        return x
    if kind == "CategoricalDecoder":
        return np.eye(d)[rng.integers(0, d, size=batch)]
    return rng.standard_normal((batch, d))


# ---------------------------------------------------------------------------
# Case assembly
# ---------------------------------------------------------------------------

def build(name: str, op: str, description: str, *, models: Mapping | None = None,
          inputs: Mapping | None = None, kwargs: Mapping | None = None,
          plan: DrawPlan | None = None, reference_error: Mapping | None = None,
          intent_without: Sequence[str] = (), no_expected: bool = False) -> dict:
    """Assemble one case.

    ``intent_without`` lists keywords that make the reference raise (``seed``) but
    whose documented intent is computed by the oracle on the same draws with the
    keyword removed.
    """
    seed = julia_seed_of(name)
    plan = plan or DrawPlan()
    draws = plan.values(seed)
    common = dict(description=description, models=models, inputs=inputs, draws=draws,
                  julia_seed=seed)
    expected = None
    if intent_without:
        reduced = {k: v for k, v in (kwargs or {}).items() if k not in intent_without}
        probe = C.make_case(name, op, kwargs=reduced, **common)
        expected = C.decode_section(probe, "expected")
    case = C.make_case(name, op, kwargs=kwargs, reference_error=reference_error,
                       expected=expected, compute_expected=not no_expected, **common)
    plan.annotate(case)
    return case


def d1(exception="UndefVarError"):
    return {"defect": "D1", "exception": exception,
            "message": "MersenneTwister is not defined in InfoMaxVAEs (seed keyword)",
            "compared": "documented intent: shuffle(MersenneTwister(seed), 1:B)"}


CASES: list[Callable[[], dict]] = []


def case(fn: Callable[[], Any]) -> Callable[[], Any]:
    CASES.append(fn)
    return fn


# --- layers ----------------------------------------------------------------

@case
def _chains():
    out = []
    name = "chain_flatten_image_b2"
    rng = data_rng(name)
    net = [O.flatten_layer()] + chain(rng, [N_IMAGE, 6, 4, 3], ["gelu", "elu", "softmax"])
    out.append(build(name, "chain_forward",
                     "Chain(Flatten(), Dense(12=>6, gelu), Dense(6=>4, elu), Dense(4=>3), "
                     "softmax over features) on a (2, 1, 3, 4) image batch (Julia 4x3x1x2)",
                     models={"chain": net}, inputs={"x": rng.standard_normal((2, *IMAGE))}))
    name = "chain_activations_b64"
    rng = data_rng(name)
    net = chain(rng, [D, 6, 6, 6, 6, 5, 4, 3],
                ["sigmoid", "softplus", "swish", "leakyrelu", "relu", "tanh", "identity"])
    out.append(build(name, "chain_forward",
                     "Dense chain through sigmoid, softplus, swish, leakyrelu, relu, tanh, identity",
                     models={"chain": net}, inputs={"x": 2.0 * rng.standard_normal((64, D))}))
    return out


# --- encoders ----------------------------------------------------------------

@case
def _encoders():
    out = []
    for batch in (64, 257):
        name = f"encoder_forward_jointgaussianlog_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "encoder_forward", "JointGaussianLogEncoder forward: mu, logsigma",
                         models={"encoder": log_encoder(rng)},
                         inputs={"x": rng.standard_normal((batch, D))}))
    name = "encoder_forward_jointgaussian_b64"
    rng = data_rng(name)
    out.append(build(name, "encoder_forward",
                     "JointGaussianEncoder forward: mu, sigma (works in the reference; only its "
                     "use inside a VAE raises, D8)",
                     models={"encoder": linear_encoder(rng)},
                     inputs={"x": rng.standard_normal((64, D))}))
    name = "encoder_forward_image_b2"
    rng = data_rng(name)
    out.append(build(name, "encoder_forward",
                     "JointGaussianLogEncoder whose trunk starts with Flatten(), on a "
                     "(2, 1, 3, 4) image batch",
                     models={"encoder": log_encoder(rng, N_IMAGE, image=True)},
                     inputs={"x": rng.standard_normal((2, *IMAGE))}))
    return out


# --- decoders and log-likelihoods ---------------------------------------------


@case
def _decoders():
    out = []
    for kind in DECODERS:
        name = f"decoder_forward_{SHORT[kind]}_b64"
        rng = data_rng(name)
        out.append(build(name, "decoder_forward", f"{kind} forward on a batch of codes",
                         models={"decoder": decoder(rng, kind)},
                         inputs={"z": rng.standard_normal((64, L))}))
    return out


def _loglik_case(name, kind, batch, *, single=False, index=None, sigma=None, saturate=False,
                 description=""):
    rng = data_rng(name)
    dec = decoder(rng, kind)
    z = rng.standard_normal((batch, L)).astype(np.float32).astype(np.float64)
    x = data_for(rng, kind, batch).astype(np.float32).astype(np.float64)
    fields = {k: O.as_array(v).astype(np.float32)
              for k, v in O.decoder_forward(dec, z).items()}
    if saturate:
        # probabilities that are exactly 0 or 1, as a saturated sigmoid or softmax gives
        # in float32: only the eps inside the logs keeps the log-likelihood finite
        p = fields["p"]
        if kind == "BernoulliDecoder":
            x = np.round(x)
            u = rng.uniform(size=p.shape)
            p[u < 0.15] = 0.0
            p[u > 0.85] = 1.0
        else:
            rows = rng.uniform(size=batch) < 0.25
            p[rows] = np.where(x[rows] == 1.0, np.float32(0.0), p[rows])
    kwargs = {"decoder_type": kind}
    if single:
        x, z = x[0], z[0]
        fields = {k: v[0] for k, v in fields.items()}
    if index is not None:
        kwargs["index"] = index
        z = z[index]
    if sigma is not None:
        kwargs["sigma"] = sigma
    return build(name, "decoder_loglikelihood", description or f"{kind} log-likelihood",
                 inputs={"x": x, "z": z, **fields}, kwargs=kwargs)


@case
def _logliks():
    out = [_loglik_case(f"loglikelihood_{SHORT[k]}_b64", k, 64,
                        description=f"{k} log-likelihood, batch form (one value per sample)")
           for k in DECODERS]
    out.append(_loglik_case("loglikelihood_bernoulli_b257", "BernoulliDecoder", 257))
    out.append(_loglik_case("loglikelihood_jointgaussian_b257", "JointGaussianDecoder", 257))
    out.append(_loglik_case("loglikelihood_bernoulli_saturated_b64", "BernoulliDecoder", 64,
                            saturate=True, description="Bernoulli log-likelihood with binary x "
                            "and probabilities exactly 0 or 1: log(eps) terms"))
    out.append(_loglik_case("loglikelihood_categorical_saturated_b64", "CategoricalDecoder", 64,
                            saturate=True, description="Categorical log-likelihood where the "
                            "observed class has probability exactly 0: log(eps) terms"))
    out.append(_loglik_case("loglikelihood_bernoulli_single", "BernoulliDecoder", 4, single=True,
                            description="Bernoulli log-likelihood of one sample (vector z): a scalar"))
    out.append(_loglik_case("loglikelihood_categorical_single", "CategoricalDecoder", 4, single=True,
                            description="Categorical log-likelihood of one sample (vector z)"))
    out.append(_loglik_case("loglikelihood_splitgaussian_single", "SplitGaussianDecoder", 4,
                            single=True, description="SplitGaussian (mu, sigma) log-likelihood "
                            "of one sample: the vector form's order of operations"))
    out.append(_loglik_case("loglikelihood_jointgaussianlog_index_b64", "JointGaussianLogDecoder",
                            64, index=5, description="index form: the log-likelihood of sample "
                            "5 (0-based; Julia's 6) of a batch"))
    out.append(_loglik_case("loglikelihood_simplegaussian_sigma_b64", "SimpleGaussianDecoder", 64,
                            sigma=0.5, description="SimpleGaussianDecoder with the keyword "
                            "sigma = 0.5 (the losses always use 1)"))
    return out


# --- prior, posterior, KL -----------------------------------------------------------

@case
def _densities():
    out = []
    name = "spherical_logprior_b64"
    rng = data_rng(name)
    out.append(build(name, "spherical_logprior", "standard normal log density, batch",
                     inputs={"z": 1.5 * rng.standard_normal((64, L))}))
    name = "spherical_logprior_single"
    rng = data_rng(name)
    out.append(build(name, "spherical_logprior", "standard normal log density of one vector",
                     inputs={"z": rng.standard_normal(L)}))
    for batch in (64, 257):
        name = f"encoder_kl_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "encoder_kl", "KL(N(mu, exp(logsigma)^2) || N(0, I)) per sample",
                         inputs={"mu": rng.standard_normal((batch, L)),
                                 "logsigma": 0.5 * rng.standard_normal((batch, L))}))
    name = "encoder_kl_single"
    rng = data_rng(name)
    out.append(build(name, "encoder_kl",
                     "KL of one sample: the reference returns a one-element vector (D13), "
                     "the port a scalar; the values are compared",
                     inputs={"mu": rng.standard_normal(L), "logsigma": 0.5 * rng.standard_normal(L)}))
    name = "encoder_logposterior_b64"
    rng = data_rng(name)
    out.append(build(name, "encoder_logposterior", "diagonal Gaussian log density, batch",
                     inputs={"z": rng.standard_normal((64, L)), "mu": rng.standard_normal((64, L)),
                             "logsigma": 0.5 * rng.standard_normal((64, L))}))
    name = "encoder_logposterior_index_b64"
    rng = data_rng(name)
    out.append(build(name, "encoder_logposterior",
                     "index form: density of one code under sample 7 (0-based) of a batch",
                     inputs={"z": rng.standard_normal(L), "mu": rng.standard_normal((64, L)),
                             "logsigma": 0.5 * rng.standard_normal((64, L))},
                     kwargs={"index": 7}))
    return out


# --- reparameterize and shuffle_latent ------------------------------------------------

@case
def _sampling():
    out = []
    for batch in (2, 64, 257):
        name = f"reparameterize_log_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "reparameterize",
                         "mu + randn(Float32, L, B) .* exp(logsigma) with the Julia seed's noise",
                         inputs={"mu": rng.standard_normal((batch, L)),
                                 "logsigma": 0.5 * rng.standard_normal((batch, L))},
                         plan=DrawPlan().randn("noise.0", (batch, L))))
    name = "reparameterize_linear_b64"
    rng = data_rng(name)
    out.append(build(name, "reparameterize", "log=false: mu + noise .* sigma",
                     inputs={"mu": rng.standard_normal((64, L)),
                             "sigma": rng.uniform(0.1, 2.0, size=(64, L))},
                     kwargs={"log": False}, plan=DrawPlan().randn("noise.0", (64, L))))
    for batch in (2, 64, 257):
        name = f"shuffle_latent_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "shuffle_latent",
                         "rows of z permuted by shuffle(1:B) on the global generator",
                         inputs={"z": rng.standard_normal((batch, L))},
                         plan=DrawPlan().shuffle("perm.0", batch)))
    for batch, seed in ((64, 7), (257, 123)):
        name = f"shuffle_latent_seed{seed}_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "shuffle_latent",
                         f"shuffle_latent(z; seed={seed}): the reference raises (D1); compared with "
                         f"its documented intent, shuffle(MersenneTwister({seed}), 1:B)",
                         inputs={"z": rng.standard_normal((batch, L))}, kwargs={"seed": seed},
                         plan=DrawPlan().shuffle("perm.0", batch, seed=seed),
                         reference_error=d1(), intent_without=("seed",)))
    return out


# --- the critic -----------------------------------------------------------------

@case
def _critics():
    out = []
    name = "mi_forward_b64"
    rng = data_rng(name)
    out.append(build(name, "mi_forward", "critic g(x, z) = mlp([data(x); latent(z)])",
                     models={"mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D)), "z": rng.standard_normal((64, L))}))
    name = "mi_forward_image_b2"
    rng = data_rng(name)
    out.append(build(name, "mi_forward",
                     "critic whose data layer is Chain(Flatten(), Dense(12=>12)) on an image batch",
                     models={"mi": critic(rng, N_IMAGE, image=True)},
                     inputs={"x": rng.standard_normal((2, *IMAGE)), "z": rng.standard_normal((2, L))}))
    name = "variational_mutual_info_b64"
    rng = data_rng(name)
    z = rng.standard_normal((64, L))
    out.append(build(name, "variational_mutual_info",
                     "mean g(x, z) - mean exp(g(x, z_shuffle) - 1) with given codes",
                     models={"mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D)), "z": z,
                             "z_shuffle": z[rng.permutation(64)]}))
    name = "variational_mutual_info_model_b64"
    rng = data_rng(name)
    out.append(build(name, "variational_mutual_info_model",
                     "variational_mutual_info(imv, x): one VAE forward (noise), one shuffle",
                     models={"vae": {"encoder": log_encoder(rng),
                                     "decoder": decoder(rng, "SimpleGaussianDecoder")},
                             "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, plan=vae_draws(64)))
    name = "variational_mutual_info_model_seed5_b64"
    rng = data_rng(name)
    out.append(build(name, "variational_mutual_info_model",
                     "variational_mutual_info(imv, x; seed=5): D1; compared with the intent",
                     models={"vae": {"encoder": log_encoder(rng),
                                     "decoder": decoder(rng, "JointGaussianLogDecoder")},
                             "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, kwargs={"seed": 5},
                     plan=vae_draws(64, seed=5), reference_error=d1(), intent_without=("seed",)))
    return out


# --- forward passes of the models ------------------------------------------------------

def _vae(rng, kind, d=D, image=False):
    return {"encoder": log_encoder(rng, d, image=image), "decoder": decoder(rng, kind, d)}


@case
def _forwards():
    out = []
    for kind in DECODERS:
        name = f"vae_forward_{SHORT[kind]}_b64"
        rng = data_rng(name)
        out.append(build(name, "vae_forward",
                         f"VAE(JointGaussianLogEncoder, {kind})(x; latent=true)",
                         models={"vae": _vae(rng, kind)},
                         inputs={"x": data_for(rng, kind, 64)}, plan=vae_draws(64, shuffles=False)))
    name = "infomaxvae_forward_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxvae_forward", "InfoMaxVAE(x; latent=true): VAE outputs and MI",
                     models={"vae": _vae(rng, "BernoulliDecoder"), "mi": critic(rng)},
                     inputs={"x": data_for(rng, "BernoulliDecoder", 64)}, plan=vae_draws(64)))
    name = "infomaxvae_forward_seed3_b257"
    rng = data_rng(name)
    out.append(build(name, "infomaxvae_forward",
                     "InfoMaxVAE(x; latent=true, seed=3): D1; compared with the intent",
                     models={"vae": _vae(rng, "SplitGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((257, D))}, kwargs={"seed": 3},
                     plan=vae_draws(257, seed=3), reference_error=d1(), intent_without=("seed",)))
    return out


# --- losses -------------------------------------------------------------------------

@case
def _infomax_losses():
    out = []
    for kind in DECODERS:
        name = f"infomaxloss_{SHORT[kind]}_b64"
        rng = data_rng(name)
        out.append(build(name, "infomaxloss", f"infomaxloss(vae, mi, x) with a {kind}",
                         models={"vae": _vae(rng, kind), "mi": critic(rng)},
                         inputs={"x": data_for(rng, kind, 64)}, plan=vae_draws(64)))
    name = "infomaxloss_two_arg_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss",
                     "infomaxloss(vae, mi, x_in, x_out): reconstruction scored on x_out, MI on x_in",
                     models={"vae": _vae(rng, "JointGaussianDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D)), "x_out": rng.standard_normal((64, D))},
                     plan=vae_draws(64)))
    name = "infomaxloss_beta_alpha_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss", "beta = 0.5, alpha = 10",
                     models={"vae": _vae(rng, "JointGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, kwargs={"beta": 0.5, "alpha": 10.0},
                     plan=vae_draws(64)))
    name = "infomaxloss_two_arg_beta_alpha_b257"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss", "two data arguments, beta = 2, alpha = 0.25, B = 257",
                     models={"vae": _vae(rng, "SplitGaussianDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((257, D)), "x_out": rng.standard_normal((257, D))},
                     kwargs={"beta": 2.0, "alpha": 0.25}, plan=vae_draws(257)))
    name = "infomaxloss_b257"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss", "infomaxloss(vae, mi, x) with B = 257",
                     models={"vae": _vae(rng, "BernoulliDecoder"), "mi": critic(rng)},
                     inputs={"x": data_for(rng, "BernoulliDecoder", 257)}, plan=vae_draws(257)))
    name = "infomaxloss_b2"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss", "infomaxloss(vae, mi, x) with the smallest batch, B = 2",
                     models={"vae": _vae(rng, "SimpleGaussianDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((2, D))}, plan=vae_draws(2)))
    name = "infomaxloss_n_samples3_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss",
                     "n_samples = 3, beta = 2, alpha = 0.5: the reference has no such keyword (D3); "
                     "compared with the documented average over 3 latent draws",
                     models={"vae": _vae(rng, "JointGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))},
                     kwargs={"n_samples": 3, "beta": 2.0, "alpha": 0.5}, plan=vae_draws(64, steps=3),
                     reference_error={"defect": "D3", "exception": "MethodError",
                                      "message": "infomaxloss has no keyword argument n_samples",
                                      "compared": "documented intent: average over n_samples draws"}))
    name = "infomaxloss_seed11_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss",
                     "infomaxloss(...; seed=11): D1; compared with the intent (noise from the "
                     "global generator, permutation from MersenneTwister(11))",
                     models={"vae": _vae(rng, "SimpleGaussianDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, kwargs={"seed": 11},
                     plan=vae_draws(64, seed=11), reference_error=d1(), intent_without=("seed",)))
    name = "infomaxloss_image_two_arg_b2"
    rng = data_rng(name)
    x = rng.uniform(size=(2, *IMAGE))
    out.append(build(name, "infomaxloss",
                     "image input through Flatten(): x_in is (2, 1, 3, 4), x_out its flat (2, 12) "
                     "copy; Bernoulli decoder; critic data layer Chain(Flatten(), Dense)",
                     models={"vae": _vae(rng, "BernoulliDecoder", N_IMAGE, image=True),
                             "mi": critic(rng, N_IMAGE, image=True)},
                     inputs={"x": x, "x_out": x.reshape(2, -1)}, plan=vae_draws(2)))
    return out


@case
def _infomax_gradients():
    out = []
    for kind in DECODERS:
        name = f"infomaxloss_gradient_{SHORT[kind]}_b64"
        rng = data_rng(name)
        out.append(build(name, "infomaxloss_gradient",
                         f"infomaxloss and its gradient w.r.t. the VAE ({kind}); critic constant",
                         models={"vae": _vae(rng, kind), "mi": critic(rng)},
                         inputs={"x": data_for(rng, kind, 64)}, plan=vae_draws(64)))
    name = "infomaxloss_gradient_two_arg_beta_alpha_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss_gradient", "two data arguments, beta = 0.5, alpha = 4",
                     models={"vae": _vae(rng, "SplitGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D)), "x_out": rng.standard_normal((64, D))},
                     kwargs={"beta": 0.5, "alpha": 4.0}, plan=vae_draws(64)))
    name = "infomaxloss_gradient_n_samples2_b64"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss_gradient",
                     "gradient of the n_samples = 2 average (D3; documented intent)",
                     models={"vae": _vae(rng, "BernoulliDecoder"), "mi": critic(rng)},
                     inputs={"x": data_for(rng, "BernoulliDecoder", 64)},
                     kwargs={"n_samples": 2, "alpha": 3.0}, plan=vae_draws(64, steps=2),
                     reference_error={"defect": "D3", "exception": "MethodError",
                                      "message": "infomaxloss has no keyword argument n_samples",
                                      "compared": "documented intent: average over n_samples draws"}))
    name = "infomaxloss_gradient_b257"
    rng = data_rng(name)
    out.append(build(name, "infomaxloss_gradient", "gradient with B = 257",
                     models={"vae": _vae(rng, "JointGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((257, D))}, plan=vae_draws(257)))
    name = "infomaxloss_gradient_image_two_arg_b2"
    rng = data_rng(name)
    x = rng.uniform(size=(2, *IMAGE))
    out.append(build(name, "infomaxloss_gradient",
                     "gradient with image input through Flatten() (two data arguments, B = 2)",
                     models={"vae": _vae(rng, "BernoulliDecoder", N_IMAGE, image=True),
                             "mi": critic(rng, N_IMAGE, image=True)},
                     inputs={"x": x, "x_out": x.reshape(2, -1)}, plan=vae_draws(2)))
    return out


@case
def _mi_losses():
    out = []
    name = "miloss_b64"
    rng = data_rng(name)
    out.append(build(name, "miloss", "miloss(vae, mi, x) = -I after a fresh VAE forward",
                     models={"vae": _vae(rng, "JointGaussianLogDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, plan=vae_draws(64)))
    name = "miloss_regularization_zero_b64"
    rng = data_rng(name)
    out.append(build(name, "miloss",
                     "miloss with a regularization returning 0: the reference raises (D4); the "
                     "intent adds 0",
                     models={"vae": _vae(rng, "SimpleGaussianDecoder"), "mi": critic(rng)},
                     inputs={"x": rng.standard_normal((64, D))}, kwargs={"regularization": "zero"},
                     plan=vae_draws(64),
                     reference_error={"defect": "D4", "exception": "UndefVarError",
                                      "message": "outputs not defined",
                                      "compared": "documented intent: the regularization is added"}))
    name = "miloss_seed2_b64"
    rng = data_rng(name)
    out.append(build(name, "miloss", "miloss(...; seed=2): D1; compared with the intent",
                     models={"vae": _vae(rng, "BernoulliDecoder"), "mi": critic(rng)},
                     inputs={"x": data_for(rng, "BernoulliDecoder", 64)}, kwargs={"seed": 2},
                     plan=vae_draws(64, seed=2), reference_error=d1(), intent_without=("seed",)))
    for batch in (64, 257):
        name = f"miloss_gradient_b{batch}"
        rng = data_rng(name)
        out.append(build(name, "miloss_gradient",
                         "miloss and its gradient w.r.t. every critic parameter (VAE constant)",
                         models={"vae": _vae(rng, "SplitGaussianDecoder"), "mi": critic(rng)},
                         inputs={"x": rng.standard_normal((batch, D))}, plan=vae_draws(batch)))
    name = "miloss_gradient_image_b2"
    rng = data_rng(name)
    out.append(build(name, "miloss_gradient",
                     "critic gradient with image input (data layer Chain(Flatten(), Dense))",
                     models={"vae": _vae(rng, "BernoulliDecoder", N_IMAGE, image=True),
                             "mi": critic(rng, N_IMAGE, image=True)},
                     inputs={"x": rng.uniform(size=(2, *IMAGE))}, plan=vae_draws(2)))
    return out


@case
def _vae_losses():
    out = []
    for kind in ("BernoulliDecoder", "CategoricalDecoder", "SplitGaussianLogDecoder"):
        name = f"vae_loss_{SHORT[kind]}_b64"
        rng = data_rng(name)
        out.append(build(name, "vae_loss", f"VAEs.loss(vae, x) with a {kind}",
                         models={"vae": _vae(rng, kind)}, inputs={"x": data_for(rng, kind, 64)},
                         plan=vae_draws(64, shuffles=False)))
    name = "vae_loss_two_arg_beta_b64"
    rng = data_rng(name)
    out.append(build(name, "vae_loss", "VAEs.loss(vae, x_in, x_out; beta = 0.25)",
                     models={"vae": _vae(rng, "JointGaussianDecoder")},
                     inputs={"x": rng.standard_normal((64, D)), "x_out": rng.standard_normal((64, D))},
                     kwargs={"beta": 0.25}, plan=vae_draws(64, shuffles=False)))
    name = "vae_loss_b257"
    rng = data_rng(name)
    out.append(build(name, "vae_loss", "VAEs.loss with B = 257",
                     models={"vae": _vae(rng, "SimpleGaussianDecoder")},
                     inputs={"x": rng.standard_normal((257, D))}, plan=vae_draws(257, shuffles=False)))
    name = "vae_loss_single_sample"
    rng = data_rng(name)
    out.append(build(name, "vae_loss",
                     "VAEs.loss on one sample (a vector x): vector noise randn(Float32, L)",
                     models={"vae": _vae(rng, "JointGaussianLogDecoder")},
                     inputs={"x": rng.standard_normal(D)}, plan=vae_draws(1, latent_shape=(L,),
                                                                          shuffles=False)))
    name = "vae_loss_reg_zero_b64"
    rng = data_rng(name)
    out.append(build(name, "vae_loss",
                     "VAEs.loss with a reg_function returning 0: the reference raises (D6); the "
                     "intent adds 0",
                     models={"vae": _vae(rng, "BernoulliDecoder")},
                     inputs={"x": data_for(rng, "BernoulliDecoder", 64)},
                     kwargs={"reg_function": "zero"}, plan=vae_draws(64, shuffles=False),
                     reference_error={"defect": "D6", "exception": "UndefVarError",
                                      "message": "vae_outputs not defined",
                                      "compared": "documented intent: reg_function(vae_output) is added"}))
    for kind, two in (("CategoricalDecoder", False), ("JointGaussianLogDecoder", True)):
        name = f"vae_loss_gradient_{SHORT[kind]}{'_two_arg' if two else ''}_b64"
        rng = data_rng(name)
        inputs = {"x": data_for(rng, kind, 64)}
        if two:
            inputs["x_out"] = rng.standard_normal((64, D))
        out.append(build(name, "vae_loss_gradient", f"VAEs.loss gradient ({kind})",
                         models={"vae": _vae(rng, kind)}, inputs=inputs, kwargs={"beta": 1.5},
                         plan=vae_draws(64, shuffles=False)))
    name = "vae_loss_jointgaussianencoder_b64"
    rng = data_rng(name)
    out.append(build(name, "vae_loss",
                     "VAE on a JointGaussianEncoder: the reference raises MethodError (D8: no "
                     "reparameterize/encoder_kl for (mu, sigma) encoders); not compared",
                     models={"vae": {"encoder": linear_encoder(rng),
                                     "decoder": decoder(rng, "SimpleGaussianDecoder")}},
                     inputs={"x": rng.standard_normal((64, D))}, plan=vae_draws(64, shuffles=False),
                     reference_error={"defect": "D8", "exception": "MethodError",
                                      "message": "no method matching reparameterize(::JointGaussianEncoder, ...)",
                                      "compared": "not compared"}))
    return out


# --- training -------------------------------------------------------------------------

@case
def _training():
    out = []

    def infomax(name, kind, batch, steps, description, *, eta=None, beta=None, alpha=None,
                two=False, image=False):
        rng = data_rng(name)
        d = N_IMAGE if image else D
        vae = _vae(rng, kind, d, image=image)
        mi = critic(rng, d, image=image)
        if image:
            x = rng.uniform(size=(batch, *IMAGE))
            inputs = {"x": x, "x_out": x.reshape(batch, -1)}
        else:
            inputs = {"x": data_for(rng, kind, batch)}
            if two:
                inputs["x_out"] = data_for(rng, kind, batch)
        kwargs = {"steps": steps}
        for k, v in (("eta", eta), ("beta", beta), ("alpha", alpha)):
            if v is not None:
                kwargs[k] = v
        return build(name, "infomax_train", description, models={"vae": vae, "mi": mi},
                     inputs=inputs, kwargs=kwargs, plan=train_draws(batch, steps))

    out.append(infomax("infomax_train_1step_b64", "JointGaussianLogDecoder", 64, 1,
                       "one InfoMaxVAEs.train! call with Adam() (eta = 1e-3)"))
    out.append(infomax("infomax_train_3steps_beta_alpha_b64", "BernoulliDecoder", 64, 3,
                       "three train! calls, Adam(1e-2), beta = 0.5, alpha = 5",
                       eta=1e-2, beta=0.5, alpha=5.0))
    out.append(infomax("infomax_train_two_arg_2steps_b64", "SplitGaussianDecoder", 64, 2,
                       "two train!(imv, x_in, x_out, opt) calls, Adam(3e-3)", eta=3e-3, two=True))
    out.append(infomax("infomax_train_1step_b257", "SimpleGaussianDecoder", 257, 1,
                       "one train! call with B = 257"))
    out.append(infomax("infomax_train_2steps_b2", "CategoricalDecoder", 2, 2,
                       "two train! calls with B = 2", eta=1e-2))
    out.append(infomax("infomax_train_image_2steps_b2", "BernoulliDecoder", 2, 2,
                       "two train! calls on image input through Flatten() (x_in images, x_out "
                       "flat), Adam(1e-2), alpha = 2", eta=1e-2, alpha=2.0, image=True))

    def vae_train(name, kind, batch, steps, description, *, eta=None, beta=None, two=False):
        rng = data_rng(name)
        inputs = {"x": data_for(rng, kind, batch)}
        if two:
            inputs["x_out"] = data_for(rng, kind, batch)
        kwargs = {"steps": steps}
        for k, v in (("eta", eta), ("beta", beta)):
            if v is not None:
                kwargs[k] = v
        return build(name, "vae_train", description, models={"vae": _vae(rng, kind)},
                     inputs=inputs, kwargs=kwargs, plan=vae_draws(batch, steps=steps, shuffles=False))

    out.append(vae_train("vae_train_1step_b64", "JointGaussianDecoder", 64, 1,
                         "one VAEs.train! call with Adam()"))
    out.append(vae_train("vae_train_3steps_beta_b64", "SplitGaussianLogDecoder", 64, 3,
                         "three VAEs.train! calls, Adam(1e-2), beta = 0.5", eta=1e-2, beta=0.5))
    out.append(vae_train("vae_train_two_arg_b257", "SimpleGaussianDecoder", 257, 2,
                         "two VAEs.train!(vae, x_in, x_out, opt) calls with B = 257", eta=1e-2,
                         two=True))
    return out


# --- the port's fused step (no counterpart in the reference) --------------------------------

@case
def _fused_training():
    """``infomaxvaes.train_(..., fused=True)`` against the oracle's definition of it."""
    def fused(name, kind, batch, steps, description, *, eta=None, beta=None, alpha=None,
              two=False, image=False):
        rng = data_rng(name)
        d = N_IMAGE if image else D
        vae = _vae(rng, kind, d, image=image)
        mi = critic(rng, d, image=image)
        if image:
            x = rng.uniform(size=(batch, *IMAGE))
            inputs = {"x": x, "x_out": x.reshape(batch, -1)}
        else:
            inputs = {"x": data_for(rng, kind, batch)}
            if two:
                inputs["x_out"] = data_for(rng, kind, batch)
        kwargs = {"steps": steps}
        for k, v in (("eta", eta), ("beta", beta), ("alpha", alpha)):
            if v is not None:
                kwargs[k] = v
        return build(name, "infomax_train_fused",
                     description + " (the port's fused step; the reference has none)",
                     models={"vae": vae, "mi": mi}, inputs=inputs, kwargs=kwargs,
                     plan=fused_draws(batch, steps))

    return [
        fused("infomax_train_fused_1step_b64", "JointGaussianLogDecoder", 64, 1,
              "one train_(imv, x, opt, fused=True) call with Adam() (eta = 1e-3)"),
        fused("infomax_train_fused_3steps_beta_alpha_b64", "BernoulliDecoder", 64, 3,
              "three fused calls, Adam(1e-2), beta = 0.5, alpha = 5",
              eta=1e-2, beta=0.5, alpha=5.0),
        fused("infomax_train_fused_two_arg_2steps_b64", "SplitGaussianDecoder", 64, 2,
              "two fused train_(imv, x_in, x_out, opt) calls, Adam(3e-3)", eta=3e-3, two=True),
        fused("infomax_train_fused_1step_b257", "SimpleGaussianDecoder", 257, 1,
              "one fused call with B = 257, beta = 2, alpha = 0.25", beta=2.0, alpha=0.25),
        fused("infomax_train_fused_2steps_b2", "CategoricalDecoder", 2, 2,
              "two fused calls with B = 2", eta=1e-2),
        fused("infomax_train_fused_image_2steps_b2", "BernoulliDecoder", 2, 2,
              "two fused calls on image input through Flatten() (x_in images, x_out flat), "
              "Adam(1e-2), alpha = 2", eta=1e-2, alpha=2.0, image=True),
    ]


# --- paths where the reference raises, with nothing to compare -----------------------------

@case
def _raises():
    name = "mutual_info_chain_constructor_shape"
    return build(name, "mutual_info_chain_constructor",
                 "MutualInfoChain([12], 2, [4, 3], [relu, relu], identity): the reference raises "
                 "UndefVarError (D2); the port builds Chain(Flatten(), Dense(12, 12)). Not compared",
                 kwargs={"size_input": [N_IMAGE], "n_latent": L, "mlp_neurons": [4, 3],
                         "mlp_activation": ["relu", "relu"], "output_activation": "identity"},
                 reference_error={"defect": "D2", "exception": "UndefVarError",
                                  "message": "AutoEncoderToolkit not defined in InfoMaxVAEs",
                                  "compared": "not compared"},
                 no_expected=True)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def all_cases() -> list[dict]:
    """Every case, in a fixed order; names are unique."""
    cases: list[dict] = []
    for fn in CASES:
        made = fn()
        cases.extend(made if isinstance(made, list) else [made])
    names = [c["name"] for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RuntimeError(f"duplicate case names: {sorted(dup)}")
    return cases


def write_all(out_dir: Path = CASES_DIR, *, check: bool = False) -> list[str]:
    """Write every case file (removing stale ones); return the names that changed."""
    out_dir = Path(out_dir)
    changed = []
    cases = all_cases()
    wanted = {f"{c['name']}.json" for c in cases}
    for c in cases:
        path = out_dir / f"{c['name']}.json"
        text = C.dumps_case(c)
        if len(text.encode()) > C.MAX_CASE_BYTES:
            raise ValueError(f"{c['name']}: {len(text.encode())} bytes (limit {C.MAX_CASE_BYTES})")
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            changed.append(c["name"])
            if not check:
                C.write_case(path, c)
    if out_dir.exists():
        for stale in sorted(out_dir.glob("*.json")):
            if stale.name not in wanted:
                changed.append(stale.stem + " (stale)")
                if not check:
                    stale.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.make_cases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CASES_DIR, help="output directory")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    changed = write_all(args.out, check=args.check)
    n = len(list(Path(args.out).glob("*.json"))) if Path(args.out).exists() else 0
    if args.check:
        for name in changed:
            print(f"would change: {name}")
        print(f"{len(changed)} of the cases would change")
        return 1 if changed else 0
    print(f"{n} case files in {args.out} ({len(changed)} written or removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

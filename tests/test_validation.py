"""Bad input at the public boundary: each case names the argument in a clear error.

A table of cases across the library API (the CLI's cases live in tests/test_cli.py), then
hypothesis fuzzing: any shape, dtype or value gives a correct result or a documented
exception, never an error from deep inside torch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autoencoder_toolkit import setup
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.models import checks as _validation
from autoencoder_toolkit.activations import get_activation
from autoencoder_toolkit.decoders import (BernoulliDecoder, CategoricalDecoder, Decoder, SimpleGaussianDecoder,
                                          SplitGaussianLogDecoder, decoder_loglikelihood)
from autoencoder_toolkit.encoders import (Encoder, JointGaussianLogEncoder, encoder_kl, encoder_logposterior,
                                          spherical_logprior)
from autoencoder_toolkit.infomaxvaes import (InfoMaxVAE, MutualInfoChain, infomaxloss, miloss, mutual_info_bound,
                                             shuffle_latent, train_, variational_mutual_info)
from autoencoder_toolkit.layers import ActivationOverDims, Chain, Dense, Reshape
from autoencoder_toolkit.outputs import GaussianLogParams, Probabilities
from autoencoder_toolkit.vaes import VAE, loss, reparameterize
from autoencoder_toolkit.vaes import train_ as vae_train_

from .fuzzing import fuzz

D, L = 6, 2


def _enc():
    return JointGaussianLogEncoder(D, L, [5], ["relu"], "identity")


def _dec():
    return BernoulliDecoder(D, L, [5], ["relu"], "sigmoid")


def _mi():
    return MutualInfoChain(D, L, [5], ["relu"], "identity")


def _model():
    return InfoMaxVAE(_enc() * _dec(), _mi())


X = torch.rand(8, D, generator=torch.Generator().manual_seed(55))


def _nan_x():
    x = X.clone()
    x[3, 2] = float("nan")
    return x


# (id, callable, exception type, text the message must contain)
CASES = [
    # layers and activations
    ("dense-n_in", lambda: Dense(0, 3), ValueError, "n_in"),
    ("dense-n_out", lambda: Dense(3, -1), ValueError, "n_out"),
    ("dense-activation", lambda: Dense(3, 2, "rellu"), ValueError, "activation"),
    ("dense-init-name", lambda: Dense(3, 2, init="uniform"), ValueError, "init"),
    ("dense-init-type", lambda: Dense(3, 2, init=3), TypeError, "init"),
    ("dense-weights", lambda: Dense.from_weights([1.0, 2.0]), ValueError, "weight"),
    ("dense-bias", lambda: Dense.from_weights([[1.0, 2.0]], [1.0, 2.0]), ValueError, "bias"),
    ("activation-type", lambda: get_activation(3.5), TypeError, "activation"),
    ("reshape", lambda: Reshape(-1, -1, 2), ValueError, "shape"),
    ("activation-over-dims", lambda: ActivationOverDims("sigmoid"), ValueError, "activation"),
    ("activation-over-dims-dim", lambda: ActivationOverDims("softmax", 1.5), TypeError, "dim"),
    # encoders
    ("enc-activation-count", lambda: JointGaussianLogEncoder(D, L, [5, 5], ["relu"], "identity"), ValueError,
     "encoder_activation"),
    ("enc-empty-neurons", lambda: JointGaussianLogEncoder(D, L, [], [], "identity"), ValueError, "encoder_neurons"),
    ("enc-n_input", lambda: JointGaussianLogEncoder(0, L, [5], ["relu"], "identity"), ValueError, "n_input"),
    ("enc-n_latent", lambda: JointGaussianLogEncoder(D, "2", [5], ["relu"], "identity"), TypeError, "n_latent"),
    ("enc-latent-activation", lambda: JointGaussianLogEncoder(D, L, [5], ["relu"], ["a", "b", "c"]), ValueError,
     "latent_activation"),
    ("enc-activation-str", lambda: JointGaussianLogEncoder(D, L, [5], "relu", "identity"), TypeError,
     "encoder_activation"),
    ("enc-field-type", lambda: JointGaussianLogEncoder(Dense(D, 5), lambda h: h, Dense(5, L)), TypeError, "μ"),
    ("enc-field-sizes", lambda: JointGaussianLogEncoder(Dense(D, 5), Dense(5, L), Dense(4, L)), ValueError, "logσ"),
    ("enc-unknown-kw", lambda: JointGaussianLogEncoder(D, L, [5], ["relu"], "identity", n_hidden=3), TypeError,
     "n_hidden"),
    ("enc-missing", lambda: JointGaussianLogEncoder(D, L, [5]), TypeError, "encoder_activation"),
    ("det-encoder-missing", lambda: Encoder(D, L), TypeError, "encoder_neurons"),
    # decoders
    ("dec-activation-count", lambda: BernoulliDecoder(D, L, [5], ["relu", "relu"], "sigmoid"), ValueError,
     "decoder_activation"),
    ("dec-split-activation", lambda: SplitGaussianLogDecoder(D, L, [5], ["relu", "relu"], [5], ["relu"]), ValueError,
     "μ_activation"),
    ("dec-categorical-size", lambda: CategoricalDecoder((0, 3), L, [5], ["relu"]), ValueError, "size_input"),
    ("dec-field-type", lambda: BernoulliDecoder(decoder="sigmoid"), TypeError, "decoder"),
    # models
    ("vae-encoder-type", lambda: VAE(Decoder(D, L, [5], ["relu"], "sigmoid"), _dec()), TypeError, "encoder"),
    ("vae-decoder-type", lambda: VAE(_enc(), Decoder(D, L, [5], ["relu"], "sigmoid")), TypeError, "decoder"),
    ("vae-latent-mismatch", lambda: VAE(_enc(), BernoulliDecoder(D, 3, [5], ["relu"], "sigmoid")), ValueError,
     "decoder"),
    ("mi-activation-count", lambda: MutualInfoChain(D, L, [5], ["relu", "relu"], "identity"), ValueError,
     "mlp_activation"),
    ("mi-field-sizes", lambda: MutualInfoChain(Dense(D, D), Dense(L, L), Chain(Dense(D + L + 1, 3), Dense(3, 1))),
     ValueError, "mlp"),
    ("imv-mi-type", lambda: InfoMaxVAE(_enc() * _dec(), Dense(3, 1)), TypeError, "mi"),
    ("imv-vae-type", lambda: InfoMaxVAE(_enc(), _mi()), TypeError, "vae"),
    ("imv-latent-mismatch", lambda: InfoMaxVAE(_enc() * _dec(), MutualInfoChain(D, 3, [5], ["relu"], "identity")),
     ValueError, "mi"),
    ("imv-input-mismatch", lambda: InfoMaxVAE(_enc() * _dec(), MutualInfoChain(D + 1, L, [5], ["relu"], "identity")),
     ValueError, "mi"),
    # model calls
    ("call-features", lambda: _model().reconstruct(torch.rand(8, D + 1)), ValueError, "x"),
    ("call-int", lambda: _model().reconstruct(torch.ones(8, D, dtype=torch.int64)), TypeError, "x"),
    ("call-uint8-hint", lambda: _model().reconstruct(np.ones((8, D), dtype=np.uint8)), TypeError, "x / 255"),
    ("call-nan", lambda: _model().reconstruct(_nan_x()), ValueError, "x"),
    ("call-inf", lambda: _model().encode(torch.full((2, D), float("inf"))), ValueError, "x"),
    ("call-str", lambda: _model().reconstruct("data.csv"), TypeError, "x"),
    ("call-0d", lambda: _model().reconstruct(torch.tensor(1.0)), ValueError, "x"),
    ("call-empty", lambda: _model().reconstruct(torch.rand(0, D)), ValueError, "x"),
    ("call-object", lambda: _model().reconstruct(np.array([object()] * D)), TypeError, "x"),
    ("call-latent-batch-1", lambda: variational_mutual_info(_model(), torch.rand(1, D)), ValueError, "x"),
    ("call-rng-int", lambda: _model().encode(X, sample=True, rng=3), TypeError, "rng"),
    ("decoder-call-z", lambda: _model().decode(torch.rand(4, L + 1)), ValueError, "z"),
    ("critic-z-dims", lambda: variational_mutual_info(_mi(), X, torch.rand(8, L + 1), torch.rand(8, L + 1)),
     ValueError, "z"),
    ("critic-z-batch", lambda: variational_mutual_info(_mi(), X, torch.rand(7, L), torch.rand(7, L)), ValueError,
     "z"),
    ("critic-z-1d", lambda: variational_mutual_info(_mi(), X, torch.rand(L), torch.rand(L)), ValueError, "z"),
    # losses
    ("loss-x_out-batch", lambda: loss(_enc() * _dec(), X, torch.rand(7, D)), ValueError, "x_out"),
    ("loss-x_out-features", lambda: loss(_enc() * _dec(), X, torch.rand(8, D + 2)), ValueError, "x_out"),
    ("loss-x_out-nan", lambda: loss(_enc() * _dec(), X, _nan_x()), ValueError, "x_out"),
    ("loss-beta-negative", lambda: loss(_enc() * _dec(), X, β=-1.0), ValueError, "β"),
    ("loss-beta-alias-type", lambda: loss(_enc() * _dec(), X, beta="a"), TypeError, "beta"),
    ("loss-beta-both", lambda: loss(_enc() * _dec(), X, β=1.0, beta=2.0), TypeError, "beta"),
    ("loss-beta-nan", lambda: loss(_enc() * _dec(), X, β=float("nan")), ValueError, "β"),
    ("loss-vae-type", lambda: loss(_model(), X), TypeError, "vae"),
    ("loss-reg-kwargs", lambda: loss(_enc() * _dec(), X, reg_function=lambda o: 0.0, reg_kwargs=[1]), TypeError,
     "reg_kwargs"),
    ("infomaxloss-alpha", lambda: infomaxloss(_enc() * _dec(), _mi(), X, α=-0.5), ValueError, "α"),
    ("infomaxloss-alpha-alias", lambda: infomaxloss(_enc() * _dec(), _mi(), X, alpha=-0.5), ValueError, "alpha"),
    ("infomaxloss-batch-1", lambda: infomaxloss(_enc() * _dec(), _mi(), torch.rand(1, D)), ValueError, "x"),
    ("infomaxloss-single-sample", lambda: infomaxloss(_enc() * _dec(), _mi(), torch.rand(D)), ValueError, "x"),
    ("infomaxloss-n_samples", lambda: infomaxloss(_enc() * _dec(), _mi(), X, n_samples=0), ValueError, "n_samples"),
    ("infomaxloss-reg-strength", lambda: infomaxloss(_enc() * _dec(), _mi(), X, reg_strength=-1.0), ValueError,
     "reg_strength"),
    ("infomaxloss-seed", lambda: infomaxloss(_enc() * _dec(), _mi(), X, seed=1.5), TypeError, "seed"),
    ("infomaxloss-mi-type", lambda: infomaxloss(_enc() * _dec(), Dense(3, 1), X), TypeError, "mi"),
    ("infomaxloss-x-none", lambda: infomaxloss(_enc() * _dec(), _mi(), None), TypeError, "x"),
    ("miloss-features", lambda: miloss(_enc() * _dec(), _mi(), torch.rand(8, 3)), ValueError, "x"),
    ("vmi-no-codes", lambda: variational_mutual_info(_mi(), X), TypeError, "z"),
    ("vmi-one-code-arg", lambda: variational_mutual_info(_mi(), X, torch.rand(8, L)), TypeError, "z_shuffle"),
    ("vmi-z_shuffle-shape", lambda: variational_mutual_info(_mi(), X, torch.rand(8, L), torch.rand(7, L)),
     ValueError, "z_shuffle"),
    ("vmi-model-type", lambda: variational_mutual_info(_enc(), X), TypeError, "model"),
    # training
    ("train-opt-type", lambda: train_(_model(), X, torch.optim.Adam(_mi().parameters())), TypeError, "opt"),
    ("train-kwargs-type", lambda: (lambda m: train_(m, X, setup(torch.optim.Adam, m), infomaxloss_kwargs=[("α", 1)]))(
        _model()), TypeError, "infomaxloss_kwargs"),
    ("train-arity", lambda: (lambda m: train_(m, X, X, X, setup(torch.optim.Adam, m)))(_model()), TypeError,
     "train_"),
    ("train-model-type", lambda: train_(_enc() * _dec(), X, None), TypeError, "model"),
    ("train-batch-1", lambda: (lambda m: train_(m, torch.rand(1, D), setup(torch.optim.Adam, m)))(_model()),
     ValueError, "x"),
    ("vae-train-opt", lambda: vae_train_(_enc() * _dec(), X, "adam"), TypeError, "opt"),
    ("vae-train-loss-kwargs", lambda: (lambda v: vae_train_(v, X, setup(torch.optim.Adam, v), loss_kwargs=3))(
        _enc() * _dec()), TypeError, "loss_kwargs"),
    ("setup-instance", lambda: setup(torch.optim.Adam(_mi().parameters()), _model()), TypeError, "optimizer_class"),
    ("setup-model", lambda: setup(torch.optim.Adam, "model"), TypeError, "model"),
    # pure functions
    ("shuffle-1d", lambda: shuffle_latent(torch.rand(5)), ValueError, "z"),
    ("shuffle-seed-type", lambda: shuffle_latent(torch.rand(5, 2), seed="1"), TypeError, "seed"),
    ("shuffle-rng-int", lambda: shuffle_latent(torch.rand(5, 2), rng=7), TypeError, "rng"),
    ("reparam-shapes", lambda: reparameterize(torch.zeros(3, 2), torch.zeros(3, 1)), ValueError, "σ"),
    ("reparam-noise", lambda: reparameterize(torch.zeros(3, 2), torch.zeros(3, 2), noise=torch.zeros(2, 2)),
     ValueError, "noise"),
    ("reparam-arity", lambda: reparameterize(torch.zeros(3, 2)), TypeError, "reparameterize"),
    ("mixed-kinds", lambda: encoder_logposterior(np.zeros((3, L)), _enc(),
                                                 GaussianLogParams(torch.zeros(3, L), torch.zeros(3, L))),
     TypeError, "different kinds"),
    ("mixed-bound", lambda: mutual_info_bound(np.zeros(3), torch.zeros(3)), TypeError, "g_shuffled"),
    ("loglik-shape", lambda: decoder_loglikelihood(torch.ones(4, 1), torch.zeros(4, L), _dec(),
                                                   Probabilities(torch.full((4, D), 0.5))), ValueError, "x"),
    ("loglik-decoder-type", lambda: decoder_loglikelihood(X, X, Decoder(D, L, [5], ["relu"], "sigmoid"), None),
     TypeError, "decoder"),
    ("kl-encoder-type", lambda: encoder_kl(Encoder(D, L, [5], ["relu"], "identity"), None), TypeError, "encoder"),
    ("simple-sigma", lambda: decoder_loglikelihood(X, torch.zeros(8, L), SimpleGaussianDecoder(D, L, [3], ["relu"],
                                                                                                 "identity"),
                                                   SimpleGaussianDecoder(D, L, [3], ["relu"], "identity")(
                                                       torch.zeros(8, L)), σ=0.0), ValueError, "σ"),
    ("logposterior-index-z", lambda: encoder_logposterior(torch.zeros(3, L), _enc(), _enc()(X), 1), ValueError, "z"),
    ("spherical-type", lambda: spherical_logprior([0.0, 1.0]), TypeError, "z"),
]


def test_case_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 60


@pytest.mark.parametrize("case_id,call,exc,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(case_id, call, exc, text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            call()
    message = str(info.value)
    assert text in message, f"{case_id}: {message!r} does not name {text!r}"
    assert "Traceback" not in message and len(message) < 600


def test_small_batch_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(_validation, "_warned_small_batch", False)
    vae, mi = _enc() * _dec(), _mi()
    with pytest.warns(UserWarning, match="below 64 samples per batch"):
        infomaxloss(vae, mi, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infomaxloss(vae, mi, X)  # the second call is quiet
        infomaxloss(vae, mi, torch.rand(64, D))


# --------------------------------------------------------------------------- fuzzing

DOCUMENTED = (ValueError, TypeError, FloatingPointError)

_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_])
_shapes = st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple)


@st.composite
def arrays(draw):
    dtype = draw(_dtypes)
    shape = draw(_shapes)
    if np.issubdtype(dtype, np.floating):
        width = 16 if dtype == np.float16 else 32
        # moderate finite values (huge ones may legitimately overflow exp(logσ) to NaN outputs)
        elements = st.one_of(st.floats(-50, 50, width=width),
                             st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    elif dtype == np.bool_:
        elements = st.booleans()
    else:
        elements = st.integers(0, 255)
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    return torch.from_numpy(a) if draw(st.booleans()) else a


with torch.random.fork_rng():  # the same initial weights whatever was collected before
    torch.manual_seed(252)
    _MODEL = _model()
_OPT = setup(torch.optim.SGD, _MODEL, lr=0.0)
_PRISTINE = {k: v.clone() for k, v in _MODEL.state_dict().items()}
_PRISTINE_STATE = kit.snapshot(_MODEL)


def _fresh_model():
    """The shared model, reset to its initial weights."""
    _MODEL.load_state_dict(_PRISTINE)
    return _MODEL


def _fine_input(a) -> bool:
    t = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
    return (t.is_floating_point() and t.ndim in (1, 2) and t.shape[-1] == D
            and (t.ndim == 1 or t.shape[0] > 0) and bool(torch.isfinite(t.float()).all()))


@fuzz(150)
@given(arrays())
def test_fuzz_model_calls_give_results_or_documented_errors(a):
    try:
        out = _fresh_model().reconstruct(a)
    except DOCUMENTED:
        assert not _fine_input(a)
        return
    assert _fine_input(a)
    assert type(out) is type(a) and out.shape == a.shape and bool(((out >= 0) & (out <= 1)).all())


@fuzz(100)
@given(arrays(), st.floats(-2, 5), st.floats(-2, 5))
def test_fuzz_losses_and_training(a, β, α):
    """Losses give a value or a documented error; a training step is finite or changes nothing.

    A loss is computed in the model's precision, so for extreme inputs it can overflow to
    inf or NaN (tests/test_infomaxvaes.py holds the float32 overflow edge); ``train_``
    then raises ``FloatingPointError`` and leaves everything as it was.
    """
    _fresh_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for uses_α, is_step, fn in (
                (True, False, lambda: infomaxloss(_MODEL.vae, _MODEL.mi, a, β=β, α=α)),
                (False, False, lambda: loss(_MODEL.vae, a, β=β)),
                (True, True, lambda: train_(_MODEL, a, _OPT, infomaxloss_kwargs={"β": β, "α": α},
                                            loss_return=True))):
            try:
                value = fn()
            except DOCUMENTED:
                continue
            assert β >= 0 and (α >= 0 or not uses_α) and _fine_input(a)
            if is_step:
                assert len(value) == 2 and all(math.isfinite(v) for v in value), value
            else:
                assert isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype == torch.float32
        # a training step either raised or left the parameters as they were (lr = 0)
        kit.assert_unchanged(_MODEL, None, _PRISTINE_STATE, "a training step with lr = 0, or a refused one,")


@fuzz(150)
@given(arrays(), st.one_of(st.none(), st.integers(0, 2**31 - 1)))
def test_fuzz_shuffle_latent(a, seed):
    try:
        s = shuffle_latent(a, seed=seed) if seed is not None else shuffle_latent(a)
    except DOCUMENTED:
        assert getattr(a, "ndim", 0) != 2 or seed is not None and seed >= 2**31
        return
    assert a.ndim == 2 and tuple(s.shape) == tuple(a.shape)
    def rows(t):
        arr = np.asarray(t)
        return sorted(arr[i].tobytes() for i in range(arr.shape[0]))

    assert rows(s) == rows(a)  # the same rows (bit for bit, NaNs included), each kept whole


@fuzz(150)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.floats(-20, 20)))
def test_fuzz_pure_functions_match_float64_formulas(z):
    lp = spherical_logprior(z)
    flat = z.reshape(z.shape[0], -1) if z.ndim >= 2 else z.reshape(1, -1)
    expected = -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * float(np.log(np.float32(2 * np.pi)))
    np.testing.assert_allclose(np.atleast_1d(lp), expected if z.ndim >= 2 else expected[:1], rtol=1e-12, atol=1e-9)
    p = 1 / (1 + np.exp(-z))
    x = (z > 0).astype(np.float64)
    enc_out = Probabilities(p)
    ll = decoder_loglikelihood(x, z if z.ndim >= 2 else z[:1], _dec(), enc_out) if z.ndim >= 2 else None
    if ll is not None:
        e = 1.1920928955078125e-07
        ref = (x * np.log(p + e) + (1 - x) * np.log(1 - p + e)).reshape(z.shape[0], -1).sum(1)
        np.testing.assert_allclose(ll, ref, rtol=1e-12, atol=1e-9)

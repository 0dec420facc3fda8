"""Decoders and their log-likelihoods (reference tests §9.4, hand values §10, float64 checks)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from autoencoder_toolkit.decoders import (EPS_FLOAT32, BernoulliDecoder, CategoricalDecoder, Decoder,
                                          JointGaussianDecoder, JointGaussianLogDecoder, SimpleGaussianDecoder,
                                          SplitGaussianDecoder, SplitGaussianLogDecoder, decoder_loglikelihood)
from autoencoder_toolkit.outputs import GaussianLogParams, GaussianMean, GaussianParams, Probabilities

from .conftest import f64

LOG2PI = math.log(2 * math.pi)


def test_eps_is_float32_machine_epsilon():
    assert EPS_FLOAT32 == 2.0 ** -23 == pytest.approx(1.1920929e-7)


def test_deterministic_decoder_vector():
    dec = Decoder(16, 2, [10, 10], ["relu", "relu"], "sigmoid")
    y = dec(torch.randn(2))
    assert y.shape == (16,)
    assert bool(((y >= 0) & (y <= 1)).all())


def _decoders():
    return {
        "simple": SimpleGaussianDecoder(784, 64, [256, 128], ["relu", "relu"], "identity"),
        "jointlog": JointGaussianLogDecoder(784, 64, [256, 128], ["relu", "relu"], ["tanh", "identity"]),
        "joint": JointGaussianDecoder(784, 64, [256, 128], ["relu", "relu"], ["tanh", "softplus"]),
        "splitlog": SplitGaussianLogDecoder(784, 64, [256, 128], ["relu", "relu"], [256, 128], ["relu", "relu"]),
        "split": SplitGaussianDecoder(784, 64, [256, 128], ["relu", "relu"], [256, 128], ["relu", "softplus"]),
        "bernoulli": BernoulliDecoder(784, 64, [256, 128], ["relu", "relu"], "sigmoid"),
    }


FIELDS = {"simple": ("μ",), "jointlog": ("μ", "logσ"), "joint": ("μ", "σ"), "splitlog": ("μ", "logσ"),
          "split": ("μ", "σ"), "bernoulli": ("p",)}


@pytest.mark.parametrize("kind", list(FIELDS))
def test_output_fields_and_shapes(kind):
    dec = _decoders()[kind]
    out = dec(torch.randn(64))
    assert out._fields == FIELDS[kind]
    for f in out:
        assert f.shape == (784,)
    outb = dec(torch.randn(10, 64))
    for f in outb:
        assert f.shape == (10, 784)
    if kind == "bernoulli":
        assert bool(((out.p >= 0) & (out.p <= 1)).all())


def test_split_decoder_does_not_modify_the_callers_lists():
    μ_neurons = [5, 3]
    dec = SplitGaussianLogDecoder(7, 2, μ_neurons, ["relu", "identity"], [4, 3], ["relu", "identity"])
    assert μ_neurons == [5, 3]
    assert dec.μ[-1].out_features == 7 and dec.logσ[-1].out_features == 7


def test_categorical_decoder_normalises_over_the_last_axis():
    dec = CategoricalDecoder((4, 4), 2, [256, 128], ["relu", "relu"], "softmax")
    p = dec(torch.randn(2)).p
    assert p.shape == (4, 4)
    torch.testing.assert_close(p.sum(-1), torch.ones(4))
    pb = dec(torch.randn(5, 2)).p  # a batch works too (the reference's reshape drops it)
    assert pb.shape == (5, 4, 4)
    torch.testing.assert_close(pb.sum(-1), torch.ones(5, 4))


def test_bernoulli_warns_for_an_activation_outside_unit_interval():
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        BernoulliDecoder(4, 2, [3], ["relu"], "identity")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BernoulliDecoder(4, 2, [3], ["relu"], "sigmoid")


# ---------------------------------------------------------------- log-likelihoods

def _ll_direct(kind, x, out):
    x = f64(x)
    if kind == "bernoulli":
        p = f64(out.p)
        v = x * np.log(p + EPS_FLOAT32) + (1 - x) * np.log(1 - p + EPS_FLOAT32)
    elif kind == "simple":
        v = -0.5 * (x - f64(out.μ)) ** 2 - 0.5 * LOG2PI
    elif kind in ("jointlog", "splitlog"):
        ls = f64(out.logσ)
        v = -0.5 * (x - f64(out.μ)) ** 2 / np.exp(2 * ls) - ls - 0.5 * LOG2PI
    else:
        s = f64(out.σ)
        v = -0.5 * ((x - f64(out.μ)) / s) ** 2 - np.log(s) - 0.5 * LOG2PI
    return v.reshape(v.shape[0], -1).sum(1) if v.ndim > 1 else v.sum()


@pytest.mark.parametrize("kind", list(FIELDS))
def test_loglikelihood_matches_float64_formula(kind):
    dec = _decoders()[kind]
    z = torch.randn(10, 64)
    x = torch.rand(10, 784)
    out = dec(z)
    ll = decoder_loglikelihood(x, z, dec, out)
    assert ll.shape == (10,) and ll.dtype == torch.float32
    np.testing.assert_allclose(f64(ll), _ll_direct(kind, x, out), rtol=2e-5)
    one = dec(z[0])
    ll1 = decoder_loglikelihood(x[0], z[0], dec, one)
    assert ll1.shape == ()
    np.testing.assert_allclose(float(ll1.detach()), _ll_direct(kind, x[0], one), rtol=2e-5)
    # index form: sample 3 of the batch
    np.testing.assert_allclose(float(decoder_loglikelihood(x, z, dec, out, 3).detach()),
                               float(ll[3].detach()), rtol=1e-6)


def test_categorical_loglikelihood_with_one_hot():
    dec = CategoricalDecoder(10, 2, [8], ["relu"], "softmax")
    z = torch.randn(10, 2)
    out = dec(z)
    labels = torch.arange(10) % 10
    x = torch.nn.functional.one_hot(labels, 10).float()
    ll = decoder_loglikelihood(x, z, dec, out)
    expected = np.log(f64(out.p)[np.arange(10), labels.numpy()] + EPS_FLOAT32)
    np.testing.assert_allclose(f64(ll), expected, rtol=1e-5)


def test_hand_values():
    D = 6
    mu = torch.rand(3, D)
    sg = SimpleGaussianDecoder(D, 2, [3], ["relu"], "identity")
    jl = JointGaussianLogDecoder(D, 2, [3], ["relu"], "identity")
    jg = JointGaussianDecoder(D, 2, [3], ["relu"], ["identity", "softplus"])
    z = torch.zeros(3, 2)
    expected = -0.5 * D * float(np.log(np.float32(2 * np.pi)))
    for dec, out in ((sg, GaussianMean(mu)), (jl, GaussianLogParams(mu, torch.zeros(3, D))),
                     (jg, GaussianParams(mu, torch.ones(3, D)))):
        np.testing.assert_allclose(f64(decoder_loglikelihood(mu, z, dec, out)), [expected] * 3, rtol=1e-6)
    bern = BernoulliDecoder(D, 2, [3], ["relu"], "sigmoid")
    ones = torch.ones(3, D)
    ll = decoder_loglikelihood(ones, z, bern, Probabilities(ones))
    # log(1 + ε) per element: slightly positive
    np.testing.assert_allclose(f64(ll), [D * math.log1p(EPS_FLOAT32)] * 3, rtol=1e-3)
    assert bool((ll > 0).all())
    half = torch.full((3, D), 0.5)
    ll = decoder_loglikelihood(half, z, bern, Probabilities(half))
    np.testing.assert_allclose(f64(ll), [D * math.log(0.5 + EPS_FLOAT32)] * 3, rtol=1e-6)


def test_simple_gaussian_sigma_keyword():
    dec = SimpleGaussianDecoder(4, 2, [3], ["relu"], "identity")
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = GaussianMean(torch.zeros(1, 4))
    σ = 2.0
    expected = -0.5 * (30.0 / σ**2) - 0.5 * 4 * (2 * math.log(σ) + LOG2PI)
    got = decoder_loglikelihood(x, torch.zeros(1, 2), dec, out, σ=σ)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="σ: expected a positive number"):
        decoder_loglikelihood(x, torch.zeros(1, 2), dec, out, σ=-1.0)


def test_shape_mismatch_is_an_error_not_a_broadcast():
    dec = BernoulliDecoder(4, 2, [3], ["relu"], "sigmoid")
    out = Probabilities(torch.full((5, 4), 0.5))
    with pytest.raises(ValueError, match=r"x: expected the shape of p \(5, 4\), got \(5, 1\)"):
        decoder_loglikelihood(torch.ones(5, 1), torch.zeros(5, 2), dec, out)


def test_pure_functions_accept_numpy():
    dec = BernoulliDecoder(4, 2, [3], ["relu"], "sigmoid")
    p = np.full((2, 4), 0.25)
    x = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float64)
    ll = decoder_loglikelihood(x, np.zeros((2, 2)), dec, Probabilities(p))
    assert isinstance(ll, np.ndarray)
    expected = [2 * math.log(0.25 + EPS_FLOAT32) + 2 * math.log(0.75 + EPS_FLOAT32), 4 * math.log(0.75 + EPS_FLOAT32)]
    np.testing.assert_allclose(ll, expected, rtol=1e-12)

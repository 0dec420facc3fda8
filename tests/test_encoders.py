"""Encoders, the prior, the posterior and the KL divergence (reference tests §9.3 and §10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autoencoder_toolkit import encoders
from autoencoder_toolkit.encoders import (Encoder, JointGaussianEncoder, JointGaussianLogEncoder,
                                          encoder_kl, encoder_logposterior, spherical_logprior)
from autoencoder_toolkit.layers import Chain, Dense

from .conftest import f64
from .fuzzing import fuzz

LOG2PI32 = float(np.log(np.float32(2 * np.pi)))


def test_log2pi_is_the_float32_constant():
    assert encoders.LOG2PI == LOG2PI32
    assert abs(encoders.LOG2PI - 1.837877) < 1e-6


def test_deterministic_encoder_shape():
    enc = Encoder(784, 64, [256, 128], ["relu", "relu"], "tanh")
    z = enc(torch.randn(10, 784))
    assert z.shape == (10, 64)
    assert float(z.detach().abs().max()) <= 1.0


@pytest.mark.parametrize("latent_activation", ["tanh", ["tanh", "identity"]])
def test_joint_gaussian_log_encoder_fields_and_shapes(latent_activation):
    enc = JointGaussianLogEncoder(784, 64, [256, 128], ["relu", "relu"], latent_activation)
    out = enc(torch.randn(10, 784))
    assert out._fields == ("μ", "logσ")
    assert out.μ.shape == (10, 64) and out.logσ.shape == (10, 64)
    assert out.mu is out.μ and out.logsigma is out.logσ
    if isinstance(latent_activation, list):
        assert float(out.μ.detach().abs().max()) <= 1.0


def test_joint_gaussian_encoder_fields():
    enc = JointGaussianEncoder(784, 64, [256, 128], ["relu", "relu"], ["tanh", "softplus"])
    out = enc(torch.randn(10, 784))
    assert out._fields == ("μ", "σ")
    assert out.σ.shape == (10, 64) and bool((out.σ > 0).all())


def test_field_constructor_accepts_any_modules_and_checks_sizes():
    trunk = Chain(Dense(5, 4, "relu"))
    enc = JointGaussianLogEncoder(trunk, Dense(4, 2), Dense(4, 2))
    assert enc.input_shape == (5,) and enc.latent_dim == 2
    out = enc(torch.randn(3, 5))
    assert out.μ.shape == (3, 2)
    with pytest.raises(ValueError, match="logσ head expects 3 input features but the encoder network outputs 4"):
        JointGaussianLogEncoder(trunk, Dense(4, 2), Dense(3, 2))
    with pytest.raises(TypeError, match="field 'μ' must be a torch.nn.Module"):
        JointGaussianLogEncoder(trunk, lambda h: h, Dense(4, 2))


def test_single_sample_and_batch_of_one():
    enc = JointGaussianLogEncoder(5, 2, [4], ["relu"], "identity")
    assert enc(torch.randn(5)).μ.shape == (2,)
    # A batch of one stays a batch (the reference drops the axis).
    assert enc(torch.randn(1, 5)).μ.shape == (1, 2)


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="encoder_activation: each layer needs exactly one activation"):
        JointGaussianLogEncoder(5, 2, [4, 4], ["relu"], "identity")
    with pytest.raises(ValueError, match="encoder_neurons: expected at least one hidden layer"):
        JointGaussianLogEncoder(5, 2, [], [], "identity")
    with pytest.raises(ValueError, match="latent_activation"):
        JointGaussianLogEncoder(5, 2, [4], ["relu"], ["tanh", "relu", "relu"])


def test_spherical_logprior_values():
    assert float(spherical_logprior(torch.zeros(64))) == pytest.approx(-0.5 * 64 * LOG2PI32, rel=1e-6)
    z = torch.randn(10, 64)
    lp = spherical_logprior(z)
    assert lp.shape == (10,) and lp.dtype == torch.float32
    expected = -0.5 * (f64(z) ** 2).sum(1) - 0.5 * 64 * math.log(2 * math.pi)
    np.testing.assert_allclose(f64(lp), expected, rtol=1e-5)


def test_encoder_kl_hand_values():
    enc = JointGaussianLogEncoder(3, 4, [3], ["relu"], "identity")
    Out = type(enc(torch.zeros(2, 3)))
    zeros = torch.zeros(2, 4)
    np.testing.assert_allclose(f64(encoder_kl(enc, Out(zeros, zeros))), [0, 0])
    np.testing.assert_allclose(f64(encoder_kl(enc, Out(torch.ones(2, 4), zeros))), [2.0, 2.0], rtol=1e-6)
    logσ = torch.full((2, 4), math.log(2.0))
    per_dim = 0.5 * (4 - 1 - 2 * math.log(2))
    np.testing.assert_allclose(f64(encoder_kl(enc, Out(zeros, logσ))), [4 * per_dim] * 2, rtol=1e-6)
    # one sample gives a scalar
    assert encoder_kl(enc, Out(torch.ones(4), torch.zeros(4))).shape == ()


def test_linear_encoder_kl_equals_log_encoder_kl():
    lin = JointGaussianEncoder(3, 4, [3], ["relu"], ["identity", "softplus"])
    log = JointGaussianLogEncoder(3, 4, [3], ["relu"], "identity")
    μ = torch.randn(6, 4, dtype=torch.float64)
    logσ = torch.randn(6, 4, dtype=torch.float64)
    a = encoder_kl(lin, type(lin(torch.zeros(1, 3)))(μ, logσ.exp()))
    b = encoder_kl(log, type(log(torch.zeros(1, 3)))(μ, logσ))
    torch.testing.assert_close(a, b)


def _direct_logdensity(z, μ, logσ):
    z, μ, logσ = f64(z), f64(μ), f64(logσ)
    return (-0.5 * ((z - μ) ** 2 / np.exp(2 * logσ)) - logσ - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_encoder_logposterior_three_forms():
    enc = JointGaussianLogEncoder(784, 64, [256, 128], ["relu", "relu"], "identity")
    x = torch.rand(10, 784)
    out = enc(x)
    z = torch.randn(10, 64)
    lp = encoder_logposterior(z, enc, out)
    assert lp.shape == (10,)
    np.testing.assert_allclose(f64(lp), _direct_logdensity(z, out.μ, out.logσ), rtol=2e-5)
    one = enc(x[0])
    lp1 = encoder_logposterior(z[0], enc, one)
    assert lp1.shape == ()
    lp5 = encoder_logposterior(z[4], enc, out, 4)
    assert float(lp5.detach()) == pytest.approx(float(lp[4].detach()), rel=1e-6)


@fuzz(40)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                  elements=st.floats(-3, 3)),
       hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                  elements=st.floats(-2, 2)))
def test_kl_is_nonnegative_and_matches_closed_form(μ, logσ):
    if μ.shape != logσ.shape:
        logσ = np.resize(logσ, μ.shape)
    kl = encoders.gaussian_kl(μ, logσ)
    expected = 0.5 * (np.exp(2 * logσ) + μ**2 - 1 - 2 * logσ).sum(axis=1)
    np.testing.assert_allclose(kl, expected, rtol=1e-12, atol=1e-12)
    assert np.all(kl >= -1e-12)

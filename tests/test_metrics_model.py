"""Model metrics of autoencoder_toolkit.metrics on models with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit import infomaxvaes
from autoencoder_toolkit.layers import Chain, Dense
from autoencoder_toolkit.metrics import (ELBOTerms, elbo_terms, encode_data, evaluate_model, model_active_units,
                                         model_active_units_sampled, mutual_info_estimate)

from .conftest import fixed_encoder

EPS = float(np.finfo(np.float32).eps)


def plus_minus(a: float, n: int) -> np.ndarray:
    """``n`` values alternating ``+a, -a``: mean 0, population variance exactly ``a**2``."""
    return a * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)



def half_decoder(latent: int, d: int) -> aet.BernoulliDecoder:
    """A Bernoulli decoder that outputs p = 1/2 for every element, whatever z."""
    return aet.BernoulliDecoder(Chain(Dense.from_weights(np.zeros((d, latent), np.float32),
                                                         np.zeros(d, np.float32), "sigmoid")))


def critic(d: int, latent: int, w: np.ndarray, b: float) -> infomaxvaes.MutualInfoChain:
    """``g(x, z) = w · [x; z] + b`` (identity data and latent layers, one linear unit)."""
    data = Dense.from_weights(np.eye(d, dtype=np.float32), np.zeros(d, np.float32))
    lat = Dense.from_weights(np.eye(latent, dtype=np.float32), np.zeros(latent, np.float32))
    mlp = Chain(Dense.from_weights(np.asarray(w, np.float32).reshape(1, -1), np.array([b], np.float32)))
    return infomaxvaes.MutualInfoChain(data, lat, mlp)


# ---------------------------------------------------------------------------
# ELBO terms
# ---------------------------------------------------------------------------


def test_elbo_terms_known_answer() -> None:
    d, latent, n = 5, 3, 37
    m = np.array([1.0, -0.5, 0.0])
    s = np.array([0.5, 1.0, 2.0])
    enc = fixed_encoder(np.zeros((latent, d)), m, np.log(s))
    vae = enc * half_decoder(latent, d)
    x = np.random.default_rng(0).uniform(0, 1, (n, d)).astype(np.float32)
    terms = elbo_terms(vae, x, batch_size=8, seed=3)
    assert isinstance(terms, ELBOTerms)
    # log p(x|z) = Σ_d [x log(½+ε) + (1-x) log(½+ε)] = D·log(½+ε), whatever x and z
    assert terms.reconstruction == pytest.approx(d * math.log(0.5 + EPS), rel=1e-6)
    kl = 0.5 * float(np.sum(s**2 + m**2 - 1 - 2 * np.log(s)))
    assert terms.kl == pytest.approx(kl, rel=1e-6)
    assert terms.elbo == pytest.approx(terms.reconstruction - terms.kl, rel=1e-12)
    assert terms.n == n


def test_elbo_terms_do_not_depend_on_batch_size() -> None:
    torch.manual_seed(0)
    vae = aet.JointGaussianLogEncoder(6, 2, [8], ["relu"], "identity") * \
        aet.SimpleGaussianDecoder(6, 2, [8], ["relu"], "identity")
    with torch.no_grad():  # σ ≈ 0: z = μ(x), so the result does not depend on the noise draws
        vae.encoder.logσ.weight.zero_()
        vae.encoder.logσ.bias.fill_(-30.0)
    x = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    a = elbo_terms(vae, x, batch_size=7, seed=5)
    b = elbo_terms(vae, x, batch_size=1000, seed=6)
    assert a.reconstruction == pytest.approx(b.reconstruction, rel=1e-5)
    assert a.kl == pytest.approx(b.kl, rel=1e-5)


# ---------------------------------------------------------------------------
# MI estimate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1.0, 0.5, -2.0])
def test_mutual_info_constant_critic(c: float) -> None:
    d, latent = 4, 2
    enc = fixed_encoder(np.ones((latent, d)), np.zeros(latent), np.zeros(latent))
    model = infomaxvaes.InfoMaxVAE(enc * half_decoder(latent, d), critic(d, latent, np.zeros(d + latent), c))
    x = np.random.default_rng(0).uniform(0, 1, (20, d)).astype(np.float32)
    est = mutual_info_estimate(model, x, n_shuffles=5, batch_size=6)
    expected = c - math.exp(c - 1)
    np.testing.assert_allclose(est.values, np.full(5, expected), rtol=1e-6, atol=1e-7)
    assert est.mean == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert est.std == pytest.approx(0.0, abs=1e-7)
    assert est.joint == pytest.approx(c, rel=1e-6)


def test_mutual_info_constant_codes() -> None:
    # σ ≈ 0 and μ constant: every shuffle pairs x_n with the same code, so
    # Î = mean(a·x₀ + b·z) − mean(exp(a·x₀ + b·z − 1)) exactly.
    d, latent, a, b, mu = 3, 1, 0.7, -1.3, 0.4
    enc = fixed_encoder(np.zeros((latent, d)), np.array([mu]), np.array([-30.0]))
    w = np.array([a, 0.0, 0.0, b])
    model = infomaxvaes.InfoMaxVAE(enc * half_decoder(latent, d), critic(d, latent, w, 0.0))
    x = np.random.default_rng(2).normal(size=(33, d)).astype(np.float32)
    est = mutual_info_estimate(model, x, n_shuffles=4, batch_size=10)
    g = a * x[:, 0].astype(np.float64) + b * mu
    expected = g.mean() - np.exp(g - 1).mean()
    np.testing.assert_allclose(est.values, expected, rtol=1e-5)
    assert est.std == pytest.approx(0.0, abs=1e-6)


def test_mutual_info_separable_critic_expectation() -> None:
    # g(x, z) = a·x₀ + b·z₀ with z₀ = x₀ (σ ≈ 0). The joint term is (a + b)·mean(x₀); over
    # uniform permutations E[mean exp(a·x₀ + b·z₀∘π − 1)] = e⁻¹·mean(e^{a·x₀})·mean(e^{b·x₀}).
    d, latent, a, b = 2, 1, 0.8, 0.5
    enc = fixed_encoder(np.array([[1.0, 0.0]]), np.zeros(1), np.array([-30.0]))
    model = infomaxvaes.InfoMaxVAE(enc * half_decoder(latent, d), critic(d, latent, np.array([a, 0.0, b]), 0.0))
    x = np.random.default_rng(4).normal(size=(64, d)).astype(np.float32)
    est = mutual_info_estimate(model, x, n_shuffles=400, batch_size=25, rng=torch.Generator().manual_seed(0))
    x0 = x[:, 0].astype(np.float64)
    assert est.joint == pytest.approx((a + b) * x0.mean(), rel=1e-5, abs=1e-6)
    n = x0.size
    # E over permutations: pairs with π(n) = n occur with probability 1/N
    e_marg = math.exp(-1) * ((np.exp(a * x0).sum() * np.exp(b * x0).sum() - np.exp((a + b) * x0).sum())
                             / (n * (n - 1)) * (n - 1) / n + np.exp((a + b) * x0).mean() / n)
    expected = est.joint - e_marg
    assert est.std > 0.0  # the shuffles differ
    assert abs(est.mean - expected) < 4 * est.std / math.sqrt(400)


def test_mutual_info_needs_a_critic_and_two_samples() -> None:
    vae = aet.JointGaussianLogEncoder(3, 2, [4], ["relu"], "identity") * \
        aet.BernoulliDecoder(3, 2, [4], ["relu"], "sigmoid")
    with pytest.raises(TypeError, match="InfoMaxVAE"):
        mutual_info_estimate(vae, np.zeros((5, 3), np.float32))
    model = infomaxvaes.InfoMaxVAE(vae, infomaxvaes.MutualInfoChain(3, 2, [4], ["relu"], "identity"))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mutual_info_estimate(model, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="n_shuffles"):
        mutual_info_estimate(model, np.zeros((4, 3), np.float32), n_shuffles=0)


# ---------------------------------------------------------------------------
# Active units
# ---------------------------------------------------------------------------


def _au_data(n: int = 64) -> np.ndarray:
    # columns with population variances 1/64, 1/256 and 4 (exact in float32)
    return np.stack([plus_minus(0.125, n), plus_minus(0.0625, n), plus_minus(2.0, n) + 1.0], axis=1).astype(np.float32)


def test_model_active_units_from_means() -> None:
    x = _au_data()
    w = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0.0], [0, 0, 1.0]])  # μ = (x₀, x₁, 0, x₂)
    enc = fixed_encoder(w, np.zeros(4), np.zeros(4))
    res = model_active_units(enc * half_decoder(4, 3), x, batch_size=10)
    np.testing.assert_allclose(res.variances, [1 / 64, 1 / 256, 0.0, 4.0], rtol=1e-6, atol=1e-12)
    assert res.count == 2 and res.threshold == 0.01


def test_model_active_units_sampled_with_tiny_sigma_equals_means() -> None:
    x = _au_data()
    w = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    enc = fixed_encoder(w, np.zeros(2), np.full(2, -30.0))
    res = model_active_units_sampled(enc * half_decoder(2, 3), x, batch_size=16)
    np.testing.assert_allclose(res.variances, [1 / 64, 4.0], rtol=1e-5)
    assert res.count == 1 and res.threshold == 0.05  # 1/64 < 0.05 <= 4


def test_model_active_units_sampled_noise_floor() -> None:
    # A collapsed unit (μ = 0, σ = 1): the mean of S draws has variance 1/S across inputs,
    # the noise floor of the authors' metric (1/20 = 0.05, their threshold).
    n, s = 4000, 20
    enc = fixed_encoder(np.zeros((1, 2)), np.zeros(1), np.zeros(1))
    x = np.zeros((n, 2), np.float32)
    res = model_active_units_sampled(enc * half_decoder(1, 2), x, n_draws=s, batch_size=1000)
    # Var of a sample variance of N normals with variance 1/S: 2/(S²(N-1))
    assert abs(res.variances[0] - 1 / s) < 4 * math.sqrt(2 / (s**2 * (n - 1)))


# ---------------------------------------------------------------------------
# Encoding, accuracy and the full report
# ---------------------------------------------------------------------------


def test_encode_data_matches_the_encoder_and_reads_memory_maps(tmp_path) -> None:
    torch.manual_seed(0)
    enc = aet.JointGaussianLogEncoder(4, 3, [6], ["relu"], "identity")
    x = np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    codes = encode_data(enc, mm, batch_size=5)
    with torch.no_grad():
        out = enc(torch.from_numpy(x))
    np.testing.assert_allclose(codes.mu, out.μ.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(codes.sigma, torch.exp(out.logσ).numpy(), rtol=1e-6)
    assert codes.mu.dtype == np.float32 and codes.mu.shape == (23, 3)


def test_evaluate_model_perfect_classes_and_vae_without_critic() -> None:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat([0, 1, 2], 30), np.repeat([0, 1, 2], 10)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    x_train = (centres[y_train] + 0.1 * rng.normal(size=(90, 2))).astype(np.float32)
    x_test = (centres[y_test] + 0.1 * rng.normal(size=(30, 2))).astype(np.float32)
    enc = fixed_encoder(np.eye(2), np.zeros(2), np.full(2, -3.0))  # μ = x
    vae = enc * half_decoder(2, 2)
    report = evaluate_model(vae, x_test, y_test, x_train=x_train, labels_train=y_train, batch_size=7)
    assert report.accuracy == 1.0
    assert "trained on 90" in report.accuracy_protocol
    assert report.mutual_info is None
    assert report.active_units.count == 2 and report.n == 30 and report.latent_dim == 2
    d = report.to_dict()
    assert d["accuracy"] == 1.0 and d["mutual_info"] is None and d["active_units"]["count"] == 2
    # without training data: a 70/30 split of the evaluated data
    assert evaluate_model(vae, x_test, y_test).accuracy == 1.0
    # with a critic: the MI estimate is there, with 10 shuffles by default
    model = infomaxvaes.InfoMaxVAE(vae, critic(2, 2, np.zeros(4), 1.0))
    rep = evaluate_model(model, x_test)
    assert rep.accuracy is None and rep.mutual_info.values.shape == (10,)
    assert rep.mutual_info.mean == pytest.approx(0.0, abs=1e-6)

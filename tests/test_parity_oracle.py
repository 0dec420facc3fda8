"""Checks of the float64 parity oracle (``parity/oracle.py``), its Julia random streams
(``parity/julia_streams.py``) and the case format.

Expected values come from closed forms (reference semantics, section 10) or
from independent recomputation, never from earlier oracle output.  Every
gradient of the oracle is compared with central finite differences.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity import cases_io as C
from parity import julia_streams as S
from parity import oracle as O

LOG2PI = math.log(2.0 * math.pi)
EPS = 2.0 ** -23


# ---------------------------------------------------------------------------
# Small models
# ---------------------------------------------------------------------------

D, L, B = 4, 2, 6
ELEMENTWISE = ["identity", "relu", "tanh", "sigmoid", "softplus", "elu", "gelu", "swish",
               "leakyrelu"]


def _chain(rng, sizes, acts):
    return O.make_mlp_chain(rng, sizes, acts, bias_scale=0.3)


def _encoder(rng, d=D, hidden=(4, 3), acts=("relu", "tanh"), kind="JointGaussianLogEncoder"):
    second = "logsigma" if kind == "JointGaussianLogEncoder" else "sigma"
    return {"type": kind,
            "encoder": _chain(rng, [d, *hidden], list(acts)),
            "mu": _chain(rng, [hidden[-1], L], ["identity"])[0],
            second: _chain(rng, [hidden[-1], L], ["softplus" if second == "sigma" else "identity"])[0]}


def _decoder(rng, kind, d=D):
    if kind == "SimpleGaussianDecoder":
        return {"type": kind, "decoder": _chain(rng, [L, 3, 4, d], ["elu", "gelu", "identity"])}
    if kind == "BernoulliDecoder":
        return {"type": kind, "decoder": _chain(rng, [L, 3, d], ["swish", "sigmoid"])}
    if kind == "CategoricalDecoder":
        return {"type": kind, "decoder": _chain(rng, [L, 3, d], ["leakyrelu", "softmax"])}
    if kind in ("JointGaussianLogDecoder", "JointGaussianDecoder"):
        second = "logsigma" if kind == "JointGaussianLogDecoder" else "sigma"
        return {"type": kind, "decoder": _chain(rng, [L, 3, 4], ["relu", "tanh"]),
                "mu": _chain(rng, [4, d], ["identity"])[0],
                second: _chain(rng, [4, d], ["identity" if second == "logsigma" else "softplus"])[0]}
    second = "logsigma" if kind == "SplitGaussianLogDecoder" else "sigma"
    return {"type": kind, "mu": _chain(rng, [L, 3, d], ["softplus", "identity"]),
            second: _chain(rng, [L, 3, d], ["tanh", "identity" if second == "logsigma" else "softplus"])}


def _mi(rng, d=D):
    return {"type": "MutualInfoChain",
            "data": _chain(rng, [d, d], ["identity"])[0],
            "latent": _chain(rng, [L, L], ["identity"])[0],
            "mlp": _chain(rng, [d + L, 4, 3, 1], ["relu", "tanh", "identity"])}


def _data(rng, kind, b=B, d=D):
    if kind == "BernoulliDecoder":
        return rng.uniform(0.0, 1.0, size=(b, d))
    if kind == "CategoricalDecoder":
        return np.eye(d)[rng.integers(0, d, size=b)]
    return rng.standard_normal((b, d))


DECODERS = ["SimpleGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder",
            "JointGaussianLogDecoder", "JointGaussianDecoder", "SplitGaussianLogDecoder",
            "SplitGaussianDecoder"]


def _setup(seed, kind="JointGaussianLogDecoder"):
    rng = np.random.default_rng(seed)
    vae = {"encoder": _encoder(rng), "decoder": _decoder(rng, kind)}
    mi = _mi(rng)
    x = _data(rng, kind)
    noise = rng.standard_normal((B, L))
    perm = rng.permutation(B)
    return rng, vae, mi, x, noise, perm


def _fd_grad(fn, tree, h=1e-6):
    """Central finite differences of ``fn(tree)`` w.r.t. every parameter entry."""
    base = O.flat_params(tree)
    out = {}
    for path, arr in base.items():
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus = dict(base)
            minus = dict(base)
            a = arr.copy()
            a[idx] += h
            plus[path] = a
            a = arr.copy()
            a[idx] -= h
            minus[path] = a
            g[idx] = (fn(O.with_params(tree, plus)) - fn(O.with_params(tree, minus))) / (2 * h)
        out[path] = g
    return out


def _assert_grads_close(analytic, numeric, rtol=1e-5, atol=1e-7):
    assert set(analytic) == set(numeric)
    for k in numeric:
        np.testing.assert_allclose(analytic[k], numeric[k], rtol=rtol, atol=atol, err_msg=k)


# ---------------------------------------------------------------------------
# Layout and layers
# ---------------------------------------------------------------------------

def test_layout_helpers_share_memory_order():
    x = np.arange(24.0).reshape(2, 3, 4)
    xj = O.to_julia_layout(x)
    assert xj.shape == (4, 3, 2)
    assert xj[1, 2, 0] == x[0, 2, 1]
    np.testing.assert_array_equal(np.ravel(x, order="C"), np.ravel(xj, order="F"))
    np.testing.assert_array_equal(O.from_julia_layout(xj), x)
    np.testing.assert_array_equal(O.perm_to_julia([2, 0, 1]), [3, 1, 2])
    np.testing.assert_array_equal(O.perm_from_julia([3, 1, 2]), [2, 0, 1])


def test_flatten_matches_column_major_reshape_of_julia_array():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3, 4))  # (B, C, H, W)
    xj = O.to_julia_layout(x)  # (W, H, C, B)
    flat_j = np.reshape(xj, (4 * 3 * 2, 5), order="F")  # Julia reshape(x, :, B)
    np.testing.assert_array_equal(O.flatten(x), O.from_julia_layout(flat_j))
    m = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(O.flatten(m), m)
    assert O.flatten(np.arange(4.0)).shape == (4, 1)  # Julia: a 1 x n matrix


def test_dense_by_hand():
    layer = O.dense_layer([[1.0, 2.0], [3.0, -4.0]], [1.0, -1.0], "relu")
    np.testing.assert_array_equal(O.dense(layer, np.array([1.0, 1.0])), [4.0, 0.0])
    np.testing.assert_array_equal(O.dense(layer, np.array([[1.0, 1.0], [0.0, -1.0]])),
                                  [[4.0, 0.0], [0.0, 3.0]])
    with pytest.raises(O.ReferenceRaises) as err:
        O.dense(layer, np.ones(3))
    assert err.value.exception == "DimensionMismatch"


def test_activation_values_by_hand():
    e = math.e
    cases = {
        "identity": (-1.5, -1.5),
        "relu": (-1.0, 0.0),
        "tanh": (0.5, math.tanh(0.5)),
        "sigmoid": (0.0, 0.5),
        "softplus": (0.0, math.log(2.0)),
        "elu": (-1.0, 1.0 / e - 1.0),
        "gelu": (1.0, 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (1.0 + 0.044715)))),
        "swish": (1.0, 1.0 / (1.0 + 1.0 / e)),
        "silu": (1.0, 1.0 / (1.0 + 1.0 / e)),
        "leakyrelu": (-1.0, -0.01),
    }
    for name, (x, y) in cases.items():
        assert O.activation(name, np.array(x)) == pytest.approx(y, rel=1e-15, abs=1e-15), name
    # softplus keeps precision far from zero (NNlib's form)
    assert O.activation("softplus", np.array(40.0)) == pytest.approx(40.0 + math.exp(-40.0), rel=1e-15)
    assert O.activation("softplus", np.array(-40.0)) == pytest.approx(math.exp(-40.0), rel=1e-12)
    sm = O.activation("softmax", np.array([[0.0, math.log(3.0)], [1.0, 1.0]]))
    np.testing.assert_allclose(sm, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_derivatives_match_finite_differences(name):
    x = np.array([-2.3, -0.7, -0.1, 0.2, 0.9, 3.1])
    h = 1e-6
    fd = (O.activation(name, x + h) - O.activation(name, x - h)) / (2 * h)
    np.testing.assert_allclose(O.activation_grad(name, x), fd, rtol=1e-7, atol=1e-9)


def test_chain_gradients_with_flatten_and_softmax():
    rng = np.random.default_rng(3)
    chain = [O.flatten_layer()] + _chain(rng, [6, 5, 4, 3], ["gelu", "elu", "softmax"])
    x = rng.standard_normal((4, 1, 2, 3))
    w = rng.standard_normal((4, 3))

    def fn(tree):
        return O._sum(O._mul(O.apply_module(tree, x), w))

    value, grads = O.value_and_grad(fn, chain)
    _assert_grads_close(grads, _fd_grad(lambda t: float(O.as_array(fn(t))), chain))


# ---------------------------------------------------------------------------
# Prior, posterior, KL (section 10)
# ---------------------------------------------------------------------------

def test_spherical_logprior_closed_form():
    assert O.spherical_logprior(np.zeros(3)) == pytest.approx(-1.5 * LOG2PI, rel=1e-15)
    z = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(O.spherical_logprior(z), [-0.5 - LOG2PI, -2.0 - LOG2PI, -LOG2PI],
                               rtol=1e-15)


def test_encoder_kl_closed_forms():
    zeros = np.zeros((B, L))
    np.testing.assert_array_equal(O.encoder_kl({"mu": zeros, "logsigma": zeros}), np.zeros(B))
    np.testing.assert_allclose(O.encoder_kl({"mu": np.ones((B, L)), "logsigma": zeros}),
                               np.full(B, 0.5 * L), rtol=1e-15)
    ls = np.full((B, L), math.log(2.0))
    np.testing.assert_allclose(O.encoder_kl({"mu": zeros, "logsigma": ls}),
                               np.full(B, L * 0.5 * (4.0 - 1.0 - 2.0 * math.log(2.0))), rtol=1e-14)
    single = O.encoder_kl({"mu": np.ones(L), "logsigma": np.zeros(L)})
    assert single.shape == (1,) and single[0] == pytest.approx(0.5 * L)  # D13
    with pytest.raises(O.ReferenceRaises) as err:
        O.encoder_kl({"mu": zeros, "sigma": zeros})
    assert err.value.defect == "D8"


def test_encoder_logposterior_forms():
    mu = np.array([[0.0, 1.0], [2.0, -1.0]])
    ls = np.array([[0.0, math.log(2.0)], [0.0, 0.0]])
    z = np.array([[1.0, 1.0], [2.0, -1.0]])
    # sample 0: -0.5*(1/1 + 0/4) - log 2 - log2pi ; sample 1: -log2pi
    expected = np.array([-0.5 - math.log(2.0) - LOG2PI, -LOG2PI])
    np.testing.assert_allclose(O.encoder_logposterior(z, {"mu": mu, "logsigma": ls}), expected,
                               rtol=1e-15)
    for i in range(2):
        assert O.encoder_logposterior(z[i], {"mu": mu[i], "logsigma": ls[i]}) == \
            pytest.approx(expected[i], rel=1e-15)
        assert O.encoder_logposterior(z[i], {"mu": mu, "logsigma": ls}, index=i) == \
            pytest.approx(expected[i], rel=1e-15)
    with pytest.raises(O.ReferenceRaises):
        O.encoder_logposterior(np.zeros(3), {"mu": mu[0], "logsigma": ls[0]})


def test_encoder_drops_singleton_axes():
    rng = np.random.default_rng(1)
    enc = _encoder(rng)
    out = O.encoder_forward(enc, rng.standard_normal((1, D)))
    assert out["mu"].shape == (L,) and out["logsigma"].shape == (L,)
    assert O.encoder_kl(out).shape == (1,)
    assert O.encoder_forward(enc, rng.standard_normal((3, D)))["mu"].shape == (3, L)


# ---------------------------------------------------------------------------
# Decoder log-likelihoods (section 10)
# ---------------------------------------------------------------------------

def test_gaussian_loglikelihoods_at_the_mean():
    mu = np.random.default_rng(2).standard_normal((B, D))
    z = np.zeros((B, L))
    value = -0.5 * D * LOG2PI
    for kind, out in [("JointGaussianLogDecoder", {"mu": mu, "logsigma": np.zeros_like(mu)}),
                      ("SplitGaussianLogDecoder", {"mu": mu, "logsigma": np.zeros_like(mu)}),
                      ("SimpleGaussianDecoder", {"mu": mu}),
                      ("JointGaussianDecoder", {"mu": mu, "sigma": np.ones_like(mu)}),
                      ("SplitGaussianDecoder", {"mu": mu, "sigma": np.ones_like(mu)})]:
        np.testing.assert_allclose(O.decoder_loglikelihood(mu, z, kind, out), np.full(B, value),
                                   rtol=1e-15, err_msg=kind)
        single = {k: v[0] for k, v in out.items()}
        assert O.decoder_loglikelihood(mu[0], z[0], kind, single) == pytest.approx(value, rel=1e-15)


def test_simple_gaussian_sigma_keyword():
    mu = np.zeros((2, D))
    x = mu + 2.0
    expected = -0.5 * D * 1.0 - 0.5 * D * (2.0 * math.log(2.0) + LOG2PI)
    np.testing.assert_allclose(O.decoder_loglikelihood(x, np.zeros((2, L)), "SimpleGaussianDecoder",
                                                       {"mu": mu}, sigma=2.0),
                               [expected, expected], rtol=1e-15)
    with pytest.raises(O.ReferenceRaises):
        O.decoder_loglikelihood(x, np.zeros((2, L)), "JointGaussianLogDecoder",
                                {"mu": mu, "logsigma": mu}, sigma=2.0)


def test_bernoulli_and_categorical_closed_forms():
    z = np.zeros((2, L))
    ones = np.ones((2, D))
    np.testing.assert_allclose(O.decoder_loglikelihood(ones, z, "BernoulliDecoder", {"p": ones}),
                               np.full(2, D * math.log1p(EPS)), rtol=1e-12)
    half = np.full((2, D), 0.5)
    np.testing.assert_allclose(O.decoder_loglikelihood(half, z, "BernoulliDecoder", {"p": half}),
                               np.full(2, D * 2 * 0.5 * math.log(0.5 + EPS)), rtol=1e-15)
    # x = 1, p = 0: log(eps) from the first term; the second term is exactly 0
    zeros = np.zeros((2, D))
    np.testing.assert_allclose(O.decoder_loglikelihood(ones, z, "BernoulliDecoder", {"p": zeros}),
                               np.full(2, D * -23.0 * math.log(2.0)), rtol=1e-15)
    # categorical: one-hot x, uniform p
    x = np.eye(D)[[1, 3]]
    p = np.full((2, D), 1.0 / D)
    np.testing.assert_allclose(O.decoder_loglikelihood(x, z, "CategoricalDecoder", {"p": p}),
                               np.full(2, math.log(1.0 / D + EPS)), rtol=1e-15)
    assert O.decoder_loglikelihood(x[0], z[0], "CategoricalDecoder", {"p": p[0]}, dims=1) == \
        pytest.approx(math.log(1.0 / D + EPS), rel=1e-15)
    with pytest.raises(O.ReferenceRaises) as err:
        O.decoder_loglikelihood(x, z, "CategoricalDecoder", {"p": p}, dims=1)
    assert err.value.defect == "D18"


@pytest.mark.parametrize("kind", DECODERS)
def test_batch_single_and_index_forms_agree(kind):
    rng = np.random.default_rng(5)
    dec = _decoder(rng, kind)
    x = _data(rng, kind)
    z = rng.standard_normal((B, L))
    out = O.decoder_forward(dec, z)
    batch = O.decoder_loglikelihood(x, z, dec, out)
    assert batch.shape == (B,)
    for i in range(B):
        single = O.decoder_loglikelihood(x[i], z[i], dec, {k: v[i] for k, v in out.items()})
        indexed = O.decoder_loglikelihood(x, z[i], dec, out, index=i)
        assert np.ndim(single) == 0
        assert single == pytest.approx(batch[i], rel=1e-13)
        assert indexed == pytest.approx(batch[i], rel=1e-13)
    # a batch of one with a squeezed output: (1, D) - (D,) is allowed
    single_out = {k: v[0] for k, v in out.items()}
    if kind not in ("BernoulliDecoder", "CategoricalDecoder"):
        assert O.decoder_loglikelihood(x[:1], z[0], dec, single_out) == pytest.approx(batch[0], rel=1e-13)


def test_strict_shapes_raise_like_the_reference():
    mu = np.zeros((3, D))
    with pytest.raises(O.ReferenceRaises) as err:
        O.decoder_loglikelihood(np.zeros((3, D + 1)), np.zeros((3, L)), "SimpleGaussianDecoder",
                                {"mu": mu})
    assert err.value.exception == "DimensionMismatch"
    with pytest.raises(O.ReferenceRaises) as err:
        O.decoder_loglikelihood(np.zeros((3, D)), np.zeros((3, L)), "JointGaussianDecoder",
                                {"mu": mu, "sigma": -np.ones((3, D))})
    assert err.value.exception == "DomainError"


# ---------------------------------------------------------------------------
# Sampling, shuffling, critic
# ---------------------------------------------------------------------------

def test_reparameterize_closed_forms():
    mu = np.array([[0.5, 0.2], [-1.0, 3.0]])
    noise = np.array([[1.0, -2.0], [0.5, 0.0]])
    np.testing.assert_array_equal(O.reparameterize(mu, np.full_like(mu, -np.inf), noise), mu)
    np.testing.assert_array_equal(O.reparameterize(mu, np.zeros_like(mu), noise, log=False), mu)
    np.testing.assert_allclose(O.reparameterize(mu, np.log(np.full_like(mu, 2.0)), noise),
                               mu + 2.0 * noise, rtol=1e-15)
    with pytest.raises(ValueError):
        O.reparameterize(mu, mu, noise[:, :1])


def test_shuffle_latent_permutes_rows():
    z = np.arange(10.0).reshape(5, 2)
    perm = np.array([3, 0, 4, 1, 2])
    zs = O.shuffle_latent(z, perm)
    assert zs.shape == z.shape
    for j in range(5):
        np.testing.assert_array_equal(zs[j], z[perm[j]])
    assert sorted(map(tuple, zs)) == sorted(map(tuple, z))
    with pytest.raises(O.ReferenceRaises) as err:
        O.shuffle_latent(z[0], np.array([1, 0]))
    assert err.value.defect == "D9"
    with pytest.raises(O.ReferenceRaises) as err:
        O.shuffle_latent(z, perm, seed=1)
    assert err.value.defect == "D1"
    with pytest.raises(ValueError):
        O.shuffle_latent(z, np.array([0, 0, 1, 2, 3]))


def test_linear_critic_by_hand():
    rng = np.random.default_rng(7)
    wd, bd = rng.standard_normal((D, D)), rng.standard_normal(D)
    wl, bl = rng.standard_normal((L, L)), rng.standard_normal(L)
    wm, bm = rng.standard_normal((1, D + L)), rng.standard_normal(1)
    mi = {"data": O.dense_layer(wd, bd), "latent": O.dense_layer(wl, bl),
          "mlp": [O.dense_layer(wm, bm)]}
    x, z = rng.standard_normal((B, D)), rng.standard_normal((B, L))
    expected = np.array([wm[0, :D] @ (wd @ x[b] + bd) + wm[0, D:] @ (wl @ z[b] + bl) + bm[0]
                         for b in range(B)])
    np.testing.assert_allclose(O.mi_forward(mi, x, z), expected, rtol=1e-13)


@pytest.mark.parametrize("c", [0.0, 1.0, 2.0, -0.5])
def test_constant_critic_gives_c_minus_exp_c_minus_1(c):
    rng = np.random.default_rng(8)
    mi = {"data": O.dense_layer(rng.standard_normal((D, D))),
          "latent": O.dense_layer(rng.standard_normal((L, L))),
          "mlp": [O.dense_layer(np.zeros((3, D + L)), rng.standard_normal(3), "relu"),
                  O.dense_layer(np.zeros((1, 3)), [c])]}
    x, z = rng.standard_normal((B, D)), rng.standard_normal((B, L))
    value = O.variational_mutual_info(mi, x, z, z[::-1])
    assert value == pytest.approx(c - math.exp(c - 1.0), rel=1e-14, abs=1e-15)
    if c == 1.0:
        assert value == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------
# Losses and their gradients
# ---------------------------------------------------------------------------

def _terms_by_hand(vae, mi, x_in, x_out, noise, perm):
    """The loss pieces recomputed from the public building blocks."""
    vo = O.vae_forward(vae, x_in, noise, latent=True)
    ll = float(np.mean(O.decoder_loglikelihood(x_out, vo["z"], vae["decoder"], vo["decoder"])))
    kl = float(np.mean(O.encoder_kl(vo["encoder"])))
    g = O.mi_forward(mi, x_in, vo["z"])
    gs = O.mi_forward(mi, x_in, vo["z"][perm])
    info = float(np.mean(g) - np.mean(np.exp(gs - 1.0)))
    return ll, kl, info


@pytest.mark.parametrize("kind", DECODERS)
def test_infomaxloss_value_and_terms(kind):
    _, vae, mi, x, noise, perm = _setup(11, kind)
    beta, alpha = 0.7, 1.9
    ll, kl, info = _terms_by_hand(vae, mi, x, x, noise, perm)
    terms = O.infomaxloss(vae, mi, x, noise=noise, perm=perm, beta=beta, alpha=alpha,
                          return_terms=True)
    assert terms["loglikelihood"] == pytest.approx(ll, rel=1e-13)
    assert terms["kl"] == pytest.approx(kl, rel=1e-13)
    assert terms["mutual_info"] == pytest.approx(info, rel=1e-12, abs=1e-14)
    assert terms["loss"] == pytest.approx(-ll + beta * kl - alpha * info, rel=1e-13)
    assert O.miloss(vae, mi, x, noise=noise, perm=perm) == pytest.approx(-info, rel=1e-12, abs=1e-14)
    assert O.vae_loss(vae, x, noise=noise, beta=beta) == pytest.approx(-ll + beta * kl, rel=1e-13)


def test_infomaxloss_two_inputs_uses_x_in_for_the_critic():
    rng, vae, mi, x, noise, perm = _setup(12, "SimpleGaussianDecoder")
    x_out = rng.standard_normal(x.shape)
    ll, kl, info = _terms_by_hand(vae, mi, x, x_out, noise, perm)
    assert O.infomaxloss(vae, mi, x, x_out, noise=noise, perm=perm) == \
        pytest.approx(-ll + kl - info, rel=1e-13)
    assert O.vae_loss(vae, x, x_out, noise=noise) == pytest.approx(-ll + kl, rel=1e-13)


@pytest.mark.parametrize("kind", DECODERS)
def test_infomaxloss_gradient_matches_finite_differences(kind):
    rng, vae, mi, x, noise, perm = _setup(21, kind)
    x_out = x if kind in ("BernoulliDecoder", "CategoricalDecoder") else rng.standard_normal(x.shape)
    beta, alpha = 0.8, 1.7
    z = O.vae_forward(vae, x, noise, latent=True)["z"]
    z_shuffle = z[perm]
    value, grads = O.infomaxloss_grad(vae, mi, x, x_out, noise=noise, perm=perm, beta=beta,
                                      alpha=alpha)
    assert value == pytest.approx(O.infomaxloss(vae, mi, x, x_out, noise=noise, perm=perm,
                                                beta=beta, alpha=alpha), rel=1e-15)
    fd = _fd_grad(lambda v: O.infomaxloss_fixed_shuffle(v, mi, x, x_out, noise=noise,
                                                        z_shuffle=z_shuffle, beta=beta,
                                                        alpha=alpha), vae)
    _assert_grads_close(grads, fd)


def test_shuffled_term_gives_no_vae_gradient():
    rng, vae, mi, x, noise, perm = _setup(22)
    z = O.vae_forward(vae, x, noise, latent=True)["z"]
    _, g_ref = O.infomaxloss_grad(vae, mi, x, noise=noise, perm=perm)
    v1, g1 = O.infomaxloss_fixed_shuffle_grad(vae, mi, x, noise=noise, z_shuffle=z[perm])
    v2, g2 = O.infomaxloss_fixed_shuffle_grad(vae, mi, x, noise=noise,
                                              z_shuffle=rng.standard_normal(z.shape))
    assert v1 != v2  # the shuffled term changes the value ...
    for k in g_ref:  # ... but not the gradient
        np.testing.assert_array_equal(g1[k], g_ref[k])
        np.testing.assert_allclose(g2[k], g_ref[k], rtol=1e-12, atol=1e-15)
    # and the full-differentiation gradient (shuffle not held fixed) is different
    fd_full = _fd_grad(lambda v: O.infomaxloss(v, mi, x, noise=noise, perm=perm), vae)
    assert any(not np.allclose(fd_full[k], g_ref[k], rtol=1e-4, atol=1e-6) for k in g_ref)


def test_fixed_shuffle_gradient_matches_finite_differences():
    rng, vae, mi, x, noise, _ = _setup(23, "SplitGaussianDecoder")
    z_shuffle = rng.standard_normal((B, L))
    _, grads = O.infomaxloss_fixed_shuffle_grad(vae, mi, x, noise=noise, z_shuffle=z_shuffle,
                                                beta=2.0, alpha=0.5)
    fd = _fd_grad(lambda v: O.infomaxloss_fixed_shuffle(v, mi, x, noise=noise, z_shuffle=z_shuffle,
                                                        beta=2.0, alpha=0.5), vae)
    _assert_grads_close(grads, fd)


def test_custom_reconstruction_and_kl_terms():
    _, vae, mi, x, noise, perm = _setup(24, "SimpleGaussianDecoder")

    def ll_sigma2(x_, z_, dec, out):  # the SimpleGaussian keyword sigma = 2
        return O.decoder_loglikelihood(x_, z_, dec, out, sigma=2.0)

    def kl_zero(enc, out):
        return O._scale(O.encoder_kl(out, enc), 0.0)

    vo = O.vae_forward(vae, x, noise, latent=True)
    ll = float(np.mean(O.decoder_loglikelihood(x, vo["z"], vae["decoder"], vo["decoder"], sigma=2.0)))
    _, _, info = _terms_by_hand(vae, mi, x, x, noise, perm)
    assert O.infomaxloss(vae, mi, x, noise=noise, perm=perm, reconstruction_loglikelihood=ll_sigma2,
                         kl_divergence=kl_zero) == pytest.approx(-ll - info, rel=1e-13)
    assert O.vae_loss(vae, x, noise=noise, reconstruction_loglikelihood=ll_sigma2,
                      kl_divergence=kl_zero) == pytest.approx(-ll, rel=1e-13)
    _, grads = O.vae_loss_grad(vae, x, noise=noise, reconstruction_loglikelihood=ll_sigma2,
                               kl_divergence=kl_zero)
    fd = _fd_grad(lambda v: O.vae_loss(v, x, noise=noise, reconstruction_loglikelihood=ll_sigma2,
                                       kl_divergence=kl_zero), vae)
    _assert_grads_close(grads, fd)


@pytest.mark.parametrize("kind", ["SimpleGaussianDecoder", "CategoricalDecoder"])
def test_miloss_gradient_matches_finite_differences(kind):
    _, vae, mi, x, noise, perm = _setup(31, kind)
    value, grads = O.miloss_grad(vae, mi, x, noise=noise, perm=perm)
    assert value == pytest.approx(O.miloss(vae, mi, x, noise=noise, perm=perm), rel=1e-15)
    _assert_grads_close(grads, _fd_grad(lambda m: O.miloss(vae, m, x, noise=noise, perm=perm), mi))


@pytest.mark.parametrize("kind", DECODERS)
def test_vae_loss_gradient_matches_finite_differences(kind):
    rng, vae, _, x, noise, _ = _setup(41, kind)
    x_out = None if kind in ("BernoulliDecoder", "CategoricalDecoder") else rng.standard_normal(x.shape)
    value, grads = O.vae_loss_grad(vae, x, x_out, noise=noise, beta=0.3)
    _assert_grads_close(grads, _fd_grad(lambda v: O.vae_loss(v, x, x_out, noise=noise, beta=0.3), vae))


def test_single_sample_vae_loss_gradient():
    rng = np.random.default_rng(44)
    vae = {"encoder": _encoder(rng), "decoder": _decoder(rng, "JointGaussianLogDecoder")}
    x, noise = rng.standard_normal(D), rng.standard_normal(L)
    _, grads = O.vae_loss_grad(vae, x, noise=noise)
    _assert_grads_close(grads, _fd_grad(lambda v: O.vae_loss(v, x, noise=noise), vae))


def test_n_samples_documented_intent():
    rng, vae, mi, x, noise, perm = _setup(51)
    assert O.infomaxloss_n_samples(vae, mi, x, noises=[noise], perms=[perm]) == \
        pytest.approx(O.infomaxloss(vae, mi, x, noise=noise, perm=perm), rel=1e-15)
    noises = [noise, rng.standard_normal(noise.shape), rng.standard_normal(noise.shape)]
    perms = [perm, rng.permutation(B), rng.permutation(B)]
    pieces = [_terms_by_hand(vae, mi, x, x, n, p) for n, p in zip(noises, perms)]
    beta, alpha = 1.3, 0.4
    expected = (-np.mean([p[0] for p in pieces]) + beta * pieces[0][1]
                - alpha * np.mean([p[2] for p in pieces]))
    assert O.infomaxloss_n_samples(vae, mi, x, noises=noises, perms=perms, beta=beta,
                                   alpha=alpha) == pytest.approx(expected, rel=1e-13)
    with pytest.raises(O.ReferenceRaises) as err:
        O.infomaxloss(vae, mi, x, noise=noise, perm=perm, n_samples=3)
    assert err.value.defect == "D3"
    # gradient: shuffled codes held fixed per sample
    zs = [O.vae_forward(vae, x, n, latent=True)["z"][p] for n, p in zip(noises, perms)]

    def fixed(v):
        loss = O._infomax_graph(v, mi, x, x, noises, [None] * 3, beta, alpha, z_shuffles=zs)[0]
        return float(O.as_array(loss))

    _, grads = O.infomaxloss_n_samples_grad(vae, mi, x, noises=noises, perms=perms, beta=beta,
                                            alpha=alpha)
    _assert_grads_close(grads, _fd_grad(fixed, vae))


def test_reference_error_paths():
    rng, vae, mi, x, noise, perm = _setup(61)
    with pytest.raises(O.ReferenceRaises) as err:
        O.infomaxloss(vae, mi, x, noise=noise, perm=perm, seed=3)
    assert err.value.defect == "D1"
    with pytest.raises(O.ReferenceRaises) as err:
        O.miloss(vae, mi, x, noise=noise, perm=perm, regularization=lambda o: 0.0)
    assert err.value.defect == "D4"
    with pytest.raises(O.ReferenceRaises) as err:
        O.vae_loss(vae, x, noise=noise, reg_function=lambda o: 0.0)
    assert err.value.defect == "D6"
    linear = {"encoder": _encoder(rng, kind="JointGaussianEncoder"), "decoder": vae["decoder"]}
    assert set(O.encoder_forward(linear["encoder"], x)) == {"mu", "sigma"}
    with pytest.raises(O.ReferenceRaises) as err:
        O.vae_forward(linear, x, noise)
    assert err.value.defect == "D8"
    with pytest.raises(O.ReferenceRaises) as err:
        O.variational_mutual_info_model(vae, mi, x[0], noise[0], np.array([0]))
    assert err.value.defect == "D9"
    # regularization in infomaxloss works in the reference (value only)
    base = O.infomaxloss(vae, mi, x, noise=noise, perm=perm)
    assert O.infomaxloss(vae, mi, x, noise=noise, perm=perm, regularization=lambda o: 2.0,
                         reg_strength=0.5) == pytest.approx(base + 1.0, rel=1e-15)


def test_infomaxvae_forward_outputs():
    _, vae, mi, x, noise, perm = _setup(62)
    dec = O.infomaxvae_forward(vae, mi, x, noise)
    res = O.infomaxvae_forward(vae, mi, x, noise, perm, latent=True)
    np.testing.assert_array_equal(dec["mu"], res["vae"]["decoder"]["mu"])
    enc = res["vae"]["encoder"]
    np.testing.assert_allclose(res["vae"]["z"], enc["mu"] + noise * np.exp(enc["logsigma"]),
                               rtol=1e-15)
    assert res["mi"] == pytest.approx(
        O.variational_mutual_info_model(vae, mi, x, noise, perm), rel=1e-15)


# ---------------------------------------------------------------------------
# Adam and training steps
# ---------------------------------------------------------------------------

def test_first_adam_step_moves_each_entry_by_eta():
    rng = np.random.default_rng(70)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    grads = {"w": rng.choice([-1.0, 1.0], (3, 2)) * rng.uniform(0.5, 5.0, (3, 2)),
             "b": np.array([2.0, -0.25, 1e3])}
    eta = 1e-2
    new, state = O.adam_update(params, grads, O.adam_init(params), eta=eta)
    for k in params:
        g = grads[k]
        # closed form of step 1: m_hat = g, v_hat = g^2
        np.testing.assert_allclose(new[k] - params[k], -eta * g / (np.abs(g) + 1e-8), rtol=1e-12)
        np.testing.assert_allclose(np.abs(new[k] - params[k]), eta, rtol=1e-7)
        np.testing.assert_allclose(state[k]["m"], 0.1 * g, rtol=1e-15)
        np.testing.assert_allclose(state[k]["v"], 0.001 * g * g, rtol=1e-15)
        assert state[k]["beta_pow"] == pytest.approx((0.81, 0.998001), rel=1e-15)
        assert state[k]["step"] == 1
    # a missing gradient leaves the parameter and its state alone
    kept, kept_state = O.adam_update(params, {"w": grads["w"]}, O.adam_init(params), eta=eta)
    np.testing.assert_array_equal(kept["b"], params["b"])
    assert kept_state["b"]["step"] == 0


def test_second_adam_step_closed_form():
    p = {"a": np.array([0.0])}
    g1, g2 = 3.0, -1.0
    eta = 1e-3
    p1, s1 = O.adam_update(p, {"a": np.array([g1])}, O.adam_init(p), eta=eta)
    p2, _ = O.adam_update(p1, {"a": np.array([g2])}, s1, eta=eta)
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2
    step2 = (m / (1 - 0.9 ** 2)) / (math.sqrt(v / (1 - 0.999 ** 2)) + 1e-8) * eta
    assert p2["a"][0] == pytest.approx(-eta * g1 / (abs(g1) + 1e-8) - step2, rel=1e-12)


def test_infomax_train_step_order():
    rng, vae, mi, x, noise, perm = _setup(80)
    noise_mi, perm_mi = rng.standard_normal(noise.shape), rng.permutation(B)
    eta, beta, alpha = 5e-3, 0.9, 1.4
    res = O.infomax_train_step(vae, mi, x, noise_vae=noise, perm_vae=perm, noise_mi=noise_mi,
                               perm_mi=perm_mi, eta=eta, beta=beta, alpha=alpha)
    # VAE step: loss before the update, one Adam step on the VAE gradient only
    assert res["loss_vae"] == pytest.approx(
        O.infomaxloss(vae, mi, x, noise=noise, perm=perm, beta=beta, alpha=alpha), rel=1e-15)
    _, g_vae = O.infomaxloss_grad(vae, mi, x, noise=noise, perm=perm, beta=beta, alpha=alpha)
    p0 = O.flat_params(vae)
    for k, g in g_vae.items():
        np.testing.assert_allclose(O.flat_params(res["vae"])[k], p0[k] - eta * g / (np.abs(g) + 1e-8),
                                   rtol=1e-12, atol=1e-15)
    # MI step: miloss with the UPDATED VAE and the second draws
    vae_new = res["vae"]
    assert res["loss_mi"] == pytest.approx(
        O.miloss(vae_new, mi, x, noise=noise_mi, perm=perm_mi), rel=1e-15)
    assert res["loss_mi"] != pytest.approx(O.miloss(vae, mi, x, noise=noise_mi, perm=perm_mi),
                                           rel=1e-12)
    _, g_mi = O.miloss_grad(vae_new, mi, x, noise=noise_mi, perm=perm_mi)
    m0 = O.flat_params(mi)
    for k, g in g_mi.items():
        np.testing.assert_allclose(O.flat_params(res["mi"])[k], m0[k] - eta * g / (np.abs(g) + 1e-8),
                                   rtol=1e-12, atol=1e-15)
    # the critic is untouched by the VAE step and the VAE by the MI step
    assert set(res["opt_state"]["vae"]) == set(p0)
    assert set(res["opt_state"]["mi"]) == set(m0)


def test_infomax_train_two_inputs_mi_step_uses_x_in():
    rng, vae, mi, x, noise, perm = _setup(81, "SimpleGaussianDecoder")
    x_out = rng.standard_normal(x.shape)
    noise_mi, perm_mi = rng.standard_normal(noise.shape), rng.permutation(B)
    res = O.infomax_train_step(vae, mi, x, x_out, noise_vae=noise, perm_vae=perm,
                               noise_mi=noise_mi, perm_mi=perm_mi)
    assert res["loss_vae"] == pytest.approx(O.infomaxloss(vae, mi, x, x_out, noise=noise, perm=perm),
                                            rel=1e-15)
    assert res["loss_mi"] == pytest.approx(O.miloss(res["vae"], mi, x, noise=noise_mi, perm=perm_mi),
                                           rel=1e-15)


def test_multi_step_training_chains_states():
    rng, vae, mi, x, noise, perm = _setup(82)
    draws = []
    for _ in range(2):
        draws += [rng.standard_normal(noise.shape), rng.permutation(B),
                  rng.standard_normal(noise.shape), rng.permutation(B)]
    res = O.infomax_train(vae, mi, x, draws=draws, eta=1e-2)
    one = O.infomax_train_step(vae, mi, x, noise_vae=draws[0], perm_vae=draws[1],
                               noise_mi=draws[2], perm_mi=draws[3], eta=1e-2)
    two = O.infomax_train_step(one["vae"], one["mi"], x, noise_vae=draws[4], perm_vae=draws[5],
                               noise_mi=draws[6], perm_mi=draws[7], opt_state=one["opt_state"],
                               eta=1e-2)
    assert res["loss_vae"] == [one["loss_vae"], two["loss_vae"]]
    assert res["loss_mi"] == [one["loss_mi"], two["loss_mi"]]
    for k, v in O.flat_params(two["mi"]).items():
        np.testing.assert_array_equal(O.flat_params(res["mi"])[k], v)
    assert all(st["step"] == 2 for st in res["opt_state"]["vae"].values())


def test_vae_train_step():
    _, vae, _, x, noise, _ = _setup(83, "BernoulliDecoder")
    res = O.vae_train_step(vae, x, noise=noise, eta=2e-3, beta=0.5)
    assert res["loss"] == pytest.approx(O.vae_loss(vae, x, noise=noise, beta=0.5), rel=1e-15)
    _, g = O.vae_loss_grad(vae, x, noise=noise, beta=0.5)
    p0 = O.flat_params(vae)
    for k in p0:
        np.testing.assert_allclose(O.flat_params(res["vae"])[k],
                                   p0[k] - 2e-3 * g[k] / (np.abs(g[k]) + 1e-8), rtol=1e-12, atol=1e-15)


def test_fused_step_gradients_match_finite_differences():
    rng, vae, mi, x, noise, perm = _setup(84, "BernoulliDecoder")
    beta, alpha = 0.7, 2.5
    res = O.infomax_train_fused_step(vae, mi, x, noise=noise, perm=perm, eta=1e-3,
                                     beta=beta, alpha=alpha)
    # the VAE's gradient: infomaxloss with the shuffled codes of the parameters before the
    # step held fixed (the shuffle is a constant), the critic fixed
    z0 = O.as_array(O.vae_forward(vae, x, noise, latent=True)["z"])
    numeric = _fd_grad(lambda v: O.infomaxloss_fixed_shuffle(v, mi, x, noise=noise,
                                                             z_shuffle=z0[perm], beta=beta,
                                                             alpha=alpha), vae)
    _assert_grads_close(res["grads"]["vae"], numeric)
    # the critic's gradient: miloss with the VAE before the step and the SAME draws
    numeric = _fd_grad(lambda m: O.miloss(vae, m, x, noise=noise, perm=perm), mi)
    _assert_grads_close(res["grads"]["mi"], numeric)
    assert res["loss_vae"] == pytest.approx(
        O.infomaxloss(vae, mi, x, noise=noise, perm=perm, beta=beta, alpha=alpha), rel=1e-15)
    assert res["loss_mi"] == pytest.approx(O.miloss(vae, mi, x, noise=noise, perm=perm), rel=1e-15)


def test_fused_step_updates_both_from_the_parameters_before_the_step():
    rng, vae, mi, x, noise, perm = _setup(85)
    eta = 4e-3
    res = O.infomax_train_fused_step(vae, mi, x, noise=noise, perm=perm, eta=eta)
    for tree, new, grads in ((vae, res["vae"], res["grads"]["vae"]),
                             (mi, res["mi"], res["grads"]["mi"])):
        before, after = O.flat_params(tree), O.flat_params(new)
        assert set(grads) == set(before)
        for k, g in grads.items():   # the first Adam step moves each entry by eta sign(g)
            np.testing.assert_allclose(after[k], before[k] - eta * g / (np.abs(g) + 1e-8),
                                       rtol=1e-12, atol=1e-15)
        assert all(st["step"] == 1 for st in res["opt_state"]["vae" if tree is vae else "mi"].values())
    # the faithful step, even with the same draws for its critic, scores the critic on the
    # UPDATED VAE: its critic update and loss differ, its VAE update does not
    faithful = O.infomax_train_step(vae, mi, x, noise_vae=noise, perm_vae=perm, noise_mi=noise,
                                    perm_mi=perm, eta=eta)
    for k, v in O.flat_params(faithful["vae"]).items():
        np.testing.assert_array_equal(O.flat_params(res["vae"])[k], v)
    assert res["loss_mi"] != pytest.approx(faithful["loss_mi"], rel=1e-9)
    assert any(not np.allclose(O.flat_params(res["mi"])[k], v, rtol=1e-9, atol=0)
               for k, v in O.flat_params(faithful["mi"]).items())


def test_fused_step_two_inputs_scores_x_out_and_feeds_x_to_the_critic():
    rng, vae, mi, x, noise, perm = _setup(86, "SimpleGaussianDecoder")
    x_out = rng.standard_normal(x.shape)
    res = O.infomax_train_fused_step(vae, mi, x, x_out, noise=noise, perm=perm)
    assert res["loss_vae"] == pytest.approx(O.infomaxloss(vae, mi, x, x_out, noise=noise, perm=perm),
                                            rel=1e-15)
    assert res["loss_vae"] != pytest.approx(O.infomaxloss(vae, mi, x, noise=noise, perm=perm),
                                            rel=1e-9)
    assert res["loss_mi"] == pytest.approx(O.miloss(vae, mi, x, noise=noise, perm=perm), rel=1e-15)


def test_fused_training_chains_steps_and_keeps_the_last_gradients():
    rng, vae, mi, x, noise, perm = _setup(87, "CategoricalDecoder")
    draws = [noise, perm, rng.standard_normal(noise.shape), rng.permutation(B)]
    res = O.infomax_train_fused(vae, mi, x, draws=draws, eta=1e-2, alpha=3.0)
    one = O.infomax_train_fused_step(vae, mi, x, noise=draws[0], perm=draws[1], eta=1e-2, alpha=3.0)
    two = O.infomax_train_fused_step(one["vae"], one["mi"], x, noise=draws[2], perm=draws[3],
                                     opt_state=one["opt_state"], eta=1e-2, alpha=3.0)
    assert res["loss_vae"] == [one["loss_vae"], two["loss_vae"]]
    assert res["loss_mi"] == [one["loss_mi"], two["loss_mi"]]
    for k, v in two["grads"]["mi"].items():
        np.testing.assert_array_equal(res["grads"]["mi"][k], v)
    for k, v in O.flat_params(two["vae"]).items():
        np.testing.assert_array_equal(O.flat_params(res["vae"])[k], v)
    assert all(st["step"] == 2 for st in res["opt_state"]["mi"].values())
    with pytest.raises(ValueError, match="2 arrays"):
        O.infomax_train_fused(vae, mi, x, draws=draws[:3])


# ---------------------------------------------------------------------------
# Case files
# ---------------------------------------------------------------------------

def test_array_encoding_round_trips_float32_exactly():
    rng = np.random.default_rng(90)
    vals = np.concatenate([rng.standard_normal(200), 10.0 ** rng.uniform(-40, 38, 200),
                           [0.0, -0.0, 1e-45, 3.4028235e38, 0.1, 1.0 / 3.0]]).astype(np.float32)
    enc = C.encode_array(vals.reshape(2, -1))
    assert enc["dtype"] == "float32" and enc["shape"] == [2, vals.size // 2]
    text = "[" + ",".join(str(v) for v in enc["data"]) + "]"  # the numbers as written
    back = C.decode_array({**enc, "data": json.loads(text)})
    np.testing.assert_array_equal(back.view(np.uint32), vals.reshape(2, -1).view(np.uint32))
    for s in enc["data"]:  # at most 9 significant digits
        mant = str(s).lower().split("e")[0].replace("-", "").replace(".", "").strip("0")
        assert len(mant) <= 9, s
    special = C.decode_array(C.encode_array(np.array([np.nan, np.inf, -np.inf])))
    assert np.isnan(special[0]) and special[1] == np.inf and special[2] == -np.inf
    ints = C.decode_array(C.encode_array(np.array([2, 0, 1])))
    assert ints.dtype == np.int64


def test_case_round_trip_and_oracle_evaluation(tmp_path):
    rng, vae, mi, x, noise, perm = _setup(91, "JointGaussianDecoder")
    draws = [("noise.0.vae", "randn", noise), ("perm.0.vae", "shuffle", perm),
             ("noise.0.mi", "randn", rng.standard_normal(noise.shape)),
             ("perm.0.mi", "shuffle", rng.permutation(B))]
    case = C.make_case("train_one_step", "infomax_train", models={"vae": vae, "mi": mi},
                       inputs={"x": x}, kwargs={"eta": 1e-3, "beta": 0.5, "alpha": 2.0},
                       draws=draws, julia_seed=42)
    path = C.write_case(tmp_path / "train_one_step.json", case)
    loaded = C.read_case(path)
    expected = C.decode_section(loaded, "expected")
    again = C.evaluate_with_oracle(loaded)
    assert set(again) == set(expected)
    for k in expected:
        np.testing.assert_array_equal(again[k], expected[k])
    # stored weights are in (out, in) index order
    w = C.decode_section(loaded, "params")["vae.encoder.encoder.0.weight"]
    np.testing.assert_array_equal(w, vae["encoder"]["encoder"][0]["weight"].astype(np.float32))
    # the expected values belong to the float32-rounded inputs and parameters
    models = C.model_from_spec(loaded["model"], C.decode_section(loaded, "params"))
    x32 = x.astype(np.float32).astype(np.float64)
    res = O.infomax_train_step(models["vae"], models["mi"], x32,
                               noise_vae=noise.astype(np.float32), perm_vae=perm,
                               noise_mi=C.decode_section(loaded, "draw_values")["noise.0.mi"],
                               perm_mi=C.decode_section(loaded, "draw_values")["perm.0.mi"],
                               beta=0.5, alpha=2.0)
    assert expected["loss_vae"][0] == res["loss_vae"]
    assert "adam.mi.mlp.0.weight.m" in expected and "params.vae.decoder.mu.bias" in expected


def test_case_sizes_and_error_cases(tmp_path):
    rng = np.random.default_rng(92)
    b, d = 257, 10
    vae = {"encoder": _encoder(rng, d=d), "decoder": _decoder(rng, "SimpleGaussianDecoder", d=d)}
    mi = _mi(rng, d=d)
    x = rng.standard_normal((b, d))
    draws = [("noise.0", "randn", rng.standard_normal((b, L))), ("perm.0", "shuffle", rng.permutation(b)),
             ("noise.1", "randn", rng.standard_normal((b, L))), ("perm.1", "shuffle", rng.permutation(b))]
    case = C.make_case("n_samples", "infomaxloss", models={"vae": vae, "mi": mi}, inputs={"x": x},
                       kwargs={"n_samples": 2}, draws=draws, julia_seed=7,
                       reference_error={"defect": "D3", "exception": "MethodError"})
    path = C.write_case(tmp_path / "n_samples.json", case)
    assert path.stat().st_size < C.MAX_CASE_BYTES
    expected = C.decode_section(C.read_case(path), "expected")["loss"]
    dv = [v for _, _, v in draws]
    models = C.model_from_spec(case["model"], C.decode_section(case, "params"))
    assert expected == pytest.approx(O.infomaxloss_n_samples(
        models["vae"], models["mi"], x.astype(np.float32), noises=[dv[0].astype(np.float32), dv[2].astype(np.float32)],
        perms=[dv[1], dv[3]]), rel=1e-15)
    d2 = C.make_case("d2", "mutual_info_chain_constructor",
                     kwargs={"size_input": [d], "n_latent": L, "mlp_neurons": [4, 3],
                             "mlp_activation": ["relu", "relu"], "output_activation": "identity"},
                     julia_seed=1, reference_error={"defect": "D2", "exception": "UndefVarError"},
                     compute_expected=False)
    with pytest.raises(O.ReferenceRaises) as err:
        C.evaluate_with_oracle(d2)
    assert err.value.defect == "D2"
    with pytest.raises(ValueError):
        C.validate_case({**d2, "op": "nope"})
    # a reference-error case without an intended value stores no expectations
    seeded = C.make_case("d1", "shuffle_latent", inputs={"z": draws[0][2]}, kwargs={"seed": 5},
                         draws=[("perm.0", "shuffle", draws[1][2])], julia_seed=3,
                         reference_error={"defect": "D1", "exception": "UndefVarError"})
    assert seeded["expected"] == {}
    with pytest.raises(O.ReferenceRaises):
        C.make_case("d1", "shuffle_latent", inputs={"z": draws[0][2]}, kwargs={"seed": 5},
                    draws=[("perm.0", "shuffle", draws[1][2])], julia_seed=3)


# ---------------------------------------------------------------------------
# The oracle's Julia streams (parity/julia_streams.py) against Julia's published values
# ---------------------------------------------------------------------------
# Every expected number below is printed in Julia's own docstrings and tests (stdlib Random:
# the Xoshiro, MersenneTwister, randperm, shuffle and randn! examples), apart from the
# check values of dSFMT-19937's init_by_array; none comes from this package.


def test_xoshiro_seeding_and_rand_match_julia():
    # rand(Xoshiro(1234), 2) == (Random.seed!(1234); rand(2)) in every Julia version
    expected = [0.32597672886359486, 0.5490511363155669]
    for rng in (S.Xoshiro(1234), S.seed_global(1234)):
        assert [rng.rand(), rng.rand()] == expected
    # Random.seed!(123); randn()
    assert S.randn(S.seed_global(123)) == -0.6457306721039767


def test_xoshiro_randn_and_shuffle_match_julia_1_11():
    rng = S.Xoshiro(123)
    assert [S.randn(rng) for _ in range(5)] == [
        -0.6457306721039767, -1.4632513788889214, -1.6236037455860806, -0.21766510678354617,
        0.4922456865251828]
    # shuffle(Xoshiro(123), 1:10), Julia 1.11 and 1.12 (forward Fisher-Yates)
    assert (S.shuffle(S.Xoshiro(123), 10) + 1).tolist() == [5, 4, 2, 3, 6, 10, 8, 1, 9, 7]


def test_dsfmt_init_by_array_matches_the_published_outputs():
    mt = S.MersenneTwister.from_key([1, 2, 3, 4])
    got = [mt.rand() + 1.0 for _ in range(4)]
    np.testing.assert_allclose(got, [1.426834076845924, 1.669573575226984, 1.161348943376632,
                                     1.218790313522451], rtol=0, atol=1e-15)


def test_mersenne_twister_matches_julia_1_10():
    mt = S.MersenneTwister(1234, julia="1.10")
    assert [mt.rand(), mt.rand()] == [0.5908446386657102, 0.7667970365022592]
    assert (S.randperm(S.MersenneTwister(1234, julia="1.10"), 4) + 1).tolist() == [2, 1, 4, 3]
    # shuffle up to 1.10: the backward pass with a shrinking mask
    perm = S.shuffle(S.MersenneTwister(1234, julia="1.10"), 10, julia="1.10") + 1
    assert perm.tolist() == [6, 1, 10, 2, 3, 9, 5, 7, 4, 8]
    mt = S.MersenneTwister(1234, julia="1.10")
    assert [S.randn(mt, "1.10") for _ in range(5)] == [
        0.8673472019512456, -0.9017438158568171, -0.4944787535042339, -0.9029142938652416,
        0.8644013132535154]


def test_mersenne_twister_seeding_through_sha256_matches_julia_1_11():
    mt = S.MersenneTwister(123)
    assert [mt.rand(), mt.rand()] == [0.37453777969575874, 0.8735343642013971]
    # the two seedings give different streams for the same seed
    assert S.MersenneTwister(123, julia="1.10").rand() != 0.37453777969575874


def test_ziggurat_tables_spot_values_and_shape():
    k, w, f = S.ziggurat_tables()
    assert len(k) == len(w) == len(f) == 256
    assert k[0] == 0x0007799EC012F7B2 and k[255] == 0x00078D2D25998E24 and k[1] == 0
    assert w[0] == 1.736725412160263e-15
    assert f[0] == 1.0 and f[255] == pytest.approx(math.exp(-0.5 * S.ZIGGURAT_R ** 2), rel=1e-15)
    assert w[255] == pytest.approx(S.ZIGGURAT_R / 2 ** 51, rel=1e-15)
    # strips: x grows and the density falls from strip 1 to strip 255
    assert all(w[i] < w[i + 1] for i in range(1, 255))
    assert all(f[i] > f[i + 1] for i in range(0, 255))
    assert all(0 <= ki < 2 ** 51 for ki in k)


class _Scripted:
    """A generator stub that replays given 52-bit draws and uniforms."""

    def __init__(self, bits, uniforms):
        self.bits, self.uniforms = list(bits), list(uniforms)

    def bits52(self):
        return self.bits.pop(0)

    def rand(self):
        return self.uniforms.pop(0)


def test_randn_tail_by_hand_in_both_versions():
    k, _, _ = S.ziggurat_tables()
    rabs = ((k[0] >> 9) + 1) << 9   # strip 0, beyond k[0], bit 8 clear
    r = rabs << 1                     # bit 0 clear
    assert rabs & 0xFF == 0 and (rabs >> 8) & 1 == 0 and k[0] <= rabs < 2 ** 51
    u1, u2 = 0.25, 0.75
    inv_r = 1.0 / S.ZIGGURAT_R
    # 1.11 and later: log1p(-u); the first pair is accepted when 2 eta > xi^2
    xi, eta = -inv_r * math.log1p(-u1), -math.log1p(-u2)
    assert eta + eta > xi * xi
    assert S.randn(_Scripted([r], [u1, u2]), "1.11") == S.ZIGGURAT_R + xi
    # up to 1.10: log(u)
    xi, eta = -inv_r * math.log(u1), -math.log(u2)
    assert eta + eta > xi * xi
    assert S.randn(_Scripted([r], [u1, u2]), "1.10") == S.ZIGGURAT_R + xi
    # bit 8 of r >> 1 gives the sign of a tail draw (bit 0 does not)
    assert S.randn(_Scripted([r | (1 << 9)], [u1, u2]), "1.11") < -S.ZIGGURAT_R
    assert S.randn(_Scripted([r | 1], [u1, u2]), "1.11") > S.ZIGGURAT_R


def test_randn_float32_fills_in_julia_column_major_order():
    shape = (5, 3)  # Julia randn(Float32, 3, 5)
    got = S.randn_float32(S.seed_global(7), shape)
    rng = S.seed_global(7)
    flat = np.array([S.randn(rng) for _ in range(15)]).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got.ravel(order="C"), flat)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 8, 9, 64, 257])
def test_randperm_and_shuffle_are_permutations(n):
    for julia in ("1.10", "1.11"):
        for perm in (S.randperm(S.seed_global(n + 1), n), S.shuffle(S.seed_global(n + 1), n, julia)):
            assert sorted(perm.tolist()) == list(range(n))
    # from Julia 1.11, shuffle(rng, 1:n) == randperm(rng, n)
    np.testing.assert_array_equal(S.shuffle(S.seed_global(n + 3), n), S.randperm(S.seed_global(n + 3), n))
    # n <= 1 draws nothing
    if n <= 1:
        rng = S.seed_global(5)
        S.shuffle(rng, n)
        assert rng.rand() == S.seed_global(5).rand()


def test_replay_follows_the_draw_list():
    draws = [{"name": "noise.0", "kind": "randn", "shape": [3, 2]},
             {"name": "perm.0", "kind": "shuffle", "n": 3},
             {"name": "perm.k", "kind": "shuffle", "n": 6,
              "rng": {"type": "MersenneTwister", "seed": 4}}]
    values, after = S.replay(draws, 17)
    rng = S.seed_global(17)
    np.testing.assert_array_equal(values["noise.0"], S.randn_float32(rng, (3, 2)))
    np.testing.assert_array_equal(values["perm.0"], S.shuffle(rng, 3))
    np.testing.assert_array_equal(values["perm.k"], S.shuffle(S.MersenneTwister(4), 6))
    assert after.rand() == rng.rand()   # the MersenneTwister shuffle left the global stream alone
    with pytest.raises(ValueError, match="unknown kind"):
        S.replay([{"name": "u", "kind": "rand"}], 1)
    with pytest.raises(ValueError, match="unknown generator"):
        S.replay([{"name": "p", "kind": "shuffle", "n": 2, "rng": {"type": "Xoshiro", "seed": 1}}], 1)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2 ** 31, ValueError), (1.5, TypeError),
                                         (True, TypeError), ("3", TypeError)])
def test_seeds_outside_the_checked_range_are_refused(seed, error):
    with pytest.raises(error, match="seed"):
        S.seed_global(seed)
    with pytest.raises(error, match="seed"):
        S.MersenneTwister(seed)


def test_unknown_julia_versions_are_refused():
    with pytest.raises(ValueError, match="julia: expected"):
        S.shuffle(S.seed_global(1), 4, julia="1.8")
    with pytest.raises(ValueError, match="julia: expected"):
        S.MersenneTwister(1, julia="2.0")

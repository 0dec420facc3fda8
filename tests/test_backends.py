"""Array backends: the registry, conversions (DLPack), random draws, and the pure
functions giving equal results on NumPy and torch arrays (CuPy: tests/test_cupy.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autoencoder_toolkit import decoders, densities, encoders, infomaxvaes, juliarng, vaes
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.backends import (Backend, BackendUnavailableError, array_namespace, as_numpy,
                                          available_backends, backend_names, cupy_kernels_enabled, get_backend,
                                          register_backend, use_cupy_kernels)
from autoencoder_toolkit.backends.cupy_backend import cuda_unavailable_reason
from autoencoder_toolkit.backends.dispatch import fused_kernels
from autoencoder_toolkit.outputs import GaussianLogParams, GaussianMean, GaussianParams, Probabilities

from .fuzzing import fuzz

LOG2PI = math.log(2 * math.pi)
EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------

def test_the_density_of_codes_with_a_linear_scale_is_computed_as_always():
    # (z - μ)² / σ² for codes (not ((z - μ) / σ)², which rounds differently in float32)
    g = np.random.default_rng(0)
    z, mu = g.standard_normal((1000, 5)).astype(np.float32), g.standard_normal((1000, 5)).astype(np.float32)
    s = (g.random((1000, 5)) * 3 + 0.01).astype(np.float32)
    d = z - mu
    expected = (np.float32(-0.5) * np.sum(d * d / (s * s), axis=1) - np.sum(np.log(s), axis=1)
                - np.float32(0.5 * 5 * math.log(2 * math.pi)))
    np.testing.assert_array_equal(densities.gaussian_logdensity(z, mu, s, log=False), expected)


def test_registry_by_name_and_by_array():
    np_bk = get_backend("numpy")
    t_bk = get_backend("torch")
    assert np_bk.name == "numpy" and t_bk.name == "torch"
    assert get_backend(" NumPy ") is np_bk
    assert get_backend(np.zeros(3)) is np_bk
    assert get_backend(torch.zeros(3)) is t_bk
    assert get_backend(np_bk) is np_bk
    assert set(backend_names()) >= {"numpy", "torch", "cupy"}
    assert {"numpy", "torch"} <= set(available_backends())
    assert np_bk.module is np and t_bk.module is torch
    assert np_bk.xp.__name__ == "array_api_compat.numpy"
    assert t_bk.xp.__name__ == "array_api_compat.torch"


def test_registry_errors_name_the_choices():
    with pytest.raises(ValueError, match="numpy, torch, cupy"):
        get_backend("jax")
    with pytest.raises(TypeError, match="expected a backend name"):
        get_backend([1.0, 2.0])


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a CUDA device is present")
def test_cupy_backend_unavailable_without_a_device():
    assert "cupy" not in available_backends()
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        get_backend("cupy")


def test_register_a_backend():
    class Tagged(Backend):
        name = "tagged"

    register_backend("tagged", Tagged)
    try:
        assert isinstance(get_backend("tagged"), Tagged)
    finally:
        from autoencoder_toolkit.backends import base

        base._FACTORIES.pop("tagged")
        base._INSTANCES.pop("tagged", None)
    with pytest.raises(ValueError):
        register_backend("", Tagged)


# ----------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------

def test_numpy_to_torch_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = get_backend("torch").asarray(a)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    a[0, 0] = 42.0
    assert float(t[0, 0]) == 42.0


def test_torch_to_numpy_shares_memory_through_dlpack():
    t = torch.arange(6, dtype=torch.float32, requires_grad=False).reshape(2, 3)
    a = get_backend("numpy").asarray(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    t[1, 2] = -1.0
    assert a[1, 2] == -1.0
    # a tensor that requires grad converts too (detached)
    w = torch.ones(3, requires_grad=True)
    np.testing.assert_array_equal(as_numpy(w), np.ones(3, np.float32))


def test_dlpack_round_trip_cpu():
    a = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    t = get_backend("torch").from_dlpack(a)
    back = get_backend("numpy").from_dlpack(t)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, a)
    back[2, 3] = 7.0
    assert a[2, 3] == 7.0  # one buffer all along


def test_read_only_arrays_are_copied_for_torch():
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    t = get_backend("torch").asarray(a)
    t[0] = 9.0
    assert a[0] == 0.0


def test_dtype_and_device_conversions():
    np_bk, t_bk = get_backend("numpy"), get_backend("torch")
    a = np_bk.asarray([[1, 2], [3, 4]], dtype="float32")
    assert a.dtype == np.float32 and a.shape == (2, 2)
    t = t_bk.asarray(a, dtype=np.float64, device="cpu")
    assert t.dtype == torch.float64 and t.device.type == "cpu"
    assert t_bk.dtype("float32") is torch.float32 and np_bk.dtype(torch.float64) is np.float64
    assert np_bk.device(a) == "cpu" and t_bk.device(t).type == "cpu"
    with pytest.raises(ValueError, match="only the 'cpu' device"):
        np_bk.asarray(a, device="cuda:0")
    with pytest.raises(ValueError, match="dtype"):
        np_bk.dtype("complex64")


# ----------------------------------------------------------------------------------
# Random draws
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_seeded_generator_reproduces(name):
    bk = get_backend(name)
    a = as_numpy(bk.standard_normal((3, 4), rng=bk.default_rng(7)))
    b = as_numpy(bk.standard_normal((3, 4), rng=bk.default_rng(7)))
    c = as_numpy(bk.standard_normal((3, 4), rng=bk.default_rng(8)))
    assert a.dtype == np.float32 and a.shape == (3, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    p = as_numpy(bk.permutation(10, rng=bk.default_rng(3)))
    assert sorted(p.tolist()) == list(range(10))


@pytest.mark.parametrize("make_rng", [
    lambda: np.random.default_rng(11),
    lambda: torch.Generator().manual_seed(11),
    lambda: juliarng.MersenneTwister(11),
])
def test_the_same_generator_draws_the_same_numbers_on_every_backend(make_rng):
    draws = [as_numpy(get_backend(n).standard_normal((5, 3), rng=make_rng())) for n in ("numpy", "torch")]
    np.testing.assert_array_equal(draws[0], draws[1])
    perms = [as_numpy(get_backend(n).permutation(9, rng=make_rng())) for n in ("numpy", "torch")]
    np.testing.assert_array_equal(perms[0], perms[1])


def test_draws_match_what_the_torch_model_draws():
    from autoencoder_toolkit import backends as _random

    like = torch.zeros(4, 2)
    for make in (lambda: np.random.default_rng(5), lambda: juliarng.MersenneTwister(5),
                 lambda: torch.Generator().manual_seed(5)):
        expected = _random.normal_like(like, make()).numpy()
        np.testing.assert_array_equal(as_numpy(get_backend("numpy").standard_normal((4, 2), rng=make())), expected)
    for seed in (1, 42):
        expected = _random.permutation_like(12, like, seed=seed).numpy()
        np.testing.assert_array_equal(get_backend("numpy").permutation(12, seed=seed), expected)


def test_bad_rng_is_refused():
    with pytest.raises(TypeError, match="rng"):
        get_backend("numpy").standard_normal((2,), rng="seed")


# ----------------------------------------------------------------------------------
# Mixed kinds and the kernel switch
# ----------------------------------------------------------------------------------

def test_mixed_kinds_raise_a_clear_error():
    x = np.full((2, 3), 0.5, dtype=np.float32)
    p = torch.full((2, 3), 0.5)
    with pytest.raises(TypeError, match=r"x is numpy, p is torch"):
        decoders.bernoulli_loglikelihood(x, p)
    with pytest.raises(TypeError, match=r"g_joint is numpy, g_shuffled is torch"):
        infomaxvaes.mutual_info_bound(np.zeros(4, np.float32), torch.zeros(4))
    with pytest.raises(TypeError, match="noise is numpy"):
        vaes.reparameterize(torch.zeros(2, 2), torch.zeros(2, 2), noise=np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="different kinds"):
        encoders.gaussian_kl(np.zeros(3), torch.zeros(3))


def test_kernel_dispatch_leaves_numpy_and_torch_alone():
    for a in (np.zeros(3, np.float32), torch.zeros(3)):
        assert fused_kernels(array_namespace(a), a) is None
    assert cupy_kernels_enabled()
    with use_cupy_kernels(False):
        assert not cupy_kernels_enabled()
    assert cupy_kernels_enabled()


# ----------------------------------------------------------------------------------
# Pure functions: NumPy and torch agree, and agree with a float64 oracle
# ----------------------------------------------------------------------------------

def _oracle_sum(terms: np.ndarray, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    t = terms.reshape(terms.shape[0], -1) if batched else terms.reshape(1, -1)
    s, m = t.sum(axis=1), np.abs(t).sum(axis=1)
    return (s, m) if batched else (s[0], m[0])


def _check(value, kind: str, oracle: np.ndarray, magnitude: np.ndarray, shape: tuple) -> None:
    """``value`` is an array of ``kind`` and ``shape`` equal to the float64 ``oracle`` within float32 rounding."""
    # NumPy reductions to one value give a NumPy scalar, which is of the NumPy kind too
    assert (isinstance(value, torch.Tensor) if kind == "torch" else isinstance(value, (np.ndarray, np.generic))), \
        type(value)
    got = as_numpy(value).astype(np.float64)
    assert got.shape == shape
    tol = 2e-6 * (np.asarray(magnitude) + 1.0) + 1e-6 * np.abs(oracle)
    assert np.all(np.abs(got - oracle) <= tol), (got, oracle)


def _as(kind: str, *arrays: np.ndarray):
    return tuple(torch.from_numpy(a.copy()) if kind == "torch" else a.copy() for a in arrays)


KINDS = ["numpy", "torch"]
_floats = st.floats(-3, 3, width=32)
_prob = st.floats(0.0, 1.0, width=32)


def _batch(elements, min_b=1):
    shapes = st.tuples(st.integers(min_b, 6), st.integers(1, 5))
    return shapes.flatmap(lambda s: st.tuples(*(hnp.arrays(np.float32, s, elements=elements) for _ in range(3))))


@fuzz(25)
@given(arrays=_batch(_floats), batched=st.booleans())
def test_encoder_side_functions(arrays, batched):
    z, mu, logs = arrays
    if not batched:
        z, mu, logs = z[0], mu[0], logs[0]
    shape = (z.shape[0],) if batched else ()
    z64, m64, s64 = (a.astype(np.float64) for a in (z, mu, logs))
    prior = _oracle_sum(-0.5 * z64 ** 2 - 0.5 * LOG2PI, batched)
    post_log = _oracle_sum(-0.5 * (z64 - m64) ** 2 * np.exp(-2 * s64) - s64 - 0.5 * LOG2PI, batched)
    sig = np.exp(s64).astype(np.float32).astype(np.float64)
    post_lin = _oracle_sum(-0.5 * ((z64 - m64) / sig) ** 2 - np.log(sig) - 0.5 * LOG2PI, batched)
    kl_log = _oracle_sum(0.5 * (np.exp(2 * s64) + m64 ** 2 - 1 - 2 * s64), batched)
    kl_lin = _oracle_sum(0.5 * (sig ** 2 + m64 ** 2 - 1 - 2 * np.log(sig)), batched)
    enc = encoders.JointGaussianLogEncoder(2, 2, [2], ["relu"], "identity")
    for kind in KINDS:
        zk, mk, sk = _as(kind, z, mu, logs)
        sigk = _as(kind, np.exp(logs.astype(np.float64)).astype(np.float32))[0]
        _check(encoders.spherical_logprior(zk), kind, *prior, shape)
        _check(encoders.gaussian_logdensity(zk, mk, sk), kind, *post_log, shape)
        _check(encoders.gaussian_logdensity(zk, mk, sigk, log=False), kind, *post_lin, shape)
        _check(encoders.encoder_logposterior(zk, enc, GaussianLogParams(mk, sk)), kind, *post_log, shape)
        _check(encoders.encoder_kl(enc, GaussianLogParams(mk, sk)), kind, *kl_log, shape)
        _check(encoders.gaussian_kl(mk, sigk, log=False), kind, *kl_lin, shape)


@fuzz(25)
@given(arrays=_batch(_prob), batched=st.booleans())
def test_decoder_loglikelihoods(arrays, batched):
    x, p, s = arrays
    p = np.clip(p, 0.01, 0.99).astype(np.float32)
    logs = (s - 0.5).astype(np.float32)
    z = np.zeros((x.shape[0], 2), np.float32)
    if not batched:
        x, p, logs, z = x[0], p[0], logs[0], z[0]
    shape = (x.shape[0],) if batched else ()
    x64, p64, s64 = (a.astype(np.float64) for a in (x, p, logs))
    p_eps = (p + np.float32(EPS)).astype(np.float64)
    q_eps = (np.float32(1) - p + np.float32(EPS)).astype(np.float64)
    bern = _oracle_sum(x64 * np.log(p_eps) + (1 - x64) * np.log(q_eps), batched)
    cat = _oracle_sum(x64 * np.log(p_eps), batched)
    simple = _oracle_sum(-0.5 * (x64 - p64) ** 2 - 0.5 * LOG2PI, batched)
    simple_2 = _oracle_sum(-0.5 * (x64 - p64) ** 2 / 4 - 0.5 * (2 * math.log(2.0) + LOG2PI), batched)
    joint_log = _oracle_sum(-0.5 * (x64 - p64) ** 2 * np.exp(-2 * s64) - s64 - 0.5 * LOG2PI, batched)
    sig = np.exp(s64).astype(np.float32).astype(np.float64)
    joint_lin = _oracle_sum(-0.5 * ((x64 - p64) / sig) ** 2 - np.log(sig) - 0.5 * LOG2PI, batched)
    bern_dec = decoders.BernoulliDecoder(3, 2, [2], ["relu"], "sigmoid")
    cat_dec = decoders.CategoricalDecoder(3, 2, [2], ["relu"])
    simple_dec = decoders.SimpleGaussianDecoder(3, 2, [2], ["relu"], "identity")
    log_dec = decoders.JointGaussianLogDecoder(3, 2, [2], ["relu"], "identity")
    lin_dec = decoders.JointGaussianDecoder(3, 2, [2], ["relu"], ("identity", "softplus"))
    for kind in KINDS:
        xk, pk, sk, zk = _as(kind, x, p, logs, z)
        sigk = _as(kind, np.exp(logs.astype(np.float64)).astype(np.float32))[0]
        ll = decoders.decoder_loglikelihood
        _check(ll(xk, zk, bern_dec, Probabilities(pk)), kind, *bern, shape)
        _check(ll(xk, zk, cat_dec, Probabilities(pk)), kind, *cat, shape)
        _check(ll(xk, zk, simple_dec, GaussianMean(pk)), kind, *simple, shape)
        _check(ll(xk, zk, simple_dec, GaussianMean(pk), σ=2.0), kind, *simple_2, shape)
        _check(ll(xk, zk, log_dec, GaussianLogParams(pk, sk)), kind, *joint_log, shape)
        _check(ll(xk, zk, lin_dec, GaussianParams(pk, sigk)), kind, *joint_lin, shape)


@fuzz(25)
@given(arrays=_batch(_floats, min_b=2), log=st.booleans())
def test_mi_bound_reparameterize_and_shuffle(arrays, log):
    g, gs, noise = arrays
    g, gs = g[:, 0], gs[:, 0]
    mu = noise[::-1].copy()
    scale = (noise * 0.5).astype(np.float32) if log else np.abs(noise).astype(np.float32) + np.float32(0.1)
    g64, gs64 = g.astype(np.float64), gs.astype(np.float64)
    bound = g64.mean() - np.exp(gs64 - 1).mean()
    mag = np.abs(g64).mean() + np.exp(gs64 - 1).mean()
    s64 = scale.astype(np.float64)
    z_expected = mu.astype(np.float64) + noise.astype(np.float64) * (np.exp(s64) if log else s64)
    for kind in KINDS:
        gk, gsk, mk, sk, nk = _as(kind, g, gs, mu, scale, noise)
        _check(infomaxvaes.mutual_info_bound(gk, gsk), kind, bound, mag, ())
        z = vaes.reparameterize(mk, sk, log=log, noise=nk)
        _check(z, kind, z_expected, np.abs(z_expected), mu.shape)
        shuffled = infomaxvaes.shuffle_latent(mk, seed=3)
        perm = juliarng.shuffle(juliarng.MersenneTwister(3), range(mu.shape[0]))
        np.testing.assert_array_equal(as_numpy(shuffled), mu[np.asarray(perm)])


def test_hand_computed_values():
    # Bernoulli with p = 0.5 everywhere: each element gives log(0.5 + ε)
    x = np.array([[1.0, 0.0, 1.0]], np.float32)
    p = np.full((1, 3), 0.5, np.float32)
    expected = 3 * math.log(0.5 + EPS)
    for kind in KINDS:
        xk, pk = _as(kind, x, p)
        assert float(densities.bernoulli_loglikelihood(xk, pk)[0]) == pytest.approx(expected, rel=1e-6)
    # the standard normal at 0 in two dimensions: -log(2π)
    for kind in KINDS:
        (z,) = _as(kind, np.zeros(2, np.float32))
        assert float(densities.spherical_logprior(z)) == pytest.approx(-LOG2PI, rel=1e-6)
    # MI bound with g = 1 everywhere: 1 - exp(0) = 0
    for kind in KINDS:
        g, gs = _as(kind, np.ones(4, np.float32), np.ones(4, np.float32))
        assert float(densities.mutual_info_bound(g, gs)) == 0.0


def test_results_keep_the_input_kind_and_dtype():
    for kind in KINDS:
        mu, ls = _as(kind, np.zeros((3, 2), np.float64), np.zeros((3, 2), np.float64))
        kl = densities.gaussian_kl(mu, ls)
        assert get_backend(kl).name == kind
        assert as_numpy(kl).dtype == np.float64
        np.testing.assert_array_equal(as_numpy(kl), np.zeros(3))


def test_kernels_cupy_is_refused_on_cpu_tensors_with_a_clear_error():
    enc = encoders.JointGaussianLogEncoder(4, 2, [4], ["relu"], "identity")
    dec = decoders.BernoulliDecoder(4, 2, [4], ["relu"], "sigmoid")
    vae = enc * dec
    mi = infomaxvaes.MutualInfoChain(4, 2, [4], ["relu"], "identity")
    x = (torch.rand(8, 4) > 0.5).float()
    with pytest.raises(ValueError, match="kernels='cupy' runs CUDA kernels, but the data are on cpu"):
        vaes.loss(vae, x, kernels="cupy")
    with pytest.raises(ValueError, match="CUDA"):
        infomaxvaes.infomaxloss(vae, mi, x, kernels="cupy")
    with pytest.raises(ValueError, match="expected None or 'cupy', got 'triton'"):
        vaes.loss(vae, x, kernels="triton")
    model = infomaxvaes.InfoMaxVAE(vae, mi)
    opt = __import__("autoencoder_toolkit").setup(torch.optim.Adam, model, lr=1e-2)
    before = kit.snapshot(model, opt)
    for fused in (False, True):
        with pytest.raises(ValueError, match="CUDA"):
            infomaxvaes.train_(model, x, opt, kernels="cupy", fused=fused)
    kit.assert_unchanged(model, opt, before, "a refused step")
    # kernels=None is the default path, unchanged
    assert torch.isfinite(vaes.loss(vae, x, kernels=None))

"""MMD-VAE (InfoVAE): kernel, MMD, loss, train_ (and the reference's test/mmdvae.jl checks)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autoencoder_toolkit as aet
from autoencoder_toolkit import juliarng, mmdvaes, serialization
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.decoders import BernoulliDecoder, SimpleGaussianDecoder, decoder_loglikelihood
from autoencoder_toolkit.encoders import JointGaussianLogEncoder, encoder_kl
from autoencoder_toolkit.mmdvaes import MMDVAE, gaussian_kernel, logP_mmd_ratio, loss, mmd_div, train_
from autoencoder_toolkit.outputs import VAEOutput
from autoencoder_toolkit.vaes import VAE, reparameterize
from autoencoder_toolkit.vaes import loss as vae_loss

from .conftest import f64
from .fuzzing import fuzz

E = math.e


def _model(decoder: str = "simple") -> MMDVAE:
    """The reference tests' model: D=10, L=2, hidden [10, 10] relu, identity outputs."""
    enc = JointGaussianLogEncoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    if decoder == "bernoulli":
        dec = BernoulliDecoder(10, 2, [10, 10], ["relu", "relu"], "sigmoid")
    else:
        dec = SimpleGaussianDecoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    return MMDVAE(enc * dec)


def _x(b: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 10, generator=torch.Generator().manual_seed(seed))


def _f(v) -> float:
    """A scalar tensor (detached) or array as a Python float."""
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _gen(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _direct_kernel(a: np.ndarray, b: np.ndarray, ρ: float = 1.0) -> np.ndarray:
    """exp(-‖a_i − b_j‖² / (ρ² D)) by explicit differences, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / ρ**2 / a.shape[1])


def _direct_mmd(a: np.ndarray, b: np.ndarray, ρ: float = 1.0) -> float:
    return (_direct_kernel(a, a, ρ).mean() + _direct_kernel(b, b, ρ).mean()
            - 2 * _direct_kernel(a, b, ρ).mean())


# ----------------------------------------------------------------------------------
# Kernel and MMD: hand-computed values
# ----------------------------------------------------------------------------------

def test_gaussian_kernel_on_1d_points_by_hand():
    x = np.array([[0.0], [1.0]], dtype=np.float32)          # two points on a line
    y = np.array([[0.0], [2.0], [3.0]], dtype=np.float32)   # three points
    k = gaussian_kernel(x, y, ρ=2.0)
    # squared distances [[0, 4, 9], [1, 1, 4]], divided by ρ² = 4 and D = 1
    expected = np.exp(-np.array([[0.0, 4.0, 9.0], [1.0, 1.0, 4.0]]) / 4)
    assert isinstance(k, np.ndarray) and k.shape == (2, 3) and k.dtype == np.float32
    np.testing.assert_allclose(k, expected, rtol=1e-6)
    np.testing.assert_allclose(gaussian_kernel(x, y), np.exp(-np.array([[0, 4, 9], [1, 1, 4]])), rtol=1e-6)
    assert gaussian_kernel(x, y, rho=2.0).tolist() == k.tolist()


def test_gaussian_kernel_divides_by_the_number_of_coordinates():
    x = np.array([[0.0, 0.0]])
    y = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    # ‖·‖² = 2, 4, 0 over D = 2 coordinates: exp(-1), exp(-2), 1
    np.testing.assert_allclose(gaussian_kernel(x, y), [[E**-1, E**-2, 1.0]], rtol=1e-12)


def test_dim_exponent_divides_by_a_power_of_the_number_of_coordinates():
    x = np.array([[0.0, 0.0]])
    y = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    # ‖·‖² = 2, 4, 0; D = 2: over D² = 4 (exponent 2), over 1 (exponent 0), over D (1, the default)
    np.testing.assert_allclose(gaussian_kernel(x, y, dim_exponent=2), [[E**-0.5, E**-1, 1.0]], rtol=1e-12)
    np.testing.assert_allclose(gaussian_kernel(x, y, dim_exponent=0), [[E**-2, E**-4, 1.0]], rtol=1e-12)
    np.testing.assert_array_equal(gaussian_kernel(x, y, dim_exponent=1), gaussian_kernel(x, y))
    np.testing.assert_allclose(gaussian_kernel(x, y, ρ=2.0, dim_exponent=2), [[E**-0.125, E**-0.25, 1.0]],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="dim_exponent: expected a number >= 0, got -1"):
        gaussian_kernel(x, y, dim_exponent=-1)
    with pytest.raises(TypeError, match="dim_exponent: expected a real number, got str"):
        gaussian_kernel(x, y, dim_exponent="2")


def test_dim_exponent_2_is_the_infomax_vae_authors_kernel_and_mmd():
    # their kernel averages the squared coordinate differences and divides by D again:
    # exp(-mean_k (x_ik - y_jk)² / D); their MMD is the mean of every entry (the V-statistic)
    rng = np.random.default_rng(0)
    z, p = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))

    def theirs(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).mean(-1) / a.shape[1])

    np.testing.assert_allclose(gaussian_kernel(z, p, dim_exponent=2), theirs(z, p), rtol=1e-12)
    expected = theirs(p, p).mean() + theirs(z, z).mean() - 2 * theirs(p, z).mean()
    got = mmd_div(z, p, kernel_kwargs={"dim_exponent": 2})
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_loss_with_the_authors_lambda_and_kernel():
    # α = 1 drops the KL term and weighs the MMD by λ: the authors' BCE + λ·MMD with their kernel
    m = _model("bernoulli")
    x = torch.rand(10, 10, generator=_gen(1))
    value = loss(m, x, α=1.0, λ=1000.0, n_latent_samples=10, kernel_kwargs={"dim_exponent": 2}, rng=_gen())
    g = _gen()
    out = m(x, latent=True, rng=g)
    prior = torch.randn(10, 2, generator=g)
    ll = decoder_loglikelihood(x, out.z, m.vae.decoder, out.decoder).mean()
    zz, pp = f64(out.z), f64(prior)

    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / 2**2)

    mmd = k(zz, zz).mean() + k(pp, pp).mean() - 2 * k(zz, pp).mean()
    assert _f(value) == pytest.approx(-_f(ll) + 1000.0 * mmd, rel=1e-5)
    default = loss(m, x, α=1.0, λ=1000.0, n_latent_samples=10, rng=_gen())
    assert _f(default) != pytest.approx(_f(value), rel=1e-6)  # the default kernel is another one


def test_dims_1_takes_points_as_columns_with_the_same_scale():
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [2.0], [3.0]])
    k0 = gaussian_kernel(x, y)
    k1 = gaussian_kernel(x.T, y.T, dims=1)       # Julia's dims=1 on the same memory
    np.testing.assert_array_equal(k0, k1)
    # The scale is the number of coordinates (1), not the number of x's points (2) as in
    # the reference's dims=1 path: the kernel is symmetric under swapping the sets.
    np.testing.assert_array_equal(gaussian_kernel(y.T, x.T, dims=1), k1.T)
    np.testing.assert_array_equal(gaussian_kernel(x, y, dims=-2), k0)


def test_mmd_by_hand_is_the_biased_v_statistic():
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [2.0]])
    # mean K(x,x) = (2 + 2/e)/4, mean K(y,y) = (2 + 2/e⁴)/4, mean K(x,y) = (1 + 1/e⁴ + 2/e)/4
    biased = (1 - E**-1) / 2
    value = mmd_div(x, y)
    assert value == pytest.approx(biased, rel=1e-12)
    # the unbiased U-statistic (diagonal left out) would be (1/e⁴ − 1)/2 < 0
    unbiased = E**-1 + E**-4 - (1 + E**-4 + 2 * E**-1) / 2
    assert abs(value - unbiased) > 0.5
    # a set against one point at the origin
    assert mmd_div(x, np.array([[0.0]])) == pytest.approx((1 - E**-1) / 2, rel=1e-12)


def test_mmd_of_a_set_with_itself_is_zero_and_mmd_is_symmetric():
    g = np.random.default_rng(0)
    x = g.standard_normal((7, 3)).astype(np.float32)
    y = g.standard_normal((5, 3)).astype(np.float32)
    assert _f(mmd_div(x, x)) == 0.0
    assert _f(mmd_div(x, y)) == pytest.approx(_f(mmd_div(y, x)), rel=1e-6)
    np.testing.assert_allclose(gaussian_kernel(x, y), gaussian_kernel(y, x).T, rtol=1e-6)
    assert _f(mmd_div(x, y)) == pytest.approx(_direct_mmd(x, y), rel=1e-5)


def test_rho_rescales_the_points():
    g = np.random.default_rng(1)
    x, y = g.standard_normal((4, 2)), g.standard_normal((6, 2))
    np.testing.assert_allclose(gaussian_kernel(x, y, ρ=2.5), gaussian_kernel(x / 2.5, y / 2.5), rtol=1e-12)
    np.testing.assert_allclose(mmd_div(x, y, kernel_kwargs={"ρ": 2.5}), _direct_mmd(x, y, 2.5), rtol=1e-10)
    np.testing.assert_allclose(mmd_div(x, y, kernel_kwargs={"rho": 2.5}), _direct_mmd(x, y, 2.5), rtol=1e-10)


def test_mmd_calls_a_custom_kernel_in_order_with_its_kwargs():
    calls = []

    def linear(a, b, scale=1.0):
        calls.append((a.shape[0], b.shape[0], scale))
        return scale * (a @ b.T)

    x = np.array([[1.0], [3.0]])
    y = np.array([[0.0], [1.0], [2.0]])
    # linear kernel: MMD² = (mean x − mean y)² · scale
    assert mmd_div(x, y, kernel=linear, kernel_kwargs={"scale": 2.0}) == pytest.approx(2.0 * (2.0 - 1.0) ** 2)
    assert calls == [(2, 2, 2.0), (3, 3, 2.0), (2, 3, 2.0)]


@fuzz(40)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 3)),
                  elements=st.floats(-3, 3, allow_nan=False)),
       st.integers(1, 6), st.floats(0.3, 3.0))
def test_kernel_values_and_mmd_bounds(x, m, ρ):
    y = np.linspace(-1, 1, m * x.shape[1]).reshape(m, x.shape[1])
    k = gaussian_kernel(x, y, ρ=ρ)
    assert k.shape == (x.shape[0], m)
    assert np.all(k > 0) and np.all(k <= 1)
    np.testing.assert_allclose(k, _direct_kernel(x, y, ρ), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.diag(gaussian_kernel(x, x, ρ=ρ)), 1.0, rtol=0, atol=1e-12)
    value = _f(mmd_div(x, y, kernel_kwargs={"ρ": ρ}))
    assert -1e-12 <= value <= 2.0
    assert value == pytest.approx(_direct_mmd(x, y, ρ), abs=1e-10)


def test_numpy_and_torch_agree_and_keep_their_kind():
    g = np.random.default_rng(2)
    x = g.standard_normal((6, 3)).astype(np.float32)
    y = g.standard_normal((9, 3)).astype(np.float32)
    k_np = gaussian_kernel(x, y, ρ=1.5)
    k_t = gaussian_kernel(torch.from_numpy(x), torch.from_numpy(y), ρ=1.5)
    assert isinstance(k_t, torch.Tensor) and k_t.dtype == torch.float32 and k_np.dtype == np.float32
    np.testing.assert_allclose(k_t.numpy(), k_np, rtol=1e-6, atol=1e-7)
    m_np = mmd_div(x, y)
    m_t = mmd_div(torch.from_numpy(x), torch.from_numpy(y))
    assert isinstance(m_t, torch.Tensor) and m_t.shape == () and m_t.dtype == torch.float32
    assert np.asarray(m_np).dtype == np.float32
    assert _f(m_t) == pytest.approx(_f(m_np), rel=1e-5, abs=1e-7)
    m_64 = mmd_div(x.astype(np.float64), y.astype(np.float64))
    assert np.asarray(m_64).dtype == np.float64
    assert _f(m_64) == pytest.approx(_direct_mmd(x, y), rel=1e-12)
    assert _f(m_t) == pytest.approx(_f(m_64), rel=1e-5, abs=1e-7)
    # mixed float dtypes of one kind are promoted
    assert gaussian_kernel(x, y.astype(np.float64)).dtype == np.float64


def test_cupy_agrees_with_numpy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception:  # noqa: BLE001 - no driver
        pytest.skip("no CUDA device")
    g = np.random.default_rng(3)
    x = g.standard_normal((6, 3)).astype(np.float32)
    y = g.standard_normal((9, 3)).astype(np.float32)
    k = gaussian_kernel(cupy.asarray(x), cupy.asarray(y))
    assert isinstance(k, cupy.ndarray) and k.dtype == cupy.float32
    np.testing.assert_allclose(cupy.asnumpy(k), gaussian_kernel(x, y), rtol=1e-5, atol=1e-6)
    assert _f(mmd_div(cupy.asarray(x), cupy.asarray(y))) == pytest.approx(_f(mmd_div(x, y)), abs=1e-6)


def test_mmd_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mmd_div(a, b, kernel_kwargs={"ρ": 1.3}), (x, y))


# ----------------------------------------------------------------------------------
# The model (test/mmdvae.jl "MMDVAE struct")
# ----------------------------------------------------------------------------------

def test_struct_forward_and_properties():
    m = _model()
    assert isinstance(m, MMDVAE) and isinstance(m.vae, VAE) and isinstance(m, torch.nn.Module)
    assert m.latent_dim == 2 and m.input_shape == (10,)
    x = _x()
    out = m(x)
    assert isinstance(out, tuple) and all(f.dtype == torch.float32 and f.shape == (10, 10) for f in out)
    full = m(x, latent=True)
    assert isinstance(full, VAEOutput)
    assert isinstance(full.encoder, tuple) and isinstance(full.decoder, tuple)
    assert full.z.shape == (10, 2) and full.z.dtype == torch.float32
    # the forward pass is the VAE's, with the same noise
    a = m(x, latent=True, rng=_gen(1))
    b = m.vae(x, latent=True, rng=_gen(1))
    assert torch.equal(a.z, b.z)
    # NumPy input is converted at the boundary (the model's public methods), NumPy comes back
    codes = m.encode(x.numpy(), sample=True, rng=_gen(1))
    assert isinstance(codes, np.ndarray) and np.array_equal(codes, m.encode(x, sample=True, rng=_gen(1)).numpy())


def test_setup_gives_one_optimizer_over_every_parameter_and_config_round_trips():
    m = _model()
    opt = aet.setup(torch.optim.Adam, m, lr=1e-3)
    assert isinstance(opt, torch.optim.Adam)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in m.parameters()}
    rebuilt = serialization.module_from_config(m.config())
    assert isinstance(rebuilt, MMDVAE) and rebuilt.config() == m.config()
    rebuilt.load_state_dict(m.state_dict())
    x = _x()
    assert torch.equal(rebuilt(x, rng=_gen(2)).μ, m(x, rng=_gen(2)).μ)


# ----------------------------------------------------------------------------------
# test/mmdvae.jl: kernel functions, logP_mmd_ratio, loss, gradient, training
# ----------------------------------------------------------------------------------

def test_reference_kernel_and_mmd_checks():
    x = torch.randn(10, 10)     # Julia randn(Float32, 10, 10): 10 points in 10-D
    y = torch.randn(20, 10)     # Julia randn(Float32, 10, 20): 20 points
    assert gaussian_kernel(x, x).shape == (10, 10) and gaussian_kernel(x, x).dtype == torch.float32
    assert gaussian_kernel(x, y).shape == (10, 20) and gaussian_kernel(x, y).dtype == torch.float32
    for value in (mmd_div(x, x), mmd_div(x, y)):
        assert value.shape == () and value.dtype == torch.float32


def test_reference_ratio_loss_gradient_and_training_checks():
    m = _model()
    x, x_out = _x(), _x(seed=1)
    r = logP_mmd_ratio(m, x)
    assert r.shape == () and r.dtype == torch.float32 and _f(r) > 0 and math.isfinite(_f(r))
    for args in ((x,), (x, x_out)):
        value = loss(m, *args)
        assert value.shape == () and value.dtype == torch.float32 and math.isfinite(_f(value))
        grads = torch.autograd.grad(loss(m, *args, λ=2.0), list(m.parameters()))
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    opt = aet.setup(torch.optim.Adam, m)
    for args in ((x,), (x, x_out)):
        assert isinstance(train_(m, *args, opt, loss_return=True), float)


# ----------------------------------------------------------------------------------
# The loss, term by term
# ----------------------------------------------------------------------------------

def _expected_loss(m, x_in, x_out, g, *, λ=1.0, α=0.0, n=50, ρ=1.0, ll_kwargs=None):
    out = m(x_in, latent=True, rng=g)                     # draw 1: the noise (B, L)
    p = torch.randn(n, out.z.shape[-1], generator=g)      # draw 2: the prior sample (n, L)
    ll = decoder_loglikelihood(x_out, out.z, m.vae.decoder, out.decoder, **(ll_kwargs or {})).mean()
    kl = encoder_kl(m.vae.encoder, out.encoder).mean()
    mmd = _direct_mmd(f64(out.z).reshape(-1, out.z.shape[-1]), f64(p), ρ)
    return -_f(ll) + (1 - α) * _f(kl) + (λ + α - 1) * mmd, _f(mmd)


@pytest.mark.parametrize("λ, α", [(1.0, 0.0), (3.0, 0.25), (100.0, 1.0), (0.5, -1.0)])
def test_loss_formula_term_by_term(λ, α):
    m = _model()
    x = _x()
    value = loss(m, x, λ=λ, α=α, n_latent_samples=7, rng=_gen())
    expected, mmd = _expected_loss(m, x, x, _gen(), λ=λ, α=α, n=7)
    assert mmd > 0.01
    assert _f(value) == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert torch.equal(loss(m, x, lambda_=λ, alpha=α, n_latent_samples=7, rng=_gen()), value)


def test_loss_with_x_in_x_out_kernel_kwargs_and_sigma():
    m = _model()
    x_in, x_out = _x(), _x(seed=5)
    value = loss(m, x_in, x_out, λ=4.0, α=1.0, kernel_kwargs={"ρ": 2.0}, σ=2.0, rng=_gen())
    expected, _ = _expected_loss(m, x_in, x_out, _gen(), λ=4.0, α=1.0, ρ=2.0, ll_kwargs={"σ": 2.0})
    assert _f(value) == pytest.approx(expected, rel=1e-5, abs=1e-4)
    ascii_keywords = loss(m, x_in, x_out, λ=4.0, α=1.0, kernel_kwargs={"rho": 2.0}, sigma=2.0, rng=_gen())
    assert torch.equal(ascii_keywords, value)
    # σ = 1 is the decoder's default: the same value as leaving σ out
    assert torch.equal(loss(m, x_in, σ=1.0, rng=_gen()), loss(m, x_in, rng=_gen()))
    with pytest.raises(TypeError, match="unexpected keyword"):
        loss(_model("bernoulli"), torch.rand(4, 10), σ=2.0)


def test_default_weights_give_the_vae_loss():
    m = _model()
    x = _x()
    # λ = 1, α = 0: the MMD term has weight 0, and the noise is the first draw of both
    torch.testing.assert_close(loss(m, x, rng=_gen()), vae_loss(m.vae, x, rng=_gen()), rtol=1e-6, atol=1e-6)


def test_draw_order_reproduces_a_julia_stream():
    m = _model()
    x = _x()
    value = loss(m, x, λ=2.0, α=1.0, rng=juliarng.seed_(42))
    g = juliarng.seed_(42)
    ε = juliarng.randn(g, 10, 2, dtype=np.float32)     # Julia: randn(Float32, 2, 10)
    p = juliarng.randn(g, 50, 2, dtype=np.float32)     # Julia: randn(Float32, 2, 50), the default n
    enc = m.vae.encoder(x)
    z = reparameterize(enc.μ, enc.logσ, noise=torch.from_numpy(ε))
    ll = decoder_loglikelihood(x, z, m.vae.decoder, m.vae.decoder(z)).mean()
    expected = -_f(ll) + 2.0 * _direct_mmd(f64(z), p)
    assert _f(value) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    # exactly those two draws were consumed, and logP_mmd_ratio draws 100 prior points
    rng = juliarng.seed_(42)
    loss(m, x, rng=rng)
    assert juliarng.randn(rng) == juliarng.randn(g)
    rng, g = juliarng.seed_(7), juliarng.seed_(7)
    ratio = logP_mmd_ratio(m, x, rng=rng)
    ε = juliarng.randn(g, 10, 2, dtype=np.float32)
    p = juliarng.randn(g, 100, 2, dtype=np.float32)
    z = reparameterize(enc.μ, enc.logσ, noise=torch.from_numpy(ε))
    ll = decoder_loglikelihood(x, z, m.vae.decoder, m.vae.decoder(z)).mean()
    assert _f(ratio) == pytest.approx(abs(_f(ll) / _direct_mmd(f64(z), p)), rel=1e-4)
    assert juliarng.randn(rng) == juliarng.randn(g)


@pytest.mark.parametrize("batch", ["one sample", "batch of one"])
def test_one_sample_or_a_batch_of_one_is_a_set_of_one_point(batch):
    m = _model()
    x = _x()[0] if batch == "one sample" else _x()[:1]
    assert m(x, latent=True).z.shape == ((2,) if x.ndim == 1 else (1, 2))
    value = loss(m, x, λ=3.0, α=1.0, n_latent_samples=6, rng=_gen())
    expected, _ = _expected_loss(m, x, x, _gen(), λ=3.0, α=1.0, n=6)
    assert value.shape == () and _f(value) == pytest.approx(expected, rel=1e-5, abs=1e-4)
    opt = aet.setup(torch.optim.Adam, m)
    assert math.isfinite(train_(m, x, opt, loss_kwargs={"λ": 3.0, "α": 1.0}, loss_return=True))


def test_gradients_reach_every_parameter_and_the_prior_sample_is_constant():
    m = _model()
    x = _x()
    value = loss(m, x, λ=5.0, α=0.5, rng=_gen())
    grads = torch.autograd.grad(value, list(m.parameters()))
    for (name, _), g in zip(m.named_parameters(), grads):
        assert bool(torch.isfinite(g).all()) and _f(g.abs().sum()) > 0, name
    # with α = 1 and λ = 1 only the reconstruction term is left; with λ > 1 the MMD moves the encoder
    g1 = torch.autograd.grad(loss(m, x, λ=1.0, α=1.0, rng=_gen()), list(m.vae.encoder.parameters()))
    g2 = torch.autograd.grad(loss(m, x, λ=50.0, α=1.0, rng=_gen()), list(m.vae.encoder.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(g1, g2))


# ----------------------------------------------------------------------------------
# train_
# ----------------------------------------------------------------------------------

def test_train_changes_parameters_and_returns_the_loss_before_the_step():
    m = _model()
    x, x_out = _x(), _x(seed=6)
    kwargs = {"λ": 10.0, "α": 1.0, "n_latent_samples": 20}
    expected = _f(loss(m, x, **kwargs, rng=_gen()))
    opt = aet.setup(torch.optim.Adam, m, lr=1e-2)
    before = [p.detach().clone() for p in m.parameters()]
    value = train_(m, x, opt, loss_kwargs=kwargs, loss_return=True, rng=_gen())
    assert isinstance(value, float) and value == pytest.approx(expected, rel=1e-6)
    assert all(not torch.equal(b, p) for b, p in zip(before, m.parameters()))
    expected = _f(loss(m, x, x_out, **kwargs, rng=_gen(9)))
    value = train_(m, x, x_out, opt, loss_kwargs={**kwargs, "rng": _gen(9)}, loss_return=True)
    assert value == pytest.approx(expected, rel=1e-6)


def test_train_verbose_and_loss_return(capsys):
    m = _model()
    opt = aet.setup(torch.optim.Adam, m)
    assert train_(m, _x(), opt) is None and capsys.readouterr().out == ""
    train_(m, _x(), opt, verbose=True)
    assert capsys.readouterr().out.startswith("Loss: ")
    v = train_(m, _x(), opt, verbose=True, loss_return=True)
    assert isinstance(v, float) and math.isfinite(v) and capsys.readouterr().out == ""


def test_train_with_a_custom_loss_function():
    m = _model()
    opt = aet.setup(torch.optim.Adam, m)
    seen = {}

    def my_loss(model, x, scale=1.0):
        seen["model"], seen["scale"] = model, scale
        return scale * loss(model, x)

    value = train_(m, _x(), opt, loss_function=my_loss, loss_kwargs={"scale": 0.5}, loss_return=True)
    assert math.isfinite(value)
    assert seen == {"model": m, "scale": 0.5}


def test_a_nan_loss_changes_nothing():
    m = _model()
    opt = aet.setup(torch.optim.Adam, m)
    train_(m, _x(), opt)  # create optimizer state
    before = kit.snapshot(m, opt)

    def bad_loss(model, x, **_):
        return loss(model, x) * float("nan")

    with pytest.raises(FloatingPointError, match="MMD-VAE loss is nan"):
        train_(m, _x(), opt, loss_function=bad_loss)
    kit.assert_unchanged(m, opt, before, "a step with a NaN loss")
    bad = _x()
    bad[2, 3] = float("inf")
    with pytest.raises(ValueError, match="x: expected finite values"):
        train_(m, bad, opt)
    with pytest.raises(ValueError, match="x_in: expected finite values"):
        train_(m, bad, _x(), opt)
    kit.assert_unchanged(m, opt, before, "a step on data that are not finite")


def test_training_on_toy_data_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) @ torch.randn(2, 10, generator=g)   # a 2-D plane in 10-D
    m = _model()
    opt = aet.setup(torch.optim.Adam, m, lr=2e-2)
    kwargs = {"λ": 10.0, "α": 1.0, "n_latent_samples": 64}

    def evaluate():
        with torch.no_grad():
            return _f(loss(m, x, **kwargs, rng=_gen(123)))

    start = evaluate()
    losses = [train_(m, x, opt, loss_kwargs=kwargs, loss_return=True, rng=g) for _ in range(60)]
    assert all(math.isfinite(v) for v in losses)
    assert evaluate() < 0.75 * start
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_the_documented_mmdvae_example_runs(capsys):
    page = (Path(__file__).resolve().parents[1] / "docs" / "mmdvae.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- mmdvae:start -->\s*```python\n(.*?)```\s*<!-- mmdvae:end -->", page, re.S)
    assert block, "docs/mmdvae.md has no mmdvae block"
    namespace: dict = {}
    exec(compile(block.group(1), "README mmdvae", "exec"), namespace)
    assert capsys.readouterr().out.count("epoch ") == 5
    assert namespace["ratio"].shape == () and _f(namespace["ratio"]) > 0
    assert 0 <= _f(namespace["mmd"]) <= 2


# ----------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------

def test_kernel_and_mmd_refuse_bad_input():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"x: expected a 2-D array of points \(n, D\).*got shape \(3,\)"):
        gaussian_kernel(np.zeros(3), x)
    with pytest.raises(ValueError, match=r"y: expected points with the 2 coordinates.*got 3"):
        gaussian_kernel(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x: expected at least one point"):
        gaussian_kernel(np.zeros((0, 2)), x)
    with pytest.raises(TypeError, match="x: expected a floating-point array"):
        gaussian_kernel(np.zeros((3, 2), dtype=np.int64), x)
    with pytest.raises(TypeError, match="arrays of different kinds"):
        gaussian_kernel(x, torch.zeros(3, 2))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ρ: expected a"):
            gaussian_kernel(x, x, ρ=bad)
    with pytest.raises(TypeError, match="ρ: expected a real number"):
        gaussian_kernel(x, x, ρ="1")
    with pytest.raises(TypeError, match="ρ and rho are the same keyword"):
        gaussian_kernel(x, x, ρ=1.0, rho=2.0)
    for bad in (2, -3, 1.0, True):
        with pytest.raises(ValueError, match="dims: expected the axis that indexes the points"):
            gaussian_kernel(x, x, dims=bad)
    with pytest.raises(TypeError, match="kernel: expected a function"):
        mmd_div(x, x, kernel="gaussian")
    with pytest.raises(TypeError, match="kernel_kwargs: expected a mapping"):
        mmd_div(x, x, kernel_kwargs=[("ρ", 1.0)])
    with pytest.raises(TypeError, match=r"gaussian_kernel\(\) has no keyword 'σ'; accepted: ρ, dims, rho"):
        mmd_div(x, x, kernel_kwargs={"σ": 1.0})


def test_model_loss_and_train_refuse_bad_input():
    m = _model()
    x = _x()
    with pytest.raises(TypeError, match="vae: expected a VAE"):
        MMDVAE(m.vae.encoder)
    with pytest.raises(TypeError, match=r"mmdvae: expected an MMDVAE, got VAE \(wrap it: MMDVAE\(vae\)\)"):
        loss(m.vae, x)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 10\) or one sample \(10,\), got \(4, 3\)"):
        loss(m, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 10\)"):
        m.reconstruct(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x_out: expected 10 samples like x_in"):
        loss(m, x, x[:4])
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_latent_samples: expected a positive integer"):
            loss(m, x, n_latent_samples=bad)
    with pytest.raises(ValueError, match="λ: expected a finite number"):
        loss(m, x, λ=float("nan"))
    with pytest.raises(TypeError, match="α: expected a real number"):
        loss(m, x, α="1")
    with pytest.raises(TypeError, match="λ and lambda_ are the same keyword"):
        loss(m, x, λ=1.0, lambda_=2.0)
    with pytest.raises(ValueError, match="σ: expected a positive number"):
        loss(m, x, σ=0.0)
    with pytest.raises(TypeError, match=r"loss\(\) has no keyword 'β'; accepted: σ, λ, α, n_latent_samples"):
        loss(m, x, β=1.0)
    with pytest.raises(TypeError, match="rng: expected None, a torch.Generator"):
        loss(m, x, rng=5)
    with pytest.raises(TypeError, match="kernel_kwargs: expected a mapping"):
        loss(m, x, kernel_kwargs=(1.0,))
    opt = aet.setup(torch.optim.Adam, m)
    with pytest.raises(TypeError, match="opt: expected a torch.optim.Optimizer"):
        train_(m, x, {"vae": opt})
    with pytest.raises(TypeError, match="loss_kwargs: expected a mapping"):
        train_(m, x, opt, loss_kwargs=[("λ", 1.0)])
    with pytest.raises(TypeError, match="mmdvae: expected an MMDVAE"):
        train_(m.vae, x, opt)
    with pytest.raises(TypeError, match="train_: expected"):
        train_(m, x, x, x, opt)
    with pytest.raises(TypeError, match="x: expected floating-point data"):
        train_(m, torch.zeros(4, 10, dtype=torch.int64), opt)

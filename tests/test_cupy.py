"""The CuPy backend, its fused kernels and their torch autograd bridge (needs a CUDA device).

Run on a GPU machine with ``python -m pytest -m cuda tests/test_cupy.py``; elsewhere
every test here is skipped with the reason "no CUDA device".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit import densities, infomaxvaes, juliarng, vaes
from autoencoder_toolkit.backends import as_numpy, get_backend, use_cupy_kernels
from autoencoder_toolkit.backends.cupy_backend import cuda_unavailable_reason
from autoencoder_toolkit.backends.dispatch import fused_kernels
from autoencoder_toolkit.outputs import GaussianLogParams

_WHY = cuda_unavailable_reason()
_TORCH_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(_WHY is not None, reason="no CUDA device")]
needs_torch_cuda = pytest.mark.skipif(not _TORCH_CUDA, reason="no CUDA device")  # e.g. a CPU build of torch

if _WHY is None:
    import cupy
else:  # pragma: no cover - only on machines without a GPU
    cupy = None


def _close(actual, expected, rtol: float = 1e-5, atol_scale: float = 1e-6) -> None:
    a = as_numpy(actual).astype(np.float64)
    e = as_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    scale = float(np.abs(e).max(initial=0.0))
    assert np.all(np.abs(a - e) <= rtol * np.abs(e) + atol_scale * scale + 1e-7), (a, e)


def _data(seed: int, b: int, d: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = (rng.random((b, d)) > 0.5).astype(dtype)
    p = rng.uniform(0.02, 0.98, (b, d)).astype(dtype)
    mu = rng.normal(size=(b, d)).astype(dtype)
    logs = rng.normal(scale=0.5, size=(b, d)).astype(dtype)
    return x, p, mu, logs


# ----------------------------------------------------------------------------------
# Backend
# ----------------------------------------------------------------------------------

def test_cupy_backend_basics():
    bk = get_backend("cupy")
    assert bk.name == "cupy" and bk.module is cupy
    a = bk.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert isinstance(a, cupy.ndarray) and get_backend(a) is bk
    np.testing.assert_array_equal(bk.to_numpy(a), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert bk.xp.__name__ == "array_api_compat.cupy"
    r1 = bk.standard_normal((4, 3), rng=bk.default_rng(5))
    r2 = bk.standard_normal((4, 3), rng=bk.default_rng(5))
    np.testing.assert_array_equal(bk.to_numpy(r1), bk.to_numpy(r2))
    # foreign generators give the NumPy backend's numbers
    for make in (lambda: np.random.default_rng(3), lambda: juliarng.MersenneTwister(3)):
        np.testing.assert_array_equal(bk.to_numpy(bk.standard_normal((5, 2), rng=make())),
                                      get_backend("numpy").standard_normal((5, 2), rng=make()))
        np.testing.assert_array_equal(bk.to_numpy(bk.permutation(7, rng=make())),
                                      get_backend("numpy").permutation(7, rng=make()))


@needs_torch_cuda
def test_dlpack_between_torch_and_cupy_shares_device_memory():
    t = torch.arange(8, dtype=torch.float32, device="cuda")
    c = get_backend("cupy").asarray(t)
    assert c.data.ptr == t.data_ptr()
    c[0] = 42.0
    torch.cuda.synchronize()
    assert float(t[0]) == 42.0
    back = get_backend("torch").asarray(c)
    assert back.data_ptr() == t.data_ptr() and back.is_cuda


# ----------------------------------------------------------------------------------
# Fused kernels = generic code = NumPy
# ----------------------------------------------------------------------------------

SIZES = [(1, 1), (3, 5), (64, 784), (257, 33), (1000, 7), (4, 3000)]


def _three_ways(fn, *np_arrays):
    """``fn`` on NumPy, on CuPy through the kernels, and on CuPy through the generic code."""
    cp_arrays = [cupy.asarray(a) for a in np_arrays]
    ref = fn(*np_arrays)
    fused = fn(*cp_arrays)
    with use_cupy_kernels(False):
        generic = fn(*cp_arrays)
    assert isinstance(fused, cupy.ndarray) and isinstance(generic, cupy.ndarray)
    return ref, fused, generic


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b,d", SIZES)
def test_kernels_match_the_generic_code(b, d, dtype):
    x, p, mu, logs = _data(b * 31 + d, b, d, dtype)
    sig = np.exp(logs).astype(dtype)
    cases = [
        (lambda x, p: densities.bernoulli_loglikelihood(x, p), (x, p)),
        (lambda x, m, s: densities.gaussian_loglikelihood(x, m, s, kind="log"), (x, mu, logs)),
        (lambda x, m, s: densities.gaussian_loglikelihood(x, m, s, kind="linear"), (x, mu, sig)),
        (lambda x, m: densities.gaussian_loglikelihood(x, m, kind="fixed", σ=0.7), (x, mu)),
        (lambda m, s: densities.gaussian_kl(m, s, log=True), (mu, logs)),
        (lambda m, s: densities.gaussian_kl(m, s, log=False), (mu, sig)),
        (lambda z, m, s: densities.gaussian_logdensity(z, m, s), (x, mu, logs)),
        (lambda m, s, e: densities.reparameterize_with_noise(m, s, e, log=True), (mu, logs, p)),
        (lambda m, s, e: densities.reparameterize_with_noise(m, s, e, log=False), (mu, sig, p)),
        (lambda a, g: densities.mutual_info_bound(a, g), (mu[:, 0].copy(), logs[:, 0].copy())),
        (lambda x, p: densities.bernoulli_loglikelihood(x, p, batched=False), (x, p)),
    ]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for fn, args in cases:
        ref, fused, generic = _three_ways(fn, *args)
        assert fused.dtype == dtype and fused.shape == np.shape(ref)
        _close(fused, generic, rtol=rtol, atol_scale=rtol / 5)
        _close(fused, ref, rtol=rtol, atol_scale=rtol / 5)


def test_kernels_are_used_for_cupy_and_skipped_otherwise():
    a = cupy.zeros((2, 3), cupy.float32)
    xp = get_backend("cupy").xp
    assert fused_kernels(xp, a, a) is not None
    assert fused_kernels(xp, a, a.astype(cupy.float64)) is None  # mixed dtypes: generic code
    assert fused_kernels(xp, a.astype(cupy.float16)) is None
    assert fused_kernels(xp, cupy.zeros((0, 3), cupy.float32)) is None
    with use_cupy_kernels(False):
        assert fused_kernels(xp, a) is None
    # the generic path still gives the right answer for float16 and empty batches
    x = cupy.full((2, 3), 0.5, cupy.float16)
    assert densities.bernoulli_loglikelihood(x, x).dtype == cupy.float16


def test_model_level_functions_on_cupy_arrays():
    x, p, mu, logs = _data(0, 16, 10)
    xc, pc, mc, sc = (cupy.asarray(a) for a in (x, p, mu, logs))
    dec = aet.BernoulliDecoder(10, 2, [4], ["relu"], "sigmoid")
    enc = aet.JointGaussianLogEncoder(10, 10, [4], ["relu"], "identity")
    from autoencoder_toolkit.outputs import Probabilities

    _close(aet.decoder_loglikelihood(xc, cupy.zeros((16, 2)), dec, Probabilities(pc)),
           aet.decoder_loglikelihood(x, np.zeros((16, 2)), dec, Probabilities(p)))
    _close(aet.encoder_kl(enc, GaussianLogParams(mc, sc)), aet.encoder_kl(enc, GaussianLogParams(mu, logs)))
    _close(aet.encoder_logposterior(xc, enc, GaussianLogParams(mc, sc)),
           aet.encoder_logposterior(x, enc, GaussianLogParams(mu, logs)))
    z = infomaxvaes.shuffle_latent(mc, seed=2)
    np.testing.assert_array_equal(cupy.asnumpy(z), infomaxvaes.shuffle_latent(mu, seed=2))
    _close(vaes.reparameterize(mc, sc, noise=pc), vaes.reparameterize(mu, logs, noise=p))


# ----------------------------------------------------------------------------------
# The autograd bridge
# ----------------------------------------------------------------------------------

def _cuda(*arrays, dtype=torch.float64, grad=True):
    return tuple(torch.tensor(a, dtype=dtype, device="cuda", requires_grad=grad) for a in arrays)


@needs_torch_cuda
def test_bridge_gradcheck_float64():
    from autoencoder_toolkit.backends import torch_bridge as tb

    x, p, mu, logs = _data(1, 4, 3, np.float64)
    sig = np.exp(logs)
    xt, pt, mt, st, sgt = _cuda(x, p, mu, logs, sig)
    noise = torch.randn(4, 3, dtype=torch.float64, device="cuda")
    checks = [
        (lambda a, b: tb.bernoulli_loglikelihood(a, b), (xt, pt)),
        (lambda a, b, c: tb.gaussian_loglikelihood(a, b, c, kind="log"), (xt, mt, st)),
        (lambda a, b, c: tb.gaussian_loglikelihood(a, b, c, kind="linear"), (xt, mt, sgt)),
        (lambda a, b: tb.gaussian_loglikelihood(a, b, kind="fixed", σ=0.8), (xt, mt)),
        (lambda a, b: tb.gaussian_kl(a, b, log=True), (mt, st)),
        (lambda a, b: tb.gaussian_kl(a, b, log=False), (mt, sgt)),
        (lambda a, b: tb.reparameterize(a, b, noise, log=True), (mt, st)),
        (lambda a, b: tb.reparameterize(a, b, noise, log=False), (mt, sgt)),
        (lambda a, b: tb.mutual_info_bound(a, b), (mt[:, 0].detach().clone().requires_grad_(),
                                                   st[:, 0].detach().clone().requires_grad_())),
        (lambda a, b: tb.bernoulli_loglikelihood(a, b, batched=False), (xt[0].detach().clone().requires_grad_(),
                                                                         pt[0].detach().clone().requires_grad_())),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_torch_cuda
def test_bridge_gradients_equal_torch_autograd_of_the_generic_formulas():
    from autoencoder_toolkit.backends import torch_bridge as tb

    x, p, mu, logs = _data(2, 128, 784)
    pairs = [
        (lambda a, b: tb.bernoulli_loglikelihood(a, b), lambda a, b: densities.bernoulli_loglikelihood(a, b), (x, p)),
        (lambda a, b, c: tb.gaussian_loglikelihood(a, b, c), lambda a, b, c: densities.gaussian_loglikelihood(a, b, c),
         (x, mu, logs)),
        (lambda a, b: tb.gaussian_kl(a, b), lambda a, b: densities.gaussian_kl(a, b), (mu, logs)),
        (lambda a, b: tb.mutual_info_bound(a[:, 0], b[:, 0]),
         lambda a, b: densities.mutual_info_bound(a[:, 0], b[:, 0]), (mu, logs)),
    ]
    for fused_fn, generic_fn, arrays in pairs:
        t1 = _cuda(*arrays, dtype=torch.float32)
        t2 = _cuda(*arrays, dtype=torch.float32)
        out1, out2 = fused_fn(*t1), generic_fn(*t2)
        _close(out1.detach(), out2.detach())
        w = torch.linspace(0.5, 1.5, out1.numel(), device="cuda").reshape(out1.shape)
        (out1 * w).sum().backward()
        (out2 * w).sum().backward()
        for a, b in zip(t1, t2):
            _close(a.grad, b.grad, atol_scale=1e-5)


def _cuda_infomax():
    enc = aet.JointGaussianLogEncoder(20, 3, [32, 32], ["relu", "relu"], "identity")
    dec = aet.BernoulliDecoder(20, 3, [32], ["relu"], "sigmoid")
    mi = infomaxvaes.MutualInfoChain(20, 3, [32], ["relu"], "identity")
    return infomaxvaes.InfoMaxVAE(enc * dec, mi).cuda()


@needs_torch_cuda
def test_losses_with_kernels_cupy_equal_the_torch_losses():
    model = _cuda_infomax()
    x = (torch.rand(128, 20, device="cuda") > 0.5).float()
    g = (lambda: torch.Generator(device="cuda").manual_seed(0))
    for fn, kw in ((infomaxvaes.infomaxloss, {"β": 0.5, "α": 2.0}), (infomaxvaes.miloss, {})):
        l_ref = fn(model.vae, model.mi, x, rng=g(), **kw)
        l_fused = fn(model.vae, model.mi, x, rng=g(), kernels="cupy", **kw)
        assert float(l_fused) == pytest.approx(float(l_ref), rel=1e-5, abs=1e-5)
        params = [p for p in model.parameters() if p.requires_grad]
        g_ref = torch.autograd.grad(l_ref, params, allow_unused=True)
        g_fused = torch.autograd.grad(l_fused, params, allow_unused=True)
        for a, b in zip(g_fused, g_ref):
            if a is None or b is None:
                assert a is None and b is None
                continue
            _close(a, b, rtol=1e-4, atol_scale=1e-5)
    l_ref = vaes.loss(model.vae, x, rng=g())
    l_fused = vaes.loss(model.vae, x, rng=g(), kernels="cupy")
    assert float(l_fused) == pytest.approx(float(l_ref), rel=1e-5)


@needs_torch_cuda
@pytest.mark.parametrize("fused", [False, True])
def test_training_with_kernels_cupy_follows_the_torch_training(fused):
    torch.manual_seed(0)
    a = _cuda_infomax()
    b = _cuda_infomax()
    b.load_state_dict(a.state_dict())
    x = (torch.rand(128, 20, device="cuda") > 0.5).float()
    opt_a = aet.setup(torch.optim.Adam, a, lr=1e-3)
    opt_b = aet.setup(torch.optim.Adam, b, lr=1e-3)
    for step in range(3):
        la = infomaxvaes.train_(a, x, opt_a, loss_return=True, fused=fused,
                                rng=torch.Generator(device="cuda").manual_seed(step))
        lb = infomaxvaes.train_(b, x, opt_b, loss_return=True, fused=fused, kernels="cupy",
                                rng=torch.Generator(device="cuda").manual_seed(step))
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-4)
    vae_opt = aet.setup(torch.optim.Adam, b.vae, lr=1e-3)
    value = vaes.train_(b.vae, x, vae_opt, loss_return=True, kernels="cupy")
    assert math.isfinite(value)


@needs_torch_cuda
def test_kernels_cupy_refuses_cpu_tensors_and_bad_names():
    model = _cuda_infomax().cpu()
    x = torch.rand(64, 20)
    with pytest.raises(ValueError, match="CUDA device"):
        infomaxvaes.infomaxloss(model.vae, model.mi, x, kernels="cupy")
    with pytest.raises(ValueError, match="expected None or 'cupy'"):
        vaes.loss(model.vae.cuda(), x.cuda(), kernels="triton")


# ----------------------------------------------------------------------------------
# Frozen models on CuPy
# ----------------------------------------------------------------------------------

@needs_torch_cuda
def test_frozen_models_on_cupy_match_torch(tmp_path):
    from tests.test_inference import _compare_infomax, _conv_infomax

    model = _conv_infomax(c=4)
    x = (torch.rand(64, 1, 28, 28) > 0.5).float()
    frozen = model.to_backend("cupy")
    mu = frozen.encode(cupy.asarray(x.numpy()))
    assert isinstance(mu, cupy.ndarray)
    with torch.no_grad():
        _close(mu, model.vae.encoder(x).μ)
    _compare_infomax(model, frozen, x, array_type=cupy.ndarray)
    path = frozen.save(tmp_path / "m.safetensors")
    from autoencoder_toolkit import inference

    loaded = inference.load(path, backend="cupy")
    np.testing.assert_array_equal(cupy.asnumpy(loaded.encode(x.numpy())), cupy.asnumpy(mu))
    with torch.no_grad():
        cuda_model = model.cuda()
        xc = x.cuda()
        enc = cuda_model.vae.encoder(xc)
    _close(cuda_model.to_backend("cupy").posterior(cupy.asarray(xc)).σ, torch.exp(enc.logσ))

"""AutoEncoderToolkit.jl's own ``test/infomaxvae.jl`` (tag v0.1.2), translated line by line.

One test per Julia ``@test``, named after it, with the Julia line number (``jl:NN``).
Each ``@testset`` builds its models afresh, as the Julia file does, through a fixture.
Where the Julia assertion is only about a type, the test also checks the value against
the reference's formula computed independently in float64 from the weights.

Julia lines and their Python counterparts (the setup lines appear in the fixtures):

* ``import AutoEncoderToolkit.InfoMaxVAEs``, ``import AutoEncoderToolkit.VAEs``,
  ``import AutoEncoderToolkit``: ``from autoencoder_toolkit import InfoMaxVAEs, VAEs`` and
  ``import autoencoder_toolkit as AutoEncoderToolkit`` (the Julia module names are the
  package's modules).
* ``import Flux``: ``torch``; ``Flux.relu``, ``Flux.identity``: ``"relu"``, ``"identity"``.
* ``import Random`` / ``Random.seed!(42)``: ``juliarng.seed_(42)``, the stream Julia's global
  generator gives, used for every ``randn(Float32, ...)`` of the file; the initial weights
  come from ``torch.manual_seed(42)`` (Julia draws them from the same global stream).
* ``randn(Float32, n, 10)`` (Julia's ``(n, 10)``, samples last): ``juliarng.randn(rng, 10, n,
  dtype=np.float32)``, ``(10, n)`` batch-first with the same numbers in the same memory.
* ``repeat([n_neuron], n_hidden)``: ``[n_neuron] * n_hidden``.
* ``cuda_functional = haskey(Pkg.project().dependencies, "CUDA")``: ``torch.cuda.is_available()``.
* ``import StatsBase``, ``import Distributions``, ``import Pkg``, ``using CUDA`` and the
  ``println`` lines have no counterpart: the Julia file does not use the first two, and the
  others only load packages or print.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import autoencoder_toolkit as AutoEncoderToolkit  # import AutoEncoderToolkit
from autoencoder_toolkit import InfoMaxVAEs, VAEs  # import AutoEncoderToolkit.InfoMaxVAEs, ...VAEs
from autoencoder_toolkit import juliarng  # import Random

cuda_functional = torch.cuda.is_available()  # haskey(Pkg.project().dependencies, "CUDA")

data_dim = 10  # size_input / data_dim
latent_dim = 2  # n_latent / latent_dim
n_hidden = 2
n_neuron = 10
hidden_activation = ["relu"] * n_hidden  # repeat([Flux.relu], n_hidden)
output_activation = "identity"  # Flux.identity


@pytest.fixture(autouse=True)
def _julia_seed():
    torch.manual_seed(42)
    with warnings.catch_warnings():  # the reference tests use a batch of 10 (the MI bound warns below 64)
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.fixture
def rng():
    return juliarng.seed_(42)  # Random.seed!(42)


def randn32(rng, *julia_dims):
    """Julia's ``randn(Float32, julia_dims...)``, batch-first (the dimensions reversed)."""
    return torch.from_numpy(juliarng.randn(rng, *reversed(julia_dims), dtype=np.float32))


def build_infomaxvae(vae_from_modules: str = "VAEs"):
    """The model of jl:76-105 (encoder and decoder reached through ``InfoMaxVAEs``) or jl:140-171 (``VAEs``)."""
    ns = InfoMaxVAEs if vae_from_modules == "InfoMaxVAEs" else VAEs
    encoder = ns.JointGaussianLogEncoder(data_dim, latent_dim, [n_neuron] * n_hidden, hidden_activation,
                                         output_activation)
    decoder = ns.SimpleGaussianDecoder(data_dim, latent_dim, [n_neuron] * n_hidden, hidden_activation,
                                       output_activation)
    vae = encoder * decoder if ns is InfoMaxVAEs else VAEs.VAE(encoder, decoder)
    mi_chain = InfoMaxVAEs.MutualInfoChain(data_dim, latent_dim, [n_neuron] * n_hidden, hidden_activation,
                                           output_activation)
    return InfoMaxVAEs.InfoMaxVAE(vae, mi_chain)


# -- independent float64 forward passes from the weights (the reference's formulas) -----------

_ACT = {"relu": lambda v: np.maximum(v, 0.0), "identity": lambda v: v}


def _dense(layer, v):
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    return _ACT[layer.activation.name](v @ w.T + b)


def _chain(chain, v):
    for layer in chain:
        v = _dense(layer, v)
    return v


def critic64(mi, x, z):
    """``g(x, z) = vec(mlp([data(x); latent(z)]))`` in float64."""
    h = np.concatenate([_dense(mi.data, np.asarray(x, np.float64)), _dense(mi.latent, np.asarray(z, np.float64))],
                       axis=1)
    return _chain(mi.mlp, h)[:, 0]


def bound64(mi, x, z, z_shuffle):
    """``mean g(x, z) − mean exp(g(x, z̃) − 1)`` in float64."""
    return critic64(mi, x, z).mean() - np.exp(critic64(mi, x, z_shuffle) - 1.0).mean()


def is_named_tuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def is_float32_scalar(value) -> bool:
    """Julia's ``isa(v, Float32)``: here a 0-d float32 tensor (it carries the gradient)."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.float32 and value.ndim == 0


# =============================================================================================
# @testset "MutualInfoChain struct" (jl:29-72)
# =============================================================================================

@pytest.fixture
def mi_chain():
    return InfoMaxVAEs.MutualInfoChain(data_dim, latent_dim, [n_neuron] * n_hidden, hidden_activation,
                                       output_activation)


def test_jl56_typeof_mi_chain_is_MutualInfoChain(mi_chain):
    # @test typeof(mi_chain) == InfoMaxVAEs.MutualInfoChain
    assert type(mi_chain) is InfoMaxVAEs.MutualInfoChain


def test_jl68_mi_chain_forward_is_Vector_Float32(mi_chain, rng):
    x = randn32(rng, data_dim, 10)  # randn(Float32, size_input, 10)
    z = randn32(rng, latent_dim, 10)  # randn(Float32, n_latent, 10)
    result = mi_chain(x, z)
    # @test isa(result, Vector{Float32})
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32 and result.ndim == 1
    np.testing.assert_allclose(result.detach().double().numpy(), critic64(mi_chain, x, z), rtol=1e-5, atol=1e-6)


def test_jl70_mi_chain_forward_has_length_10(mi_chain, rng):
    x = randn32(rng, data_dim, 10)
    z = randn32(rng, latent_dim, 10)
    # @test length(result) == 10
    assert len(mi_chain(x, z)) == 10


# =============================================================================================
# @testset "InfoMaxVAE struct" (jl:76-136): encoder and decoder reached through InfoMaxVAEs
# =============================================================================================

@pytest.fixture
def infomaxvae_struct():
    return build_infomaxvae("InfoMaxVAEs")


def test_jl109_typeof_infomaxvae_is_InfoMaxVAE_of_VAE_of_JointGaussianLogEncoder_SimpleGaussianDecoder(
        infomaxvae_struct):
    # @test typeof(infomaxvae) <: InfoMaxVAEs.InfoMaxVAE{<:VAEs.VAE{<:AutoEncoderToolkit.JointGaussianLogEncoder,
    #                                                            <:AutoEncoderToolkit.SimpleGaussianDecoder}}
    # Python classes have no type parameters: the same facts, field by field.
    assert isinstance(infomaxvae_struct, InfoMaxVAEs.InfoMaxVAE)
    assert isinstance(infomaxvae_struct.vae, VAEs.VAE)
    assert isinstance(infomaxvae_struct.vae.encoder, AutoEncoderToolkit.JointGaussianLogEncoder)
    assert isinstance(infomaxvae_struct.vae.decoder, AutoEncoderToolkit.SimpleGaussianDecoder)


def test_jl124_forward_latent_false_is_NamedTuple(infomaxvae_struct, rng):
    x = randn32(rng, data_dim, 10)
    result = infomaxvae_struct(x, latent=False)  # infomaxvae(x; latent=false)
    # @test isa(result, NamedTuple)
    assert is_named_tuple(result) and result._fields == ("μ",)


def test_jl125_forward_latent_false_values_are_Float32_matrices(infomaxvae_struct, rng):
    x = randn32(rng, data_dim, 10)
    result = infomaxvae_struct(x, latent=False)
    # @test all(isa.(values(result), AbstractMatrix{Float32}))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.ndim == 2 for v in result)
    assert tuple(result.μ.shape) == (10, data_dim)


def test_jl131_forward_latent_true_is_NamedTuple(infomaxvae_struct, rng):
    x = randn32(rng, data_dim, 10)
    result = infomaxvae_struct(x, latent=True)  # infomaxvae(x; latent=true)
    # @test isa(result, NamedTuple)
    assert is_named_tuple(result) and result._fields == ("vae", "mi")


def test_jl132_forward_latent_true_vae_is_NamedTuple(infomaxvae_struct, rng):
    x = randn32(rng, data_dim, 10)
    result = infomaxvae_struct(x, latent=True)
    # @test result.vae isa NamedTuple
    assert is_named_tuple(result.vae) and result.vae._fields == ("encoder", "z", "decoder")


def test_jl133_forward_latent_true_mi_is_Float32(infomaxvae_struct, rng):
    x = randn32(rng, data_dim, 10)
    # a Julia stream as rng: the noise and the permutation Julia's global generator gives
    draws = juliarng.seed_(7)
    result = infomaxvae_struct(x, latent=True, rng=draws)
    # @test result.mi isa Float32
    assert is_float32_scalar(result.mi)
    again = juliarng.seed_(7)
    ε = juliarng.randn(again, 10, latent_dim, dtype=np.float32)  # randn(Float32, L, B)
    perm = juliarng.shuffle(again, range(10))  # shuffle(1:B), 0-based here
    with torch.no_grad():
        enc = infomaxvae_struct.vae.encoder(x)
    z = enc.μ.double().numpy() + ε * np.exp(enc.logσ.double().numpy())
    np.testing.assert_allclose(result.mi.item(), bound64(infomaxvae_struct.mi, x, z, z[perm]), rtol=1e-4, atol=1e-5)


# =============================================================================================
# @testset "Variational Mutual Information" (jl:140-193): encoder and decoder reached through VAEs
# =============================================================================================

@pytest.fixture
def vmi_setup(rng):
    infomaxvae = build_infomaxvae("VAEs")
    x = randn32(rng, data_dim, 10)  # randn(Float32, data_dim, 10)
    z = randn32(rng, latent_dim, 10)  # randn(Float32, latent_dim, 10)
    z_shuffle = InfoMaxVAEs.shuffle_latent(z, rng=rng)  # InfoMaxVAEs.shuffle_latent(z)
    return infomaxvae, x, z, z_shuffle


def test_jl183_variational_mutual_info_of_mi_chain_is_Float32(vmi_setup):
    infomaxvae, x, z, z_shuffle = vmi_setup
    result = InfoMaxVAEs.variational_mutual_info(infomaxvae.mi, x, z, z_shuffle)
    # @test isa(result, Float32)
    assert is_float32_scalar(result)
    np.testing.assert_allclose(result.item(), bound64(infomaxvae.mi, x, z, z_shuffle), rtol=1e-4, atol=1e-5)


def test_jl188_variational_mutual_info_of_infomaxvae_is_Float32(vmi_setup):
    infomaxvae, x, z, z_shuffle = vmi_setup
    result = InfoMaxVAEs.variational_mutual_info(infomaxvae, x, z, z_shuffle)
    # @test isa(result, Float32)
    assert is_float32_scalar(result)
    np.testing.assert_allclose(result.item(), bound64(infomaxvae.mi, x, z, z_shuffle), rtol=1e-4, atol=1e-5)


def test_jl191_variational_mutual_info_encoding_x_is_Float32(vmi_setup):
    infomaxvae, x, _, _ = vmi_setup
    result = InfoMaxVAEs.variational_mutual_info(infomaxvae, x)
    # @test isa(result, Float32)
    assert is_float32_scalar(result) and np.isfinite(result.item())


# =============================================================================================
# @testset "Loss functions" (jl:197-244)
# =============================================================================================

@pytest.fixture
def loss_setup(rng):
    infomaxvae = build_infomaxvae("VAEs")
    return infomaxvae.vae, infomaxvae.mi, randn32(rng, data_dim, 10)


def _infomaxloss64(vae, mi, x, x_out, draws):
    """``−mean LL(x_out) + mean KL − I(x; z)`` in float64 with the draws of a Julia stream (β = α = 1)."""
    ε = juliarng.randn(draws, 10, latent_dim, dtype=np.float32)
    perm = juliarng.shuffle(draws, range(10))
    with torch.no_grad():
        enc = vae.encoder(x)
    μ, logσ = enc.μ.double().numpy(), enc.logσ.double().numpy()
    z = μ + ε * np.exp(logσ)
    x̂ = _chain(vae.decoder.decoder, z)
    ll = -0.5 * ((np.asarray(x_out, np.float64) - x̂) ** 2).sum(1) - 0.5 * data_dim * np.log(2 * np.pi)
    kl = 0.5 * (np.exp(2 * logσ) + μ ** 2 - 1 - 2 * logσ).sum(1)
    return -ll.mean() + kl.mean() - bound64(mi, x, z, z[perm])


def test_jl234_infomaxloss_is_Float32(loss_setup):
    vae, mi_chain, x = loss_setup
    result = InfoMaxVAEs.infomaxloss(vae, mi_chain, x, rng=juliarng.seed_(3))
    # @test isa(result, Float32)
    assert is_float32_scalar(result)
    np.testing.assert_allclose(result.item(), _infomaxloss64(vae, mi_chain, x, x, juliarng.seed_(3)), rtol=1e-4)


def test_jl237_infomaxloss_with_x_out_is_Float32(loss_setup):
    vae, mi_chain, x = loss_setup
    result = InfoMaxVAEs.infomaxloss(vae, mi_chain, x, x, rng=juliarng.seed_(3))
    # @test isa(result, Float32)
    assert is_float32_scalar(result)
    np.testing.assert_allclose(result.item(), _infomaxloss64(vae, mi_chain, x, x, juliarng.seed_(3)), rtol=1e-4)


def test_jl242_miloss_is_Float32(loss_setup):
    vae, mi_chain, x = loss_setup
    result = InfoMaxVAEs.miloss(vae, mi_chain, x, rng=juliarng.seed_(5))
    # @test isa(result, Float32)
    assert is_float32_scalar(result)
    draws = juliarng.seed_(5)
    ε = juliarng.randn(draws, 10, latent_dim, dtype=np.float32)
    perm = juliarng.shuffle(draws, range(10))
    with torch.no_grad():
        enc = vae.encoder(x)
    z = enc.μ.double().numpy() + ε * np.exp(enc.logσ.double().numpy())
    np.testing.assert_allclose(result.item(), -bound64(mi_chain, x, z, z[perm]), rtol=1e-4, atol=1e-5)


# =============================================================================================
# @testset "InfoMaxVAE gradient" (jl:248-311)
# Flux.gradient(f, model)[1] is a NamedTuple mirroring the model's fields; torch gives one
# gradient per parameter. The counterpart of `isa(grads[1], NamedTuple)`: a gradient for
# every parameter of the differentiated network, finite, keyed like the model's parameters.
# =============================================================================================

@pytest.fixture
def grad_setup(rng):
    infomaxvae = build_infomaxvae("VAEs")
    return infomaxvae, randn32(rng, data_dim, 10)


def _named_gradients(module, value):
    names, params = zip(*module.named_parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return dict(zip(names, grads))


def _mirrors(grads, module):
    return (set(grads) == {n for n, _ in module.named_parameters()}
            and all(g is not None and bool(torch.isfinite(g).all()) for g in grads.values()))


def test_jl290_gradient_of_infomaxloss_wrt_vae_is_NamedTuple(grad_setup):
    infomaxvae, x = grad_setup
    # grads = Flux.gradient(vae -> InfoMaxVAEs.infomaxloss(vae, infomaxvae.mi, x), infomaxvae.vae)
    grads = _named_gradients(infomaxvae.vae, InfoMaxVAEs.infomaxloss(infomaxvae.vae, infomaxvae.mi, x))
    # @test isa(grads[1], NamedTuple)
    assert _mirrors(grads, infomaxvae.vae)
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


def test_jl298_gradient_of_miloss_wrt_mi_is_NamedTuple(grad_setup):
    infomaxvae, x = grad_setup
    # grads = Flux.gradient(mi -> InfoMaxVAEs.miloss(infomaxvae.vae, mi, x), infomaxvae.mi)
    grads = _named_gradients(infomaxvae.mi, InfoMaxVAEs.miloss(infomaxvae.vae, infomaxvae.mi, x))
    # @test isa(grads[1], NamedTuple)
    assert _mirrors(grads, infomaxvae.mi)
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


def test_jl309_gradient_of_infomaxloss_with_x_out_wrt_vae_is_NamedTuple(grad_setup, rng):
    infomaxvae, x = grad_setup
    x_out = randn32(rng, data_dim, 10)  # randn(Float32, data_dim, 10)
    grads = _named_gradients(infomaxvae.vae, InfoMaxVAEs.infomaxloss(infomaxvae.vae, infomaxvae.mi, x, x_out))
    # @test isa(grads[1], NamedTuple)
    assert _mirrors(grads, infomaxvae.vae)


# =============================================================================================
# @testset "InfoMaxVAE training" (jl:320-404)
# =============================================================================================

def _train_checks(infomaxvae, device, rng):
    x = randn32(rng, data_dim, 10).to(device)  # randn(Float32, data_dim, 10) / CUDA.randn(...)
    # opt_infomaxvae = Flux.Train.setup(Flux.Optimisers.Adam(), infomaxvae)
    opt_infomaxvae = AutoEncoderToolkit.setup(torch.optim.Adam, infomaxvae)
    before = [p.detach().clone() for p in infomaxvae.parameters()]
    # L = InfoMaxVAEs.train!(infomaxvae, x, opt_infomaxvae; loss_return=true)
    L_same = InfoMaxVAEs.train_(infomaxvae, x, opt_infomaxvae, loss_return=True)
    x_out = randn32(rng, data_dim, 10).to(device)
    # L = InfoMaxVAEs.train!(infomaxvae, x, x_out, opt_infomaxvae; loss_return=true)
    L_diff = InfoMaxVAEs.train_(infomaxvae, x, x_out, opt_infomaxvae, loss_return=True)
    changed = all(not torch.equal(a, b) for a, b in zip(before, infomaxvae.parameters()))
    return L_same, L_diff, changed


def _two_numbers(L) -> bool:
    # @test L isa Tuple{<:Number,<:Number}
    return isinstance(L, tuple) and len(L) == 2 and all(isinstance(v, float) and np.isfinite(v) for v in L)


def test_jl363_train_cpu_same_input_and_output_returns_two_numbers(rng):
    L_same, _, changed = _train_checks(build_infomaxvae("VAEs"), "cpu", rng)
    assert _two_numbers(L_same)
    assert changed  # the reference's tests never check that train! changes the parameters


def test_jl371_train_cpu_different_input_and_output_returns_two_numbers(rng):
    _, L_diff, _ = _train_checks(build_infomaxvae("VAEs"), "cpu", rng)
    assert _two_numbers(L_diff)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_functional, reason="no CUDA device (Julia: `if cuda_functional`)")
def test_jl392_train_gpu_same_input_and_output_returns_two_numbers(rng):
    infomaxvae_gpu = build_infomaxvae("VAEs").to("cuda")  # Flux.gpu(infomaxvae)
    L_same, _, changed = _train_checks(infomaxvae_gpu, "cuda", rng)
    assert _two_numbers(L_same) and changed


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_functional, reason="no CUDA device (Julia: `if cuda_functional`)")
def test_jl400_train_gpu_different_input_and_output_returns_two_numbers(rng):
    infomaxvae_gpu = build_infomaxvae("VAEs").to("cuda")
    _, L_diff, _ = _train_checks(infomaxvae_gpu, "cuda", rng)
    assert _two_numbers(L_diff)

"""The deterministic autoencoder: AE, mse_loss, train_ and Encoder * Decoder.

The first tests port AutoEncoderToolkit.jl's ``test/ae.jl`` (v0.1.2; ``jl:NN`` is the
line of the Julia ``@test``); the others check values computed by hand from the
reference's formula, ``Flux.mse(x̂, x) = mean((x̂ − x)²)`` over every element.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit import AEs, aes
from autoencoder_toolkit.layers import Chain, Dense
from autoencoder_toolkit.models.architecture import load_model, save_model


def reference_ae():
    """``AEs.AE(AEs.Encoder(10, 2, [10, 10], [relu, relu], identity), AEs.Decoder(...))`` of test/ae.jl."""
    encoder = AEs.Encoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    decoder = AEs.Decoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    return AEs.AE(encoder, decoder)


def linear_ae(w_enc: np.ndarray, w_dec: np.ndarray) -> aes.AE:
    """An AE with ``z = x W_encᵀ`` and ``x̂ = z W_decᵀ`` (no bias, identity activations)."""
    enc = aet.Encoder(Chain(Dense.from_weights(w_enc, np.zeros(w_enc.shape[0], np.float32))))
    dec = aet.Decoder(Chain(Dense.from_weights(w_dec, np.zeros(w_dec.shape[0], np.float32))))
    return enc * dec


# -- test/ae.jl ---------------------------------------------------------------------------

def test_jl_ae_typeof_is_AE_of_Encoder_Decoder():
    ae = reference_ae()
    # @test typeof(ae) <: AEs.AE{<:AEs.Encoder,<:AEs.Decoder}
    assert isinstance(ae, AEs.AE) and isinstance(ae.encoder, AEs.Encoder) and isinstance(ae.decoder, AEs.Decoder)


def test_jl_ae_forward_latent_false():
    ae = reference_ae()
    result = ae(torch.randn(10, 10), latent=False)
    # @test isa(result, NamedTuple); @test result.decoder isa AbstractMatrix{Float32}
    assert result._fields == ("decoder",)
    assert result.decoder.dtype == torch.float32 and tuple(result.decoder.shape) == (10, 10)


def test_jl_ae_forward_latent_true():
    ae = reference_ae()
    result = ae(torch.randn(10, 10), latent=True)
    # @test isa(result, NamedTuple); @test result.encoder isa AbstractMatrix{Float32}; ... decoder ...
    assert result._fields == ("encoder", "decoder")
    assert tuple(result.encoder.shape) == (10, 2) and tuple(result.decoder.shape) == (10, 10)
    assert result.encoder.dtype == result.decoder.dtype == torch.float32


def test_jl_ae_mse_loss_same_and_different_output_are_Float32():
    ae = reference_ae()
    x, x_out = torch.randn(10, 10), torch.randn(10, 10)
    for value in (AEs.mse_loss(ae, x), AEs.mse_loss(ae, x, x_out)):
        # @test isa(result, Float32)
        assert value.dtype == torch.float32 and value.ndim == 0


def test_jl_ae_gradients_reach_every_parameter():
    ae = reference_ae()
    x, x_out = torch.randn(10, 10), torch.randn(10, 10)
    for value in (AEs.mse_loss(ae, x), AEs.mse_loss(ae, x, x_out)):
        # grads = Flux.gradient(ae -> AEs.mse_loss(ae, x), ae); @test isa(grads, Tuple)
        grads = torch.autograd.grad(value, list(ae.parameters()))
        assert len(grads) == len(list(ae.parameters())) and all(torch.isfinite(g).all() for g in grads)


# -- values by hand --------------------------------------------------------------------------

def test_mse_loss_is_the_mean_over_every_element():
    # z = x Wᵀ with W = [[1, 0, 0]], x̂ = z Vᵀ with V = [[1], [1], [0]]: x̂ = (x1, x1, 0)
    ae = linear_ae(np.array([[1.0, 0.0, 0.0]], np.float32), np.array([[1.0], [1.0], [0.0]], np.float32))
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])
    # squared errors: (0, 1, 9) and (0, 1, 1): sum 12 over 6 elements
    assert aes.mse_loss(ae, x).item() == pytest.approx(12.0 / 6.0)
    x_out = torch.zeros(2, 3)  # x̂ = (1, 1, 0) and (0, 0, 0): sum 2 over 6
    assert aes.mse_loss(ae, x, x_out).item() == pytest.approx(2.0 / 6.0)


def test_regulariser_receives_the_forward_pass():
    ae = linear_ae(np.array([[1.0, 0.0, 0.0]], np.float32), np.array([[1.0], [1.0], [0.0]], np.float32))
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])
    seen = []

    def reg(out, scale):
        seen.append(out)
        return scale * torch.sum(out.encoder ** 2)  # z = (1, 0): 1

    value = aes.mse_loss(ae, x, reg_function=reg, reg_kwargs={"scale": 3.0}, reg_strength=0.5)
    assert value.item() == pytest.approx(2.0 + 0.5 * 3.0 * 1.0)
    assert seen[0]._fields == ("encoder", "decoder")


def test_train_takes_one_adam_step_and_returns_the_loss_before_it():
    w_enc = np.array([[0.5, -0.5, 0.25]], np.float32)
    w_dec = np.array([[1.0], [0.5], [-1.0]], np.float32)
    ae = linear_ae(w_enc, w_dec)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])
    opt = aet.setup(torch.optim.SGD, ae, lr=0.1)
    # loss and gradient by hand: x̂ = x Wᵀ Vᵀ, L = mean((x̂ − x)²), dL/dV = 2/N (x̂ − x)ᵀ z
    xn = x.double().numpy()
    z = xn @ w_enc.T.astype(np.float64)
    r = z @ w_dec.T.astype(np.float64) - xn
    expected_loss = float(np.mean(r ** 2))
    grad_v = 2.0 / r.size * r.T @ z
    loss = aes.train_(ae, x, opt, loss_return=True)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    new_v = ae.decoder.decoder[0].weight.detach().double().numpy()
    np.testing.assert_allclose(new_v, w_dec - 0.1 * grad_v, rtol=1e-5, atol=1e-7)


def test_train_with_x_out_and_printing(capsys):
    ae = reference_ae()
    x, x_out = torch.randn(16, 10), torch.randn(16, 10)
    opt = aet.setup(torch.optim.Adam, ae, lr=1e-2)
    before = aes.mse_loss(ae, x, x_out).item()
    assert aes.train_(ae, x, x_out, opt, verbose=True) is None
    assert capsys.readouterr().out.startswith("Loss: ")
    losses = [aes.train_(ae, x, x_out, opt, loss_return=True) for _ in range(30)]
    assert losses[0] < before and losses[-1] < losses[0]


def test_encoder_times_decoder_composes_and_saves():
    ae = aet.Encoder(6, 2, [4], ["relu"], "identity") * aet.Decoder(6, 2, [4], ["relu"], "tanh")
    assert isinstance(ae, aet.AE)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    codes = ae.encode(x)
    assert isinstance(codes, np.ndarray) and codes.shape == (5, 2)
    np.testing.assert_allclose(ae.decode(codes), ae.reconstruct(x), rtol=1e-6)


def test_model_file_round_trip(tmp_path):
    ae = reference_ae()
    x = torch.randn(4, 10)
    restored = load_model(save_model(ae, tmp_path / "ae.safetensors"))
    assert isinstance(restored, aes.AE)
    torch.testing.assert_close(restored(x).decoder, ae(x).decoder)


def test_errors_name_the_argument_and_the_accepted_keywords():
    ae = reference_ae()
    x = torch.randn(4, 10)
    with pytest.raises(TypeError, match="encoder: expected a deterministic encoder"):
        aes.AE(aet.JointGaussianLogEncoder(10, 2, [4], ["relu"], "identity"), ae.decoder)
    with pytest.raises(TypeError, match="an Encoder and a Decoder make an AE"):
        _ = aet.Encoder(10, 2, [4], ["relu"], "identity") * aet.SimpleGaussianDecoder(10, 2, [4], ["relu"],
                                                                                      "identity")
    with pytest.raises(TypeError, match=r"mse_loss\(\) has no keyword 'β'; accepted: reg_function"):
        aes.mse_loss(ae, x, β=1.0)
    opt = aet.setup(torch.optim.Adam, ae)
    with pytest.raises(TypeError, match=r"loss_kwargs: mse_loss\(\) has no keyword 'β'"):
        aes.train_(ae, x, opt, loss_kwargs={"β": 1.0})
    with pytest.raises(ValueError, match="x_out"):
        aes.mse_loss(ae, x, torch.randn(3, 10))

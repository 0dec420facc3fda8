"""Julia-compatible streams wired into the models: same draws, in the reference's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoencoder_toolkit import juliarng, setup
from autoencoder_toolkit.decoders import decoder_loglikelihood
from autoencoder_toolkit.encoders import encoder_kl
from autoencoder_toolkit.infomaxvaes import infomaxloss, miloss, shuffle_latent, train_
from autoencoder_toolkit.vaes import loss, reparameterize


def test_global_stream_noise_is_julias_randn():
    # Julia 1.11 docstring: Random.seed!(123); randn() == -0.6457306721039767
    z = reparameterize(torch.zeros(1), torch.zeros(1), rng=juliarng.seed_(123))
    assert float(z[0]) == float(np.float32(-0.6457306721039767))
    # randn!(Xoshiro(123), zeros(5)) (Julia 1.11 docstring), rounded to Float32, in a (5, 1) batch
    published = [-0.6457306721039767, -1.4632513788889214, -1.6236037455860806, -0.21766510678354617,
                 0.4922456865251828]
    z = reparameterize(torch.zeros(5, 1), torch.zeros(5, 1), rng=juliarng.Xoshiro(123))
    np.testing.assert_array_equal(z[:, 0].numpy(), np.float32(published))


def test_shuffle_uses_julias_permutations():
    z = torch.arange(10.0).reshape(10, 1)
    # shuffle(Xoshiro(123), 1:10) == [5, 4, 2, 3, 6, 10, 8, 1, 9, 7] (Julia 1.11 docstring)
    s = shuffle_latent(z, rng=juliarng.Xoshiro(123))
    np.testing.assert_array_equal(s[:, 0].numpy(), np.array([5, 4, 2, 3, 6, 10, 8, 1, 9, 7]) - 1)
    # shuffle(MersenneTwister(1234), 1:10) == [6, 1, 10, 2, 3, 9, 5, 7, 4, 8] (Julia 1.10 docstring)
    s = shuffle_latent(z, rng=juliarng.MersenneTwister(1234, julia="1.10"))
    np.testing.assert_array_equal(s[:, 0].numpy(), np.array([6, 1, 10, 2, 3, 9, 5, 7, 4, 8]) - 1)


def test_seed_keyword_is_mersenne_twister_and_follows_the_default_version(monkeypatch):
    z = torch.arange(20.0).reshape(10, 2)
    expected = juliarng.shuffle(juliarng.MersenneTwister(1234), range(10))
    assert torch.equal(shuffle_latent(z, seed=1234), z[torch.as_tensor(expected)])
    monkeypatch.setattr(juliarng, "DEFAULT_JULIA", "1.10")
    s = shuffle_latent(z, seed=1234)
    np.testing.assert_array_equal(s[:, 0].numpy() / 2, np.array([6, 1, 10, 2, 3, 9, 5, 7, 4, 8]) - 1)


def _advance(stream, B, L, rounds):
    for _ in range(rounds):
        juliarng.randn(stream, B, L, dtype=np.float32)
        juliarng.shuffle(stream, range(B))
    return stream


def test_infomaxloss_draws_noise_then_permutation(small_infomax):
    vae, mi = small_infomax.vae, small_infomax.mi
    x = torch.rand(64, 10)
    value = infomaxloss(vae, mi, x, β=0.5, α=2.0, rng=juliarng.seed_(42))
    ref = juliarng.seed_(42)
    noise = torch.from_numpy(juliarng.randn(ref, 64, 2, dtype=np.float32))
    perm = torch.as_tensor(juliarng.shuffle(ref, range(64)))
    enc = vae.encoder(x)
    z = reparameterize(enc.μ, enc.logσ, noise=noise)
    dec = vae.decoder(z)
    I = mi(x, z).mean() - torch.exp(mi(x, z.detach()[perm]) - 1).mean()
    expected = -decoder_loglikelihood(x, z, vae.decoder, dec).mean() + 0.5 * encoder_kl(vae.encoder, enc).mean() - 2 * I
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-5)


def test_seeded_shuffle_leaves_the_noise_stream_alone(small_infomax):
    vae, mi = small_infomax.vae, small_infomax.mi
    x = torch.rand(64, 10)
    stream = juliarng.seed_(7)
    infomaxloss(vae, mi, x, seed=3, rng=stream)
    assert stream == _noise_only(juliarng.seed_(7), 64, 2)


def _noise_only(stream, B, L):
    juliarng.randn(stream, B, L, dtype=np.float32)
    return stream


@pytest.mark.parametrize("fused,rounds", [(False, 2), (True, 1)])
def test_train_consumes_the_stream_in_the_reference_order(small_infomax, fused, rounds):
    x = torch.rand(64, 10)
    opt = setup(torch.optim.Adam, small_infomax)
    stream = juliarng.seed_(42)
    train_(small_infomax, x, opt, rng=stream, fused=fused)
    # faithful: noise, shuffle (VAE step), noise, shuffle (critic step); fused: noise, shuffle
    assert stream == _advance(juliarng.seed_(42), 64, 2, rounds)


def test_miloss_and_vae_loss_draw_from_the_stream(small_infomax):
    x = torch.rand(64, 10)
    stream = juliarng.seed_(5)
    miloss(small_infomax.vae, small_infomax.mi, x, rng=stream)
    assert stream == _advance(juliarng.seed_(5), 64, 2, 1)
    stream = juliarng.seed_(5)
    loss(small_infomax.vae, x, rng=stream)
    assert stream == _noise_only(juliarng.seed_(5), 64, 2)

"""VAE core: reparameterize, the forward pass, loss and train_ (reference tests §9.2)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from autoencoder_toolkit import setup
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.decoders import (BernoulliDecoder, JointGaussianDecoder, JointGaussianLogDecoder,
                                          SimpleGaussianDecoder, SplitGaussianDecoder, SplitGaussianLogDecoder)
from autoencoder_toolkit.encoders import JointGaussianEncoder, JointGaussianLogEncoder, encoder_kl
from autoencoder_toolkit.outputs import VAEOutput
from autoencoder_toolkit.vaes import VAE, loss, reparameterize, train_



def test_reparameterize_shapes_and_forms():
    μ = torch.tensor([0.5, 0.2])
    logσ = torch.tensor([-0.1, -0.2])
    z = reparameterize(μ, logσ, log=True)
    assert z.shape == μ.shape and z.dtype == torch.float32
    z2 = reparameterize(μ, logσ.exp(), log=False)
    assert z2.shape == μ.shape
    # σ = 0 returns μ exactly
    assert torch.equal(reparameterize(μ, torch.full((2,), -math.inf)), μ)
    assert torch.equal(reparameterize(μ, torch.zeros(2), log=False), μ)


def test_reparameterize_uses_the_given_noise_and_generator():
    μ = torch.zeros(3, 2)
    logσ = torch.log(torch.full((3, 2), 2.0))
    ε = torch.arange(6.0).reshape(3, 2)
    torch.testing.assert_close(reparameterize(μ, logσ, noise=ε), 2 * ε)
    a = reparameterize(μ, logσ, rng=torch.Generator().manual_seed(5))
    b = reparameterize(μ, logσ, rng=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    expected = 2 * torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, expected)


def test_reparameterize_noise_is_a_gradient_constant():
    μ = torch.zeros(4, 2, requires_grad=True)
    logσ = torch.zeros(4, 2, requires_grad=True)
    z = reparameterize(μ, logσ, rng=torch.Generator().manual_seed(0))
    z.sum().backward()
    torch.testing.assert_close(μ.grad, torch.ones(4, 2))
    ε = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logσ.grad, ε)  # d/dlogσ (μ + ε e^logσ) = ε at logσ = 0


def _data():
    # The reference's synthetic data: polar points of radius <= 3 and a Gaussian bump.
    g = torch.Generator().manual_seed(7)
    r = 3 * torch.rand(5, generator=g)
    θ = 2 * math.pi * torch.rand(5, generator=g)
    x, y = r * torch.cos(θ), r * torch.sin(θ)
    z = 10 * torch.exp(-(x**2 + y**2))
    return torch.stack([x, y, z], dim=1)  # (5, 3): batch-first


def _vaes():
    enc = lambda: JointGaussianLogEncoder(3, 2, [3, 3], ["relu", "relu"], "identity")  # noqa: E731
    return {
        "bernoulli": enc() * BernoulliDecoder(3, 2, [3, 3], ["relu", "relu"], "sigmoid"),
        "simple": enc() * SimpleGaussianDecoder(3, 2, [3, 3], ["relu", "relu"], "identity"),
        "jointlog": enc() * JointGaussianLogDecoder(3, 2, [3, 3], ["relu", "relu"], "identity"),
        "splitlog": enc() * SplitGaussianLogDecoder(3, 2, [3, 3], ["relu", "relu"], [3, 3], ["relu", "relu"]),
        "joint": enc() * JointGaussianDecoder(3, 2, [3, 3], ["relu", "relu"], ["identity", "softplus"]),
        "split": enc() * SplitGaussianDecoder(3, 2, [3, 3], ["relu", "relu"], [3, 3], ["relu", "softplus"]),
    }


@pytest.mark.parametrize("kind", list(_vaes()))
def test_forward_loss_gradient_and_training_for_every_decoder(kind):
    vae = _vaes()[kind]
    assert isinstance(vae, VAE)
    data = _data()
    if kind == "bernoulli":
        data = torch.sigmoid(data)
    for x in (data[0], data):
        out = vae(x)
        for f in out:
            assert f.dtype == torch.float32 and f.shape == x.shape
        full = vae(x, latent=True)
        assert isinstance(full, VAEOutput)
        assert full.z.shape == ((2,) if x.ndim == 1 else (5, 2))
        for args in ((x,), (x, x)):
            value = loss(vae, *args)
            assert value.shape == () and value.dtype == torch.float32 and bool(torch.isfinite(value))
    grads = torch.autograd.grad(loss(vae, data), list(vae.parameters()), allow_unused=True)
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    trained = copy.deepcopy(vae)
    opt = setup(torch.optim.Adam, trained, lr=1e-2)
    before = [p.detach().clone() for p in trained.parameters()]
    losses = [train_(trained, data, opt, loss_return=True) for _ in range(3)]
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses)
    assert all(not torch.equal(b, p) for b, p in zip(before, trained.parameters()))


def test_beta_weighs_the_kl_term_exactly():
    vae = _vaes()["simple"]
    x = _data()
    l1 = loss(vae, x, rng=torch.Generator().manual_seed(3))
    l3 = loss(vae, x, β=3.0, rng=torch.Generator().manual_seed(3))
    kl = encoder_kl(vae.encoder, vae.encoder(x)).mean()
    torch.testing.assert_close(l3 - l1, 2 * kl, rtol=1e-5, atol=1e-5)
    assert torch.equal(loss(vae, x, beta=3.0, rng=torch.Generator().manual_seed(3)), l3)


def test_regularization_hook_receives_the_forward_outputs():
    vae = _vaes()["simple"]
    x = _data()
    seen = {}

    def reg(outputs, scale=1.0):
        seen["type"] = type(outputs)
        return scale * outputs.z.pow(2).sum()

    base = loss(vae, x, rng=torch.Generator().manual_seed(1))
    with_reg = loss(vae, x, reg_function=reg, reg_kwargs={"scale": 2.0}, reg_strength=0.5,
                    rng=torch.Generator().manual_seed(1))
    z = vae(x, latent=True, rng=torch.Generator().manual_seed(1)).z
    torch.testing.assert_close(with_reg - base, 0.5 * 2.0 * z.pow(2).sum(), rtol=1e-5, atol=1e-5)
    assert seen["type"] is VAEOutput


def test_an_encoder_and_decoder_of_different_data_sizes_are_refused_at_construction():
    enc = JointGaussianLogEncoder(10, 2, [8], ["relu"], "identity")
    for dec in (BernoulliDecoder(12, 2, [8], ["relu"], "sigmoid"),
                SimpleGaussianDecoder(12, 2, [8], ["relu"], "identity")):
        with pytest.raises(ValueError, match=r"decoder: produces samples of shape \(12,\) but the encoder takes "
                                             r"samples of shape \(10,\)"):
            enc * dec
    assert (enc * BernoulliDecoder(10, 2, [8], ["relu"], "sigmoid")).input_shape == (10,)


def test_joint_gaussian_encoder_works_inside_a_vae():
    enc = JointGaussianEncoder(3, 2, [4], ["relu"], ["identity", "softplus"])
    vae = enc * SimpleGaussianDecoder(3, 2, [4], ["relu"], "identity")
    value = loss(vae, _data())
    assert bool(torch.isfinite(value))
    opt = setup(torch.optim.Adam, vae)
    assert math.isfinite(train_(vae, _data(), opt, loss_return=True))


def test_train_loss_return_and_verbose(capsys):
    vae = _vaes()["simple"]
    opt = setup(torch.optim.Adam, vae)
    assert train_(vae, _data(), opt) is None
    assert capsys.readouterr().out == ""
    train_(vae, _data(), opt, verbose=True)
    assert capsys.readouterr().out.startswith("Loss: ")
    v = train_(vae, _data(), opt, verbose=True, loss_return=True)
    assert isinstance(v, float) and capsys.readouterr().out == ""


def test_train_with_x_in_and_x_out_scores_against_x_out():
    vae = _vaes()["simple"]
    x_in = _data()
    x_out = x_in + 1.0
    a = loss(vae, x_in, x_out, rng=torch.Generator().manual_seed(0))
    b = loss(vae, x_in, rng=torch.Generator().manual_seed(0))
    assert not torch.equal(a, b)
    opt = setup(torch.optim.Adam, vae)
    v = train_(vae, x_in, x_out, opt, loss_return=True, rng=torch.Generator().manual_seed(0))
    assert v == pytest.approx(float(a.detach()), rel=1e-6)


def test_training_is_deterministic_for_a_fixed_generator():
    def run():
        torch.manual_seed(0)
        vae = _vaes()["bernoulli"]
        opt = setup(torch.optim.Adam, vae, lr=1e-2)
        g = torch.Generator().manual_seed(11)
        x = torch.sigmoid(_data())
        return [train_(vae, x, opt, loss_return=True, rng=g) for _ in range(5)], vae

    (l1, v1), (l2, v2) = run(), run()
    assert l1 == l2
    for p, q in zip(v1.parameters(), v2.parameters()):
        assert torch.equal(p, q)


def test_a_failing_step_leaves_the_running_statistics_as_they_were():
    from autoencoder_toolkit.layers import Chain, Dense

    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU())
    enc = JointGaussianLogEncoder(trunk, Dense(8, 2), Dense(8, 2))
    vae = enc * BernoulliDecoder(6, 2, [8], ["relu"], "sigmoid")
    opt = setup(torch.optim.Adam, vae)
    train_(vae, torch.rand(16, 6), opt)
    running = {k: v.clone() for k, v in vae.state_dict().items() if "running" in k or "num_batches" in k}
    x = torch.rand(16, 6)
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="x"):
        train_(vae, x, opt)  # the forward pass in training mode updated the statistics before the check
    after = {k: v for k, v in vae.state_dict().items() if k in running}
    assert all(torch.equal(running[k], after[k]) for k in running)


def test_a_nan_loss_changes_nothing():
    vae = _vaes()["simple"]
    opt = setup(torch.optim.Adam, vae)
    train_(vae, _data(), opt)  # create optimizer state
    before = kit.snapshot(vae, opt)

    def bad_loss(v, x, **_):
        return loss(v, x) * float("nan")

    with pytest.raises(FloatingPointError, match="VAE loss is nan"):
        train_(vae, _data(), opt, loss_function=bad_loss)
    kit.assert_unchanged(vae, opt, before, "a step with a NaN loss")


def test_an_update_that_overflows_the_optimizer_state_changes_nothing():
    # A finite loss with a finite gradient of ~1e20: Adam's second moment (1 - 0.999)·g²
    # overflows float32, so the step is refused and undone.
    vae = _vaes()["simple"]
    opt = setup(torch.optim.Adam, vae)
    train_(vae, _data(), opt)  # create optimizer state
    before = kit.snapshot(vae, opt)

    def steep_loss(v, x, **_):
        return loss(v, x) * 1e20

    with pytest.raises(FloatingPointError, match="update of the VAE loss is not finite"):
        train_(vae, _data(), opt, loss_function=steep_loss)
    kit.assert_unchanged(vae, opt, before, "a step whose update overflows")
    assert all(p.grad is None for p in vae.parameters())

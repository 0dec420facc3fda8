"""InfoMaxVAE: the critic, the MI bound, the losses and train_ (reference tests §9.1, §10)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from autoencoder_toolkit import setup
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.decoders import BernoulliDecoder, SimpleGaussianDecoder, decoder_loglikelihood
from autoencoder_toolkit.encoders import JointGaussianLogEncoder, encoder_kl
from autoencoder_toolkit.infomaxvaes import (InfoMaxVAE, MutualInfoChain, infomaxloss, miloss,
                                             mutual_info_bound, shuffle_latent, train_,
                                             variational_mutual_info)
from autoencoder_toolkit.layers import Chain, Dense, Flatten, zeros32
from autoencoder_toolkit.outputs import InfoMaxVAEOutput, OptimizerPair, VAEOutput



def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.randn(64, 10, generator=gen(42))


def test_mutual_info_chain_default_constructor(x):
    mi = MutualInfoChain(10, 2, [10, 10], ["relu", "relu"], "identity")
    g = mi(x, torch.randn(64, 2))
    assert g.shape == (64,) and g.dtype == torch.float32
    # data and latent layers are trainable affine maps with identity activation
    assert isinstance(mi.data, Dense) and mi.data.weight.shape == (10, 10)
    assert isinstance(mi.latent, Dense) and mi.latent.weight.shape == (2, 2)
    assert mi.mlp[0].in_features == 12 and mi.mlp[-1].out_features == 1


def test_critic_is_mlp_of_concatenated_data_and_latent_features(x):
    mi = MutualInfoChain(10, 2, [5], ["relu"], "identity")
    z = torch.randn(64, 2)
    h = torch.cat([mi.data(x), mi.latent(z)], dim=1)
    torch.testing.assert_close(mi(x, z), mi.mlp(h).reshape(-1))


def test_image_shaped_size_input_flattens_the_data():
    mi = MutualInfoChain((1, 4, 4), 3, [8], ["relu"], "identity")
    assert isinstance(mi.data, Chain) and isinstance(mi.data[0], Flatten)
    assert mi(torch.rand(5, 1, 4, 4), torch.randn(5, 3)).shape == (5,)


def test_field_constructor_checks_sizes():
    with pytest.raises(ValueError, match=r"mlp expects 11 input features but data and latent layers give 8 \+ 2 = 10"):
        MutualInfoChain(Dense(8, 8), Dense(2, 2), Chain(Dense(11, 4, "relu"), Dense(4, 1)))


def test_infomaxvae_forward(small_infomax, x):
    out = small_infomax(x)
    assert out._fields == ("μ",) and out.μ.shape == (64, 10) and out.μ.dtype == torch.float32
    full = small_infomax(x, latent=True)
    assert isinstance(full, InfoMaxVAEOutput) and isinstance(full.vae, VAEOutput)
    assert full.mi.shape == () and full.mi.dtype == torch.float32


def test_variational_mutual_info_three_forms(small_infomax, x):
    z = torch.randn(64, 2)
    zs = shuffle_latent(z)
    a = variational_mutual_info(small_infomax.mi, x, z, zs)
    b = variational_mutual_info(small_infomax, x, z, zs)
    assert a.shape == () and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    c = variational_mutual_info(small_infomax, x, rng=gen(0))
    assert c.shape == () and bool(torch.isfinite(c))
    g1 = small_infomax.mi(x, z)
    g2 = small_infomax.mi(x, zs)
    torch.testing.assert_close(a, g1.mean() - torch.exp(g2 - 1).mean())


@pytest.mark.parametrize("c", [-1.0, 0.0, 1.0, 2.5])
def test_constant_critic_gives_c_minus_exp_c_minus_1(c, x):
    mi = MutualInfoChain(10, 2, [4], ["relu"], "identity", init=zeros32)
    with torch.no_grad():
        mi.mlp[-1].bias.fill_(c)
    z = torch.randn(64, 2)
    value = variational_mutual_info(mi, x, z, shuffle_latent(z))
    assert float(value.detach()) == pytest.approx(c - math.exp(c - 1), abs=1e-6)


def test_mutual_info_bound_maximum_is_zero_at_one():
    vals = [float(mutual_info_bound(np.full(8, c), np.full(8, c))) for c in np.linspace(-2, 3, 51)]
    assert max(vals) == pytest.approx(0.0, abs=1e-12)
    assert np.argmax(vals) == 30  # c = 1


def test_shuffle_latent_is_a_permutation_of_whole_codes():
    z = torch.arange(40.0).reshape(20, 2)
    s = shuffle_latent(z, rng=gen(3))
    assert s.shape == z.shape
    assert sorted(map(tuple, s.tolist())) == sorted(map(tuple, z.tolist()))
    assert torch.equal(s[:, 1] - s[:, 0], torch.ones(20))  # rows stay whole
    assert torch.equal(shuffle_latent(z, seed=4), shuffle_latent(z, seed=4))
    n = z.numpy()
    sn = shuffle_latent(n, seed=4)
    assert isinstance(sn, np.ndarray)
    np.testing.assert_array_equal(sn, shuffle_latent(z, seed=4).numpy())
    with pytest.raises(ValueError, match="z: expected a batch of codes"):
        shuffle_latent(torch.zeros(3))


def test_losses_are_float32_scalars(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    for value in (infomaxloss(vae, mi, x), infomaxloss(vae, mi, x, x), miloss(vae, mi, x)):
        assert value.shape == () and value.dtype == torch.float32 and bool(torch.isfinite(value))


def _parts(vae, mi, x, seed, β=1.0, α=1.0):
    """infomaxloss recomputed term by term from the same noise and permutation."""
    g = gen(seed)
    vo = vae(x, latent=True, rng=g)
    perm = torch.randperm(x.shape[0], generator=g)
    ll = decoder_loglikelihood(x, vo.z, vae.decoder, vo.decoder).mean()
    kl = encoder_kl(vae.encoder, vo.encoder).mean()
    g_joint = mi(x, vo.z)
    g_marg = mi(x, vo.z.detach()[perm])
    return ll, kl, g_joint, g_marg


def test_infomaxloss_formula_with_weights(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    value = infomaxloss(vae, mi, x, β=0.5, α=3.0, rng=gen(9))
    ll, kl, gj, gm = _parts(vae, mi, x, 9)
    expected = -ll + 0.5 * kl - 3.0 * (gj.mean() - torch.exp(gm - 1).mean())
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-5)
    assert torch.equal(infomaxloss(vae, mi, x, beta=0.5, alpha=3.0, rng=gen(9)), value)


def test_miloss_is_minus_the_bound(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    value = miloss(vae, mi, x, rng=gen(5))
    ll, kl, gj, gm = _parts(vae, mi, x, 5)
    torch.testing.assert_close(value, -(gj.mean() - torch.exp(gm - 1).mean()), rtol=1e-6, atol=1e-6)


def test_shuffled_term_gives_the_vae_no_gradient(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    params = list(vae.parameters())
    full = torch.autograd.grad(infomaxloss(vae, mi, x, α=2.0, rng=gen(1)), params)
    ll, kl, gj, gm = _parts(vae, mi, x, 1)
    without = -ll + kl - 2.0 * gj.mean()  # the exp(g(x, z̃) - 1) term removed
    ref = torch.autograd.grad(without, params)
    for a, b in zip(full, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # ...while it does change the value
    assert float((torch.exp(gm - 1).mean()).detach()) > 0
    # and the gradient does not depend on how the codes were shuffled
    kit.check_shuffled_codes_detached(small_infomax, x)


def test_miloss_gradient_reaches_every_critic_parameter_and_no_vae_parameter(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    kit.check_critic_loss_routing(small_infomax, x)  # finite gradients for the critic, none for the VAE
    grads = torch.autograd.grad(miloss(vae, mi, x), list(mi.parameters()))
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_n_samples_averages_over_independent_draws(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    value = infomaxloss(vae, mi, x, n_samples=3, rng=gen(2))
    g = gen(2)
    enc = vae.encoder(x)
    terms = []
    for _ in range(3):
        z = vae.encoder.reparameterize(enc, rng=g)
        perm = torch.randperm(64, generator=g)
        ll = decoder_loglikelihood(x, z, vae.decoder, vae.decoder(z)).mean()
        I = mi(x, z).mean() - torch.exp(mi(x, z.detach()[perm]) - 1).mean()
        terms.append((ll, I))
    kl = encoder_kl(vae.encoder, enc).mean()
    expected = -sum(t[0] for t in terms) / 3 + kl - sum(t[1] for t in terms) / 3
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="n_samples"):
        infomaxloss(vae, mi, x, n_samples=0)


def test_regularization_in_both_losses(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    reg = lambda out: out.z.abs().mean()  # noqa: E731
    base = infomaxloss(vae, mi, x, rng=gen(4))
    z = vae(x, latent=True, rng=gen(4)).z
    with_reg = infomaxloss(vae, mi, x, regularization=reg, reg_strength=2.0, rng=gen(4))
    torch.testing.assert_close(with_reg - base, 2.0 * z.abs().mean(), rtol=1e-5, atol=1e-5)
    m0 = miloss(vae, mi, x, rng=gen(4))
    m1 = miloss(vae, mi, x, regularization=reg, reg_strength=3.0, rng=gen(4))
    torch.testing.assert_close(m1 - m0, 3.0 * z.abs().mean(), rtol=1e-5, atol=1e-5)


def test_train_returns_two_floats_and_prints_nothing(small_infomax, x, capsys):
    opt = setup(torch.optim.Adam, small_infomax)
    out = train_(small_infomax, x, opt, loss_return=True, verbose=True)
    assert isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, float) for v in out)
    assert capsys.readouterr().out == ""
    assert train_(small_infomax, x, opt, verbose=True) is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("InfoMax Loss: ") and lines[1].startswith("MutualInfoChain Loss: ")
    assert train_(small_infomax, x, x, opt, loss_return=True)


def test_setup_gives_two_independent_optimizers(small_infomax):
    opt = setup(torch.optim.Adam, small_infomax, lr=5e-3)
    assert opt._fields == ("vae", "mi")
    vae_ids = {id(p) for g in opt.vae.param_groups for p in g["params"]}
    mi_ids = {id(p) for g in opt.mi.param_groups for p in g["params"]}
    assert vae_ids == {id(p) for p in small_infomax.vae.parameters()}
    assert mi_ids == {id(p) for p in small_infomax.mi.parameters()}
    assert opt.vae.param_groups[0]["lr"] == 5e-3


def test_each_step_updates_only_its_own_network(small_infomax, x):
    # opt.vae holds the VAE's parameters and opt.mi the critic's; each is stepped with its own loss's
    # gradient; with one optimizer switched off its network does not move and every parameter of the
    # other one does
    kit.check_optimizer_routing(small_infomax, x, every_parameter_moves=True)


def test_mi_step_sees_the_updated_vae(small_infomax, x):
    a = small_infomax
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    opt_a = setup(torch.optim.Adam, a, lr=1e-2)
    l_vae, l_mi = train_(a, x, opt_a, loss_return=True, rng=gen(8))

    # By hand, in the reference's order: VAE step, then the critic on the updated VAE.
    opt_b = setup(torch.optim.Adam, b, lr=1e-2)
    g = gen(8)
    lv = infomaxloss(b.vae, b.mi, x, rng=g)
    lv.backward(inputs=list(b.vae.parameters()))
    opt_b.vae.step()
    lm = miloss(b.vae, b.mi, x, rng=g)
    lm.backward(inputs=list(b.mi.parameters()))
    opt_b.mi.step()
    assert l_vae == float(lv.detach()) and l_mi == float(lm.detach())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)

    # The critic loss with the pre-update VAE differs.
    g = gen(8)
    infomaxloss(c.vae, c.mi, x, rng=g)
    stale = miloss(c.vae, c.mi, x, rng=g)
    assert float(stale.detach()) != l_mi


def test_a_nan_critic_loss_rolls_back_the_vae_step(small_infomax, x):
    m = small_infomax
    opt = setup(torch.optim.Adam, m)
    train_(m, x, opt)
    before = kit.snapshot(m, opt)

    def bad_miloss(vae, mi, xx, **kw):
        return miloss(vae, mi, xx, **kw) * float("inf")

    with pytest.raises(FloatingPointError, match="miloss is"):
        train_(m, x, opt, miloss_function=bad_miloss)
    kit.assert_unchanged(m, opt, before, "a step whose critic loss is infinite")


def test_train_is_atomic_wherever_it_fails(small_infomax, x):
    for fused in (False, True):  # NaN at every call of the model, an exception at each stage
        kit.check_step_atomic(small_infomax, x, step=kit.library_step(fused=fused))


def _toy_data(n=512, seed=0):
    """10-D observations of a 2-D latent through a fixed nonlinear map, plus noise."""
    g = gen(seed)
    s = torch.randn(n, 2, generator=g)
    w = torch.randn(2, 10, generator=g)
    return torch.tanh(s @ w) + 0.05 * torch.randn(n, 10, generator=g)


def test_training_raises_the_mi_estimate_and_lowers_the_vae_loss():
    torch.manual_seed(0)
    enc = JointGaussianLogEncoder(10, 2, [32, 32], ["relu", "relu"], "identity")
    dec = SimpleGaussianDecoder(10, 2, [32, 32], ["relu", "relu"], "identity")
    model = InfoMaxVAE(enc * dec, MutualInfoChain(10, 2, [32, 32], ["relu", "relu"], "identity"))
    data = _toy_data()
    g = gen(1)

    def evaluate():
        with torch.no_grad():
            mi = np.mean([float(variational_mutual_info(model, data, rng=gen(k))) for k in range(5)])
            l = np.mean([float(infomaxloss(model.vae, model.mi, data, rng=gen(k))) for k in range(5)])
        return mi, l

    mi0, l0 = evaluate()
    opt = setup(torch.optim.Adam, model, lr=3e-3)
    for step in range(300):
        idx = torch.randperm(512, generator=g)[:128]
        train_(model, data[idx], opt, rng=g)
    mi1, l1 = evaluate()
    assert mi1 > mi0 + 0.2, (mi0, mi1)
    assert l1 < l0 - 1.0, (l0, l1)


@pytest.mark.parametrize("fused", [False, True])
def test_a_finite_loss_with_a_non_finite_gradient_changes_nothing(small_infomax, x, fused):
    m = small_infomax
    opt = setup(torch.optim.Adam, m)
    train_(m, x, opt, fused=fused)
    before = kit.snapshot(m, opt)
    # value 0, gradient NaN (sqrt at 0)
    reg = lambda out: (out.z * 0).abs().sqrt().sum()  # noqa: E731
    with pytest.raises(FloatingPointError, match="gradient of infomaxloss"):
        train_(m, x, opt, fused=fused, infomaxloss_kwargs={"regularization": reg})
    kit.assert_unchanged(m, opt, before, "a step with a NaN gradient")
    assert all(p.grad is None for p in m.parameters())


# ----------------------------------------------------------------------------- float32 edge

def _edge_model(logsigma: float) -> InfoMaxVAE:
    """A 6-input, 2-latent InfoMax-VAE whose KL term alone sets the loss scale.

    ``μ = 0`` and ``logσ = logsigma`` for every input (identity trunk); the decoder and the
    critic ignore the codes (zero weights on z), so with ``logsigma = 43`` the loss is
    ``β·exp(86) ≈ 3.6e37`` for β = 1.638: finite, at the float32 overflow edge.
    """
    from .conftest import fixed_encoder

    enc = fixed_encoder(np.zeros((2, 6)), np.zeros(2), [logsigma, logsigma])
    dec = BernoulliDecoder(Chain(Dense.from_weights(np.zeros((6, 2)), np.full(6, 0.5), "sigmoid")))
    critic = MutualInfoChain(Dense.from_weights(np.eye(6) * 0.01, np.zeros(6)),
                             Dense.from_weights(np.zeros((2, 2)), np.zeros(2)),
                             Chain(Dense.from_weights(np.full((1, 8), 0.01), np.zeros(1))))
    return InfoMaxVAE(enc * dec, critic)


# The input the fuzzer found (3 samples of 6 values up to 49.77, β = 1.638, α = 1.5e-15).
_EDGE_X = torch.tensor([[49.77, 0.0, 12.5, 49.77, 3.0, 0.0],
                        [0.0, 49.77, 0.0, 7.25, 49.77, 1.0],
                        [25.0, 25.0, 49.77, 0.0, 0.0, 49.77]])
_EDGE_KW = {"β": 1.638, "α": 1.5e-15}


@pytest.mark.parametrize("fused", [False, True])
def test_float32_edge_a_finite_loss_whose_gradient_overflows_raises_and_changes_nothing(fused):
    m = _edge_model(43.0)
    value = float(infomaxloss(m.vae, m.mi, _EDGE_X, **_EDGE_KW, rng=gen(0)).detach())
    assert 1e37 < value < 3.4e38  # finite, at the edge: the property the fuzzer tripped on
    opt = setup(torch.optim.Adam, m)
    saved = kit.snapshot(m, opt)
    with pytest.raises(FloatingPointError, match="gradient of infomaxloss"):
        train_(m, _EDGE_X, opt, infomaxloss_kwargs=_EDGE_KW, rng=gen(0), fused=fused)
    kit.assert_unchanged(m, opt, saved, "the refused step")
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.parametrize("fused", [False, True])
def test_float32_edge_an_update_that_overflows_adam_state_raises_and_changes_nothing(fused):
    # logσ = 23: the loss (~1.6e20) and its gradient are finite, but Adam's second moment
    # (1 - 0.999)·g² overflows float32. Before, the step went through and left inf in
    # the optimizer state for good.
    m = _edge_model(23.0)
    opt = setup(torch.optim.Adam, m)
    saved = kit.snapshot(m, opt)
    with pytest.raises(FloatingPointError, match="update of the VAE"):
        train_(m, _EDGE_X, opt, infomaxloss_kwargs=_EDGE_KW, rng=gen(0), fused=fused)
    kit.assert_unchanged(m, opt, saved, "the refused step")


def test_float32_edge_an_update_that_overflows_a_parameter_raises_and_changes_nothing():
    m = _edge_model(2.0)
    opt = setup(torch.optim.SGD, m, lr=1e38)
    saved = kit.snapshot(m, opt)
    with pytest.raises(FloatingPointError, match="update of the VAE"):
        train_(m, _EDGE_X, opt, infomaxloss_kwargs=_EDGE_KW, rng=gen(0))
    kit.assert_unchanged(m, opt, saved, "the refused step")


@pytest.mark.parametrize("fused", [False, True])
def test_float32_edge_a_finite_step_below_the_edge_trains(fused):
    m = _edge_model(5.0)
    opt = setup(torch.optim.Adam, m)
    before = kit.snapshot(m)
    l_vae, l_mi = train_(m, _EDGE_X, opt, infomaxloss_kwargs=_EDGE_KW, rng=gen(0), fused=fused, loss_return=True)
    assert math.isfinite(l_vae) and math.isfinite(l_mi)
    assert kit.non_finite(m, opt) == []
    assert kit.differences(m, None, before) != []


# ----------------------------------------------------------------------------- a failing step changes nothing

def _trained_pair(small_infomax, x):
    m = small_infomax
    opt = setup(torch.optim.Adam, m)
    train_(m, x, opt)  # optimizer state exists
    return m, opt


def _bad_critic_loss(vae, mi, xx, **kw):
    raise RuntimeError("the user's critic loss failed")


@pytest.mark.parametrize("case", ["reg_strength", "unknown_key", "seed", "rng", "raising_function",
                                  "infomax_unknown_key", "n_samples"])
@pytest.mark.parametrize("fused", [False, True])
def test_a_failing_train_call_changes_nothing(small_infomax, x, case, fused):
    m, opt = _trained_pair(small_infomax, x)
    saved = kit.snapshot(m, opt)
    kwargs = {
        "reg_strength": dict(miloss_kwargs={"reg_strength": -1.0}),
        "unknown_key": dict(miloss_kwargs={"gamma": 1.0}),
        "seed": dict(miloss_kwargs={"seed": -3}),
        "rng": dict(miloss_kwargs={"rng": "x"}),
        "raising_function": dict(miloss_function=_bad_critic_loss),
        "infomax_unknown_key": dict(infomaxloss_kwargs={"gamma": 1.0}),
        "n_samples": dict(infomaxloss_kwargs={"n_samples": 0}),
    }[case]
    if fused and case == "raising_function":
        with pytest.raises(ValueError, match="custom infomaxloss_function or miloss_function need fused=False"):
            train_(m, x, opt, fused=True, **kwargs)
    else:
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            train_(m, x, opt, fused=fused, **kwargs)
    assert kit.differences(m, opt, saved) == []
    assert all(p.grad is None for p in m.parameters())


def test_unknown_keywords_name_the_public_function_and_list_the_accepted_ones(small_infomax, x):
    m, opt = _trained_pair(small_infomax, x)
    with pytest.raises(TypeError, match=r"miloss_kwargs: miloss\(\) has no keyword 'gamma'; accepted: regularization"):
        train_(m, x, opt, miloss_kwargs={"gamma": 1.0})
    with pytest.raises(TypeError, match=r"infomaxloss_kwargs: infomaxloss\(\) has no keyword 'gamma'"):
        train_(m, x, opt, infomaxloss_kwargs={"gamma": 1.0})


def test_optimizers_that_do_not_belong_to_the_model_are_refused(small_infomax, x):
    m, opt = _trained_pair(small_infomax, x)
    saved = kit.snapshot(m, opt)
    n = len(list(m.mi.parameters()))  # the critic's parameters, all foreign to the VAE
    with pytest.raises(ValueError, match=rf"opt\.vae: the optimizer does not belong to this model\.vae \({n} of its {n} "
                                         r"parameters are not parameters of this model\.vae\)"):
        train_(m, x, OptimizerPair(opt.mi, opt.vae))
    other = copy.deepcopy(m)
    with pytest.raises(ValueError, match="opt.vae: the optimizer does not belong to this model.vae"):
        train_(m, x, setup(torch.optim.Adam, other))
    empty = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    empty.param_groups.clear()
    with pytest.raises(ValueError, match="opt.mi: the optimizer does not belong to this model.mi .it holds none of"):
        train_(m, x, OptimizerPair(opt.vae, empty))
    assert kit.differences(m, opt, saved) == []


def test_an_optimizer_over_part_of_the_model_or_with_frozen_parameters_trains(small_infomax, x):
    m, _ = _trained_pair(small_infomax, x)
    decoder_only = OptimizerPair(torch.optim.Adam(m.vae.decoder.parameters(), lr=1e-3),
                                 torch.optim.Adam(m.mi.parameters(), lr=1e-3))
    encoder = [p.detach().clone() for p in m.vae.encoder.parameters()]
    decoder = [p.detach().clone() for p in m.vae.decoder.parameters()]
    train_(m, x, decoder_only, rng=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(encoder, m.vae.encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(decoder, m.vae.decoder.parameters()))
    m.vae.encoder.requires_grad_(False)  # frozen, but held by the optimizer setup builds
    train_(m, x, setup(torch.optim.Adam, m), rng=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(encoder, m.vae.encoder.parameters()))


def test_a_critic_of_another_latent_size_is_refused_by_the_loss(small_infomax, x):
    other = MutualInfoChain(10, 3, [10], ["relu"], "identity")
    with pytest.raises(ValueError, match="mi: the critic takes 3 latent dimensions but the VAE produces 2"):
        infomaxloss(small_infomax.vae, other, x)


# ---------------------------------------------------------------------------
# shuffled_gradient: the shuffled codes may carry the encoder's gradient
# ---------------------------------------------------------------------------


def _by_hand(vae, mi, x, seed, α, β=1.0, attached=True):
    """infomaxloss written out from its definition, with the shuffled codes attached (or detached).

    ``seed``: an integer, or a generator to draw the noise and then the permutation from.
    """
    g = gen(seed) if isinstance(seed, int) else seed
    vo = vae(x, latent=True, rng=g)
    perm = torch.randperm(x.shape[0], generator=g)
    z_shuffled = vo.z[perm] if attached else vo.z.detach()[perm]
    ll = decoder_loglikelihood(x, vo.z, vae.decoder, vo.decoder).mean()
    kl = encoder_kl(vae.encoder, vo.encoder).mean()
    bound = mi(x, vo.z).mean() - torch.exp(mi(x, z_shuffled) - 1).mean()
    return -ll + β * kl - α * bound


def _bound_by_hand(vae, mi, x, g):
    """The critic's bound at one noise draw and one permutation from ``g`` (the codes a constant)."""
    with torch.no_grad():
        z = vae(x, latent=True, rng=g).z
    perm = torch.randperm(x.shape[0], generator=g)
    return mi(x, z).mean() - torch.exp(mi(x, z[perm]) - 1).mean()


@pytest.fixture
def model64(small_infomax):
    return small_infomax.double()


def test_shuffled_gradient_adds_the_mismatched_pairs_term_to_the_encoder_only(model64, x):
    vae, mi = model64.vae, model64.mi
    x = x.double()
    enc_params, dec_params = list(vae.encoder.parameters()), list(vae.decoder.parameters())
    on = infomaxloss(vae, mi, x, α=3.0, β=0.5, rng=gen(4), shuffled_gradient=True)
    off = infomaxloss(vae, mi, x, α=3.0, β=0.5, rng=gen(4))
    assert torch.equal(on, off)  # the value is the same
    expected = _by_hand(vae, mi, x, 4, 3.0, 0.5, attached=True)
    torch.testing.assert_close(on, expected, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(on, enc_params + dec_params)
    ref = torch.autograd.grad(expected, enc_params + dec_params)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # against the default: the encoder's gradient changes by the shuffled term, the decoder's does not
    default = torch.autograd.grad(off, enc_params + dec_params)
    n_enc = len(enc_params)
    moved = [float((a - b).abs().max()) for a, b in zip(got[:n_enc], default[:n_enc])]
    assert max(moved) > 1e-3 * max(float(d.abs().max()) for d in default[:n_enc])
    for a, b in zip(got[n_enc:], default[n_enc:]):
        assert torch.equal(a, b)
    # the testing kit's check of detached codes sees the difference
    with pytest.raises(AssertionError, match="the shuffled codes give the VAE a gradient"):
        kit.check_shuffled_codes_detached(
            model64, x, infomaxloss=lambda *a, **k: infomaxloss(*a, shuffled_gradient=True, **k))


def test_shuffled_gradient_off_is_the_default_bit_for_bit(small_infomax, x):
    vae, mi = small_infomax.vae, small_infomax.mi
    params = list(vae.parameters())
    a = torch.autograd.grad(infomaxloss(vae, mi, x, α=2.0, rng=gen(3)), params)
    b = torch.autograd.grad(infomaxloss(vae, mi, x, α=2.0, rng=gen(3), shuffled_gradient=False), params)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    for fused in (False, True):
        m1, m2 = copy.deepcopy(small_infomax), copy.deepcopy(small_infomax)
        o1, o2 = setup(torch.optim.Adam, m1, lr=1e-2), setup(torch.optim.Adam, m2, lr=1e-2)
        for _ in range(3):
            train_(m1, x, o1, rng=gen(6), fused=fused)
            train_(m2, x, o2, rng=gen(6), fused=fused, shuffled_gradient=False)
        assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


@pytest.mark.parametrize("fused", [False, True])
def test_train_with_shuffled_gradient_steps_the_encoder_on_the_full_gradient(model64, x, fused):
    # plain SGD with learning rate 1: every parameter moves by minus its gradient
    x = x.double()
    before = copy.deepcopy(model64)
    opt = setup(torch.optim.SGD, model64, lr=1.0)
    train_(model64, x, opt, rng=gen(11), fused=fused, shuffled_gradient=True, infomaxloss_kwargs={"α": 2.0})
    vae_params, mi_params = list(before.vae.parameters()), list(before.mi.parameters())
    g = gen(11)
    expected = _by_hand(before.vae, before.mi, x, g, 2.0, attached=True)
    grads = torch.autograd.grad(expected, vae_params)
    for p0, p1, d in zip(vae_params, model64.vae.parameters(), grads):
        torch.testing.assert_close(p0 - p1, d, rtol=1e-9, atol=1e-12)
    # the critic's step is miloss's: at the same draws and the VAE before its step (fused), or at
    # fresh draws and the updated VAE (faithful); shuffled_gradient does not enter it
    if fused:
        critic_loss = -_bound_by_hand(before.vae, before.mi, x, gen(11))
    else:
        critic_loss = -_bound_by_hand(model64.vae, before.mi, x, g)
    for p0, p1, d in zip(mi_params, model64.mi.parameters(), torch.autograd.grad(critic_loss, mi_params)):
        torch.testing.assert_close(p0 - p1, d, rtol=1e-9, atol=1e-12)
    # ...while the encoder's step differs from the default's
    other = copy.deepcopy(before)
    train_(other, x, setup(torch.optim.SGD, other, lr=1.0), rng=gen(11), fused=fused, infomaxloss_kwargs={"α": 2.0})
    assert any(not torch.allclose(p, q, rtol=0, atol=1e-9)
               for p, q in zip(model64.vae.encoder.parameters(), other.vae.encoder.parameters()))


def test_shuffled_gradient_in_infomaxloss_kwargs_and_fused_losses(model64, x):
    from autoencoder_toolkit.fused import fused_losses

    x = x.double()
    a, b = copy.deepcopy(model64), copy.deepcopy(model64)
    train_(a, x, setup(torch.optim.SGD, a, lr=1.0), rng=gen(2), shuffled_gradient=True)
    train_(b, x, setup(torch.optim.SGD, b, lr=1.0), rng=gen(2), infomaxloss_kwargs={"shuffled_gradient": True})
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    losses = fused_losses(model64, x, None, {"α": 1.5, "rng": gen(9), "shuffled_gradient": True}, {})
    vae_params = list(model64.vae.parameters())
    got = torch.autograd.grad(losses.surrogate, vae_params)
    ref = torch.autograd.grad(_by_hand(model64.vae, model64.mi, x, 9, 1.5, attached=True), vae_params)
    for p, q in zip(got, ref):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_variational_mutual_info_with_shuffled_gradient(model64, x):
    x = x.double()
    params = list(model64.vae.encoder.parameters())
    on = variational_mutual_info(model64, x, rng=gen(1), shuffled_gradient=True)
    off = variational_mutual_info(model64, x, rng=gen(1))
    assert torch.equal(on, off)
    g = gen(1)
    vo = model64.vae(x, latent=True, rng=g)
    perm = torch.randperm(x.shape[0], generator=g)
    by_hand = model64.mi(x, vo.z).mean() - torch.exp(model64.mi(x, vo.z[perm]) - 1).mean()
    for p, q in zip(torch.autograd.grad(on, params), torch.autograd.grad(by_hand, params)):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_shuffled_gradient_is_checked_at_the_boundary(small_infomax, x):
    m = small_infomax
    vae, mi = m.vae, m.mi
    opt = setup(torch.optim.Adam, m)
    saved = kit.snapshot(m, opt)
    with pytest.raises(TypeError, match="shuffled_gradient: expected True or False, got 'yes'"):
        infomaxloss(vae, mi, x, shuffled_gradient="yes")
    with pytest.raises(TypeError, match="shuffled_gradient: expected True or False, got 1"):
        train_(m, x, opt, shuffled_gradient=1)
    for fused in (False, True):
        with pytest.raises(TypeError, match="shuffled_gradient: expected True or False, got None"):
            train_(m, x, opt, fused=fused, infomaxloss_kwargs={"shuffled_gradient": None})
        with pytest.raises(ValueError, match="infomaxloss_kwargs holds shuffled_gradient=False"):
            train_(m, x, opt, fused=fused, shuffled_gradient=True, infomaxloss_kwargs={"shuffled_gradient": False})
    with pytest.raises(ValueError, match="shuffled_gradient: .*custom infomaxloss_function"):
        train_(m, x, opt, shuffled_gradient=True, infomaxloss_function=lambda *a, **k: infomaxloss(*a, **k))
    z = torch.randn(64, 2)
    with pytest.raises(ValueError, match="shuffled_gradient: applies when the model encodes x itself"):
        variational_mutual_info(mi, x, z, z.flip(0), shuffled_gradient=True)
    from autoencoder_toolkit.training.distributed import DistributedContext, DistributedRNG

    # the stream of process 0 of 2 that permutes all processes' codes gathers them without their gradient
    gathering = DistributedRNG(0, DistributedContext(rank=0, world_size=2), global_shuffle=True)
    assert gathering.detaches_shuffled_codes
    assert not DistributedRNG(0, DistributedContext(rank=0, world_size=2)).detaches_shuffled_codes
    with pytest.raises(ValueError, match="shuffled_gradient: the rng shuffles the codes across processes"):
        infomaxloss(vae, mi, x, shuffled_gradient=True, rng=gathering)
    for fused in (False, True):
        with pytest.raises(ValueError, match="shuffled_gradient: the rng shuffles the codes across processes"):
            train_(m, x, opt, fused=fused, shuffled_gradient=True, rng=gathering)
    assert kit.differences(m, opt, saved) == []

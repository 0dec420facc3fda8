"""The fused training step: same gradients as infomaxloss/miloss at the same draws."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoencoder_toolkit import setup
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.decoders import BernoulliDecoder, JointGaussianLogDecoder
from autoencoder_toolkit.encoders import JointGaussianLogEncoder
from autoencoder_toolkit.fused import fused_losses
from autoencoder_toolkit.infomaxvaes import InfoMaxVAE, MutualInfoChain, infomaxloss, miloss, train_
from autoencoder_toolkit.layers import Dense

from .conftest import needs_compiler


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_model(decoder="bernoulli", plain_mlp=False):
    enc = JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
    if decoder == "bernoulli":
        dec = BernoulliDecoder(12, 3, [16], ["tanh"], "sigmoid")
    else:
        dec = JointGaussianLogDecoder(12, 3, [16], ["relu"], "identity")
    if plain_mlp:
        # an MLP that is not a Sequential starting with a Linear: the generic path
        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(15, 8)
                self.b = nn.Linear(8, 1)

            def forward(self, h):
                return self.b(torch.tanh(self.a(h)))

        mi = MutualInfoChain(Dense(12, 12), Dense(3, 3), MLP())
    else:
        mi = MutualInfoChain(12, 3, [8, 8], ["relu", "elu"], "identity")
    return InfoMaxVAE(enc * dec, mi)


@pytest.fixture
def x():
    return torch.rand(64, 12, generator=gen(0))


def _reference_grads(model, x, x_out, kw_vae, kw_mi, seed):
    vae, mi = model.vae, model.mi
    args = (x,) if x_out is None else (x, x_out)
    lv = infomaxloss(vae, mi, *args, rng=gen(seed), **kw_vae)
    gv = torch.autograd.grad(lv, list(vae.parameters()))
    lm = miloss(vae, mi, x, rng=gen(seed), **kw_mi)
    gm = torch.autograd.grad(lm, list(mi.parameters()))
    return lv, lm, list(gv) + list(gm)


CASES = [
    dict(decoder="bernoulli", kw={}, x_out=False, plain=False),
    dict(decoder="bernoulli", kw={"α": 5.0, "β": 0.3}, x_out=False, plain=False),
    dict(decoder="bernoulli", kw={"alpha": 0.0}, x_out=False, plain=False),
    dict(decoder="gaussian", kw={"α": 2.0}, x_out=True, plain=False),
    dict(decoder="gaussian", kw={"β": 2.0}, x_out=False, plain=True),
]


@pytest.mark.parametrize("case", CASES)
def test_fused_gradients_equal_the_two_losses_at_the_same_draws(case, x):
    model = make_model(case["decoder"], case["plain"])
    x_out = torch.rand(64, 12, generator=gen(1)) if case["x_out"] else None
    lv, lm, ref = _reference_grads(model, x, x_out, case["kw"], {}, seed=7)
    losses = fused_losses(model, x, x_out, dict(case["kw"], rng=gen(7)), {})
    torch.testing.assert_close(losses.vae_loss, lv, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(losses.mi_loss, lm, rtol=1e-6, atol=1e-6)
    got = torch.autograd.grad(losses.surrogate, list(model.vae.parameters()) + list(model.mi.parameters()))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_fused_regularization_in_both_steps(x):
    model = make_model()
    reg = lambda out: out.z.pow(2).mean()  # noqa: E731
    critic_reg = lambda out: sum(p.pow(2).sum() for p in model.mi.mlp.parameters())  # noqa: E731
    lv, lm, ref = _reference_grads(model, x, None, {"regularization": reg, "reg_strength": 0.5},
                                   {"regularization": critic_reg, "reg_strength": 0.1}, seed=3)
    losses = fused_losses(model, x, None, {"regularization": reg, "reg_strength": 0.5, "rng": gen(3)},
                          {"regularization": critic_reg, "reg_strength": 0.1})
    torch.testing.assert_close(losses.vae_loss, lv, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(losses.mi_loss, lm, rtol=1e-6, atol=1e-5)
    got = torch.autograd.grad(losses.surrogate, list(model.vae.parameters()) + list(model.mi.parameters()))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_fused_step_is_one_adam_step_of_each_optimizer_on_those_gradients(x):
    a = make_model()
    b = copy.deepcopy(a)
    opt_a = setup(torch.optim.Adam, a, lr=1e-2)
    l_vae, l_mi = train_(a, x, opt_a, fused=True, loss_return=True, rng=gen(5), infomaxloss_kwargs={"α": 2.0})
    opt_b = setup(torch.optim.Adam, b, lr=1e-2)
    lv, lm, grads = _reference_grads(b, x, None, {"α": 2.0}, {}, seed=5)
    params = list(b.vae.parameters()) + list(b.mi.parameters())
    for p, g in zip(params, grads):
        p.grad = g
    opt_b.vae.step()
    opt_b.mi.step()
    assert l_vae == pytest.approx(float(lv.detach()), rel=1e-6)
    assert l_mi == pytest.approx(float(lm.detach()), rel=1e-6, abs=1e-7)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fused_non_finite_loss_changes_nothing(x):
    model = make_model()
    opt = setup(torch.optim.Adam, model)
    train_(model, x, opt, fused=True)
    before = kit.snapshot(model, opt)
    with pytest.raises(FloatingPointError, match="infomaxloss is"):
        train_(model, x, opt, fused=True, infomaxloss_kwargs={"regularization": lambda o: o.z.sum() * float("nan")})
    kit.assert_unchanged(model, opt, before, "a fused step with a NaN loss")


def test_fused_refuses_what_it_cannot_do(x):
    model = make_model()
    opt = setup(torch.optim.Adam, model)
    with pytest.raises(ValueError, match="n_samples"):
        train_(model, x, opt, fused=True, infomaxloss_kwargs={"n_samples": 2})
    with pytest.raises(ValueError, match="custom infomaxloss_function"):
        train_(model, x, opt, fused=True, infomaxloss_function=lambda *a, **k: infomaxloss(*a, **k))
    with pytest.raises(ValueError, match="miloss_kwargs"):
        train_(model, x, opt, fused=True, miloss_kwargs={"seed": 3})
    with pytest.raises(TypeError, match=r"infomaxloss_kwargs: infomaxloss\(\) has no keyword 'kernel'; accepted"):
        train_(model, x, opt, fused=True, infomaxloss_kwargs={"kernel": 1})  # as the faithful step says


def test_fused_training_learns():
    torch.manual_seed(0)
    model = make_model()
    data = (torch.rand(512, 12, generator=gen(2)) > 0.5).float()
    data[:, 6:] = data[:, :6]  # redundant half: learnable structure
    opt = setup(torch.optim.Adam, model, lr=3e-3)
    g = gen(9)
    first = [train_(model, data[:128], opt, fused=True, loss_return=True, rng=g)[0] for _ in range(5)]
    for _ in range(200):
        idx = torch.randperm(512, generator=g)[:128]
        train_(model, data[idx], opt, fused=True, rng=g)
    last = [train_(model, data[:128], opt, fused=True, loss_return=True, rng=g)[0] for _ in range(5)]
    assert sum(last) / 5 < sum(first) / 5 - 1.0


@pytest.mark.parametrize("plain", [False, True])
def test_fused_gradients_with_shuffled_gradient_equal_infomaxloss_with_it(plain, x):
    # both critic paths (the shared first layer and the generic MLP): the VAE receives the gradient of
    # infomaxloss(..., shuffled_gradient=True), the critic that of miloss, at the same draws
    model = make_model("bernoulli", plain)
    kw = {"α": 3.0, "shuffled_gradient": True}
    lv, lm, ref = _reference_grads(model, x, None, kw, {}, seed=4)
    losses = fused_losses(model, x, None, dict(kw, rng=gen(4)), {})
    torch.testing.assert_close(losses.vae_loss, lv, rtol=1e-6, atol=1e-5)
    got = torch.autograd.grad(losses.surrogate, list(model.vae.parameters()) + list(model.mi.parameters()))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # and the encoder's gradient is not the default one
    _, _, default = _reference_grads(model, x, None, {"α": 3.0}, {}, seed=4)
    n_enc = len(list(model.vae.encoder.parameters()))
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(got[:n_enc], default[:n_enc]))


# ----------------------------------------------------------------------------------
# The stacked critic evaluation
# ----------------------------------------------------------------------------------

def test_stacked_codes_give_the_critic_values_of_separate_calls(x):
    """The fused step evaluates the critic's latent half on both code sets in one product;
    the values are those of two separate critic calls, ``mi(x, z)`` and ``mi(x, z[perm])``."""
    from autoencoder_toolkit.fused import _critic_pair

    model = make_model()
    z = torch.randn(64, 3, generator=gen(3))
    perm = torch.randperm(64, generator=gen(4))
    g_joint, g_marg = _critic_pair(model.mi, x, z, z[perm])
    torch.testing.assert_close(g_joint, model.mi(x, z).reshape(-1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_marg, model.mi(x, z[perm]).reshape(-1), rtol=1e-6, atol=1e-6)


def test_a_batch_normalising_latent_branch_is_not_stacked(x):
    """Stacking both code sets would change a batch normalisation's statistics: such a branch
    runs once per code set, as two critic calls do."""
    from autoencoder_toolkit.fused import _critic_pair

    mi = MutualInfoChain(Dense(12, 12), nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)),
                         nn.Sequential(nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1)))
    z = torch.randn(64, 3, generator=gen(3))
    shuffled = z[torch.randperm(64, generator=gen(4))] * 3.0 + 1.0  # other batch statistics
    g_joint, g_marg = _critic_pair(mi, x, z, shuffled)
    torch.testing.assert_close(g_joint, mi(x, z).reshape(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_marg, mi(x, shuffled).reshape(-1), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------
# compile=True
# ----------------------------------------------------------------------------------

@needs_compiler
def test_compiled_step_equals_the_eager_step_with_the_same_draws(x):
    """``train_(..., fused=True, compile=True)`` takes the eager step's noise and permutation
    from the same stream (a Julia stream here) and gives its losses, gradients and update
    within float32 rounding, step after step."""
    from autoencoder_toolkit.juliarng import Xoshiro, randn

    eager = make_model()
    compiled = copy.deepcopy(eager)
    opts = {id(m): setup(torch.optim.Adam, m, lr=1e-3) for m in (eager, compiled)}
    rng_e, rng_c = Xoshiro(42), Xoshiro(42)
    for _ in range(3):
        le = train_(eager, x, opts[id(eager)], fused=True, loss_return=True, rng=rng_e,
                    infomaxloss_kwargs={"α": 3.0})
        lc = train_(compiled, x, opts[id(compiled)], fused=True, compile=True, loss_return=True, rng=rng_c,
                    infomaxloss_kwargs={"α": 3.0})
        assert lc == pytest.approx(le, rel=1e-5, abs=1e-5)
    for pe, pc in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5)
    # both streams consumed the same draws: their next values agree
    assert randn(rng_e, 4).tolist() == randn(rng_c, 4).tolist()


def test_compile_is_refused_where_it_does_not_apply(x):
    model = make_model()
    opt = setup(torch.optim.Adam, model)
    with pytest.raises(ValueError, match="compile: compile=True compiles the fused step"):
        train_(model, x, opt, compile=True)
    with pytest.raises(TypeError, match="compile"):
        train_(model, x, opt, fused=True, compile="yes")


# ----------------------------------------------------------------------------------
# The Bernoulli term from the decoder's pre-activation
# ----------------------------------------------------------------------------------

def _plan_and_logits(model, z):
    from autoencoder_toolkit.fused import _bernoulli_from_logits, _decoder_plan

    plan = _decoder_plan(model.vae.decoder)
    assert plan is not None
    return plan, _bernoulli_from_logits


def test_the_pre_activation_form_agrees_with_the_reference_where_its_epsilon_does_not_matter():
    """``Σ x·a − log(1 + e^a)`` against the reference's ``Σ x·log(p + ε) + (1 − x)·log(1 − p + ε)``:
    with every pre-activation in [−4, 4] the two differ by less than ``ε/p`` per pixel."""
    from autoencoder_toolkit.decoders import decoder_loglikelihood

    model = make_model()
    z = torch.randn(64, 3, generator=gen(5))
    x = (torch.rand(64, 12, generator=gen(6)) < 0.5).float()
    plan, logits = _plan_and_logits(model, z)
    with torch.no_grad():  # pre-activations spread over [-3.9, 3.9]
        last = model.vae.decoder.decoder[-1]
        scale = 3.9 / float(logits(plan, z, x)[0].abs().max())
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    a, ll = logits(plan, z, x)
    assert float(a.abs().max()) == pytest.approx(3.9)
    ref = decoder_loglikelihood(x, z, model.vae.decoder, model.vae.decoder(z))
    torch.testing.assert_close(ll, ref, rtol=2e-5, atol=1e-5)


def test_the_pre_activation_form_keeps_the_log_likelihood_where_the_reference_floors_it():
    """A confidently wrong pixel (x = 1, a = −30): the reference's term is floored at
    log(ε) ≈ −15.94 (and its gradient vanishes); the pre-activation form gives −30, the
    Bernoulli log-likelihood itself, with gradient x − p ≈ 1."""
    from autoencoder_toolkit.decoders import EPS_FLOAT32, bernoulli_loglikelihood

    a = torch.tensor([[-30.0, 0.5]], requires_grad=True)
    x = torch.tensor([[1.0, 0.0]])
    reference = bernoulli_loglikelihood(x, torch.sigmoid(a))
    ours = (x * a - torch.nn.functional.softplus(a)).flatten(1).sum(1)
    floor = float(torch.log(torch.tensor(EPS_FLOAT32)))
    second = float(-torch.nn.functional.softplus(torch.tensor(0.5)))
    assert float(reference) == pytest.approx(floor + second, abs=1e-4)
    assert float(ours) == pytest.approx(-30.0 + second, abs=1e-4)
    (g,) = torch.autograd.grad(ours.sum(), a)
    assert float(g[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_decoders_that_are_not_a_plain_bernoulli_chain_keep_their_own_loglikelihood(x):
    from autoencoder_toolkit.fused import _decoder_plan

    class Scored(BernoulliDecoder):
        def loglikelihood(self, x, z, output, **kwargs):
            return torch.full((x.shape[0],), -7.0) + 0.0 * output.p.sum()

    enc = JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
    dec = Scored(12, 3, [16], ["relu"], "sigmoid")
    model = InfoMaxVAE(enc * dec, MutualInfoChain(12, 3, [8], ["relu"], "identity"))
    assert _decoder_plan(dec) is None
    assert _decoder_plan(make_model().vae.decoder) is not None
    assert _decoder_plan(BernoulliDecoder(12, 3, [16], ["relu"], "identity")) is None  # no sigmoid to split
    losses = fused_losses(model, x, None, {"rng": gen(1), "β": 0.0, "α": 0.0}, {})
    assert float(losses.vae_loss) == pytest.approx(7.0)

"""The testing kit (autoencoder_toolkit.testing): each check catches the broken model it is for, with a
message naming the problem, and passes the correct ones; the float64 reference is right; the strategies
draw valid models deterministically; the pytest fixtures work."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import autoencoder_toolkit as aet
from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.infomaxvaes import infomaxloss, miloss, shuffle_latent
from autoencoder_toolkit.layers import Chain, Dense
from autoencoder_toolkit.outputs import OptimizerPair
from autoencoder_toolkit.random import draws
from autoencoder_toolkit.testing import strategies

from .conftest import fixed_encoder
from .fuzzing import fuzz

ROOT = Path(__file__).resolve().parents[1]
D, L = 8, 2


@pytest.fixture(scope="module")
def model():
    return kit.example_model(D, L)


@pytest.fixture(scope="module")
def x(model):
    return kit.example_batch(model, 16)


# ----------------------------------------------------------------------------------
# Users' own training steps, correct and broken
# ----------------------------------------------------------------------------------

def hand_step(model, x, opt, *, rng=None):
    """A correct step written by hand: the VAE on infomaxloss, then the critic on miloss (no rollback)."""
    opt.vae.zero_grad()
    infomaxloss(model.vae, model.mi, x, rng=rng).backward(inputs=list(model.vae.parameters()))
    opt.vae.step()
    opt.mi.zero_grad()
    miloss(model.vae, model.mi, x, rng=rng).backward(inputs=list(model.mi.parameters()))
    opt.mi.step()


def one_backward_step(model, x, opt, *, rng=None):
    """Broken: one backward pass of both losses, so each optimizer also gets the other loss's gradient."""
    opt.vae.zero_grad()
    opt.mi.zero_grad()
    (infomaxloss(model.vae, model.mi, x, rng=rng) + miloss(model.vae, model.mi, x, rng=rng)).backward()
    opt.vae.step()
    opt.mi.step()


def checks_each_loss_step(model, x, opt, *, rng=None):
    """Broken: refuses a non-finite loss, but only after the VAE's update, which it keeps."""
    loss = infomaxloss(model.vae, model.mi, x, rng=rng)
    if not torch.isfinite(loss):
        raise FloatingPointError("infomaxloss is not finite")
    opt.vae.zero_grad()
    loss.backward(inputs=list(model.vae.parameters()))
    opt.vae.step()
    loss = miloss(model.vae, model.mi, x, rng=rng)
    if not torch.isfinite(loss):
        raise FloatingPointError("miloss is not finite")
    opt.mi.zero_grad()
    loss.backward(inputs=list(model.mi.parameters()))
    opt.mi.step()


def swallowing_step(model, x, opt, *, rng=None):
    """Broken: ignores a failing critic step."""
    aet.infomaxvaes.train_(model, x, opt, rng=rng, miloss_function=lambda *a, **k: _try_miloss(*a, **k))


def _try_miloss(vae, mi, x, **kw):
    try:
        return miloss(vae, mi, x, **kw)
    except kit.InjectedFault:
        return miloss(vae, mi, x, **kw) * 0.0


def all_parameters_in_opt_vae(model):
    """Broken: the VAE's optimizer is built over every parameter of the model."""
    return OptimizerPair(torch.optim.Adam(model.parameters(), lr=1e-2),
                         torch.optim.Adam(model.mi.parameters(), lr=1e-2))


def _infomaxloss_by_hand(vae, mi, x, *, rng=None, β=1.0, α=1.0, detach=True, sign=-1.0):
    vo = vae(x, latent=True, rng=rng)
    ll = aet.decoder_loglikelihood(x, vo.z, vae.decoder, vo.decoder).mean()
    kl = aet.encoder_kl(vae.encoder, vo.encoder).mean()
    shuffled = shuffle_latent(vo.z.detach() if detach else vo.z, rng=rng)
    info = mi(x, vo.z).mean() - torch.exp(mi(x, shuffled) - 1).mean()
    return -ll + β * kl + sign * α * info


def undetached_infomaxloss(vae, mi, x, **kw):
    """Broken: the codes are shuffled without detach."""
    return _infomaxloss_by_hand(vae, mi, x, detach=False, **kw)


def detached_infomaxloss(vae, mi, x, **kw):
    return _infomaxloss_by_hand(vae, mi, x, **kw)


# ----------------------------------------------------------------------------------
# The package's own steps pass every check
# ----------------------------------------------------------------------------------

def test_check_all_passes_the_package_step_on_an_infomaxvae_and_leaves_it_unchanged(model, x):
    before = kit.snapshot(model)
    kit.check_all(model, x)
    kit.assert_unchanged(model, None, before, "the checks")  # they work on copies


def test_the_fused_step_passes_routing_atomicity_and_determinism(model, x):
    step = kit.library_step(fused=True)
    kit.check_gradient_routing(model, x, step=step)
    kit.check_step_atomic(model, x, step=step)
    kit.check_determinism(model, x, step=step, rngs=[kit.RNGSpec("torch", 3), kit.RNGSpec("julia-mersenne", 3)])


def test_check_all_passes_a_vae(model, x):
    kit.check_all(model.vae, x)


def test_a_correct_hand_written_step_routes_its_gradients_and_is_deterministic(model, x):
    kit.check_optimizer_routing(model, x, step=hand_step, every_parameter_moves=True)
    kit.check_determinism(model, x, step=hand_step, rngs=[kit.RNGSpec("julia-xoshiro", 1)])


# ----------------------------------------------------------------------------------
# Each broken model is caught by the matching check, and the message names the problem
# ----------------------------------------------------------------------------------

def test_a_missing_detach_on_the_shuffled_codes_is_caught(model, x):
    kit.check_shuffled_codes_detached(model, x, infomaxloss=detached_infomaxloss)
    with pytest.raises(AssertionError, match=r"the shuffled codes give the VAE a gradient: .*vae\.encoder.*detach"):
        kit.check_shuffled_codes_detached(model, x, infomaxloss=undetached_infomaxloss)
    # ...also inside a training step that uses the loss
    with pytest.raises(AssertionError, match=r"shuffled codes give the VAE a gradient in the step.*opt\.vae.*detach"):
        kit.check_optimizer_routing(model, x, step=kit.library_step(infomaxloss_function=undetached_infomaxloss))


def test_an_optimizer_holding_the_wrong_parameters_is_caught(model, x):
    with pytest.raises(AssertionError, match=r"opt\.vae holds 8 parameter\(s\) of the critic \(mi\.data\.weight"):
        kit.check_optimizer_routing(model, x, step=hand_step, make_optimizers=all_parameters_in_opt_vae)

    def critic_misses_its_mlp(m):
        return OptimizerPair(torch.optim.Adam(m.vae.parameters()),
                             torch.optim.Adam([*m.mi.data.parameters(), *m.mi.latent.parameters()]))

    with pytest.raises(AssertionError, match=r"opt\.mi does not hold 4 trainable parameter\(s\) of the critic "
                                             r"\(mi\.mlp\.0\.weight"):
        kit.check_optimizer_routing(model, x, step=hand_step, make_optimizers=critic_misses_its_mlp)


def test_gradients_of_one_loss_reaching_the_other_optimizer_are_caught(model, x):
    with pytest.raises(AssertionError, match=r"opt\.mi was stepped with a gradient that is not the gradient of "
                                             r"miloss with respect to the critic: mi\."):
        kit.check_optimizer_routing(model, x, step=one_backward_step)


def test_a_critic_loss_that_differentiates_through_the_vae_is_caught(model, x):
    def attached_miloss(vae, mi, x, *, rng=None):
        z = vae(x, latent=True, rng=rng).z  # the VAE's graph stays attached
        return -(mi(x, z).mean() - torch.exp(mi(x, shuffle_latent(z, rng=rng)) - 1).mean())

    with pytest.raises(AssertionError, match=r"the critic's loss gives the VAE a gradient \(vae\.encoder"):
        kit.check_critic_loss_routing(model, x, miloss=attached_miloss)


def test_an_optimizer_that_moves_the_other_network_is_caught(model, x):
    def step_moving_the_critic_by_hand(m, data, opt, *, rng=None):
        hand_step(m, data, opt, rng=rng)
        with torch.no_grad():
            m.mi.mlp[0].bias.add_(1e-3)

    with pytest.raises(AssertionError, match=r"with opt\.mi\.step\(\) switched off, the step still changed "
                                             r"mi\.mlp\.0\.bias of the critic"):
        kit.check_optimizer_routing(model, x, step=step_moving_the_critic_by_hand)


def test_a_loss_that_goes_nan_after_an_update_is_caught(model, x):
    # the critic's loss turns NaN after the VAE's update: the update stays
    with pytest.raises(AssertionError, match=r"the step is not atomic: when the encoder's output was NaN at its 2nd "
                                             r"call in the step \(after opt\.vae had stepped\), it raised "
                                             r"FloatingPointError but changed .*vae\.encoder"):
        kit.check_step_atomic(model, x, step=checks_each_loss_step, faults=("nan",))
    # no check at all: NaN reaches the parameters
    with pytest.raises(AssertionError, match=r"not atomic: .* returned normally and left NaN or infinite values in "
                                             r"vae\.encoder"):
        kit.check_step_atomic(model, x, step=hand_step)


def test_a_step_that_swallows_a_users_error_is_caught(model, x):
    with pytest.raises(AssertionError, match=r"the step swallowed an error: when the encoder raised at its 2nd call "
                                             r"in the step \(after opt\.vae had stepped\)"):
        kit.check_step_atomic(model, x, step=swallowing_step, faults=("raise",))


def test_an_export_that_drops_a_bias_is_caught(model, x):
    def dropping_a_bias(m):
        frozen = m.to_backend("numpy")
        del frozen.vae.encoder.children["encoder"].children["0"].arrays["bias"]
        return frozen

    def zeroing_a_bias(m):
        frozen = m.to_backend("numpy")
        frozen.mi.children["mlp"].children["1"].arrays["bias"] = np.zeros(1, np.float32)
        return frozen

    kit.check_export_agreement(model, x)
    with pytest.raises(AssertionError, match=r"the export has no tensor vae\.encoder\.encoder\.0\.bias \(the torch "
                                             r"model has it\)"):
        kit.check_export_agreement(model, x, export=dropping_a_bias)
    with pytest.raises(AssertionError, match=r"the export's tensor mi\.mlp\.1\.bias differs"):
        kit.check_export_agreement(model, x, export=zeroing_a_bias)


def test_an_export_that_computes_something_else_is_caught(model, x):
    def numpy_of_a_retrained_model(m):
        other = kit.example_model(D, L, seed=5)
        frozen = other.to_backend("numpy")
        frozen.named_arrays = m.to_backend("numpy").named_arrays  # claims the right tensors
        return frozen

    with pytest.raises(AssertionError, match=r"the export disagrees with the torch model on encode\(x\): max abs "
                                             r"error"):
        kit.check_export_agreement(model, x, export=numpy_of_a_retrained_model)


class _NoiseFromTheGlobalGenerator(aet.JointGaussianLogEncoder):
    def reparameterize(self, output, rng=None, *, noise=None):
        return output.μ + torch.randn_like(output.μ) * torch.exp(output.logσ)


def test_a_model_drawing_outside_rng_is_caught(x):
    torch.manual_seed(0)
    model = aet.InfoMaxVAE(_NoiseFromTheGlobalGenerator(D, L, [16], ["relu"], "identity")
                           * aet.BernoulliDecoder(D, L, [16], ["relu"], "sigmoid"),
                           aet.MutualInfoChain(D, L, [16], ["relu"], "identity"))
    with pytest.raises(AssertionError, match=r"with the same rng \(torch generator seeded 0\), the loss gave .* "
                                             r"draws random numbers that rng does not control"):
        kit.check_determinism(model, x)
    with pytest.raises(AssertionError, match=r"infomaxloss drew 0 noise array\(s\) and 1 permutation\(s\) from rng"):
        kit.check_shuffled_codes_detached(model, x)
    with pytest.raises(AssertionError, match=r"the step drew 0 noise array\(s\) and 2 permutation\(s\) from rng"):
        kit.check_optimizer_routing(model, x)


class _NoConstantGaussian(aet.JointGaussianLogDecoder):
    def loglikelihood(self, x, z, output, **kw):  # forgets -D/2 log 2π
        return (-0.5 * (x - output.μ) ** 2 * torch.exp(-2 * output.logσ) - output.logσ).sum(-1)


def test_losses_that_differ_from_the_float64_reference_are_caught(model, x):
    kit.check_losses_match_reference(model, x, β=0.5, α=3.0)
    torch.manual_seed(1)
    wrong_ll = aet.InfoMaxVAE(aet.JointGaussianLogEncoder(D, L, [8], ["tanh"], "identity")
                              * _NoConstantGaussian(D, L, [8], ["tanh"], "identity"),
                              aet.MutualInfoChain(D, L, [8], ["relu"], "identity"))
    with pytest.raises(AssertionError, match=r"the log-likelihood \(decoder_loglikelihood\) differs from the float64 "
                                             r"reference"):
        kit.check_losses_match_reference(wrong_ll, torch.randn(16, D))

    def wrong_sign(vae, mi, data, **kw):
        return _infomaxloss_by_hand(vae, mi, data, sign=+1.0, **kw)

    with pytest.raises(AssertionError, match=r"infomaxloss gave .* the float64 reference .* the difference is in how "
                                             r"infomaxloss combines them"):
        kit.check_losses_match_reference(model, x, infomaxloss=wrong_sign)


def test_a_model_that_does_not_save_what_shapes_its_outputs_is_caught(model, x, tmp_path):
    class TemperedCritic(aet.MutualInfoChain):
        temperature = 1.0

        def forward(self, data, z):
            return super().forward(data, z) / self.temperature

    torch.manual_seed(2)
    critic = TemperedCritic(D, L, [8], ["relu"], "identity")
    critic.temperature = 2.0  # not part of the configuration: lost on saving
    tempered = aet.InfoMaxVAE(model.vae, critic)
    with pytest.raises(AssertionError, match=r"the model read back computes a different 'mi' in its forward pass"):
        kit.check_checkpoint_round_trip(tempered, x, directory=tmp_path)

    def save_rounded(m, path):
        copy = kit.example_model(D, L)
        copy.load_state_dict(m.state_dict())
        with torch.no_grad():
            copy.mi.latent.weight.mul_(1 + 1e-6)
        return aet.checkpoints.save_model(copy, path)

    with pytest.raises(AssertionError, match=r"the tensors read back: mi\.latent\.weight differs"):
        kit.check_checkpoint_round_trip(model, x, save=save_rounded)


def test_checks_leave_a_model_with_batch_statistics_as_it_was(x, tmp_path):
    torch.manual_seed(3)
    trunk = Chain(Dense(D, 6, "relu"), torch.nn.BatchNorm1d(6), torch.nn.Dropout(0.5))
    enc = aet.JointGaussianLogEncoder(trunk, Dense(6, L), Dense(6, L))
    model = aet.InfoMaxVAE(enc * aet.BernoulliDecoder(D, L, [6], ["relu"], "sigmoid"),
                           aet.MutualInfoChain(D, L, [6], ["relu"], "identity"))
    assert model.training
    before = kit.snapshot(model)
    kit.check_export_agreement(model, x)  # compared in evaluation mode, as the frozen model computes
    kit.check_checkpoint_round_trip(model, x, directory=tmp_path)
    kit.assert_unchanged(model, None, before, "the checks")  # the running statistics included


# ----------------------------------------------------------------------------------
# The float64 reference, against hand-computed values and the parity suite's oracle
# ----------------------------------------------------------------------------------

def _linear_model(logsigma: float, critic_bias: float) -> aet.InfoMaxVAE:
    """μ = x W, constant logσ; a decoder giving μ = 0, logσ = 0; a constant critic."""
    w = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, -1.0, 0.0]])
    enc = fixed_encoder(w, np.zeros(2), [logsigma, logsigma])
    zeros = Dense.from_weights(np.zeros((4, 2)), np.zeros(4))
    dec = aet.JointGaussianLogDecoder(Chain(Dense.from_weights(np.eye(2), np.zeros(2))), zeros,
                                      Dense.from_weights(np.zeros((4, 2)), np.zeros(4)))
    critic = aet.MutualInfoChain(Dense.from_weights(np.eye(4), np.zeros(4)), Dense.from_weights(np.eye(2), np.zeros(2)),
                                 Chain(Dense.from_weights(np.zeros((1, 6)), [critic_bias])))
    return aet.InfoMaxVAE(enc * dec, critic)


def test_the_reference_gives_hand_computed_values():
    m = _linear_model(math.log(2.0), 1.5)
    ref = kit.Reference(m)
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 2.0], [2.0, 0.0, 0.0, -2.0]])
    noise = np.array([[0.5, -1.0], [0.0, 0.0], [1.0, 2.0]])
    mu = x @ np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, -1.0, 0.0]]).T
    log_sigma = float(np.float32(math.log(2.0)))  # as the float32 weights hold it
    enc = ref.encode(x)
    np.testing.assert_allclose(enc[0], mu, rtol=1e-12)
    np.testing.assert_allclose(ref.codes(enc, noise), mu + math.exp(log_sigma) * noise, rtol=1e-12)
    # KL: ½ (σ² + μ² − 1 − 2 log σ) per dimension
    np.testing.assert_allclose(ref.kl(enc), 0.5 * (2 * (math.exp(2 * log_sigma) - 1 - 2 * log_sigma)
                                                   + (mu ** 2).sum(1)), rtol=1e-12)
    # Gaussian with μ = 0, logσ = 0: −½ Σ x² − 2 log 2π
    ll = ref.loglikelihood(x, ref.decode(ref.codes(enc, noise)))
    np.testing.assert_allclose(ll, -0.5 * (x ** 2).sum(1) - 2 * math.log(2 * math.pi), rtol=1e-12)
    # a constant critic c: Î = c − exp(c − 1)
    assert ref.mutual_info(x, ref.codes(enc, noise), [2, 0, 1]) == pytest.approx(1.5 - math.exp(0.5), rel=1e-12)
    terms = ref.infomaxloss(x, noise, [2, 0, 1], β=0.5, α=2.0)
    assert terms.value == pytest.approx(-np.mean(ll) + 0.5 * np.mean(ref.kl(enc)) - 2 * (1.5 - math.exp(0.5)),
                                        rel=1e-12)
    # ...and the library agrees with it at the same draws
    kit.check_losses_match_reference(m, x.astype(np.float32), β=0.5, α=2.0)


def test_the_reference_refuses_what_it_does_not_cover():
    conv = aet.JointGaussianLogEncoder(Chain(torch.nn.Conv1d(1, 1, 3), aet.Flatten(), Dense(2, 3)), Dense(3, L),
                                       Dense(3, L))
    model = aet.InfoMaxVAE(conv * aet.BernoulliDecoder(4, L, [3], ["relu"], "sigmoid"),
                           aet.MutualInfoChain(4, L, [3], ["relu"], "identity"))
    with pytest.raises(kit.NotCovered, match=r"vae\.encoder\.encoder\.0: the float64 reference does not cover "
                                             r"torch\.nn\.modules\.conv\.Conv1d"):
        kit.Reference(model)


def _oracle_layer(module):
    from parity import oracle

    if isinstance(module, Chain):
        return [_oracle_layer(m) for m in module if isinstance(m, (Chain, Dense))]
    return oracle.dense_layer(module.weight.detach().double().numpy(), module.bias.detach().double().numpy(),
                              module.activation.name)


@pytest.mark.parametrize("decoder", ["BernoulliDecoder", "JointGaussianLogDecoder", "SplitGaussianDecoder",
                                     "CategoricalDecoder"])
def test_the_reference_agrees_with_the_parity_oracle(decoder):
    from parity import oracle

    torch.manual_seed(4)
    enc = aet.JointGaussianLogEncoder(5, L, [4], ["tanh"], "identity")
    decs = {"BernoulliDecoder": lambda: aet.BernoulliDecoder(5, L, [4], ["elu"], "sigmoid"),
            "JointGaussianLogDecoder": lambda: aet.JointGaussianLogDecoder(5, L, [4], ["relu"], "identity"),
            "SplitGaussianDecoder": lambda: aet.SplitGaussianDecoder(5, L, [3, 5], ["relu", "identity"], [3, 5],
                                                                     ["tanh", "softplus"]),
            "CategoricalDecoder": lambda: aet.CategoricalDecoder(5, L, [4], ["softplus"])}
    dec = decs[decoder]()
    model = aet.InfoMaxVAE(enc * dec, aet.MutualInfoChain(5, L, [4], ["relu"], "identity"))
    fields = {"encoder": "encoder", "μ": "mu", "logσ": "logsigma", "σ": "sigma", "decoder": "decoder"}
    o_enc = {"type": "JointGaussianLogEncoder", **{fields[k]: _oracle_layer(getattr(enc, k))
                                                   for k in ("encoder", "μ", "logσ")}}
    o_dec = {"type": decoder, **{fields[k]: _oracle_layer(getattr(dec, k)) for k in type(dec)._config_fields}}
    if decoder == "CategoricalDecoder":  # the oracle's softmax rides on the last Dense
        o_dec["decoder"][-1]["activation"] = "softmax"
    o_mi = {k: _oracle_layer(getattr(model.mi, k)) for k in ("data", "latent", "mlp")}
    rng = np.random.default_rng(0)
    x = rng.random((6, 5)) if decoder != "CategoricalDecoder" else np.eye(5)[rng.integers(0, 5, 6)]
    noise, perm = rng.standard_normal((6, L)), rng.permutation(6)
    got = kit.Reference(model).infomaxloss(x, noise, perm, β=0.7, α=1.3)
    want = oracle.infomaxloss({"encoder": o_enc, "decoder": o_dec}, o_mi, x, noise=noise, perm=perm, beta=0.7,
                              alpha=1.3, return_terms=True)
    assert got.value == pytest.approx(want["loss"], rel=1e-12)
    assert got.mutual_info == pytest.approx(want["mutual_info"], rel=1e-12)
    assert kit.Reference(model).miloss(x, noise, perm) == pytest.approx(
        oracle.miloss({"encoder": o_enc, "decoder": o_dec}, o_mi, x, noise=noise, perm=perm), rel=1e-12)


# ----------------------------------------------------------------------------------
# Properties over the strategies
# ----------------------------------------------------------------------------------

@fuzz(20)
@given(strategies.vaes_and_batches(kind="numpy"))
def test_property_any_small_vae_matches_the_reference_and_its_export(model_and_batch):
    model, x = model_and_batch
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    kit.check_losses_match_reference(model, x)
    kit.check_export_agreement(model, x)


@pytest.mark.parametrize("kind", strategies.ALL_DECODER_KINDS)
def test_strategies_draw_every_decoder_type_with_fitting_shapes(kind):
    @fuzz(10)
    @given(strategies.decoders(kinds=[kind]), st.integers(1, 5))
    def draw(decoder, b):
        assert type(decoder).__name__ == kind
        z = torch.randn(b, decoder.latent_dim)
        out = decoder(z)
        first = out if isinstance(out, torch.Tensor) else out[0]
        assert tuple(first.shape) == (b, *decoder.output_shape)
        assert decoder.latent_dim <= strategies.SMALL.max_latent
        assert all(torch.isfinite(t).all() for t in (out if isinstance(out, tuple) else (out,)))

    draw()


@fuzz(40)
@given(strategies.infomaxvaes(sizes=strategies.Sizes(max_features=4, max_latent=2, max_hidden=3, max_depth=1)),
       st.data())
def test_property_batches_fit_their_model_and_its_decoder(model, data):
    x = data.draw(strategies.batches(model, batch_size=st.integers(2, 5)))
    shape = kit.sample_shape_of(model)
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape and 2 <= x.shape[0] <= 5
    assert max(shape) <= 4 and model.vae.latent_dim <= 2
    kind = kit.data_kind(model)
    if kind == "binary":
        assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    elif kind == "one-hot":
        assert torch.equal(x.sum(-1), torch.ones(x.shape[:-1])) and set(torch.unique(x).tolist()) <= {0.0, 1.0}
    out = model(x, latent=True, rng=torch.Generator().manual_seed(0))
    assert out.vae.z.shape == (x.shape[0], model.vae.latent_dim) and bool(torch.isfinite(out.mi))


def test_batch_sizes_include_the_bounds_edge_cases():
    seen = set()

    @fuzz(60)
    @given(strategies.batch_sizes())
    def draw(b):
        seen.add(b)

    draw()
    assert {2, 64} <= seen and min(seen) == 2 and all(b in (64,) or b <= strategies.SMALL.max_batch for b in seen)
    one = set()

    @fuzz(30)
    @given(strategies.batch_sizes(min_size=1, edge_cases=False))
    def draw_one(b):
        one.add(b)

    draw_one()
    assert 1 in one


@fuzz(40)
@given(strategies.rng_specs())
def test_property_every_rng_kind_is_accepted_and_repeats_itself(spec):
    a, b = spec.make(), spec.make()
    draws.check_rng(a)
    first = np.asarray(draws.normal(a, (3, 2)))
    assert np.array_equal(first, np.asarray(draws.normal(b, (3, 2))))
    assert np.array_equal(np.asarray(draws.permutation(a, 7)), np.asarray(draws.permutation(b, 7)))


def test_rngs_draw_every_kind():
    kinds = set()

    @fuzz(40)
    @given(strategies.rngs())
    def draw(rng):
        kinds.add(type(rng).__name__)

    draw()
    assert kinds == {"Generator", "MersenneTwister", "Xoshiro", "TaskLocalRNG"}  # torch's and NumPy's: Generator


def test_the_strategies_draw_the_same_models_in_every_derandomized_run():
    def fingerprints():
        found = []

        @fuzz(15, derandomize=True)  # as the ci profile runs every test
        @given(strategies.infomaxvaes_and_batches())
        def draw(model_and_batch):
            model, x = model_and_batch
            found.append((repr(aet.serialization.module_config(model)),
                          float(sum(p.detach().double().sum() for p in model.parameters())), x.numpy().tobytes()))

        torch.randn(7)  # the global generator's state must not matter
        draw()
        return found

    assert fingerprints() == fingerprints()


# ----------------------------------------------------------------------------------
# The state helpers, the fixtures, the imports
# ----------------------------------------------------------------------------------

def test_differences_name_parameters_optimizer_state_and_settings(model, x):
    m, opt = kit.steps.fresh_copy(model, kit.default_optimizers)
    kit.library_step()(m, x, opt, rng=torch.Generator().manual_seed(0))
    before = kit.snapshot(m, opt)
    assert kit.differences(m, opt, before) == []
    opt.mi.state[m.mi.latent.bias]["exp_avg"][0] += 1
    opt.vae.param_groups[0]["lr"] = 0.5
    with torch.no_grad():
        m.vae.decoder.decoder[0].weight[0, 0] = float("nan")
    assert kit.differences(m, opt, before) == ["vae.decoder.decoder.0.weight", "the settings of opt.vae",
                                               "the opt.mi state of mi.latent.bias"]
    assert kit.non_finite(m, opt) == ["vae.decoder.decoder.0.weight"]
    with pytest.raises(AssertionError, match=r"the step changed 3 thing\(s\): vae\.decoder\.decoder\.0\.weight"):
        kit.assert_unchanged(m, opt, before, "the step")


def test_assert_close_is_relative_to_the_largest_magnitude():
    kit.assert_close(np.array([1000.0, 1e-3]), np.array([1000.005, 0.0]), rtol=1e-5)
    with pytest.raises(AssertionError, match=r"value: max abs error 0.02 > 1e-05 x 1e\+03"):
        kit.assert_close(np.array([1000.02, 0.0]), np.array([1000.0, 0.0]), rtol=1e-5)
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(3,\)"):
        kit.assert_close(np.zeros(2), np.zeros(3))


def test_the_plugin_fixtures_check_the_default_model(aet_check, aet_model, aet_batch):
    assert aet_check.model is aet_model and aet_check.x is aet_batch and tuple(aet_batch.shape) == (32, 8)
    aet_check.reference()
    aet_check.checkpoint()


pytest_plugins = ["pytester"]


def test_the_plugin_fixtures_check_a_users_model(pytester):
    pytester.makeconftest("""
import pytest
import autoencoder_toolkit as aet
from autoencoder_toolkit.testing import library_step

@pytest.fixture
def aet_model():
    enc = aet.JointGaussianLogEncoder(5, 2, [6], ["tanh"], "identity")
    dec = aet.SplitGaussianLogDecoder(5, 2, [6, 5], ["relu", "identity"], [4, 5], ["tanh", "identity"])
    return aet.InfoMaxVAE(enc * dec, aet.MutualInfoChain(5, 2, [6], ["relu"], "identity"))

@pytest.fixture
def aet_step():
    return library_step(fused=True)
""")
    pytester.makepyfile("""
def test_reference(aet_check, aet_batch):
    assert tuple(aet_batch.shape) == (32, 5)
    aet_check.reference()

def test_export(aet_check):
    assert aet_check.step.__name__ == "train_ (fused)"
    aet_check.export()
""")
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_importing_the_kit_imports_neither_torch_nor_hypothesis():
    code = ("import sys, autoencoder_toolkit.testing, autoencoder_toolkit.testing.plugin; "
            "print('torch' in sys.modules, 'hypothesis' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_every_public_name_of_the_kit_resolves():
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    assert kit.check_gradient_routing.__module__ == "autoencoder_toolkit.testing.routing"
    with pytest.raises(AttributeError, match="has no attribute 'check_everything'"):
        kit.check_everything


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="pytest11") if ep.value == "autoencoder_toolkit.testing.plugin"]
    assert len(found) == 1

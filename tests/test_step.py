"""The checked optimizer step: the snapshot it skips where an Adam update is provably finite."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from autoencoder_toolkit import setup
from autoencoder_toolkit.decoders import BernoulliDecoder
from autoencoder_toolkit.encoders import JointGaussianLogEncoder
from autoencoder_toolkit.infomaxvaes import InfoMaxVAE, MutualInfoChain, train_
from autoencoder_toolkit.models import step
from autoencoder_toolkit.vaes import VAE
from autoencoder_toolkit.vaes import train_ as vae_train_


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_model():
    torch.manual_seed(0)
    enc = JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
    dec = BernoulliDecoder(12, 3, [16], ["relu"], "sigmoid")
    return InfoMaxVAE(enc * dec, MutualInfoChain(12, 3, [8], ["relu"], "identity"))


@pytest.fixture
def x():
    return (torch.rand(64, 12, generator=gen(0)) < 0.5).float()


@pytest.fixture
def snapshots(monkeypatch):
    """Counts the snapshots taken (each is a full copy of an optimizer's parameters and state)."""
    count = {"n": 0}
    original = step._Snapshot.__init__

    def counting(self, optimizer):
        count["n"] += 1
        original(self, optimizer)

    monkeypatch.setattr(step._Snapshot, "__init__", counting)
    return count


def test_adam_steps_after_the_first_take_no_snapshot(x, snapshots):
    model = make_model()
    opt = setup(torch.optim.Adam, model, lr=1e-3)
    train_(model, x, opt, fused=True, rng=gen(1))
    assert snapshots["n"] == 2  # the first step is checked: no bounds are known yet
    for i in range(5):
        train_(model, x, opt, fused=True, rng=gen(2 + i))
    assert snapshots["n"] == 2


def test_the_faithful_step_still_snapshots_the_vae_before_the_critic_stage(x, snapshots):
    """The VAE's update comes before the critic's loss, which may still fail: it must stay undoable."""
    model = make_model()
    opt = setup(torch.optim.Adam, model, lr=1e-3)
    for i in range(4):
        train_(model, x, opt, rng=gen(i))
    assert snapshots["n"] == 2 + 3  # both on the first step, then the VAE's on each later one


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=1e-2),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    lambda p: torch.optim.AdamW(p, lr=5e-2, weight_decay=0.5, betas=(0.5, 0.9)),
    lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
], ids=["adam", "adam-l2-amsgrad", "adamw", "adam-fused"])
def test_the_bounds_hold_the_magnitudes_the_optimizer_reaches(make_opt, x):
    """Carried forward step by step, the bounds stay above the largest parameter, first moment and
    second moment actually reached."""
    torch.manual_seed(0)
    vae = (JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
           * BernoulliDecoder(12, 3, [16], ["relu"], "sigmoid"))
    assert isinstance(vae, VAE)
    opt = make_opt(vae.parameters())
    for i in range(25):
        vae_train_(vae, x * (1 + (i % 3)), opt, rng=gen(i))  # larger gradients now and then
        bound = step._BOUNDS[opt]
        exact = step._UpdateBound.measured(opt)
        assert exact.params <= bound.params
        assert exact.first <= bound.first
        assert exact.second <= bound.second
        assert math.isfinite(bound.params)


def test_a_write_from_outside_voids_the_bounds(x, snapshots):
    model = make_model()
    opt = setup(torch.optim.Adam, model, lr=1e-3)
    train_(model, x, opt, fused=True, rng=gen(1))
    train_(model, x, opt, fused=True, rng=gen(2))
    assert snapshots["n"] == 2
    with torch.no_grad():
        next(model.vae.parameters()).add_(0.5)  # an edit the bounds cannot know about
    train_(model, x, opt, fused=True, rng=gen(3))
    assert snapshots["n"] == 4
    opt.vae.load_state_dict(copy.deepcopy(opt.vae.state_dict()))  # new state tensors
    train_(model, x, opt, fused=True, rng=gen(4))
    assert snapshots["n"] == 6


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=1e-3),
                                      lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-20)],
                         ids=["sgd", "adam-tiny-eps"])
def test_other_optimizers_and_hyperparameters_out_of_range_are_always_checked(make_opt, x, snapshots):
    torch.manual_seed(0)
    vae = (JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
           * BernoulliDecoder(12, 3, [16], ["relu"], "sigmoid"))
    assert isinstance(vae, VAE)
    opt = make_opt(vae.parameters())
    for i in range(3):
        vae_train_(vae, x, opt, rng=gen(i))
    assert snapshots["n"] == 3


def test_an_overflowing_update_is_still_undone_after_unchecked_steps(x):
    """Steps without snapshots, then a weight decay out of the bounded range: that step is
    checked again, and its overflowing update changes nothing."""
    model = make_model()
    opt = setup(torch.optim.Adam, model, lr=1e-3)
    for i in range(3):
        train_(model, x, opt, fused=True, rng=gen(i))
    before = [p.detach().clone() for p in model.parameters()]
    first = next(model.vae.parameters())
    state = {k: v.clone() for k, v in opt.vae.state[first].items()}
    for group in opt.vae.param_groups:
        group["weight_decay"] = 1e37  # out of the bounded range; the second moment overflows
    with pytest.raises(FloatingPointError, match="update of the VAE"):
        train_(model, x, opt, fused=True, rng=gen(9))
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    for k, v in opt.vae.state[first].items():
        assert torch.equal(v, state[k])

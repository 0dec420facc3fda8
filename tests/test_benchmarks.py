"""Smoke tests of the training-step benchmark (benchmarks/): FLOP counts and the baseline."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from benchmarks import authors_baseline as ab
from benchmarks import flops

TINY = flops.Workload("tiny", n_input=3, n_latent=2, encoder_hidden=(4,), decoder_hidden=(5,),
                      critic_hidden=(6,))


def _tiny_baseline(seed: int = 0) -> ab.BaselineModel:
    return ab.build_baseline(TINY.n_input, TINY.n_latent, TINY.encoder_hidden, TINY.decoder_hidden,
                             TINY.critic_hidden, seed=seed)


def _data(batch: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand((batch, TINY.n_input), generator=g) < 0.5).float()


def test_flop_schedules_match_a_hand_count():
    # B = 2; F(in => out) = 2·2·in·out.
    # enc1 3=>4: 48, heads 4=>2: 32 each, dec1 2=>5: 40, dec2 5=>3: 60,
    # data 3=>3: 36, latent 2=>2: 16, mlp1 5=>6: 120, mlp2 6=>1: 24.
    vae_fwd = 48 + 2 * 32 + 40 + 60                     # 212
    critic_call = 36 + 16 + 120 + 24                     # 196
    vae_bwd = 2 * (40 + 60) + 2 * (2 * 32) + 48          # decoder in+w, heads in+w, enc1 w only: 376
    critic_w = 2 * (120 + 24) + 36 + 16                  # mlp in+w, data w, latent w: 340
    critic_w_and_z = critic_w + 16                       # + latent input grad: 356
    critic_z_only = (120 + 24) + 16                      # mlp in, latent in: 160
    # (b) shares the data branch: mlp1 split into W_x (3=>6: 72) once and W_z (2=>6: 48 per
    # code set) on both code sets stacked (2B = 4 rows), as the latent layer; mlp2 on 4 rows: 48.
    # Backward: the latent layer's input gradient runs on the stacked rows too (the z̃ half is
    # discarded): 2 · 16.
    shared_fwd = 36 + 2 * 16 + 72 + 2 * 48 + 48          # 284
    shared_bwd = 2 * 48 + 2 * (2 * 48) + 2 * 72 + 36 + 2 * 16 + 2 * 16   # 532
    b = vae_fwd + shared_fwd + shared_bwd + vae_bwd
    c = vae_fwd + 2 * critic_call + critic_w_and_z + critic_w + vae_bwd + 2 * critic_w
    a = (vae_fwd + 2 * critic_call + critic_z_only + vae_bwd) + (vae_fwd + 2 * critic_call + 2 * critic_w)
    assert (b, c, a) == (1404, 2356, 2424)
    assert flops.schedule("b", TINY, 2).total == b
    assert flops.schedule("c", TINY, 2).total == c
    assert flops.schedule("a", TINY, 2).total == a
    assert flops.useful_flops(TINY, 2) == b
    assert flops.schedule("c", TINY, 2).forward == vae_fwd + 2 * critic_call
    # Linear in the batch size.
    assert flops.schedule("a", TINY, 10).total == 5 * a


def test_flop_counter_agrees_with_the_baseline_schedule():
    model = _tiny_baseline()
    x = _data(8)
    counted = flops.count_matmul_flops(lambda: ab.baseline_step(model, x))
    assert counted == flops.schedule("c", TINY, 8).total


def _tiny_library_model():
    try:
        from autoencoder_toolkit import decoders, encoders, infomaxvaes, setup
        enc = encoders.JointGaussianLogEncoder(3, 2, [4], ["relu"], "identity")
        dec = decoders.BernoulliDecoder(3, 2, [5], ["relu"], "sigmoid")
        mi = infomaxvaes.MutualInfoChain(3, 2, [6], ["relu"], "identity")
        model = infomaxvaes.InfoMaxVAE(enc * dec, mi)
        opt = setup(torch.optim.Adam, model, lr=1e-3)
    except Exception as e:  # noqa: BLE001 - the package may be mid-edit
        pytest.skip(f"library not available: {e}")
    return infomaxvaes, model, opt


@pytest.mark.parametrize("variant", ["a", "b"])
def test_flop_counter_agrees_with_the_library_schedules(variant):
    infomaxvaes, model, opt = _tiny_library_model()
    x = _data(64)  # the library warns below 64 samples per batch
    kwargs = {"fused": True} if variant == "b" else {}

    def step():
        infomaxvaes.train_(model, x, opt, loss_return=True, **kwargs)

    try:
        counted = flops.count_matmul_flops(step)
    except (ImportError, NotImplementedError, TypeError) as e:
        pytest.skip(f"variant ({variant}) not available: {e}")
    assert counted == flops.schedule(variant, TINY, 64).total


def test_baseline_step_updates_both_networks_with_their_own_gradients():
    model = _tiny_baseline()
    x = _data(8)
    before = copy.deepcopy(model)
    # The step draws noise then a permutation from its generator: replay them.
    seed = 11
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((8, TINY.n_latent), generator=g)
    perm = torch.randperm(8, generator=g)
    l_vae, l_mi = ab.baseline_losses(before, x, noise, perm)
    vae_params = list(before.vae.parameters())
    critic_params = list(before.critic.parameters())
    ref_vae = torch.autograd.grad(l_vae, vae_params, retain_graph=True)
    ref_critic = torch.autograd.grad(l_mi, critic_params)

    losses = ab.baseline_step(model, x, torch.Generator().manual_seed(seed))
    assert losses == pytest.approx((float(l_vae.detach()), float(l_mi.detach())), rel=1e-6)

    # Every parameter of both networks moved.
    for new, old in zip(model.vae.parameters(), before.vae.parameters()):
        assert not torch.equal(new, old)
    for new, old in zip(model.critic.parameters(), before.critic.parameters()):
        assert not torch.equal(new, old)
    # The VAE's gradients are those of L_vae alone: the critic's backward (on L_mi)
    # added nothing to the encoder or decoder.
    for p, ref in zip(model.vae.parameters(), ref_vae):
        torch.testing.assert_close(p.grad, ref)
    # The critic's gradients are those of L_mi alone (the -α·I part of L_vae that the
    # first backward put there was cleared before the critic's backward).
    for p, ref in zip(model.critic.parameters(), ref_critic):
        torch.testing.assert_close(p.grad, ref)


def test_critic_loss_backward_does_not_reach_the_encoder():
    model = _tiny_baseline()
    x = _data(8)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn((8, TINY.n_latent), generator=g)
    perm = torch.randperm(8, generator=g)
    _, l_mi = ab.baseline_losses(model, x, noise, perm)
    l_mi.backward(inputs=list(model.critic.parameters()))
    assert all(p.grad is None for p in model.vae.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.critic.parameters())


def test_harness_smoke_on_the_baseline(tmp_path: Path):
    from benchmarks import train_step as ts

    args = ts.parse_args(["--quick", "--variants", "c", "--workload", "digits-mlp:64", "--no-memory",
                          "--out", str(tmp_path), "--seconds", "0.05", "--max-steps", "2"])
    settings = ts.make_settings(args)
    settings.square_sizes = [64]
    roofline, gemm_times = ts.measure_roofline(settings)
    res = ts.run_point("digits-mlp", 64, settings)
    assert res["c"].ok and res["c"].counted_flops == flops.schedule("c", flops.WORKLOADS["digits-mlp"], 64).total
    summary = ts.summarise_point("digits-mlp", 64, res, gemm_times, roofline["peak_gflops"])
    md, data = ts.build_report(settings, ts.machine_info(settings), roofline, [summary], 1.0, "test")
    assert "digits-mlp" in md and data["points"][0]["variants"]["c"]["samples_per_s"] > 0


def test_the_optimizer_share_is_timed_and_reported(tmp_path: Path):
    from benchmarks import train_step as ts

    args = ts.parse_args(["--quick", "--variants", "a,b", "--workload", "digits-mlp:32", "--no-memory",
                          "--out", str(tmp_path), "--seconds", "0.05", "--max-steps", "2"])
    settings = ts.make_settings(args)
    settings.square_sizes = [64]
    adam = ts.time_optimizer_update("digits-mlp", 32, settings, reps=3)
    model, _ = ts._library_model(flops.WORKLOADS["digits-mlp"], settings.device, ts.SEED)
    assert adam["parameters"] == sum(p.numel() for p in model.parameters())
    assert adam["reps"] == 3 and adam["median_ms"] > 0
    roofline, gemm_times = ts.measure_roofline(settings)
    res = ts.run_point("digits-mlp", 32, settings)
    summary = {**ts.summarise_point("digits-mlp", 32, res, gemm_times, roofline["peak_gflops"]), "optimizer": adam}
    md, _ = ts.build_report(settings, ts.machine_info(settings), roofline, [summary], 1.0, "test")
    row = next(line for line in md.splitlines() if line.startswith("| digits-mlp | 32 | ") and "×" in line
               and f"{adam['parameters']:,}" in line)
    a_ms, b_ms = (summary["variants"][v]["median_ms"] for v in "ab")
    assert f"{a_ms / b_ms:.2f}×" in row


def test_the_hand_written_step_computes_the_library_fused_losses():
    """Variant (e) is the library's fused step by hand: at the same weights, noise and permutation
    it gives the same two losses and the same gradients."""
    from benchmarks import handwritten_fused as hw
    from benchmarks import train_step as ts

    from autoencoder_toolkit.models import fused

    w = flops.WORKLOADS["digits-mlp"]
    x = ts.make_data(w, 64, torch.device("cpu"))
    base = ab.build_baseline(w.n_input, w.n_latent, w.encoder_hidden, w.decoder_hidden, w.critic_hidden, seed=3,
                             alpha=2.0)
    lib, _ = ts._library_model(w, torch.device("cpu"), 3)
    # the library model takes the baseline's weights, layer by layer, in the same order
    with torch.no_grad():
        src = [*base.vae.trunk, base.vae.mu, base.vae.logsigma, *base.vae.decoder, base.critic.data,
               base.critic.latent, *base.critic.mlp]
        dst = [m for m in lib.modules() if isinstance(m, torch.nn.Linear)]
        assert [tuple(m.weight.shape) for m in src] == [tuple(m.weight.shape) for m in dst]
        for s, d in zip(src, dst):
            d.weight.copy_(s.weight)
            d.bias.copy_(s.bias)
    noise = torch.randn(64, w.n_latent, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(6))
    surrogate, l_vae, l_mi = hw.handwritten_losses(base, x, noise, perm)
    settings, _, _ = fused._settings({"α": 2.0}, {})
    ref = fused._forward(lib, x, x, settings, noise, perm)
    torch.testing.assert_close(l_vae, ref.vae_loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(l_mi, ref.mi_loss, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(surrogate, [m.weight for m in src])
    want = torch.autograd.grad(ref.surrogate, [m.weight for m in dst])
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)

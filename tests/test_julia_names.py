"""What a Julia user's script touches: module names, µ spellings, layouts, keywords, Reshape, T.

Each item is how a line of a Julia script translates; values are checked by hand.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit import infomaxvaes, juliarng, mmdvaes, vaes
from autoencoder_toolkit.distributions import GaussianLogParams, GaussianMean, GaussianParams
from autoencoder_toolkit.outputs import AEOutput, InfoMaxVAEOutput, VAEOutput

ROOT = Path(__file__).resolve().parents[1]
MICRO = "\u00b5"  # what Julia sources and many keyboards produce
MU = "\u03bc"  # the field name


# -- Julia's module names ----------------------------------------------------------------------

@pytest.mark.parametrize("julia, python", [("InfoMaxVAEs", "infomaxvaes"), ("VAEs", "vaes"),
                                           ("MMDVAEs", "mmdvaes"), ("AEs", "aes"), ("utils", "training.utils")])
def test_julia_module_names_are_the_python_modules(julia, python):
    module = importlib.import_module(f"autoencoder_toolkit.{python}")
    assert getattr(aet, julia) is module
    assert importlib.import_module(f"autoencoder_toolkit.{julia}") is module


@pytest.mark.parametrize("julia_name", [
    # test/infomaxvae.jl and test/vae.jl reach these through the submodules
    "InfoMaxVAEs.JointGaussianLogEncoder", "InfoMaxVAEs.SimpleGaussianDecoder", "InfoMaxVAEs.MutualInfoChain",
    "InfoMaxVAEs.InfoMaxVAE", "InfoMaxVAEs.train_", "InfoMaxVAEs.shuffle_latent", "InfoMaxVAEs.VAE",
    "InfoMaxVAEs.reparameterize", "InfoMaxVAEs.Flatten", "VAEs.JointGaussianLogEncoder",
    "VAEs.SimpleGaussianDecoder", "VAEs.BernoulliDecoder", "VAEs.SplitGaussianLogDecoder", "VAEs.VAE",
    "VAEs.reparameterize", "VAEs.loss", "VAEs.train_", "MMDVAEs.MMDVAE", "MMDVAEs.JointGaussianLogEncoder",
    "AEs.AE", "AEs.Encoder", "AEs.Decoder", "AEs.mse_loss", "AEs.train_",
    "utils.step_scheduler", "utils.cycle_anneal", "utils.shuffle_data", "utils.locality_sampler",
    "utils.centroids_kmeans", "utils.centroids_kmedoids",
])
def test_julia_qualified_names_reach_the_same_objects(julia_name):
    module, name = julia_name.split(".")
    obj = getattr(getattr(aet, module), name)
    top = getattr(aet, name, None)
    if top is not None:
        assert obj is top
    assert obj is not None


def test_the_package_stays_torch_free_at_import_and_the_julia_names_load_lazily():
    code = ("import sys, autoencoder_toolkit as aet; aet.from_julia_layout; aet.adjust_; "
            "print('torch' in sys.modules, 'autoencoder_toolkit.models.infomaxvaes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def _documented_attributes(text: str) -> set[str]:
    names = set(re.findall(r"\baet\.([A-Za-z_]\w*)", text))
    names |= set(re.findall(r"\bautoencoder_toolkit\.([A-Za-z_]\w*)", text))
    groups = re.findall(r"^\s*from autoencoder_toolkit import \(([^)]*)\)", text, re.M)
    groups += re.findall(r"^\s*from autoencoder_toolkit import ([\w, ]+)$", text, re.M)
    for group in groups:
        names |= {n.split(" as ")[0].strip() for n in group.replace("\n", ",").split(",") if n.strip()}
    return names


def test_every_name_the_documentation_gives_the_package_exists():
    for doc in ("README.md", "docs/migration.md", "docs/julia.md", "docs/python.md"):
        names = _documented_attributes((ROOT / doc).read_text(encoding="utf-8"))
        if doc in ("docs/migration.md", "docs/julia.md"):
            assert {"checkpoints", "juliarng", "InfoMaxVAEs", "VAEs", "utils", "from_julia_layout"} & names, doc
        missing = sorted(n for n in names if not hasattr(aet, n))
        assert missing == [], f"{doc} names {missing}, which autoencoder_toolkit does not have"
    for name in ("checkpoints", "training", "plots", "datasets", "juliarng", "inference"):
        assert hasattr(aet, name)


# -- the micro sign ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: GaussianLogParams(np.zeros(2), np.ones(2)),
    lambda: GaussianParams(torch.zeros(2), torch.ones(2)),
    lambda: GaussianMean(np.array([0.5])),
])
def test_micro_sign_reaches_mu_as_attribute_getattr_and_mapping(make):
    out = make()
    value = getattr(out, MU)
    assert getattr(out, MICRO) is value
    assert eval(f"out.{MICRO}") is value  # Python folds µ in source code
    d = out._asdict()
    assert d[MICRO] is value and d[MU] is value and MICRO in d and d.get(MICRO) is value
    assert list(d) == list(out._fields)  # the keys themselves are Julia's μ
    with pytest.raises(AttributeError):
        getattr(out, "nu")
    with pytest.raises(KeyError):
        d["nu"]


def test_micro_sign_on_model_outputs_and_keywords(small_infomax):
    x = torch.randn(8, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = small_infomax(x, latent=True)
    assert isinstance(out, InfoMaxVAEOutput) and isinstance(out.vae, VAEOutput)
    assert getattr(out.vae.encoder, MICRO) is out.vae.encoder.μ
    assert out._asdict()["vae"]._asdict()["encoder"]._asdict()[MICRO] is out.vae.encoder.μ
    assert AEOutput(1, 2)._asdict() == {"encoder": 1, "decoder": 2}


# -- layouts -----------------------------------------------------------------------------------

def test_from_julia_layout_reverses_the_axes():
    # a Julia (D=3, B=2) matrix x[d, b] = 10 d + b, as numpy.load gives an NPZ.jl file (Fortran order)
    julia = np.asfortranarray(np.array([[10 * d + b for b in range(2)] for d in range(3)], np.float32))
    batch = aet.from_julia_layout(julia)
    assert batch.shape == (2, 3) and batch.flags.c_contiguous
    assert batch.tolist() == [[0.0, 10.0, 20.0], [1.0, 11.0, 21.0]]  # sample b holds x[:, b]
    assert np.shares_memory(batch, julia)  # same memory, no copy
    back = aet.to_julia_layout(batch)
    assert back.shape == (3, 2) and np.array_equal(back, julia)


def test_layouts_of_image_batches_and_tensors():
    whcb = torch.arange(2 * 3 * 1 * 4, dtype=torch.float32).reshape(2, 3, 1, 4)  # Julia (W, H, C, B) indexing
    bchw = aet.from_julia_layout(whcb)
    assert tuple(bchw.shape) == (4, 1, 3, 2) and bchw.is_contiguous()
    assert float(bchw[3, 0, 2, 1]) == float(whcb[1, 2, 0, 3])
    torch.testing.assert_close(aet.to_julia_layout(bchw), whcb)
    with pytest.raises(ValueError, match="at least one axis"):
        aet.from_julia_layout(np.float32(1.0))


def test_a_square_batch_is_accepted_either_way_so_it_must_be_converted_explicitly():
    # (D, B) with D == B has the shape of a batch: nothing can tell; the conversion is explicit
    julia = np.asfortranarray(np.arange(9.0).reshape(3, 3))
    assert aet.from_julia_layout(julia).tolist() == julia.T.tolist()


# -- Reshape with Julia's order -----------------------------------------------------------------

def test_reshape_warns_when_the_inferred_batch_axis_is_last():
    with pytest.warns(UserWarning, match=r"Reshape\(-1, 64, 7, 7\) or Reshape.from_julia\(7, 7, 64"):
        aet.Reshape(7, 7, 64, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aet.Reshape(-1, 64, 7, 7).shape == aet.Reshape.from_julia(7, 7, 64, ":").shape == (-1, 64, 7, 7)
        aet.Reshape(-1)
    with pytest.raises(ValueError, match=r"Reshape.from_julia\(7, 7, 64, ':'\)"):
        aet.Reshape(7, 7, 64, ":")


# -- keywords ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda m, x: infomaxvaes.infomaxloss(m.vae, m.mi, x, gamma=1.0),
     r"^infomaxloss\(\) has no keyword 'gamma'; accepted: β, α, n_samples"),
    (lambda m, x: infomaxvaes.miloss(m.vae, m.mi, x, β=1.0), r"^miloss\(\) has no keyword 'β'; accepted: reg"),
    (lambda m, x: vaes.loss(m.vae, x, α=1.0), r"^loss\(\) has no keyword 'α'; accepted: β"),
    (lambda m, x: infomaxvaes.train_(m, x, aet.setup(torch.optim.Adam, m), infomaxloss_kwargs={"gamma": 1}),
     r"^infomaxloss_kwargs: infomaxloss\(\) has no keyword 'gamma'; accepted: β"),
    (lambda m, x: infomaxvaes.train_(m, x, aet.setup(torch.optim.Adam, m), fused=True,
                                     infomaxloss_kwargs={"gamma": 1}),
     r"^infomaxloss_kwargs: infomaxloss\(\) has no keyword 'gamma'"),
    (lambda m, x: infomaxvaes.train_(m, x, aet.setup(torch.optim.Adam, m), miloss_kwargs={"α": 1}),
     r"^miloss_kwargs: miloss\(\) has no keyword 'α'"),
    (lambda m, x: infomaxvaes.train_(m, x, aet.setup(torch.optim.Adam, m), loss_kwargs={}),
     r"^train_\(\) has no keyword 'loss_kwargs'; accepted: infomaxloss_function"),
    (lambda m, x: vaes.train_(m.vae, x, aet.setup(torch.optim.Adam, m.vae), loss_kwargs={"α": 1}),
     r"^loss_kwargs: loss\(\) has no keyword 'α'"),
    (lambda m, x: mmdvaes.loss(mmdvaes.MMDVAE(m.vae), x, β=1.0), r"^loss\(\) has no keyword 'β'; accepted: σ"),
    (lambda m, x: infomaxvaes.shuffle_latent(torch.zeros(4, 2), sed=1), r"^shuffle_latent\(\) has no keyword"),
    (lambda m, x: vaes.reparameterize(torch.zeros(2), torch.zeros(2), dtype=torch.float64),
     r"^reparameterize\(\) has no keyword 'dtype'; accepted: log, T, rng, noise"),
])
def test_unknown_keywords_name_the_public_function_and_list_the_accepted_ones(small_infomax, call, message):
    x = torch.randn(8, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(TypeError, match=message):
            call(small_infomax, x)


def test_setup_takes_julias_hyperparameter_names_and_lists_the_optimizers_own():
    m = torch.nn.Linear(2, 2)
    opt = aet.setup(torch.optim.Adam, m, η=1e-2, β=(0.8, 0.9))  # Flux.Train.setup(Adam(1f-2, (0.8, 0.9)), m)
    assert opt.param_groups[0]["lr"] == 1e-2 and opt.param_groups[0]["betas"] == (0.8, 0.9)
    with pytest.raises(TypeError, match=r"^setup: SGD\(\) has no keyword 'betas'; accepted: lr, momentum"):
        aet.setup(torch.optim.SGD, m, lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match="both set 'lr'"):
        aet.setup(torch.optim.Adam, m, lr=0.1, η=0.2)


# -- reparameterize(μ, σ; log, T) ----------------------------------------------------------------

def test_reparameterize_T_is_the_noise_type():
    μ = torch.tensor([0.5, 0.2])
    logσ = torch.tensor([-0.1, -0.2])
    # Julia: Random.seed!(1); reparameterize(µ, logσ; T=Float64) draws randn(Float64, 2)
    ε = juliarng.randn(juliarng.seed_(1), 2, dtype=np.float64)
    for T in ("Float64", torch.float64, np.float64, float):
        z = vaes.reparameterize(μ, logσ, T=T, rng=juliarng.seed_(1))
        assert z.dtype == torch.float64  # float32 μ + Float64 noise promotes, as in Julia
        np.testing.assert_allclose(z.numpy(), μ.double().numpy() + ε * np.exp(logσ.double().numpy()), rtol=1e-7)
    ε32 = juliarng.randn(juliarng.seed_(1), 2, dtype=np.float32)
    z = vaes.reparameterize(μ.numpy(), np.exp(logσ.numpy()), log=False, T="Float32", rng=juliarng.seed_(1))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, μ.numpy() + ε32 * np.exp(logσ.numpy()), rtol=1e-6)
    with pytest.raises(TypeError, match="T: expected a floating type"):
        vaes.reparameterize(μ, logσ, T="Int64")


def test_a_warning_of_a_checked_public_function_points_at_the_callers_line(small_infomax, monkeypatch):
    from autoencoder_toolkit.models import checks

    monkeypatch.setattr(checks, "_warned_small_batch", False)
    with pytest.warns(UserWarning, match="below 64 samples") as record:
        infomaxvaes.infomaxloss(small_infomax.vae, small_infomax.mi, torch.randn(8, 10))
    assert record[0].filename == __file__

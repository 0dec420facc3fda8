"""Using a trained model: one-line loading, and the same methods on every model type and on its export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import autoencoder_toolkit as aet
from autoencoder_toolkit.mmdvaes import MMDVAE
from autoencoder_toolkit.outputs import GaussianParams, MutualInfoEstimate

D, L = 12, 3


def _vae(kind: str = "log"):
    torch.manual_seed(0)
    if kind == "log":
        enc = aet.JointGaussianLogEncoder(D, L, [16], ["relu"], "identity")
    else:  # σ itself: a positive head
        enc = aet.JointGaussianEncoder(D, L, [16], ["relu"], ("identity", "softplus"))
    return enc * aet.BernoulliDecoder(D, L, [16], ["relu"], "sigmoid")


def _models():
    vae = _vae()
    return {
        "vae": vae,
        "vae-linear-scale": _vae("linear"),
        "infomax": aet.InfoMaxVAE(_vae(), aet.MutualInfoChain(D, L, [16], ["relu"], "identity")),
        "mmd": MMDVAE(_vae()),
    }


X = np.random.default_rng(0).random((20, D)).astype(np.float32)


@pytest.mark.parametrize("name", list(_models()))
def test_every_model_encodes_decodes_reconstructs_and_samples_as_its_export_does(name, tmp_path):
    model = _models()[name]
    path = aet.save_model(model, tmp_path / "m.safetensors")
    loaded = aet.load_model(path)
    assert not loaded.training
    frozen = aet.inference.load(path)
    # the means, without gradient, of the input's array kind
    mu = loaded.encode(X)
    assert isinstance(mu, np.ndarray) and mu.shape == (20, L)
    t = loaded.encode(torch.from_numpy(X))
    assert isinstance(t, torch.Tensor) and not t.requires_grad
    np.testing.assert_array_equal(t.numpy(), mu)
    np.testing.assert_allclose(frozen.encode(X), mu, rtol=1e-5, atol=1e-6)
    assert loaded.encode(X[0]).shape == (L,)  # one sample
    # the posterior, in either parameterisation, as (μ, σ)
    q = loaded.posterior(X)
    assert isinstance(q, GaussianParams) and np.array_equal(q.μ, mu) and (q.σ > 0).all()
    fq = frozen.posterior(X)
    np.testing.assert_allclose(fq.σ, q.σ, rtol=1e-5, atol=1e-6)
    # draws follow the generator, identically on both sides
    a = loaded.encode(X, sample=True, rng=np.random.default_rng(1))
    b = loaded.encode(X, sample=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mu)
    np.testing.assert_allclose(frozen.encode(X, sample=True, rng=np.random.default_rng(1)), a, rtol=1e-5, atol=1e-6)
    # decode, reconstruct, sample
    p = loaded.decode(mu).p
    assert p.shape == (20, D) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(loaded.reconstruct(X), p, rtol=1e-6)
    np.testing.assert_allclose(frozen.reconstruct(X), p, rtol=1e-5, atol=1e-6)
    s = loaded.sample(5, rng=np.random.default_rng(2))
    assert tuple(s.shape) == (5, D)
    np.testing.assert_allclose(frozen.sample(5, rng=np.random.default_rng(2)), s.numpy(), rtol=1e-5, atol=1e-6)


def test_mutual_info_gives_the_estimate_and_its_spread():
    model = _models()["infomax"].eval()
    est = model.mutual_info(X, n_shuffles=7, rng=torch.Generator().manual_seed(0))
    assert isinstance(est, MutualInfoEstimate) and est.values.shape == (7,)
    assert est.mean == pytest.approx(float(np.mean(est.values))) and est.std == pytest.approx(
        float(np.std(est.values, ddof=1)))
    # independently: the bound over the whole set, with the same draws
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.from_numpy(X)
        z = model.vae.encoder.reparameterize(model.vae.encoder(x), rng=gen)
        perms = [torch.randperm(20, generator=gen) for _ in range(7)]
        joint = model.mi(x, z).double().mean()
        expected = [float(joint - torch.exp(model.mi(x, z[p]).double() - 1).mean()) for p in perms]
    np.testing.assert_allclose(est.values, expected, rtol=1e-12)
    batched = model.mutual_info(X, n_shuffles=7, batch_size=6, rng=torch.Generator().manual_seed(0))
    again = model.mutual_info(X, n_shuffles=7, batch_size=6, rng=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(batched.values, again.values)  # read in blocks, deterministically
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.mutual_info(X[:1])
    with pytest.raises(ValueError, match="n_shuffles: expected a positive integer"):
        model.mutual_info(X, n_shuffles=0)


def test_the_quickstart_codes_are_plain_arrays():
    codes = _models()["infomax"].encode(torch.from_numpy(X))
    assert codes.numpy().shape == (20, L)  # no gradient attached: .numpy() works

"""Shared fixtures: deterministic torch state and small models."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from . import fuzzing  # noqa: F401  (loads the Hypothesis profile before any test module is collected)

# One thread: the test models are small, and on a machine shared with other work several
# OpenMP threads busy-wait for each other (a tiny step ran 6x slower on two threads there).
torch.set_num_threads(1)


#: torch.compile on the CPU builds C++ code: the compiled-step tests need a compiler (.ci/run installs g++).
needs_compiler = pytest.mark.skipif(not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++")
                                            if c), reason="torch.compile on the CPU needs a C++ compiler (g++)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every Hypothesis test ``fuzz``, so that ``-m fuzz`` selects the fuzzers."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.fuzz)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(1234)
    yield


@pytest.fixture
def small_infomax():
    """The reference tests' setup: D=10, L=2, hidden [10, 10] relu, SimpleGaussianDecoder."""
    from autoencoder_toolkit import encoders, decoders, infomaxvaes

    enc = encoders.JointGaussianLogEncoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    dec = decoders.SimpleGaussianDecoder(10, 2, [10, 10], ["relu", "relu"], "identity")
    mi = infomaxvaes.MutualInfoChain(10, 2, [10, 10], ["relu", "relu"], "identity")
    return infomaxvaes.InfoMaxVAE(enc * dec, mi)


def f64(t) -> np.ndarray:
    """A tensor or array as a float64 NumPy array."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def fixed_encoder(w_mu: np.ndarray, b_mu: np.ndarray, logsigma: np.ndarray):
    """A JointGaussianLogEncoder with ``μ(x) = x W_μᵀ + b_μ`` and a constant ``logσ`` (identity trunk on D inputs)."""
    import autoencoder_toolkit as aet
    from autoencoder_toolkit.layers import Chain, Dense

    d = w_mu.shape[1]
    trunk = Chain(Dense.from_weights(np.eye(d, dtype=np.float32), np.zeros(d, np.float32)))
    mu = Dense.from_weights(w_mu.astype(np.float32), b_mu.astype(np.float32))
    logs = Dense.from_weights(np.zeros((len(logsigma), d), np.float32), np.asarray(logsigma, np.float32))
    return aet.JointGaussianLogEncoder(trunk, mu, logs)

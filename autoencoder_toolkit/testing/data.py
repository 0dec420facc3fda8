"""Batches that fit a model: the shape of its samples and values its decoder can score.

* a Bernoulli decoder scores values in ``[0, 1]``: binary pixels;
* a categorical decoder scores one-hot vectors over the last axis of a sample;
* a Gaussian decoder scores any real values.

:func:`example_batch` makes such a batch from a seed (NumPy's generator, no Hypothesis);
:mod:`autoencoder_toolkit.testing.strategies` draws them with Hypothesis.
:func:`example_model` is a small InfoMax-VAE to try the checks on; :func:`random_biases` gives a model's
biases (which the constructors start at zero) small random values, so that every tensor matters to what it
computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.decoders import BernoulliDecoder, CategoricalDecoder
from ..models.encoders import JointGaussianLogEncoder
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.vaes import VAE

__all__ = ["DATA_KINDS", "data_kind", "sample_shape_of", "example_batch", "example_model", "random_biases", "as_batch"]

#: What a decoder scores: ``"binary"`` (Bernoulli), ``"one-hot"`` (categorical), ``"real"`` (Gaussian).
DATA_KINDS = ("binary", "one-hot", "real")


def _vae(model: nn.Module) -> VAE:
    if isinstance(model, InfoMaxVAE):
        return model.vae
    if isinstance(model, VAE):
        return model
    vae = getattr(model, "vae", None)
    if isinstance(vae, VAE):  # an MMD-VAE, or a model of yours around a VAE
        return vae
    raise TypeError(f"model: expected a VAE or a model holding one as .vae, got {type(model).__name__}")


def data_kind(model: nn.Module) -> str:
    """The kind of data the model's decoder scores (one of :data:`DATA_KINDS`)."""
    decoder = _vae(model).decoder
    if isinstance(decoder, BernoulliDecoder):
        return "binary"
    if isinstance(decoder, CategoricalDecoder):
        return "one-hot"
    return "real"


def sample_shape_of(model: nn.Module) -> tuple[int, ...]:
    """The shape of one sample of the model's data (``model.vae.input_shape``).

    Raises ``ValueError`` when the model cannot tell (an encoder that starts with a
    convolution, say): pass the shape yourself then.
    """
    shape = _vae(model).input_shape
    if shape is None:
        raise ValueError(f"model: {type(model).__name__} does not know the shape of its samples (its encoder does not "
                         "start with a dense layer); pass sample_shape=")
    return tuple(int(s) for s in shape)


def as_batch(values: np.ndarray, *, kind: str = "torch") -> Any:
    """A float32 NumPy batch as a torch tensor (``kind="torch"``) or left as NumPy (``"numpy"``)."""
    if kind == "torch":
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if kind == "numpy":
        return np.ascontiguousarray(values, dtype=np.float32)
    raise ValueError(f"kind: expected 'torch' or 'numpy', got {kind!r}")


def example_batch(model: nn.Module, batch_size: int = 32, *, seed: int = 0, kind: str = "torch",
                  sample_shape: tuple[int, ...] | None = None) -> Any:
    """A float32 batch ``(batch_size, *sample_shape)`` that fits ``model``, from ``numpy.random.default_rng(seed)``.

    Binary values for a Bernoulli decoder, one-hot rows over the last axis for a
    categorical decoder, standard normal values otherwise. ``kind`` is ``"torch"`` (a CPU
    tensor) or ``"numpy"``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    shape = tuple(sample_shape) if sample_shape is not None else sample_shape_of(model)
    rng = np.random.default_rng(seed)
    what = data_kind(model)
    if what == "binary":
        values = (rng.random((batch_size, *shape)) < 0.5).astype(np.float32)
    elif what == "one-hot":
        classes = rng.integers(0, shape[-1], size=(batch_size, *shape[:-1]))
        values = np.eye(shape[-1], dtype=np.float32)[classes]
    else:
        values = rng.standard_normal((batch_size, *shape)).astype(np.float32)
    return as_batch(values, kind=kind)


def random_biases(module: nn.Module, generator: torch.Generator, scale: float = 0.1) -> nn.Module:
    """Give every bias of ``module`` values ``scale·N(0, 1)`` from ``generator`` (in place; returns ``module``)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device))
    return module


def example_model(n_input: int = 8, n_latent: int = 2, *, seed: int = 0) -> InfoMaxVAE:
    """A small InfoMax-VAE: a Gaussian encoder and a Bernoulli decoder with one hidden layer of 16 units
    (relu), a critic with one of 16, and small random biases.

    Its weights are drawn from ``seed`` with torch's global generator saved and restored.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator the constructors draw from
        encoder = JointGaussianLogEncoder(n_input, n_latent, [16], ["relu"], "identity")
        decoder = BernoulliDecoder(n_input, n_latent, [16], ["relu"], "sigmoid")
        critic = MutualInfoChain(n_input, n_latent, [16], ["relu"], "identity")
    return random_biases(InfoMaxVAE(encoder * decoder, critic), torch.Generator().manual_seed(seed + 1))

"""InfoMax variational autoencoders on PyTorch.

A Python port of the ``InfoMaxVAEs`` part of AutoEncoderToolkit.jl. Samples live in
the first axis (``x`` is ``(B, D)`` or ``(B, C, H, W)``), which is the same memory as
Julia's ``(D, B)`` or ``(W, H, C, B)``.

Modules: :mod:`~autoencoder_toolkit.layers`, :mod:`~autoencoder_toolkit.encoders`,
:mod:`~autoencoder_toolkit.decoders`, :mod:`~autoencoder_toolkit.vaes`,
:mod:`~autoencoder_toolkit.infomaxvaes`, :mod:`~autoencoder_toolkit.juliarng`.
"""

import importlib
from typing import Any

# The torch-based modules load on first use (PEP 562), so that a process that only
# serves a model exported to NumPy (``import autoencoder_toolkit.inference``) never
# imports torch. Every name below works as an attribute and in ``from ... import``.
_LAZY_NAMES = {
    "BernoulliDecoder": "decoders", "CategoricalDecoder": "decoders", "Decoder": "decoders",
    "JointGaussianDecoder": "decoders", "JointGaussianLogDecoder": "decoders",
    "SimpleGaussianDecoder": "decoders", "SplitGaussianDecoder": "decoders",
    "SplitGaussianLogDecoder": "decoders", "decoder_loglikelihood": "decoders",
    "Encoder": "encoders", "JointGaussianEncoder": "encoders", "JointGaussianLogEncoder": "encoders",
    "encoder_kl": "encoders", "encoder_logposterior": "encoders", "spherical_logprior": "encoders",
    "InfoMaxVAE": "infomaxvaes", "MutualInfoChain": "infomaxvaes", "shuffle_latent": "infomaxvaes",
    "variational_mutual_info": "infomaxvaes",
    "ActivationOverDims": "layers", "Chain": "layers", "Dense": "layers", "Flatten": "layers",
    "Reshape": "layers",
    "setup": "optim",
    "VAE": "vaes", "reparameterize": "vaes",
}
_LAZY_MODULES = ("activations", "decoders", "encoders", "infomaxvaes", "layers", "mmdvaes", "vaes",
                 "backends", "densities", "inference", "juliarng", "datasets", "metrics", "distributed",
                 "fused", "serialization", "outputs", "optim")


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "activations", "decoders", "encoders", "infomaxvaes", "layers", "mmdvaes", "vaes", "setup",
    "Dense", "Chain", "Flatten", "Reshape", "ActivationOverDims",
    "Encoder", "JointGaussianLogEncoder", "JointGaussianEncoder",
    "spherical_logprior", "encoder_logposterior", "encoder_kl",
    "Decoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder", "JointGaussianDecoder",
    "SplitGaussianLogDecoder", "SplitGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder",
    "decoder_loglikelihood", "VAE", "reparameterize",
    "MutualInfoChain", "InfoMaxVAE", "shuffle_latent", "variational_mutual_info",
]

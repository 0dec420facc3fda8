"""InfoMax variational autoencoders on PyTorch.

A Python port of the ``InfoMaxVAEs`` part of AutoEncoderToolkit.jl. Samples live in
the first axis (``x`` is ``(B, D)`` or ``(B, C, H, W)``), which is the same memory as
Julia's ``(D, B)`` or ``(W, H, C, B)``.

Modules: :mod:`~autoencoder_toolkit.layers`, :mod:`~autoencoder_toolkit.encoders`,
:mod:`~autoencoder_toolkit.decoders`, :mod:`~autoencoder_toolkit.vaes`,
:mod:`~autoencoder_toolkit.infomaxvaes`, :mod:`~autoencoder_toolkit.juliarng`.
"""

from . import activations, decoders, encoders, infomaxvaes, layers, vaes
from .decoders import (BernoulliDecoder, CategoricalDecoder, Decoder, JointGaussianDecoder,
                       JointGaussianLogDecoder, SimpleGaussianDecoder, SplitGaussianDecoder,
                       SplitGaussianLogDecoder, decoder_loglikelihood)
from .encoders import (Encoder, JointGaussianEncoder, JointGaussianLogEncoder, encoder_kl,
                       encoder_logposterior, spherical_logprior)
from .infomaxvaes import InfoMaxVAE, MutualInfoChain, shuffle_latent, variational_mutual_info
from .layers import ActivationOverDims, Chain, Dense, Flatten, Reshape
from .optim import setup
from .vaes import VAE, reparameterize

__version__ = "0.1.0"

__all__ = [
    "activations", "decoders", "encoders", "infomaxvaes", "layers", "vaes", "setup",
    "Dense", "Chain", "Flatten", "Reshape", "ActivationOverDims",
    "Encoder", "JointGaussianLogEncoder", "JointGaussianEncoder",
    "spherical_logprior", "encoder_logposterior", "encoder_kl",
    "Decoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder", "JointGaussianDecoder",
    "SplitGaussianLogDecoder", "SplitGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder",
    "decoder_loglikelihood", "VAE", "reparameterize",
    "MutualInfoChain", "InfoMaxVAE", "shuffle_latent", "variational_mutual_info",
]

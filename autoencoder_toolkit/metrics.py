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

from typing import Any, NamedTuple

import numpy as np

from autoencoder_toolkit.datasets import _as_numpy, check_finite, train_test_split

__all__ = [
    "ActiveUnits",
    "active_units",
    "active_units_sampled",
    "classification_accuracy_split",
    "latent_classification_accuracy",
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

r"""scikit-learn transformers: an InfoMax-VAE (or a VAE) as a step of a ``Pipeline``.

:class:`InfoMaxVAETransformer` and :class:`VAETransformer` learn a latent representation
with :func:`~autoencoder_toolkit.training.fit` and map data to it::

    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from autoencoder_toolkit.sklearn import InfoMaxVAETransformer

    pipe = make_pipeline(InfoMaxVAETransformer(latent_dim=8, epochs=50), LogisticRegression(max_iter=1000))
    pipe.fit(x_train, y_train).score(x_test, y_test)

``fit(X)`` trains the model (multilayer perceptrons for the encoder, the decoder and the
critic, as ``autoencoder-toolkit train`` builds them), ``transform(X)`` gives the latent
means :math:`\mu(x)` ``(n_samples, latent_dim)``, ``inverse_transform(Z)`` the decoder's
mean at the codes ``Z``. Every hyperparameter is a constructor argument, so
``get_params``/``set_params``, ``clone`` and ``GridSearchCV`` work as for any estimator;
with ``random_state`` set, fitting is deterministic (torch's global generator is left
untouched). The fitted torch model is ``model_``, its epoch records ``history_``.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from ..data.splits import DataSplit, Scaling
from ..training.loop import fit, loss_kwargs_for, make_optimizers, mlp_model

__all__ = ["InfoMaxVAETransformer", "VAETransformer"]


class _AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What the two transformers share: fit, transform, inverse_transform."""

    _kind = "infomax"

    def _settings(self) -> dict[str, Any]:
        return self.get_params()

    def fit(self, X: Any, y: Any = None) -> "_AutoencoderTransformer":
        """Train a new model on ``X`` ``(n_samples, n_features)``; ``y`` is ignored."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        p = self._settings()
        if p["decoder"] not in ("auto", "bernoulli", "gaussian"):
            raise ValueError(f"decoder: expected 'auto', 'bernoulli' or 'gaussian', got {p['decoder']!r}")
        if p["scale"] not in ("auto", "none", "minmax", "standard"):
            raise ValueError(f"scale: expected 'auto', 'none', 'minmax' or 'standard', got {p['scale']!r}")
        unit = bool(X.min() >= 0.0 and X.max() <= 1.0)
        kind = ("none" if unit else "standard") if p["scale"] == "auto" else p["scale"]
        self.scaling_ = Scaling.choose(kind, DataSplit(np.asarray(X, dtype=np.float64)))
        x = self.scaling_.apply(np.array(X, dtype=np.float32))
        decoder = p["decoder"]
        if decoder == "auto":
            decoder = "bernoulli" if x.min() >= 0.0 and x.max() <= 1.0 else "gaussian"
        seed = int(check_random_state(p["random_state"]).randint(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = mlp_model(self._kind, (x.shape[1],), p["latent_dim"], list(p["hidden"]), decoder,
                              list(p["critic_hidden"]) if p.get("critic_hidden") else None)
        model = model.to(p["device"])
        opt = make_optimizers(model, p["lr"])
        batch = max(2, min(int(p["batch_size"]), x.shape[0]))
        self.history_ = fit(model, x, opt, epochs=p["epochs"], batch_size=batch,
                            loss_kwargs=loss_kwargs_for(model, p.get("alpha", 1.0), p["beta"]), seed=seed,
                            progress=bool(p["verbose"]))
        self.model_ = model.eval()
        self.decoder_ = decoder
        self._n_features_out = int(p["latent_dim"])
        # transforms run a float64 copy: each row's code then does not depend on the other rows
        # of the batch (float32 matrix products round differently for different batch sizes)
        self._exact = copy.deepcopy(model).cpu().double().eval()
        return self

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        s = self.scaling_
        return (np.asarray(X, dtype=np.float64) - s.shift) / s.factor

    def transform(self, X: Any) -> np.ndarray:
        """The latent means :math:`\\mu(x)` of ``X``: ``(n_samples, latent_dim)``, in ``X``'s float dtype."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.asarray(self._exact.encode(self._scaled(X)), dtype=X.dtype)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The decoder's mean at the codes ``X`` ``(n_samples, latent_dim)``: ``(n_samples, n_features)``."""
        check_is_fitted(self, "model_")
        Z = np.asarray(X)
        if Z.ndim != 2 or Z.shape[1] != self._n_features_out:
            raise ValueError(f"X: expected codes of shape (n_samples, {self._n_features_out}), got {Z.shape}")
        dtype = Z.dtype if Z.dtype in (np.float32, np.float64) else np.float64
        mean = np.asarray(self._exact.decode(np.asarray(Z, dtype=np.float64)).mean)
        return np.asarray(mean * self.scaling_.factor + self.scaling_.shift, dtype=dtype)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        return tags


class InfoMaxVAETransformer(_AutoencoderTransformer):
    """An InfoMax-VAE as a scikit-learn transformer (see the module documentation).

    Parameters
    ----------
    latent_dim:
        Dimensions of the representation (default 2).
    hidden:
        Hidden layer sizes of the encoder; the decoder mirrors them (default ``(256, 256)``).
    critic_hidden:
        Hidden layer sizes of the critic (default: ``hidden``).
    scale:
        How the data are scaled before the model sees them (and back, in
        ``inverse_transform``): ``"auto"`` (default: unchanged when every value of the
        training data is in ``[0, 1]``, else ``"standard"``), ``"none"``, ``"minmax"`` or
        ``"standard"`` (one map for all features, as ``autoencoder-toolkit train --scale``).
    decoder:
        ``"bernoulli"`` (data in ``[0, 1]``), ``"gaussian"``, or ``"auto"`` (default: Bernoulli
        when every scaled value is in ``[0, 1]``).
    alpha, beta:
        Weights of the mutual-information and KL terms (default 1 and 1).
    epochs, batch_size, lr:
        Training length, samples per step (at most the data's size) and Adam's learning rate.
    random_state:
        ``None``, an integer or a ``numpy.random.RandomState``: seeds the initial weights, the
        batch order and the noise.
    device:
        ``"cpu"`` or ``"cuda"``.
    verbose:
        Show a progress bar while fitting.
    """

    _kind = "infomax"

    def __init__(self, latent_dim: int = 2, hidden: Sequence[int] = (256, 256), critic_hidden: Sequence[int] | None = None,
                 scale: str = "auto", decoder: str = "auto", alpha: float = 1.0, beta: float = 1.0, epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, random_state: Any = None, device: str = "cpu",
                 verbose: bool = False) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.critic_hidden = critic_hidden
        self.scale = scale
        self.decoder = decoder
        self.alpha = alpha
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.device = device
        self.verbose = verbose


class VAETransformer(_AutoencoderTransformer):
    """A VAE (a β-VAE with ``beta`` > 1) as a scikit-learn transformer; parameters as
    :class:`InfoMaxVAETransformer` without the critic's."""

    _kind = "vae"

    def __init__(self, latent_dim: int = 2, hidden: Sequence[int] = (256, 256), scale: str = "auto",
                 decoder: str = "auto", beta: float = 1.0, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                 random_state: Any = None, device: str = "cpu", verbose: bool = False) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.scale = scale
        self.decoder = decoder
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

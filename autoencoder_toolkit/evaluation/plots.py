"""Figures of a training run, drawn with matplotlib's Agg renderer into PNG files.

Every function builds a ``matplotlib.figure.Figure`` directly (no ``pyplot``, no global
state, nothing shown on screen) and writes it atomically, so a figure on disk is
always a complete PNG file.

* :func:`plot_losses`: the training and held-out losses per epoch;
* :func:`plot_mutual_info`: the critic's MI estimate per epoch;
* :func:`plot_latent`: latent means as a 2-D scatter coloured by label (the first two
  principal components when the latent space has more than two dimensions).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io.files import atomic_write_bytes

__all__ = ["plot_losses", "plot_mutual_info", "plot_latent", "pca_2d"]


def _figure(n_panels: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    return fig, axes


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _marker(epochs: np.ndarray) -> str | None:
    return "." if epochs.size <= 40 else None


def _column(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    out = []
    for h in history:
        v = h.get(key)
        try:
            out.append(float(v) if v is not None else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _has(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).any())


def plot_losses(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
                title: str | None = None) -> Path:
    """Loss curves per epoch: the VAE loss (training and held-out) and the critic loss.

    ``history`` is :func:`~autoencoder_toolkit.training.fit`'s ``state.history``
    (keys ``epoch``, ``loss``, ``test_loss``, ``critic_loss``). The critic panel is
    drawn only when the model has a critic. Returns the path.
    """
    epochs = _column(history, "epoch")
    critic = _column(history, "critic_loss")
    with_critic = _has(critic)
    fig, axes = _figure(2 if with_critic else 1)
    ax = axes[0]
    ax.plot(epochs, _column(history, "loss"), marker=_marker(epochs), label="training (mean over batches)")
    test = _column(history, "test_loss")
    if _has(test):
        ax.plot(epochs, test, marker=_marker(epochs), label="held-out")
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per sample)")
    ax.set_title("VAE loss  −log p(x|z) + β·KL − α·MI")
    ax.legend()
    ax.grid(alpha=0.3)
    if with_critic:
        ax2 = axes[1]
        ax2.plot(epochs, critic, marker=_marker(epochs), color="tab:red", label="critic loss −MI (training)")
        _integer_epochs(ax2)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("critic loss (nats)")
        ax2.set_title("critic loss")
        ax2.legend()
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_mutual_info(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
                     title: str | None = None) -> Path:
    """The critic's MI lower bound per epoch: training mean ± its spread over batches, and held-out.

    Uses the keys ``epoch``, ``mi``, ``mi_std`` and ``test_mi`` of the history.
    """
    epochs = _column(history, "epoch")
    mi = _column(history, "mi")
    spread = _column(history, "mi_std")
    fig, (ax,) = _figure(1)
    ax.plot(epochs, mi, marker=_marker(epochs), label="training batches (mean)")
    if _has(spread):
        ax.fill_between(epochs, mi - spread, mi + spread, alpha=0.25, label="± std over batches")
    test = _column(history, "test_mi")
    if _has(test):
        ax.plot(epochs, test, marker=_marker(epochs), label="held-out")
    ax.axhline(0.0, color="grey", lw=0.8)
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MI estimate (nats)")
    ax.set_title(title or "mutual information I(x; z): the critic's lower bound")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(N, L)`` codes on their first two principal components.

    Returns the ``(N, 2)`` projection and the ``(2,)`` fractions of variance explained.
    Each component's sign is fixed so that its largest loading is positive.
    """
    x = np.asarray(codes, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    for i in range(comps.shape[0]):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    total = float(np.sum(s**2))
    explained = (s[:2] ** 2) / total if total > 0 else np.zeros(2)
    proj = x @ comps.T
    if proj.shape[1] < 2:
        proj = np.column_stack([proj, np.zeros(proj.shape[0])])
        explained = np.append(explained, 0.0)
    return proj, explained


def plot_latent(codes: Any, labels: Any, path: str | os.PathLike[str], *,
                class_names: Sequence[str] | None = None, title: str | None = None,
                max_points: int = 20000, seed: int = 0) -> Path:
    """Scatter of latent means ``(N, L)`` coloured by ``labels`` (or one colour without labels).

    ``L = 2``: the codes themselves; ``L > 2``: their first two principal components
    (:func:`pca_2d`); ``L = 1``: the code against the label. At most ``max_points``
    points are drawn (a fixed random subset).
    """
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"codes: expected an array of shape (N, L), got {z.shape}")
    y = None if labels is None else np.asarray(labels)
    if z.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(z.shape[0], max_points, replace=False))
        z = z[keep]
        y = None if y is None else y[keep]
    latent_dim = z.shape[1]
    if latent_dim == 2:
        xy, xlabel, ylabel = z, "z₁ (mean)", "z₂ (mean)"
    elif latent_dim == 1:
        xy = np.column_stack([z[:, 0], y if y is not None else np.zeros(z.shape[0])])
        xlabel, ylabel = "z₁ (mean)", "label" if y is not None else ""
    else:
        xy, explained = pca_2d(z)
        xlabel = f"PC 1 ({100 * explained[0]:.0f}% of variance)"
        ylabel = f"PC 2 ({100 * explained[1]:.0f}% of variance)"
    fig, (ax,) = _figure(1, width=6.5, height=5.5)
    if y is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    else:
        classes = np.unique(y)
        cmap_name = "tab10" if classes.size <= 10 else "tab20" if classes.size <= 20 else "viridis"
        from matplotlib import colormaps

        cmap = colormaps[cmap_name]
        for i, c in enumerate(classes):
            sel = y == c
            colour = cmap(i % cmap.N) if classes.size <= 20 else cmap(i / max(1, classes.size - 1))
            name = str(c)
            if class_names is not None and isinstance(c, (int, np.integer)) and 0 <= int(c) < len(class_names):
                name = class_names[int(c)]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=colour, label=name)
        if classes.size <= 20:
            ax.legend(markerscale=3, fontsize="small", loc="best", framealpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    what = "latent means" if latent_dim <= 2 else f"latent means ({latent_dim}-D, PCA)"
    ax.set_title(title or what)
    ax.grid(alpha=0.3)
    return _save(fig, path)

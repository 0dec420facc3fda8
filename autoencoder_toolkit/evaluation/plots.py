"""Figures of a training run, drawn with matplotlib's Agg renderer into PNG files.

Every function builds a ``matplotlib.figure.Figure`` directly (no ``pyplot``, no global
state, nothing shown on screen) and writes it atomically, so a figure on disk is
always a complete PNG file.

* :func:`plot_losses`: the training and held-out losses per epoch;
* :func:`plot_mutual_info`: the critic's MI estimate per epoch;
* :func:`plot_latent`: latent means as a 2-D scatter coloured by label (the first two
  principal components when the latent space has more than two dimensions);
* :func:`plot_reconstructions`: images next to their reconstructions;
* :func:`plot_samples`: a grid of images sampled from the model.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io.files import atomic_write_bytes

__all__ = ["plot_losses", "plot_mutual_info", "plot_latent", "plot_reconstructions", "plot_samples", "image_grid",
           "pca_2d"]


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
    """Loss curves per epoch: the VAE loss, training and held-out.

    ``history`` is :func:`~autoencoder_toolkit.training.fit`'s history (keys ``epoch``,
    ``loss``, ``test_loss``). The critic's loss is ``−MI``: :func:`plot_mutual_info` shows
    it. Returns the path.
    """
    epochs = _column(history, "epoch")
    fig, (ax,) = _figure(1)
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


def image_grid(images: Any, shape: Sequence[int], columns: int) -> np.ndarray:
    """``images`` ``(N, *anything of size prod(shape))`` tiled into one ``(rows·H, columns·W[, 3])`` array.

    ``shape`` is ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``; values are clipped to ``[0, 1]``
    after scaling by the largest value's magnitude when it exceeds 1; a 1-pixel gap separates
    the tiles.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"shape: expected (H, W), (1, H, W) or (3, H, W), got {shape}")
    c, h, w = shape
    x = np.asarray(images, dtype=np.float64).reshape(-1, c, h, w)
    top = float(np.max(np.abs(x))) if x.size else 1.0
    lo = float(np.min(x)) if x.size else 0.0
    if lo < 0 or top > 1:  # show the range the data have
        x = (x - lo) / max(top - lo, 1e-12)
    x = np.clip(x, 0.0, 1.0).transpose(0, 2, 3, 1)
    rows = max(1, math.ceil(len(x) / columns))
    grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, c))
    for i, img in enumerate(x):
        r, k = divmod(i, columns)
        grid[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = img
    return grid[..., 0] if c == 1 else grid


def _show(ax: Any, grid: np.ndarray) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()


def plot_reconstructions(inputs: Any, reconstructions: Any, shape: Sequence[int], path: str | os.PathLike[str], *,
                         title: str | None = None) -> Path:
    """Inputs (top row) above their reconstructions (bottom row), as images of ``shape``."""
    n = len(inputs)
    fig, (ax,) = _figure(1, width=min(12.0, 1.2 * n + 1), height=3.0)
    both = np.concatenate([np.asarray(inputs, dtype=np.float64).reshape(n, -1),
                           np.asarray(reconstructions, dtype=np.float64).reshape(n, -1)])
    _show(ax, image_grid(both, shape, n))
    ax.set_title(title or "held-out inputs (top) and their reconstructions (bottom)")
    return _save(fig, path)


def plot_samples(samples: Any, shape: Sequence[int], path: str | os.PathLike[str], *, columns: int = 8,
                 title: str | None = None) -> Path:
    """Images sampled from the model (decoder means at codes drawn from the prior), in a grid."""
    fig, (ax,) = _figure(1, width=8.0, height=8.0 * math.ceil(len(samples) / columns) / columns + 0.6)
    _show(ax, image_grid(samples, shape, columns))
    ax.set_title(title or "samples: the decoder's mean at codes z ~ N(0, I)")
    return _save(fig, path)

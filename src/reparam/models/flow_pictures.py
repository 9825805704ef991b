"""Pictures of a flow run: the learned density next to the data (or the target) on a grid, samples,
the training curve, and for images a grid of samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..plots import pyplot, save_figure
from .pictures import tile


def grid_axes(low: np.ndarray, high: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(x_axis, y_axis, points)`: `num` midpoints per axis of the box `[low, high]` (2-D), and the
    `(num^2, 2)` grid points, row-major with `y` varying slowest (an image's rows)."""
    xs = low[0] + (high[0] - low[0]) * (0.5 + np.arange(num)) / num
    ys = low[1] + (high[1] - low[1]) * (0.5 + np.arange(num)) / num
    xx, yy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([xx.ravel(), yy.ravel()], -1)


def _density_panel(ax, log_density: np.ndarray, low, high, title: str) -> None:
    num = int(round(math.sqrt(log_density.size)))
    density = np.exp(np.where(np.isfinite(log_density), log_density, -np.inf)).reshape(num, num)
    ax.imshow(density, origin="lower", extent=(low[0], high[0], low[1], high[1]), cmap="magma", aspect="equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_density(
    reference: np.ndarray, model_log_density: np.ndarray, low, high, path: Path, title: str, *, target: bool
) -> None:
    """Left: the data (a 2-D histogram of `reference` `(n, 2)` points) or, with `target=True`, the
    target's log-density on the grid (`reference` `(num^2,)`); right: the flow's density on the same
    grid (`model_log_density` `(num^2,)`, from `grid_axes`)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.5))
    if target:
        _density_panel(left, reference, low, high, "target density")
    else:
        left.hist2d(
            reference[:, 0], reference[:, 1], bins=200, range=[[low[0], high[0]], [low[1], high[1]]], cmap="magma"
        )
        left.set_aspect("equal")
        left.set_title("data", fontsize=9)
        left.set_xticks([])
        left.set_yticks([])
    _density_panel(right, model_log_density, low, high, title)
    save_figure(fig, path)


def plot_samples_2d(samples: np.ndarray, reference: np.ndarray | None, low, high, path: Path, title: str) -> None:
    """Flow samples (first two coordinates) as a scatter, beside the reference points when given."""
    plt = pyplot()
    panels = 1 if reference is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4.5), squeeze=False)
    pairs = [(samples, title)] if reference is None else [(reference, "data"), (samples, title)]
    for ax, (points, label) in zip(axes[0], pairs, strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, color="black")
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
    save_figure(fig, path)


def plot_curve(
    rows: list[dict], path: Path, title: str, *, keys: tuple[str, ...], optimum: float | None = None
) -> None:
    """Each of `keys` against the rows' `step` (rows without the key are skipped); a dashed line at
    `optimum` where it is known."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        if points:
            x, y = zip(*points, strict=True)
            ax.plot(x, y, label=key.replace("_", " "))
    if optimum is not None:
        ax.axhline(optimum, color="black", linestyle="--", linewidth=1, label=f"optimum {optimum:.4f}")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("nats")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_image_samples(images: np.ndarray, image_shape: tuple[int, int], path: Path, title: str) -> None:
    """Sampled images `(n, h * w)` in [0, 1] as one grid."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(tile(images, image_shape, cols=int(math.ceil(math.sqrt(len(images))))), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    save_figure(fig, path)

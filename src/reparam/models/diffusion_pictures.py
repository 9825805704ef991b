"""Pictures of a diffusion run: samples beside the data, the reverse trajectory from `z_1` (noise) to
`x_0`, the variational bound's terms over `t`, and per-class sample grids of a conditional model.

Arrays come in the model's space: 2-D toy points as they are, images as flat vectors in `[-1, 1]`
(shown as grey levels `(x + 1) / 2`, clipped).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..plots import pyplot, save_figure
from .pictures import tile

__all__ = ["plot_bound_terms", "plot_class_samples", "plot_samples", "plot_trajectory", "to_pixels"]


def to_pixels(x: np.ndarray) -> np.ndarray:
    """Images in `[-1, 1]` (any shape) as grey levels in `[0, 1]`: `clip((x + 1) / 2, 0, 1)`."""
    return np.clip((np.asarray(x, np.float32) + 1) / 2, 0, 1)


def _limits(points: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(points, [0.5, 99.5])
    pad = 0.1 * (high - low) + 1e-3
    return float(low - pad), float(high + pad)


def _show_images(ax, canvas: np.ndarray, title: str) -> None:
    ax.imshow(canvas, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_samples(
    samples: np.ndarray, data: np.ndarray, path: Path, title: str, image_shape: tuple[int, int] | None = None
) -> None:
    """Toys (`image_shape=None`): held-out data and samples `(n, 2)` side by side, on the same axes.
    Images: a square grid of the samples `(n, h * w)` (at most 100) beside as many test images."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    if image_shape is None:
        limits = _limits(np.asarray(data))
        for ax, points, name in ((left, data, "held-out data"), (right, samples, "samples")):
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.3, color="k" if ax is left else "C0")
            ax.set_xlim(*limits)
            ax.set_ylim(*limits)
            ax.set_aspect("equal")
            ax.set_title(f"{name} ({len(points):,})", fontsize=9)
    else:
        n = min(100, len(samples), len(data))
        cols = int(math.ceil(math.sqrt(n)))
        _show_images(left, tile(to_pixels(data[:n]), image_shape, cols), "test images")
        _show_images(right, tile(to_pixels(samples[:n]), image_shape, cols), "samples (denoised means)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_trajectory(
    times: np.ndarray, states: np.ndarray, path: Path, title: str, image_shape: tuple[int, int] | None = None
) -> None:
    """The reverse process at `S` snapshots, `times` `(S,)` from 1 down to 0, `states` `(S, n, d)`.

    Toys: one scatter panel per snapshot (all points). Images: one row per example (at most 8), one
    column per snapshot, noise on the left and the sample on the right."""
    plt = pyplot()
    times, states = np.asarray(times), np.asarray(states)
    if image_shape is None:
        fig, axes = plt.subplots(1, len(times), figsize=(2.2 * len(times), 2.6))
        axes = np.atleast_1d(axes)
        limits = _limits(states[-1])
        for ax, t, points in zip(axes, times, states, strict=True):
            ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.3)
            ax.set_xlim(*limits)
            ax.set_ylim(*limits)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t = {t:.3f}", fontsize=8)
    else:
        rows = min(8, states.shape[1])
        order = np.concatenate([states[:, i] for i in range(rows)])  # row i: example i over the snapshots
        fig, ax = plt.subplots(figsize=(0.8 * len(times) + 1, 0.8 * rows + 0.6))
        columns = ", ".join(f"{t:.2f}" for t in times)
        _show_images(ax, tile(to_pixels(order), image_shape, len(times)), f"t = {columns} (left to right)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_bound_terms(
    times: np.ndarray, terms: np.ndarray, prior: float, decoder: float, path: Path, title: str, unit: str = "nats"
) -> None:
    """The bound's KL terms (mean over the test set) against the upper time `t` of each pair, on a
    log scale, with the prior and decoder terms and the total in the legend."""
    plt = pyplot()
    times, terms = np.asarray(times), np.asarray(terms)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(times, np.maximum(terms, 1e-12), lw=1)
    left.set_yscale("log")
    left.set_xlabel("t")
    left.set_ylabel(f"KL term ({unit})")
    left.set_title("diffusion terms of the bound over t", fontsize=9)
    right.plot(times, np.cumsum(terms), lw=1.2, label=f"diffusion terms, cumulative ({terms.sum():.3f})")
    right.axhline(prior, color="C1", ls="--", label=f"prior L_T ({prior:.4f})")
    right.axhline(decoder, color="C2", ls=":", label=f"decoder L_0 ({decoder:.3f})")
    right.set_xlabel("t")
    right.set_ylabel(unit)
    right.set_title(f"total {prior + terms.sum() + decoder:.3f} {unit}", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_class_samples(samples: np.ndarray, image_shape: tuple[int, int], path: Path, title: str) -> None:
    """Samples of a class-conditional model `(K, n, h * w)`: row `k` holds `n` samples of class `k`."""
    plt = pyplot()
    samples = np.asarray(samples)
    classes, n = samples.shape[:2]
    fig, ax = plt.subplots(figsize=(0.6 * n + 1, 0.6 * classes + 0.6))
    _show_images(ax, tile(to_pixels(samples.reshape(classes * n, -1)), image_shape, n), title)
    save_figure(fig, path)

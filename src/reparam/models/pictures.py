"""Pictures of a VAE run: samples, reconstructions, the 2-D latent space and the bounds per epoch."""

from __future__ import annotations

import math
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..plots import pyplot, save_figure


def tile(images: np.ndarray, image_shape: tuple[int, int], cols: int, pad: int = 1) -> np.ndarray:
    """Flat images `(n, h * w)` as one grey picture, `cols` to a row, separated by `pad` pixels."""
    h, w = image_shape
    rows = math.ceil(len(images) / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.3, np.float32)  # grey separators
    for i, image in enumerate(np.asarray(images)):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = (
            image.reshape(h, w)
        )
    return canvas


def _show(ax, canvas: np.ndarray, title: str) -> None:
    ax.imshow(canvas, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_samples(means: np.ndarray, image_shape: tuple[int, int], path: Path, title: str) -> None:
    """Decoder means `E[x | z]` of prior draws `z ~ p(z)`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    _show(ax, tile(means, image_shape, cols=int(math.ceil(math.sqrt(len(means))))), title)
    save_figure(fig, path)


def plot_reconstructions(
    x: np.ndarray, means: np.ndarray, image_shape: tuple[int, int], path: Path, cols: int = 10
) -> None:
    """Test images (odd rows) above the decoder means at their posterior modes (even rows)."""
    plt = pyplot()
    rows = [block for i in range(0, len(x), cols) for block in (x[i : i + cols], means[i : i + cols])]
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(rows) + 0.5))
    _show(ax, tile(np.concatenate(rows), image_shape, cols), "test images and reconstructions (below each row)")
    save_figure(fig, path)


def plot_latent(
    means: np.ndarray, labels: np.ndarray, grid: np.ndarray, extent: float, image_shape: tuple[int, int], path: Path
) -> None:
    """Left: posterior means of the test set, coloured by class. Right: decoder means on a regular
    `g x g` grid of `z` over `[-extent, extent]^2` (`grid` is `(g * g, D)`, row-major, top row
    at `z_2 = +extent`)."""
    plt = pyplot()
    g = int(round(math.sqrt(len(grid))))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    points = left.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=left, ticks=range(10), label="class")
    left.set_xlim(-extent, extent)
    left.set_ylim(-extent, extent)
    left.set_xlabel("$z_1$")
    left.set_ylabel("$z_2$")
    left.set_title("test set: posterior means", fontsize=9)
    right.imshow(
        tile(grid, image_shape, g),
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(-extent, extent, -extent, extent),
        interpolation="nearest",
    )
    right.set_xlabel("$z_1$")
    right.set_ylabel("$z_2$")
    right.set_title("decoded grid: E[x | z]", fontsize=9)
    save_figure(fig, path)


def plot_bounds(rows: list[dict], path: Path, title: str) -> None:
    """Train and test ELBO per epoch, and the final test log-likelihood (IWAE at large K)."""
    plt = pyplot()
    epochs = [r for r in rows if "test_elbo" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["epoch"] for r in epochs], [r["train_elbo"] for r in epochs], label="train ELBO")
    ax.plot([r["epoch"] for r in epochs], [r["test_elbo"] for r in epochs], label="test ELBO")
    final = [r for r in rows if "test_nll_iwae" in r]
    if final:
        ax.axhline(
            -final[-1]["test_nll_iwae"],
            color="k",
            ls="--",
            lw=1,
            label=f"test log p(x), IWAE K={final[-1]['eval_k']:,}",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


LATENT_EXTENT, LATENT_GRID = 3.0, 15
"""The decoded latent grid spans `[-LATENT_EXTENT, LATENT_EXTENT]^2` in `LATENT_GRID^2` points."""


def draw_vae_pictures(folder: Path, rows: list[dict], label: str, model, data, x_test, key, latent: bool) -> list[str]:
    """`samples.png`, `reconstructions.png`, `bounds.png` and, with `latent` (a 2-D Gaussian latent),
    `latent.png` for a trained VAE; returns the file names written."""
    shape = data.image_shape
    samples, reconstructions, latent_means, grid = map(
        np.asarray, picture_arrays(model, x_test[:30], x_test, key, latent)
    )
    plot_samples(samples, shape, folder / "samples.png", f"{label}: E[x | z], z ~ p(z)")
    plot_reconstructions(np.asarray(x_test[:30]), reconstructions, shape, folder / "reconstructions.png")
    plot_bounds(rows, folder / "bounds.png", f"{label} on {data.name}")
    if latent:
        plot_latent(latent_means, np.asarray(data.y_test), grid, LATENT_EXTENT, shape, folder / "latent.png")
    return ["samples.png", "reconstructions.png", "bounds.png"] + (["latent.png"] if latent else [])


@eqx.filter_jit
def picture_arrays(model, x_shown, x_test, key, latent: bool):
    """Decoder means (clipped to [0, 1]) of 64 prior draws and of the posterior modes of `x_shown`;
    with `latent`, the test set's posterior means and the decoded `LATENT_GRID`^2 grid."""
    display = lambda z: jnp.clip(model.likelihood(z).mean(), 0.0, 1.0)
    samples, reconstructions = display(model.prior().sample(key, (64,))), display(model.posterior(x_shown).mode())
    if not latent:
        return samples, reconstructions, jnp.zeros(()), jnp.zeros(())
    axis = jnp.linspace(-LATENT_EXTENT, LATENT_EXTENT, LATENT_GRID, dtype=jnp.float32)
    grid = jnp.stack(jnp.meshgrid(axis, axis[::-1]), -1).reshape(-1, 2)  # row-major, top row z_2 = +extent
    return samples, reconstructions, model.posterior(x_test).mean(), display(grid)

"""Pictures of a Bayesian-network run: the predictive band of a 1-D regression (epistemic and aleatoric
parts drawn apart), the reliability diagram, in- vs out-of-distribution entropy histograms and the
gradient variance per estimator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import pyplot, save_figure


def plot_predictive_band(x_train, y_train, grid, mean, epistemic_sd, total_sd, path: Path, title: str) -> None:
    """Predictive mean on `grid` `(G,)` with +-2 sd bands: the inner band the epistemic part (spread of
    the draws' means), the outer the total (epistemic and aleatoric); the training points on top."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(grid, mean - 2 * total_sd, mean + 2 * total_sd, color="C0", alpha=0.15, label="+-2 sd, total")
    ax.fill_between(
        grid, mean - 2 * epistemic_sd, mean + 2 * epistemic_sd, color="C0", alpha=0.35, label="+-2 sd, epistemic"
    )
    ax.plot(grid, mean, color="C0", lw=1.5, label="predictive mean")
    ax.scatter(x_train, y_train, s=12, color="k", zorder=3, label="training data")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_reliability(confidence, accuracy, count, path: Path, title: str) -> None:
    """Reliability diagram: accuracy against mean confidence per equal-width bin (bars where the bin
    holds examples, the number of examples written at the bar's foot), the diagonal of perfect
    calibration dashed."""
    plt = pyplot()
    bins = len(count)
    centres = (np.arange(bins) + 0.5) / bins
    filled = np.asarray(count) > 0
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.bar(centres[filled], np.asarray(accuracy)[filled], width=1 / bins, edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot(
        np.asarray(confidence)[filled],
        np.asarray(accuracy)[filled],
        "o",
        color="C3",
        ms=3,
        label="(mean confidence, accuracy)",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    for centre, n in zip(centres[filled], np.asarray(count)[filled], strict=True):  # examples per bin
        ax.text(centre, 0.02, str(int(n)), ha="center", va="bottom", fontsize=7, color="white")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top class)", ylabel="accuracy", title=title)
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path)


def plot_entropy_histograms(entropy_in, entropy_out, path: Path, title: str) -> None:
    """Predictive entropy (nats) of in-distribution test inputs against out-of-distribution ones."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    top = float(max(np.max(entropy_in), np.max(entropy_out), 1e-3))
    bins = np.linspace(0.0, top, 30)
    ax.hist(np.asarray(entropy_in), bins=bins, alpha=0.6, density=True, label="in distribution (test)")
    ax.hist(np.asarray(entropy_out), bins=bins, alpha=0.6, density=True, label="out of distribution")
    ax.set(xlabel="predictive entropy (nats)", ylabel="density", title=title)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_gradient_variance(variances: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Variance of the minibatch gradient w.r.t. the first and last layer's weight means, per
    estimator (log scale)."""
    plt = pyplot()
    names = list(variances)
    layers = ("first_layer", "last_layer")
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(layers)
    for i, layer in enumerate(layers):
        ax.bar(
            np.arange(len(names)) + (i - 0.5) * width,
            [variances[n][layer] for n in names],
            width,
            label=layer.replace("_", " "),
        )
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_yscale("log")
    ax.set(ylabel="gradient variance (mean over elements)", title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_figure(fig, path)

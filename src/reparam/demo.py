"""`reparam demo`: pathwise vs score-function gradient variance on the quadratic problem
`E_{N(mu, sigma^2)}[(z - k)^2]`, checked against the closed forms of Mohamed et al. (2020)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from .estimators import pathwise, score_function
from .estimators.problems import NormalParams, quadratic, quadratic_single_sample_variance
from .estimators.variance import repeated_estimates, summarize
from .runs import start_run, write_json

ESTIMATORS = {"pathwise": pathwise, "score_function": score_function}


@dataclass
class DemoConfig:
    """Pathwise vs score-function gradient variance for a Normal (mu = sigma = 1)."""

    out: Path = Path("runs/demo")
    """Run folder: config.json, results.json and variance.png are written here."""
    k_min: float = -3.0
    """Smallest offset k in f(z) = (z - k)^2."""
    k_max: float = 3.0
    """Largest offset k."""
    num_k: int = 25
    """Number of k values in the sweep."""
    num_repeats: int = 20_000
    """Independent single-sample estimates per (estimator, k)."""
    seed: int = 0
    """Random seed."""

    def validate(self) -> None:
        if self.num_repeats < 2:
            raise ValueError(f"--num-repeats must be >= 2 to measure a variance, got {self.num_repeats}")
        if self.num_k < 1 or not self.k_min <= self.k_max:
            raise ValueError(f"need --num-k >= 1 and --k-min <= --k-max, got {self.num_k}, {self.k_min}, {self.k_max}")


def measure_sweep(config: DemoConfig) -> dict:
    """Variance per estimator, parameter and k, with the closed forms beside them."""
    params = NormalParams(jnp.asarray(1.0), jnp.asarray(1.0))
    ks = np.linspace(config.k_min, config.k_max, config.num_k)
    key = jax.random.key(config.seed)

    @jax.jit
    def measure_at(k, key):  # compiled once, reused for every k
        problem = quadratic(k)
        keys = jax.random.split(key, len(ESTIMATORS))
        return {
            name: summarize(
                repeated_estimates(estimator, problem.f, problem.dist_fn, params, sub, config.num_repeats, 1),
                problem.exact_grad(params),
            )
            for (name, estimator), sub in zip(ESTIMATORS.items(), keys)
        }

    rows = []
    for i, k in enumerate(ks):
        closed = quadratic_single_sample_variance(float(k))
        measured = measure_at(jnp.asarray(k), jax.random.fold_in(key, i))
        for name, m in measured.items():
            for p in ("mu", "sigma"):
                rows.append(dict(
                    k=float(k), estimator=name, param=p,
                    variance=float(getattr(m.variance, p)), closed_form=float(getattr(closed[name], p)),
                    bias=float(getattr(m.bias, p)),
                    bias_se=float(np.sqrt(getattr(m.variance, p) / config.num_repeats)),
                ))
    return dict(mu=1.0, sigma=1.0, num_repeats=config.num_repeats, rows=rows)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, param in zip(axes, ("mu", "sigma")):
        for name, color in (("pathwise", "C0"), ("score_function", "C3")):
            rows = [r for r in results["rows"] if r["estimator"] == name and r["param"] == param]
            ks = [r["k"] for r in rows]
            ax.plot(ks, [r["variance"] for r in rows], "o", color=color, ms=4, label=f"{name} (measured)")
            ax.plot(ks, [r["closed_form"] for r in rows], "-", color=color, lw=1, label=f"{name} (closed form)")
        ax.set_yscale("log")
        ax.set_xlabel("k in f(z) = (z - k)^2")
        ax.set_title(f"variance of the d/d{param} estimate (1 sample)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("variance")
    axes[0].legend(fontsize=8)
    fig.suptitle("Pathwise vs score function, z ~ N(1, 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(config: DemoConfig, console: Console | None = None) -> dict:
    config.validate()
    console = console or Console()
    out = start_run(config.out, config)
    with console.status(f"Measuring {2 * config.num_k} estimators x {config.num_repeats:,} repeats..."):
        results = measure_sweep(config)
    write_json(out / "results.json", results)
    plot(results, out / "variance.png")

    table = Table(title="Single-sample gradient variance, E_{N(1,1)}[(z - k)^2] (Mohamed et al. 2020)")
    for column in ("k", "estimator", "param", "measured", "closed form", "ratio"):
        table.add_column(column, justify="right" if column not in ("estimator", "param") else "left")
    shown = {float(k) for k in np.linspace(config.k_min, config.k_max, config.num_k)[:: max(1, config.num_k // 4)]}
    for r in results["rows"]:
        if r["k"] in shown:
            table.add_row(f"{r['k']:.2f}", r["estimator"], r["param"], f"{r['variance']:.3g}",
                          f"{r['closed_form']:.3g}", f"{r['variance'] / r['closed_form']:.3f}")
    console.print(table)
    console.print(f"Wrote {out / 'variance.png'} and {out / 'results.json'}")
    return results

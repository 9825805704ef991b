"""Pictures and tables of an estimators sweep: variance and signal-to-noise against the swept
setting (closed forms dashed where they exist), variance against samples per estimate, a summary.

`results` is what `reparam estimators` writes to `results.json`: `problem`, `sweep`, `values`,
`params`, `reference`, and `rows` of (value, estimator, num_samples, param, mean, bias, variance,
snr, seconds_per_estimate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from ..plots import pyplot, save_figure
from . import sweep as S


def _panels(results: dict) -> list[str]:
    return results["params"] if len(results["params"]) <= 4 else ["total"]


def _rows(results: dict, estimator: str, num_samples: int) -> list[dict]:
    return [r for r in results["rows"] if r["estimator"] == estimator and r["num_samples"] == num_samples]


def _series(results: dict, estimator: str, num_samples: int, param: str, field: str) -> np.ndarray:
    """`field` per sweep value; for the "total" panel the trace (variance) or mean (SNR) over parameters."""
    rows = _rows(results, estimator, num_samples)
    if param != "total":
        return np.array([r[field] for r in rows if r["param"] == param])
    by_value: dict[float, list[float]] = {}
    for r in rows:
        by_value.setdefault(r["value"], []).append(r[field])
    return np.array([np.sum(v) if field == "variance" else np.mean(v) for v in by_value.values()])


def _estimators(results: dict) -> list[str]:
    return sorted({r["estimator"] for r in results["rows"]}, key=S.ESTIMATOR_NAMES.index)


def common_num_samples(results: dict) -> int:
    """The smallest number of samples every estimator was measured at (a fair comparison)."""
    by_estimator: dict[str, set] = {}
    for r in results["rows"]:
        by_estimator.setdefault(r["estimator"], set()).add(r["num_samples"])
    return min(set.intersection(*by_estimator.values()))


def plot_sweep(problem: str, settings: dict, results: dict, field: str, path: Path) -> None:
    """Variance or SNR against the swept setting, one panel per parameter; closed forms dashed."""
    plt = pyplot()
    panels, n = _panels(results), common_num_samples(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, param in zip(axes[0], panels, strict=True):
        for c, name in enumerate(_estimators(results)):
            ax.plot(
                results["values"], _series(results, name, n, param, field), "o-", ms=3, lw=1, color=f"C{c}", label=name
            )
            closed = None
            if field == "variance" and problem == "quadratic":
                closed = S.closed_form_variance(settings, results["sweep"], results["values"], name, n)
            if closed is not None and param in closed:
                ax.plot(results["values"], closed[param], "--", color=f"C{c}", lw=1, label=f"{name} (closed form)")
        ax.set_yscale("log")
        ax.set_xlabel(results["sweep"])
        label = "trace of the covariance" if param == "total" else f"d/d{param}"
        ax.set_title(f"{'variance' if field == 'variance' else 'signal-to-noise ratio'}, {label}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{problem} problem, {n} sample{'s' if n > 1 else ''} per estimate")
    save_figure(fig, path)


def plot_num_samples(problem: str, results: dict, path: Path) -> None:
    """Total variance against samples per estimate, at the middle sweep value (log-log)."""
    plt = pyplot()
    middle = results["values"][len(results["values"]) // 2]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for c, name in enumerate(_estimators(results)):
        ns = sorted({r["num_samples"] for r in results["rows"] if r["estimator"] == name})
        total = [sum(r["variance"] for r in _rows(results, name, n) if r["value"] == middle) for n in ns]
        ax.loglog(ns, total, "o-", color=f"C{c}", label=name)
    ax.set_xlabel("samples per estimate")
    ax.set_ylabel("variance (trace)")
    ax.set_title(f"{problem}, {results['sweep']} = {middle:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def print_summary(problem: str, results: dict, console: Console) -> None:
    """Variance (bias) at the first, middle and last sweep value, and the cost per estimate."""
    values = results["values"]
    shown = sorted({values[i] for i in {0, len(values) // 2, len(values) - 1}})
    panels = _panels(results)
    table = Table(title=f"{problem}: variance of the gradient estimate (bias in brackets, {results['reference']} ref.)")
    for column in [results["sweep"], "estimator", "N"] + panels:
        table.add_column(column, justify="left" if column == "estimator" else "right")
    cost = Table(title="cost per estimate (compiled, this machine)")
    for column in ("estimator", "N", "microseconds"):
        cost.add_column(column, justify="right" if column != "estimator" else "left")
    for name in _estimators(results):
        for n in sorted({r["num_samples"] for r in results["rows"] if r["estimator"] == name}):
            rows = _rows(results, name, n)
            cost.add_row(name, str(n), f"{rows[0]['seconds_per_estimate'] * 1e6:.2f}")
            for value in shown:
                cells = []
                for param in panels:
                    at = [r for r in rows if r["value"] == value and (param == "total" or r["param"] == param)]
                    cells.append(f"{sum(r['variance'] for r in at):.3g} ({max(abs(r['bias']) for r in at):.2g})")
                table.add_row(f"{value:g}", name, str(n), *cells)
    console.print(table)
    console.print(cost)

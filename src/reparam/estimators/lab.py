"""`reparam estimators`: measure gradient estimators on the literature's test problems, sweep a
parameter, and draw variance and signal-to-noise pictures."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..runs import start_run, write_csv, write_json
from . import problems as P
from .measure_valued import measure_valued
from .pathwise import pathwise
from .gumbel_softmax import gumbel_softmax, straight_through_gumbel
from .score_function import moving_average_baseline, score_function, score_function_control_variate, score_function_loo
from .variance import measure, repeated_estimates, summarize

CONTINUOUS = ("quadratic", "exponential", "cosine", "vae")
DISCRETE = ("categorical", "bernoulli")
FAMILY = {"quadratic": "normal", "exponential": "normal", "cosine": "normal", "vae": "normal",
          "categorical": "categorical", "bernoulli": "bernoulli"}
ESTIMATOR_NAMES = ("pathwise", "score", "score-ma", "score-rloo", "score-cv", "measure-valued", "gumbel", "st-gumbel")
CONTINUOUS_ONLY = ("pathwise", "measure-valued")
NEED_TWO = ("score-rloo", "score-cv")  # skipped at num_samples = 1
DISCRETE_ONLY = ("gumbel", "st-gumbel")
SWEEPABLE = {"mu": CONTINUOUS[:3], "sigma": CONTINUOUS[:3], "k": ("quadratic",), "omega": ("cosine",),
             "target": ("bernoulli",), "logit": DISCRETE, "temperature": CONTINUOUS + DISCRETE}


@dataclass
class EstimatorsConfig:
    """Measure gradient estimators (bias, variance, SNR, cost) on a test problem, over a sweep."""

    problem: Literal["quadratic", "exponential", "cosine", "categorical", "bernoulli", "vae"] = "quadratic"
    """Test problem: E_{N(mu,sigma^2)}[(z-k)^2], [exp z], [cos(omega z)]; a categorical or Bernoulli
    objective (discrete estimators); a VAE-like quadratic with a learnable linear encoder."""
    dist: Literal["normal", "categorical", "bernoulli"] | None = None
    """Distribution family; implied by --problem (given only to check it)."""
    estimators: str = "pathwise,score,score-rloo"
    """Comma-separated: pathwise, score, score-ma, score-rloo, score-cv, measure-valued, gumbel, st-gumbel."""
    num_samples: str = "1,10,100"
    """Comma-separated samples per estimate (the sweep pictures use the first)."""
    sweep: str = "k=-3:3:25"
    """NAME=START:STOP:COUNT with NAME one of mu, sigma, k, omega, target, logit, temperature."""
    mu: float = 1.0
    """Mean of the Normal (continuous problems)."""
    sigma: float = 1.0
    """Standard deviation of the Normal (continuous problems)."""
    k: float = 1.0
    """Offset of the quadratic problem."""
    omega: float = 1.0
    """Frequency of the cosine problem."""
    target: float = 0.45
    """Target of the Bernoulli problem."""
    logit: float = 0.0
    """First logit of the discrete problems (the others are 0)."""
    temperature: float = 0.5
    """Temperature of the Gumbel-Softmax relaxations."""
    num_repeats: int = 5000
    """Independent estimates per point."""
    seed: int = 0
    """Random seed."""
    out: Path = Path("runs/estimators")
    """Run folder: config.json, results.json/.csv and the pictures."""


def parse_list(text: str, kind, flag: str) -> list:
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be a comma-separated list of {kind.__name__}, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def parse_sweep(text: str, problem: str) -> tuple[str, np.ndarray]:
    try:
        name, spec = text.split("=")
        start, stop, count = spec.split(":")
        values = np.linspace(float(start), float(stop), int(count))
    except ValueError:
        raise ValueError(f"--sweep must look like NAME=START:STOP:COUNT (e.g. mu=-3:3:25), got {text!r}") from None
    if name not in SWEEPABLE:
        raise ValueError(f"--sweep: unknown parameter {name!r}; choose from {', '.join(SWEEPABLE)}")
    if problem not in SWEEPABLE[name]:
        raise ValueError(f"--sweep {name} does not apply to --problem {problem} (it applies to {', '.join(SWEEPABLE[name])})")
    if len(values) < 1:
        raise ValueError("--sweep needs COUNT >= 1")
    return name, values


def check_config(config: EstimatorsConfig) -> tuple[list[str], list[int], str, np.ndarray]:
    names = parse_list(config.estimators, str, "--estimators")
    for name in names:
        if name not in ESTIMATOR_NAMES:
            raise ValueError(f"--estimators: unknown estimator {name!r}; choose from {', '.join(ESTIMATOR_NAMES)}")
        if name in CONTINUOUS_ONLY and config.problem in DISCRETE:
            raise ValueError(f"estimator {name!r} needs a reparameterizable (continuous) problem, not {config.problem!r}; "
                             f"for discrete problems use score*, gumbel or st-gumbel")
        if name in DISCRETE_ONLY and config.problem in CONTINUOUS:
            raise ValueError(f"estimator {name!r} is for discrete problems (categorical, bernoulli), not {config.problem!r}")
        if name == "measure-valued" and config.problem == "vae":
            raise ValueError("measure-valued is implemented for a Normal, not the vae problem's Independent Normal")
    sizes = parse_list(config.num_samples, int, "--num-samples")
    if min(sizes) < 1:
        raise ValueError(f"--num-samples must be >= 1, got {sizes}")
    if max(sizes) < 2 and any(n in NEED_TWO for n in names):
        raise ValueError("score-rloo and score-cv need --num-samples >= 2 (they use the other samples)")
    # (estimators needing two samples are skipped at N = 1; pictures compare at a common N)
    if config.dist is not None and config.dist != FAMILY[config.problem]:
        raise ValueError(f"--dist {config.dist} does not match --problem {config.problem} (a {FAMILY[config.problem]} problem)")
    if config.num_repeats < 2:
        raise ValueError(f"--num-repeats must be >= 2 to measure a variance, got {config.num_repeats}")
    if config.sigma <= 0 or config.temperature <= 0:
        raise ValueError("--sigma and --temperature must be positive")
    sweep_name, values = parse_sweep(config.sweep, config.problem)
    if sweep_name in ("sigma", "temperature") and values.min() <= 0:
        raise ValueError(f"--sweep {sweep_name} values must be positive")
    return names, sizes, sweep_name, values


def build_problem(config: EstimatorsConfig, **override) -> P.Problem:
    """The configured problem with any setting overridden (values may be traced)."""
    s = {**vars(config), **override}
    mu, sigma = s["mu"], s["sigma"]
    if config.problem == "quadratic":
        return P.quadratic(s["k"], mu, sigma)
    if config.problem == "exponential":
        return P.exponential(mu, sigma)
    if config.problem == "cosine":
        return P.cosine(s["omega"], mu, sigma)
    if config.problem == "categorical":
        return P.categorical(logits=jnp.zeros(4).at[0].set(s["logit"]))
    if config.problem == "bernoulli":
        return P.bernoulli(s["target"], logits=jnp.zeros(3).at[0].set(s["logit"]))
    return P.vae_quadratic()


def make_estimator(name: str, temperature):
    return {
        "pathwise": pathwise, "score": score_function, "score-ma": moving_average_baseline(0.9),
        "score-rloo": score_function_loo, "score-cv": score_function_control_variate,
        "measure-valued": measure_valued,
        "gumbel": functools.partial(gumbel_softmax, temperature=temperature),
        "st-gumbel": functools.partial(straight_through_gumbel, temperature=temperature),
    }[name]


def flat_names(params) -> list[str]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = []
    for path, leaf in leaves:
        base = jax.tree_util.keystr(path).strip(".") or "params"
        size = int(np.size(leaf))
        names += [base] if np.ndim(leaf) == 0 else [f"{base}[{i}]" for i in range(size)]
    return names


def flat_values(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)])


def sweep_point(config: EstimatorsConfig, name: str, estimator_name: str, num_samples: int):
    """A compiled `(value, key) -> Measurement` for one estimator: the swept setting is traced,
    so the whole sweep reuses one program."""

    @jax.jit
    def at(value, key):
        override = {name: value}
        problem = build_problem(config, **override)
        estimator = make_estimator(estimator_name, value if name == "temperature" else config.temperature)
        params = problem.params
        estimates = repeated_estimates(estimator, problem.f, problem.dist_fn, params, key, config.num_repeats, num_samples)
        return summarize(estimates, problem.exact_grad(params))

    return at


def _rate(progress: Progress, task, num_repeats: int) -> str:
    t = progress.tasks[task]
    return f"{t.completed * num_repeats / max(t.elapsed or 0.0, 1e-9):,.0f} estimates/s"


def run_sweep(config: EstimatorsConfig, console: Console) -> dict:
    names, sizes, sweep_name, values = check_config(config)
    key = jax.random.key(config.seed)
    base_problem = build_problem(config)
    param_names = flat_names(base_problem.params)
    rows, timings = [], []
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    combos = [(e, n) for e in names for n in sizes if not (e in NEED_TWO and n < 2)]
    skipped = [(e, n) for e in names for n in sizes if (e, n) not in combos]
    if skipped:
        console.print("Skipped (needs >= 2 samples): " + ", ".join(f"{e} at N={n}" for e, n in skipped))
    total = len(combos) * (len(values) + 1)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=total, rate="")
        for c, (estimator_name, n) in enumerate(combos):
            at = sweep_point(config, sweep_name, estimator_name, n)
            for i, value in enumerate(values):
                m = at(jnp.asarray(value), jax.random.fold_in(key, c * 10_000 + i))
                for j, param in enumerate(param_names):
                    rows.append(dict(sweep=sweep_name, value=float(value), estimator=estimator_name, num_samples=n,
                                     param=param, mean=float(flat_values(m.mean)[j]),
                                     bias=float(flat_values(m.bias)[j]), variance=float(flat_values(m.variance)[j]),
                                     snr=float(flat_values(m.snr)[j])))
                progress.update(task, advance=1, rate=_rate(progress, task, config.num_repeats))
            # Cost at the base setting, timed apart from compilation.
            timed = measure(make_estimator(estimator_name, config.temperature), base_problem, base_problem.params,
                            jax.random.fold_in(key, 10_000_000 + c), config.num_repeats, n)
            timings.append(dict(estimator=estimator_name, num_samples=n, seconds_per_estimate=timed.seconds_per_estimate))
            progress.update(task, advance=1)
    return dict(problem=config.problem, sweep=sweep_name, values=[float(v) for v in values], params=param_names,
                reference="exact", num_repeats=config.num_repeats, rows=rows, timings=timings)


def closed_form_variance(config: EstimatorsConfig, results: dict, estimator: str, num_samples: int):
    """Closed-form variance curve of the quadratic problem (pathwise and plain score), else None."""
    if config.problem != "quadratic" or estimator not in ("pathwise", "score") or results["sweep"] not in ("mu", "sigma", "k"):
        return None
    curves = {p: [] for p in ("mu", "sigma")}
    for v in results["values"]:
        s = {"mu": config.mu, "sigma": config.sigma, "k": config.k, results["sweep"]: v}
        closed = P.quadratic_variance(s["k"], s["mu"], s["sigma"], num_samples)[estimator]
        curves["mu"].append(closed.mu)
        curves["sigma"].append(closed.sigma)
    return curves


def _panels(results: dict) -> list[str]:
    return results["params"] if len(results["params"]) <= 4 else ["total"]


def _series(results: dict, estimator: str, num_samples: int, param: str, field: str) -> np.ndarray:
    rows = [r for r in results["rows"] if r["estimator"] == estimator and r["num_samples"] == num_samples]
    if param == "total":
        by_value = {}
        for r in rows:
            by_value.setdefault(r["value"], []).append(r[field])
        return np.array([np.sum(v) if field == "variance" else np.mean(v) for v in by_value.values()])
    return np.array([r[field] for r in rows if r["param"] == param])


def common_num_samples(results: dict) -> int:
    """The smallest number of samples every estimator was measured at (a fair comparison)."""
    by_estimator = {}
    for r in results["rows"]:
        by_estimator.setdefault(r["estimator"], set()).add(r["num_samples"])
    return min(set.intersection(*by_estimator.values()))


def plot_sweep(config: EstimatorsConfig, results: dict, field: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, n = _panels(results), common_num_samples(results)
    estimators = sorted({r["estimator"] for r in results["rows"]}, key=ESTIMATOR_NAMES.index)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, param in zip(axes[0], panels):
        for c, name in enumerate(estimators):
            ax.plot(results["values"], _series(results, name, n, param, field), "o-", ms=3, lw=1, color=f"C{c}", label=name)
            closed = closed_form_variance(config, results, name, n) if field == "variance" else None
            if closed is not None and param in closed:
                ax.plot(results["values"], closed[param], "--", color=f"C{c}", lw=1, label=f"{name} (closed form)")
        ax.set_yscale("log")
        ax.set_xlabel(results["sweep"])
        label = "trace of the covariance" if param == "total" else f"d/d{param}"
        ax.set_title(f"{'variance' if field == 'variance' else 'signal-to-noise ratio'}, {label}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{config.problem} problem, {n} sample{'s' if n > 1 else ''} per estimate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_num_samples(config: EstimatorsConfig, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = parse_list(config.num_samples, int, "--num-samples")
    middle = results["values"][len(results["values"]) // 2]
    estimators = sorted({r["estimator"] for r in results["rows"]}, key=ESTIMATOR_NAMES.index)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for c, name in enumerate(estimators):
        ns = [n for n in sizes if any(r["estimator"] == name and r["num_samples"] == n for r in results["rows"])]
        total = [sum(r["variance"] for r in results["rows"] if r["estimator"] == name and r["num_samples"] == n and r["value"] == middle) for n in ns]
        ax.loglog(ns, total, "o-", color=f"C{c}", label=name)
    ax.set_xlabel("samples per estimate")
    ax.set_ylabel("variance (trace)")
    ax.set_title(f"{config.problem}, {results['sweep']} = {middle:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(config: EstimatorsConfig, results: dict, console: Console) -> None:
    values = results["values"]
    shown = {values[i] for i in sorted({0, len(values) // 2, len(values) - 1})}
    panels = _panels(results)
    table = Table(title=f"{config.problem}: variance of the gradient estimate (bias in brackets, {results['reference']} reference)")
    for column in [results["sweep"], "estimator", "N"] + panels:
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for value in sorted(shown):
        for name in sorted({r["estimator"] for r in results["rows"]}, key=ESTIMATOR_NAMES.index):
            for n in sorted({r["num_samples"] for r in results["rows"] if r["estimator"] == name}):
                cells = []
                for param in panels:
                    rs = [r for r in results["rows"] if r["value"] == value and r["estimator"] == name and r["num_samples"] == n
                          and (param == "total" or r["param"] == param)]
                    var = sum(r["variance"] for r in rs)
                    bias = max((abs(r["bias"]) for r in rs), default=0.0)
                    cells.append(f"{var:.3g} ({bias:.2g})")
                table.add_row(f"{value:g}", name, str(n), *cells)
    console.print(table)
    cost = Table(title="cost per estimate (compiled, this machine)")
    for column in ("estimator", "N", "microseconds"):
        cost.add_column(column, justify="right" if column != "estimator" else "left")
    for t in results["timings"]:
        cost.add_row(t["estimator"], str(t["num_samples"]), f"{t['seconds_per_estimate'] * 1e6:.2f}")
    console.print(cost)


def run(config: EstimatorsConfig, console: Console | None = None) -> dict:
    console = console or Console()
    check_config(config)
    out = start_run(config.out, config)
    results = run_sweep(config, console)
    write_json(out / "results.json", results)
    write_csv(out / "results.csv", results["rows"])
    pictures = [out / f"variance_vs_{results['sweep']}.png", out / f"snr_vs_{results['sweep']}.png", out / "variance_vs_num_samples.png"]
    plot_sweep(config, results, "variance", pictures[0])
    plot_sweep(config, results, "snr", pictures[1])
    plot_num_samples(config, results, pictures[2])
    print_summary(config, results, console)
    console.print(f"Run folder: {out}", soft_wrap=True)
    console.print("Wrote " + ", ".join(p.name for p in pictures) + ", results.json, results.csv, config.json")
    return results

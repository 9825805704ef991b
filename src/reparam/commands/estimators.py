"""`reparam estimators`: measure gradient estimators on the literature's test problems over a sweep
of one setting; variance and signal-to-noise pictures, a summary table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console

from ..estimators import measure, report
from ..estimators import sweep as S
from ..runs import Job, drive, open_run, resolve_config, write_json


@dataclass(frozen=True)
class EstimatorsCommand:
    """Measure gradient estimators (bias, variance, SNR, cost) on a test problem, over a sweep."""

    problem: Literal["quadratic", "exponential", "cosine", "categorical", "bernoulli", "vae"] = "quadratic"
    """Test problem: E_{N(mu,sigma^2)}[(z-k)^2], [exp z], [cos(omega z)]; a categorical or Bernoulli
    objective (discrete estimators); a VAE-like quadratic with a learnable linear encoder."""
    dist: Literal["normal", "categorical", "bernoulli"] | None = None
    """Distribution family; implied by --problem (given only to check it)."""
    estimators: str = "pathwise,score,score-rloo"
    """Comma-separated: pathwise, score, score-ma, score-rloo, score-cv, measure-valued, gumbel, st-gumbel."""
    num_samples: str = "1,10,100"
    """Comma-separated samples per estimate (the sweep pictures use the smallest common one)."""
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
    """Run folder: config.json, metrics.jsonl/.csv (one row per point and parameter), results.json, pictures."""
    resume: Path | None = None
    """Continue the sweep in this folder after its last finished estimator."""

    @property
    def settings(self) -> dict:
        """The problem settings by name."""
        return dict(
            mu=self.mu,
            sigma=self.sigma,
            k=self.k,
            omega=self.omega,
            target=self.target,
            logit=self.logit,
            temperature=self.temperature,
        )


def parse_list(text: str, kind, flag: str) -> list:
    """`"1,10,100"` -> `[1, 10, 100]`, or a one-line error naming `flag`."""
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be a comma-separated list of {kind.__name__}, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def parse_sweep(text: str, problem: str) -> tuple[str, np.ndarray]:
    """`"mu=-3:3:25"` -> `("mu", linspace(-3, 3, 25))`, checked against the problem."""
    try:
        name, spec = text.split("=")
        start, stop, count = spec.split(":")
        values = np.linspace(float(start), float(stop), int(count))
    except ValueError:
        raise ValueError(f"--sweep must look like NAME=START:STOP:COUNT (e.g. mu=-3:3:25), got {text!r}") from None
    if name not in S.SWEEPABLE:
        raise ValueError(f"--sweep: unknown parameter {name!r}; choose from {', '.join(S.SWEEPABLE)}")
    if problem not in S.SWEEPABLE[name]:
        raise ValueError(
            f"--sweep {name} does not apply to --problem {problem} (it applies to {', '.join(S.SWEEPABLE[name])})"
        )
    if len(values) < 1:
        raise ValueError("--sweep needs COUNT >= 1")
    if name in ("sigma", "temperature") and values.min() <= 0:
        raise ValueError(f"--sweep {name} values must be positive")
    return name, values


def check(config: EstimatorsCommand) -> tuple[list[str], list[int], str, np.ndarray]:
    """The estimators, sample sizes, swept setting and its values; one-line errors for bad options."""
    names = parse_list(config.estimators, str, "--estimators")
    for name in names:
        if name not in S.ESTIMATOR_NAMES:
            raise ValueError(f"--estimators: unknown estimator {name!r}; choose from {', '.join(S.ESTIMATOR_NAMES)}")
        if name in S.CONTINUOUS_ONLY and config.problem in S.DISCRETE:
            raise ValueError(
                f"estimator {name!r} needs a reparameterizable (continuous) problem, not {config.problem!r}; "
                f"for discrete problems use score*, gumbel or st-gumbel"
            )
        if name in S.DISCRETE_ONLY and config.problem in S.CONTINUOUS:
            raise ValueError(
                f"estimator {name!r} is for discrete problems (categorical, bernoulli), not {config.problem!r}"
            )
        if name == "measure-valued" and config.problem == "vae":
            raise ValueError("measure-valued is implemented for a Normal, not the vae problem's Independent Normal")
    sizes = parse_list(config.num_samples, int, "--num-samples")
    if min(sizes) < 1:
        raise ValueError(f"--num-samples must be >= 1, got {sizes}")
    if max(sizes) < 2 and any(n in S.NEED_TWO for n in names):
        raise ValueError("score-rloo and score-cv need --num-samples >= 2 (they use the other samples)")
    if config.dist is not None and config.dist != S.FAMILY[config.problem]:
        raise ValueError(
            f"--dist {config.dist} does not match --problem {config.problem} (a {S.FAMILY[config.problem]} problem)"
        )
    if config.num_repeats < 2:
        raise ValueError(f"--num-repeats must be >= 2 to measure a variance, got {config.num_repeats}")
    if config.sigma <= 0 or config.temperature <= 0:
        raise ValueError("--sigma and --temperature must be positive")
    return names, sizes, *parse_sweep(config.sweep, config.problem)


def main(config: EstimatorsCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Measure every (estimator, samples) pair over the sweep, one chunk each; returns the rows."""
    console = console or Console()
    config = resolve_config("estimators", config)  # on --resume, the options saved in the folder
    names, sizes, swept, values = check(config)
    run = open_run("estimators", config, resume=config.resume)
    combos = [(e, n) for e in names for n in sizes if not (e in S.NEED_TWO and n < 2)]
    skipped = [f"{e} at N={n}" for e in names for n in sizes if (e, n) not in combos]
    if skipped:
        console.print("Skipped (needs >= 2 samples): " + ", ".join(skipped))
    key = jax.random.key(config.seed)
    base = S.build_problem(config.problem, config.settings)
    params = S.parameter_names(base.params)

    def advance(state, chunk: int):
        estimator, n = combos[chunk]
        at = S.sweep_point(config.problem, config.settings, swept, estimator, n, config.num_repeats)
        cost = measure(
            S.estimator_by_name(estimator, config.temperature),
            base,
            base.params,
            jax.random.fold_in(key, 10_000_000 + chunk),
            config.num_repeats,
            n,
        ).seconds_per_estimate
        rows = []
        for i, value in enumerate(values):
            m = at(jnp.asarray(value), jax.random.fold_in(key, chunk * 10_000 + i))
            fields = {name: S.flat_values(getattr(m, name)) for name in ("mean", "bias", "variance", "snr")}
            rows += [
                dict(
                    sweep=swept,
                    value=float(value),
                    estimator=estimator,
                    num_samples=n,
                    param=param,
                    **{name: float(v[j]) for name, v in fields.items()},
                    seconds_per_estimate=cost,
                )
                for j, param in enumerate(params)
            ]
        return state, rows

    def finish(state, rows: list[dict]) -> list[str]:
        results = dict(
            problem=config.problem,
            sweep=swept,
            values=[float(v) for v in values],
            params=params,
            reference="exact",
            num_repeats=config.num_repeats,
            rows=rows,
        )
        write_json(run.folder / "results.json", results)
        for field in ("variance", "snr"):
            report.plot_sweep(config.problem, config.settings, results, field, run.folder / f"{field}_vs_{swept}.png")
        report.plot_num_samples(config.problem, results, run.folder / "variance_vs_num_samples.png")
        report.print_summary(config.problem, results, console)
        return []

    job = Job(
        init=lambda: None,
        advance=advance,
        finish=finish,
        chunks=len(combos),
        label=f"estimators on {config.problem}",
        unit="points",
        units_per_chunk=len(values),
        rate_per_chunk=len(values) * config.num_repeats,
        rate_unit="estimates/s",
        files=(f"variance_vs_{swept}.png", f"snr_vs_{swept}.png", "variance_vs_num_samples.png", "results.json"),
    )
    return drive(job, run, console, stop_after=stop_after)


COMMAND = ("estimators", EstimatorsCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

"""Variance and cost of every Normal-applicable gradient estimator on the three problems of
Mohamed et al. (2020, Sec. 3), at a few parameter values; prints a markdown table.

    .venv/bin/python benchmarks/estimators.py [--num-repeats 20000] [--num-samples 2] [--json PATH]
    .venv/bin/python benchmarks/estimators.py --num-repeats 200    # smoke run

Each cell: the variance of the estimated d/dmu and d/dsigma over `--num-repeats` independent
estimates of `--num-samples` samples each (`reparam.estimators.measure`, exact reference
gradients); the last row the time per estimate, the median over the problems.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

import common
from reparam.estimators import measure
from reparam.estimators import problems as P
from reparam.estimators.sweep import estimator_by_name

ESTIMATORS = {
    name: estimator_by_name(name)
    for name in ("pathwise", "measure-valued", "score", "score-ma", "score-rloo", "score-cv")
}
"""Every estimator that applies to a Normal, by its `reparam estimators` name."""
POINTS = [
    ("quadratic k=0", P.quadratic(0.0, 1.0, 1.0)),
    ("quadratic k=3", P.quadratic(3.0, 1.0, 1.0)),
    ("exponential mu=1", P.exponential(1.0, 1.0)),
    ("exponential mu=1, sigma=2", P.exponential(1.0, 2.0)),
    ("cosine omega=0.5", P.cosine(0.5, 1.0, 1.0)),
    ("cosine omega=3", P.cosine(3.0, 1.0, 1.0)),
    ("cosine omega=10", P.cosine(10.0, 1.0, 1.0)),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-repeats", type=int, default=20_000)
    parser.add_argument("--num-samples", type=int, default=2, help="samples per estimate (>= 2 for RLOO/CV)")
    parser.add_argument("--json", metavar="PATH", help="also write every variance and time to PATH")
    args = parser.parse_args(argv)
    versions = common.versions("jax", "jaxlib", "reparam")
    started = common.announce("reparam gradient-estimator benchmark", versions)
    print(
        f"# jax on {jax.devices()[0].platform}; N = {args.num_samples} samples per estimate, "
        f"{args.num_repeats} repeats; variance of d/dmu | d/dsigma (exact reference gradients)\n"
    )
    print(common.markdown_table(["problem", *ESTIMATORS], []), flush=True)
    costs = {name: [] for name in ESTIMATORS}
    raw = {}
    for label, problem in POINTS:
        cells = []
        for i, (name, estimator) in enumerate(ESTIMATORS.items()):
            m = measure(estimator, problem, problem.params, jax.random.key(i), args.num_repeats, args.num_samples)
            cells.append(f"{float(m.variance.mu):.3g} / {float(m.variance.sigma):.3g}")
            costs[name].append(m.seconds_per_estimate)
            raw[f"{label}|{name}"] = {
                "variance_mu": float(m.variance.mu),
                "variance_sigma": float(m.variance.sigma),
                "seconds_per_estimate": float(m.seconds_per_estimate),
            }
        print(common.markdown_row([label, *cells]), flush=True)
    print(
        common.markdown_row(
            ["time per estimate (us, median over problems)", *(f"{np.median(c) * 1e6:.2f}" for c in costs.values())]
        )
    )
    common.finish(started)
    if args.json:
        common.write_json(
            args.json,
            common.record(versions, num_repeats=args.num_repeats, num_samples=args.num_samples, estimates=raw),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

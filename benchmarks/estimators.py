"""Variance and cost of every Normal-applicable gradient estimator on the three problems of
Mohamed et al. (2020, Sec. 3), at a few parameter values; prints a markdown table.

    .venv/bin/python benchmarks/estimators.py [--num-repeats 20000] [--num-samples 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

from reparam.estimators import (
    measure, measure_valued, moving_average_baseline, pathwise, score_function,
    score_function_control_variate, score_function_loo,
)
from reparam.estimators import problems as P

ESTIMATORS = {
    "pathwise": pathwise, "measure-valued": measure_valued, "score": score_function,
    "score-ma": moving_average_baseline(0.9), "score-rloo": score_function_loo,
    "score-cv": score_function_control_variate,
}
POINTS = [
    ("quadratic k=0", P.quadratic(0.0, 1.0, 1.0)),
    ("quadratic k=3", P.quadratic(3.0, 1.0, 1.0)),
    ("exponential mu=1", P.exponential(1.0, 1.0)),
    ("exponential mu=1, sigma=2", P.exponential(1.0, 2.0)),
    ("cosine omega=0.5", P.cosine(0.5, 1.0, 1.0)),
    ("cosine omega=3", P.cosine(3.0, 1.0, 1.0)),
    ("cosine omega=10", P.cosine(10.0, 1.0, 1.0)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-repeats", type=int, default=20_000)
    parser.add_argument("--num-samples", type=int, default=2, help="samples per estimate (>= 2 for RLOO/CV)")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"jax {jax.__version__}, {jax.devices()[0].platform}; N = {args.num_samples} samples per estimate, "
          f"{args.num_repeats} repeats; variance of d/dmu | d/dsigma (exact reference gradients)\n")
    print("| problem | " + " | ".join(ESTIMATORS) + " |")
    print("|---|" + "---|" * len(ESTIMATORS))
    costs = {name: [] for name in ESTIMATORS}
    for label, problem in POINTS:
        cells = []
        for i, (name, estimator) in enumerate(ESTIMATORS.items()):
            m = measure(estimator, problem, problem.params, jax.random.key(i), args.num_repeats, args.num_samples)
            cells.append(f"{float(m.variance.mu):.3g} / {float(m.variance.sigma):.3g}")
            costs[name].append(m.seconds_per_estimate)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| time per estimate (us, median over problems) | "
          + " | ".join(f"{np.median(c) * 1e6:.2f}" for c in costs.values()) + " |")


if __name__ == "__main__":
    main()

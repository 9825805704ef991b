"""The lab: run an estimator many times and report, per parameter, the mean, the bias against the
exact gradient (or a high-sample pathwise reference), the variance, the signal-to-noise ratio, and
the time per estimate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray, PyTree

from .pathwise import pathwise
from .problems import Problem
from .score_function import StatefulEstimator

REFERENCE_SAMPLES = 2**20


class Statistics(NamedTuple):
    """Statistics over independent estimates (pytrees shaped like the params)."""

    mean: PyTree
    variance: PyTree
    bias: PyTree  # mean - reference
    snr: PyTree  # |mean| / std


class Measurement(NamedTuple):
    """`Statistics` with the reference they were measured against and the cost of one estimate."""

    mean: PyTree
    variance: PyTree
    bias: PyTree  # mean - reference
    snr: PyTree  # |mean| / std
    reference: str  # "exact" or how the reference gradient was estimated
    seconds_per_estimate: float


def repeated_estimates(estimator, f, dist_fn, params, key: PRNGKeyArray, num_repeats: int, num_samples: int) -> PyTree:
    """`num_repeats` independent estimates stacked on a leading axis (vmapped: one program). A
    `StatefulEstimator` runs its repeats in sequence (`lax.scan`), carrying its state."""
    keys = jax.random.split(key, num_repeats)
    if isinstance(estimator, StatefulEstimator):

        def step(state, k):
            grads, state = estimator.step(f, dist_fn, params, k, num_samples, state)
            return state, grads

        return jax.lax.scan(step, estimator.init(), keys)[1]
    return jax.vmap(lambda k: estimator(f, dist_fn, params, k, num_samples))(keys)


def summarize(estimates: PyTree, reference: PyTree) -> Statistics:
    """`Statistics` of `estimates` (leading axis: repeats) against `reference`: the mean, the
    unbiased variance, `bias = mean - reference`, `snr = |mean| / std`."""
    mean = jax.tree_util.tree_map(lambda g: jnp.mean(g, 0), estimates)
    variance = jax.tree_util.tree_map(lambda g: jnp.var(g, 0, ddof=1), estimates)
    bias = jax.tree_util.tree_map(jnp.subtract, mean, reference)
    snr = jax.tree_util.tree_map(lambda m, v: jnp.abs(m) / jnp.sqrt(v), mean, variance)
    return Statistics(mean, variance, bias, snr)


def reference_gradient(problem: Problem, params: PyTree, key: PRNGKeyArray) -> tuple[PyTree, str]:
    """The exact gradient when the problem has one, else a pathwise estimate from 2^20 samples."""
    if problem.expectation is not None:
        return problem.exact_grad(params), "exact"
    grads = pathwise(problem.f, problem.dist_fn, params, key, REFERENCE_SAMPLES)
    return grads, f"pathwise reference ({REFERENCE_SAMPLES:,} samples)"


def measure(
    estimator: Callable | StatefulEstimator,
    problem: Problem,
    params: PyTree,
    key: PRNGKeyArray,
    num_repeats: int,
    num_samples: int,
) -> Measurement:
    """Run `estimator` `num_repeats` times with `num_samples` samples each and summarise."""
    if num_repeats < 2:
        raise ValueError(f"measure needs num_repeats >= 2 to estimate a variance, got {num_repeats}")
    key_estimates, key_reference = jax.random.split(key)
    run = jax.jit(
        lambda p, k: repeated_estimates(estimator, problem.f, problem.dist_fn, p, k, num_repeats, num_samples)
    )
    jax.block_until_ready(run(params, key_estimates))  # compile
    start = time.perf_counter()
    estimates = jax.block_until_ready(run(params, key_estimates))
    seconds = (time.perf_counter() - start) / num_repeats
    reference, label = reference_gradient(problem, params, key_reference)
    return Measurement(*summarize(estimates, reference), label, seconds)

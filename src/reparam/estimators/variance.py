"""Measure an estimator: run it many times and report mean, bias, variance and SNR per parameter."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree


class Measurement(NamedTuple):
    """Per-parameter statistics over `num_repeats` independent estimates (pytrees like params)."""

    mean: PyTree
    variance: PyTree
    bias: PyTree  # mean - exact
    snr: PyTree  # |mean| / std


def repeated_estimates(
    estimator: Callable, f: Callable, dist_fn: Callable, params: PyTree, key: PRNGKeyArray,
    num_repeats: int, num_samples: int,
) -> PyTree:
    """`num_repeats` independent estimates, stacked on a leading axis, in one compiled call."""
    keys = jax.random.split(key, num_repeats)
    run = jax.jit(jax.vmap(lambda k: estimator(f, dist_fn, params, k, num_samples)))
    return run(keys)


def summarize(estimates: PyTree, exact: PyTree) -> Measurement:
    mean = jax.tree_util.tree_map(lambda g: jnp.mean(g, 0), estimates)
    variance = jax.tree_util.tree_map(lambda g: jnp.var(g, 0, ddof=1), estimates)
    bias = jax.tree_util.tree_map(jnp.subtract, mean, exact)
    snr = jax.tree_util.tree_map(lambda m, v: jnp.abs(m) / jnp.sqrt(v), mean, variance)
    return Measurement(mean, variance, bias, snr)

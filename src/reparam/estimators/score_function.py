"""The score-function (REINFORCE, likelihood-ratio) estimator."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions.base import Distribution


def score_function(
    f: Callable[[Array], Array],
    dist_fn: Callable[[PyTree], Distribution],
    params: PyTree,
    key: PRNGKeyArray,
    num_samples: int,
    *,
    baseline: float | Array = 0.0,
) -> PyTree:
    """`(1/N) sum_i (f(z_i) - b) grad_params log q(z_i; params)`, `z_i ~ q` with gradients stopped.

    Unbiased for any `f` (even non-differentiable) and any constant baseline `b`; needs only
    `sample` and `log_prob`, so it works for discrete distributions too.
    """

    def surrogate(params: PyTree) -> Array:
        z, log_q = dist_fn(params).sample_and_log_prob(key, (num_samples,))
        weight = jax.lax.stop_gradient(jax.vmap(f)(z) - baseline)
        return jnp.mean(weight * log_q)

    return jax.grad(surrogate)(params)

"""The pathwise (reparameterization) estimator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions.base import Distribution


def pathwise(
    f: Callable[[Array], Array],
    dist_fn: Callable[[PyTree], Distribution],
    params: PyTree,
    key: PRNGKeyArray,
    num_samples: int,
) -> PyTree:
    """`(1/N) sum_i grad_params f(g_params(eps_i))`, `z_i = g_params(eps_i)` from `rsample`.

    Unbiased for differentiable `f`. `f` maps one sample (`event_shape`) to a scalar. A
    distribution without `rsample` raises `NotReparameterizedError`.
    """

    def surrogate(params: Any) -> Array:
        z = dist_fn(params).rsample(key, (num_samples,))
        return jnp.mean(jax.vmap(f)(z))

    return jax.grad(surrogate)(params)

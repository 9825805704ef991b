"""Score-function (REINFORCE, likelihood-ratio) estimators and their variance reduction.

All estimate `grad E_q[f(z)] = E_q[f(z) grad log q(z)]` from samples with gradients stopped, so
`f` need not be differentiable and `q` may be discrete. They differ only in what is subtracted
from `f(z_i)` (a baseline) or added (a control variate), never in their expectation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions.base import Distribution

DistFn = Callable[[PyTree], Distribution]


def _draw(f: Callable, dist_fn: DistFn, params: PyTree, key: PRNGKeyArray, num_samples: int):
    """Samples (gradients stopped) and their values `f(z_i)`."""
    z = dist_fn(params).sample(key, (num_samples,))
    return z, jax.vmap(f)(z)


def _weighted_score(dist_fn: DistFn, params: PyTree, z: Array, weights: Array) -> PyTree:
    """`(1/N) sum_i w_i grad_params log q(z_i)`: the one place a score is differentiated."""

    def surrogate(params):
        log_q = dist_fn(params).log_prob(z)
        if log_q.shape != weights.shape:
            raise ValueError(
                f"score-function estimators need dist_fn(params) with batch_shape (); got log_prob "
                f"of shape {log_q.shape[1:]} per sample: wrap the distribution in Independent(...)"
            )
        return jnp.mean(jax.lax.stop_gradient(weights) * log_q)

    return jax.grad(surrogate)(params)


def score_function(f, dist_fn: DistFn, params, key, num_samples: int, *, baseline: float | Array = 0.0):
    """`(1/N) sum_i (f(z_i) - b) grad log q(z_i)` with a constant baseline `b` (0 by default)."""
    z, values = _draw(f, dist_fn, params, key, num_samples)
    return _weighted_score(dist_fn, params, z, values - baseline)


def score_function_loo(f, dist_fn: DistFn, params, key, num_samples: int):
    """Leave-one-out baseline (RLOO, Kool et al. 2019): `b_i = mean_{j != i} f(z_j)`, i.e.
    `(1/N) sum_i N/(N-1) (f_i - mean f) grad log q(z_i)`. Unbiased; needs `num_samples >= 2`."""
    if num_samples < 2:
        raise ValueError(f"score_function_loo needs num_samples >= 2 (one sample has no others), got {num_samples}")
    z, values = _draw(f, dist_fn, params, key, num_samples)
    return _weighted_score(dist_fn, params, z, (values - jnp.mean(values)) * num_samples / (num_samples - 1))


def score_function_control_variate(f, dist_fn: DistFn, params, key, num_samples: int):
    """The score itself as control variate (`E[grad log q] = 0`) with the variance-optimal
    coefficient per parameter coordinate, `a* = E[f s^2] / E[s^2]`, estimated for each sample from
    the *other* samples so the estimate stays unbiased. Needs `num_samples >= 2`."""
    if num_samples < 2:
        raise ValueError(f"score_function_control_variate needs num_samples >= 2, got {num_samples}")
    z, values = _draw(f, dist_fn, params, key, num_samples)
    scores = jax.vmap(lambda zi: jax.grad(lambda p: jnp.sum(dist_fn(p).log_prob(zi)))(params))(z)

    def combine(s):  # s: (N, ...) per-sample scores of one parameter leaf
        w = values.reshape((-1,) + (1,) * (s.ndim - 1))
        s2 = jnp.square(s)
        numerator, denominator = jnp.sum(w * s2, 0) - w * s2, jnp.sum(s2, 0) - s2
        coefficient = numerator / jnp.where(denominator > 0, denominator, 1.0)
        return jnp.mean((w - coefficient) * s, 0)

    return jax.tree_util.tree_map(combine, scores)


class MovingAverageState(NamedTuple):
    """An exponential moving average of `f`, carried between calls."""

    value: Array
    decay: Array


class StatefulEstimator(NamedTuple):
    """`init() -> state` and `step(f, dist_fn, params, key, num_samples, state) -> (grads, state)`."""

    init: Callable[[], MovingAverageState]
    step: Callable


def moving_average_baseline(decay: float = 0.9) -> StatefulEstimator:
    """Score function with `b = ` a moving average of past `f` values (unbiased: `b` does not
    depend on the current samples), the classic REINFORCE baseline of Williams (1992)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"moving_average_baseline: decay must be in [0, 1), got {decay}")

    def init() -> MovingAverageState:
        return MovingAverageState(jnp.zeros(()), jnp.asarray(decay))

    def step(f, dist_fn, params, key, num_samples, state: MovingAverageState):
        z, values = _draw(f, dist_fn, params, key, num_samples)
        grads = _weighted_score(dist_fn, params, z, values - state.value)
        value = state.decay * state.value + (1 - state.decay) * jnp.mean(values)
        return grads, MovingAverageState(value.astype(state.value.dtype), state.decay)

    return StatefulEstimator(init, step)

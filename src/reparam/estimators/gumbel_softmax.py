"""Relaxed estimators for discrete variables: Gumbel-Softmax (Concrete) and straight-through.

Both replace a `OneHotCategorical` (or `Bernoulli`) by its Concrete relaxation at `temperature`
and differentiate `f` through the relaxed sample. Gumbel-Softmax evaluates `f` at the relaxed
sample; straight-through evaluates it at the hard one-hot sample and borrows the relaxed gradient.
Both are biased; the bias shrinks as the temperature falls, while the variance grows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..distributions.categorical import Bernoulli, OneHotCategorical
from ..distributions.relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from ..distributions.transformed import Independent


def _relaxation(dist, temperature: float, straight_through: bool):
    """The Concrete relaxation of `dist` (looking through `Independent`)."""
    if isinstance(dist, Independent):
        inner = _relaxation(dist.distribution, temperature, straight_through)
        return Independent(inner, dist.reinterpreted_batch_ndims)
    if isinstance(dist, OneHotCategorical):
        return RelaxedOneHotCategorical(temperature, dist.logits, straight_through=straight_through)
    if isinstance(dist, Bernoulli):
        return RelaxedBernoulli(temperature, dist.logits, straight_through=straight_through)
    raise TypeError(f"relaxed estimators need a OneHotCategorical or Bernoulli from dist_fn, got {type(dist).__name__}")


def _relaxed(f, dist_fn, params, key, num_samples: int, temperature: float, straight_through: bool):
    def surrogate(params):
        z = _relaxation(dist_fn(params), temperature, straight_through).rsample(key, (num_samples,))
        return jnp.mean(jax.vmap(f)(z))

    return jax.grad(surrogate)(params)


def gumbel_softmax(f, dist_fn, params, key, num_samples: int, *, temperature: float = 0.5):
    """`grad (1/N) sum_i f(softmax((logits + g_i) / T))` (Jang et al. 2017; Maddison et al. 2017)."""
    return _relaxed(f, dist_fn, params, key, num_samples, temperature, straight_through=False)


def straight_through_gumbel(f, dist_fn, params, key, num_samples: int, *, temperature: float = 1.0):
    """Straight-through Gumbel-Softmax: `f` at the one-hot sample, the relaxed sample's gradient."""
    return _relaxed(f, dist_fn, params, key, num_samples, temperature, straight_through=True)

"""Uniform distribution on [low, high]."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..validation import broadcast_params, check
from .base import Distribution, Shape, where_supported


class Uniform(Distribution):
    """`z = low + (high - low) * u`, `u ~ U[0, 1)`; `log p(x) = -log(high - low)` on `[low, high]`."""

    low: Array
    high: Array

    def __init__(self, low: ArrayLike = 0.0, high: ArrayLike = 1.0, *, validate: bool = True):
        low, high = broadcast_params("Uniform", low=low, high=high)
        bad = ~(jnp.isfinite(low) & jnp.isfinite(high) & (low < high))
        self.low = check(low, bad, "Uniform: need finite low < high", validate)
        self.high = high

    @property
    def batch_shape(self) -> Shape:
        """The broadcast shape of `low` and `high`."""
        return self.low.shape

    @property
    def width(self) -> Array:
        """`high - low`."""
        return self.high - self.low

    def _draw(self, key, sample_shape):
        u = jax.random.uniform(key, sample_shape + self.batch_shape, self.low.dtype)
        return self.low + self.width * u

    def log_prob(self, value) -> Array:
        """`-log(high - low)` on `[low, high]`, `-inf` outside."""
        x = jnp.asarray(value, self.low.dtype)
        inside = (x >= self.low) & (x <= self.high)
        return where_supported(inside, -jnp.log(self.width))

    def cdf(self, value) -> Array:
        """`(x - low) / (high - low)` clipped to [0, 1]."""
        return jnp.clip((jnp.asarray(value, self.low.dtype) - self.low) / self.width, 0.0, 1.0)

    def entropy(self) -> Array:
        """`log(high - low)`."""
        return jnp.log(self.width)

    def mean(self) -> Array:
        """`(low + high) / 2`."""
        return 0.5 * (self.low + self.high)

    def mode(self) -> Array:
        """Every point of `[low, high]` is a mode; this returns the midpoint."""
        return self.mean()

    def variance(self) -> Array:
        """`(high - low)^2 / 12`."""
        return jnp.square(self.width) / 12.0

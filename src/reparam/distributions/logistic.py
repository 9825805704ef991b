"""Logistic distribution."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .location_scale import LocationScale


class Logistic(LocationScale):
    """`z = loc + scale * eps`, `eps ~ Logistic(0, 1)`; `log p0(z) = -z - 2 softplus(-z)`."""

    def _standard_noise(self, key, shape, dtype):
        return jax.random.logistic(key, shape, dtype)

    def _standard_log_prob(self, z):
        return -z - 2.0 * jax.nn.softplus(-z)

    def cdf(self, value) -> Array:
        """`sigmoid((x - loc) / scale)`."""
        return jax.nn.sigmoid(self.standardize(value))

    def entropy(self) -> Array:
        """`log(scale) + 2`."""
        return jnp.log(self.scale) + 2.0

    def mean(self) -> Array:
        """`loc`."""
        return self.loc

    def variance(self) -> Array:
        """`pi^2 scale^2 / 3`."""
        return jnp.square(self.scale) * (math.pi**2 / 3.0)

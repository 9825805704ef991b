"""Gumbel (maximum) distribution."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .base import EULER_GAMMA
from .location_scale import LocationScale


class Gumbel(LocationScale):
    """`z = loc + scale * eps`, `eps ~ Gumbel(0, 1)`; `log p0(z) = -(z + exp(-z))`."""

    def _standard_noise(self, key, shape, dtype):
        return jax.random.gumbel(key, shape, dtype)

    def _standard_log_prob(self, z):
        return -(z + jnp.exp(-z))

    def cdf(self, value) -> Array:
        return jnp.exp(-jnp.exp(-self.standardize(value)))

    def entropy(self) -> Array:
        return jnp.log(self.scale) + EULER_GAMMA + 1.0

    def mean(self) -> Array:
        return self.loc + EULER_GAMMA * self.scale

    def variance(self) -> Array:
        return jnp.square(self.scale) * (math.pi**2 / 6.0)

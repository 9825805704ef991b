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
        """`exp(-exp(-(x - loc) / scale))`."""
        return jnp.exp(-jnp.exp(-self.standardize(value)))

    def entropy(self) -> Array:
        """`log(scale) + gamma + 1`, `gamma` the Euler-Mascheroni constant."""
        return jnp.log(self.scale) + EULER_GAMMA + 1.0

    def mean(self) -> Array:
        """`loc + gamma scale`, `gamma` the Euler-Mascheroni constant."""
        return self.loc + EULER_GAMMA * self.scale

    def variance(self) -> Array:
        """`pi^2 scale^2 / 6`."""
        return jnp.square(self.scale) * (math.pi**2 / 6.0)

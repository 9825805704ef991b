"""Laplace distribution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .location_scale import LocationScale


class Laplace(LocationScale):
    """`z = loc + scale * eps`, `eps ~ Laplace(0, 1)`; `log p(x) = -|x - loc|/scale - log(2 scale)`."""

    def _standard_noise(self, key, shape, dtype):
        return jax.random.laplace(key, shape, dtype)

    def _standard_log_prob(self, z):
        return -jnp.abs(z) - jnp.log(2.0).astype(z.dtype)

    def cdf(self, value) -> Array:
        z = self.standardize(value)
        return jnp.where(z < 0, 0.5 * jnp.exp(jnp.minimum(z, 0)), 1 - 0.5 * jnp.exp(-jnp.maximum(z, 0)))

    def entropy(self) -> Array:
        return 1.0 + jnp.log(2.0 * self.scale)

    def mean(self) -> Array:
        return self.loc

    def variance(self) -> Array:
        return 2.0 * jnp.square(self.scale)

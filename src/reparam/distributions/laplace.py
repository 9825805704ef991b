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
        """`exp(z) / 2` for `z = (x - loc) / scale < 0`, else `1 - exp(-z) / 2`."""
        z = self.standardize(value)
        return jnp.where(z < 0, 0.5 * jnp.exp(jnp.minimum(z, 0)), 1 - 0.5 * jnp.exp(-jnp.maximum(z, 0)))

    def entropy(self) -> Array:
        """`1 + log(2 scale)`."""
        return 1.0 + jnp.log(2.0 * self.scale)

    def mean(self) -> Array:
        """`loc`."""
        return self.loc

    def variance(self) -> Array:
        """`2 scale^2`."""
        return 2.0 * jnp.square(self.scale)

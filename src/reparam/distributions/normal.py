"""Normal distribution N(loc, scale^2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr
from jaxtyping import Array

from .base import HALF_LOG_2PI
from .location_scale import LocationScale


class Normal(LocationScale):
    """`z = loc + scale * eps`, `eps ~ N(0, 1)`; `log p(x) = -z^2/2 - log(scale) - log(2 pi)/2`.

    Shapes: `loc` and `scale` broadcast to `batch_shape`; `event_shape = ()`.
    """

    def _standard_noise(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype)

    def _standard_log_prob(self, z):
        return -0.5 * jnp.square(z) - HALF_LOG_2PI

    def cdf(self, value) -> Array:
        """`Phi((x - loc) / scale)`."""
        return ndtr(self.standardize(value))

    def entropy(self) -> Array:
        """`(1 + log(2 pi)) / 2 + log(scale)`."""
        return 0.5 + HALF_LOG_2PI + jnp.log(self.scale)

    def mean(self) -> Array:
        """`loc`."""
        return self.loc

    def variance(self) -> Array:
        """`scale^2`."""
        return jnp.square(self.scale)

    def stddev(self) -> Array:
        """`scale`."""
        return self.scale

"""Location-scale families: `z = loc + scale * eps` with `eps` from a fixed standard density.

`log p(x) = log p0((x - loc) / scale) - log(scale)`. Subclasses give the standard noise, its
log-density and their closed forms; sampling, scoring and the fused path live here once.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..validation import broadcast_params, check_finite, check_positive
from .base import Distribution, Shape, as_shape


class LocationScale(Distribution):
    """Base of Normal, Laplace, Logistic and Gumbel: parameters `loc` and `scale > 0`."""

    loc: Array
    scale: Array

    def __init__(self, loc: ArrayLike, scale: ArrayLike, *, validate: bool = True):
        name = type(self).__name__
        loc, scale = broadcast_params(name, loc=loc, scale=scale)
        self.loc = check_finite(name, "loc", loc, validate)
        self.scale = check_positive(name, "scale", scale, validate)

    @property
    def batch_shape(self) -> Shape:
        """The broadcast shape of `loc` and `scale`."""
        return self.loc.shape

    # What each family supplies.
    def _standard_noise(self, key: PRNGKeyArray, shape: Shape, dtype) -> Array:
        """Standard noise `eps ~ p0` of `shape` and `dtype` (the family's primitive)."""
        raise NotImplementedError

    def _standard_log_prob(self, z: Array) -> Array:
        """`log p0(z)` of the standard density, elementwise."""
        raise NotImplementedError

    # Shared machinery.
    def _draw(self, key: PRNGKeyArray, sample_shape: Shape) -> Array:
        """`loc + scale * eps`, `eps` standard noise of shape `sample_shape + batch_shape`."""
        eps = self._standard_noise(key, sample_shape + self.batch_shape, self.loc.dtype)
        return self.loc + self.scale * eps

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: the log-density is computed from the noise `eps`, never from `x`."""
        eps = self._standard_noise(key, as_shape(sample_shape) + self.batch_shape, self.loc.dtype)
        x = self.loc + self.scale * eps
        return x, self._standard_log_prob(eps) - jnp.log(self.scale)

    def standardize(self, value: ArrayLike) -> Array:
        """`(value - loc) / scale`."""
        return (jnp.asarray(value, self.loc.dtype) - self.loc) / self.scale

    def log_prob(self, value: ArrayLike) -> Array:
        """`log p(x) = log p0(z) - log(scale)`, `z = (x - loc) / scale`, with `p0` the family's
        standard density (stated on each class; Normal: `log p0(z) = -z^2/2 - log(2 pi)/2`).
        `value` broadcasts against `batch_shape`; the result has `sample_shape + batch_shape`."""
        return self._standard_log_prob(self.standardize(value)) - jnp.log(self.scale)

    def mode(self) -> Array:
        """`loc` (each standard density here peaks at 0)."""
        return self.loc

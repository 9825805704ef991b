"""Distributions built from others: `Transformed` (push through a bijector) and `Independent`."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..bijectors.base import Bijector, sum_rightmost
from .base import Distribution, Shape, where_supported


class Transformed(Distribution):
    """`y = f(x)`, `x ~ base`: `log p(y) = log p_base(f^-1(y)) - log|det J_f(f^-1(y))|`.

    `rsample_and_log_prob` scores its own sample with the forward log-det at the base point and
    never inverts `y`. `log_prob(y)` of a given value inverts it (see the bijector's notes on
    saturation). Values outside the bijector's range get `-inf`; a bijector `onto` all of `R^d` needs
    no such check, and `log_prob` skips it.
    """

    base: Distribution
    bijector: Bijector

    def __init__(self, base: Distribution, bijector: Bijector):
        if bijector.event_ndims > len(base.event_shape):
            raise ValueError(
                f"Transformed: the bijector acts on {bijector.event_ndims}-D events but the base "
                f"{type(base).__name__} has event_shape {base.event_shape}; wrap the base in "
                f"Independent(base, {bijector.event_ndims - len(base.event_shape)})."
            )
        self.base = base
        self.bijector = bijector

    @property
    def reparameterized(self) -> bool:  # type: ignore[override]
        """That of the base distribution."""
        return self.base.reparameterized

    @property
    def batch_shape(self) -> Shape:
        """That of the base distribution."""
        return self.base.batch_shape

    @property
    def event_shape(self) -> Shape:
        """That of the base distribution (bijectors keep shapes)."""
        return self.base.event_shape

    def _reduce_log_det(self, log_det: Array) -> Array:
        """Sum the log-det over the event axes the bijector treats elementwise."""
        return sum_rightmost(log_det, len(self.event_shape) - self.bijector.event_ndims)

    def _draw(self, key, sample_shape):
        """`f(x)` for a base draw `x`."""
        return self.bijector.forward(self.base._draw(key, sample_shape))

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: `log p(y) = log p_base(x) - log|det J_f(x)|` at the base draw `x`, never inverting `y`."""
        x, base_log_prob = self.base.rsample_and_log_prob(key, sample_shape)
        y, log_det = self.bijector.forward_and_log_det(x)
        return y, base_log_prob - self._reduce_log_det(log_det)

    def log_prob(self, value) -> Array:
        """`log p_base(f^-1(y)) + log|det J_f^-1(y)|`; `-inf` outside the bijector's range (no
        check when the bijector is `onto`)."""
        y = jnp.asarray(value, self.dtype)
        if self.bijector.onto:
            x, log_det = self.bijector.inverse_and_log_det(y)
            return self.base.log_prob(x) + self._reduce_log_det(log_det)
        inside = self.bijector.in_range(y)
        x, log_det = self.bijector.inverse_and_log_det(jnp.where(inside, y, self.bijector.range_point))
        log_prob = self.base.log_prob(x) + self._reduce_log_det(log_det)
        event_axes = tuple(range(-len(self.event_shape), 0))
        return where_supported(jnp.all(inside, axis=event_axes), log_prob)


class Independent(Distribution):
    """Reinterpret the last `reinterpreted_batch_ndims` batch axes of `distribution` as event axes:
    `log_prob` and `entropy` sum over them."""

    distribution: Distribution
    reinterpreted_batch_ndims: int = eqx.field(static=True)

    def __init__(self, distribution: Distribution, reinterpreted_batch_ndims: int = 1):
        n = int(reinterpreted_batch_ndims)
        if not 0 <= n <= len(distribution.batch_shape):
            raise ValueError(
                f"Independent: reinterpreted_batch_ndims must be in [0, {len(distribution.batch_shape)}] "
                f"for batch_shape {distribution.batch_shape}, got {reinterpreted_batch_ndims}"
            )
        self.distribution = distribution
        self.reinterpreted_batch_ndims = n

    @property
    def reparameterized(self) -> bool:  # type: ignore[override]
        """That of the wrapped distribution."""
        return self.distribution.reparameterized

    @property
    def batch_shape(self) -> Shape:
        """The wrapped `batch_shape` without its last `reinterpreted_batch_ndims` axes."""
        shape = self.distribution.batch_shape
        return shape[: len(shape) - self.reinterpreted_batch_ndims]

    @property
    def event_shape(self) -> Shape:
        """The wrapped `batch_shape`'s last `reinterpreted_batch_ndims` axes + the wrapped `event_shape`."""
        shape = self.distribution.batch_shape
        return shape[len(shape) - self.reinterpreted_batch_ndims :] + self.distribution.event_shape

    def _sum(self, x: Array) -> Array:
        """Sum the last `reinterpreted_batch_ndims` axes."""
        return sum_rightmost(x, self.reinterpreted_batch_ndims)

    def _draw(self, key, sample_shape):
        return self.distribution._draw(key, sample_shape)

    def rsample_and_log_prob(self, key, sample_shape=()):
        """The wrapped fused path, its log-density summed over the reinterpreted axes."""
        x, log_prob = self.distribution.rsample_and_log_prob(key, sample_shape)
        return x, self._sum(log_prob)

    def log_prob(self, value) -> Array:
        """The wrapped `log_prob` summed over the reinterpreted axes."""
        return self._sum(self.distribution.log_prob(value))

    def entropy(self) -> Array:
        """The wrapped `entropy` summed over the reinterpreted axes."""
        return self._sum(self.distribution.entropy())

    def mean(self) -> Array:
        """The wrapped `mean` (shape `batch_shape + event_shape` is unchanged)."""
        return self.distribution.mean()

    def mode(self) -> Array:
        """The wrapped `mode` (the product density peaks where each factor does)."""
        return self.distribution.mode()

    def variance(self) -> Array:
        """The wrapped `variance`, per coordinate."""
        return self.distribution.variance()

    def stddev(self) -> Array:
        """The wrapped `stddev`, per coordinate."""
        return self.distribution.stddev()

"""The bijector contract: an invertible map with its log-det-Jacobian.

`forward_log_det_jacobian(x) = log |det dy/dx|`. Elementwise bijectors (`event_ndims = 0`) return
it per element; a bijector acting on vectors (`event_ndims = 1`) returns it per vector.
`in_range(y)` tells where `inverse` is defined; `range_point` is a value inside the range, used to
keep gradients finite where a caller masks out-of-range values.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array


def sum_rightmost(x: Array, ndims: int) -> Array:
    """Sum the last `ndims` axes of `x` (`x` itself when `ndims == 0`)."""
    return jnp.sum(x, axis=tuple(range(-ndims, 0))) if ndims > 0 else x


class Bijector(eqx.Module):
    event_ndims: ClassVar[int] = 0
    range_point: ClassVar[float] = 0.0

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def inverse(self, y: Array) -> Array:
        raise NotImplementedError

    def forward_log_det_jacobian(self, x: Array) -> Array:
        raise NotImplementedError

    def inverse_log_det_jacobian(self, y: Array) -> Array:
        return -self.forward_log_det_jacobian(self.inverse(y))

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return self.forward(x), self.forward_log_det_jacobian(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        x = self.inverse(y)
        return x, -self.forward_log_det_jacobian(x)

    def in_range(self, y: Array) -> Array:
        """Elementwise mask of values the forward map can reach (all True by default)."""
        return jnp.ones(jnp.shape(y), bool)

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

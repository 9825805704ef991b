"""Sigmoid bijector: `y = sigmoid(x)` onto (0, 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Bijector


class Sigmoid(Bijector):
    """`log|dy/dx| = log sigmoid(x) + log sigmoid(-x) = -softplus(-x) - softplus(x)`.

    `inverse` clips `y` into the open interval by one float, as `Tanh` does.
    """

    range_point = 0.5

    def forward(self, x):
        """`1 / (1 + exp(-x))`."""
        return jax.nn.sigmoid(x)

    def inverse(self, y):
        """`logit(y) = log y - log(1 - y)`, `y` clipped into (0, 1) by one float."""
        y = jnp.asarray(y)
        tiny = jnp.finfo(y.dtype).tiny
        one_minus = jnp.nextafter(jnp.array(1, y.dtype), jnp.array(0, y.dtype))
        y = jnp.clip(y, tiny, one_minus)
        return jnp.log(y) - jnp.log1p(-y)

    def forward_log_det_jacobian(self, x):
        """`-softplus(-x) - softplus(x)`, stable for large `|x|`."""
        return -jax.nn.softplus(-x) - jax.nn.softplus(x)

    def in_range(self, y):
        """`0 <= y <= 1` (the closed interval: the clipped inverse handles the ends)."""
        return (y >= 0) & (y <= 1)

"""Exp bijector: `y = exp(x)` onto (0, inf), `log|dy/dx| = x`."""

from __future__ import annotations

import jax.numpy as jnp

from .base import Bijector


class Exp(Bijector):
    """`y = exp(x)` onto (0, inf); `log|dy/dx| = x`. `LogNormal` is a Normal pushed through it."""

    range_point = 1.0

    def forward(self, x):
        """`exp(x)`."""
        return jnp.exp(x)

    def inverse(self, y):
        """`log(y)`."""
        return jnp.log(y)

    def forward_log_det_jacobian(self, x):
        """`log|d exp(x)/dx| = x`."""
        return x

    def in_range(self, y):
        """`y > 0`."""
        return y > 0

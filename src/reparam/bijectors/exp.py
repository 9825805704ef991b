"""Exp bijector: `y = exp(x)` onto (0, inf), `log|dy/dx| = x`."""

from __future__ import annotations

import jax.numpy as jnp

from .base import Bijector


class Exp(Bijector):
    range_point = 1.0

    def forward(self, x):
        return jnp.exp(x)

    def inverse(self, y):
        return jnp.log(y)

    def forward_log_det_jacobian(self, x):
        return x

    def in_range(self, y):
        return y > 0

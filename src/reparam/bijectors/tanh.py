"""Tanh bijector: the single home of the stable tanh log-det."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .base import Bijector

LOG_2 = math.log(2.0)


def log_abs_det_tanh(x: Array) -> Array:
    """`log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x))`, exact in float32 for every `x`.

    Never `log(1 - a^2 + eps)`: that is off by 1.8 nats at x = 8 and NaN-prone beyond.
    """
    return 2.0 * (LOG_2 - x - jax.nn.softplus(-2.0 * x))


def clipped_atanh(y: Array) -> Array:
    """`atanh(y)` with `y` clipped to the largest float below 1 in magnitude.

    In float32 `tanh(u)` rounds to exactly +-1 for |u| >~ 9, so an action alone cannot tell
    which pre-activation made it; the clip maps such actions to |u| = atanh(1 - 2^-24) ~ 8.66.
    Score actions you sampled with `rsample_and_log_prob`, which never inverts.
    """
    y = jnp.asarray(y)
    edge = jnp.nextafter(jnp.array(1, y.dtype), jnp.array(0, y.dtype))
    return jnp.arctanh(jnp.clip(y, -edge, edge))


class Tanh(Bijector):
    """`y = tanh(x)` onto (-1, 1)."""

    def forward(self, x):
        return jnp.tanh(x)

    def inverse(self, y):
        return clipped_atanh(y)

    def forward_log_det_jacobian(self, x):
        return log_abs_det_tanh(x)

    def in_range(self, y):
        return jnp.abs(y) <= 1

"""Elementwise affine bijectors: `y = shift + scale * x`."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..validation import broadcast_params, check
from .base import Bijector


class Affine(Bijector):
    """`y = shift + scale * x`, `log|dy/dx| = log|scale|`; `scale` must be non-zero and finite."""

    onto = True  # scale != 0: onto R

    shift: Array
    scale: Array

    def __init__(self, shift: ArrayLike = 0.0, scale: ArrayLike = 1.0, *, validate: bool = True):
        shift, scale = broadcast_params("Affine", shift=shift, scale=scale)
        bad = ~jnp.isfinite(scale) | (scale == 0) | ~jnp.isfinite(shift)
        self.shift = shift
        self.scale = check(scale, bad, "Affine: need finite shift and a finite, non-zero scale", validate)

    def forward(self, x):
        """`shift + scale * x`."""
        return self.shift + self.scale * x

    def inverse(self, y):
        """`(y - shift) / scale`."""
        return (y - self.shift) / self.scale

    def forward_log_det_jacobian(self, x):
        """`log|scale|`, broadcast to the shape of `x`."""
        return jnp.broadcast_to(jnp.log(jnp.abs(self.scale)), jnp.broadcast_shapes(jnp.shape(x), self.scale.shape))


class Shift(Affine):
    """`y = x + shift`."""

    def __init__(self, shift: ArrayLike, *, validate: bool = True):
        super().__init__(shift, 1.0, validate=validate)


class Scale(Affine):
    """`y = scale * x`."""

    def __init__(self, scale: ArrayLike, *, validate: bool = True):
        super().__init__(0.0, scale, validate=validate)

"""RealNVP-style affine coupling (Dinh et al. 2017) for normalizing flows.

With a binary `mask` over the last axis, the masked part passes through unchanged and conditions
an affine map of the rest:
`y = mask * x + (1 - mask) * (x * exp(log_scale(mask * x)) + shift(mask * x))`,
`log|det dy/dx| = sum((1 - mask) * log_scale)`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..nn import mlp, over_leading_axes
from .base import Bijector

Conditioner = Callable[[Array], tuple[Array, Array]]


class CouplingMLP(eqx.Module):
    """Conditioner `x_masked -> (shift, log_scale)`: an MLP whose last layer starts at zero (the
    coupling starts as the identity) and whose `log_scale` is bounded to (-bound, bound) by tanh."""

    net: eqx.nn.Sequential
    bound: float = eqx.field(static=True)

    def __init__(self, dim: int, width: int, depth: int, *, key: PRNGKeyArray, bound: float = 3.0):
        self.net = mlp(dim, 2 * dim, (width,) * depth, activation=jax.nn.relu, zero_output=True, key=key)
        self.bound = bound

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """`x` `(dim,)` (masked) -> `(shift, log_scale)`, each `(dim,)`."""
        shift, raw = jnp.split(self.net(x), 2)
        return shift, self.bound * jnp.tanh(raw / self.bound)


class MaskedCoupling(Bijector):
    """Affine coupling on vectors (`event_ndims = 1`); `conditioner(v) -> (shift, log_scale)`."""

    event_ndims = 1
    mask: Array
    conditioner: Conditioner

    def __init__(self, mask: ArrayLike, conditioner: Conditioner):
        mask = jnp.asarray(mask)
        if mask.ndim != 1 or not bool(jnp.all((mask == 0) | (mask == 1))):
            raise ValueError("MaskedCoupling: mask must be a 1-D array of zeros and ones")
        self.mask = mask.astype(bool)
        self.conditioner = conditioner

    def _params(self, x: Array) -> tuple[Array, Array]:
        kept = jnp.where(self.mask, x, 0.0)
        shift, log_scale = over_leading_axes(self.conditioner, kept)
        free = ~self.mask
        return jnp.where(free, shift, 0.0), jnp.where(free, log_scale, 0.0)

    def forward_and_log_det(self, x):
        shift, log_scale = self._params(x)
        return x * jnp.exp(log_scale) + shift, jnp.sum(log_scale, -1)

    def inverse_and_log_det(self, y):
        shift, log_scale = self._params(y)  # the masked part of y equals that of x
        return (y - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, -1)

    def forward(self, x):
        return self.forward_and_log_det(x)[0]

    def inverse(self, y):
        return self.inverse_and_log_det(y)[0]

    def forward_log_det_jacobian(self, x):
        return self.forward_and_log_det(x)[1]

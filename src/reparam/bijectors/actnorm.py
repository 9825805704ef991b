"""Activation normalisation (Kingma & Dhariwal 2018, Glow): a per-dimension affine map with
data-dependent initialisation.

Convention here: the forward map is the sampling direction of a `Transformed` (noise -> data),

    forward  y = x * exp(log_scale) + loc         log |det dy/dx| = sum(log_scale)
    inverse  x = (y - loc) * exp(-log_scale)

so the inverse, the direction data takes in `Transformed.log_prob`, normalises: `actnorm_init`
on a batch of `y` (the values reaching this layer from the data side) sets `loc` to their mean and
`log_scale` to the log of their standard deviation, making `inverse(y)` mean 0 / sd 1 per
dimension, as Glow's actnorm does for its data -> latent direction.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .base import Bijector


class ActNorm(Bijector):
    """`y = x * exp(log_scale) + loc` per dimension of the last axis (`event_ndims = 1`); starts as
    the identity (`loc = log_scale = 0`); initialise from data with `actnorm_init`."""

    event_ndims = 1
    onto = True  # a per-coordinate affine map with exp(log_scale) > 0
    loc: Array
    log_scale: Array

    def __init__(
        self,
        dim: int | None = None,
        *,
        loc: ArrayLike | None = None,
        log_scale: ArrayLike | None = None,
        dtype=jnp.float32,
    ):
        if dim is None:
            if loc is None or log_scale is None:
                raise ValueError("ActNorm: give dim, or both loc and log_scale")
            loc, log_scale = jnp.asarray(loc, dtype), jnp.asarray(log_scale, dtype)
        else:
            if dim < 1 or loc is not None or log_scale is not None:
                raise ValueError(f"ActNorm: give dim >= 1 alone (got {dim}), or loc and log_scale without dim")
            loc, log_scale = jnp.zeros((dim,), dtype), jnp.zeros((dim,), dtype)
        if loc.ndim != 1 or loc.shape != log_scale.shape:
            raise ValueError(
                f"ActNorm: loc and log_scale must be 1-D of one shape, got {loc.shape} and {log_scale.shape}"
            )
        self.loc = loc
        self.log_scale = log_scale

    def _check(self, v: Array) -> None:
        d = self.loc.shape[-1]
        if v.ndim < 1 or v.shape[-1] != d:
            raise ValueError(f"ActNorm: expected inputs of shape (..., {d}), got {v.shape}")

    def _log_det(self, v: Array) -> Array:
        return jnp.broadcast_to(jnp.sum(self.log_scale), v.shape[:-1])

    def forward(self, x):
        self._check(x)
        return x * jnp.exp(self.log_scale) + self.loc

    def inverse(self, y):
        self._check(y)
        return (y - self.loc) * jnp.exp(-self.log_scale)

    def forward_log_det_jacobian(self, x):
        """`sum(log_scale)`, broadcast to `x.shape[:-1]`."""
        self._check(x)
        return self._log_det(x)

    def forward_and_log_det(self, x):
        return self.forward(x), self._log_det(x)

    def inverse_and_log_det(self, y):
        return self.inverse(y), -self._log_det(y)


def actnorm_init(actnorm: ActNorm, y: Array, *, min_scale: float = 1e-6) -> ActNorm:
    """Data-dependent initialisation: the `actnorm` whose `inverse` maps the batch `y`
    `(..., d)` to mean 0 and standard deviation 1 per dimension (statistics over every leading
    axis): `loc = mean(y)`, `log_scale = log(max(sd(y), min_scale))`. Pure: returns a new module in
    the dtype of `actnorm`'s parameters."""
    y = jnp.asarray(y)
    d = actnorm.loc.shape[-1]
    if y.ndim < 2 or y.shape[-1] != d:
        raise ValueError(f"actnorm_init: expected a batch of shape (n, ..., {d}), got {y.shape}")
    flat = y.reshape((-1, d))
    dtype = actnorm.loc.dtype
    loc = jnp.mean(flat, 0).astype(dtype)
    log_scale = jnp.log(jnp.maximum(jnp.std(flat, 0), min_scale)).astype(dtype)
    return eqx.tree_at(lambda a: (a.loc, a.log_scale), actnorm, (loc, log_scale))

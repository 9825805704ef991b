"""Radial flow (Rezende & Mohamed 2015): contract or expand around a centre `z0`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, DTypeLike, PRNGKeyArray

from .base import FusedBijector
from .planar import check_event, default_float


def safe_norm(v: Array) -> Array:
    """`||v||` over the last axis with a finite gradient (zero) at `v = 0`."""
    sq = jnp.sum(v * v, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


class Radial(FusedBijector):
    """Radial flow `f(z) = z + beta h(r) (z - z0)`, `h = 1 / (alpha + r)`, `r = ||z - z0||`, on
    vectors `(..., d)`.

    Constraint: `alpha = softplus(raw_alpha) > 0` and `beta = -alpha + softplus(raw_beta) >= -alpha`,
    which makes `f` invertible for ANY raw parameters. With `s = softplus(raw_beta) = alpha + beta`,
    `f(z) = z0 + (z - z0) (s + r) / (alpha + r)` and
    `log|det df/dz| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)
                    = (d - 1) log((s + r) / (alpha + r)) + log((r^2 + 2 alpha r + s alpha) / (alpha + r)^2)`
    (every term positive: no cancellation).

    Inverse in closed form: `rho = ||y - z0|| = r (s + r) / (alpha + r)` is increasing in `r`, and
    `r` is the positive root of `r^2 + (s - rho) r - rho alpha = 0` (computed in its stable form);
    then `z = z0 + (y - z0) (alpha + r) / (s + r)`. Accurate to a few ulps.

    Fields (raw, unconstrained): `z0` `(d,)`, `raw_alpha` `()`, `raw_beta` `()`.
    """

    event_ndims = 1
    onto = True  # beta >= -alpha: the radius r (1 + beta / (alpha + r)) increases from 0 to inf
    z0: Array
    raw_alpha: Array
    raw_beta: Array

    def __init__(self, dim: int, *, key: PRNGKeyArray, scale: float = 0.01, dtype: DTypeLike | None = None):
        """`dim`-dimensional radial flow near the identity: `z0 ~ N(0, 1)`, `raw_alpha ~ N(0, scale^2)`,
        and `raw_beta` such that `beta ~ N(0, scale^2)` (to first order)."""
        if int(dim) != dim or dim < 1:
            raise ValueError(f"Radial: dim must be a positive integer, got {dim}")
        dtype = default_float(dtype)
        kz, ka, kb = jax.random.split(key, 3)
        self.z0 = jax.random.normal(kz, (dim,), dtype)
        self.raw_alpha = scale * jax.random.normal(ka, (), dtype)
        s = jax.nn.softplus(self.raw_alpha) + scale * jax.random.normal(kb, (), dtype)
        self.raw_beta = s + jnp.log(-jnp.expm1(-s))  # softplus^-1(s): beta = s - alpha ~ noise

    @property
    def dim(self) -> int:
        """The event size `d`."""
        return self.z0.shape[-1]

    def constrained(self) -> tuple[Array, Array]:
        """`(alpha, s)` with `s = alpha + beta = softplus(raw_beta)`."""
        return jax.nn.softplus(self.raw_alpha), jax.nn.softplus(self.raw_beta)

    def _log_det(self, r: Array, alpha: Array, s: Array) -> Array:
        d = self.dim
        return (d - 1) * (jnp.log(s + r) - jnp.log(alpha + r)) + (
            jnp.log(r * r + 2.0 * alpha * r + s * alpha) - 2.0 * jnp.log(alpha + r)
        )

    def forward_and_log_det(self, x):
        x = check_event("Radial", x, self.dim)
        alpha, s = self.constrained()
        diff = x - self.z0
        r = safe_norm(diff)
        y = self.z0 + diff * ((s + r) / (alpha + r))[..., None]
        return y, self._log_det(r, alpha, s)

    def inverse_and_log_det(self, y):
        y = check_event("Radial", y, self.dim)
        alpha, s = self.constrained()
        diff = y - self.z0
        rho = safe_norm(diff)
        half_b = 0.5 * (s - rho)
        root = jnp.sqrt(half_b * half_b + rho * alpha)
        # positive root of r^2 + 2 half_b r - rho alpha = 0 without cancellation
        r = jnp.where(half_b > 0, rho * alpha / jnp.where(half_b > 0, half_b + root, 1.0), root - half_b)
        x = self.z0 + diff * ((alpha + r) / jnp.maximum(s + r, jnp.finfo(r.dtype).tiny))[..., None]
        return x, -self._log_det(r, alpha, s)

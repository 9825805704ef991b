"""Planar flow (Rezende & Mohamed 2015) and the monotone scalar solver the residual flows share.

`f(z) = z + u_hat tanh(w.z + b)` on vectors (`event_ndims = 1`). The raw `u` is corrected to
`u_hat = u + (m(w.u) - w.u) w / ||w||^2`, `m(a) = -1 + softplus(a)`, so `w.u_hat = m(w.u) > -1`
and the map is invertible for ANY raw parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, DTypeLike, PRNGKeyArray

from .base import FusedBijector
from .tanh import log_abs_det_tanh


def default_float(dtype: DTypeLike | None) -> jnp.dtype:
    """`dtype`, or JAX's default float (float32; float64 with x64 enabled) when None."""
    return jnp.dtype(jnp.result_type(float) if dtype is None else dtype)


def check_event(owner: str, x: Array, dim: int) -> Array:
    """`x` as an array whose last axis has size `dim`, else a one-line ValueError."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{owner}: expected inputs of shape (..., {dim}), got {x.shape}")
    return x


def tanh_slope_term(s: Array, one_plus_ab: Array) -> Array:
    """`1 + a b tanh'(s) = tanh(s)^2 + tanh'(s) (1 + a b)`: both terms >= 0 when `a b >= -1`, so
    the sum is computed without cancellation (and is > 0 off `s = 0` even at `a b = -1`)."""
    return jnp.tanh(s) ** 2 + jnp.exp(log_abs_det_tanh(s)) * one_plus_ab


def bisection_steps(dtype: DTypeLike) -> int:
    """Fixed bisection count: `2 * mantissa bits + 16` (62 in float32, 120 in float64), enough to
    shrink a bracket of width `2|a|` to below one ulp of the root for `|a|` up to ~1e6."""
    return 2 * jnp.finfo(dtype).nmant + 16


def solve_monotone_tanh(a: Array, b: Array, c: Array, t: Array, one_plus_ab: Array) -> Array:
    """Solve `x + a tanh(b x + c) = t` for `x` (elementwise, broadcasting), given `a b >= -1`.

    `g(x) = x + a tanh(b x + c)` has `g' = 1 + a b tanh'(.) >= 0`, so the root is unique, and
    `|x - t| <= |a|` brackets it. Bisection for `bisection_steps(dtype)` steps (`lax.fori_loop`,
    jit-compatible) finds it to the rounding of `g` itself: within 1-2 ulps of the root where
    `g'` is not tiny, within `eps |t| / g'` otherwise. The result's derivatives are those of the
    implicit function (one Newton correction whose value is exactly zero), not of the loop.
    `one_plus_ab` is `1 + a b`, passed in so callers can compute it without cancellation.
    """
    a, b, c, t, one_plus_ab = jnp.broadcast_arrays(a, b, c, t, one_plus_ab)
    sa, sb, sc, st = (lax.stop_gradient(v) for v in (a, b, c, t))

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = mid + sa * jnp.tanh(sb * mid + sc) < st
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = lax.fori_loop(0, bisection_steps(t.dtype), step, (st - jnp.abs(sa), st + jnp.abs(sa)))
    root = lax.stop_gradient(0.5 * (lo + hi))
    residual = root + a * jnp.tanh(b * root + c) - t
    slope = lax.stop_gradient(tanh_slope_term(b * root + c, one_plus_ab))
    return root - (residual - lax.stop_gradient(residual)) / slope


class Planar(FusedBijector):
    """Planar flow `f(z) = z + u_hat tanh(w.z + b)` on vectors `(..., d)`.

    `log|det df/dz| = log(1 + (w.u_hat) tanh'(w.z + b))`, computed as
    `log(tanh(a)^2 + tanh'(a) softplus(w.u))`, `a = w.z + b` (no cancellation; `1 + w.u_hat =
    softplus(w.u)`). Constraint: `w.u_hat = -1 + softplus(w.u) > -1`, enforced by the correction
    `u_hat = u + (m(w.u) - w.u) w / ||w||^2`, so every raw `(w, u, b)` gives an invertible map.

    Inverse (no closed form): `alpha = w.z` solves `w.y = alpha + (w.u_hat) tanh(alpha + b)`
    (monotone), found by bisection in a fixed number of steps (`solve_monotone_tanh`); then
    `z = y - u_hat tanh(alpha + b)`. Round trips hold to ~1e-6 relative in float32 and ~1e-14
    in float64 where `det df/dz` is not small; near-singular maps lose `eps / det`.

    Fields (raw, unconstrained): `w` `(d,)`, `u` `(d,)`, `b` `()`.
    """

    event_ndims = 1
    onto = True  # u_hat . w >= -1: along w, a + (u_hat . w) tanh(a + b) increases from -inf to inf
    w: Array
    u: Array
    b: Array

    def __init__(self, dim: int, *, key: PRNGKeyArray, scale: float = 0.01, dtype: DTypeLike | None = None):
        """`dim`-dimensional planar flow near the identity: `w ~ N(0, I / dim)`, `b ~ N(0, scale^2)`
        and `u = scale * noise + log(e - 1) w / ||w||^2`, so that `w.u ~ log(e - 1)` where the
        correction vanishes and `u_hat ~ scale * noise` (`||u_hat|| = O(scale)`). A raw `u` small
        with `w` small would not do: the correction makes `||u_hat|| >= |m(w.u)| / ||w||`."""
        if int(dim) != dim or dim < 1:
            raise ValueError(f"Planar: dim must be a positive integer, got {dim}")
        dtype = default_float(dtype)
        kw, ku, kb = jax.random.split(key, 3)
        self.w = jax.random.normal(kw, (dim,), dtype) / math.sqrt(dim)
        shift = math.log(math.e - 1.0) / jnp.dot(self.w, self.w)
        self.u = scale * jax.random.normal(ku, (dim,), dtype) + shift * self.w
        self.b = scale * jax.random.normal(kb, (), dtype)

    @property
    def dim(self) -> int:
        """The event size `d`."""
        return self.w.shape[-1]

    def constrained(self) -> tuple[Array, Array]:
        """`(u_hat, 1 + w.u_hat)`: the corrected `u` and `softplus(w.u)` (> 0 up to underflow)."""
        wu = jnp.dot(self.w, self.u)
        ww = jnp.dot(self.w, self.w)
        safe = jnp.where(ww > 0, ww, 1.0)
        m = jax.nn.softplus(wu) - 1.0
        u_hat = self.u + jnp.where(ww > 0, (m - wu) / safe, 0.0) * self.w
        return u_hat, jax.nn.softplus(wu)

    def forward_and_log_det(self, x):
        x = check_event("Planar", x, self.dim)
        u_hat, one_plus_wu = self.constrained()
        a = x @ self.w + self.b
        y = x + u_hat * jnp.tanh(a)[..., None]
        return y, jnp.log(tanh_slope_term(a, one_plus_wu))

    def inverse_and_log_det(self, y):
        y = check_event("Planar", y, self.dim)
        u_hat, one_plus_wu = self.constrained()
        wu_hat = one_plus_wu - 1.0
        alpha = solve_monotone_tanh(wu_hat, jnp.ones_like(self.b), self.b, y @ self.w, one_plus_wu)
        a = alpha + self.b
        x = y - u_hat * jnp.tanh(a)[..., None]
        return x, -jnp.log(tanh_slope_term(a, one_plus_wu))

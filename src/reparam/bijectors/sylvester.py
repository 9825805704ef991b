"""Orthogonal Sylvester flow (van den Berg et al. 2018)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, DTypeLike, PRNGKeyArray

from .base import FusedBijector
from .planar import check_event, default_float, solve_monotone_tanh, tanh_slope_term


def orthonormal_columns(raw: Array) -> Array:
    """`Q` `(d, M)` with orthonormal columns from a raw `(d, M)` matrix: the reduced QR, columns'
    signs fixed so `diag(R) >= 0` (a smooth function of `raw` where `raw` has full rank)."""
    q, r = jnp.linalg.qr(raw)
    sign = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(raw.dtype)
    return q * sign


def triangular(raw: Array) -> Array:
    """Upper-triangular `(M, M)` from a raw square matrix: the strict upper part as is, the
    diagonal `tanh(diag(raw))` in (-1, 1)."""
    return jnp.triu(raw, 1) + jnp.diag(jnp.tanh(jnp.diagonal(raw)))


class Sylvester(FusedBijector):
    """Orthogonal Sylvester flow `f(z) = z + Q R tanh(R_tilde Q^T z + b)` on vectors `(..., d)`.

    `Q` `(d, M)`, `M <= d`, has orthonormal columns (reduced QR of a raw matrix, `orthonormal_columns`);
    `R`, `R_tilde` `(M, M)` are upper triangular with diagonals `r_ii = tanh(raw_ii)`,
    `r_tilde_ii = tanh(raw_tilde_ii)`, so `r_ii r_tilde_ii > -1 >= -1 / max tanh'`: invertible for
    ANY raw parameters. By Sylvester's identity `det(I_d + Q R D R_tilde Q^T) = det(I_M + D R_tilde R)`,
    triangular, so with `a = R_tilde Q^T z + b`, `D = diag(tanh'(a))`,
    `log|det df/dz| = sum_i log(1 + tanh'(a_i) r_ii r_tilde_ii)` (exact; computed without cancellation).

    Inverse, exact to the rounding of the forward map: the part of `y` orthogonal to `Q` is that of
    `z`; `v = Q^T z` solves `v + R tanh(R_tilde v + b) = Q^T y`, an upper-triangular system of
    monotone scalar equations `v_i + r_ii tanh(r_tilde_ii v_i + c_i) = t_i` (`c_i`, `t_i` depend on
    `v_{>i}` only), solved from the last to the first by fixed-step bisection
    (`solve_monotone_tanh`); then `z = y - Q R tanh(a)`. Round trips hold to ~1e-6 relative in
    float32 and ~1e-14 in float64 where `det df/dz` is not small.

    Fields (raw, unconstrained): `q_raw` `(d, M)`, `r_raw`, `r_tilde_raw` `(M, M)` (lower parts
    unused), `b` `(M,)`.
    """

    event_ndims = 1
    onto = True  # z plus a bounded term, invertible: onto R^d
    q_raw: Array
    r_raw: Array
    r_tilde_raw: Array
    b: Array

    def __init__(
        self,
        dim: int,
        num_vectors: int | None = None,
        *,
        key: PRNGKeyArray,
        scale: float = 0.01,
        tilde_scale: float | None = None,
        dtype: DTypeLike | None = None,
    ):
        """`dim`-dimensional flow with `M = num_vectors` (default `dim`, at most `dim`) directions,
        near the identity: `q_raw ~ N(0, 1)`, `r_raw` and `b` `N(0, scale^2)` (`||R|| = O(scale)`:
        the map is `z + O(scale)`), and `r_tilde_raw ~ N(0, tilde_scale^2)`, default `1 / sqrt(M)`,
        so the pre-activations `R_tilde Q^T z` of a standard-normal `z` are O(1), in tanh's curved
        part (as planar's `w ~ N(0, I / d)`). With `R_tilde` small as well, every layer sits in
        tanh's linear part, the whole flow is nearly linear, and reverse-KL fitting of a deep stack
        settles in the best Gaussian (measured on U1: KL 2.33 at K = 8 and 32, against 0.70 and
        0.06 with this default)."""
        if int(dim) != dim or dim < 1:
            raise ValueError(f"Sylvester: dim must be a positive integer, got {dim}")
        m = dim if num_vectors is None else num_vectors
        if int(m) != m or not 1 <= m <= dim:
            raise ValueError(f"Sylvester: num_vectors must be an integer in [1, dim={dim}], got {num_vectors}")
        dtype = default_float(dtype)
        kq, kr, kt, kb = jax.random.split(key, 4)
        self.q_raw = jax.random.normal(kq, (dim, m), dtype)
        self.r_raw = scale * jax.random.normal(kr, (m, m), dtype)
        tilde_scale = 1.0 / math.sqrt(m) if tilde_scale is None else tilde_scale
        self.r_tilde_raw = tilde_scale * jax.random.normal(kt, (m, m), dtype)
        self.b = scale * jax.random.normal(kb, (m,), dtype)

    @property
    def dim(self) -> int:
        """The event size `d`."""
        return self.q_raw.shape[0]

    def constrained(self) -> tuple[Array, Array, Array, Array]:
        """`(Q, R, R_tilde, 1 + r_ii r_tilde_ii)`."""
        r, rt = triangular(self.r_raw), triangular(self.r_tilde_raw)
        return orthonormal_columns(self.q_raw), r, rt, 1.0 + jnp.diagonal(r) * jnp.diagonal(rt)

    def forward_and_log_det(self, x):
        x = check_event("Sylvester", x, self.dim)
        q, r, rt, one_plus = self.constrained()
        a = (x @ q) @ rt.T + self.b
        y = x + (jnp.tanh(a) @ r.T) @ q.T
        return y, jnp.sum(jnp.log(tanh_slope_term(a, one_plus)), axis=-1)

    def inverse_and_log_det(self, y):
        y = check_event("Sylvester", y, self.dim)
        q, r, rt, one_plus = self.constrained()
        target = y @ q
        m = target.shape[-1]

        def solve(carry, i):
            v, th = carry  # entries >= i+1 solved, the rest zero
            c = v @ rt[i] + self.b[i]
            t = target[..., i] - th @ r[i]
            vi = solve_monotone_tanh(r[i, i], rt[i, i], c, t, one_plus[i])
            return (v.at[..., i].set(vi), th.at[..., i].set(jnp.tanh(rt[i, i] * vi + c))), None

        zeros = jnp.zeros_like(target)
        (v, th), _ = lax.scan(solve, (zeros, zeros), jnp.arange(m - 1, -1, -1))
        a = v @ rt.T + self.b
        x = y - (th @ r.T) @ q.T
        return x, -jnp.sum(jnp.log(tanh_slope_term(a, one_plus)), axis=-1)

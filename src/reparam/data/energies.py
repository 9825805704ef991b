"""The four 2-D energy functions of Rezende & Mohamed (2015, Table 1), targets for variational
inference with flows: `p(z) = exp(-U(z)) / Z`.

    U1(z) = 1/2 ((||z|| - 2) / 0.4)^2 - ln(exp(-1/2 ((z1 - 2) / 0.6)^2) + exp(-1/2 ((z1 + 2) / 0.6)^2))
    U2(z) = 1/2 ((z2 - w1(z)) / 0.4)^2
    U3(z) = -ln(exp(-1/2 ((z2 - w1(z)) / 0.35)^2) + exp(-1/2 ((z2 - w1(z) + w2(z)) / 0.35)^2))
    U4(z) = -ln(exp(-1/2 ((z2 - w1(z)) / 0.4)^2) + exp(-1/2 ((z2 - w1(z) + w3(z)) / 0.35)^2))

    w1(z) = sin(2 pi z1 / 4),   w2(z) = 3 exp(-1/2 ((z1 - 1) / 0.6)^2),   w3(z) = 3 sigmoid((z1 - 1) / 0.3)

How the box enters. U2-U4 depend on z1 only through bounded terms, so `exp(-U)` does not decay
along z1 and has no finite integral on R^2. Every target here is therefore the density restricted
to the box `BOX = [-4, 4]^2` (the square the paper plots):

    p(z) = exp(-U(z)) 1[z in BOX] / Z,    Z = integral over BOX of exp(-U(z)) dz,

`target_log_prob(name, z) = -U(z)` inside the box (`-inf` outside), unnormalised. A flow fitted to
it lives on the box: its density on R^2 is pushed through `to_box()` (`4 tanh`, elementwise), so
`q = (to_box o flow)_# N(0, I)` puts all its mass in the open box, `log q` carries the tanh log-det,
and

    KL(q || p) = E_q[log q(z) + U(z)] + log Z = (reverse-KL loss) + log Z  >= 0,

finite for every flow. Equivalently (what the benchmarks do) fit a flow on R^2 to the target pulled
back through `to_box`, `plane_target_log_prob(name, x)`: same KL, same Z, no box scale among the
trained parameters. `log_normaliser(name)` is `log Z` by tensor-product Gauss-Legendre
quadrature on the box in float64 (numpy): at the default 512 nodes per axis it agrees with 1,024
nodes to 1e-12 and with scipy's adaptive `dblquad` to its tolerance (tests/test_energies.py).
U1 alone is normalisable on R^2, and its mass outside the box is 9e-9 of the whole (log Z on
[-8, 8]^2 is larger by 9e-9 nats): for U1 the box changes nothing measurable.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike

from ..bijectors import Chain, Scale, Tanh
from ..bijectors.tanh import log_abs_det_tanh

ENERGIES = ("U1", "U2", "U3", "U4")
BOX = (-4.0, 4.0)
"""The box `[low, high]^2` every target is restricted to (the same interval on both axes)."""
QUADRATURE_POINTS = 512
"""Gauss-Legendre nodes per axis of `log_normaliser` by default (1,024 agree to 1e-12)."""


def check_energy_name(name: str) -> None:
    """A one-line ValueError unless `name` is one of `ENERGIES`."""
    if name not in ENERGIES:
        raise ValueError(f"unknown energy {name!r}; choose one of {', '.join(ENERGIES)}")


def _sigmoid(x, xp):
    return 0.5 * (1.0 + xp.tanh(0.5 * x))  # stable at any x, in numpy and jax alike


def _half_square(x, scale: float):
    return 0.5 * ((x / scale) ** 2)


def _energy(name: str, z1, z2, xp):
    """`U(z)` from the two coordinates, in the array module `xp` (numpy for float64 quadrature, jax)."""
    w1 = xp.sin(0.5 * math.pi * z1)
    if name == "U1":
        radius = xp.sqrt(z1 * z1 + z2 * z2)
        modes = xp.logaddexp(-_half_square(z1 - 2.0, 0.6), -_half_square(z1 + 2.0, 0.6))
        return _half_square(radius - 2.0, 0.4) - modes
    if name == "U2":
        return _half_square(z2 - w1, 0.4)
    if name == "U3":
        w2 = 3.0 * xp.exp(-_half_square(z1 - 1.0, 0.6))
        return -xp.logaddexp(-_half_square(z2 - w1, 0.35), -_half_square(z2 - w1 + w2, 0.35))
    w3 = 3.0 * _sigmoid((z1 - 1.0) / 0.3, xp)
    return -xp.logaddexp(-_half_square(z2 - w1, 0.4), -_half_square(z2 - w1 + w3, 0.35))


def _as_points(owner: str, z: ArrayLike) -> Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.float32)
    if z.ndim == 0 or z.shape[-1] != 2:
        raise ValueError(f"{owner}: z must have shape (..., 2), got {z.shape}")
    return z


def energy(name: str, z: ArrayLike) -> Array:
    """`U(z)` of the energy `name` (one of `ENERGIES`) for `z` `(..., 2)`: shape `(...)`, z's float
    dtype, jit- and grad-friendly, finite for every finite `z` (the formula on all of R^2; the box
    enters through `target_log_prob`)."""
    check_energy_name(name)
    z = _as_points("energy", z)
    return _energy(name, z[..., 0], z[..., 1], jnp)


def in_box(z: ArrayLike) -> Array:
    """`z` `(..., 2)` lies in the closed box `BOX^2`: boolean, shape `(...)`."""
    z = jnp.asarray(z)
    low, high = BOX
    return jnp.all((z >= low) & (z <= high), axis=-1)


def target_log_prob(name: str, z: ArrayLike) -> Array:
    """The unnormalised log-density of the target restricted to the box: `-U(z)` for `z` in the
    closed box `BOX^2`, `-inf` outside; `z` `(..., 2)` -> `(...)`. Normalised, subtract
    `log_normaliser(name)`."""
    check_energy_name(name)
    z = _as_points("target_log_prob", z)
    minus_u = -_energy(name, z[..., 0], z[..., 1], jnp)
    return jnp.where(in_box(z), minus_u, jnp.asarray(-jnp.inf, minus_u.dtype))


def to_box(dtype: DTypeLike = jnp.float32) -> Chain:
    """The bijector `z = 4 tanh(x)` (elementwise, `BOX` half-width 4) from R^2 onto the open box,
    its scale in `dtype` (that of the flow): compose it after a flow so `q` lives on the box
    (log-det `sum_i log(4 (1 - tanh(x_i)^2))`, the stable tanh form)."""
    low, high = BOX
    return Chain([Scale(jnp.asarray(0.5 * (high - low), dtype)), Tanh()])


def plane_target_log_prob(name: str, x: ArrayLike) -> Array:
    """The target pulled back to R^2 through `to_box()`: `log p~(4 tanh x) + log|det d(4 tanh x)/dx|`
    `= -U(4 tanh x) + sum_i log(4 (1 - tanh(x_i)^2))`, `x` `(..., 2)` -> `(...)`, finite everywhere.

    The same target with the same `Z` (a change of variables): a flow `q_x` on R^2 fitted to it by
    reverse KL, pushed through `to_box()`, is the fit `q` on the box, and
    `KL(q || p) = KL(q_x || p_x) = E_{q_x}[log q_x - plane_target_log_prob] + log_normaliser(name)`.
    Fitting in `x` keeps the box's fixed scale out of the trained parameters.
    """
    check_energy_name(name)
    x = _as_points("plane_target_log_prob", x)
    half = 0.5 * (BOX[1] - BOX[0])
    z = half * jnp.tanh(x)
    log_det = jnp.sum(log_abs_det_tanh(x), axis=-1) + 2 * math.log(half)
    return log_det - _energy(name, z[..., 0], z[..., 1], jnp)


@functools.cache
def log_normaliser(name: str, points: int = QUADRATURE_POINTS) -> float:
    """`log Z = log integral over BOX^2 of exp(-U(z)) dz` by a tensor-product Gauss-Legendre rule
    with `points` nodes per axis, in float64 (numpy), as a log-sum-exp of `log w_i + log w_j - U`.

    Every `U` is analytic, so the rule converges geometrically: at the default 512 nodes it agrees
    with 1,024 to 1e-12 for all four targets. `KL(q || p) = E_q[log q + U] + log_normaliser(name)`.
    """
    check_energy_name(name)
    if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or points < 2:
        raise ValueError(f"log_normaliser: points must be an integer >= 2, got {points!r}")
    low, high = BOX
    nodes, weights = np.polynomial.legendre.leggauss(int(points))
    half = 0.5 * (high - low)
    x = low + half * (nodes + 1.0)
    log_w = np.log(weights * half)
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    log_terms = log_w[:, None] + log_w[None, :] - _energy(name, z1, z2, np)
    peak = log_terms.max()
    return float(peak + np.log(np.exp(log_terms - peak).sum()))

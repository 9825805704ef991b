"""Generated 2-D toy densities, seeded and on device, float32 `(n, 2)`: the standard benchmarks of
density estimation with flows (Grathwohl et al. 2019, FFJORD's `toy_data.py`, parameterised as there).

    x = sample_toy("checkerboard", jax.random.key(0), 10_000)   # (10000, 2) float32
    log_p = toy_log_prob("checkerboard", x)                     # (10000,), exact

Every sampler draws i.i.d. points (the mixture component of each point is drawn too, where FFJORD
splits the batch evenly), so `sample_toy` is a sample from one fixed density. Exact log-densities
exist for two of them (`toy_log_prob`); their entropies, the optimal expected test NLL in nats, are
`TOY_ENTROPY`:

- `eight_gaussians`: an equal mixture of 8 isotropic Gaussians with means on a circle of radius
  `4 / sqrt 2 = 2.828` at angles `k pi / 4`, standard deviation `0.5 / sqrt 2 = 0.354` (FFJORD's
  centres `4 (cos, sin)` with noise sd 0.5, all divided by sqrt 2; FFJORD divides by 1.414).
  Entropy 2.83158 nats (float64 quadrature on a grid, converged to all digits shown; a 2e6-sample
  Monte Carlo check agrees). The often-quoted "about 2.838" is `ln 8 + ln(2 pi e sd^2) = ln(2 pi e)`
  = 2.83788, the entropy if the components did not overlap; neighbours are only 2.165 = 6.1 sd
  apart, and their overlap lowers the entropy by 0.0063 nats.
- `checkerboard`: uniform on the 8 "black" squares of side 2 in `[-4, 4)^2`, those whose corner
  `(a, b)` has `a/2 + b/2` even; area 32, entropy `ln 32 = 3.46574` nats.
- `two_moons` (sklearn's moons with `t ~ U[0, pi]`, noise sd 0.1, then `2 x + (-1, -0.2)`),
  `pinwheel` (5 arms, radial sd 0.3, tangential sd 0.1, rate 0.25, times 2) and `spirals` (two arms,
  `sqrt(U) 3 pi` turns, jitter `U[0, 0.5)`, `/ 3`, noise sd 0.1): a curve or a non-injective warp
  convolved with Gaussian noise, whose density is an integral with no closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

TOYS = ("two_moons", "eight_gaussians", "checkerboard", "pinwheel", "spirals")

EIGHT_GAUSSIANS_RADIUS = 4 / math.sqrt(2)
EIGHT_GAUSSIANS_SCALE = 0.5 / math.sqrt(2)
EIGHT_GAUSSIANS_ENTROPY = 2.83158  # nats, float64 quadrature (see the module docstring)
CHECKERBOARD_ENTROPY = math.log(32)  # nats: uniform on area 32
TOY_ENTROPY = {"eight_gaussians": EIGHT_GAUSSIANS_ENTROPY, "checkerboard": CHECKERBOARD_ENTROPY}

_ANGLES = np.arange(8) * np.pi / 4
EIGHT_GAUSSIANS_MEANS = (EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], 1)).astype(np.float32)
# Lower-left corners of the checkerboard's 8 squares: a, b in {-4, -2, 0, 2} with a/2 + b/2 even.
CHECKERBOARD_CORNERS = np.array(
    [(a, b) for a in (-4, -2, 0, 2) for b in (-4, -2, 0, 2) if (a + b) // 2 % 2 == 0], np.float32
)


def _check_name(owner: str, name: str) -> None:
    if name not in TOYS:
        raise ValueError(f"{owner}: unknown toy {name!r}; choose one of {', '.join(TOYS)}")


def sample_toy(name: str, key: PRNGKeyArray, n: int) -> Array:
    """`n` i.i.d. points `(n, 2)` float32 from the toy density `name` (one of `TOYS`), on device.

    The same `key` gives the same points; `n` is static (one compilation per size).
    """
    _check_name("sample_toy", name)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"sample_toy: n must be a positive integer, got {n!r}")
    return _SAMPLERS[name](key, int(n))


def toy_log_prob(name: str, x: ArrayLike) -> Array:
    """The exact log-density of `x` `(..., 2)` under the toy `name`, shape `(...)`, in x's float dtype.

    Closed forms exist for `eight_gaussians` (a log-sum-exp over the 8 components) and
    `checkerboard` (`-ln 32` on the black squares, `-inf` elsewhere); the other toys raise ValueError.
    """
    _check_name("toy_log_prob", name)
    if name not in TOY_ENTROPY:
        raise ValueError(
            f"toy_log_prob: {name!r} has no closed-form density (an integral over its noise); "
            f"exact log-densities exist for {', '.join(TOY_ENTROPY)}"
        )
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if x.ndim == 0 or x.shape[-1] != 2:
        raise ValueError(f"toy_log_prob: x must have shape (..., 2), got {x.shape}")
    return _eight_gaussians_log_prob(x) if name == "eight_gaussians" else _checkerboard_log_prob(x)


def _eight_gaussians_log_prob(x: Array) -> Array:
    means = jnp.asarray(EIGHT_GAUSSIANS_MEANS, x.dtype)
    var = EIGHT_GAUSSIANS_SCALE**2
    squared = jnp.sum(jnp.square(x[..., None, :] - means), axis=-1)
    norm = jnp.asarray(-math.log(8) - math.log(2 * math.pi * var), x.dtype)
    return jax.nn.logsumexp(squared * jnp.asarray(-0.5 / var, x.dtype), axis=-1) + norm


def _checkerboard_log_prob(x: Array) -> Array:
    inside = jnp.all((x >= -4) & (x < 4), axis=-1)
    cells = jnp.floor(x * jnp.asarray(0.5, x.dtype)).astype(jnp.int32)
    black = (cells[..., 0] + cells[..., 1]) % 2 == 0
    return jnp.where(inside & black, jnp.asarray(-CHECKERBOARD_ENTROPY, x.dtype), jnp.asarray(-jnp.inf, x.dtype))


def _two_moons(key: PRNGKeyArray, n: int) -> Array:
    k_moon, k_t, k_noise = jax.random.split(key, 3)
    inner = jax.random.bernoulli(k_moon, 0.5, (n,))
    t = jax.random.uniform(k_t, (n,), jnp.float32, 0.0, math.pi)
    outer_xy = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    inner_xy = jnp.stack([1 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    x = jnp.where(inner[:, None], inner_xy, outer_xy) + 0.1 * jax.random.normal(k_noise, (n, 2), jnp.float32)
    return 2 * x + jnp.asarray([-1.0, -0.2], jnp.float32)


def _eight_gaussians(key: PRNGKeyArray, n: int) -> Array:
    k_component, k_noise = jax.random.split(key)
    means = jnp.asarray(EIGHT_GAUSSIANS_MEANS)[jax.random.randint(k_component, (n,), 0, 8)]
    return means + jnp.float32(EIGHT_GAUSSIANS_SCALE) * jax.random.normal(k_noise, (n, 2), jnp.float32)


def _checkerboard(key: PRNGKeyArray, n: int) -> Array:
    k_square, k_u = jax.random.split(key)
    corners = jnp.asarray(CHECKERBOARD_CORNERS)[jax.random.randint(k_square, (n,), 0, 8)]
    x = corners + 2 * jax.random.uniform(k_u, (n, 2), jnp.float32)
    return jnp.minimum(x, jnp.nextafter(corners + 2, corners))  # float32 rounding never reaches the next square


def _pinwheel(key: PRNGKeyArray, n: int) -> Array:
    k_arm, k_noise = jax.random.split(key)
    arm = jax.random.randint(k_arm, (n,), 0, 5).astype(jnp.float32)
    f = jax.random.normal(k_noise, (n, 2), jnp.float32) * jnp.asarray([0.3, 0.1], jnp.float32)
    f = f + jnp.asarray([1.0, 0.0], jnp.float32)
    angle = arm * jnp.float32(2 * math.pi / 5) + 0.25 * jnp.exp(f[:, 0])
    cos, sin = jnp.cos(angle), jnp.sin(angle)  # FFJORD's einsum("ti,tij->tj"): f times the rotation matrix
    return 2 * jnp.stack([f[:, 0] * cos + f[:, 1] * sin, f[:, 1] * cos - f[:, 0] * sin], axis=1)


def _spirals(key: PRNGKeyArray, n: int) -> Array:
    k_turn, k_jitter, k_sign, k_noise = jax.random.split(key, 4)
    turn = jnp.sqrt(jax.random.uniform(k_turn, (n,), jnp.float32)) * jnp.float32(3 * math.pi)  # 540 degrees
    jitter = 0.5 * jax.random.uniform(k_jitter, (n, 2), jnp.float32)
    arm = jnp.stack([-jnp.cos(turn) * turn, jnp.sin(turn) * turn], axis=1) + jitter
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n, 1)), jnp.float32(1), jnp.float32(-1))
    return sign * arm / 3 + 0.1 * jax.random.normal(k_noise, (n, 2), jnp.float32)


_SAMPLERS: dict[str, Callable[[PRNGKeyArray, int], Array]] = {
    name: jax.jit(fn, static_argnums=1)
    for name, fn in zip(TOYS, (_two_moons, _eight_gaussians, _checkerboard, _pinwheel, _spirals), strict=True)
}

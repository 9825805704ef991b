"""Distances between two samples, for scoring generated points against held-out data: the maximum
mean discrepancy with Gaussian kernels and the sliced Wasserstein distance. Both are jitted, and
the MMD's `n x m` kernel sums run in row chunks (memory `chunk x m`, so 10k-by-10k points fit).

    h = median_bandwidth(data)                        # the kernel width, fixed from the reference
    mmd(samples, data, h), mmd(data_2, data, h)       # the model's distance and the noise floor
    sliced_wasserstein(key, samples, data)

A distance between finite samples is positive even for two draws of one law; compare a model's
value with the same distance between two independent data draws of the same sizes (the noise floor).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

__all__ = ["MMD_SCALES", "median_bandwidth", "mmd", "mmd2", "sliced_wasserstein", "sliced_wasserstein_along"]

MMD_SCALES = (0.5, 1.0, 2.0)
"""The kernel of `mmd2`: the mean of Gaussian kernels of widths `bandwidth * s` for these `s`
(a small width family, so one value is sensitive to fine and coarse differences alike)."""


def _as_points(owner: str, name: str, x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{owner}: {name} must be points (n, d) with n >= 1, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def median_bandwidth(x: ArrayLike, max_points: int = 1000) -> Array:
    """The median heuristic: the median Euclidean distance between distinct pairs of the first
    `max_points` points of `x` `(n, d)` (a scalar in x's dtype). Deterministic; fix it once from
    the reference data and use it for every comparison."""
    x = _as_points("median_bandwidth", "x", x)[:max_points]
    if x.shape[0] < 2:
        raise ValueError("median_bandwidth: needs at least 2 points")
    return _median_distance(x)


@jax.jit
def _median_distance(x: Array) -> Array:
    i, j = jnp.triu_indices(x.shape[0], k=1)
    return jnp.median(jnp.sqrt(jnp.sum(jnp.square(x[i] - x[j]), axis=-1)))


def mmd2(x: ArrayLike, y: ArrayLike, bandwidth: ArrayLike, *, unbiased: bool = False, chunk: int = 1024) -> Array:
    """The squared maximum mean discrepancy between samples `x` `(n, d)` and `y` `(m, d)`.

    Kernel: `k(a, b) = mean_s exp(-|a - b|^2 / (2 (s h)^2))` over `s` in `MMD_SCALES`, `h = bandwidth`.
    `MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`. Default: the V-statistic (all pairs, the
    diagonal included), which is >= 0 and 0 for identical samples; its expectation for two draws of
    one law is the positive noise floor `(E k(x, x) - E k(x, x')) (1/n + 1/m)`. `unbiased=True`:
    the U-statistic (diagonals left out), an unbiased estimate of the population value, which may
    be negative. Rows run in chunks of `chunk` (float accumulation in the inputs' dtype).
    """
    x, y = _as_points("mmd2", "x", x), _as_points("mmd2", "y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2: x and y must have the same dimension, got {x.shape} and {y.shape}")
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("mmd2: the unbiased estimate needs at least 2 points in each sample")
    bandwidth = jnp.asarray(bandwidth, x.dtype)
    return _mmd2(x, y, bandwidth, bool(unbiased), max(1, int(chunk)))


def mmd(x: ArrayLike, y: ArrayLike, bandwidth: ArrayLike, *, chunk: int = 1024) -> Array:
    """`sqrt(mmd2(x, y, bandwidth))`, the V-statistic: a distance in the kernel's feature space."""
    return jnp.sqrt(jnp.maximum(mmd2(x, y, bandwidth, chunk=chunk), 0))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _mmd2(x: Array, y: Array, bandwidth: Array, unbiased: bool, chunk: int) -> Array:
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = (
        _kernel_sum(x, x, bandwidth, chunk),
        _kernel_sum(y, y, bandwidth, chunk),
        _kernel_sum(x, y, bandwidth, chunk),
    )
    if unbiased:  # k(a, a) = 1 for every a: the diagonal sums are n and m exactly
        return (kxx - n) / (n * (n - 1)) + (kyy - m) / (m * (m - 1)) - 2 * kxy / (n * m)
    return kxx / (n * n) + kyy / (m * m) - 2 * kxy / (n * m)


def _kernel_sum(a: Array, b: Array, bandwidth: Array, chunk: int) -> Array:
    """`sum_ij k(a_i, b_j)`, rows of `a` in chunks (the last one padded and masked)."""
    chunk = min(chunk, a.shape[0])
    num = -(-a.shape[0] // chunk)
    index = jnp.arange(num * chunk)
    rows = jnp.take(a, index % a.shape[0], axis=0).reshape(num, chunk, a.shape[1])
    valid = (index < a.shape[0]).reshape(num, chunk).astype(a.dtype)
    widths = jnp.asarray(MMD_SCALES, a.dtype) * bandwidth
    b_sq = jnp.sum(jnp.square(b), axis=-1)

    def one(args):
        block, mask = args
        squared = jnp.sum(jnp.square(block), axis=-1)[:, None] + b_sq[None, :] - 2 * block @ b.T
        squared = jnp.maximum(squared, 0)
        k = jnp.mean(jnp.exp(-squared[..., None] / (2 * jnp.square(widths))), axis=-1)
        return jnp.sum(k * mask[:, None])

    return jnp.sum(jax.lax.map(one, (rows, valid)))


def sliced_wasserstein(
    key: PRNGKeyArray, x: ArrayLike, y: ArrayLike, *, num_projections: int = 256, p: int = 2
) -> Array:
    """The sliced `p`-Wasserstein distance between two equal-size samples `x`, `y` `(n, d)`.

    `SW_p = (E_theta W_p^p(theta . x, theta . y))^(1/p)`, `theta` uniform on the unit sphere; each
    1-D `W_p^p` between empirical laws of `n` points is `mean_i |x_(i) - y_(i)|^p` of the sorted
    projections (exact), and the expectation over directions is the mean over `num_projections`
    directions drawn with `key` (Monte Carlo, the only approximation). For Gaussians
    `N(a, s^2 I)`, `N(b, r^2 I)` in `d` dimensions, `SW_2^2 = |a - b|^2 / d + (s - r)^2`.
    """
    x, y = _as_points("sliced_wasserstein", "x", x), _as_points("sliced_wasserstein", "y", y)
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein: x and y must have the same shape (n, d), got {x.shape} and {y.shape}")
    if int(num_projections) < 1 or int(p) < 1:
        raise ValueError(f"sliced_wasserstein: num_projections and p must be >= 1, got {num_projections}, {p}")
    directions = jax.random.normal(key, (int(num_projections), x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    return sliced_wasserstein_along(directions, x, y, p=int(p))


@functools.partial(jax.jit, static_argnames="p")
def sliced_wasserstein_along(directions: Array, x: Array, y: Array, *, p: int = 2) -> Array:
    """`sliced_wasserstein` with given unit `directions` `(k, d)`: `(mean_k W_p^p)^(1/p)`, one
    direction at a time (memory `O(n)` per direction)."""

    def one(theta):
        diff = jnp.sort(x @ theta) - jnp.sort(y @ theta)
        return jnp.mean(jnp.abs(diff) ** p)

    return jnp.mean(jax.lax.map(one, directions)) ** (1.0 / p)

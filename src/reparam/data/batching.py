"""On-device data handling, jit-compatible: epoch batches of pytrees, binarization of grey levels,
integer grey levels and their uniform dequantization for continuous density models."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

DIGITS_LEVELS = 17  # scikit-learn's 8x8 digits: pixels 0..16


def num_examples(data: PyTree, owner: str = "data") -> int:
    """The common leading size `N` of every array in the pytree `data`, or a one-line ValueError.

    A plain `(N, ...)` array is the one-leaf case; `(x, y)` with `x` `(N, D)` and `y` `(N,)` gives N.
    """
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves:
        raise ValueError(f"{owner}: data holds no arrays; give an array or a pytree of arrays (N, ...)")
    sizes = {}
    for path, leaf in leaves:
        shape = jnp.shape(leaf)
        name = jax.tree_util.keystr(path) or "data"
        if len(shape) == 0:
            raise ValueError(f"{owner}: {name} is a scalar; every leaf of data needs a leading axis of examples")
        sizes[name] = shape[0]
    if len(set(sizes.values())) > 1:
        described = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(
            f"{owner}: every leaf of data needs the same leading size (the number of examples), got {described}"
        )
    return next(iter(sizes.values()))


@functools.partial(jax.jit, static_argnames="batch_size")
def epoch_batches(key: PRNGKeyArray, data: PyTree, batch_size: int) -> PyTree:
    """One shuffled epoch of `data` as batches: each leaf `(N, ...)` -> `(N // batch_size, batch_size, ...)`.

    `data` is an array or any pytree of arrays sharing the leading size `N` (e.g. `(x, y)`); one
    permutation, drawn on device with `key`, reorders every leaf, so rows stay together. The last
    `N mod batch_size` examples of the permutation are dropped: each example appears at most once.
    `batch_size` (static) must lie in `1..N`; a bad one, or leaves of different `N`, raise ValueError.
    """
    n = num_examples(data, "epoch_batches")
    if not 1 <= batch_size <= n:
        raise ValueError(f"epoch_batches: batch_size must be in 1..{n} (the number of examples), got {batch_size}")
    num_batches = n // batch_size
    order = jax.random.permutation(key, n)[: num_batches * batch_size]
    return jax.tree.map(
        lambda leaf: jnp.take(leaf, order, axis=0).reshape((num_batches, batch_size) + leaf.shape[1:]), data
    )


def binarize_static(x: ArrayLike) -> Array:
    """`1[x >= 1/2]` as float32: one fixed binarization (for digits, pixel >= 8 of 16)."""
    x = jnp.asarray(x)
    return (x >= 0.5).astype(jnp.float32)


def binarize_dynamic(key: PRNGKeyArray, x: ArrayLike) -> Array:
    """A fresh draw `b ~ Bernoulli(x)` elementwise, float32 (Salakhutdinov & Murray, 2008).

    Redraw every epoch: `E[b] = x`, so the model sees the grey levels as probabilities.
    """
    x = jnp.asarray(x)
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def grey_levels(x: ArrayLike, num_levels: int = DIGITS_LEVELS) -> Array:
    """The integer grey levels `x * (num_levels - 1)` (int32, `0..num_levels - 1`) of pixels in [0, 1].

    A `Dataset` stores `pixel / 16` (digits, 17 levels) or `pixel / 255` (MNIST, `num_levels=256`);
    this undoes it exactly (rounded to the nearest integer, which for digits is already exact:
    `pixel / 16` is a float32 with no rounding error).
    """
    x = jnp.asarray(x)
    return jnp.rint(x * jnp.asarray(num_levels - 1, x.dtype)).astype(jnp.int32)


def dequantize(key: PRNGKeyArray, levels: ArrayLike, num_levels: int = DIGITS_LEVELS) -> Array:
    """Uniform dequantization: `y = (levels + u) / num_levels` with `u ~ U[0, 1)`, float32 in [0, 1).

    Integer levels `l` in `0..L-1` (`L = num_levels`) become a continuous `y` spread uniformly over
    the cell `[l/L, (l+1)/L)`, fresh each call (draw anew every epoch). For a density `p` on
    `[0, 1]^D` this gives the variational bound on the discrete model `P(l) = ∫_cell p(y) dy`
    (Theis et al. 2016; Ho et al. 2019), in nats:

        log P(l) >= E_u[log p((l + u) / L)] - D log L,

    since the cell has volume `L^-D` (Jensen). Test NLL in bits/dim is `nats / (D ln 2)`
    (`bits_per_dim`): for an 8x8 image (`D = 64`), 1 bit/dim = 64 ln 2 = 44.36 nats per image.

    float32 detail: `u` is uniform on the midpoints of `2^m` equal sub-cells, `m = 21 - ceil(log2 L)`
    (`m = 16` for 17 levels, 13 for 256): then `l + u` is exact and every `y` stays strictly inside
    its cell with a margin of a few float32 ulps, so `y < 1` (a logit stays finite) and
    `floor(y * L) == l` (`requantize`) in float32 and in exact arithmetic. `E[u] = 1/2` exactly;
    the grid is far finer than any density model here resolves.
    """
    levels = jnp.asarray(levels)
    if not jnp.issubdtype(levels.dtype, jnp.integer):
        raise ValueError(
            f"dequantize: levels must be integers 0..{num_levels - 1} (see grey_levels), got {levels.dtype}"
        )
    if not 2 <= num_levels <= 2**16:
        raise ValueError(f"dequantize: num_levels must be in 2..65536, got {num_levels}")
    m = _subcell_bits(num_levels)
    return _cell_point(levels, jax.random.randint(key, levels.shape, 0, 2**m, dtype=jnp.int32), num_levels)


def _subcell_bits(num_levels: int) -> int:
    """`m`: `dequantize` splits each cell into `2^m` sub-cells, leaving `l + u` exact with 2 bits to spare."""
    return 21 - max(1, math.ceil(math.log2(num_levels)))


def _cell_point(levels: Array, k: Array, num_levels: int) -> Array:
    """`(levels + (k + 1/2) 2^-m) / num_levels` in float32: the midpoint of sub-cell `k` of each cell."""
    u = (k.astype(jnp.float32) + jnp.float32(0.5)) * jnp.float32(2.0 ** -_subcell_bits(num_levels))
    return (levels.astype(jnp.float32) + u) / jnp.float32(num_levels)


def requantize(y: ArrayLike, num_levels: int = DIGITS_LEVELS) -> Array:
    """The level `floor(y * num_levels)` (int32, clipped to `0..num_levels - 1`) of a dequantized `y`."""
    y = jnp.asarray(y)
    level = jnp.floor(y * jnp.asarray(num_levels, y.dtype)).astype(jnp.int32)
    return jnp.clip(level, 0, num_levels - 1)


def bits_per_dim(nats: ArrayLike, dim: int) -> Array:
    """A negative log-likelihood per example in nats -> bits per dimension, `nats / (dim ln 2)`."""
    nats = jnp.asarray(nats)
    if not jnp.issubdtype(nats.dtype, jnp.floating):
        nats = nats.astype(jnp.float32)
    return nats / jnp.asarray(dim * math.log(2), nats.dtype)

"""Binarization and epoch batching of `(N, D)` data, on device and jit-compatible."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray


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


@functools.partial(jax.jit, static_argnames="batch_size")
def epoch_batches(key: PRNGKeyArray, x: Array, batch_size: int) -> Array:
    """One shuffled epoch of `x` `(N, ...)` as `(N // batch_size, batch_size, ...)`.

    The permutation is drawn on device with `key`; the last `N mod batch_size` examples of the
    permutation are dropped, so each example appears at most once. `batch_size` is static.
    """
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"epoch_batches: batch_size must be in 1..{n} (the number of examples), got {batch_size}")
    num_batches = n // batch_size
    order = jax.random.permutation(key, n)[: num_batches * batch_size]
    return jnp.take(x, order, axis=0).reshape((num_batches, batch_size) + x.shape[1:])

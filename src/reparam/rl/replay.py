"""Fixed-capacity replay buffer: a NamedTuple state and pure, jit-compatible functions.

    buffer = init_buffer(example, capacity)        # rows of zeros, allocated once
    buffer = add(buffer, transition)               # one transition
    buffer = add_batch(buffer, transitions)        # k transitions, e.g. from k vectorised envs
    batch = sample(buffer, key, batch_size)        # uniform over the valid rows

Writes are scatters into the preallocated arrays. Call them under `jax.jit(add, donate_argnums=0)`
or with the buffer in a `lax.scan` carry, and XLA writes in place; an eager call, or a jitted one
without donation, copies the whole buffer on every write.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike


class Transition(NamedTuple):
    """One step `(s, a, r, s', terminated)`; a leading batch axis on every field when batched.

    `terminated` is 1.0 only where the episode truly ended (the learner does not bootstrap there).
    A time-limit truncation is not a termination: store 0.0, so the learner bootstraps from `s'`.
    """

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array


def make_transition(obs, action, reward, final_obs, terminated) -> Transition:
    """One environment step (or a batch of them) as a float32 `Transition`, the one way both loops
    build what they store: `final_obs` is the true next observation (the last one of a finished
    episode, not the reset one) and `terminated` a true termination only (a time-limit truncation
    stores 0.0, so the learner bootstraps there)."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return Transition(f32(obs), f32(action), f32(reward), f32(final_obs), f32(terminated))


class ReplayBuffer(NamedTuple):
    """`data` holds `capacity` rows (leading axis) of which the first `size` are valid.

    `position` is the next row to write; once full, the oldest row is overwritten first.
    Both counters are int32 scalars; `capacity` is the static leading dimension of `data`.
    """

    data: Transition
    position: Array
    size: Array

    @property
    def capacity(self) -> int:
        """Number of rows (read from an unbatched buffer, e.g. inside `vmap`)."""
        return jax.tree.leaves(self.data)[0].shape[0]


def init_buffer(example: Transition, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` rows shaped like `example` (one unbatched transition).

    Each field is `zeros((capacity,) + shape, dtype)` with the example field's shape and dtype:
    cast the example first to store another dtype (Gymnasium observations are float64).
    """
    try:
        capacity = operator.index(capacity)
    except TypeError:
        raise TypeError(f"init_buffer: capacity must be an int, got {capacity!r}; write int({capacity!r}).") from None
    if capacity < 1:
        raise ValueError(f"init_buffer: capacity must be at least 1, got {capacity}.")
    if capacity > np.iinfo(np.int32).max // 2:
        raise ValueError(f"init_buffer: capacity {capacity} overflows the int32 write index.")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example)
    # Two arrays, not one: a donated buffer must not hold the same array twice.
    position, size = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    return ReplayBuffer(data=data, position=position, size=size)


def add(buffer: ReplayBuffer, transition: Transition) -> ReplayBuffer:
    """Write one unbatched `transition` at `position`, overwriting the oldest row when full."""
    return add_batch(buffer, jax.tree.map(lambda x: jnp.asarray(x)[None], transition))


def add_batch(buffer: ReplayBuffer, transitions: Transition) -> ReplayBuffer:
    """Write `k` transitions (leading axis, `k <= capacity`) at rows `position + [0, k)` modulo
    `capacity`, in order: a batch that straddles the end wraps around to row 0.

    Fields are cast to the buffer's dtypes (a float into an integer field is an error).
    """
    capacity = buffer.capacity
    k = _batch_size(buffer.data, transitions)
    if k > capacity:
        raise ValueError(
            f"add_batch: a batch of {k} transitions does not fit a buffer of capacity {capacity}; "
            "add it in chunks of at most capacity, or make the buffer larger."
        )
    rows = (buffer.position + jnp.arange(k, dtype=jnp.int32)) % capacity

    # k <= capacity, so the rows are distinct (any scatter order is right) and all in bounds.
    def write(d: Array, x: ArrayLike) -> Array:
        return d.at[rows].set(_cast(x, d.dtype), unique_indices=True, mode="promise_in_bounds")

    data = jax.tree.map(write, buffer.data, transitions)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + k) % capacity,
        size=jnp.minimum(buffer.size + k, capacity),
    )


def sample(buffer: ReplayBuffer, key: Array, batch_size: int) -> Transition:
    """`batch_size` rows drawn uniformly, with replacement, from the `size` valid rows.

    Returns a `Transition` with fields shaped `(batch_size,) + shape`; `batch_size` is static.
    `size` must be positive: eagerly an empty buffer raises ValueError, but under `jit` the size is
    not known and an empty buffer returns its zero rows (sample only after a warm-up).
    """
    if not isinstance(buffer.size, jax.core.Tracer) and int(buffer.size) == 0:
        raise ValueError("sample: the buffer is empty; add transitions before sampling.")
    rows = jax.random.randint(key, (batch_size,), 0, buffer.size, dtype=jnp.int32)
    return jax.tree.map(lambda d: d[rows], buffer.data)


def _batch_size(data: Transition, transitions: Transition) -> int:
    """The common leading dimension `k` of `transitions`; raise if a field's row shape is wrong."""
    sizes = set()
    for (path, d), x in zip(jax.tree_util.tree_leaves_with_path(data), jax.tree.leaves(transitions), strict=True):
        shape = jnp.shape(x)
        if not shape or shape[1:] != d.shape[1:]:
            raise ValueError(
                f"add_batch: {jax.tree_util.keystr(path)} has shape {shape}, expected "
                f"(k,) + {d.shape[1:]}: a leading batch axis, then the example transition's shape."
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"add_batch: fields disagree on the batch size, got {sorted(sizes)}.")
    return sizes.pop()


def _cast(x: ArrayLike, dtype: jnp.dtype) -> Array:
    x = jnp.asarray(x)
    if not np.can_cast(x.dtype, dtype, casting="same_kind"):
        raise ValueError(f"add_batch: cannot store {x.dtype} values in a {dtype} field.")
    return x.astype(dtype)

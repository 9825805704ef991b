"""A fixed permutation of the last axis (`event_ndims = 1`, log-det 0): changes the ordering
between autoregressive or coupling layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .base import Bijector


class Permute(Bijector):
    """`y = x[..., permutation]`, i.e. `y_i = x_{permutation[i]}`; `x = y[..., argsort(permutation)]`.

    `log |det dy/dx| = 0`, shape `x.shape[:-1]`. The permutation is an integer array leaf (not
    trained by `eqx.is_inexact_array` filters), so `eqx.filter_vmap` can stack random ones.
    """

    event_ndims = 1
    onto = True  # a permutation of R^d
    permutation: Array
    inverse_permutation: Array

    def __init__(self, permutation: ArrayLike):
        perm = jnp.asarray(permutation)
        if perm.ndim != 1 or not jnp.issubdtype(perm.dtype, jnp.integer):
            raise ValueError(
                f"Permute: permutation must be a 1-D integer array, got shape {perm.shape}, dtype {perm.dtype}"
            )
        if not isinstance(perm, jax.core.Tracer):
            values = np.asarray(perm)
            if not np.array_equal(np.sort(values), np.arange(values.size)):
                raise ValueError(f"Permute: {values.tolist()} is not a permutation of 0..{values.size - 1}")
        self.permutation = perm
        self.inverse_permutation = jnp.argsort(perm).astype(perm.dtype)

    @classmethod
    def reverse(cls, dim: int) -> Permute:
        """The reversal `y_i = x_{dim - 1 - i}`."""
        if dim < 1:
            raise ValueError(f"Permute.reverse: dim must be >= 1, got {dim}")
        return cls(np.arange(dim - 1, -1, -1, dtype=np.int32))

    @classmethod
    def random(cls, key: PRNGKeyArray, dim: int) -> Permute:
        """A uniformly random permutation of `dim` coordinates (traceable: usable inside
        `eqx.filter_vmap`)."""
        if dim < 1:
            raise ValueError(f"Permute.random: dim must be >= 1, got {dim}")
        return cls(jax.random.permutation(key, dim).astype(jnp.int32))

    def _check(self, v: Array) -> None:
        d = self.permutation.shape[0]
        if v.ndim < 1 or v.shape[-1] != d:
            raise ValueError(f"Permute: expected inputs of shape (..., {d}), got {v.shape}")

    def forward(self, x):
        self._check(x)
        return jnp.take(x, self.permutation, axis=-1)

    def inverse(self, y):
        self._check(y)
        return jnp.take(y, self.inverse_permutation, axis=-1)

    def forward_log_det_jacobian(self, x):
        """Zero, shape `x.shape[:-1]`."""
        self._check(x)
        return jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_log_det_jacobian(self, y):
        """Zero, shape `y.shape[:-1]`."""
        self._check(y)
        return jnp.zeros(y.shape[:-1], y.dtype)

    def forward_and_log_det(self, x):
        return self.forward(x), jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_and_log_det(self, y):
        return self.inverse(y), jnp.zeros(y.shape[:-1], y.dtype)


class Reverse(Bijector):
    """`y = x[..., ::-1]` (its own inverse, log-det 0, `event_ndims = 1`): `Permute.reverse` with
    the order in the static structure instead of an index array, so XLA reverses the last axis with
    no gather (the 2-D flows' permutation between layers)."""

    event_ndims = 1
    onto = True  # a permutation of R^d

    def forward(self, x):
        if jnp.ndim(x) < 1:
            raise ValueError(f"Reverse: expected inputs of shape (..., d), got {jnp.shape(x)}")
        return jnp.flip(x, axis=-1)

    def inverse(self, y):
        return self.forward(y)

    def forward_log_det_jacobian(self, x):
        """Zero, shape `x.shape[:-1]`."""
        return jnp.zeros(jnp.shape(x)[:-1], jnp.result_type(x))

    def inverse_log_det_jacobian(self, y):
        """Zero, shape `y.shape[:-1]`."""
        return self.forward_log_det_jacobian(y)

    def forward_and_log_det(self, x):
        return self.forward(x), self.forward_log_det_jacobian(x)

    def inverse_and_log_det(self, y):
        return self.forward_and_log_det(y)

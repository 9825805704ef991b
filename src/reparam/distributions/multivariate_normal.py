"""Multivariate Normal distributions: full covariance (Cholesky factor) and diagonal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike

from ..validation import check, float_dtype
from .base import HALF_LOG_2PI, Distribution, Shape, as_shape
from .normal import Normal
from .transformed import Independent


class MultivariateNormal(Distribution):
    """N(loc, L L^T) with `L = scale_tril` lower triangular with a positive diagonal.

    `z = loc + L eps`, `eps ~ N(0, I_d)`;
    `log p(x) = -|L^-1 (x - loc)|^2 / 2 - sum_i log L_ii - d log(2 pi) / 2`.
    Shapes: `loc` `(..., d)`, `scale_tril` `(..., d, d)`; `event_shape = (d,)`.
    """

    loc: Array
    scale_tril: Array

    def __init__(self, loc: ArrayLike, scale_tril: ArrayLike, *, validate: bool = True):
        dtype = float_dtype(loc, scale_tril)
        loc, tril = jnp.asarray(loc, dtype), jnp.asarray(scale_tril, dtype)
        if loc.ndim < 1 or tril.ndim < 2 or tril.shape[-2:] != (loc.shape[-1],) * 2:
            raise ValueError(
                "MultivariateNormal: need loc of shape (..., d) and scale_tril of shape (..., d, d), "
                f"got {loc.shape} and {tril.shape}"
            )
        try:
            batch = jnp.broadcast_shapes(loc.shape[:-1], tril.shape[:-2])
        except ValueError:
            raise ValueError(
                f"MultivariateNormal: batch shapes of loc {loc.shape} and scale_tril {tril.shape} do not broadcast"
            ) from None
        d = loc.shape[-1]
        diag = jnp.diagonal(tril, axis1=-2, axis2=-1)
        not_lower = jnp.any(jnp.triu(tril, 1) != 0, axis=(-2, -1))
        message = "MultivariateNormal: scale_tril must be lower triangular (zeros above the diagonal)"
        tril = check(tril, not_lower, message, validate)
        singular = ~jnp.all(jnp.isfinite(tril), axis=(-2, -1)) | jnp.any(diag <= 0, -1)
        tril = check(
            tril,
            singular,
            "MultivariateNormal: scale_tril must be finite with a positive diagonal (a Cholesky factor); "
            "a zero on the diagonal is singular",
            validate,
        )
        loc = check(loc, ~jnp.isfinite(loc), "MultivariateNormal: loc must be finite", validate)
        self.loc = jnp.broadcast_to(loc, batch + (d,))
        self.scale_tril = jnp.broadcast_to(tril, batch + (d, d))

    @property
    def batch_shape(self) -> Shape:
        """The broadcast batch shape of `loc` `(..., d)` and `scale_tril` `(..., d, d)`."""
        return self.loc.shape[:-1]

    @property
    def event_shape(self) -> Shape:
        """`(d,)`."""
        return self.loc.shape[-1:]

    def _draw_with_noise(self, key, sample_shape: Shape) -> tuple[Array, Array]:
        eps = jax.random.normal(key, sample_shape + self.loc.shape, self.loc.dtype)
        # tril: the upper triangle gets no gradient, so a gradient step keeps L lower triangular.
        return self.loc + jnp.einsum("...ij,...j->...i", jnp.tril(self.scale_tril), eps), eps

    def _draw(self, key, sample_shape):
        return self._draw_with_noise(key, sample_shape)[0]

    def _half_log_det(self) -> Array:
        return jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1)

    def _log_prob_from_noise(self, eps: Array) -> Array:
        d = self.loc.shape[-1]
        return -0.5 * jnp.sum(jnp.square(eps), -1) - self._half_log_det() - d * HALF_LOG_2PI

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: scores the draw from its noise,
        `-|eps|^2 / 2 - sum_i log L_ii - d log(2 pi) / 2` (no triangular solve)."""
        x, eps = self._draw_with_noise(key, as_shape(sample_shape))
        return x, self._log_prob_from_noise(eps)

    def whiten(self, value: ArrayLike) -> Array:
        """`L^-1 (x - loc)` for `x` of shape `sample_shape + batch_shape + (d,)`, solved in one
        batched triangular solve with the sample axes moved last (no copy of `L` per sample)."""
        x = jnp.asarray(value, self.loc.dtype)
        x = jnp.broadcast_to(x, jnp.broadcast_shapes(x.shape, self.loc.shape))
        n_sample = x.ndim - self.loc.ndim
        diff = x - self.loc
        sample_shape = diff.shape[:n_sample]
        columns = jnp.moveaxis(diff.reshape((-1,) + self.loc.shape), 0, -1)  # batch + (d, n)
        white = solve_triangular(self.scale_tril, columns, lower=True)
        return jnp.moveaxis(white, -1, 0).reshape(sample_shape + self.loc.shape)

    def log_prob(self, value) -> Array:
        """`-|L^-1 (x - loc)|^2 / 2 - sum_i log L_ii - d log(2 pi) / 2`, by one triangular solve."""
        return self._log_prob_from_noise(self.whiten(value))

    def entropy(self) -> Array:
        """`d (1 + log(2 pi)) / 2 + sum_i log L_ii`."""
        d = self.loc.shape[-1]
        return d * (0.5 + HALF_LOG_2PI) + self._half_log_det()

    def mean(self) -> Array:
        """`loc`."""
        return self.loc

    def mode(self) -> Array:
        """`loc`."""
        return self.loc

    def covariance(self) -> Array:
        """`L L^T`, shape `batch_shape + (d, d)`."""
        return self.scale_tril @ jnp.swapaxes(self.scale_tril, -1, -2)

    def variance(self) -> Array:
        """The diagonal of `L L^T`, `sum_j L_ij^2`, shape `batch_shape + (d,)`."""
        return jnp.sum(jnp.square(self.scale_tril), -1)


class MultivariateNormalDiag(Independent):
    """N(loc, diag(scale_diag^2)): independent Normals read as one `(d,)` event."""

    def __init__(self, loc: ArrayLike, scale_diag: ArrayLike, *, validate: bool = True):
        normal = Normal(loc, scale_diag, validate=validate)
        if normal.loc.ndim < 1:
            raise ValueError("MultivariateNormalDiag: loc and scale_diag need a last axis of size d")
        super().__init__(normal, 1)

    @property
    def loc(self) -> Array:
        """The mean, shape `batch_shape + (d,)`."""
        return self.distribution.loc

    @property
    def scale_diag(self) -> Array:
        """The standard deviations, shape `batch_shape + (d,)`."""
        return self.distribution.scale

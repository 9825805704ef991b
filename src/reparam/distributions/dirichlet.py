"""Dirichlet distribution with implicit reparameterization."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln, xlogy
from jaxtyping import Array, ArrayLike

from ..validation import check_positive, float_dtype
from .base import Distribution, Shape, as_shape, where_supported


class Dirichlet(Distribution):
    """Dirichlet(alpha) on the simplex, `event_shape = (K,)`:
    `log p(x) = sum_k (alpha_k - 1) log x_k + lgamma(alpha_0) - sum_k lgamma(alpha_k)`.

    Drawn as normalised gammas in log space (`log x = log_softmax(loggamma(alpha))`), each gamma
    implicitly reparameterized (Figurnov et al. 2018).
    """

    concentration: Array

    def __init__(self, concentration: ArrayLike, *, validate: bool = True):
        alpha = jnp.asarray(concentration, float_dtype(concentration))
        if alpha.ndim < 1 or alpha.shape[-1] < 2:
            raise ValueError(f"Dirichlet: concentration must have a last axis of size K >= 2, got shape {alpha.shape}")
        self.concentration = check_positive("Dirichlet", "concentration", alpha, validate)

    @property
    def batch_shape(self) -> Shape:
        """The shape of `concentration` without its last axis."""
        return self.concentration.shape[:-1]

    @property
    def event_shape(self) -> Shape:
        """`(K,)`."""
        return self.concentration.shape[-1:]

    def _draw_log(self, key, sample_shape: Shape) -> Array:
        alpha = jnp.broadcast_to(self.concentration, sample_shape + self.concentration.shape)
        return jax.nn.log_softmax(jax.random.loggamma(key, alpha, dtype=alpha.dtype), axis=-1)

    def _draw(self, key, sample_shape):
        return jnp.exp(self._draw_log(key, sample_shape))

    def _log_normalizer(self) -> Array:
        alpha = self.concentration
        return jnp.sum(gammaln(alpha), -1) - gammaln(jnp.sum(alpha, -1))

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: scores the draw from `log x` as drawn (no underflow for small concentrations)."""
        log_x = self._draw_log(key, as_shape(sample_shape))
        log_prob = jnp.sum((self.concentration - 1) * log_x, -1) - self._log_normalizer()
        return jnp.exp(log_x), log_prob

    def log_prob(self, value) -> Array:
        """Off the simplex's box (`x_k < 0` or `x_k > 1`) gives `-inf`; the sum is not checked."""
        x = jnp.asarray(value, self.concentration.dtype)
        inside = jnp.all((x >= 0) & (x <= 1), axis=-1)
        x = jnp.where(inside[..., None], x, 0.5)
        log_prob = jnp.sum(xlogy(self.concentration - 1, x), -1) - self._log_normalizer()
        return where_supported(inside, log_prob)

    def entropy(self) -> Array:
        """`log B(alpha) + (alpha_0 - K) psi(alpha_0) - sum_k (alpha_k - 1) psi(alpha_k)`."""
        alpha = self.concentration
        total = jnp.sum(alpha, -1)
        k = alpha.shape[-1]
        return self._log_normalizer() + (total - k) * digamma(total) - jnp.sum((alpha - 1) * digamma(alpha), -1)

    def mean(self) -> Array:
        """`alpha / alpha_0`, with `alpha_0 = sum_k alpha_k`."""
        return self.concentration / jnp.sum(self.concentration, -1, keepdims=True)

    def mode(self) -> Array:
        """`(alpha - 1) / (alpha_0 - K)`, defined when every `alpha_k > 1` (NaN otherwise)."""
        alpha = self.concentration
        mode = (alpha - 1) / (jnp.sum(alpha, -1, keepdims=True) - alpha.shape[-1])
        return jnp.where(jnp.all(alpha > 1, -1, keepdims=True), mode, jnp.nan)

    def variance(self) -> Array:
        """`alpha_k (alpha_0 - alpha_k) / (alpha_0^2 (alpha_0 + 1))` per coordinate."""
        alpha = self.concentration
        total = jnp.sum(alpha, -1, keepdims=True)
        return alpha * (total - alpha) / (jnp.square(total) * (total + 1))
